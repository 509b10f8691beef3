"""repmode surfaces and predict --surfaces: one closed mesh per label in physical coordinates.

A label map with a ball and a box, of spacing (0.7, 1.1, 2.0), an origin and an oblique direction (a rotation, and a
mirrored one), is meshed by `repmode surfaces`; each mesh is checked against the voxels it came from, computed here
with NumPy: its axis-aligned bounds against those of the label's voxel corners in physical space (within one voxel),
its enclosed volume (divergence theorem) against voxel count x voxel volume, and that it is closed with outward
triangles (every edge used once in each direction). The .stl and .obj files are parsed by hand and must hold the same
triangles as the .vtp (read with VTK's Python module). predict --surfaces must write exactly what `repmode surfaces`
writes for predict's own label map."""
import os
import struct
import subprocess
import sys

import numpy as np
from vtkmodules.vtkIOXML import vtkXMLPolyDataReader
from vtkmodules.util.numpy_support import vtk_to_numpy

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from images import read_mha, write_mha, write_nrrd  # noqa: E402
from test_eval import SMALL  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))
SPACING, ORIGIN = np.array([0.7, 1.1, 2.0]), np.array([10.0, -20.0, 5.0])
SHAPE = (20, 24, 28)  # Z, Y, X
BALL_CENTRE, BALL_RADIUS = np.array([13.2, 11.6, 9.3]), 7.0  # index (x, y, z), millimetres
BOX = (slice(13, 20), slice(15, 22), slice(1, 9))  # z, y, x: it touches the last layer


def run(*args):
    return subprocess.run([REPMODE, *args], capture_output=True, text=True, timeout=300)


def rotation(axis, degrees):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.radians(degrees)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def label_map():
    z, y, x = np.indices(SHAPE)
    index = np.stack([x, y, z], axis=-1).astype(float)
    lab = np.zeros(SHAPE, np.uint8)
    lab[np.linalg.norm((index - BALL_CENTRE) * SPACING, axis=-1) <= BALL_RADIUS] = 1
    lab[BOX] = 2
    return lab


def physical(index, direction):
    """ITK's physical point of continuous indices (..., 3) in (x, y, z) order."""
    return ORIGIN + (index * SPACING) @ direction.T


def voxel_corner_bounds(lab, label, direction):
    z, y, x = np.nonzero(lab == label)
    centres = np.stack([x, y, z], axis=-1).astype(float)
    corners = np.concatenate([centres + np.array(c) for c in np.ndindex(2, 2, 2)]) - 0.5
    p = physical(corners, direction)
    return p.min(axis=0), p.max(axis=0)


def read_vtp(path):
    reader = vtkXMLPolyDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    mesh = reader.GetOutput()
    points = vtk_to_numpy(mesh.GetPoints().GetData()).astype(float) if mesh.GetNumberOfPoints() else np.zeros((0, 3))
    cells = vtk_to_numpy(mesh.GetPolys().GetConnectivityArray()) if mesh.GetNumberOfCells() else np.zeros(0, int)
    space = mesh.GetFieldData().GetAbstractArray("SPACE")
    return points, cells.reshape(-1, 3), space.GetValue(0) if space else None


def read_stl(path):
    data = path.read_bytes()
    (count,) = struct.unpack_from("<I", data, 80)
    records = np.frombuffer(data, dtype=np.dtype([("n", "<f4", 3), ("p", "<f4", (3, 3)), ("a", "<u2")]),
                            count=count, offset=84)
    return data[:80].rstrip(b"\0").decode(), records["p"].astype(float)


def read_obj(path):
    lines = path.read_text().splitlines()
    points = np.array([[float(v) for v in line.split()[1:]] for line in lines if line.startswith("v ")])
    faces = np.array([[int(v.split("/")[0]) - 1 for v in line.split()[1:]] for line in lines if line.startswith("f ")])
    return lines[0], points, faces


