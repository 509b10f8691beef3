"""Shared fixtures: the package from this checkout (or the library in REPMODE_LIBRARY), and small synthetic volumes
with what `repmode predict` writes for them, the independent reference."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MODELS = os.path.join(ROOT, "examples", "models")
REPMODE = os.environ.get("REPMODE", os.path.join(ROOT, "build", "bin", "repmode"))
sys.path.insert(0, os.path.join(ROOT, "wrapping", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "cli"))
from images import read_mha, read_nrrd  # noqa: E402


def run(args, **kwargs):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert r.returncode == 0, "%s\n%s%s" % (" ".join(map(str, args)), r.stdout, r.stderr)
    return r


def cli_predict(folder, model, tasks, source, name):
    """(prediction, label map) that `repmode predict` writes for `tasks` (a comma-separated list)."""
    out, labels = folder / (name + ".mha"), folder / (name + "-labels.mha")
    run([REPMODE, "predict", "--model", os.path.join(MODELS, model), "--task", tasks, "--input", source,
         "--output", out, "--labels", labels])
    return read_mha(str(out))[0], read_mha(str(labels))[0]


@pytest.fixture(scope="session")
def cells(tmp_path_factory):
    """(volume as the CLI reads it, the signal's path, its folder)."""
    folder = tmp_path_factory.mktemp("cells")
    run([REPMODE, "synth", "cells", "--out", folder, "--size", "16,64,64"])
    return read_nrrd(str(folder / "signal.nrrd")), folder / "signal.nrrd", folder


@pytest.fixture(scope="session")
def scroll(tmp_path_factory):
    """(the surface volume's uint16 layers, its folder of TIFF layers, the output folder)."""
    import tifffile
    folder = tmp_path_factory.mktemp("scroll")
    run([REPMODE, "synth", "scroll", "--out", folder, "--size", "16,64,64"])
    layers = tifffile.imread(sorted(glob.glob(str(folder / "surface_volume" / "*.tif"))))
    return np.asarray(layers), folder / "surface_volume", folder
