"""repmode render: the 2 x 2 grid at the physical aspect, a bright cube where it is, the label colours blended at the
documented opacity, the 3D view (VTK: lit label surfaces where the camera of docs/cli.md §3.7 sees them), a
one-layer volume drawn alone, the display (a private Xvfb when DISPLAY is unset or dead, a clear error when there is
none), and errors (exit 1, nothing written). The PNG is decoded here by hand (zlib and struct), independently of
ITK, which wrote it.

Layout (render.cxx): axial (rows y, columns x) | 3D view above, coronal (rows z, columns x) | sagittal (rows z,
columns y) below, GAP pixels apart; the longest physical extent spans --size pixels (default 256); pixel i of a slice
panel h pixels tall shows row floor((i + 0.5) * rows / h). The 3D view is not checked bytewise (it depends on the
OpenGL implementation): its pixels must be the ground, the outline or shades k * colour of a label (k in [0.3, 1],
ambient 0.3 + diffuse 0.7), each label where the documented parallel camera projects it."""
import os
import struct
import subprocess
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from images import write_mha  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))
GAP, BACKGROUND, OVERLAY = 4, 32, 0.5
DEFAULT_LABEL_1 = (230, 159, 0)  # predict's default palette, label 1
GROUND, OUTLINE, INTENSITY = (24, 28, 40), (128, 128, 128), (230, 214, 170)  # the 3D view's colours
EYE, UP = np.array([0.5, 1.0, -0.8]), np.array([0.0, 0.0, -1.0])  # the camera, in the voxel-axes frame


def run(*args, env=None):
    return subprocess.run([REPMODE, *args], capture_output=True, text=True, timeout=300, env=env)


