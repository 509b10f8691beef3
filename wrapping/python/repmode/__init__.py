"""repmode: RepMode networks (Zhou et al., CVPR 2023) on the CPU, from Python.

NumPy arrays in, NumPy arrays out, over the C library ``librepmode.so.0`` through ctypes::

    >>> import numpy as np, repmode
    >>> model = repmode.Model("examples/models/cells.safetensors")
    >>> [t.name for t in model.tasks]
    ['nuclei', 'membranes', 'nucleoli', 'mitochondria']
    >>> volume = np.random.default_rng(0).random((16, 64, 64))    # (Z, Y, X), X fastest
    >>> prediction = model.predict(volume, "nuclei")              # float32, (16, 64, 64)
    >>> labels = model.labels(prediction, "nuclei")                # uint8: 1 where the task passes its threshold

Spacing, origin and direction are the caller's: the network sees voxels only, and the outputs share the input's
grid, so keep the input's geometry and give it to whatever writes the outputs.
"""
from ._model import Cancelled, Error, Model, Task

__all__ = ["Model", "Task", "Error", "Cancelled"]
