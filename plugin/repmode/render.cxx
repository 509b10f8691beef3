// repmode render --input IN [--labels L] [--colors FILE] --out PNG: one RGB picture of a volume (docs/cli.md §3.7).
//
// The picture is a row of panels, top-aligned, kGap pixels apart on a kBackground ground:
//   1. axial:    the layer z = Z/2, rows y, columns x;
//   2. coronal:  the plane y = Y/2, rows z, columns x;
//   3. sagittal: the plane x = X/2, rows z, columns y;
//   4. 3D view:  the labels seen along +y (rows z, columns x): on each ray the first voxel of a visible label
//      (alpha > 0), in its colour darkened with depth (kNearShade at y = 0 down to kFarShade at y = Y-1); without
//      labels, the maximum over the ray of the windowed intensity times the same shading.
// Rows and columns follow the voxel indices (the direction matrix is ignored): row 0 is the top. All panels share
// one scale, chosen so that the longest physical extent (size x spacing) they show spans --size pixels, so each
// keeps its physical aspect. A panel whose rows or columns would span a single voxel (e.g. the coronal, sagittal
// and 3D panels of a one-layer volume) is left out; a picture of a single panel (a 2D ink map) is drawn twice as
// big. Pixel i of a panel h pixels tall shows row floor((i + 0.5) * rows / h) (nearest neighbour), likewise for
// columns.
//
// Grey levels window the intensity between its 1st and 99th percentiles (nearest rank over the finite voxels):
// grey = 255 * clamp((v - p1) / (p99 - p1), 0, 1), rounded; a constant volume is mid-grey. Labels are the label
// map's values rounded; 0 (and anything below) is background and never drawn. A label of colour (r, g, b, a) is
// blended over the grey at opacity kOverlay * a / 255: out = grey + opacity * (colour - grey), rounded. Colours come
// from --colors (Slicer's colour-table text: "index name r g b [a]" lines, '#' comments, as predict --colors
// writes), else, and for labels the table does not list, from predict's default palette.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkPNGImageIO.h>
#include <itkRGBPixel.h>

#include "cli.h"
#include "image_io.h"
#include "volume_ops.h"
#include "itkRepModeLabelMapFilter.h"

namespace repmode::cli {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kGap = 4;
constexpr uint8_t kBackground = 32;
constexpr double kOverlay = 0.5;
constexpr double kNearShade = 1.0, kFarShade = 0.3;

struct Rgb {
    uint8_t r = 0, g = 0, b = 0;
};

struct Rgba {
    int r, g, b, a;
};

uint8_t to_byte(double v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0))); }

Rgb grey(uint8_t v) { return {v, v, v}; }

Rgb scaled(const Rgb &c, double f) { return {to_byte(c.r * f), to_byte(c.g * f), to_byte(c.b * f)}; }

// The grey level of an intensity: the 1st-99th percentile window.
class Window {
  public:
    explicit Window(const std::vector<float> &voxels)
    {
        std::vector<float> finite;
        finite.reserve(voxels.size());
        for (float v : voxels)
            if (std::isfinite(v))
                finite.push_back(v);
        if (finite.empty())
            return;
        lo_ = percentile(finite, 0.01);
        hi_ = percentile(finite, 0.99);
    }
    uint8_t operator()(float v) const
    {
        if (!std::isfinite(v))
            return 0;
        if (!(hi_ > lo_))
            return 128; // constant volume
        return to_byte(255.0 * (v - lo_) / (hi_ - lo_));
    }

  private:
    static double percentile(std::vector<float> &v, double q)
    {
        const auto k = static_cast<std::ptrdiff_t>(std::llround(q * static_cast<double>(v.size() - 1)));
        std::nth_element(v.begin(), v.begin() + k, v.end());
        return v[static_cast<size_t>(k)];
    }
    double lo_ = 0.0, hi_ = 0.0;
};