def enclosed_volume(triangles):
    """Divergence theorem: the sum of the signed tetrahedra (origin, a, b, c); positive for outward triangles."""
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def directed_edges_once(cells):
    """Closed and consistently oriented: each directed edge once, and its reverse too."""
    edges = [tuple(e) for t in cells for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))]
    return len(set(edges)) == len(edges) and all((b, a) in set(edges) for a, b in edges)


def check_meshes(tmp_path, direction):
    lab = label_map()
    write_nrrd(str(tmp_path / "labels.nrrd"), lab, spacing=tuple(SPACING), origin=tuple(ORIGIN),
               direction=direction.ravel())
    (tmp_path / "labels.ctbl").write_text("0 background 0 0 0 0\n1 ball 200 40 10 255\n2 box 0 0 250 255\n")
    out = tmp_path / "meshes"
    r = run("surfaces", "--labels", str(tmp_path / "labels.nrrd"), "--colors", str(tmp_path / "labels.ctbl"),
            "--out", str(out), "--format", "vtp,stl,obj")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ball.obj", "ball.stl", "ball.vtp", "box.obj", "box.stl",
                                                     "box.vtp"]
    voxel = float(np.prod(SPACING))
    # Marching cubes cuts a box's edges and corners at half a voxel (-3% here) and smoothing rounds them (-8% in
    # all); a ball loses little.
    for label, name, tolerance in [(1, "ball", 0.05), (2, "box", 0.10)]:
        points, cells, space = read_vtp(out / (name + ".vtp"))
        assert space == "LPS"
        assert directed_edges_once(cells), name
        lo, hi = voxel_corner_bounds(lab, label, direction)
        got_lo, got_hi = points.min(axis=0), points.max(axis=0)
        assert (got_lo >= lo - 1e-3).all() and (got_hi <= hi + 1e-3).all(), (name, got_lo, lo, got_hi, hi)
        assert (got_lo <= lo + SPACING.max()).all() and (got_hi >= hi - SPACING.max()).all(), (name, got_lo, lo)
        volume, want = enclosed_volume(points[cells]), (lab == label).sum() * voxel
        assert abs(volume - want) <= tolerance * want, (name, volume, want)

        header, stl = read_stl(out / (name + ".stl"))
        assert "SPACE=LPS" in header
        assert np.abs(stl - points[cells]).max() < 1e-4
        comment, obj_points, obj_faces = read_obj(out / (name + ".obj"))
        assert comment.startswith("#") and "SPACE=LPS" in comment
        assert np.array_equal(obj_faces, cells) and np.abs(obj_points - points).max() < 1e-4


def test_meshes_sit_where_the_voxels_are_with_their_volume(tmp_path):
    check_meshes(tmp_path, rotation((1.0, 2.0, 0.5), 35.0))


def test_a_mirrored_direction_keeps_the_triangles_outward(tmp_path):
    check_meshes(tmp_path, rotation((0.3, -1.0, 0.8), 20.0) @ np.diag([1.0, 1.0, -1.0]))


def test_labels_without_a_table_are_numbered(tmp_path):
    lab = label_map()
    write_mha(str(tmp_path / "labels.mha"), lab)
    r = run("surfaces", "--labels", str(tmp_path / "labels.mha"), "--out", str(tmp_path / "new" / "meshes"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "new" / "meshes").iterdir()) == ["label-1.vtp", "label-2.vtp"]


