"""repmode synth: the files a sample consists of, their sizes and types, determinism by seed, the cells' imaging
options measured on the signal they change, and errors."""
import filecmp
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from images import image_bytes, read_nrrd  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))


def run(*args):
    return subprocess.run([REPMODE, *args], capture_output=True, text=True, timeout=300)


def nrrd_header(path):
    with open(path, "rb") as f:
        head = f.read(4096).split(b"\n\n")[0].decode("ascii", "replace")
    return dict(line.split(": ", 1) for line in head.splitlines()[1:] if ": " in line)


def test_cells_sample_has_a_signal_four_targets_and_a_csv(tmp_path):
    out = tmp_path / "cells"
    r = run("synth", "cells", "--out", str(out), "--size", "16,32,24", "--seed", "3")
    assert r.returncode == 0, r.stderr
    rows = (out / "data.csv").read_text().splitlines()
    assert rows[0] == "signal,target,task"
    tasks = [row.split(",")[2] for row in rows[1:]]
    assert tasks == ["nuclei", "membranes", "nucleoli", "mitochondria"]
    for row in rows[1:]:
        signal, target, _ = row.split(",")
        for name in (signal, target):
            header = nrrd_header(out / name)
            assert header["sizes"].split() == ["24", "32", "16"]  # NRRD lists x y z
            assert header["type"] in ("float", "float32")


def test_scroll_sample_is_a_folder_of_16_bit_layers_with_ink_and_mask(tmp_path):
    import tifffile  # installed by tools/install-deps.sh: missing is a failure
    out = tmp_path / "scroll"
    r = run("synth", "scroll", "--out", str(out), "--size", "12,64,48", "--seed", "5")
    assert r.returncode == 0, r.stderr
    layers = sorted(os.listdir(out / "surface_volume"))
    assert layers == ["%02d.tif" % z for z in range(12)]
    first = tifffile.imread(str(out / "surface_volume" / layers[0]))
    assert first.dtype.name == "uint16" and first.squeeze().shape == (64, 48)
    for name in ("inklabels.nrrd", "mask.nrrd"):
        header = nrrd_header(out / name)
        assert header["type"] in ("uint8", "unsigned char", "uchar")
    assert (out / "data.csv").read_text().splitlines()[1] == "surface_volume,inklabels.nrrd,ink,mask.nrrd"


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        assert run("synth", "cells", "--out", str(tmp_path / name), "--size", "8,16,16", "--seed", seed).returncode == 0
    assert filecmp.cmp(tmp_path / "a" / "nuclei.nrrd", tmp_path / "b" / "nuclei.nrrd", shallow=False)
    assert not filecmp.cmp(tmp_path / "a" / "nuclei.nrrd", tmp_path / "c" / "nuclei.nrrd", shallow=False)


