// Images in and out of the repmode tool, through ITK (see image_io.h).
#include "image_io.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <system_error>

#include <sys/types.h>
#include <unistd.h>

#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkImageSeriesReader.h>
#include <itkChangeInformationImageFilter.h>
#include <itkVectorImage.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>
#include <itkTIFFImageIOFactory.h>

#include "cli.h"
#include "output_paths.h"

namespace fs = std::filesystem;

namespace repmode::cli {

namespace {

// docs/cli.md §1.4's formats, registered by hand: only the IO modules we link (CMakeLists.txt) exist, and registering
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

// Whether one of the registered formats writes a file of this name (chosen by its extension).
bool has_image_writer(const std::string &path)
{
    register_formats();
    return itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::WriteMode) != nullptr;
}

bool has_tiff_extension(const fs::path &p)
{
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext == ".tif" || ext == ".tiff";
}

// The bytes of voxel data a file holds, for the uncompressed formats whose readers accept a short file silently
// (MetaImage and NIfTI fill the missing voxels with whatever is in memory); -1 when the format checks itself.
int64_t voxel_bytes_present(const std::string &path, const itk::ImageIOBase &io)
{
    std::error_code ec;
    const auto size = static_cast<int64_t>(fs::file_size(path, ec));
    if (ec)
        return -1;
    const std::string name = io.GetNameOfClass();
    std::ifstream in(path, std::ios::binary);
    if (name == "MetaImageIO") {
        // The header is text lines up to "ElementDataFile = ..."; LOCAL data follows it, else it is another file.
        for (std::string line; std::getline(in, line);) {
            const auto eq = line.find('=');
            const std::string key = line.substr(0, line.find_first_of(" =")), value =
                eq == std::string::npos ? "" : line.substr(line.find_first_not_of(' ', eq + 1));
            if (key == "CompressedData" && value.rfind("True", 0) == 0)
                return -1;
            if (key == "ElementDataFile") {
                std::string file = value.substr(0, value.find_last_not_of(" \r") + 1);
                if (file == "LOCAL")
                    return size - static_cast<int64_t>(in.tellg());
                if (file.find(' ') != std::string::npos || file == "LIST")
                    return -1; // a list of slices: the reader checks each
                const auto data = static_cast<int64_t>(fs::file_size(fs::path(path).parent_path() / file, ec));
                return ec ? -1 : data;
            }
        }
        return -1;
    }
    if (name == "NiftiImageIO" && fs::path(path).extension() == ".nii") {
        // NIfTI-1: sizeof_hdr 348, vox_offset a float at byte 108; NIfTI-2: 540, an int64 at byte 168.
        int32_t header = 0;
        in.read(reinterpret_cast<char *>(&header), 4);
        double offset = -1;
        if (header == 348) {
            float v = 0;
            in.seekg(108);
            in.read(reinterpret_cast<char *>(&v), 4);
            offset = v;
        } else if (header == 540) {
            int64_t v = 0;
            in.seekg(168);
            in.read(reinterpret_cast<char *>(&v), 8);
            offset = static_cast<double>(v);
        }
        return in && offset >= 0 ? size - static_cast<int64_t>(offset) : -1;
    }
    return -1;
}

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
        throw Failure("cannot read " + path + ": " + describe(e), kBadInput);
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
    const int64_t present = voxel_bytes_present(path, *io), wanted = static_cast<int64_t>(io->GetImageSizeInBytes());
    if (present >= 0 && present < wanted)
        throw Failure("cannot read " + path + ": the file is truncated (" + std::to_string(present) + " of the " +
                          std::to_string(wanted) + " bytes of voxel data)",
                      kBadInput);
    return io;
}

} // namespace

template <typename TPixel> Volume from_itk(const itk::Image<TPixel, 3> *image)
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
    const TPixel *data = image->GetBufferPointer();
    v.voxels.assign(data, data + v.count()); // ITK's buffer: x fastest, then y, then z
    return v;
}

template Volume from_itk(const itk::Image<float, 3> *);
template Volume from_itk(const itk::Image<uint8_t, 3> *);

namespace {

// The sorted .tif layers of a folder, checked to be 2D scalar images.
std::vector<std::string> layer_files(const std::string &dir)
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
    return files;
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

template <typename T> typename itk::Image<T, 3>::Pointer to_itk(const BasicVolume<T> &v)
{
    using Image = itk::Image<T, 3>;
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
    return image;
}

} // namespace

// The first meaningful line of an ITK exception: its descriptions run over several lines of internals.
void check_image_output(const std::string &path, const std::string &option)
{
    check_output_path(path, option);
    if (!has_image_writer(path))
        throw Failure(option + ": no image format for the name " + path +
                          " (.nrrd, .nhdr, .nii, .nii.gz, .mha, .mhd, .tif or .tiff)",
                      kBadInput);
}

std::string describe(const itk::ExceptionObject &e)
{
    std::istringstream lines(e.GetDescription());
    for (std::string line; std::getline(lines, line);) {
        const auto first = line.find_first_not_of(" \t\r");
        if (first == std::string::npos)
            continue;
        const auto last = line.find_last_not_of(" \t\r");
        line = line.substr(first, last - first + 1);
        // "ITK ERROR: RepModeImageFilter(0x5581...): the model has no task" -> "the model has no task"
        const std::string prefix = "ITK ERROR: ";
        if (line.compare(0, prefix.size(), prefix) == 0) {
            const auto colon = line.find("): ");
            line = colon == std::string::npos ? line.substr(prefix.size()) : line.substr(colon + 3);
        }
        return line;
    }
    return "unknown ITK error";
}