// Label colours: the --colors table, then predict's default palette (itk::RepModeLabelMapFilter::DefaultColor)
// so that a label map predict wrote without a table renders in the same colours.
class Palette {
  public:
    Palette() = default;
    explicit Palette(const std::string &path)
    {
        std::ifstream in(path);
        if (!in)
            throw Failure("cannot read the colour table " + path, kBadInput);
        int number = 0;
        for (std::string line; std::getline(in, line);) {
            number++;
            line = line.substr(0, line.find('#'));
            std::istringstream fields(line);
            std::vector<std::string> f;
            for (std::string s; fields >> s;)
                f.push_back(s);
            if (f.empty())
                continue;
            auto fail = [&](const std::string &why) {
                throw Failure("the colour table " + path + ", line " + std::to_string(number) + ": " + why +
                                  " (expected 'index name r g b a', colours 0 to 255)",
                              kBadInput);
            };
            if (f.size() != 5 && f.size() != 6)
                fail("has " + std::to_string(f.size()) + " fields");
            long index = 0;
            if (!integer(f[0], index) || index < 0)
                fail("'" + f[0] + "' is not a label index");
            int channel[4] = {0, 0, 0, 255};
            for (size_t c = 2; c < f.size(); c++) {
                long v = 0;
                if (!integer(f[c], v) || v < 0 || v > 255)
                    fail("'" + f[c] + "' is not a colour value");
                channel[c - 2] = static_cast<int>(v);
            }
            table_[index] = {channel[0], channel[1], channel[2], channel[3]};
        }
        if (in.bad())
            throw Failure("cannot read the colour table " + path, kBadInput);
    }
    // The colour of a label value (alpha 0 for background).
    Rgba operator()(float value) const
    {
        const long label = std::isfinite(value) ? std::lround(value) : 0;
        if (label <= 0)
            return {0, 0, 0, 0};
        const auto it = table_.find(label);
        if (it != table_.end())
            return it->second;
        const auto c = itk::RepModeLabelMapFilter<>::DefaultColor(static_cast<unsigned>(label));
        return {c[0], c[1], c[2], 255};
    }

  private:
    static bool integer(const std::string &s, long &v)
    {
        char *end = nullptr;
        v = std::strtol(s.c_str(), &end, 10);
        return !s.empty() && *end == '\0';
    }
    std::map<long, Rgba> table_;
};

Rgb over(uint8_t g, const Rgba &c)
{
    const double opacity = kOverlay * c.a / 255.0;
    return {to_byte(g + opacity * (c.r - g)), to_byte(g + opacity * (c.g - g)), to_byte(g + opacity * (c.b - g))};
}

// One panel at voxel resolution, with the physical size of its rows and columns.
struct Plane {
    int64_t rows = 0, cols = 0;
    double row_mm = 1.0, col_mm = 1.0;
    std::vector<Rgb> px;
};

// A panel: the axis it cuts (or projects along) and the axes of its rows and columns, in (Z, Y, X) order.
struct View {
    size_t across, row, col;
    bool projection;
};
const View kViews[] = {{0, 1, 2, false}, {1, 0, 2, false}, {2, 0, 1, false}, {1, 0, 2, true}};

struct Scene {
    const Volume &image;
    const Volume *labels; // null without --labels
    Window window;
    Palette palette;

    std::array<int64_t, 3> stride() const { return {image.size[1] * image.size[2], image.size[2], 1}; }
    // Voxel size along (Z, Y, X); image.spacing is ITK's (x, y, z).
    double mm(size_t axis) const
    {
        const double s = std::fabs(image.spacing[2 - axis]);
        return std::isfinite(s) && s > 0.0 ? s : 1.0;
    }
    Rgb slice_pixel(int64_t at) const
    {
        const uint8_t g = window(image.voxels[static_cast<size_t>(at)]);
        return labels ? over(g, palette(labels->voxels[static_cast<size_t>(at)])) : grey(g);
    }
    // The ray from `at` along `step` for `n` voxels, nearest first.
    Rgb ray_pixel(int64_t at, int64_t step, int64_t n) const
    {
        auto shade = [n](int64_t d) {
            return n > 1 ? kNearShade + (kFarShade - kNearShade) * static_cast<double>(d) / static_cast<double>(n - 1)
                         : kNearShade;
        };
        if (labels) {
            for (int64_t d = 0; d < n; d++) {
                const Rgba c = palette(labels->voxels[static_cast<size_t>(at + d * step)]);
                if (c.a > 0)
                    return scaled({static_cast<uint8_t>(c.r), static_cast<uint8_t>(c.g), static_cast<uint8_t>(c.b)},
                                  shade(d));
            }
            return {};
        }
        double best = 0.0;
        for (int64_t d = 0; d < n; d++)
            best = std::max(best, window(image.voxels[static_cast<size_t>(at + d * step)]) * shade(d));
        return grey(to_byte(best));
    }

