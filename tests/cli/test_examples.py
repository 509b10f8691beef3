"""The examples run as they stand: examples/itk_predict.cxx (an ITK pipeline of one's own around
itk::RepModeImageFilter, streamed) writes the same bytes as `repmode predict`, which test_predict.py checks against
the PyTorch reference; and it fails cleanly on a task the model lacks."""
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from images import write_mha  # noqa: E402
from test_eval import SMALL  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))
EXAMPLE = os.environ.get("REPMODE_ITK_PREDICT", os.path.join(HERE, "..", "..", "build", "bin", "repmode-itk-predict"))


def test_itk_pipeline_example_writes_what_predict_writes(tmp_path):
    x = np.random.default_rng(9).normal(50.0, 10.0, size=(24, 12, 16)).astype(np.int16)
    path = tmp_path / "in.mha"
    write_mha(str(path), x, spacing=(0.5, 0.5, 2.0))
    mine, theirs = tmp_path / "example.mha", tmp_path / "predict.mha"
    r = subprocess.run([EXAMPLE, SMALL, "dna", str(path), str(mine), "3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([REPMODE, "predict", "--model", SMALL, "--task", "dna", "--input", str(path), "--output",
                        str(theirs)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert mine.read_bytes() == theirs.read_bytes()
    r = subprocess.run([EXAMPLE, SMALL, "golgi", str(path), str(tmp_path / "no.mha")], capture_output=True, text=True)
    assert r.returncode == 1 and "golgi" in r.stderr, r.stderr
    assert not (tmp_path / "no.mha").exists()
