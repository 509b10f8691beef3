"""repmode.Model: a model file's tasks and configuration, and its predictions over NumPy volumes."""
import contextlib
import ctypes
import json
import math
import os
from collections import namedtuple

import numpy as np

from . import _lib
from ._lib import lib


class Error(Exception):
    """A failure of the repmode core, with its message (``rm_ctx_error``)."""


class Cancelled(Error):
    """The prediction was stopped by its progress callback (the core's ``RM_ERR_CANCELLED``)."""


NormParams = namedtuple("NormParams", "offset scale clip")
NormParams.__doc__ = """The normalization of one volume (the core's rm_norm_params): voxels become
``(x - offset) * scale``, in double, rounded to float32, clipped to [0, 1] when ``clip``. ``Model.normalization``
computes them as the core does for a whole volume; ``Model.predict(normalization=...)`` and ``repmode.dask.predict``
apply given ones."""

Task = namedtuple("Task", "name kind threshold output_2d color")
Task.__doc__ = """One task of a model: ``kind`` is ``"regression"`` or ``"binary"``; ``threshold`` the label-map
threshold saved in the model file (None when it has none); ``output_2d`` True for 2D labels of a surface volume (the
prediction is one layer: the mean over depth); ``color`` (r, g, b) in [0, 1], or None."""


class _Context:
    """An rm_ctx for one call: its threads and its last error."""

    def __init__(self, threads=None):
        threads = int(threads or 0)
        if not 0 <= threads <= _lib.MAX_THREADS:
            raise Error("threads=%d is out of range: 0 (all cores) to %d" % (threads, _lib.MAX_THREADS))
        self.ptr = lib.rm_ctx_create(threads)
        if not self.ptr:
            raise MemoryError("repmode: out of memory")

    def check(self, status, where=None):
        """Raises the core's message for a failed status, after "<where>: " when given."""
        if status != _lib.OK:
            message = lib.rm_ctx_error(self.ptr).decode("utf-8", "replace")
            if where:
                message = "%s: %s" % (where, message)
            raise (Cancelled if status == _lib.ERR_CANCELLED else Error)(message)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        lib.rm_ctx_free(self.ptr)


