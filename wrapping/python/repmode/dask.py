"""repmode.dask: the sliding-window prediction of chunked Dask arrays (e.g. over Zarr), on any Dask scheduler, equal bit
for bit to ``Model.predict`` on the whole volume.

    >>> import dask.array as da, repmode, repmode.dask
    >>> volume = da.from_zarr("volume.zarr")                      # (Z, Y, X), chunked any way
    >>> nuclei = repmode.dask.predict(volume, "cells.safetensors", "nuclei")
    >>> nuclei.to_zarr("nuclei.zarr")                             # computed block by block on the workers

How it works (docs in wrapping/README.md):

- **The window grid is the whole volume's.** Every block of the output is predicted by the core's
  ``rm_predict_region`` for that region of the whole volume: the same windows, blended in the same order, as the
  whole-volume run, so the blocks are bit for bit the corresponding parts of ``Model.predict`` (predict.h).
- **The halo.** A window [s, s + P) along an axis (P the patch) touches the block [b0, b1) when s < b1 and
  s + P > b0, so every window that reaches into the block lies inside [b0 - (P - 1), b1 + (P - 1)): the halo is
  ``P - 1`` voxels on each side of each axis (``halo(patch)``), cut at the volume's borders. The block's input is the
  block with this halo (``dask.array.overlap.overlap``, boundary "none"), and the read callback refuses any window
  that would read outside it.
- **Blocks.** Predictions are computed on blocks of ``block`` voxels (default: on each axis the smallest multiple
  of the input's chunk that is at least twice the patch, or the whole axis), each at least the halo thick, so that
  a halo comes from the next block only and windows across block borders are computed about twice at most; the
  result is then rechunked to ``chunks`` (default: the input's chunks, so that it can be written to a Zarr store
  laid out like the input). A task with 2D labels (the mean over depth) takes blocks of the whole depth.
- **Normalization.** The model normalizes with parameters of the whole volume. ``normalization(array, model)``
  computes them from the chunks as the core does, to the same float64 values: z-score sums in double in buffer
  order (the core's rm_normalization_compute is a sequential sum, so a parallel or pairwise sum would round
  differently): two passes of a chain of tasks, each adding the next slab of whole (Y, X) planes to the running
  sum as the core's loop does (``numpy.add.accumulate`` is that loop); percentiles are exact order statistics,
  selected by two rounds of integer histograms of the voxels' order-preserving keys (computed in parallel, exact
  for any order), and the parameters are made by the core's own ``rm_norm_params_zscore`` and
  ``rm_norm_params_percentile``. ``predict`` computes them first unless given ``normalization=`` (a NormParams, for
  instance from ``Model.normalization`` or an earlier call); each block applies them with the core's
  ``rm_normalize``.
- **Workers.** Each task loads the model file (its path must be readable by the workers: a shared file system, or
  the same path on every machine) and keeps the deploy form for the next block on the same thread. Worker processes
  import ``repmode`` and find ``librepmode.so.0`` as the client does: next to the package once installed (``pip
  install``), else ``$REPMODE_LIBRARY``, else the checkout's ``build/lib``. A ``LocalCluster`` started after
  ``import repmode`` gets ``REPMODE_LIBRARY`` set to the library the client loaded (importing this module sets it
  when unset), and spawned workers inherit the client's ``sys.path``.

Arrays from Zarr keep no spacing of their own: keep it in the store's attributes (``zarr.open(path).attrs``) and
give it to what writes the output; the prediction is on the input's grid.
"""
import ctypes
import math
import os
import threading

import dask
import dask.array as da
import numpy as np

from . import _lib
from ._lib import lib
from ._model import (Error, Model, NormParams, _Context, _Deploy, _mc_params, _probability, _TrainingForm,
                     check_volume_shape, norm_params)

# Worker processes started from here (LocalCluster, processes=True) find the library this process loaded.
os.environ.setdefault("REPMODE_LIBRARY", _lib.path)

_PIECE_VOXELS = 1 << 21  # voxels summed by one task of the z-score's chain: about 16 MB of doubles


def _model(model):
    return model if isinstance(model, Model) else Model(model)


