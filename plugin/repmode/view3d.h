// render's 3D view (docs/cli.md §3.7): coloured surface meshes inside the outline of the volume's box, lit by a
// headlight and drawn off-screen by VTK into an RGB picture.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include <vtkPolyData.h>
#include <vtkSmartPointer.h>

namespace repmode::cli {

struct ColouredMesh {
    vtkSmartPointer<vtkPolyData> mesh; // in the voxel-axes frame (label_mesh.h)
    std::array<uint8_t, 3> rgb;
};

// The view of a box [lo, hi] (the volume's voxels in the voxel-axes frame) and the meshes in it, `width` x `height`
// pixels, RGB, row 0 at the top, through the X display `display` (XDisplay::id). A Failure when VTK cannot draw.
std::vector<uint8_t> draw_view(const std::vector<ColouredMesh> &meshes, const std::array<double, 3> &lo,
                               const std::array<double, 3> &hi, int width, int height, void *display);

} // namespace repmode::cli
