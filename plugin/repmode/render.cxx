// repmode render --input IN [--labels L] [--colors FILE] --out PNG: one RGB picture of a volume (docs/cli.md §3.7).
//
// A volume of at least two voxels along every axis is drawn as a 2 x 2 grid of panels, kGap pixels apart on a
// kBackground ground:
//     axial     | 3D view
//     ----------+---------
//     coronal   | sagittal
//   axial:    the layer z = Z/2, rows y, columns x;
//   coronal:  the plane y = Y/2, rows z, columns x;
//   sagittal: the plane x = X/2, rows z, columns y;
//   3D view:  square, as tall as the axial panel and as wide as the sagittal one (view3d.h): the surface of every
//             label (label_mesh.h) in its colour, or without labels the surface of the voxels brighter than Otsu's
//             threshold of the grey levels, in kIntensityColour.
// So the grid has no empty cell: its columns are X and Y wide, its rows Y and Z tall. Any other volume (a 2D map:
// one layer, or a line) is drawn as its one slice panel whose rows and columns both span more than one voxel (the
// axial one when none does), twice as big. Rows and columns follow the voxel indices (the direction matrix is
// ignored, also by the 3D view): row 0 is the top. All panels share one scale, chosen so that the longest physical
// extent (size x spacing) spans --size pixels, so each keeps its physical aspect. Pixel i of a slice panel h pixels
// tall shows row floor((i + 0.5) * rows / h) (nearest neighbour), likewise for columns.
//
// Grey levels window the intensity between its 1st and 99th percentiles (nearest rank over the finite voxels):
// grey = 255 * clamp((v - p1) / (p99 - p1), 0, 1), rounded; a constant volume is mid-grey. Labels are the label
// map's values rounded; 0 (and anything below) is background and never drawn. A label of colour (r, g, b, a) is
// blended over the grey at opacity kOverlay * a / 255: out = grey + opacity * (colour - grey), rounded; the 3D view
// draws labels of alpha > 0 opaque. Colours come from --colors, else, and for labels the table does not list, from
// predict's default palette (colors.h).
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkPNGImageIO.h>
#include <itkRGBPixel.h>

#include "cli.h"
#include "colors.h"
#include "display.h"
#include "image_io.h"
#include "label_mesh.h"
#include "render.h"
#include "view3d.h"
#include "volume_ops.h"

namespace repmode::cli {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kGap = 4;
constexpr uint8_t kBackground = 32;
constexpr double kOverlay = 0.5;
constexpr std::array<uint8_t, 3> kIntensityColour = {230, 214, 170}; // bone-like, for the intensity's surface

struct Rgb {
    uint8_t r = 0, g = 0, b = 0;
};

uint8_t to_byte(double v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0))); }

Rgb grey(uint8_t v) { return {v, v, v}; }

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

Rgb over(uint8_t g, const Rgba &c)
{
    const double opacity = kOverlay * c.a / 255.0;
    return {to_byte(g + opacity * (c.r - g)), to_byte(g + opacity * (c.g - g)), to_byte(g + opacity * (c.b - g))};
}

// Otsu's threshold of grey levels: the t that best splits them into g <= t and g > t (largest between-class
// variance, the lowest such t), or -1 when no t leaves voxels on both sides.
int otsu(const std::vector<uint8_t> &greys)
{
    double count[256] = {}, total = 0.0, sum = 0.0;
    for (uint8_t g : greys)
        count[g] += 1.0;
    for (int g = 0; g < 256; g++) {
        total += count[g];
        sum += g * count[g];
    }
    int best = -1;
    double best_variance = -1.0, below = 0.0, below_sum = 0.0;
    for (int t = 0; t < 255; t++) {
        below += count[t];
        below_sum += t * count[t];
        const double above = total - below;
        if (below == 0.0 || above == 0.0)
            continue;
        const double d = below_sum / below - (sum - below_sum) / above;
        const double variance = below * above * d * d;
        if (variance > best_variance) {
            best_variance = variance;
            best = t;
        }
    }
    return best;
}

// One panel at voxel resolution, with the physical size of its rows and columns.
struct Plane {
    int64_t rows = 0, cols = 0;
    double row_mm = 1.0, col_mm = 1.0;
    std::vector<Rgb> px;
};