    Plane render(const View &v) const
    {
        const auto st = stride();
        Plane p;
        p.rows = image.size[v.row];
        p.cols = image.size[v.col];
        p.row_mm = mm(v.row);
        p.col_mm = mm(v.col);
        p.px.resize(static_cast<size_t>(p.rows * p.cols));
        const int64_t depth = image.size[v.across];
        const int64_t base = v.projection ? 0 : depth / 2 * st[v.across];
        for (int64_t r = 0; r < p.rows; r++)
            for (int64_t c = 0; c < p.cols; c++) {
                const int64_t at = base + r * st[v.row] + c * st[v.col];
                p.px[static_cast<size_t>(r * p.cols + c)] =
                    v.projection ? ray_pixel(at, st[v.across], depth) : slice_pixel(at);
            }
        return p;
    }
};

struct Canvas {
    int64_t width = 0, height = 0;
    std::vector<Rgb> px;
};

// The panels side by side, all at `mm_per_pixel`.
Canvas compose(const std::vector<Plane> &planes, double mm_per_pixel)
{
    std::vector<std::array<int64_t, 2>> sizes; // height, width
    Canvas canvas;
    for (const Plane &p : planes) {
        const auto h = std::max<int64_t>(1, std::llround(static_cast<double>(p.rows) * p.row_mm / mm_per_pixel));
        const auto w = std::max<int64_t>(1, std::llround(static_cast<double>(p.cols) * p.col_mm / mm_per_pixel));
        sizes.push_back({h, w});
        canvas.width += (canvas.width ? kGap : 0) + w;
        canvas.height = std::max(canvas.height, h);
    }
    canvas.px.assign(static_cast<size_t>(canvas.width * canvas.height), grey(kBackground));
    int64_t left = 0;
    for (size_t k = 0; k < planes.size(); k++) {
        const Plane &p = planes[k];
        const auto [h, w] = sizes[k];
        for (int64_t i = 0; i < h; i++) {
            const int64_t r = std::min(p.rows - 1, (2 * i + 1) * p.rows / (2 * h));
            for (int64_t j = 0; j < w; j++) {
                const int64_t c = std::min(p.cols - 1, (2 * j + 1) * p.cols / (2 * w));
                canvas.px[static_cast<size_t>(i * canvas.width + left + j)] = p.px[static_cast<size_t>(r * p.cols + c)];
            }
        }
        left += w + kGap;
    }
    return canvas;
}

// Fails before any work unless `path` names a .png file in an existing folder.
void check_output(const std::string &path)
{
    std::string ext = fs::path(path).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext != ".png")
        throw Failure("--out: " + path + " is not a .png file name", kBadInput);
    const fs::path folder = fs::path(path).parent_path();
    std::error_code ec;
    if (!folder.empty() && !fs::is_directory(folder, ec))
        throw Failure("cannot write " + path + ": the folder " + folder.string() + " does not exist", kBadInput);
}

