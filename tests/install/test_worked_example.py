"""The worked example that opens include/repmode/repmode.h is examples/predict_volume.c after its opening comment, line
for line; built (repmode-predict-volume), it writes what `repmode predict` writes, and reports errors with the
context's message."""
import os
import subprocess

from predictions import MODELS, ROOT, check_predict_volume, reference

PROGRAM = os.environ["REPMODE_PREDICT_VOLUME"]


def test_header_opens_with_the_program():
    with open(os.path.join(ROOT, "examples", "predict_volume.c")) as f:
        source = f.read()
    body = source[source.index("*/\n") + 3:].rstrip("\n").split("\n")
    block = "\n".join(" *     " + line if line else " *" for line in body)
    with open(os.path.join(ROOT, "include", "repmode", "repmode.h")) as f:
        header = f.read()
    opening = header[:header.index("*/")]
    assert block in opening, "repmode.h's example and examples/predict_volume.c differ"


def test_predicts_what_repmode_predict_writes(tmp_path):
    check_predict_volume(PROGRAM, reference(tmp_path), tmp_path)


def test_reports_the_contexts_message(tmp_path):
    raw = tmp_path / "x.f32"
    raw.write_bytes(bytes(4 * 8 * 8 * 8))
    r = subprocess.run([PROGRAM, os.path.join(MODELS, "cells.safetensors"), "golgi", "8", "8", "8", str(raw),
                        str(tmp_path / "y.f32")], capture_output=True, text=True)
    assert r.returncode == 1 and "no task 'golgi'" in r.stderr, r.stderr
    assert not (tmp_path / "y.f32").exists()
