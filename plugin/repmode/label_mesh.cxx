// Surface meshes of a label map (label_mesh.h, docs/cli.md §3.9).
#include "label_mesh.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <unistd.h>

#include <vtkCellArray.h>
#include <vtkDiscreteFlyingEdges3D.h>
#include <vtkFieldData.h>
#include <vtkMatrix4x4.h>
#include <vtkPointData.h>
#include <vtkPolyDataNormals.h>
#include <vtkReverseSense.h>
#include <vtkStringArray.h>
#include <vtkTransform.h>
#include <vtkTransformPolyDataFilter.h>
#include <vtkWindowedSincPolyDataFilter.h>
#include <vtkXMLPolyDataWriter.h>

#include "cli.h"

namespace repmode::cli {

namespace {

namespace fs = std::filesystem;

// Smoothing as 3D Slicer's segmentations do at their default smoothing factor 0.5: a pass band of 10^(-4 * 0.5).
constexpr int kSmoothingIterations = 20;
constexpr double kPassBand = 0.01;

// 3D Slicer reads the coordinate system of a model file from "SPACE=LPS" (a field of that name in .vtp files, the
// header or first comment of .stl and .obj files); ITK's physical space is LPS.
constexpr const char *kSpace = "LPS";

// Index (x, y, z) to the frame, as a 4x4 matrix.
vtkSmartPointer<vtkMatrix4x4> frame_matrix(const Volume &v, Frame frame)
{
    auto m = vtkSmartPointer<vtkMatrix4x4>::New();
    for (int r = 0; r < 3; r++) {
        for (int c = 0; c < 3; c++)
            m->SetElement(r, c,
                          frame == Frame::physical ? v.direction[static_cast<size_t>(3 * r + c)] * v.spacing[c]
                                                   : (r == c ? std::fabs(v.spacing[c]) : 0.0));
        m->SetElement(r, 3, frame == Frame::physical ? v.origin[r] : 0.0);
    }
    return m;
}

// The triangles of a mesh as point-index triples.
std::vector<std::array<vtkIdType, 3>> triangles(vtkPolyData *mesh)
{
    std::vector<std::array<vtkIdType, 3>> out;
    vtkCellArray *polys = mesh->GetPolys();
    const vtkIdType *ids = nullptr;
    vtkIdType n = 0;
    for (polys->InitTraversal(); polys->GetNextCell(n, ids);)
        if (n == 3)
            out.push_back({ids[0], ids[1], ids[2]});
    return out;
}

// write_vtp, write_stl and write_obj write `file`; `path` is the output it becomes, named in messages.
void write_vtp(vtkPolyData *mesh, const std::string &file, const std::string &path)
{
    auto copy = vtkSmartPointer<vtkPolyData>::New();
    copy->ShallowCopy(mesh);
    auto fields = vtkSmartPointer<vtkFieldData>::New();
    auto space = vtkSmartPointer<vtkStringArray>::New();
    space->SetName("SPACE");
    space->InsertNextValue(kSpace);
    fields->AddArray(space);
    copy->SetFieldData(fields);
    auto writer = vtkSmartPointer<vtkXMLPolyDataWriter>::New();
    writer->SetInputData(copy);
    writer->SetFileName(file.c_str());
    if (writer->Write() != 1)
        throw Failure("cannot write " + path, kBadInput);
}

// Binary STL: an 80-byte header, the triangle count, then per triangle its normal, three corners and a zero.
void write_stl(vtkPolyData *mesh, const std::string &name, const std::string &file, const std::string &path)
{
    std::ofstream out(file, std::ios::binary);
    char header[80] = {};
    std::snprintf(header, sizeof header, "repmode surface %s, SPACE=%s", name.c_str(), kSpace);
    out.write(header, sizeof header);
    const auto tris = triangles(mesh);
    const auto count = static_cast<uint32_t>(tris.size());
    out.write(reinterpret_cast<const char *>(&count), sizeof count);
    for (const auto &t : tris) {
        double p[3][3];
        for (int k = 0; k < 3; k++)
            mesh->GetPoint(t[static_cast<size_t>(k)], p[k]);
        const double u[3] = {p[1][0] - p[0][0], p[1][1] - p[0][1], p[1][2] - p[0][2]};
        const double v[3] = {p[2][0] - p[0][0], p[2][1] - p[0][1], p[2][2] - p[0][2]};
        double n[3] = {u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]};
        const double length = std::sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
        float record[12];
        for (int k = 0; k < 3; k++)
            record[k] = static_cast<float>(length > 0.0 ? n[k] / length : 0.0);
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 3; k++)
                record[3 + 3 * c + k] = static_cast<float>(p[c][k]);
        const uint16_t attributes = 0;
        out.write(reinterpret_cast<const char *>(record), sizeof record);
        out.write(reinterpret_cast<const char *>(&attributes), sizeof attributes);
    }
    if (!out.flush())
        throw Failure("cannot write " + path, kBadInput);
}

