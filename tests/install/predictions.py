"""The examples' predictions against `repmode predict` (the command line: an independent consumer of the library) on
small synthetic volumes, one per committed model: a regression task of the cells model and the binary task with 2D
labels of the papyrus model."""
import glob
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MODELS = os.path.join(ROOT, "examples", "models")
REPMODE = os.environ.get("REPMODE", os.path.join(ROOT, "build", "bin", "repmode"))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from images import read_mha, read_nrrd  # noqa: E402


def run(args, **kwargs):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert r.returncode == 0, "%s\n%s%s" % (" ".join(map(str, args)), r.stdout, r.stderr)
    return r


def reference(folder):
    """[(model, task, input file, input volume (Z, Y, X) float32, what `repmode predict` writes for it)]."""
    import tifffile
    run([REPMODE, "synth", "cells", "--out", folder / "cells", "--size", "16,64,64"])
    run([REPMODE, "synth", "scroll", "--out", folder / "scroll", "--size", "16,64,64"])
    cases = [("cells.safetensors", "nuclei", folder / "cells" / "signal.nrrd",
              read_nrrd(str(folder / "cells" / "signal.nrrd"))),
             ("ink.safetensors", "ink", folder / "scroll" / "surface_volume",
              tifffile.imread(sorted(glob.glob(str(folder / "scroll" / "surface_volume" / "*.tif")))))]
    found = []
    for model, task, path, x in cases:
        out = folder / (task + ".mha")
        run([REPMODE, "predict", "--model", os.path.join(MODELS, model), "--task", task, "--input", path,
             "--output", out])
        found.append((model, task, path, x.astype(np.float32), read_mha(str(out))[0]))
    return found


def check_predict_volume(program, cases, folder, env=None):
    """examples/predict_volume.c, built as `program`, writes what `repmode predict` writes, bit for bit."""
    for model, task, _, x, expected in cases:
        raw, out = folder / (task + ".in.f32"), folder / (task + ".out.f32")
        x.astype("<f4").tofile(raw)
        run([program, os.path.join(MODELS, model), task, *x.shape, raw, out], env=env)
        got = np.fromfile(out, dtype="<f4")
        assert got.shape == (expected.size,), (task, got.shape, expected.shape)
        assert np.array_equal(got, expected.ravel()), (task, np.abs(got - expected.ravel()).max())
        assert expected.std() > 0.01, task  # a prediction, not a constant
