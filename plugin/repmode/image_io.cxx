// Images in and out of the repmode tool, through ITK (see image_io.h).
#include "image_io.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <system_error>
#include <vector>


#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkMetaDataObject.h>
#include <itkImageSeriesReader.h>
#include <itkChangeInformationImageFilter.h>
#include <itkVectorImage.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>
#include <itkTIFFImageIOFactory.h>

#include <zlib.h>

#include "cli.h"
#include "output_paths.h"
#include "memory_limit.h"
#include "output_files.h"
#include "text_file.h"

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

// NRRD and MetaImage headers hold key/value fields that ITK writes and reads back; NIfTI and TIFF have none.
bool holds_fields(const itk::ImageIOBase &io)
{
    const std::string name = io.GetNameOfClass();
    return name == "NrrdImageIO" || name == "MetaImageIO";
}

bool has_tiff_extension(const fs::path &p)
{
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext == ".tif" || ext == ".tiff";
}

// The bytes that inflating the zlib or gzip stream of `in` (from its position to the end) gives, or the reason the
// stream is corrupt.
std::pair<int64_t, std::string> inflated_bytes(std::ifstream &in)
{
    z_stream z{};
    if (inflateInit2(&z, 15 + 32) != Z_OK) // 15 + 32: a zlib or gzip header, found by its first bytes
        return {0, "zlib cannot start"};
    std::vector<unsigned char> input(1 << 16), output(1 << 16);
    int64_t total = 0;
    int status = Z_OK;
    while (status != Z_STREAM_END) {
        if (z.avail_in == 0) {
            in.read(reinterpret_cast<char *>(input.data()), static_cast<std::streamsize>(input.size()));
            z.next_in = input.data();
            z.avail_in = static_cast<uInt>(in.gcount());
            if (z.avail_in == 0)
                break; // the stream ends before its end mark
        }
        z.next_out = output.data();
        z.avail_out = static_cast<uInt>(output.size());
        status = inflate(&z, Z_NO_FLUSH);
        total += static_cast<int64_t>(output.size() - z.avail_out);
        if (status != Z_OK && status != Z_STREAM_END)
            break;
    }
    const std::string why = status == Z_STREAM_END ? ""
                            : status == Z_OK || status == Z_BUF_ERROR
                                ? "the compressed voxel data ends before its end mark (truncated)"
                                : std::string("the compressed voxel data is corrupt (zlib: ") +
                                      (z.msg ? z.msg : "error " + std::to_string(status)) + ")";
    inflateEnd(&z);
    return {total, why};
}

// Why the voxel data of a MetaImage or uncompressed NIfTI file cannot be read whole, or "": their readers accept a
// short file, or a corrupt compressed one, silently (filling the missing voxels with whatever is in memory), while
// NRRD's and TIFF's readers check for themselves.
std::string voxel_data_problem(const std::string &path, const itk::ImageIOBase &io)
{
    const auto wanted = static_cast<int64_t>(io.GetImageSizeInBytes());
    const auto short_by = [&](int64_t present) {
        return present >= wanted ? std::string()
                                 : "the file is truncated (" + std::to_string(present) + " of the " +
                                       std::to_string(wanted) + " bytes of voxel data)";
    };
    std::error_code ec;
    const auto size = static_cast<int64_t>(fs::file_size(path, ec));
    if (ec)
        return "";
    const std::string name = io.GetNameOfClass();
    std::ifstream in(path, std::ios::binary);
    if (name == "MetaImageIO") {
        // The header is text lines up to "ElementDataFile = ..."; LOCAL data follows it, else it is another file.
        bool compressed = false;
        for (std::string line; std::getline(in, line);) {
            const auto eq = line.find('=');
            const std::string key = line.substr(0, line.find_first_of(" =")), value =
                eq == std::string::npos ? "" : line.substr(line.find_first_not_of(' ', eq + 1));
            if (key == "CompressedData")
                compressed = value.rfind("True", 0) == 0;
            if (key != "ElementDataFile")
                continue;
            const std::string file = value.substr(0, value.find_last_not_of(" \r") + 1);
            if (file.find(' ') != std::string::npos || file == "LIST")
                return ""; // a list of slices: the reader checks each
            std::ifstream data;
            int64_t data_size = size - static_cast<int64_t>(in.tellg());
            if (file != "LOCAL") {
                const fs::path other = fs::path(path).parent_path() / file;
                data_size = static_cast<int64_t>(fs::file_size(other, ec));
                if (ec)
                    return "its data file " + other.string() + " cannot be read: " + ec.message();
                data.open(other, std::ios::binary);
            }
            if (!compressed)
                return short_by(data_size);
            auto [inflated, why] = inflated_bytes(file == "LOCAL" ? in : data);
            return why.empty() ? short_by(inflated) : why;
        }
        return "";
    }
    if (name == "NiftiImageIO" && fs::path(path).extension() == ".gz") {
        // The header (348 bytes and at least a 4-byte extension flag) and the voxels, in one gzip stream.
        auto [inflated, why] = inflated_bytes(in);
        return why.empty() ? short_by(inflated - 352) : why;
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
        return in && offset >= 0 ? short_by(size - static_cast<int64_t>(offset)) : "";
    }
    return "";
}