// A slice: the axis it cuts and the axes of its rows and columns, in (Z, Y, X) order.
struct View {
    size_t across, row, col;
};
constexpr View kAxial{0, 1, 2}, kCoronal{1, 0, 2}, kSagittal{2, 0, 1};

struct Scene {
    const Volume &image;
    const Volume *labels; // null without --labels
    Window window;
    ColorTable palette;

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
    Plane slice(const View &v) const
    {
        const auto st = stride();
        Plane p;
        p.rows = image.size[v.row];
        p.cols = image.size[v.col];
        p.row_mm = mm(v.row);
        p.col_mm = mm(v.col);
        p.px.resize(static_cast<size_t>(p.rows * p.cols));
        const int64_t base = image.size[v.across] / 2 * st[v.across];
        for (int64_t r = 0; r < p.rows; r++)
            for (int64_t c = 0; c < p.cols; c++)
                p.px[static_cast<size_t>(r * p.cols + c)] = slice_pixel(base + r * st[v.row] + c * st[v.col]);
        return p;
    }
    // The meshes of the 3D view, in the voxel-axes frame.
    std::vector<ColouredMesh> meshes() const
    {
        std::vector<ColouredMesh> out;
        if (labels) {
            const LabelMesher mesher(*labels);
            for (long label : mesher.labels()) {
                const Rgba c = palette(static_cast<float>(label));
                if (c.a > 0)
                    out.push_back({mesher.mesh(label, Frame::voxel_axes),
                                   {static_cast<uint8_t>(c.r), static_cast<uint8_t>(c.g), static_cast<uint8_t>(c.b)}});
            }
            return out;
        }
        std::vector<uint8_t> greys(image.voxels.size());
        std::transform(image.voxels.begin(), image.voxels.end(), greys.begin(), window);
        const int t = otsu(greys);
        Volume bright = image.like<float>();
        for (size_t i = 0; i < greys.size(); i++)
            bright.voxels[i] = t >= 0 && greys[i] > t ? 1.0f : 0.0f;
        const LabelMesher mesher(bright);
        if (!mesher.labels().empty())
            out.push_back({mesher.mesh(1, Frame::voxel_axes), kIntensityColour});
        return out;
    }
};

struct Canvas {
    int64_t width = 0, height = 0;
    std::vector<Rgb> px;
    Rgb &at(int64_t row, int64_t col) { return px[static_cast<size_t>(row * width + col)]; }
};

// Pixels a plane spans at `mm_per_pixel`: height, width.
std::array<int64_t, 2> extent(const Plane &p, double mm_per_pixel)
{
    return {std::max<int64_t>(1, std::llround(static_cast<double>(p.rows) * p.row_mm / mm_per_pixel)),
            std::max<int64_t>(1, std::llround(static_cast<double>(p.cols) * p.col_mm / mm_per_pixel))};
}