def read_png(path):
    """(height, width, 3) uint8 array of an 8-bit RGB, non-interlaced PNG."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, colour, interlace) == (8, 2, 0), (depth, colour, interlace)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    raw, stride = zlib.decompress(idat), 3 * width
    rows, up = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        row = bytearray(stride)
        for x in range(stride):
            a, b, c = (row[x - 3], up[x], up[x - 3]) if x >= 3 else (0, up[x], 0)
            if kind == 4:  # Paeth
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            else:
                pred = (0, a, b, (a + b) // 2)[kind]
            row[x] = (line[x] + pred) & 0xFF
        rows.append(bytes(row))
        up = row
    return np.frombuffer(b"".join(rows), np.uint8).reshape(height, width, 3)




def panel_pixels(voxels, pixels):
    """The pixels (a slice) of a panel `pixels` long that show voxels [a, b) of `voxels`."""
    a, b = voxels[0], voxels[1]
    i = np.arange(pixels)
    shown = (2 * i + 1) * voxels[2] // (2 * pixels)
    return slice(int(i[shown >= a][0]), int(i[shown < b][-1]) + 1)


def project(index, shape, spacing, side):
    """(row, column) of the pixel centre that shows the voxel-axes point of continuous voxel indices (x, y, z) in a
    square 3D view `side` pixels wide: parallel projection from direction EYE, view up UP, the volume box's bounding
    sphere filling the panel."""
    spacing = np.asarray(spacing, float)
    size = np.array(shape[::-1], float)  # x, y, z
    lo, hi = -0.5 * spacing, (size - 0.5) * spacing
    centre, radius = (lo + hi) / 2, np.linalg.norm(hi - lo) / 2
    toward = -EYE / np.linalg.norm(EYE)  # the direction of projection
    right = np.cross(toward, UP)
    right /= np.linalg.norm(right)
    up = np.cross(right, toward)
    p = np.asarray(index, float) * spacing - centre
    per_unit = (side / 2) / radius
    return side / 2 - p @ up * per_unit - 0.5, side / 2 + p @ right * per_unit - 0.5


def shades_of(view, colour):
    """The pixels of `view` that are k * colour, k in [0.3, 1], to within rounding."""
    c = np.asarray(colour, float)
    k = (view.astype(float) @ c) / (c @ c)
    close = np.abs(view - k[..., None] * c).max(axis=-1) <= 2.5
    return close & (k >= 0.3 - 0.02) & (k <= 1.0 + 0.02)


def check_view(view, objects):
    """objects: (colour, expected (row, column) of its centroid, pixels at least): each colour's pixels centre there
    (within 2 pixels); every other pixel is the ground or the outline."""
    explained = np.all(view == GROUND, axis=-1) | np.all(view == OUTLINE, axis=-1)
    for colour, (row, col), least in objects:
        mine = shades_of(view, colour) & ~explained
        rows, cols = np.nonzero(mine)
        assert len(rows) >= least, (colour, len(rows))
        assert abs(rows.mean() - row) <= 2 and abs(cols.mean() - col) <= 2, (colour, rows.mean(), row, cols.mean(), col)
        explained |= mine
    assert explained.all(), np.argwhere(~explained)[:5]


def cube_volume(tmp_path):
    """(16, 32, 48) voxels of spacing x 0.5, y 1, z 2: extents 24, 32, 32 mm, so 8 pixels per mm at --size 256.
    Zero but for a cube of 1000 at z 4:12, y 8:20, x 20:28 (3% of the voxels: the 99th percentile is 1000), which
    holds the centre (8, 16, 24) that all three slices go through."""
    x = np.zeros((16, 32, 48), np.float32)
    x[4:12, 8:20, 20:28] = 1000.0
    path = tmp_path / "cube.mha"
    write_mha(str(path), x, spacing=(0.5, 1.0, 2.0), origin=(3.0, -1.0, 7.0))
    return path


def test_panels_keep_the_physical_aspect(tmp_path):
    path = cube_volume(tmp_path)
    for size, (x, y, z) in [(None, (192, 256, 256)), ("128", (96, 128, 128))]:
        out = tmp_path / "cube.png"
        r = run("render", "--input", str(path), "--out", str(out), *(["--size", size] if size else []))
        assert r.returncode == 0, r.stderr
        picture = read_png(str(out))
        assert picture.shape == (y + GAP + z, x + GAP + y, 3)  # no empty cell: columns X and Y, rows Y and Z
        assert (picture[:, x:x + GAP] == BACKGROUND).all() and (picture[y:y + GAP, :] == BACKGROUND).all()


def test_bright_cube_shows_where_it_is(tmp_path):
    out = tmp_path / "cube.png"
    r = run("render", "--input", str(cube_volume(tmp_path)), "--out", str(out))
    assert r.returncode == 0, r.stderr
    picture = read_png(str(out)).astype(int)
    axial = picture[:256, :192]
    want = np.zeros_like(axial)
    want[panel_pixels((8, 20, 32), 256), panel_pixels((20, 28, 48), 192)] = 255
    assert np.array_equal(axial, want)
    coronal = picture[260:, :192]
    want = np.zeros_like(coronal)
    want[panel_pixels((4, 12, 16), 256), panel_pixels((20, 28, 48), 192)] = 255
    assert np.array_equal(coronal, want)
    sagittal = picture[260:, 196:]
    want = np.zeros_like(sagittal)
    want[panel_pixels((4, 12, 16), 256), panel_pixels((8, 20, 32), 256)] = 255
    assert np.array_equal(sagittal, want)
    # without labels the 3D view shows the surface of the voxels above Otsu's threshold: the cube, centred on its
    # centre's projection
    view = picture[:256, 196:]
    centre = project((23.5, 13.5, 7.5), (16, 32, 48), (0.5, 1.0, 2.0), 256)
    check_view(view, [(INTENSITY, centre, 500)])


def labelled(tmp_path):
    """(8, 20, 20) voxels of spacing 1, intensity 0 for x < 10 and 1000 beyond (grey 0 and 255); label 3 at
    y 5:15, x 5:15 and label 4 at y 16:19, x 2:18 in every layer."""
    x = np.zeros((8, 20, 20), np.float32)
    x[:, :, 10:] = 1000.0
    lab = np.zeros(x.shape, np.uint8)
    lab[:, 5:15, 5:15] = 3
    lab[:, 16:19, 2:18] = 4
    write_mha(str(tmp_path / "in.mha"), x)
    write_mha(str(tmp_path / "labels.mha"), lab)
    return tmp_path / "in.mha", tmp_path / "labels.mha"


def blend(grey, rgba):
    opacity = OVERLAY * rgba[3] / 255.0
    return np.array([grey + opacity * (c - grey) for c in rgba[:3]])


def test_labels_take_the_colour_table_at_half_opacity(tmp_path):
    image, labels = labelled(tmp_path)
    colors = tmp_path / "colors.txt"
    colors.write_text("# index name r g b a\n0 background 0 0 0 0\n\n3 vein 200 40 10 255\n4 halo 0 0 250 128\n")
    out = tmp_path / "picture.png"
    r = run("render", "--input", str(image), "--labels", str(labels), "--colors", str(colors), "--out", str(out))
    assert r.returncode == 0, r.stderr
    picture = read_png(str(out)).astype(int)
    assert picture.shape == (256 + GAP + 102, 2 * 256 + GAP, 3)  # 12.8 pixels per voxel, 8 layers: 102 pixels

    def axial(y, x):  # the axial panel's pixel at the centre of voxel (y, x)
        return picture[int((y + 0.5) * 12.8), int((x + 0.5) * 12.8)]

    assert np.abs(axial(10, 7) - blend(0, (200, 40, 10, 255))).max() <= 1
    assert np.abs(axial(10, 12) - blend(255, (200, 40, 10, 255))).max() <= 1
    assert np.abs(axial(17, 3) - blend(0, (0, 0, 250, 128))).max() <= 1
    assert np.abs(axial(17, 15) - blend(255, (0, 0, 250, 128))).max() <= 1
    assert list(axial(2, 3)) == [0, 0, 0] and list(axial(2, 15)) == [255, 255, 255]


def balls(tmp_path):
    """(12, 24, 32) voxels of spacing x 1, y 1.5, z 2; label 1 a ball of radius 5 mm at voxel (x 8, y 8, z 3.5),
    label 2 one at (x 23, y 14, z 7.5), label 5 a box that --colors hides (alpha 0)."""
    shape, spacing = (12, 24, 32), (1.0, 1.5, 2.0)
    z, y, x = np.indices(shape)
    where = np.stack([x, y, z], axis=-1) * np.array(spacing)
    lab = np.zeros(shape, np.uint8)
    for label, centre in [(1, (8.0, 8.0, 3.5)), (2, (23.0, 14.0, 7.5))]:
        lab[np.linalg.norm(where - np.array(centre) * spacing, axis=-1) <= 5.0] = label
    lab[0:2, 20:24, 0:4] = 5
    intensity = np.random.default_rng(0).normal(0.0, 1.0, size=shape).astype(np.float32)
    write_mha(str(tmp_path / "in.mha"), intensity, spacing=spacing)
    write_mha(str(tmp_path / "labels.mha"), lab, spacing=spacing)
    return shape, spacing


def test_3d_view_shows_each_label_where_it_is(tmp_path):
    shape, spacing = balls(tmp_path)
    (tmp_path / "colors.txt").write_text("1 a 40 200 90 255\n2 b 200 60 200 255\n5 hidden 250 250 0 0\n")
    out = tmp_path / "view.png"
    r = run("render", "--input", str(tmp_path / "in.mha"), "--labels", str(tmp_path / "labels.mha"), "--colors",
            str(tmp_path / "colors.txt"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    picture = read_png(str(out)).astype(int)
    # extents x 32, y 36, z 24 mm at 256 / 36 pixels per mm: columns 228 and 256, rows 256 and 171
    assert picture.shape == (256 + GAP + 171, 228 + GAP + 256, 3)
    view = picture[:256, 232:]
    check_view(view, [((40, 200, 90), project((8.0, 8.0, 3.5), shape, spacing, 256), 300),
                      ((200, 60, 200), project((23.0, 14.0, 7.5), shape, spacing, 256), 300)])
    # the default palette without --colors: label 1 in predict's first colour
    r = run("render", "--input", str(tmp_path / "in.mha"), "--labels", str(tmp_path / "labels.mha"), "--out",
            str(out))
    assert r.returncode == 0, r.stderr
    view = read_png(str(out)).astype(int)[:256, 232:]
    assert shades_of(view, DEFAULT_LABEL_1).sum() >= 300


def test_one_layer_is_drawn_alone_and_big_without_a_display(tmp_path):
    layer = np.zeros((30, 40), np.float32)
    layer[10:20, 5:15] = 1000.0  # 8% of the pixels
    lab = np.zeros((30, 40), np.uint8)
    lab[10:20, 25:35] = 1
    write_mha(str(tmp_path / "ink.mha"), layer)
    write_mha(str(tmp_path / "labels.mha"), lab)
    out = tmp_path / "ink.png"
    r = run("render", "--input", str(tmp_path / "ink.mha"), "--labels", str(tmp_path / "labels.mha"), "--out", str(out),
            env=no_display())
    assert r.returncode == 0, r.stderr
    picture = read_png(str(out)).astype(int)
    assert picture.shape == (384, 512, 3)  # the longest side at twice --size
    assert (picture[panel_pixels((10, 20, 30), 384), panel_pixels((5, 15, 40), 512)] == 255).all()
    inked = picture[panel_pixels((10, 20, 30), 384), panel_pixels((25, 35, 40), 512)]
    assert (np.abs(inked - blend(0, DEFAULT_LABEL_1 + (255,))) <= 1).all()
    assert (picture[:, :64] == 0).all()


def no_display():
    """The environment of a machine with neither a display nor Xvfb."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["PATH"] = "/nonexistent"
    return env


