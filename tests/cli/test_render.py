"""repmode render: the picture's layout at the physical aspect, a bright cube where it is, the label colours blended
at the documented opacity, the depth-shaded 3D view, a one-layer volume drawn alone, and errors (exit 1, nothing
written). The PNG is decoded here by hand (zlib and struct), independently of ITK, which wrote it.

Layout (render.cxx): panels axial (rows y, columns x), coronal (rows z, columns x), sagittal (rows z, columns y)
and the 3D view (rows z, columns x), top-aligned, GAP pixels apart; the longest physical extent spans --size pixels
(default 256); pixel i of a panel h pixels tall shows row floor((i + 0.5) * rows / h)."""
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


def run(*args):
    return subprocess.run([REPMODE, *args], capture_output=True, text=True, timeout=300)


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


def shade(d, n):
    return 1.0 - 0.7 * d / (n - 1)


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
    for size, panels in [(None, [192, 192, 256, 192]), ("128", [96, 96, 128, 96])]:
        out = tmp_path / "cube.png"
        r = run("render", "--input", str(path), "--out", str(out), *(["--size", size] if size else []))
        assert r.returncode == 0, r.stderr
        picture = read_png(str(out))
        assert picture.shape == (panels[2], sum(panels) + 3 * GAP, 3)
        gaps = np.cumsum(panels[:-1]) + GAP * np.arange(3)
        for g in gaps:
            assert (picture[:, g:g + GAP] == BACKGROUND).all()


def test_bright_cube_shows_where_it_is(tmp_path):
    out = tmp_path / "cube.png"
    r = run("render", "--input", str(cube_volume(tmp_path)), "--out", str(out))
    assert r.returncode == 0, r.stderr
    picture = read_png(str(out)).astype(int)
    axial = picture[:256, :192]
    want = np.zeros_like(axial)
    want[panel_pixels((8, 20, 32), 256), panel_pixels((20, 28, 48), 192)] = 255
    assert np.array_equal(axial, want)
    coronal = picture[:256, 196:388]
    want = np.zeros_like(coronal)
    want[panel_pixels((4, 12, 16), 256), panel_pixels((20, 28, 48), 192)] = 255
    assert np.array_equal(coronal, want)
    # without labels the 3D view is the depth-shaded maximum: the cube's near face is at y = 8 of 32
    view = picture[:256, 652:844]
    want = np.zeros_like(view)
    want[panel_pixels((4, 12, 16), 256), panel_pixels((20, 28, 48), 192)] = round(255 * shade(8, 32))
    assert np.abs(view - want).max() <= 1


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
    assert picture.shape == (256, 4 * 256 + 3 * GAP, 3)

    def axial(y, x):  # the axial panel's pixel at the centre of voxel (y, x): 12.8 pixels per voxel
        return picture[int((y + 0.5) * 12.8), int((x + 0.5) * 12.8)]

    assert np.abs(axial(10, 7) - blend(0, (200, 40, 10, 255))).max() <= 1
    assert np.abs(axial(10, 12) - blend(255, (200, 40, 10, 255))).max() <= 1
    assert np.abs(axial(17, 3) - blend(0, (0, 0, 250, 128))).max() <= 1
    assert np.abs(axial(17, 15) - blend(255, (0, 0, 250, 128))).max() <= 1
    assert list(axial(2, 3)) == [0, 0, 0] and list(axial(2, 15)) == [255, 255, 255]


def test_3d_view_shades_labels_by_depth(tmp_path):
    x = np.random.default_rng(0).normal(0.0, 1.0, size=(8, 20, 20)).astype(np.float32)
    lab = np.zeros(x.shape, np.uint8)
    lab[2:6, 2:4, 2:6] = 1  # near
    lab[2:6, 15:18, 12:16] = 1  # far
    write_mha(str(tmp_path / "in.mha"), x)
    write_mha(str(tmp_path / "labels.mha"), lab)
    out = tmp_path / "view.png"
    r = run("render", "--input", str(tmp_path / "in.mha"), "--labels", str(tmp_path / "labels.mha"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    picture = read_png(str(out)).astype(int)
    view = picture[:, 3 * (256 + GAP):]  # rows z (8 voxels: 102 pixels), columns x (20 voxels: 256 pixels)
    assert view.shape[1] == 256

    def at(z, x):
        return view[int((z + 0.5) * 102 / 8), int((x + 0.5) * 12.8)]

    near, far = np.array(DEFAULT_LABEL_1) * shade(2, 20), np.array(DEFAULT_LABEL_1) * shade(15, 20)
    assert np.abs(at(3, 3) - near).max() <= 1
    assert np.abs(at(3, 13) - far).max() <= 1
    assert list(at(3, 9)) == [0, 0, 0] and list(at(7, 3)) == [0, 0, 0]  # rays that meet no label
    assert (view[102:] == BACKGROUND).all()  # below the panel


def test_one_layer_is_drawn_alone_and_big(tmp_path):
    layer = np.zeros((30, 40), np.float32)
    layer[10:20, 5:15] = 1000.0  # 8% of the pixels
    lab = np.zeros((30, 40), np.uint8)
    lab[10:20, 25:35] = 1
    write_mha(str(tmp_path / "ink.mha"), layer)
    write_mha(str(tmp_path / "labels.mha"), lab)
    out = tmp_path / "ink.png"
    r = run("render", "--input", str(tmp_path / "ink.mha"), "--labels", str(tmp_path / "labels.mha"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    picture = read_png(str(out)).astype(int)
    assert picture.shape == (384, 512, 3)  # the longest side at twice --size
    assert (picture[panel_pixels((10, 20, 30), 384), panel_pixels((5, 15, 40), 512)] == 255).all()
    inked = picture[panel_pixels((10, 20, 30), 384), panel_pixels((25, 35, 40), 512)]
    assert (np.abs(inked - blend(0, DEFAULT_LABEL_1 + (255,))) <= 1).all()
    assert (picture[:, :64] == 0).all()


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
