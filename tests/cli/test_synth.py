"""repmode synth: the files a sample consists of, their sizes and types, determinism by seed, and errors."""
import filecmp
import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
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