def test_a_dead_display_falls_back_on_xvfb_and_none_at_all_is_an_error(tmp_path):
    path = cube_volume(tmp_path)
    out = tmp_path / "cube.png"
    r = run("render", "--input", str(path), "--out", str(out), env=dict(os.environ, DISPLAY=":4242"))
    assert r.returncode == 0, r.stderr
    assert read_png(str(out)).shape == (516, 452, 3)
    out.unlink()
    r = run("render", "--input", str(path), "--out", str(out), env=no_display())
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == ("repmode: render's 3D view needs an X display: DISPLAY is not set, and Xvfb "
                                         "is not installed (apt-get install xvfb)"), r.stderr
    r = run("render", "--input", str(path), "--out", str(out), env=dict(no_display(), DISPLAY=":4242"))
    assert r.returncode == 1 and "DISPLAY=:4242 cannot be opened, and Xvfb is not installed" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.mha"]


def test_errors_exit_1_and_write_nothing(tmp_path):
    image, labels = labelled(tmp_path)
    write_mha(str(tmp_path / "rgb.mha"), np.zeros((4, 4, 4, 3), np.uint8), components=3)
    write_mha(str(tmp_path / "small.mha"), np.zeros((8, 20, 10), np.uint8))
    (tmp_path / "bad.txt").write_text("0 background 0 0 0 0\n3 vein 200 forty 10 255\n")
    (tmp_path / "short.txt").write_text("3 vein 200 40\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    out = str(tmp_path / "out.png")
    cases = [
        (["--input", str(tmp_path / "absent.mha"), "--out", out], "absent.mha"),
        (["--input", str(tmp_path / "rgb.mha"), "--out", out], "scalar"),
        (["--input", str(image), "--labels", str(tmp_path / "small.mha"), "--out", out],
         "small.mha is 8 x 20 x 10 voxels (Z x Y x X) but %s is 8 x 20 x 20" % image),
        (["--input", str(image), "--labels", str(labels), "--colors", str(tmp_path / "bad.txt"), "--out", out],
         "line 2: 'forty' is not a colour value"),
        (["--input", str(image), "--labels", str(labels), "--colors", str(tmp_path / "short.txt"), "--out", out],
         "line 1: has 4 fields"),
        (["--input", str(image), "--labels", str(labels), "--colors", str(tmp_path / "absent.txt"), "--out", out],
         "cannot read the colour table"),
        (["--input", str(image), "--colors", str(tmp_path / "bad.txt"), "--out", out], "give --labels"),
        (["--input", str(image), "--out", str(tmp_path / "no" / "out.png")], "does not exist"),
        (["--input", str(image), "--out", str(tmp_path / "out.tif")], "not a .png"),
        (["--input", str(image), "--out", out, "--size", "8"], "--size"),
    ]
    for args, needle in cases:
        r = run("render", *args)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.splitlines()[-1].startswith("repmode: ") and needle in r.stderr, (needle, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_failed_rename_leaves_no_file(tmp_path):
    image, _ = labelled(tmp_path)
    (tmp_path / "taken.png").mkdir()  # the picture is drawn, then cannot replace a folder
    before = sorted(p.name for p in tmp_path.iterdir())
    r = run("render", "--input", str(image), "--out", str(tmp_path / "taken.png"))
    assert r.returncode == 1 and "repmode: cannot write" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert list((tmp_path / "taken.png").iterdir()) == []