// Wavefront OBJ: points, their normals, and the triangles (1-based) that use both.
void write_obj(vtkPolyData *mesh, const std::string &name, const std::string &file, const std::string &path)
{
    std::ofstream out(file);
    out.precision(std::numeric_limits<float>::max_digits10);
    out << "# repmode surface " << name << ", SPACE=" << kSpace << "\n";
    vtkDataArray *normals = mesh->GetPointData()->GetNormals();
    for (vtkIdType i = 0; i < mesh->GetNumberOfPoints(); i++) {
        double p[3];
        mesh->GetPoint(i, p);
        out << "v " << p[0] << ' ' << p[1] << ' ' << p[2] << '\n';
    }
    if (normals)
        for (vtkIdType i = 0; i < mesh->GetNumberOfPoints(); i++) {
            double n[3];
            normals->GetTuple(i, n);
            out << "vn " << n[0] << ' ' << n[1] << ' ' << n[2] << '\n';
        }
    for (const auto &t : triangles(mesh)) {
        out << 'f';
        for (vtkIdType id : t)
            out << ' ' << id + 1 << (normals ? "//" + std::to_string(id + 1) : "");
        out << '\n';
    }
    if (!out.flush())
        throw Failure("cannot write " + path, kBadInput);
}

// A name as a file name: characters other than letters, digits, '.', '_' and '-' become '_'.
std::string file_name(std::string name)
{
    for (char &c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
            c = '_';
    return name.empty() || name == "." || name == ".." ? "_" + name : name;
}

} // namespace

LabelMesher::LabelMesher(const Volume &labels) : geometry_(labels.like<float>())
{
    geometry_.voxels.clear();
    const int nx = static_cast<int>(labels.size[2]), ny = static_cast<int>(labels.size[1]),
              nz = static_cast<int>(labels.size[0]);
    grid_ = vtkSmartPointer<vtkImageData>::New();
    grid_->SetDimensions(nx + 2, ny + 2, nz + 2);
    grid_->SetOrigin(-1.0, -1.0, -1.0);
    grid_->AllocateScalars(VTK_INT, 1);
    int *out = static_cast<int *>(grid_->GetScalarPointer());
    std::fill(out, out + static_cast<size_t>(nx + 2) * (ny + 2) * (nz + 2), 0);
    std::set<long> present;
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                const float v = labels.voxels[(static_cast<size_t>(z) * ny + y) * nx + x];
                const double r = std::isfinite(v) ? std::round(v) : 0.0;
                const int label = r > 0.0 ? static_cast<int>(std::min<double>(r, std::numeric_limits<int>::max())) : 0;
                out[(static_cast<size_t>(z + 1) * (ny + 2) + (y + 1)) * (nx + 2) + (x + 1)] = label;
                if (label > 0)
                    present.insert(label);
            }
    labels_.assign(present.begin(), present.end());
}