def test_errors_exit_1_with_a_message(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    cases = [
        (["synth", "blobs", "--out", str(tmp_path / "x")], "cells|scroll"),
        (["synth", "cells", "--out", str(tmp_path / "y"), "--size", "4,32,32"], "below the minimum"),
        (["synth", "cells", "--out", str(tmp_path / "y"), "--size", "8,32"], "--size"),
        (["synth", "cells", "--out", str(tmp_path / "file" / "dir")], "cannot create the folder"),
    ]
    for args, needle in cases:
        r = run(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.startswith("repmode: ") and needle in r.stderr, r.stderr
    # A failed run leaves nothing: neither files nor the folders it made.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_missing_parent_folders_are_made(tmp_path):
    out = tmp_path / "no" / "such" / "dir"
    assert run("synth", "cells", "--out", str(out), "--size", "8,16,16").returncode == 0
    assert (out / "signal.nrrd").is_file() and (out / "data.csv").is_file()


# ---- cells' imaging options ------------------------------------------------------------------------------------------

IMAGING_SIZE = ("--size", "16,48,56", "--seed", "3")


def cells(tmp_path, name, *options):
    """The signal of a cells sample with these options, and the folder."""
    out = tmp_path / name
    r = run("synth", "cells", "--out", str(out), *IMAGING_SIZE, *options)
    assert r.returncode == 0, r.stderr
    return read_nrrd(out / "signal.nrrd").astype(np.float64), out


def test_imaging_options_change_the_signal_only(tmp_path):
    _, default = cells(tmp_path, "default")
    explicit_signal, explicit = cells(tmp_path, "explicit", "--contrast", "1", "--noise", "1", "--blur", "1",
                                      "--density", "1", "--illumination", "0")
    assert image_bytes(default / "signal.nrrd") == image_bytes(explicit / "signal.nrrd")
    for options in (["--contrast", "2"], ["--noise", "0.5"], ["--blur", "2"], ["--illumination", "0.3"]):
        signal, out = cells(tmp_path, "x".join(options), *options)
        assert np.mean(signal != explicit_signal) > 0.5, options
        for target in ("nuclei", "membranes", "nucleoli", "mitochondria"):
            assert image_bytes(out / (target + ".nrrd")) == image_bytes(default / (target + ".nrrd")), options
    # Density changes the cells, so the targets too.
    _, dense = cells(tmp_path, "dense", "--density", "2")
    assert not np.array_equal(read_nrrd(dense / "nuclei.nrrd"), read_nrrd(default / "nuclei.nrrd"))


def test_noise_scales_the_noise(tmp_path):
    s0, _ = cells(tmp_path, "n0", "--noise", "0")
    s1, _ = cells(tmp_path, "n1", "--noise", "1")
    s2, _ = cells(tmp_path, "n2", "--noise", "2")
    assert np.std(s2 - s0) / np.std(s1 - s0) == pytest.approx(2.0, rel=0.01)
    # The noise at 1: shot noise (gain 0.1) and read noise (4 counts), variance 0.1 · counts + 16.
    assert np.var(s1 - s0) / (0.1 * s0.mean() + 16.0) == pytest.approx(1.0, rel=0.05)


def test_contrast_scales_the_deviation_from_the_light(tmp_path):
    # Noise-free, the signal is light · (1 − contrast · structure): where it is not clamped to 0, 2·s1 − s2 and
    # 2·sh − s1 are both the light, and the deviations from it scale with the contrast.
    s1, _ = cells(tmp_path, "c1", "--noise", "0")
    s2, _ = cells(tmp_path, "c2", "--noise", "0", "--contrast", "2")
    sh, _ = cells(tmp_path, "ch", "--noise", "0", "--contrast", "0.5")
    linear = s2 > 0
    assert linear.mean() > 0.95
    light = 2 * s1 - s2
    assert np.abs(light - (2 * sh - s1))[linear].max() < 0.05
    dev1 = np.abs(s1 - light)[linear].sum()
    assert np.abs(s2 - light)[linear].sum() / dev1 == pytest.approx(2.0, rel=1e-3)
    assert np.abs(sh - light)[linear].sum() / dev1 == pytest.approx(0.5, rel=1e-3)


def test_blur_smooths_the_signal(tmp_path):
    energies = []
    for blur in ("0", "1", "3"):
        s, _ = cells(tmp_path, "b" + blur, "--noise", "0", "--blur", blur)
        energies.append(np.mean(np.diff(s, axis=2) ** 2) + np.mean(np.diff(s, axis=1) ** 2))
    assert energies[1] < 0.8 * energies[0] and energies[2] < 0.8 * energies[1], energies


def test_illumination_is_a_linear_gradient_of_the_given_strength(tmp_path):
    flat, _ = cells(tmp_path, "flat", "--noise", "0")
    lit, _ = cells(tmp_path, "lit", "--noise", "0", "--illumination", "0.4")
    ratio = (lit / flat).mean(axis=0)  # the gradient, the same on every slice
    h, w = ratio.shape
    y, x = np.mgrid[0:h, 0:w]
    dx, dy = x - (w - 1) / 2, y - (h - 1) / 2
    design = np.stack([np.ones(h * w), dx.ravel(), dy.ravel()], axis=1)
    (a, bx, by), *_ = np.linalg.lstsq(design, ratio.ravel(), rcond=None)
    assert a == pytest.approx(1.0, abs=1e-4)
    assert np.abs(ratio - (a + bx * dx + by * dy)).max() < 1e-4
    # 1 ± 0.4 at the field's far corners (or edges), along the seed's direction.
    assert abs(bx) * (w - 1) / 2 + abs(by) * (h - 1) / 2 == pytest.approx(0.4, abs=1e-3)


def test_imaging_errors_exit_1_and_write_nothing(tmp_path):
    cases = [
        (["cells", "--contrast", "0"], "contrast = 0 is outside (0, 10]"),
        (["cells", "--contrast", "11"], "contrast"),
        (["cells", "--noise", "-0.5"], "noise = -0.5 is outside [0, 10]"),
        (["cells", "--blur", "6"], "blur = 6 is outside [0, 5]"),
        (["cells", "--density", "0.2"], "density = 0.2 is outside [0.25, 4]"),
        (["cells", "--density", "1e40"], "density = 1e+40 is outside"),
        (["cells", "--illumination", "1"], "illumination = 1 is outside [0, 1)"),
        (["cells", "--illumination", "-0.1"], "illumination"),
        (["cells", "--noise", "lots"], "lots"),
        (["scroll", "--noise", "0", "--blur", "2"], "synth scroll does not take --noise, --blur"),
        (["scroll", "--density", "1"], "synth scroll does not take --density"),
    ]
    for args, needle in cases:
        r = run("synth", args[0], "--out", str(tmp_path / "no" / "out"), "--size", "8,16,16", *args[1:])
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.startswith("repmode: ") and needle in r.stderr, (args, r.stderr)
    assert list(tmp_path.iterdir()) == []
