// Images in and out of the repmode tool, through ITK (see image_io.h).
#include "image_io.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <system_error>

#include <unistd.h>

#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkImageSeriesReader.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>
#include <itkTIFFImageIOFactory.h>

#include "cli.h"

namespace fs = std::filesystem;

namespace repmode::cli {

namespace {

// The formats of cli.md, registered by hand: only the IO modules we link (CMakeLists.txt) exist, and registering
// them explicitly needs none of ITK's generated factory-registration headers.
void register_formats()
{
    static std::once_flag once;
    std::call_once(once, [] {
        itk::NrrdImageIOFactory::RegisterOneFactory();
        itk::NiftiImageIOFactory::RegisterOneFactory();
        itk::MetaImageIOFactory::RegisterOneFactory();
        itk::TIFFImageIOFactory::RegisterOneFactory();
        // ITK's warnings (e.g. the series reader's guesses about slice spacing) go to stderr, whose lines belong
        // to repmode's own messages; everything that matters is an exception.
        itk::Object::GlobalWarningDisplayOff();
    });
}

// The first meaningful line of an ITK exception: its descriptions run over several lines of internals.
std::string reason(const itk::ExceptionObject &e)
{
    std::istringstream lines(e.GetDescription());
    for (std::string line; std::getline(lines, line);) {
        const auto first = line.find_first_not_of(" \t\r");
        if (first == std::string::npos)
            continue;
        const auto last = line.find_last_not_of(" \t\r");
        return line.substr(first, last - first + 1);
    }
    return "unknown ITK error";
}

bool has_tiff_extension(const fs::path &p)
{
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext == ".tif" || ext == ".tiff";
}

using FloatImage = itk::Image<float, 3>;

// Checks what the file holds before reading it: one scalar component, at most 3 dimensions.
itk::ImageIOBase::Pointer scalar_image_io(const std::string &path)
{
    itk::ImageIOBase::Pointer io = itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::ReadMode);
    if (!io)
        throw Failure("cannot read " + path + ": not an image file ITK can read (.nrrd, .nhdr, .nii, .nii.gz, .mha, "
                                              ".mhd, .tif)",
                      kBadInput);
    io->SetFileName(path);
    try {
        io->ReadImageInformation();
    } catch (const itk::ExceptionObject &e) {
        throw Failure("cannot read " + path + ": " + reason(e), kBadInput);
    }
    if (io->GetNumberOfComponents() != 1)
        throw Failure(path + " holds " + std::to_string(io->GetNumberOfComponents()) + "-component " +
                          itk::ImageIOBase::GetPixelTypeAsString(io->GetPixelType()) + " pixels of " +
                          itk::ImageIOBase::GetComponentTypeAsString(io->GetComponentType()) +
                          "; repmode reads scalar (single-component) images only",
                      kBadInput);
    if (io->GetNumberOfDimensions() > 3)
        throw Failure(path + " has " + std::to_string(io->GetNumberOfDimensions()) +
                          " dimensions; repmode reads 2D and 3D images only",
                      kBadInput);
    return io;
}

Volume from_itk(const FloatImage *image)
{
    Volume v;
    const auto region = image->GetLargestPossibleRegion();
    for (int a = 0; a < 3; a++) {
        v.size[static_cast<size_t>(2 - a)] = static_cast<int64_t>(region.GetSize()[static_cast<unsigned>(a)]);
        v.spacing[static_cast<size_t>(a)] = image->GetSpacing()[static_cast<unsigned>(a)];
        v.origin[static_cast<size_t>(a)] = image->GetOrigin()[static_cast<unsigned>(a)];
        for (int b = 0; b < 3; b++)
            v.direction[static_cast<size_t>(3 * a + b)] =
                image->GetDirection()(static_cast<unsigned>(a), static_cast<unsigned>(b));
    }
    const float *data = image->GetBufferPointer();
    v.voxels.assign(data, data + v.count()); // ITK's buffer: x fastest, then y, then z
    return v;
}

Volume read_layers(const std::string &dir)
{
    std::vector<std::string> files;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
        if (has_tiff_extension(it->path()) && it->is_regular_file())
            files.push_back(it->path().string());
    if (ec)
        throw Failure("cannot read the folder " + dir + ": " + ec.message(), kBadInput);
    if (files.empty())
        throw Failure("the folder " + dir + " holds no .tif layers", kBadInput);
    std::sort(files.begin(), files.end());
    for (const std::string &f : {files.front(), files.back()}) {
        itk::ImageIOBase::Pointer io = scalar_image_io(f);
        if (io->GetNumberOfDimensions() == 3 && io->GetDimensions(2) > 1)
            throw Failure("the layer " + f + " is a 3D image; a folder of layers holds 2D images", kBadInput);
    }
    using SeriesReader = itk::ImageSeriesReader<FloatImage>;
    SeriesReader::Pointer reader = SeriesReader::New();
    reader->SetFileNames(files);
    try {
        reader->Update();
    } catch (const itk::ExceptionObject &e) {
        throw Failure("cannot read the layers of " + dir + ": " + reason(e), kBadInput);
    }
    Volume v = from_itk(reader->GetOutput());
    v.spacing[2] = 1.0; // layers carry no Z spacing
    v.origin[2] = 0.0;
    return v;
}

// "<dir>/out.nii.gz" -> {"out", ".nii.gz"}: compressed formats keep both extensions so ITK picks the same format.
std::pair<std::string, std::string> split_name(const fs::path &p)
{
    const std::string name = p.filename().string();
    size_t dot = name.rfind('.');
    if (dot != std::string::npos && dot > 0 && name.compare(dot, std::string::npos, ".gz") == 0) {
        const size_t inner = name.rfind('.', dot - 1);
        if (inner != std::string::npos && inner > 0)
            dot = inner;
    }
    if (dot == std::string::npos || dot == 0)
        return {name, ""};
    return {name.substr(0, dot), name.substr(dot)};
}

template <typename T> void write_any(const BasicVolume<T> &v, const std::string &path)
{
    register_formats();
    using Image = itk::Image<T, 3>;
    const fs::path out(path);
    const fs::path dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        throw Failure("cannot write " + path + ": the folder " + dir.string() + " does not exist", kBadInput);
    if (!itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::WriteMode))
        throw Failure("cannot write " + path + ": unknown image format (use .nrrd, .nhdr, .nii, .nii.gz, .mha, .mhd "
                                               "or .tif)",
                      kBadInput);
    if (static_cast<int64_t>(v.voxels.size()) != v.count())
        throw Failure("write_volume: " + std::to_string(v.voxels.size()) + " voxels for a volume of " +
                          size_string(v.size),
                      kInternal);

