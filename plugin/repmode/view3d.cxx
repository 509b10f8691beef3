// render's 3D view (view3d.h, docs/cli.md §3.7).
#include "view3d.h"

#include <algorithm>
#include <cmath>

#include <vtkActor.h>
#include <vtkCamera.h>
#include <vtkImageData.h>
#include <vtkOutlineSource.h>
#include <vtkPolyDataMapper.h>
#include <vtkProperty.h>
#include <vtkRenderWindow.h>
#include <vtkRenderer.h>
#include <vtkWindowToImageFilter.h>

#include "cli.h"

namespace repmode::cli {

namespace {

// Colours of the view (0 to 255): the ground, and the unlit outline of the volume's box.
constexpr double kGround[3] = {24, 28, 40};
constexpr double kOutline[3] = {128, 128, 128};
// Lighting: a surface of colour c shows c * (kAmbient + kDiffuse * cos(angle to the headlight)); no specular
// highlight, so every pixel of a label is a shade of its colour.
constexpr double kAmbient = 0.3, kDiffuse = 0.7;
// Where the camera stands, from the box's centre, in the voxel-axes frame (x, y, z): right of, behind and above
// (towards layer 0) the box, so that X runs to the right, Y into the picture and Z down as in the slices.
constexpr double kEye[3] = {0.5, 1.0, -0.8};

} // namespace

std::vector<uint8_t> draw_view(const std::vector<ColouredMesh> &meshes, const std::array<double, 3> &lo,
                               const std::array<double, 3> &hi, int width, int height, void *display)
{
    auto renderer = vtkSmartPointer<vtkRenderer>::New();
    renderer->SetBackground(kGround[0] / 255.0, kGround[1] / 255.0, kGround[2] / 255.0);
    for (const ColouredMesh &m : meshes) {
        auto mapper = vtkSmartPointer<vtkPolyDataMapper>::New();
        mapper->SetInputData(m.mesh);
        mapper->ScalarVisibilityOff();
        auto actor = vtkSmartPointer<vtkActor>::New();
        actor->SetMapper(mapper);
        vtkProperty *p = actor->GetProperty();
        p->SetColor(m.rgb[0] / 255.0, m.rgb[1] / 255.0, m.rgb[2] / 255.0);
        p->SetAmbient(kAmbient);
        p->SetDiffuse(kDiffuse);
        p->SetSpecular(0.0);
        renderer->AddActor(actor);
    }
    auto box = vtkSmartPointer<vtkOutlineSource>::New();
    box->SetBounds(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]);
    auto box_mapper = vtkSmartPointer<vtkPolyDataMapper>::New();
    box_mapper->SetInputConnection(box->GetOutputPort());
    auto outline = vtkSmartPointer<vtkActor>::New();
    outline->SetMapper(box_mapper);
    outline->GetProperty()->SetColor(kOutline[0] / 255.0, kOutline[1] / 255.0, kOutline[2] / 255.0);
    outline->GetProperty()->LightingOff();
    renderer->AddActor(outline);

    // Parallel projection, the box's bounding sphere filling the panel's shorter side.
    double centre[3], radius2 = 0.0, eye2 = 0.0;
    for (int k = 0; k < 3; k++) {
        centre[k] = (lo[k] + hi[k]) / 2.0;
        radius2 += (hi[k] - lo[k]) * (hi[k] - lo[k]) / 4.0;
        eye2 += kEye[k] * kEye[k];
    }
    const double radius = std::max(std::sqrt(radius2), 1e-6);
    vtkCamera *camera = renderer->GetActiveCamera();
    camera->ParallelProjectionOn();
    camera->SetFocalPoint(centre);
    camera->SetPosition(centre[0] + 4.0 * radius * kEye[0] / std::sqrt(eye2),
                        centre[1] + 4.0 * radius * kEye[1] / std::sqrt(eye2),
                        centre[2] + 4.0 * radius * kEye[2] / std::sqrt(eye2));
    camera->SetViewUp(0.0, 0.0, -1.0);
    camera->OrthogonalizeViewUp();
    camera->SetParallelScale(radius * std::max(1.0, static_cast<double>(height) / width));
    renderer->ResetCameraClippingRange();

    auto window = vtkSmartPointer<vtkRenderWindow>::New();
    window->SetDisplayId(display);
    window->SetOffScreenRendering(1);
    window->SetMultiSamples(0); // no anti-aliasing: every pixel is the ground, the outline or a shade of a label
    window->SetSize(width, height);
    window->AddRenderer(renderer);
    if (!window->SupportsOpenGL())
        throw Failure("cannot draw the 3D view: the X display offers no usable OpenGL", kBadInput);
    window->Render();
    auto grab = vtkSmartPointer<vtkWindowToImageFilter>::New();
    grab->SetInput(window);
    grab->SetInputBufferTypeToRGB();
    grab->ReadFrontBufferOff();
    grab->Update();
    vtkImageData *image = grab->GetOutput();
    int dims[3];
    image->GetDimensions(dims);
    if (dims[0] != width || dims[1] != height)
        throw Failure("cannot draw the 3D view: VTK drew " + std::to_string(dims[0]) + " x " +
                          std::to_string(dims[1]) + " pixels instead of " + std::to_string(width) + " x " +
                          std::to_string(height),
                      kInternal);
    const auto *rgb = static_cast<const uint8_t *>(image->GetScalarPointer());
    std::vector<uint8_t> out(static_cast<size_t>(width) * height * 3);
    for (int r = 0; r < height; r++) // VTK's row 0 is the bottom
        std::copy_n(rgb + static_cast<size_t>(height - 1 - r) * width * 3, static_cast<size_t>(width) * 3,
                    out.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(r) * width * 3));
    return out;
}

} // namespace repmode::cli