// Draws `p` scaled to h x w pixels with its top left corner at (top, left).
void place(Canvas &canvas, const Plane &p, int64_t top, int64_t left, int64_t h, int64_t w)
{
    for (int64_t i = 0; i < h; i++) {
        const int64_t r = std::min(p.rows - 1, (2 * i + 1) * p.rows / (2 * h));
        for (int64_t j = 0; j < w; j++) {
            const int64_t c = std::min(p.cols - 1, (2 * j + 1) * p.cols / (2 * w));
            canvas.at(top + i, left + j) = p.px[static_cast<size_t>(r * p.cols + c)];
        }
    }
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

// The 2 x 2 grid of a volume: axial and 3D view above, coronal and sagittal below.
Canvas grid(const Scene &scene, double mm_per_pixel, void *display)
{
    const Plane axial = scene.slice(kAxial), coronal = scene.slice(kCoronal), sagittal = scene.slice(kSagittal);
    const auto [axial_h, x_w] = extent(axial, mm_per_pixel);
    const auto [z_h, y_w] = extent(sagittal, mm_per_pixel);
    Canvas canvas;
    canvas.width = x_w + kGap + y_w;
    canvas.height = axial_h + kGap + z_h;
    canvas.px.assign(static_cast<size_t>(canvas.width * canvas.height), grey(kBackground));
    place(canvas, axial, 0, 0, axial_h, x_w);
    place(canvas, coronal, axial_h + kGap, 0, z_h, x_w);
    place(canvas, sagittal, axial_h + kGap, x_w + kGap, z_h, y_w);

    // The box of the voxels in the voxel-axes frame: voxel i spans (i -+ 1/2) x spacing.
    std::array<double, 3> lo, hi;
    for (size_t k = 0; k < 3; k++) {
        const double s = scene.mm(2 - k);
        lo[k] = -0.5 * s;
        hi[k] = (static_cast<double>(scene.image.size[2 - k]) - 0.5) * s;
    }
    const std::vector<uint8_t> view =
        draw_view(scene.meshes(), lo, hi, static_cast<int>(y_w), static_cast<int>(axial_h), display);
    for (int64_t i = 0; i < axial_h; i++)
        for (int64_t j = 0; j < y_w; j++) {
            const uint8_t *p = &view[static_cast<size_t>((i * y_w + j) * 3)];
            canvas.at(i, x_w + kGap + j) = {p[0], p[1], p[2]};
        }
    return canvas;
}

// The picture: the 2 x 2 grid with the 3D view drawn on `display`, or a 2D map's one panel when there is none.
Canvas draw(const Volume &image, const Volume *labels, const ColorTable &palette, int size, void *display)
{
    const Scene scene{image, labels, Window(image.voxels), palette};
    Canvas canvas;
    if (display && has_3d_view(image.size)) {
        double longest = 0.0;
        for (size_t axis = 0; axis < 3; axis++)
            longest = std::max(longest, static_cast<double>(image.size[axis]) * scene.mm(axis));
        canvas = grid(scene, longest / size, display);
    } else {
        View shown = kAxial; // a line or a point: its axial "slice" still shows it
        for (const View &v : {kAxial, kCoronal, kSagittal})
            if (image.size[v.row] > 1 && image.size[v.col] > 1)
                shown = v;
        const Plane plane = scene.slice(shown);
        const double longest = std::max(static_cast<double>(plane.rows) * plane.row_mm,
                                        static_cast<double>(plane.cols) * plane.col_mm);
        const auto [h, w] = extent(plane, longest / (2.0 * size));
        canvas.width = w;
        canvas.height = h;
        canvas.px.assign(static_cast<size_t>(w * h), grey(kBackground));
        place(canvas, plane, 0, 0, h, w);
    }
    return canvas;
}

} // namespace

bool has_3d_view(const std::array<int64_t, 3> &size) { return size[0] > 1 && size[1] > 1 && size[2] > 1; }

void render_picture(const Volume &image, const Volume *labels, const ColorTable &palette, int size, void *display,
                    const std::string &png)
{
    write_png(draw(image, labels, palette, size, display), png);
}

int run_render(int argc, char **argv)
{
    CommandLine cmd("render", "Draws a volume as one RGB PNG: the axial, coronal and sagittal slices through its "
                              "centre at their physical aspect, grey levels windowed at the 1st-99th percentile, "
                              "with the label map blended over them at 50% opacity, and a 3D view of the labels' "
                              "surfaces (without labels, the surface of the bright voxels) drawn with VTK, in a 2 x 2 "
                              "grid. A 2D map is drawn alone, twice as big. The 3D view needs an X display: DISPLAY, "
                              "else a private Xvfb.");
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
    const ColorTable palette = colors.isSet() ? ColorTable(colors.getValue()) : ColorTable();

    // The display first, from the input's header alone, so that a run that cannot have one fails before any work.
    std::unique_ptr<XDisplay> display;
    const auto voxels = VolumeSource(input.getValue()).image()->GetLargestPossibleRegion().GetSize();
    if (has_3d_view({static_cast<int64_t>(voxels[2]), static_cast<int64_t>(voxels[1]),
                     static_cast<int64_t>(voxels[0])}))
        display = std::make_unique<XDisplay>("render's 3D view");

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
    const Canvas canvas = draw(image, labels.isSet() ? &label_map : nullptr, palette, size.getValue(),
                               display ? display->id() : nullptr);
    write_png(canvas, out.getValue());
    progress.stage("wrote " + out.getValue() + " (" + std::to_string(canvas.width) + " x " +
                   std::to_string(canvas.height) + " pixels)");
    return 0;
}

} // namespace repmode::cli