def test_surfaces_errors_exit_1_and_write_nothing(tmp_path):
    write_mha(str(tmp_path / "labels.mha"), label_map())
    (tmp_path / "file").write_text("")
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = [
        (["--labels", str(tmp_path / "absent.mha"), "--out", str(tmp_path / "m")], "absent.mha"),
        (["--labels", str(tmp_path / "labels.mha"), "--out", str(tmp_path / "file")], "is not a folder"),
        (["--labels", str(tmp_path / "labels.mha"), "--out", str(tmp_path / "file" / "m")], "is not a folder"),
        (["--labels", str(tmp_path / "labels.mha"), "--out", str(tmp_path / "m"), "--format", "vtp,ply"],
         "'ply' is not a surface format"),
    ]
    for args, needle in cases:
        r = run("surfaces", *args)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.splitlines()[-1].startswith("repmode: ") and needle in r.stderr, (needle, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def predict_input(tmp_path):
    x = np.random.default_rng(4).normal(100.0, 20.0, size=(8, 12, 16)).astype(np.float32)
    path = tmp_path / "in.mha"
    write_mha(str(path), x, spacing=(0.5, 0.7, 2.0), origin=(1.0, -2.0, 3.5),
              direction=rotation((0.0, 0.0, 1.0), 30.0).T.ravel())  # MetaImage lists the axes' vectors
    return path


def test_predict_writes_the_surfaces_of_its_label_map(tmp_path):
    path = predict_input(tmp_path)
    common = ["--model", SMALL, "--task", "membrane,dna", "--input", str(path), "--patch", "8,12,16"]
    r = run("predict", *common, "--output", str(tmp_path / "p.mha"))
    assert r.returncode == 0, r.stderr
    pred, _ = read_mha(str(tmp_path / "p.mha"))  # thresholds that leave each task some voxels of its own
    common += ["--threshold", "%r,%r" % tuple(float(np.quantile(pred[..., i], 0.7)) for i in range(2))]
    r = run("predict", *common, "--output", str(tmp_path / "p.mha"), "--labels", str(tmp_path / "l.nrrd"),
            "--colors", str(tmp_path / "l.ctbl"), "--surfaces", str(tmp_path / "s"), "--surface-format", "vtp,stl,obj")
    assert r.returncode == 0, r.stderr
    r = run("surfaces", "--labels", str(tmp_path / "l.nrrd"), "--colors", str(tmp_path / "l.ctbl"), "--out",
            str(tmp_path / "want"), "--format", "vtp,stl,obj")
    assert r.returncode == 0, r.stderr
    want = sorted(p.name for p in (tmp_path / "want").iterdir())
    assert want == ["dna.obj", "dna.stl", "dna.vtp", "membrane.obj", "membrane.stl", "membrane.vtp"]
    for name in want:
        assert (tmp_path / "s" / name).read_bytes() == (tmp_path / "want" / name).read_bytes(), name
    # without --labels the label map is made in memory: the same meshes
    r = run("predict", *common, "--output", str(tmp_path / "p2.mha"), "--surfaces", str(tmp_path / "s2"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "s2").iterdir()) == ["dna.vtp", "membrane.vtp"]
    for name in ["dna.vtp", "membrane.vtp"]:
        assert (tmp_path / "s2" / name).read_bytes() == (tmp_path / "s" / name).read_bytes(), name


def test_predict_writes_an_empty_mesh_for_a_task_that_labels_nothing(tmp_path):
    path = predict_input(tmp_path)
    r = run("predict", "--model", SMALL, "--task", "membrane", "--input", str(path), "--patch", "8,12,16",
            "--threshold", "1e30", "--output", str(tmp_path / "p.mha"), "--surfaces", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    points, cells, space = read_vtp(tmp_path / "s" / "membrane.vtp")
    assert len(points) == 0 and len(cells) == 0 and space == "LPS"


def test_predict_surface_errors_come_before_any_work(tmp_path):
    path = predict_input(tmp_path)
    (tmp_path / "file").write_text("")
    before = sorted(p.name for p in tmp_path.iterdir())
    common = ["--model", SMALL, "--task", "membrane", "--input", str(path), "--patch", "8,12,16", "--output",
              str(tmp_path / "p.mha")]
    cases = [
        (["--surfaces", str(tmp_path / "file")], "--surfaces: " + str(tmp_path / "file") + " is not a folder"),
        (["--surfaces", str(tmp_path / "s"), "--surface-format", "vtk"], "--surface-format: 'vtk'"),
        (["--surface-format", "stl"], "give --surfaces too"),
    ]
    for args, needle in cases:
        r = run("predict", *common, *args)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.splitlines()[-1].startswith("repmode: ") and needle in r.stderr, (needle, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
