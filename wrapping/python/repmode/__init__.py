"""repmode: RepMode networks (Zhou et al., CVPR 2023) on the CPU, from Python.

NumPy arrays in, NumPy arrays out, over the C library ``librepmode.so.0`` through ctypes::

    >>> import numpy as np, repmode
    >>> model = repmode.Model("examples/models/cells.safetensors")
    >>> [t.name for t in model.tasks]
    ['nuclei', 'membranes', 'nucleoli', 'mitochondria']
    >>> volume = np.random.default_rng(0).random((16, 64, 64))    # (Z, Y, X), X fastest
    >>> prediction = model.predict(volume, "nuclei")              # float32, (16, 64, 64)
    >>> labels = model.labels(prediction, "nuclei")                # uint8: 1 where the task passes its threshold

Also: ``repmode.train`` (the core's trainer, from arrays or a data CSV), ``repmode.evaluate`` (the metrics of
``repmode eval``), ``repmode.reparam`` (the deploy form), ``repmode.read_image`` (the images the command line reads,
with their spacing) and ``repmode.dask.predict`` (chunked Dask arrays, e.g. over Zarr, on any Dask scheduler).

Spacing, origin and direction are the caller's: the network sees voxels only, and the outputs share the input's
grid, so keep the input's geometry and give it to whatever writes the outputs. Arrays are (Z, Y, X) with X fastest,
as ITK and the command line store volumes. How common readers' arrays go in, with their spacing:

- tifffile: ``tifffile.imread("stack.tif")`` is already (Z, Y, X); the spacing is in the ImageJ metadata
  (``TiffFile(...).imagej_metadata["spacing"]`` for Z) and the X/Y resolution tags (``1 / resolution``);
  ``repmode.read_image`` returns both.
- nibabel: ``img = nibabel.load("t1.nii.gz")``; the array is indexed (X, Y, Z): pass
  ``np.asarray(img.dataobj).T`` (Z, Y, X), whose spacing is ``img.header.get_zooms()[:3][::-1]``.
- zarr: ``zarr.open("volume.zarr")[:]`` for a volume that fits in memory (predict); a chunked one goes to
  ``repmode.dask.predict(dask.array.from_zarr("volume.zarr"), ...)``. Zarr keeps no spacing of its own: keep it
  in the store's attributes (``z.attrs["spacing"]``) as the examples do.
"""
from ._images import read_image
from ._model import Cancelled, Error, Model, NormParams, Task, evaluate, reparam
from ._provenance import provenance
from ._train import Sample, TrainResult, add_task, train

__all__ = ["Model", "Task", "NormParams", "Error", "Cancelled", "evaluate", "reparam", "train", "add_task", "Sample",
           "TrainResult", "read_image", "provenance"]