// Checks what the file holds before reading it: one scalar component, at most 3 dimensions.
// The ImageIO that reads `path`, with the file's information read; or null, with the reason in `why`.
itk::ImageIOBase::Pointer read_information(const std::string &path, std::string &why)
{
    itk::ImageIOBase::Pointer io = itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::ReadMode);
    if (!io) {
        why = "not an image file ITK can read (.nrrd, .nhdr, .nii, .nii.gz, .mha, .mhd, .tif)";
        return nullptr;
    }
    io->SetFileName(path);
    try {
        io->ReadImageInformation();
    } catch (const itk::ExceptionObject &e) {
        why = describe(e);
        return nullptr;
    }
    return io;
}

itk::ImageIOBase::Pointer scalar_image_io(const std::string &path)
{
    std::string why;
    itk::ImageIOBase::Pointer io = read_information(path, why);
    if (!io)
        throw Failure("cannot read " + path + ": " + why, kBadInput);
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
    for (unsigned a = 0; a < io->GetNumberOfDimensions(); a++)
        if (io->GetDimensions(a) == 0)
            throw Failure("cannot read " + path + ": it has no voxels (size 0 along axis " + "XYZ"[a] + ")", kBadInput);
    const std::string problem = voxel_data_problem(path, *io);
    if (!problem.empty())
        throw Failure("cannot read " + path + ": " + problem, kBadInput);
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

namespace {

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
    std::string text;
    for (std::string line; std::getline(lines, line);) {
        const auto first = line.find_first_not_of(" \t\r");
        if (first == std::string::npos)
            continue;
        line = line.substr(first, line.find_last_not_of(" \t\r") - first + 1);
        // "itk::ERROR: NrrdImageIO(0x5581...): Error reading x.nrrd" -> "Error reading x.nrrd": the object's address
        // means nothing to a user.
        for (const std::string prefix : {"itk::ERROR: ", "ITK ERROR: "})
            if (line.compare(0, prefix.size(), prefix) == 0) {
                const auto colon = line.find("): ");
                line = colon == std::string::npos ? line.substr(prefix.size()) : line.substr(colon + 3);
            }
        text += (text.empty() || text.back() == ':' ? (text.empty() ? "" : " ") : "; ") + line;
    }
    return text.empty() ? "unknown ITK error" : text;
}

std::string size_string(const std::array<int64_t, 3> &size)
{
    return std::to_string(size[0]) + " x " + std::to_string(size[1]) + " x " + std::to_string(size[2]);
}

VolumeSource::VolumeSource(const std::string &path) : path_(path)
{
    register_formats();
    bool streams = true; // the series reader reads layer by layer
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
        itk::ImageIOBase::Pointer io = scalar_image_io(path);
        streams = io->CanStreamRead();
        reader->SetImageIO(io);
        stages_ = {reader.GetPointer()};
        image_ = reader->GetOutput();
    }
    try {
        image_->UpdateOutputInformation();
    } catch (const itk::ExceptionObject &e) {
        throw Failure("cannot read " + path + ": " + describe(e), kBadInput);
    }
    if (!streams)
        check_voxels_fit(1);
}

