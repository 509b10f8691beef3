"""repmode predict checks every output path before any work (docs/cli.md §1.5): outputs that name the same file as
each other or as an input (also through "..", or a symbolic link), a format ITK cannot write, a folder given as a
file, a missing folder: each is exit 1 with a message naming the options, before the prediction starts, and the
inputs are left as they were."""
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from images import write_mha  # noqa: E402
from test_eval import SMALL  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))


def predict(tmp_path, *options):
    source = tmp_path / "in.mha"
    if not source.exists():
        write_mha(str(source), np.random.default_rng(0).normal(size=(8, 12, 16)).astype(np.float32))
    return subprocess.run([REPMODE, "predict", "--model", SMALL, "--task", "dna", "--input", str(source), *options],
                          capture_output=True, text=True, timeout=300)


def refused(r, *words):
    assert r.returncode == 1, (r.returncode, r.stderr)
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    assert "predicting" not in r.stderr and "normalizing" not in r.stderr, r.stderr  # before any work


def test_outputs_that_meet_each_other_or_an_input_are_refused(tmp_path):
    out = str(tmp_path / "out.mha")
    (tmp_path / "sub").mkdir()
    os.symlink(str(tmp_path / "in.mha"), str(tmp_path / "link.mha"))
    refused(predict(tmp_path, "--output", out, "--labels", out), "--output and --labels name the same file")
    refused(predict(tmp_path, "--output", out, "--labels", str(tmp_path / "sub" / ".." / "out.mha")),
            "--output and --labels name the same file")
    before = (tmp_path / "in.mha").read_bytes()
    refused(predict(tmp_path, "--output", str(tmp_path / "in.mha")), "--output names the input of --input")
    refused(predict(tmp_path, "--output", str(tmp_path / "link.mha")), "--output names the input of --input")
    refused(predict(tmp_path, "--output", out, "--colors", SMALL), "--colors names the input of --model")
    assert (tmp_path / "in.mha").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mha", "link.mha", "sub"]


def test_unwritable_names_are_refused_before_the_prediction(tmp_path):
    out = str(tmp_path / "out.mha")
    refused(predict(tmp_path, "--output", out, "--labels", str(tmp_path / "labels.xyz")),
            "--labels: no image format for the name", "labels.xyz")
    refused(predict(tmp_path, "--output", str(tmp_path / "out.png.txt")), "--output: no image format")
    (tmp_path / "folder.mha").mkdir()
    refused(predict(tmp_path, "--output", str(tmp_path / "folder.mha")), "--output:", "is a folder, not a file")
    refused(predict(tmp_path, "--output", out, "--colors", str(tmp_path / "in.mha" / "colors.txt")),
            "--colors: cannot write", "colors.txt: the folder", "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.mha", "in.mha"]
    r = predict(tmp_path, "--output", out, "--labels", str(tmp_path / "labels.nrrd"))  # and the good ones pass
    assert r.returncode == 0, r.stderr


def test_a_failure_after_the_prediction_leaves_none_of_the_outputs(tmp_path):
    """All or nothing: the last output to be put in place cannot be (a folder holds its name), so the prediction, label
    map, segmentation and colour table written before it are not left either, nor any temporary file; an older file
    at an output's name is replaced only by a complete run."""
    surfaces = tmp_path / "meshes"
    (surfaces / "dna.vtp").mkdir(parents=True)  # a folder where the mesh should go: its rename fails
    (tmp_path / "out.mha").write_bytes(b"an older output")
    outputs = ["--output", str(tmp_path / "out.mha"), "--labels", str(tmp_path / "labels.nrrd"),
               "--segmentation", str(tmp_path / "cells.seg.nrrd"), "--colors", str(tmp_path / "colors.txt"),
               "--surfaces", str(surfaces)]
    r = predict(tmp_path, *outputs)
    assert r.returncode == 1, r.stderr
    assert "dna.vtp" in r.stderr and "predicting" in r.stderr, r.stderr  # it failed at the end, after the work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mha", "meshes", "out.mha"]
    assert (tmp_path / "out.mha").read_bytes() == b"an older output"
    assert [p.name for p in surfaces.iterdir()] == ["dna.vtp"]
    (surfaces / "dna.vtp").rmdir()
    r = predict(tmp_path, *outputs)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.seg.nrrd", "colors.txt", "in.mha", "labels.nrrd",
                                                          "meshes", "out.mha"]
    assert [p.name for p in surfaces.iterdir()] == ["dna.vtp"]