vtkSmartPointer<vtkPolyData> LabelMesher::mesh(long label, Frame frame) const
{
    if (!std::binary_search(labels_.begin(), labels_.end(), label))
        return vtkSmartPointer<vtkPolyData>::New();
    auto contour = vtkSmartPointer<vtkDiscreteFlyingEdges3D>::New();
    contour->SetInputData(grid_);
    contour->SetValue(0, static_cast<double>(label));
    contour->ComputeNormalsOff();
    contour->ComputeGradientsOff();
    contour->ComputeScalarsOff();

    auto smooth = vtkSmartPointer<vtkWindowedSincPolyDataFilter>::New();
    smooth->SetInputConnection(contour->GetOutputPort());
    smooth->SetNumberOfIterations(kSmoothingIterations);
    smooth->SetPassBand(kPassBand);
    smooth->BoundarySmoothingOff();
    smooth->FeatureEdgeSmoothingOff();
    smooth->NonManifoldSmoothingOn();
    smooth->NormalizeCoordinatesOn();

    auto matrix = frame_matrix(geometry_, frame);
    auto transform = vtkSmartPointer<vtkTransform>::New();
    transform->SetMatrix(matrix);
    auto place = vtkSmartPointer<vtkTransformPolyDataFilter>::New();
    place->SetInputConnection(smooth->GetOutputPort());
    place->SetTransform(transform);
    vtkAlgorithmOutput *placed = place->GetOutputPort();
    // A mirroring frame (a direction of determinant -1) turns the triangles inside out: turn them back.
    auto reverse = vtkSmartPointer<vtkReverseSense>::New();
    if (matrix->Determinant() < 0.0) {
        reverse->SetInputConnection(placed);
        reverse->ReverseCellsOn();
        placed = reverse->GetOutputPort();
    }
    auto normals = vtkSmartPointer<vtkPolyDataNormals>::New();
    normals->SetInputConnection(placed);
    normals->SplittingOff();
    normals->ConsistencyOn();
    normals->AutoOrientNormalsOff();
    normals->Update();
    vtkSmartPointer<vtkPolyData> mesh = normals->GetOutput();
    return mesh;
}

std::vector<std::string> parse_surface_formats(const std::string &list, const std::string &option)
{
    std::vector<std::string> formats;
    std::stringstream in(list);
    for (std::string f; std::getline(in, f, ',');) {
        if (f != "vtp" && f != "stl" && f != "obj")
            throw Failure(option + ": '" + f + "' is not a surface format (vtp, stl or obj)", kBadInput);
        if (std::find(formats.begin(), formats.end(), f) == formats.end())
            formats.push_back(f);
    }
    if (formats.empty())
        throw Failure(option + " names no format (vtp, stl or obj)", kBadInput);
    return formats;
}

void check_surface_folder(const std::string &dir, const std::string &option)
{
    std::error_code ec;
    fs::path existing = fs::absolute(fs::path(dir), ec);
    while (!existing.empty() && !fs::exists(existing, ec) && existing != existing.parent_path())
        existing = existing.parent_path();
    if (!fs::is_directory(existing, ec))
        throw Failure(option + ": " + dir + " is not a folder (" + existing.string() + " is a file)", kBadInput);
    if (access(existing.c_str(), W_OK | X_OK) != 0)
        throw Failure(option + ": cannot write in " + existing.string(), kBadInput);
}

void write_surfaces(const std::vector<NamedSurface> &surfaces, const std::string &dir,
                    const std::vector<std::string> &formats, OutputFiles &outputs)
{
    outputs.make_folder(dir);
    for (const NamedSurface &s : surfaces)
        for (const std::string &f : formats) {
            const std::string name = file_name(s.name);
            const std::string path = (fs::path(dir) / (name + "." + f)).string();
            const std::string tmp = outputs.stage(path);
            if (f == "vtp")
                write_vtp(s.mesh, tmp, path);
            else if (f == "stl")
                write_stl(s.mesh, name, tmp, path);
            else
                write_obj(s.mesh, name, tmp, path);
        }
}

} // namespace repmode::cli