def _method(model):
    """The model's rm_normalization."""
    method = _lib.Normalization()
    with _Context(1) as ctx, _Deploy(ctx, model.path, model.tasks[0].name) as net:
        ctx.check(lib.rm_deploy_normalization(ctx.ptr, net.ptr, ctypes.byref(method)))
    return method


def _as_dask(array):
    if isinstance(array, da.Array):
        return array
    if type(array).__module__.startswith("zarr"):
        return da.from_zarr(array)
    return da.asarray(array)


def halo(patch):
    """The halo (Z, Y, X) a block needs for windows of ``patch``: P - 1 on each axis (see the module's docs)."""
    return tuple(int(p) - 1 for p in patch)


# ---- normalization ------------------------------------------------------------------------------------------------

def _fold(acc, blocks, mean):
    """The core's loop over one slab (whole planes, buffer order): ``acc += x[i]`` (mean None) or
    ``acc += (x[i] - mean) * (x[i] - mean)``, each step rounded to double as the C loop rounds it."""
    slab = np.block(blocks).astype(np.float32, copy=False).ravel().astype(np.float64)
    if slab.size == 0:
        return acc
    if mean is not None:
        slab -= mean
        slab *= slab
    slab[0] += acc
    return float(np.add.accumulate(slab)[-1])


