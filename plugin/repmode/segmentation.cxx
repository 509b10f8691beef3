// The .seg.nrrd of 3D Slicer's segmentation storage (vtkMRMLSegmentationStorageNode; docs/cli.md §4.5): a NRRD label
// map whose header carries `Segment<i>_<key>:=<value>` fields per segment and `Segmentation_<key>:=<value>` fields for
// the whole. ITK's NRRD writer turns every string entry of the image's metadata dictionary into such a field.
#include "segmentation.h"

#include <algorithm>
#include <charconv>
#include <sstream>

#include <itkImageDuplicator.h>
#include <itkMetaDataObject.h>

#include "cli.h"
#include "image_io.h"

namespace repmode::cli {

namespace {

using LabelImage = itk::Image<uint8_t, 3>;

// Slicer's binary labelmap representation: the only one written, so the source and the only one contained.
constexpr const char *kBinaryLabelmap = "Binary labelmap";

// The shortest text that reads back as `v` (Slicer writes matrices with vtkNumberToString, which does the same).
std::string shortest(double v)
{
    char text[32];
    const auto end = std::to_chars(text, text + sizeof text, v).ptr;
    return std::string(text, end);
}

// "Reference image geometry" (vtkSegmentationConverter::SerializeImageGeometry): the IJK-to-RAS matrix row by row,
// then the extent, each followed by ';'. It gives Slicer the grid that segments edited later are drawn on: the
// input's. ITK's geometry is LPS: RAS negates the first two rows.
std::string reference_geometry(const LabelImage *image)
{
    const auto &spacing = image->GetSpacing();
    const auto &origin = image->GetOrigin();
    const auto &direction = image->GetDirection();
    const auto size = image->GetLargestPossibleRegion().GetSize();
    std::string text;
    for (unsigned r = 0; r < 3; r++) {
        const double flip = r < 2 ? -1.0 : 1.0;
        for (unsigned c = 0; c < 3; c++)
            text += shortest(flip * direction[r][c] * spacing[c] + 0.0) + ";"; // + 0.0: no "-0"
        text += shortest(flip * origin[r] + 0.0) + ";";
    }
    text += "0;0;0;1;";
    for (unsigned axis = 0; axis < 3; axis++)
        text += "0;" + std::to_string(static_cast<long long>(size[axis]) - 1) + ";";
    return text;
}

// Each label's bounding box "i0 i1 j0 j1 k0 k1" in voxel indices (x, y, z), inclusive; "0 -1 0 -1 0 -1" when the
// label is absent, as Slicer writes an empty segment.
std::vector<std::string> extents(const LabelImage *image, size_t labels)
{
    const auto size = image->GetLargestPossibleRegion().GetSize();
    std::vector<std::array<long long, 6>> box(labels, {0, -1, 0, -1, 0, -1});
    std::vector<bool> seen(labels, false);
    const uint8_t *v = image->GetBufferPointer();
    for (long long k = 0; k < static_cast<long long>(size[2]); k++)
        for (long long j = 0; j < static_cast<long long>(size[1]); j++)
            for (long long i = 0; i < static_cast<long long>(size[0]); i++, v++) {
                if (*v == 0 || *v > labels)
                    continue;
                auto &b = box[*v - 1];
                const long long at[3] = {i, j, k};
                for (int a = 0; a < 3; a++) {
                    b[2 * a] = seen[*v - 1] ? std::min(b[2 * a], at[a]) : at[a];
                    b[2 * a + 1] = seen[*v - 1] ? std::max(b[2 * a + 1], at[a]) : at[a];
                }
                seen[*v - 1] = true;
            }
    std::vector<std::string> out;
    for (const auto &b : box)
        out.push_back(std::to_string(b[0]) + " " + std::to_string(b[1]) + " " + std::to_string(b[2]) + " " +
                      std::to_string(b[3]) + " " + std::to_string(b[4]) + " " + std::to_string(b[5]));
    return out;
}

// "r g b" in 0..1, as Slicer's stream of doubles prints them.
std::string color_text(const std::array<unsigned char, 3> &rgb)
{
    std::ostringstream text;
    text << rgb[0] / 255.0 << ' ' << rgb[1] / 255.0 << ' ' << rgb[2] / 255.0;
    return text.str();
}

} // namespace

void check_segmentation_name(const std::string &path, const std::string &option)
{
    const std::string ext = ".nrrd";
    if (path.size() <= ext.size() || path.compare(path.size() - ext.size(), ext.size(), ext) != 0)
        throw Failure(option + ": '" + path + "' is not a .seg.nrrd file (Slicer reads segmentations as NRRD)",
                      kBadInput);
}

void write_segmentation(LabelImage *labels, const std::vector<Segment> &segments, const std::string &path,
                        OutputFiles &outputs, const std::string &provenance)
{
    auto copy = itk::ImageDuplicator<LabelImage>::New();
    try {
        labels->SetRequestedRegionToLargestPossibleRegion();
        labels->Update();
        copy->SetInputImage(labels);
        copy->Update();
    } catch (const itk::ExceptionObject &e) {
        throw Failure("cannot write " + path + ": " + describe(e), kBadInput);
    }
    LabelImage::Pointer image = copy->GetOutput();

    itk::MetaDataDictionary &header = image->GetMetaDataDictionary();
    const auto field = [&header](const std::string &key, const std::string &value) {
        itk::EncapsulateMetaData<std::string>(header, key, value);
    };
    field("Segmentation_MasterRepresentation", kBinaryLabelmap);
    field("Segmentation_ContainedRepresentationNames", std::string(kBinaryLabelmap) + "|");
    // "name|value|description&" per parameter (vtkSegmentationConverter::SerializeAllConversionParameters).
    field("Segmentation_ConversionParameters",
          "Reference image geometry|" + reference_geometry(image) +
              "|Image geometry description string determining the geometry of the labelmap that is created in "
              "course of conversion. Can be copied from a volume, using the button.&");
    // The file holds the whole reference grid, so its extent starts at 0.
    field("Segmentation_ReferenceImageExtentOffset", "0 0 0");
    const std::vector<std::string> extent = extents(image, segments.size());
    for (size_t i = 0; i < segments.size(); i++) {
        const std::string key = "Segment" + std::to_string(i) + "_";
        field(key + "ID", segments[i].name);
        field(key + "Name", segments[i].name);
        field(key + "NameAutoGenerated", "0");
        field(key + "Color", color_text(segments[i].color));
        field(key + "ColorAutoGenerated", segments[i].color_given ? "0" : "1");
        field(key + "Extent", extent[i]);
        field(key + "LabelValue", std::to_string(i + 1));
        field(key + "Layer", "0"); // the tasks' labels never overlap: one layer holds them all
        // A model's prediction is a draft for review: Slicer's segment status "in progress".
        field(key + "Tags", "Segmentation.Status:inprogress|");
    }
    write_image(image.GetPointer(), path, outputs, 1, provenance);
}

} // namespace repmode::cli
