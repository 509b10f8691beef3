"""examples/slicer/run_as_slicer.py run as a user runs it: it drives RepModeSegmentation as Slicer does (the command
line from --xml), relays its progress and prints its return parameters; a parameter the module does not have is a
clear error."""
import os
import re
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from images import read_nrrd, write_nrrd  # noqa: E402
SCRIPT = os.path.join(ROOT, "examples", "slicer", "run_as_slicer.py")
MODULE = os.environ.get("REPMODE_SLICER_MODULE", os.path.join(ROOT, "build", "bin", "RepModeSegmentation"))
CELLS = os.path.join(ROOT, "examples", "models", "cells.safetensors")


def test_example_runs_the_module(tmp_path):
    source = tmp_path / "input.nrrd"
    rng = np.random.default_rng(0)
    write_nrrd(str(source), rng.normal(size=(16, 32, 32)).astype(np.float32), (0.5, 0.5, 1.0))
    outputs = {"outputVolume": str(tmp_path / "prediction.nrrd"), "labelMap": str(tmp_path / "labels.nrrd"),
               "segmentation": str(tmp_path / "cells.seg.nrrd")}
    values = {"modelFile": CELLS, "inputVolume": str(source), "task": "nuclei,membranes", "threshold": "0,0",
              **outputs}
    r = subprocess.run([sys.executable, SCRIPT, MODULE] + [f"{k}={v}" for k, v in values.items()],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # The command line: flags, then the images and the model at their indices, in index order.
    command = lines[0].split()
    assert command[:2] == ["$", MODULE] and "--task" in command and "--threshold" in command
    assert command[-5:] == [CELLS, str(source), *outputs.values()]
    assert "--patch" not in command  # an empty vector parameter is left out, as Slicer does
    assert any(re.fullmatch(r"\s*100\.0%", line) for line in lines)
    returned = {**outputs, "uncertaintyVolume": ""}  # no uncertainty volume chosen
    assert {line for line in lines if " = " in line} == {f"{k} = {v}" for k, v in returned.items()}
    # Two tasks with thresholds 0: both labels appear, and the segmentation holds the label map.
    labels = read_nrrd(outputs["labelMap"])
    assert {1, 2} <= set(np.unique(labels))
    assert np.array_equal(read_nrrd(outputs["segmentation"]), labels)


def test_example_refuses_an_unknown_parameter(tmp_path):
    r = subprocess.run([sys.executable, SCRIPT, MODULE, "modelFile=m", "colour=red"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("run_as_slicer: the module has no parameter colour")
    assert os.listdir(tmp_path) == []
