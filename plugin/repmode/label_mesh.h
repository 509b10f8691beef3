// Surface meshes of a label map (docs/cli.md §3.9): one closed, smoothed triangle mesh per label, made with VTK and
// written as .vtp, .stl or .obj. Shared by render's 3D view, predict --surfaces and the surfaces subcommand.
#pragma once

#include <string>
#include <vector>

#include <vtkImageData.h>
#include <vtkPolyData.h>
#include <vtkSmartPointer.h>

#include "image_io.h"

namespace repmode::cli {

// Where a mesh's points are put. physical: ITK's physical space (LPS), origin + direction · (index ⊙ spacing), where
// the files go; voxel_axes: index ⊙ spacing along the voxel grid's own axes, where render draws (its slices ignore
// the direction too).
enum class Frame { physical, voxel_axes };

class LabelMesher {
  public:
    // Labels are the map's values rounded; 0 and below (and values that are not finite) are background.
    explicit LabelMesher(const Volume &labels);
    // The labels present, ascending.
    const std::vector<long> &labels() const { return labels_; }
    // The boundary of the voxels of `label` (discrete flying edges on the map padded with background, so that it is
    // closed), smoothed by a windowed sinc filter, in `frame`, with outward point normals; empty when the label is
    // absent.
    vtkSmartPointer<vtkPolyData> mesh(long label, Frame frame) const;

  private:
    vtkSmartPointer<vtkImageData> grid_; // index space, one background voxel of padding on every side
    Volume geometry_;                    // the map's size, spacing, origin and direction (no voxels)
    std::vector<long> labels_;
};

struct NamedSurface {
    std::string name; // the file name without its extension
    vtkSmartPointer<vtkPolyData> mesh;
};

// The file formats of a comma list ("vtp", "stl", "obj"); a Failure naming `option` for anything else.
std::vector<std::string> parse_surface_formats(const std::string &list, const std::string &option);

// A Failure naming `option`, before any work, unless `dir` is a writable folder or can be created as one.
void check_surface_folder(const std::string &dir, const std::string &option);

// Writes <dir>/<name>.<format> for every surface and format as outputs of `outputs` (the folder made if missing),
// physical meshes marked as LPS the way 3D Slicer reads them.
void write_surfaces(const std::vector<NamedSurface> &surfaces, const std::string &dir,
                    const std::vector<std::string> &formats, OutputFiles &outputs);

} // namespace repmode::cli