std::string size_string(const std::array<int64_t, 3> &size)
{
    return std::to_string(size[0]) + " x " + std::to_string(size[1]) + " x " + std::to_string(size[2]);
}

VolumeSource::VolumeSource(const std::string &path) : path_(path)
{
    register_formats();
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        using SeriesReader = itk::ImageSeriesReader<FloatImage>;
        SeriesReader::Pointer reader = SeriesReader::New();
        reader->SetFileNames(layer_files(path));
        try {
            reader->UpdateOutputInformation();
        } catch (const itk::ExceptionObject &e) {
            throw Failure("cannot read the layers of " + path + ": " + describe(e), kBadInput);
        }
        // Layers carry no Z spacing or origin: 1 and 0, whatever the series reader guessed.
        using Change = itk::ChangeInformationImageFilter<FloatImage>;
        Change::Pointer change = Change::New();
        change->SetInput(reader->GetOutput());
        FloatImage::SpacingType spacing = reader->GetOutput()->GetSpacing();
        FloatImage::PointType origin = reader->GetOutput()->GetOrigin();
        spacing[2] = 1.0;
        origin[2] = 0.0;
        change->SetOutputSpacing(spacing);
        change->SetOutputOrigin(origin);
        change->ChangeSpacingOn();
        change->ChangeOriginOn();
        stages_ = {reader.GetPointer(), change.GetPointer()};
        image_ = change->GetOutput();
    } else {
        if (!fs::exists(path, ec))
            throw Failure("cannot read " + path + ": no such file", kBadInput);
        using Reader = itk::ImageFileReader<FloatImage>;
        Reader::Pointer reader = Reader::New();
        reader->SetFileName(path);
        reader->SetImageIO(scalar_image_io(path));
        stages_ = {reader.GetPointer()};
        image_ = reader->GetOutput();
    }
    try {
        image_->UpdateOutputInformation();
    } catch (const itk::ExceptionObject &e) {
        throw Failure("cannot read " + path + ": " + describe(e), kBadInput);
    }
}

Volume read_volume(const std::string &path)
{
    VolumeSource source(path);
    try {
        source.image()->Update();
    } catch (const itk::ExceptionObject &e) {
        throw Failure("cannot read " + path + ": " + describe(e), kBadInput);
    }
    return from_itk(source.image());
}

namespace {

// Removes the temporary files (or folders, for .mhd and .nhdr) that runs killed outright (SIGKILL, a power cut) left
// for the output `stem``ext` in `dir`: ".<stem>.tmp-<pid><ext>" whose process no longer exists.
void remove_stale_temporaries(const fs::path &dir, const std::string &stem, const std::string &ext)
{
    const std::string prefix = "." + stem + ".tmp-";
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.compare(0, prefix.size(), prefix) != 0)
            continue;
        std::string rest = name.substr(prefix.size());
        if (!ext.empty() && rest.size() > ext.size() && rest.compare(rest.size() - ext.size(), ext.size(), ext) == 0)
            rest.resize(rest.size() - ext.size());
        if (rest.empty() || rest.find_first_not_of("0123456789") != std::string::npos || rest.size() > 9)
            continue;
        const pid_t pid = static_cast<pid_t>(std::stol(rest));
        if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) {
            std::error_code ignored;
            fs::remove_all(it->path(), ignored);
        }
    }
}

} // namespace

template <typename TImage> void write_image(TImage *image, const std::string &path, unsigned divisions)
{
    register_formats();
    const fs::path out(path);
    const fs::path dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        throw Failure("cannot write " + path + ": the folder " + dir.string() + " does not exist", kBadInput);
    if (!has_image_writer(path))
        throw Failure("cannot write " + path + ": unknown image format (use .nrrd, .nhdr, .nii, .nii.gz, .mha, .mhd "
                                               "or .tif)",
                      kBadInput);

    // Formats with a separate data file name it in the header: write both under their final names in a temporary
    // folder, then move them next to each other.
    const auto [stem, ext] = split_name(out);
    remove_stale_temporaries(dir, stem, ext);
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

    using Writer = itk::ImageFileWriter<TImage>;
    typename Writer::Pointer writer = Writer::New();
    writer->SetFileName(tmp.string());
    writer->SetInput(image);
    writer->SetNumberOfStreamDivisions(divisions);
    try {
        writer->Update();
    } catch (const itk::ExceptionObject &e) {
        clean();
        throw Failure("cannot write " + path + ": " + describe(e), kBadInput);
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

template void write_image(itk::Image<float, 3> *, const std::string &, unsigned);
template void write_image(itk::Image<uint8_t, 3> *, const std::string &, unsigned);
template void write_image(itk::VectorImage<float, 3> *, const std::string &, unsigned);

namespace {

template <typename T> void write_any(const BasicVolume<T> &v, const std::string &path)
{
    if (static_cast<int64_t>(v.voxels.size()) != v.count())
        throw Failure("write_volume: " + std::to_string(v.voxels.size()) + " voxels for a volume of " +
                          size_string(v.size),
                      kInternal);
    write_image(to_itk(v).GetPointer(), path, 1);
}

} // namespace

void write_volume(const Volume &volume, const std::string &path) { write_any(volume, path); }
void write_volume(const LabelVolume &volume, const std::string &path) { write_any(volume, path); }
void write_volume(const Volume16 &volume, const std::string &path) { write_any(volume, path); }

} // namespace repmode::cli
