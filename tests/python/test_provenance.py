"""repmode.provenance against `repmode info --json` on what predict writes (NRRD, MetaImage, a NIfTI sidecar), NRRD's
escapes of key/value pairs undone (a path with a backslash and a quote), and Model.provenance against the file's
metadata read by the independent safetensors reader of tests/reference."""
import json
import os
import shutil
import sys

import numpy as np
import pytest

import repmode
from conftest import MODELS, REPMODE, ROOT, run
from images import write_nrrd

sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import repmode_safetensors as st  # noqa: E402

PARITY = os.path.join(ROOT, "tests", "fixtures", "parity_small.model.safetensors")


def predicted(tmp_path, name):
    source = tmp_path / name
    write_nrrd(str(source), np.random.default_rng(3).normal(5.0, 2.0, (8, 12, 16)).astype(np.float32))
    outputs = [tmp_path / "p.nrrd", tmp_path / "l.mha", tmp_path / "u.nii"]
    run([REPMODE, "predict", "--model", PARITY, "--task", "dna", "--input", source, "--output", outputs[0],
         "--labels", outputs[1], "--uncertainty", outputs[2], "--mc-samples", "2"])
    return source, outputs


def test_the_record_of_every_format_equals_info(tmp_path):
    source, outputs = predicted(tmp_path, 'odd "name" \\n here.nrrd')
    for path in outputs:
        record = repmode.provenance(path)
        assert record == json.loads(run([REPMODE, "info", path, "--json"]).stdout)
        assert record["input"]["file"] == str(source)  # the backslash and quotes as they were
    assert [repmode.provenance(p)["output"] for p in outputs] == ["prediction", "labels", "uncertainty"]


def test_an_image_without_a_record_gives_none_and_a_missing_one_an_error(tmp_path):
    source, outputs = predicted(tmp_path, "in.nrrd")
    assert repmode.provenance(source) is None
    os.remove(str(outputs[2]) + ".json")
    assert repmode.provenance(outputs[2]) is None
    with pytest.raises(repmode.Error, match="absent.nii"):
        repmode.provenance(tmp_path / "absent.nii")
    shutil.copy(outputs[0], tmp_path / "fake.mha")  # a NRRD named as MetaImage: its header is not MetaImage's
    assert repmode.provenance(tmp_path / "fake.mha") is None


def test_a_model_gives_its_own_provenance():
    for path in (PARITY, os.path.join(MODELS, "cells.safetensors")):
        _, metadata = st.read(path)
        assert repmode.Model(path).provenance == json.loads(metadata["repmode.provenance"])