def _slabs(x):
    """[z0, z1) ranges of whole planes, inside one chunk of Z each, of at most _PIECE_VOXELS (one plane at least)."""
    planes = max(1, _PIECE_VOXELS // max(1, x.shape[1] * x.shape[2]))
    ranges, z = [], 0
    for c in x.chunks[0]:
        for a in range(z, z + c, planes):
            ranges.append((a, min(a + planes, z + c)))
        z += c
    return ranges


def _zscore_pass(x, mean):
    acc = 0.0
    for z0, z1 in _slabs(x):
        acc = dask.delayed(_fold, pure=True)(acc, x[z0:z1].to_delayed().tolist(), mean)
    return float(dask.compute(acc)[0])


def _keys(block):
    u = np.ascontiguousarray(block, dtype=np.float32).view(np.uint32)
    return np.where(u & np.uint32(0x80000000), ~u, u | np.uint32(0x80000000))


def _first_bad(block, offset, shape):
    """The buffer-order index in the whole volume of the block's first NaN or infinite voxel, or None."""
    b = np.asarray(block, dtype=np.float32)
    bad = ~np.isfinite(b)
    if not bad.any():
        return None
    where = np.argwhere(bad) + np.asarray(offset)
    flat = np.ravel_multi_index(tuple(where.T), shape)
    i = int(flat.min())
    return i, bool(np.isnan(b[tuple(np.argwhere(bad)[flat.argmin()])]))


def _high_histogram(block, offset, shape):
    return np.bincount(_keys(block).ravel() >> 16, minlength=1 << 16).astype(np.int64), _first_bad(block, offset, shape)


def _low_histograms(block, highs):
    keys = _keys(block).ravel()
    out = np.zeros((len(highs), 1 << 16), dtype=np.int64)
    top = keys >> 16
    for i, h in enumerate(highs):
        out[i] = np.bincount(keys[top == h] & 0xFFFF, minlength=1 << 16)
    return out


def _add(*parts):
    return sum(parts[1:], parts[0])


def _tree_sum(items):
    """A binary tree of delayed additions (the counts are integers: exact in any order)."""
    while len(items) > 1:
        items = [dask.delayed(_add, pure=True)(*items[i:i + 8]) for i in range(0, len(items), 8)]
    return items[0]


def _block_offsets(x):
    starts = [np.concatenate(([0], np.cumsum(c)[:-1])).astype(int) for c in x.chunks]
    blocks = x.to_delayed()
    return [(blocks[idx], tuple(int(starts[a][idx[a]]) for a in range(3))) for idx in np.ndindex(blocks.shape)]


def _percentile(x, method):
    n = int(x.size)
    blocks = _block_offsets(x)
    first = [dask.delayed(_high_histogram, nout=2, pure=True)(b, off, x.shape) for b, off in blocks]
    high, bad = dask.compute(_tree_sum([f[0] for f in first]), [f[1] for f in first])
    bad = [b for b in bad if b is not None]
    if bad:
        i, nan = min(bad)
        raise Error("normalization: voxel %d is %s; percentiles need finite intensities" % (i, "NaN" if nan else
                                                                                              "infinite"))
    ranks = (ctypes.c_int64 * 4)()
    lib.rm_normalization_ranks(ctypes.byref(method), n, ranks)
    cum = np.cumsum(high)
    found = []
    for r in ranks:
        h = int(np.searchsorted(cum, r, side="right"))
        found.append((h, int(r) - (int(cum[h - 1]) if h else 0)))
    highs = sorted({h for h, _ in found})
    low = dask.compute(_tree_sum([dask.delayed(_low_histograms, pure=True)(b, highs) for b, _ in blocks]))[0]
    at = (ctypes.c_float * 4)()
    for i, (h, residual) in enumerate(found):
        lo = int(np.searchsorted(np.cumsum(low[highs.index(h)]), residual, side="right"))
        key = np.uint32((h << 16) | lo)
        u = key & np.uint32(0x7FFFFFFF) if key & np.uint32(0x80000000) else ~key
        at[i] = float(np.array([u], dtype=np.uint32).view(np.float32)[0])
    return lib.rm_norm_params_percentile(ctypes.byref(method), n, at)


def normalization(array, model):
    """The NormParams with which ``model`` normalizes the whole of ``array`` (a Dask array, or anything
    ``dask.array.asarray`` takes), computed from its chunks on the current Dask scheduler, equal to those
    ``Model.normalization`` computes in one process (see the module's docs): z-score reads the volume twice in
    sequential slabs of whole planes, percentile twice in parallel chunks. No task holds more than one chunk, or one
    slab of about 2 M voxels."""
    model = _model(model)
    x = check_volume_shape(_as_dask(array))
    method = _method(model)
    if method.method == 1:  # RM_NORM_PERCENTILE
        params = _percentile(x, method)
    else:
        n = float(x.size)
        mean = _zscore_pass(x, None) / n
        sd = math.sqrt(_zscore_pass(x, mean) / n)
        params = lib.rm_norm_params_zscore(mean, sd)
    return NormParams(params.offset, params.scale, bool(params.clip))


# ---- prediction ---------------------------------------------------------------------------------------------------

_local = threading.local()


def _deploy(path, task, threads, training=False):
    """This thread's context, deploy form of (path, task) and, when asked, training form of path (None otherwise),
    kept for the next block."""
    key = (path, task, threads, training, os.stat(path).st_mtime_ns)
    held = getattr(_local, "held", None)
    if held is None or held[0] != key:
        if held is not None:
            for part in reversed(held[1:]):
                if part is not None:
                    part.__exit__()
        ctx = _Context(threads)
        net = model = None
        try:
            net = _Deploy(ctx, path, task)
            model = _TrainingForm(ctx, path) if training else None
        except BaseException:
            if net is not None:
                net.__exit__()
            ctx.__exit__()
            raise
        _local.held = held = (key, ctx, net, model)
    return held[1], held[2], held[3]


def _predict_block(block, *, path, task, patch, overlap, shape, starts, depth, params, threads, output_2d, binary,
                   mc=None, tta=False, block_info=None):
    """The prediction of one output block from the block with its halo (`block`); with `mc` (the McParams fields
    as a tuple, and whether the gates need the training form), the passes' mean and standard deviation stacked along
    a new first axis."""
    loc = block_info[0]["chunk-location"]
    out_start = [int(starts[a][loc[a]]) for a in range(3)]
    out_size = [int(starts[a][loc[a] + 1] - starts[a][loc[a]]) for a in range(3)]
    in_start = [max(0, out_start[a] - depth[a]) for a in range(3)]
    in_end = [min(shape[a], out_start[a] + out_size[a] + depth[a]) for a in range(3)]
    if tuple(block.shape) != tuple(e - s for s, e in zip(in_start, in_end)):
        raise Error("repmode.dask: block %s with its halo is %s, not the expected %s" %
                    (tuple(loc), block.shape, tuple(e - s for s, e in zip(in_start, in_end))))
    volume = np.array(block, dtype=np.float32, order="C", copy=True)
    p = norm_params(params)
    lib.rm_normalize(ctypes.byref(p), _lib.floats(volume), _lib.floats(volume), volume.size)
    errors = []

    def read(user, start, size, buf):
        try:
            lo = [start[a] - in_start[a] for a in range(3)]
            hi = [lo[a] + size[a] for a in range(3)]
            if any(lo[a] < 0 or hi[a] > volume.shape[a] for a in range(3)):
                raise Error("repmode.dask: a window reads [%s) outside block %s's input [%s): the halo is too small"
                            % (", ".join("%d:%d" % (start[a], start[a] + size[a]) for a in range(3)), tuple(loc),
                               ", ".join("%d:%d" % (in_start[a], in_end[a]) for a in range(3))))
            out = np.ctypeslib.as_array(buf, shape=tuple(size[a] for a in range(3)))
            out[...] = volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            return 0
        except BaseException as e:  # noqa: B036 - raised again below
            errors.append(e)
            return 1

    reader = _lib.READ_FN(read)
    no_progress = ctypes.cast(None, _lib.PROGRESS_FN)
    window = _lib.WindowParams()
    window.patch[:] = patch
    window.overlap = overlap
    window.blend = 0
    window.tta = 1 if tta else 0
    out = np.empty(out_size, dtype=np.float32)
    ctx, net, training = _deploy(path, task, threads, mc is not None and mc[1])
    if mc is not None:
        params_mc = _lib.McParams(*mc[0])
        shape_mc = ((1,) + tuple(out_size[1:])) if output_2d else tuple(out_size)
        mean, sd = np.empty(shape_mc, dtype=np.float32), np.empty(shape_mc, dtype=np.float32)
        status = lib.rm_predict_region_mc(ctx.ptr, net.ptr, training.ptr if training else None,
                                          lib.rm_deploy_task(net.ptr), ctypes.byref(window), ctypes.byref(params_mc),
                                          _lib.int64s(shape), reader, None, _lib.int64s(out_start),
                                          _lib.int64s(out_size), _lib.floats(mean), _lib.floats(sd), no_progress,
                                          None)
        if errors:
            raise errors[0]
        ctx.check(status)
        return np.stack([mean, sd])
    status = lib.rm_predict_region(ctx.ptr, net.ptr, ctypes.byref(window), _lib.int64s(shape), reader, None,
                                   _lib.int64s(out_start), _lib.int64s(out_size), _lib.floats(out), no_progress, None)
    if errors:
        raise errors[0]
    ctx.check(status)
    if output_2d:
        mean = np.empty((1,) + tuple(out_size[1:]), dtype=np.float32)
        ctx.check(lib.rm_depth_mean_forward(ctx.ptr, ctypes.byref(_lib.tensor(out)), ctypes.byref(_lib.tensor(mean))))
        out = mean
    return _probability(out) if binary else out


def _axis_blocks(length, size, depth):
    """Block sizes along one axis: `size` each, the last merged into the one before when thinner than the halo (a
    halo comes from the next block only)."""
    sizes = [size] * (length // size) + ([length % size] if length % size else [])
    if len(sizes) > 1 and sizes[-1] < depth:
        last = sizes.pop()
        sizes[-1] += last
    return tuple(sizes)


def predict(array, model, task, patch=None, overlap=0.5, normalization=None, block=None, chunks=None, threads=1,
            uncertainty=None, tta=False):
    """The prediction of ``task`` over a chunked volume, as a lazy Dask array: float32, equal bit for bit to
    ``Model.predict(array, task, patch, overlap)`` on the whole volume (probabilities for binary tasks, normalized
    intensities for regression tasks; (1, Y, X) for a task with 2D labels).

    array: (Z, Y, X), a Dask array (``dask.array.from_zarr``, ``from_array`` ...; other arrays go through
    ``dask.array.asarray``, a zarr.Array through ``from_zarr``). model: a Model or a model file's path (readable by
    the workers). task: a name, or a list of names (stacked along a new first axis, as Model.predict).
    normalization: None (computed now from the chunks, ``normalization(array, model)``: the volume is read twice
    before the graph is returned) or a NormParams to apply. block: (Z, Y, X) voxels predicted per task (see the
    module's docs; each at least the halo, ``patch - 1``). chunks: the output's chunks (default: the input's).
    threads: the core's threads per task (1 by default: Dask runs blocks in parallel).

    The returned array is computed by whatever Dask scheduler runs it, e.g. ``result.to_zarr(path)`` on a
    ``dask.distributed`` cluster, block by block; the volume is never gathered in one place.

    tta: test-time augmentation, as ``Model.predict``'s.
    uncertainty: Monte Carlo dropout as ``Model.predict``'s (True, or a dict of samples, seed, dropout, gate_noise);
    then the result is a pair of lazy arrays ``(mean, sd)``, equal bit for bit to ``Model.predict``'s (the passes'
    draws are keyed by window and voxel, so blocks give the whole run's values).
    """
    model = _model(model)
    x = check_volume_shape(_as_dask(array))
    tasks = model.predicted_tasks(task)
    output_2d = tasks[0].output_2d
    patch = [int(p) for p in (model.config["patch"] if patch is None else patch)]
    if len(patch) != 3:
        raise Error("patch: expected (Z, Y, X); got %s" % (patch,))
    if not 0.0 <= float(overlap) < 1.0:
        raise Error("overlap must be in [0, 1), not %s" % overlap)
    shape = tuple(int(s) for s in x.shape)
    depth = halo(patch)
    if block is None:
        block = []
        for a in range(3):
            c = max(1, int(x.chunks[a][0]))
            block.append(min(shape[a], c * -(-2 * patch[a] // c)))
    block = [int(b) for b in block]
    if len(block) != 3 or min(block) < 1:
        raise Error("block: expected (Z, Y, X) of positive sizes; got %s" % (block,))
    if output_2d:
        block[0] = shape[0]  # the mean over depth needs the whole depth
    core_chunks = tuple(_axis_blocks(shape[a], min(block[a], shape[a]), depth[a]) for a in range(3))
    for a in range(3):
        if len(core_chunks[a]) > 1 and min(core_chunks[a]) < depth[a]:
            raise Error("block: %d voxels along axis %d is thinner than the halo, patch - 1 = %d"
                        % (min(core_chunks[a]), a, depth[a]))
    if normalization is None:
        normalization = globals()["normalization"](x, model)
    params = tuple(normalization)
    starts = [tuple(int(v) for v in np.concatenate(([0], np.cumsum(c)))) for c in core_chunks]
    xb = x.rechunk(core_chunks)
    overlap_depth = {a: (depth[a] if len(core_chunks[a]) > 1 else 0) for a in range(3)}
    padded = da.overlap.overlap(xb, depth=overlap_depth, boundary={a: "none" for a in range(3)})
    out_chunks = ((1,), core_chunks[1], core_chunks[2]) if output_2d else core_chunks
    mc = _mc_params(uncertainty)
    gates = mc is not None and mc.gate_noise > 0 and not model.deploy_form
    outputs, spreads = [], []
    for t in tasks:
        fields = None
        if mc is not None:
            fields = ((mc.samples, mc.seed, mc.dropout, mc.gate_noise, int(t.kind == "binary"), int(output_2d)), gates)
        arguments = dict(path=os.path.abspath(model.path), task=t.name, patch=tuple(patch), overlap=float(overlap),
                         shape=shape, starts=starts, depth=tuple(overlap_depth[a] for a in range(3)), params=params,
                         threads=int(threads or 0), output_2d=output_2d, binary=t.kind == "binary", mc=fields,
                         tta=bool(tta))
        if chunks is None:
            target = ((1,), x.chunks[1], x.chunks[2]) if output_2d else x.chunks
        else:
            target = chunks
        if mc is None:
            out = padded.map_blocks(_predict_block, dtype=np.float32, chunks=out_chunks, **arguments)
            outputs.append(out.rechunk(target))
            continue
        both = padded.map_blocks(_predict_block, dtype=np.float32, chunks=((2,),) + out_chunks, new_axis=0,
                                 **arguments)
        outputs.append(both[0].rechunk(target))
        spreads.append(both[1].rechunk(target))
    if mc is None:
        return outputs[0] if isinstance(task, str) else da.stack(outputs)
    if isinstance(task, str):
        return outputs[0], spreads[0]
    return da.stack(outputs), da.stack(spreads)
