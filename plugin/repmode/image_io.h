// Images in and out of the repmode tool through ITK (docs/cli.md §1.4): the format follows the file name (.nrrd, .nhdr,
// .nii, .nii.gz, .mha, .mhd, .tif/.tiff), and a directory of 2D TIFF layers (00.tif, 01.tif, ..., sorted by name)
// is read as one 3D volume. Every problem with a file is a Failure (exit code 1) naming the file.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <itkImage.h>
#include <itkProcessObject.h>

#include "output_files.h"

namespace repmode::cli {

using FloatImage = itk::Image<float, 3>;

// A scalar 3D volume with its geometry. Voxels are Z-major with X fastest, as repmode's tensors (core.h); `size` is
// in repmode's order (Z, Y, X), while the physical geometry keeps ITK's order (x, y, z) so that it round-trips
// unchanged: spacing[0] is the X spacing, direction is ITK's row-major 3x3 matrix.
template <typename T> struct BasicVolume {
    std::array<int64_t, 3> size{0, 0, 0};       // Z, Y, X
    std::array<double, 3> spacing{1.0, 1.0, 1.0}; // x, y, z
    std::array<double, 3> origin{0.0, 0.0, 0.0};  // x, y, z
    std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};
    std::vector<T> voxels; // size[0]·size[1]·size[2]

    int64_t count() const { return size[0] * size[1] * size[2]; }
    // The same geometry with other voxels (zero-filled).
    template <typename U> BasicVolume<U> like() const
    {
        BasicVolume<U> v;
        v.size = size;
        v.spacing = spacing;
        v.origin = origin;
        v.direction = direction;
        v.voxels.assign(static_cast<size_t>(count()), U(0));
        return v;
    }
};

using Volume = BasicVolume<float>;        // intensities, predictions, probabilities
using LabelVolume = BasicVolume<uint8_t>; // label maps
using Volume16 = BasicVolume<uint16_t>;    // 16-bit scans (Vesuvius surface volumes)

// Reads a scalar image of any pixel type (cast to float), or a directory of 2D TIFF layers (Z spacing 1). Refuses
// multi-component images (RGB, vectors) and images of more than 3 dimensions; a 2D image is a volume of one layer.
Volume read_volume(const std::string &path);

// The voxels (as floats) and geometry of an ITK image whose whole buffer is up to date. Instantiated for float and
// 8-bit images.
template <typename TPixel> Volume from_itk(const itk::Image<TPixel, 3> *image);

// An image file, or a directory of 2D TIFF layers (Z spacing 1, Z origin 0), as the output of an ITK reading
// pipeline whose information is read and checked (scalar, at most 3D) but whose voxels are not: callers update it
// whole or region by region. MetaImage, uncompressed NIfTI and TIFF layers are read region by region; other
// formats are read whole on the first update.
class VolumeSource {
  public:
    explicit VolumeSource(const std::string &path);
    FloatImage *image() const { return image_; }
    // Fails, naming the file, unless `copies` float copies of the whole volume fit in the memory available. Formats
    // read whole on the first update are checked once by the constructor.
    void check_voxels_fit(unsigned copies) const;
    const std::string &path() const { return path_; }

  private:
    std::string path_;
    std::vector<itk::ProcessObject::Pointer> stages_; // the pipeline stays alive with its output
    FloatImage *image_ = nullptr;
};

// The sorted .tif layers of a folder read as one volume, checked to be 2D scalar images.
std::vector<std::string> layer_files(const std::string &dir);

// Writes the output of a pipeline (updating it) as the output `path` of `outputs` (staged under a temporary name
// until the run's outputs are committed), in `divisions` pieces along Z when the format writes region by region
// (.mha, uncompressed NIfTI), else whole. Errors of the pipeline upstream become Failures naming `path`.
// A `provenance` record (docs/cli.md §1.6) goes into the header of NRRD and MetaImage files (the field
// kProvenanceKey, beside the image's own metadata) and into the sidecar `path`.json for the other formats.
// Instantiated for float and 8-bit scalar images and float vector images.
template <typename TImage>
void write_image(TImage *image, const std::string &path, OutputFiles &outputs, unsigned divisions,
                 const std::string &provenance = std::string());

// The header field of an image's provenance record.
inline constexpr const char *kProvenanceKey = "repmode.provenance";

// The provenance record of the image `path`: its header field, else its sidecar `path`.json; empty when it has
// neither. A Failure naming the file when it cannot be read.
std::string read_provenance(const std::string &path);

// Whether `path` is a file that one of the image formats of §1.4 reads (by its content, not its name alone).
bool is_image_file(const std::string &path);

// The sidecar that holds the provenance of an image whose format has no header fields for it, else empty.
std::string provenance_sidecar(const std::string &path);

// Writes the volume with its spacing, origin and direction, as write_image.
void write_volume(const Volume &volume, const std::string &path, OutputFiles &outputs);
void write_volume(const LabelVolume &volume, const std::string &path, OutputFiles &outputs);
void write_volume(const Volume16 &volume, const std::string &path, OutputFiles &outputs);

// Fails before any work when ITK has no writer for the name of `path` (docs/cli.md §1.4) or the path cannot be
// written (check_output_path).
void check_image_output(const std::string &path, const std::string &option);

// The whole reason of an ITK exception on one line: its lines joined, without ITK's "ITK ERROR: Class(0x...): "
// prefixes.
std::string describe(const itk::ExceptionObject &e);

// "Z x Y x X" for messages.
std::string size_string(const std::array<int64_t, 3> &size);

} // namespace repmode::cli
