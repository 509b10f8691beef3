"""The Python examples (examples/python/) run as a user runs them, and give what the package gives."""
import os
import sys

import numpy as np
import pytest

import repmode
from conftest import MODELS, ROOT, run

EXAMPLES = os.path.join(ROOT, "examples", "python")
CELLS = os.path.join(MODELS, "cells.safetensors")


def example(name, *args, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "wrapping", "python"))
    env.setdefault("REPMODE_LIBRARY", repmode._lib.path)
    return run([sys.executable, os.path.join(EXAMPLES, name)] + list(args), env=env, **kwargs)


def test_predict_tifffile_keeps_the_spacing(cells, tmp_path):
    import tifffile
    volume, _, _ = cells
    stack = (volume * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cells.tif", stack, imagej=True, resolution=(1 / 0.108, 1 / 0.108),
                     metadata={"spacing": 0.29, "unit": "um", "axes": "ZYX"})
    out = example("predict_tifffile.py", CELLS, tmp_path / "cells.tif", "nuclei", tmp_path / "out" / "cells").stdout
    assert "wrote" in out
    model = repmode.Model(CELLS)
    expected = model.predict(stack, "nuclei")
    for name, want in [("cells-nuclei.tif", expected), ("cells-nuclei-labels.tif", model.labels(expected, "nuclei"))]:
        with tifffile.TiffFile(tmp_path / "out" / name) as tif:
            assert np.array_equal(tif.asarray(), want) and tif.asarray().dtype == want.dtype
            meta = tif.imagej_metadata
            assert meta["spacing"] == pytest.approx(0.29) and meta["unit"] == "um"
            for tag in ("XResolution", "YResolution"):
                num, den = tif.pages[0].tags[tag].value
                assert den / num == pytest.approx(0.108, rel=1e-6)
        # repmode.read_image reads the same spacing back.
        assert repmode.read_image(tmp_path / "out" / name)[1] == pytest.approx((0.29, 0.108, 0.108), rel=1e-6)


def test_dask_zarr_on_a_local_cluster(cells, tmp_path):
    import zarr
    volume, signal, _ = cells
    out = example("dask_zarr.py", CELLS, signal, "membranes", tmp_path / "membranes.zarr", "--to-zarr",
                  tmp_path / "cells.zarr", "--chunks", "6,20,24", "--block", "16,32,32").stdout
    assert "on 2 workers" in out
    result = zarr.open(str(tmp_path / "membranes.zarr"), mode="r")
    assert result.chunks == (6, 20, 24) and result.attrs["spacing"] == pytest.approx([0.29, 0.108, 0.108])
    assert np.array_equal(result[:], repmode.Model(CELLS).predict(volume, "membranes"))