    typename Image::Pointer image = Image::New();
    typename Image::RegionType region;
    typename Image::SpacingType spacing;
    typename Image::PointType origin;
    typename Image::DirectionType direction;
    for (unsigned a = 0; a < 3; a++) {
        region.SetSize(a, static_cast<itk::SizeValueType>(v.size[2 - a]));
        spacing[a] = v.spacing[a];
        origin[a] = v.origin[a];
        for (unsigned b = 0; b < 3; b++)
            direction(a, b) = v.direction[3 * a + b];
    }
    image->SetRegions(region);
    image->SetSpacing(spacing);
    image->SetOrigin(origin);
    image->SetDirection(direction);
    image->Allocate();
    std::copy(v.voxels.begin(), v.voxels.end(), image->GetBufferPointer());

    // Formats with a separate data file name it in the header: write both under their final names in a temporary
    // folder, then move them next to each other.
    const auto [stem, ext] = split_name(out);
    std::string lower = ext;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    const bool split = lower == ".mhd" || lower == ".nhdr";
    const std::string tag = ".tmp-" + std::to_string(static_cast<long>(getpid()));
    const fs::path staging = split ? dir / ("." + stem + tag) : fs::path();
    const fs::path tmp = split ? staging / out.filename() : dir / ("." + stem + tag + ext);
    auto clean = [&] {
        std::error_code ignored;
        if (split)
            fs::remove_all(staging, ignored);
        else
            fs::remove(tmp, ignored);
    };
    if (split && !fs::create_directory(staging, ec))
        throw Failure("cannot write " + path + ": cannot create " + staging.string() + ": " + ec.message(),
                      kBadInput);

    using Writer = itk::ImageFileWriter<Image>;
    typename Writer::Pointer writer = Writer::New();
    writer->SetFileName(tmp.string());
    writer->SetInput(image);
    try {
        writer->Update();
    } catch (const itk::ExceptionObject &e) {
        clean();
        throw Failure("cannot write " + path + ": " + reason(e), kBadInput);
    } catch (...) {
        clean();
        throw;
    }

    if (split) {
        std::vector<fs::path> data;
        for (fs::directory_iterator it(staging, ec), end; !ec && it != end; it.increment(ec))
            if (it->path().filename() != out.filename())
                data.push_back(it->path());
        for (const fs::path &d : data)
            if (!ec)
                fs::rename(d, dir / d.filename(), ec);
        if (!ec)
            fs::rename(tmp, out, ec);
    } else {
        fs::rename(tmp, out, ec);
    }
    if (ec) {
        clean();
        throw Failure("cannot write " + path + ": " + ec.message(), kBadInput);
    }
    clean();
}

} // namespace

std::string size_string(const std::array<int64_t, 3> &size)
{
    return std::to_string(size[0]) + " x " + std::to_string(size[1]) + " x " + std::to_string(size[2]);
}

Volume read_volume(const std::string &path)
{
    register_formats();
    std::error_code ec;
    if (fs::is_directory(path, ec))
        return read_layers(path);
    if (!fs::exists(path, ec))
        throw Failure("cannot read " + path + ": no such file", kBadInput);
    itk::ImageIOBase::Pointer io = scalar_image_io(path);
    using Reader = itk::ImageFileReader<FloatImage>;
    Reader::Pointer reader = Reader::New();
    reader->SetFileName(path);
    reader->SetImageIO(io);
    try {
        reader->Update();
    } catch (const itk::ExceptionObject &e) {
        throw Failure("cannot read " + path + ": " + reason(e), kBadInput);
    }
    return from_itk(reader->GetOutput());
}

void write_volume(const Volume &volume, const std::string &path) { write_any(volume, path); }
void write_volume(const LabelVolume &volume, const std::string &path) { write_any(volume, path); }
void write_volume(const Volume16 &volume, const std::string &path) { write_any(volume, path); }

} // namespace repmode::cli