// Written under a temporary name in the same folder, then renamed: a failure leaves no file at `path`.
void write_png(const Canvas &canvas, const std::string &path)
{
    using Image = itk::Image<itk::RGBPixel<unsigned char>, 2>;
    Image::Pointer image = Image::New();
    Image::RegionType region;
    region.SetSize(0, static_cast<itk::SizeValueType>(canvas.width));
    region.SetSize(1, static_cast<itk::SizeValueType>(canvas.height));
    image->SetRegions(region);
    image->Allocate();
    Image::PixelType *out = image->GetBufferPointer();
    for (size_t i = 0; i < canvas.px.size(); i++)
        out[i].Set(canvas.px[i].r, canvas.px[i].g, canvas.px[i].b);

    const fs::path target(path);
    const fs::path tmp = target.parent_path() / ("." + target.stem().string() + ".tmp-" +
                                                 std::to_string(static_cast<long>(getpid())) + ".png");
    std::error_code ec;
    auto writer = itk::ImageFileWriter<Image>::New();
    writer->SetImageIO(itk::PNGImageIO::New()); // explicit: image_io registers only the volume formats
    writer->SetFileName(tmp.string());
    writer->SetInput(image);
    try {
        writer->Update();
    } catch (const itk::ExceptionObject &e) {
        fs::remove(tmp, ec);
        throw Failure("cannot write " + path + ": " + describe(e), kBadInput);
    }
    fs::rename(tmp, target, ec);
    if (ec) {
        std::error_code ignored;
        fs::remove(tmp, ignored);
        throw Failure("cannot write " + path + ": " + ec.message(), kBadInput);
    }
}

} // namespace

int run_render(int argc, char **argv)
{
    CommandLine cmd("render", "Draws a volume as one RGB PNG: the axial, coronal and sagittal slices through its "
                              "centre at their physical aspect, grey levels windowed at the 1st-99th percentile, "
                              "with the label map blended over them at 50% opacity, and a 3D view: the labels seen "
                              "along Y, nearer voxels brighter (without labels, the intensity's depth-shaded "
                              "maximum). A one-layer volume (a 2D map) is drawn alone, twice as big.");
    TCLAP::ValueArg<std::string> input("", "input", "input image, or a folder of 2D TIFF layers", true, "", "IN", cmd);
    TCLAP::ValueArg<std::string> labels("", "labels", "label map of the input's size (label 0: background)", false, "",
                                        "L", cmd);
    TCLAP::ValueArg<std::string> colors("", "colors", "colour table of the labels (Slicer's text format: 'index name "
                                                      "r g b a' lines, as predict --colors writes)",
                                        false, "", "FILE", cmd);
    TCLAP::ValueArg<std::string> out("", "out", "the picture (.png)", true, "", "PNG", cmd);
    TCLAP::ValueArg<int> size("", "size", "pixels spanned by the volume's longest physical extent (16 to 4096)", false,
                              256, "N", cmd);
    cmd.parse_or_fail(argc, argv);
    if (size.getValue() < 16 || size.getValue() > 4096)
        throw Failure("--size must be 16 to 4096 pixels", kBadInput);
    if (colors.isSet() && !labels.isSet())
        throw Failure("--colors colours the labels: give --labels too", kBadInput);
    check_output(out.getValue());
    const Palette palette = colors.isSet() ? Palette(colors.getValue()) : Palette();

    Progress progress("render");
    progress.stage("reading " + input.getValue());
    const Volume image = read_volume(input.getValue());
    Volume label_map;
    if (labels.isSet()) {
        progress.stage("reading " + labels.getValue());
        label_map = read_volume(labels.getValue());
        check_same_size(image, input.getValue(), label_map, labels.getValue());
    }

    progress.stage("drawing " + size_string(image.size) + " voxels (Z x Y x X)");
    const Scene scene{image, labels.isSet() ? &label_map : nullptr, Window(image.voxels), palette};
    std::vector<const View *> shown;
    for (const View &v : kViews)
        if (image.size[v.row] > 1 && image.size[v.col] > 1)
            shown.push_back(&v);
    if (shown.empty()) // a line or a point: its axial "slice" still shows it
        shown.push_back(&kViews[0]);
    std::vector<Plane> planes;
    double extent = 0.0;
    for (const View *v : shown) {
        planes.push_back(scene.render(*v));
        const Plane &p = planes.back();
        extent = std::max({extent, static_cast<double>(p.rows) * p.row_mm, static_cast<double>(p.cols) * p.col_mm});
    }
    const double pixels = size.getValue() * (planes.size() == 1 ? 2.0 : 1.0);
    const Canvas canvas = compose(planes, extent / pixels);

    write_png(canvas, out.getValue());
    progress.stage("wrote " + out.getValue() + " (" + std::to_string(canvas.width) + " x " +
                   std::to_string(canvas.height) + " pixels)");
    return 0;
}

} // namespace repmode::cli