void VolumeSource::check_voxels_fit(unsigned copies) const
{
    const auto size = image_->GetLargestPossibleRegion().GetSize();
    const std::array<int64_t, 3> zyx{static_cast<int64_t>(size[2]), static_cast<int64_t>(size[1]),
                                     static_cast<int64_t>(size[0])};
    const double voxels = static_cast<double>(zyx[0]) * static_cast<double>(zyx[1]) * static_cast<double>(zyx[2]);
    const double bytes = voxels * sizeof(float) * copies;
    check_memory(bytes >= 1.8e19 ? std::numeric_limits<uint64_t>::max() : static_cast<uint64_t>(bytes), path_,
                 "its " + size_string(zyx) + " voxels (Z x Y x X), read whole as 32-bit floats" +
                     (copies > 1 ? " and copied," : ","));
}

Volume read_volume(const std::string &path)
{
    VolumeSource source(path);
    source.check_voxels_fit(2); // ITK's image, then the volume's copy
    try {
        source.image()->Update();
    } catch (const itk::ExceptionObject &e) {
        throw Failure("cannot read " + path + ": " + describe(e), kBadInput);
    }
    return from_itk(source.image());
}

namespace {

// Adds the line "key = value" to the header of the MetaImage file `file` (written as the output `path`), before its
// last line, ElementDataFile. MetaIO cannot take the field while it writes: a streamed write reads its header back
// between pieces, and that reading fails on a value of more than a few hundred characters. What follows the insertion
// (that line, and a .mha's voxels) moves up in place, from the end, so no other file is made; the file is a staged
// one, removed if this fails.
void add_metaimage_field(const std::string &file, const std::string &key, const std::string &value,
                         const std::string &path)
{
    const auto fail = [&](const std::string &why) {
        throw Failure("cannot write " + path + ": " + why, kBadInput);
    };
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    std::string line;
    std::streamoff at = 0; // where the ElementDataFile line starts
    while (std::getline(f, line) && line.rfind("ElementDataFile", 0) != 0)
        at = f.tellg();
    if (!f)
        fail("its MetaImage header has no ElementDataFile");
    f.seekg(0, std::ios::end);
    const std::streamoff size = f.tellg();
    const std::string insert = key + " = " + value + "\n";
    const auto shift = static_cast<std::streamoff>(insert.size());
    std::vector<char> chunk(1 << 20);
    for (std::streamoff end = size; end > at && f;) {
        const std::streamoff n = std::min<std::streamoff>(static_cast<std::streamoff>(chunk.size()), end - at);
        end -= n;
        f.seekg(end);
        f.read(chunk.data(), n);
        f.seekp(end + shift);
        f.write(chunk.data(), n);
    }
    f.seekp(at);
    f.write(insert.data(), shift);
    if (!f.flush())
        fail("the disk is full, or the folder cannot be written");
}

} // namespace

std::string provenance_sidecar(const std::string &path)
{
    register_formats();
    const itk::ImageIOBase::Pointer io =
        itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::WriteMode);
    return io && !holds_fields(*io) ? path + ".json" : std::string();
}

bool is_image_file(const std::string &path)
{
    register_formats();
    std::error_code ec;
    return fs::is_regular_file(path, ec) &&
           itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::ReadMode) != nullptr;
}

std::string read_provenance(const std::string &path)
{
    register_formats();
    const std::string sidecar = provenance_sidecar(path);
    if (!sidecar.empty()) {
        std::error_code ec;
        return fs::exists(sidecar, ec) ? read_text_file(sidecar, "the provenance") : std::string();
    }
    std::string why;
    const itk::ImageIOBase::Pointer io = read_information(path, why);
    if (!io)
        throw Failure("cannot read " + path + ": " + why, kBadInput);
    std::string record;
    itk::ExposeMetaData<std::string>(io->GetMetaDataDictionary(), kProvenanceKey, record);
    return record;
}

