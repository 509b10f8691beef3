"""`pip install --no-build-isolation ./wrapping/python` into a virtual environment: the installed package carries the
library it was built with and predicts from outside the source tree, with nothing in the environment pointing at
the build."""
import os
import shutil
import sys

import numpy as np

import repmode
from conftest import MODELS, ROOT, run

SCRIPT = """
import os, sys
import numpy as np
import repmode
here = os.path.dirname(repmode.__file__)
assert here.startswith(sys.prefix), (here, sys.prefix)      # the installed copy, not the checkout's
assert repmode._lib.path == os.path.join(here, "librepmode.so.0"), repmode._lib.path
model = repmode.Model(sys.argv[1])
volume = np.random.default_rng(5).random((16, 32, 32), dtype=np.float32)
np.save(sys.argv[2], model.predict(volume, "nuclei"))
"""


def test_pip_install_into_a_venv(tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", venv])
    # A copy of the package's folder, so that the build leaves nothing in the checkout.
    source = tmp_path / "source"
    shutil.copytree(os.path.join(ROOT, "wrapping", "python"), source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "*.so*", "__pycache__"))
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.setdefault("REPMODE_LIBRARY", repmode._lib.path)  # the library to install: this build's
    run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-build-isolation", source], env=env)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in ("REPMODE_LIBRARY", "PYTHONPATH")}
    out = tmp_path / "nuclei.npy"
    run([venv / "bin" / "python", "-c", SCRIPT, os.path.join(MODELS, "cells.safetensors"), out], cwd=outside,
        env=clean)
    # The same as this checkout's package (which test_predict holds to the command line, bit for bit).
    volume = np.random.default_rng(5).random((16, 32, 32), dtype=np.float32)
    expected = repmode.Model(os.path.join(MODELS, "cells.safetensors")).predict(volume, "nuclei")
    assert np.array_equal(np.load(out), expected)