class _Deploy:
    """One task's deploy form (experts merged, BatchNorm folded), freed on exit."""

    def __init__(self, ctx, path, task):
        self.ptr = ctypes.c_void_p()
        ctx.check(lib.rm_deploy_load(ctx.ptr, path.encode(), task.encode(), ctypes.byref(self.ptr)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        lib.rm_deploy_free(self.ptr)


class _TrainingForm:
    """A training-form model file loaded whole (rm_model_load), freed on exit."""

    def __init__(self, ctx, path):
        self.ptr = ctypes.c_void_p()
        ctx.check(lib.rm_model_load(ctx.ptr, os.fspath(path).encode(), ctypes.byref(self.ptr)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        lib.rm_model_free(self.ptr)


class _Callbacks:
    """The read and progress callbacks of rm_predict_region. An exception raised in one of them (KeyboardInterrupt
    from Ctrl-C among them: Python runs signal handlers when a callback takes the GIL back) stops the core, which
    returns, and is raised again by ``reraise``: ctypes would otherwise print and swallow it."""

    def __init__(self, volume, progress, done, share):
        self.volume, self.progress, self.done, self.share = volume, progress, done, share
        self.error = None
        self.read = _lib.READ_FN(self._read)
        self.report = _lib.PROGRESS_FN(self._report)

    def _read(self, user, start, size, buf):
        try:
            z, y, x = (start[i] for i in range(3))
            d, h, w = (size[i] for i in range(3))
            out = np.ctypeslib.as_array(buf, shape=(d, h, w))
            out[...] = self.volume[z:z + d, y:y + h, x:x + w]
            return 0
        except BaseException as e:  # noqa: B036 - handed back to the caller by reraise
            self.error = e
            return 1

    def _report(self, user, fraction):
        try:
            if self.progress is not None and self.progress((self.done + fraction) * self.share):
                return 1
            return 0
        except BaseException as e:  # noqa: B036
            self.error = e
            return 1

    def reraise(self):
        if self.error is not None:
            raise self.error


class Model:
    """A model file (training or deploy form) of the repmode core.

    >>> model = repmode.Model("examples/models/ink.safetensors")
    >>> model.tasks[0]
    Task(name='ink', kind='binary', threshold=0.8476..., output_2d=True, color=None)
    >>> model.config["patch"]
    [16, 64, 64]

    A missing or malformed file raises repmode.Error with the core's message.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        info = _lib.ModelInfo()
        with _Context() as ctx:
            ctx.check(lib.rm_model_info_read(ctx.ptr, self.path.encode(), ctypes.byref(info)))
        try:
            self.deploy_form = bool(info.deploy)
            self.parameters = int(info.parameters)
            self.config = json.loads(_lib.take_string(lib.rm_config_json(ctypes.byref(info.cfg))))
            self.tasks = [_task(info.cfg.tasks[i]) for i in range(info.cfg.n_tasks)]
            self.provenance = json.loads(info.provenance) if info.provenance else None
        finally:
            lib.rm_model_info_free(ctypes.byref(info))

    def __repr__(self):
        return "repmode.Model(%r)" % self.path

    def task(self, name):
        """The Task named ``name``; an unknown name raises repmode.Error naming the model's tasks."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise Error("the model %s has no task '%s' (its tasks: %s)"
                    % (self.path, name, ", ".join(t.name for t in self.tasks)))

    def predicted_tasks(self, task):
        """The Tasks that ``predict`` computes for ``task`` (a name or a list of names): each known, none twice, and
        all with 2D labels or none, as on the command line; repmode.Error otherwise."""
        names = [task] if isinstance(task, str) else list(task)
        if not names:
            raise Error("no task given")
        tasks = [self.task(n) for n in names]
        if len(set(names)) != len(names):
            raise Error("a task is named twice in %s" % names)
        if any(t.output_2d != tasks[0].output_2d for t in tasks):
            raise Error("tasks with 2D labels and tasks with 3D labels cannot be predicted together: %s" % names)
        return tasks

    def predict(self, array, task, patch=None, overlap=0.5, threads=None, progress=None, normalization=None,
                non_finite="refuse", uncertainty=None, tta=False):
        """The sliding-window prediction of ``task`` over a 3D volume, as ``repmode predict`` computes it.

        array: (Z, Y, X), X fastest, any real dtype (converted to float32 as the command line reads images); it is
        normalized with the model's method and the parameters of the whole volume, on a copy. task: a task name, or
        a list of names (the predictions stacked along a new first axis, in that order; 2D-label tasks and 3D tasks
        cannot be mixed, as on the command line). patch: the window (Z, Y, X), the model's by default; overlap: the
        fraction of the window shared by neighbours; threads: worker threads (None: all cores; the result is the
        same for any count). progress: called with the fraction done (0 to 1); returning True cancels the
        prediction, which raises repmode.Cancelled. Ctrl-C cancels it too (KeyboardInterrupt). normalization: None
        (the model's method with the parameters of this volume, as the command line) or a NormParams to apply
        instead (e.g. those of a larger volume this array is a part of). non_finite: what to do with NaN or infinite
        voxels, as ``repmode predict --non-finite``: "refuse" (repmode.Error naming their count and the first's
        (x, y, z)), "zero" or "mean" (the mean of the finite voxels in their place).

        Returns float32: probabilities for binary tasks, normalized intensities for regression tasks; shaped as the
        input, or (1, Y, X) for a task with 2D labels (the mean over depth of the logits, then the probability: the
        one-layer image the command line writes).

        uncertainty: Monte Carlo dropout (docs/network.md §6.3), as ``repmode predict --uncertainty``: True for the
        defaults, or a dict with any of ``samples`` (10), ``seed`` (0), ``dropout`` (0.1) and ``gate_noise`` (0.1;
        needs a training-form model). Then predict returns ``(mean, sd)``: the passes' mean (of probabilities for a
        binary task) and their per-voxel standard deviation, each shaped as above; the same seed gives the same
        arrays.

        >>> mean, sd = model.predict(volume, "nuclei", uncertainty={"samples": 8, "seed": 1})

        tta: test-time augmentation (docs/network.md §6.4), as ``repmode predict --tta``: every window the mean of
        the network over the 8 in-plane flips and rotations of its input, turned back (8 times the work).

        >>> volume = np.random.default_rng(0).random((16, 64, 64))
        >>> model.predict(volume, ["nuclei", "membranes"]).shape
        (2, 16, 64, 64)

        Arrays from readers, with their spacing (which the outputs share: give it to what writes them):

        >>> volume = tifffile.imread("stack.tif")                   # (Z, Y, X); spacing: repmode.read_image
        >>> img = nibabel.load("t1.nii.gz")                         # indexed (X, Y, Z): transpose
        >>> volume, spacing = np.asarray(img.dataobj).T, img.header.get_zooms()[:3][::-1]
        >>> z = zarr.open("volume.zarr", mode="r")                  # whole; chunked: repmode.dask.predict
        >>> volume, spacing = z[:], z.attrs.get("spacing")
        >>> prediction = model.predict(volume, "nuclei")

        The GIL is released while the core computes; it is taken back only to read windows and report progress.
        """
        tasks = self.predicted_tasks(task)
        volume = _volume(array)  # a copy, normalized in place below
        window = _window(self.config, patch, overlap, tta)
        mc = _mc_params(uncertainty)
        outputs, spreads = [], []
        with _Context(threads) as ctx:
            _replace_non_finite(ctx, volume, non_finite)
            gates = mc is not None and mc.gate_noise > 0 and not self.deploy_form  # noisy gates need the experts
            with _TrainingForm(ctx, self.path) if gates else contextlib.nullcontext() as training:
                for i, t in enumerate(tasks):
                    with _Deploy(ctx, self.path, t.name) as net:
                        if i == 0:  # the tasks of a model share its normalization
                            _normalize(ctx, net, volume, normalization)
                        if mc:
                            mc.probabilities, mc.depth_mean = t.kind == "binary", t.output_2d
                            out, sd = _predict_mc(ctx, net, training, window, mc, volume, progress, i,
                                                  1.0 / len(tasks))
                            outputs.append(out)
                            spreads.append(sd)
                            continue
                        out = _predict_whole(ctx, net, window, volume, progress, i, 1.0 / len(tasks))
                    if t.output_2d:  # 2D labels: the mean over depth of the logits (docs/network.md §7)
                        out = _depth_mean(ctx, out)
                    if t.kind == "binary":
                        out = _probability(out)
                    outputs.append(out)
        if not mc:
            return outputs[0] if isinstance(task, str) else np.stack(outputs)
        if isinstance(task, str):
            return outputs[0], spreads[0]
        return np.stack(outputs), np.stack(spreads)

    def normalization(self, array):
        """The NormParams with which predict normalizes ``array`` (the model's method, ``config``'s
        ``normalization``, over the whole volume, computed by the core's rm_normalization_compute on its float32
        values)."""
        volume = _volume(array)
        with _Context() as ctx:
            with _Deploy(ctx, self.path, self.tasks[0].name) as net:
                params = _compute_params(ctx, net, volume)
        return NormParams(params.offset, params.scale, bool(params.clip))

    def evaluate(self, array, target, task, mask=None, patch=None, overlap=0.5, threshold=None, threads=None,
                 progress=None):
        """The metrics ``repmode eval`` prints for ``task`` on a volume and its ground truth, as a dict with the
        same names and values (docs/cli.md §3.6), computed by the core's metrics (rm_regression_metrics_compute,
        rm_binary_metrics_compute):

        - regression: ``{"task", "kind": "regression", "mse", "mae", "r2", "pearson", "ssim", "ssim_range",
          "voxels"}``; the input and the target are both normalized with the model's method (each with its own
          volume's parameters), so the metrics are in normalized units, as the command line and the official code
          report them; ``ssim`` (None where undefined) uses the target's range ``ssim_range``;
        - binary: ``{"task", "kind": "binary", "f05", "dice", "precision", "recall", "auc", "threshold",
          "voxels"}``: the probabilities thresholded at ``threshold`` (default: the task's, else 0.5) against
          ``target > 0.5``; ``auc`` is the ROC AUC of the probabilities.

        A value that is not finite is None (the command line prints null). array: (Z, Y, X); target and mask (only
        voxels where mask > 0.5 count): the same shape, or for a task with 2D labels (Y, X) or (1, Y, X) maps of
        the layers, measured against the mean over depth of the prediction. patch, overlap, threads, progress: as
        predict (Gaussian blending, as eval).

        >>> repmode.evaluate("examples/models/cells.safetensors", signal, nuclei, "nuclei")["r2"]
        0.83...
        """
        t = self.task(task)
        if self.config["in_channels"] != 1 or self.config["out_channels"] != 1:
            raise Error("evaluate needs a model of one input and one output channel (this one has %d and %d)"
                        % (self.config["in_channels"], self.config["out_channels"]))
        volume = _volume(array)
        gt = _label(target, volume.shape, t, "target")
        m = None if mask is None else _label(mask, volume.shape, t, "mask")
        window = _window(self.config, patch, overlap)
        with _Context(threads) as ctx:
            with _Deploy(ctx, self.path, t.name) as net:
                _normalize(ctx, net, volume)
                if t.kind == "regression":
                    _normalize(ctx, net, gt)
                pred = _predict_whole(ctx, net, window, volume, progress, 0, 1.0)
            if t.output_2d:
                pred = _depth_mean(ctx, pred)
            return _metrics(ctx, t, pred, gt, m, threshold)

    def reparam(self, task, out):
        """Writes the deploy form of ``task`` to ``out`` as ``repmode reparam`` does (the same bytes): for each
        task, every MoDE layer's experts merged into one 5x5x5 kernel and every BatchNorm folded into its
        convolution. task: a name, a list of names, a comma-separated list, or "all". The model must be a
        training-form file (the core refuses a deploy form). Returns the written file's Model.

        >>> deploy = model.reparam("nuclei", "nuclei.deploy.safetensors")
        >>> deploy.deploy_form
        True
        """
        out = os.fspath(out)
        with _Context() as ctx:
            with _TrainingForm(ctx, self.path) as m:
                config = lib.rm_model_config(m.ptr).contents
                names = [config.tasks[k].name.decode("utf-8") for k in range(config.n_tasks)]
                if isinstance(task, str):
                    wanted = names if task == "all" else task.split(",")
                else:
                    wanted = list(task)
                if not wanted:
                    raise Error("no task given")
                indices = []
                for name in wanted:
                    k = lib.rm_model_task_index(m.ptr, name.encode())
                    if k < 0:
                        raise Error("the model %s has no task '%s' (it has: %s)" % (self.path, name, ", ".join(names)))
                    indices.append(k)
                ctx.check(lib.rm_model_save_deploy(ctx.ptr, m.ptr, (ctypes.c_int * len(indices))(*indices),
                                                   len(indices), out.encode()))
        return Model(out)

    def labels(self, prediction, task, threshold=None):
        """The label map (uint8) of predictions, as ``repmode predict --labels`` makes it: label i + 1 where task i
        (in the order of ``task``) passes its threshold, the task furthest above its threshold where several do
        (the first on a tie), 0 elsewhere.

        prediction: what predict returned for the same ``task`` (one task: its array; several: stacked). threshold:
        one value for every task, one per task, or None for each task's default: the model's threshold for the task,
        else 0.5 for a binary task (probabilities), else Otsu's threshold of the whole prediction (256 bins, as
        ITK's histogram and Otsu calculator that the command line uses). The thresholds used are left in
        ``model.thresholds_used``, as the command line's last stage line names them.

        >>> p = model.predict(volume, "ink")
        >>> model.labels(p, "ink").dtype
        dtype('uint8')
        """
        names = [task] if isinstance(task, str) else list(task)
        tasks = [self.task(n) for n in names]
        stack = np.asarray(prediction, dtype=np.float32)
        if isinstance(task, str):
            stack = stack[np.newaxis]
        if stack.shape[0] != len(tasks):
            raise Error("%d predictions for %d tasks" % (stack.shape[0], len(tasks)))
        given = [None] * len(tasks) if threshold is None else list(np.broadcast_to(threshold, (len(tasks),)))
        used = []
        for t, p, g in zip(tasks, stack, given):
            if g is None or math.isnan(g):
                g = t.threshold
            if g is None:
                g = 0.5 if t.kind == "binary" else otsu_threshold(p)
            used.append(float(g))
        self.thresholds_used = used
        label = np.zeros(stack.shape[1:], dtype=np.uint8)
        best = np.zeros(stack.shape[1:], dtype=np.float64)
        for i, (p, g) in enumerate(zip(stack, used)):
            margin = p.astype(np.float64) - g
            better = margin > best  # above the threshold and further than the tasks before
            label[better] = i + 1
            best[better] = margin[better]
        return label


def otsu_threshold(values, bins=256):
    """Otsu's threshold of ``values`` over ``bins`` bins, as ITK's ImageToHistogramFilter (automatic minimum and
    maximum, the maximum raised by a hundredth of a bin so that it falls inside) and OtsuThresholdCalculator (the
    upper edge of the last bin of the lower class) compute it."""
    v = np.asarray(values, dtype=np.float32).ravel()
    lo, hi = np.float32(v.min()), np.float32(v.max())
    hi = np.float32(hi + np.float32(np.float32(hi - lo) / np.float32(bins)) / np.float32(100.0))
    edges = lo + (np.arange(bins + 1, dtype=np.float64) * ((float(hi) - float(lo)) / bins))
    counts, _ = np.histogram(v.astype(np.float64), bins=edges)
    centres = (edges[:-1] + edges[1:]) / 2
    total = counts.sum()
    mean = (counts * centres).sum() / total
    best, best_k = -1.0, 0
    w0 = m0 = 0.0
    for k in range(bins - 1):
        w0 += counts[k]
        m0 += counts[k] * centres[k]
        w1 = total - w0
        if w0 == 0 or w1 == 0:
            continue
        mu0, mu1 = m0 / w0, (mean * total - m0) / w1
        between = w0 * (mu0 - mean) ** 2 + w1 * (mu1 - mean) ** 2
        if between > best:
            best, best_k = between, k
    return float(edges[best_k + 1])


def _task(t):
    threshold = float(t.threshold)
    return Task(name=t.name.decode("utf-8"), kind="binary" if t.kind == _lib.TASK_BINARY else "regression",
                threshold=None if math.isnan(threshold) else threshold, output_2d=bool(t.output_2d),
                color=tuple(float(c) for c in t.color) if t.has_color else None)


def _method(ctx, net):
    """The rm_normalization of a deploy form."""
    method = _lib.Normalization()
    ctx.check(lib.rm_deploy_normalization(ctx.ptr, net.ptr, ctypes.byref(method)))
    return method


def _compute_params(ctx, net, volume):
    """The rm_norm_params of volume (float32, C-contiguous) with the model's method, by the core."""
    params = _lib.NormParams()
    ctx.check(lib.rm_normalization_compute(ctx.ptr, ctypes.byref(_method(ctx, net)), _lib.floats(volume),
                                           volume.size, ctypes.byref(params)))
    return params


def norm_params(given):
    """An rm_norm_params from a NormParams (or any (offset, scale, clip) triple)."""
    offset, scale, clip = given
    return _lib.NormParams(float(offset), float(scale), int(bool(clip)))


def _replace_non_finite(ctx, volume, policy):
    """The non-finite voxels of volume (float32, C-contiguous) replaced in place by the core's rule for ``policy``
    (repmode/nonfinite.h), or repmode.Error naming their count and the first when the policy refuses them."""
    chosen = ctypes.c_int()
    ctx.check(lib.rm_nonfinite_policy_parse(ctx.ptr, str(policy).encode(), ctypes.byref(chosen)))
    census = _lib.NonFiniteCensus(first=-1)  # rm_nonfinite_census_init
    lib.rm_nonfinite_census_add(ctypes.byref(census), _lib.floats(volume), volume.size)
    value = ctypes.c_float()
    ctx.check(lib.rm_nonfinite_resolve(ctx.ptr, ctypes.byref(census), chosen, _lib.int64s(volume.shape),
                                       ctypes.byref(value)))
    lib.rm_nonfinite_replace(_lib.floats(volume), volume.size, value)


def _normalize(ctx, net, volume, given=None):
    """volume (float32, C-contiguous) normalized in place: with the given parameters, else with the model's method
    over the whole volume."""
    params = _compute_params(ctx, net, volume) if given is None else norm_params(given)
    data = _lib.floats(volume)
    lib.rm_normalize(ctypes.byref(params), data, data, volume.size)


def _volume(array):
    """A C-contiguous float32 copy of a 3D array, converted as the command line converts the voxels it reads."""
    return check_volume_shape(np.array(array, dtype=np.float32, order="C", copy=True))


def check_volume_shape(volume):
    """``volume`` itself when it is a non-empty 3D array (NumPy or Dask); repmode.Error otherwise."""
    if volume.ndim != 3:
        raise Error("expected a 3D array (Z, Y, X); got one of shape %s" % (volume.shape,))
    if volume.size == 0:
        raise Error("the array is empty: shape %s" % (volume.shape,))
    return volume


def _label(array, shape, task, what):
    """A float32 copy of a target or a mask of a volume of `shape` for `task`: the volume's shape, or one layer of its
    (Y, X) for a task with 2D labels, which may come as (Y, X)."""
    a = np.array(array, dtype=np.float32, order="C", copy=True)
    if task.output_2d:
        if a.ndim == 2:
            a = a[np.newaxis]
        if a.shape != (1,) + tuple(shape[1:]):
            raise Error("the %s is %s, but task '%s' has 2D labels: it needs a 2D map of the layers, %s (Y, X)"
                        % (what, a.shape, task.name, tuple(shape[1:])))
        return a
    if a.shape != tuple(shape):
        raise Error("the %s is %s but the volume is %s: they must have the same shape" % (what, a.shape, tuple(shape)))
    return a


def _window(config, patch, overlap, tta=False):
    window = _lib.WindowParams()
    patch = config["patch"] if patch is None else [int(p) for p in patch]
    if len(patch) != 3:
        raise Error("patch: expected (Z, Y, X); got %s" % (patch,))
    window.patch[:] = patch
    window.overlap = float(overlap)
    window.blend = 0  # RM_BLEND_GAUSSIAN, the official blending
    window.tta = 1 if tta else 0
    return window


def _predict_whole(ctx, net, window, volume, progress, done, share):
    """The logits of the whole (normalized) volume."""
    size = _lib.int64s(volume.shape)
    out = np.empty(volume.shape, dtype=np.float32)
    calls = _Callbacks(volume, progress, done, share)
    status = lib.rm_predict_region(ctx.ptr, net.ptr, ctypes.byref(window), size, calls.read, None,
                                   _lib.int64s((0, 0, 0)), size, _lib.floats(out), calls.report, None)
    calls.reraise()
    ctx.check(status)
    return out


def _mc_params(uncertainty):
    """The core's Monte Carlo parameters of predict's ``uncertainty`` (None when it asks for none)."""
    if uncertainty is None or uncertainty is False:
        return None
    options = {} if uncertainty is True else dict(uncertainty)
    unknown = set(options) - {"samples", "seed", "dropout", "gate_noise"}
    if unknown:
        raise Error("uncertainty: unknown option(s) %s; known: samples, seed, dropout, gate_noise"
                    % ", ".join(sorted(unknown)))
    mc = _lib.McParams()
    mc.samples = int(options.get("samples", 10))
    mc.seed = int(options.get("seed", 0))
    mc.dropout = float(options.get("dropout", 0.1))
    mc.gate_noise = float(options.get("gate_noise", 0.1))
    if mc.samples < 1:
        raise Error("uncertainty: samples=%d; at least 1 pass is needed" % mc.samples)
    return mc


def _predict_mc(ctx, net, training, window, mc, volume, progress, done, share):
    """The passes' mean and standard deviation over the whole (normalized) volume, shaped as predict returns them
    (one layer for a task with 2D labels)."""
    size = _lib.int64s(volume.shape)
    shape = ((1,) + volume.shape[1:]) if mc.depth_mean else volume.shape
    mean, sd = np.empty(shape, dtype=np.float32), np.empty(shape, dtype=np.float32)
    calls = _Callbacks(volume, progress, done, share)
    status = lib.rm_predict_region_mc(ctx.ptr, net.ptr, training.ptr if training else None, lib.rm_deploy_task(net.ptr),
                                      ctypes.byref(window), ctypes.byref(mc), size, calls.read, None,
                                      _lib.int64s((0, 0, 0)), size, _lib.floats(mean), _lib.floats(sd), calls.report,
                                      None)
    calls.reraise()
    ctx.check(status)
    return mean, sd


def _depth_mean(ctx, logits):
    """The (1, Y, X) mean over depth of (Z, Y, X) logits: the 2D logit map of a task with 2D labels."""
    out = np.empty((1,) + logits.shape[1:], dtype=np.float32)
    ctx.check(lib.rm_depth_mean_forward(ctx.ptr, ctypes.byref(_lib.tensor(logits)), ctypes.byref(_lib.tensor(out))))
    return out


def _probability(logits):
    """Logits to probabilities, in double as the core's consumers do (1 / (1 + exp(-x)), rounded to float32)."""
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def _finite(value):
    return float(value) if math.isfinite(value) else None


def _metrics(ctx, task, pred, gt, mask, threshold):
    """The metrics dict of `repmode eval` of logits `pred` against `gt` (and `mask`), all float32 of one shape."""
    mask_tensor = None if mask is None else ctypes.byref(_lib.tensor(mask))
    result = {"task": task.name, "kind": task.kind}
    if task.kind == "binary":
        prob = _probability(pred)
        if threshold is None:
            threshold = 0.5 if task.threshold is None else task.threshold
        threshold = float(np.float32(threshold))
        bm = _lib.BinaryMetrics()
        ctx.check(lib.rm_binary_metrics_compute(ctx.ptr, ctypes.byref(_lib.tensor(prob)), ctypes.byref(_lib.tensor(gt)),
                                                mask_tensor, threshold, ctypes.byref(bm)))
        for name in ("f05", "dice", "precision", "recall", "auc"):
            result[name] = _finite(getattr(bm, name))
        result["threshold"] = threshold
        result["voxels"] = int(bm.count)
        return result
    rm = _lib.RegressionMetrics()
    ctx.check(lib.rm_regression_metrics_compute(ctx.ptr, ctypes.byref(_lib.tensor(pred)), ctypes.byref(_lib.tensor(gt)),
                                                mask_tensor, ctypes.byref(rm)))
    for name in ("mse", "mae", "r2", "pearson", "ssim", "ssim_range"):
        result[name] = _finite(getattr(rm, name))
    result["voxels"] = int(rm.count)
    return result


def evaluate(model, array, target, task, mask=None, patch=None, overlap=0.5, threshold=None, threads=None,
             progress=None):
    """``Model(model).evaluate(...)`` (model: a Model or a model file's path): the metrics dict of ``repmode eval``."""
    model = model if isinstance(model, Model) else Model(model)
    return model.evaluate(array, target, task, mask=mask, patch=patch, overlap=overlap, threshold=threshold,
                          threads=threads, progress=progress)


def reparam(model, task, out):
    """``Model(model).reparam(task, out)`` (model: a Model or a training-form file's path): writes the deploy form
    as ``repmode reparam --model MODEL --task TASK --out OUT`` does, and returns it as a Model."""
    model = model if isinstance(model, Model) else Model(model)
    return model.reparam(task, out)