template <typename TImage>
void write_image(TImage *image, const std::string &path, OutputFiles &outputs, unsigned divisions,
                 const std::string &provenance)
{
    if (!has_image_writer(path))
        throw Failure("cannot write " + path + ": unknown image format (use .nrrd, .nhdr, .nii, .nii.gz, .mha, .mhd "
                                               "or .tif)",
                      kBadInput);
    const std::string staged = outputs.stage(path);
    // Made for the staged name: MetaImage's IO keeps the name it was made for and writes pieces after the first there.
    const itk::ImageIOBase::Pointer io =
        itk::ImageIOFactory::CreateImageIO(staged.c_str(), itk::IOFileModeEnum::WriteMode);
    using Writer = itk::ImageFileWriter<TImage>;
    typename Writer::Pointer writer = Writer::New();
    const bool metaimage = std::string(io->GetNameOfClass()) == "MetaImageIO";
    if (!provenance.empty() && holds_fields(*io) && !metaimage) {
        itk::MetaDataDictionary fields = image->GetMetaDataDictionary(); // a segmentation's own fields stay
        itk::EncapsulateMetaData<std::string>(fields, kProvenanceKey, provenance);
        io->SetMetaDataDictionary(fields);
        writer->UseInputMetaDataDictionaryOff();
    } else if (!provenance.empty() && !holds_fields(*io)) {
        write_text(provenance_sidecar(path), provenance + "\n", outputs);
    }
    writer->SetImageIO(io);
    writer->SetFileName(staged);
    writer->SetInput(image);
    // A .mhd is written whole: MetaIO writes the pieces after the first into a file of its data file's name in the
    // current folder, when there is one, rather than beside the header.
    const bool split = metaimage && fs::path(path).extension() == ".mhd";
    writer->SetNumberOfStreamDivisions(split ? 1 : divisions);
    try {
        writer->Update();
    } catch (const itk::ExceptionObject &e) {
        throw Failure("cannot write " + path + ": " + describe(e), kBadInput);
    }
    if (!provenance.empty() && metaimage)
        add_metaimage_field(staged, kProvenanceKey, provenance, path);
    // MetaImage's and NIfTI's writers report a failed write (a full disk) on stderr only, and succeed: the file is
    // read back as a reader would, to be sure that it holds every voxel.
    std::string problem;
    const itk::ImageIOBase::Pointer written = read_information(staged, problem);
    if (written)
        problem = voxel_data_problem(staged, *written);
    if (!problem.empty())
        throw Failure("cannot write " + path + ": the file written is incomplete (" + problem + "); is the disk full?",
                      kBadInput);
}

template void write_image(itk::Image<float, 3> *, const std::string &, OutputFiles &, unsigned, const std::string &);
template void write_image(itk::Image<uint8_t, 3> *, const std::string &, OutputFiles &, unsigned, const std::string &);
template void write_image(itk::VectorImage<float, 3> *, const std::string &, OutputFiles &, unsigned,
                          const std::string &);

namespace {

template <typename T> void write_any(const BasicVolume<T> &v, const std::string &path, OutputFiles &outputs)
{
    if (static_cast<int64_t>(v.voxels.size()) != v.count())
        throw Failure("write_volume: " + std::to_string(v.voxels.size()) + " voxels for a volume of " +
                          size_string(v.size),
                      kInternal);
    write_image(to_itk(v).GetPointer(), path, outputs, 1);
}

} // namespace

void write_volume(const Volume &volume, const std::string &path, OutputFiles &outputs)
{
    write_any(volume, path, outputs);
}
void write_volume(const LabelVolume &volume, const std::string &path, OutputFiles &outputs)
{
    write_any(volume, path, outputs);
}
void write_volume(const Volume16 &volume, const std::string &path, OutputFiles &outputs)
{
    write_any(volume, path, outputs);
}

} // namespace repmode::cli
