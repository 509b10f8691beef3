// A label map written as a 3D Slicer segmentation (.seg.nrrd, docs/cli.md §4.5): repmode predict --segmentation and
// RepModeSegmentation's segmentation output share this writer.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <itkImage.h>

#include "output_files.h"

namespace repmode::cli {

// One segment: label value i + 1 for segment i, as the label map numbers tasks.
struct Segment {
    std::string name;                   // the task's name, also the segment's ID
    std::array<unsigned char, 3> color; // 0..255, the colour table's
    bool color_given;                   // the model's colour, not the default palette
};

// Updates `labels` whole and writes it as the output `path` of `outputs` (.nrrd) with the header fields of Slicer's
// segmentation storage: one layer holding every segment, each segment's extent its bounding box, and the
// `provenance` record (docs/cli.md §1.6). Problems are Failures naming the file.
void write_segmentation(itk::Image<uint8_t, 3> *labels, const std::vector<Segment> &segments, const std::string &path,
                        OutputFiles &outputs, const std::string &provenance);

// Fails unless `path` names a NRRD file (Slicer reads segmentations from .seg.nrrd files); `option` names the flag.
void check_segmentation_name(const std::string &path, const std::string &option);

} // namespace repmode::cli
