"""repmode.train: a new model trained by the core's trainer (rm_trainer_*) on NumPy volumes or a data CSV."""
import codecs
import csv
import ctypes
import hashlib
import io
import json
import math
import os
import re
import stat
import struct
import tempfile
from collections import namedtuple

import numpy as np

from . import _lib
from ._images import read_image
from ._lib import lib
from ._model import Cancelled, Error, _Context

Sample = namedtuple("Sample", "input targets masks spacing", defaults=(None, None))
Sample.__doc__ = """One training volume for repmode.train: ``input`` (Z, Y, X), any real dtype (converted to float32
and normalized with the configuration's method over the whole volume); ``targets`` {task name: array}, each the
input's shape, or (Y, X) / (1, Y, X) for a task with 2D labels (regression targets are normalized as the input,
binary ones become target > 0.5); ``masks`` None, one array for every task, or {task name: array}: only voxels where
the mask is above 0.5 count in the loss; ``spacing`` (z, y, x) or None. The network sees voxels only: spacing does not
change training, and the model's provenance records it when every sample gives the same. A plain tuple
(input, targets) or (input, targets, masks) is taken as well."""

TrainResult = namedtuple("TrainResult", "path losses steps")
TrainResult.__doc__ = """What repmode.train did: ``path`` the model file written; ``losses`` float32, the loss of each
step run (the batch's loss before its update, as ``repmode train --log`` records it); ``steps`` the steps done in
all (with ``resume``, those of the checkpoint included). ``repmode.Model(result.path)`` predicts with it."""

_software_cache = []


def _software():
    """The library's "software" provenance ("repmode <version>"), which rm_model_create writes: read back from a
    tiny model saved to a temporary file (the C API has no getter, and this needs none)."""
    if not _software_cache:
        with _Context(1) as ctx, tempfile.TemporaryDirectory() as tmp:
            tc = _parse_config(ctx, '{"base_channels":1,"levels":1,"patch":[2,2,2],"tasks":[{"name":"t"}]}', None)
            model = ctypes.c_void_p()
            try:
                ctx.check(lib.rm_model_create(ctx.ptr, ctypes.byref(tc.cfg), 0, ctypes.byref(model)))
                path = os.path.join(tmp, "m.safetensors")
                ctx.check(lib.rm_model_save(ctx.ptr, model, path.encode()))
            finally:
                lib.rm_model_free(model)
                lib.rm_train_config_free(ctypes.byref(tc))
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
        _software_cache.append(json.loads(header["__metadata__"]["repmode.provenance"])["software"])
    return _software_cache[0]


_INT_MAX, _INT_MIN = 2 ** 31 - 1, -2 ** 31
_DBL_EPSILON = 2.0 ** -52


def _cjson_number(value):
    """A number as cJSON 1.7 prints it (print_number): a double equal to its int (valueint, saturated to the int range)
    as that int, else %1.15g, or %1.17g when %1.15g does not read back within DBL_EPSILON; not finite: null."""
    d = float(value)
    if not math.isfinite(d):
        return "null"
    whole = _INT_MAX if d >= _INT_MAX else _INT_MIN if d <= _INT_MIN else int(d)
    if d == whole:
        return "%d" % whole
    text = "%1.15g" % d
    back = float(text)
    if not abs(back - d) <= max(abs(back), abs(d)) * _DBL_EPSILON:
        text = "%1.17g" % d
    return text


def _cjson(value):
    """JSON text of dicts, lists, strings, numbers, booleans and None as cJSON_PrintUnformatted writes it (what the
    command line records): compact, keys in order, numbers as _cjson_number, text as UTF-8 with the same escapes."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return _cjson_number(value)
    if isinstance(value, dict):
        return "{" + ",".join(_cjson(str(k)) + ":" + _cjson(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_cjson(v) for v in value) + "]"
    raise TypeError("cannot write %s as JSON" % type(value).__name__)


def _no_constant(name):
    raise ValueError("not JSON: " + name)


def _cjson_parse(text):
    """A JSON value as cJSON_Parse reads it (leading white space and anything after the value ignored; no NaN or
    Infinity), or None when it does not parse, as the command line then leaves it out."""
    try:
        return json.JSONDecoder(parse_constant=_no_constant).raw_decode(text.lstrip("".join(map(chr, range(33)))))[0]
    except ValueError:
        return None


def _config_text(config):
    """(JSON text, the file's path or None) of a configuration: a dict, a JSON file's path, or JSON text."""
    if isinstance(config, dict):
        return json.dumps(config), None
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return f.read(), path
        if path.lstrip().startswith("{"):
            return path, None
        raise Error("cannot read the configuration %s: no such file" % path)
    raise Error("config: expected a dict, a JSON file's path or JSON text, not %s" % type(config).__name__)


def _parse_config(ctx, text, path):
    tc = _lib.TrainConfig()
    ctx.check(lib.rm_train_config_parse(ctx.ptr, text.encode("utf-8"), ctypes.byref(tc)), path)
    return tc


def _float32(array):
    return np.array(array, dtype=np.float32, order="C", copy=True)


def _normalize(ctx, method, volume, what):
    """volume (float32) normalized in place with `method` over the whole volume, as the command line's train."""
    params = _lib.NormParams()
    data = _lib.floats(volume)
    ctx.check(lib.rm_normalization_compute(ctx.ptr, ctypes.byref(method), data, volume.size, ctypes.byref(params)),
              what)
    lib.rm_normalize(ctypes.byref(params), data, data, volume.size)


def _label(array, signal_shape, task, what, where):
    """A target or mask as float32, checked against the signal as the command line checks it (check_label_size)."""
    a = _float32(array)
    if a.ndim == 2:
        a = a[np.newaxis]
    layers = tuple(signal_shape[1:])
    if task["output_2d"]:
        if a.ndim != 3 or a.shape[0] != 1:
            raise Error("%s: %s is a volume of %s voxels, but task '%s' has 2D labels (\"output\": \"2d\"): it needs a "
                        "2D image of the layers, %s (Y, X)" % (where, what, a.shape, task["name"], layers))
        if a.shape[1:] != layers:
            raise Error("%s: %s is a 2D image of %s (Y, X) but the layers are %s: a 2D label must cover them exactly"
                        % (where, what, a.shape[1:], layers))
        return a
    if a.ndim == 3 and a.shape[0] == 1 and signal_shape[0] > 1 and a.shape[1:] == layers:
        raise Error("%s: %s is a 2D image of %s for layers of a volume of %s, but task '%s' has 3D labels: 2D labels "
                    "of a surface volume need a task with \"output\": \"2d\" in the configuration"
                    % (where, what, layers, tuple(signal_shape), task["name"]))
    if a.shape != tuple(signal_shape):
        raise Error("%s: %s is %s voxels (Z, Y, X) but the signal is %s: they must have the same size"
                    % (where, what, a.shape, tuple(signal_shape)))
    return a


class _Volumes:
    """The training volumes, normalized, as the trainer takes them; keeps the arrays alive while it trains."""

    def __init__(self, ctx, method, tasks):
        self.ctx, self.method, self.tasks = ctx, method, tasks
        self.items = []  # (signal, target, mask, task index)

    def task_index(self, name, where):
        for k, t in enumerate(self.tasks):
            if t["name"] == name:
                return k
        raise Error("%s: the task '%s' is not one of the configuration's tasks (%s)"
                    % (where, name, ", ".join(t["name"] for t in self.tasks)))

    def signal(self, array, what):
        a = _float32(array)
        if a.ndim != 3:
            raise Error("%s: expected a 3D array (Z, Y, X); got one of shape %s" % (what, a.shape))
        if a.size == 0:
            raise Error("%s: the array is empty" % what)
        _normalize(self.ctx, self.method, a, what)
        return a

    def add(self, signal, task, target, mask, where, target_what="the target", mask_what="the mask"):
        t = self.tasks[task]
        gt = _label(target, signal.shape, t, target_what, where)
        if t["binary"]:
            gt = (gt > 0.5).astype(np.float32)
        else:
            _normalize(self.ctx, self.method, gt, where + ": " + target_what)
        m = None if mask is None else _label(mask, signal.shape, t, mask_what, where)
        self.items.append((signal, gt, m, task))

    def structs(self):
        volumes = (_lib.TrainVolume * len(self.items))()
        for v, (signal, gt, m, task) in zip(volumes, self.items):
            v.signal, v.target = _lib.floats(signal), _lib.floats(gt)
            v.mask = _lib.floats(m) if m is not None else None
            v.size[:] = signal.shape
            v.task = task
            v.target_2d = int(self.tasks[task]["output_2d"])
        return volumes


# The data CSV (docs/cli.md §4.2) as plugin/repmode/data_csv.cxx and csv_table.cxx read it, with the same messages:
# the csv module reads the fields, and one field's grammar (RFC 4180, spaces allowed before an opening quote) finds,
# as the command line does, the first problem of a record that the module would let pass or name differently.
_MAX_TEXT_BYTES = 16 << 20
_LINE_END = re.compile(rb"\r\n|\r|\n")
_FIELD = r' *+(?>"(?:[^"]|"")*+"|[^",\r\n]*)'
_RECORD = re.compile(_FIELD + "(?:," + _FIELD + r")*(?:\r\n|\r|\n)?")
_FIELD_START = re.compile(r"(?:^|,) *$")
_STRAY = "a stray quote (quote the whole field, and double the quotes inside it)"


def _record_problem(raw):
    """What is wrong with the text of one record, or None."""
    end = _RECORD.match(raw).end()
    if end == len(raw):
        return None
    return "a quoted field is not closed" if raw[end] == '"' and _FIELD_START.search(raw[:end]) else _STRAY


def _csv_records(path):
    """(line where it starts, fields trimmed) of each non-blank record of the text file at path."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise Error("the data CSV %s is not a regular file" % path)
        if st.st_size > _MAX_TEXT_BYTES:
            raise Error("the data CSV %s holds %d bytes; at most 16 MiB are read" % (path, st.st_size))
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise Error("cannot read the data CSV %s: %s" % (path, e.strerror)) from e
    body = raw[3:] if raw.startswith(codecs.BOM_UTF8) else raw
    nul, bad = body.find(b"\0"), -1
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad = e.start  # in the text after the byte-order mark
    if nul >= 0 and (bad < 0 or nul < bad):
        raise Error("%s line %d: a NUL byte (the CSV must be text)" % (path, len(_LINE_END.findall(body[:nul])) + 1))
    if bad >= 0:
        raise Error("%s line %d: not UTF-8 text (save the CSV as UTF-8)" %
                    (path, len(_LINE_END.findall(body[:bad])) + 1))
    consumed = []

    def lines():
        for line in io.StringIO(text, newline=""):
            consumed.append(line)
            yield line

    reader = csv.reader(lines(), strict=True, skipinitialspace=True)
    records, start = [], 1
    while True:
        del consumed[:]
        try:
            fields = next(reader, None)
            error = None
        except csv.Error as e:
            error = str(e)
        problem = _record_problem("".join(consumed))
        if problem or error:
            raise Error("%s line %d: %s" % (path, start, problem or error))
        if fields is None:
            return records
        fields = [f.strip(" \t\r\n") for f in fields]
        if len(fields) > 1 or (fields and fields[0]):
            records.append((start, fields))
        start = reader.line_num + 1


def _csv_rows(path):
    """(line, signal, target, task, mask) of each row of a data CSV, paths relative to its folder resolved and ''
    for a path not given."""
    records = _csv_records(path)
    if not records:
        raise Error("%s is empty: it needs a header 'signal,target,task[,mask]' and at least one row" % path)
    header = records[0][1]
    col = {}
    for i, h in enumerate(header):
        if h not in ("signal", "target", "task", "mask"):
            raise Error("%s: unknown column '%s' (the columns are signal,target,task[,mask])" % (path, h))
        if h in col:
            raise Error("%s: the column '%s' is named twice" % (path, h))
        col[h] = i
    if not {"signal", "target", "task"} <= set(col):
        raise Error("%s: the header must name the columns signal,target,task (and optionally mask)" % path)
    folder = path[:path.rfind("/")] if "/" in path else "."
    resolve = (lambda p: p if not p or p.startswith("/") else folder + "/" + p)
    rows = []
    for line, fields in records[1:]:
        if len(fields) != len(header):
            raise Error("%s line %d has %d fields, the header %d" % (path, line, len(fields), len(header)))
        field = (lambda name: fields[col[name]] if name in col else "")
        rows.append((line, resolve(field("signal")), resolve(field("target")), field("task"), resolve(field("mask"))))
    if not rows:
        raise Error("%s has no rows: it needs at least one signal,target,task row" % path)
    return rows


def _read_csv(vols, path):
    """The volumes of a data CSV's rows, read as the command line reads them."""
    signals = {}
    for line, signal_path, target_path, task_name, mask_path in _csv_rows(path):
        where = "%s line %d" % (path, line)
        task = vols.task_index(task_name, where)
        if not signal_path or not target_path:
            raise Error("%s: the signal and the target must both be given" % where)
        if signal_path not in signals:
            signals[signal_path] = vols.signal(read_image(signal_path)[0], signal_path)
        vols.add(signals[signal_path], task, read_image(target_path)[0],
                 read_image(mask_path)[0] if mask_path else None, where, target_path, mask_path or None)


def _read_samples(vols, samples):
    """NumPy samples: Sample or (input, targets[, masks]) tuples. Returns the spacing they share, or None."""
    spacings = []
    if isinstance(samples, (Sample, tuple)) and len(samples) in (2, 3, 4) and isinstance(samples[1], dict):
        samples = [samples]  # one sample given alone
    for i, s in enumerate(samples):
        if not isinstance(s, Sample):
            if not isinstance(s, (tuple, list)) or len(s) not in (2, 3):
                raise Error("data item %d: expected a repmode.Sample or an (input, {task: target}[, masks]) tuple" % i)
            s = Sample(*s)
        where = "data item %d" % i
        if not isinstance(s.targets, dict) or not s.targets:
            raise Error("%s: targets must be a non-empty dict {task name: array}" % where)
        spacings.append(None if s.spacing is None else tuple(float(v) for v in s.spacing))
        signal = vols.signal(s.input, where)
        for name, target in s.targets.items():
            task = vols.task_index(name, where)
            mask = s.masks.get(name) if isinstance(s.masks, dict) else s.masks
            vols.add(signal, task, target, mask, where, "the target of '%s'" % name, "the mask of '%s'" % name)
    if not vols.items:
        raise Error("no training data: give a data CSV's path or a list of samples")
    return spacings[0] if spacings and spacings[0] is not None and all(x == spacings[0] for x in spacings) else None


def _check_options(steps, batch, lr, optimizer, schedule, warmup, ema, sampling, checkpoint_every):
    """The training options the command line checks before reading anything, with its messages."""
    if int(steps) < 0:
        raise Error("steps must be 0 or more")
    if int(batch) < 1:
        raise Error("batch must be 1 or more")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise Error("lr must be a positive number")
    if optimizer not in ("adam", "adamw"):
        raise Error("optimizer must be adam or adamw, not '%s'" % optimizer)
    if schedule not in ("cosine", "constant"):
        raise Error("schedule must be cosine or constant, not '%s'" % (schedule,))
    if int(warmup) < 0:
        raise Error("warmup must be 0 or more")
    if warmup > 0 and schedule == "constant":
        raise Error("warmup needs the cosine schedule, not schedule constant")
    if warmup > 0 and steps < warmup + 1:
        raise Error("warmup %d needs steps of at least %d" % (warmup, warmup + 1))
    if not (ema == 0.0 or 0.0 < ema < 1.0):
        raise Error("ema must be in (0, 1), such as 0.99")
    if sampling not in ("random", "buckets"):
        raise Error("sampling must be random or buckets, not '%s'" % sampling)
    if int(checkpoint_every) < 0:
        raise Error("checkpoint_every must be 0 or more")


class _Augment:
    """The augmentation arguments of train and add_task (the command line's options): each one given replaces the
    configuration's value, after ``augment`` (a recipe's name) replaced the configuration's whole recipe."""

    def __init__(self, recipe, rotations, depth_shift, **numbers):
        self.recipe, self.rotations, self.depth_shift, self.numbers = recipe, rotations, depth_shift, numbers

    def applied_to(self, ctx, base):
        a = base
        if self.recipe is not None:
            a = _lib.Augment()
            if lib.rm_augment_preset(ctx.ptr, str(self.recipe).encode("utf-8"), ctypes.byref(a)) != 0:
                raise Error("augment must be none, official, label-free or ink, not '%s'" % (self.recipe,))
        a.rotations = int(bool(a.rotations or self.rotations))
        for name, value in self.numbers.items():
            if value is not None:
                setattr(a, name, float(value))
        if self.depth_shift is not None:
            a.depth_shift = int(self.depth_shift)
        ctx.check(lib.rm_augment_validate(ctx.ptr, ctypes.byref(a)))
        return a


def _official_augment(ctx):
    """The official recipe (flips), which a run without a configuration's "augment" starts from."""
    official = _lib.Augment()
    ctx.check(lib.rm_augment_preset(ctx.ptr, b"official", ctypes.byref(official)))
    return official


def _train_options(ctx, cfg, augment, steps, batch, optimizer, lr, schedule, warmup, seed, patch, ema, sampling):
    """rm_train_options for a network of `cfg` (its patch unless `patch` is given), augmented with `augment` (an
    Augment)."""
    opt = lib.rm_train_options_official(_lib.int64s((0, 0, 0)))
    patch = list(cfg.patch) if patch is None else [int(p) for p in patch]
    multiple = 1 << cfg.levels
    if len(patch) != 3 or any(p % multiple for p in patch):
        raise Error("the patch %s must be a multiple of 2^levels = %d on each axis" % (patch, multiple))
    if augment.rotations and patch[1] != patch[2]:
        raise Error("rotations needs a square patch in Y and X, not %s" % (patch,))
    opt.patch[:] = patch
    opt.batch = int(batch)
    opt.seed = seed
    opt.optim = lib.rm_optim_adam_official() if optimizer == "adam" else lib.rm_optim_adamw_default()
    if lr is not None:
        opt.optim.lr = float(lr)
    opt.augment = augment
    opt.ema = float(ema)
    opt.sampling = 1 if sampling == "buckets" else 0
    opt.schedule = (lib.rm_schedule_warmup_cosine(int(warmup), steps, 0.1) if schedule == "cosine" and steps >= 2
                    else lib.rm_schedule_constant())
    return opt


def _tasks_of(cfg):
    return [{"name": cfg.tasks[k].name.decode("utf-8"), "binary": cfg.tasks[k].kind == _lib.TASK_BINARY,
             "output_2d": bool(cfg.tasks[k].output_2d)} for k in range(cfg.n_tasks)]


def _read_data(vols, data):
    """Reads a data CSV's path or NumPy samples into vols; returns the provenance of the data."""
    if isinstance(data, (str, os.PathLike)):
        data_path = os.fspath(data)
        _read_csv(vols, data_path)
        return {"data": os.path.basename(data_path)}
    spacing = _read_samples(vols, data)
    provenance = {"data": "arrays"}
    if spacing is not None:
        provenance["spacing"] = list(spacing)
    return provenance


def _run(ctx, model, vols, opt, steps, out, provenance, progress, checkpoint, checkpoint_every, resume):
    """The core's trainer on `model` up to `steps` steps, then the model with its provenance written to `out`: what
    ``repmode train`` and ``repmode add-task`` do after reading their inputs. Returns the losses of the steps run."""
    trainer = ctypes.c_void_p()
    try:
        volumes = vols.structs()
        ctx.check(lib.rm_trainer_create(ctx.ptr, model, ctypes.byref(opt), volumes, len(vols.items),
                                        ctypes.byref(trainer)))
        if resume is not None:
            ctx.check(lib.rm_trainer_load_checkpoint(ctx.ptr, trainer, os.fspath(resume).encode()))
            if lib.rm_trainer_steps_done(trainer) > steps:
                raise Error("%s is at step %d, past steps %d"
                            % (os.fspath(resume), lib.rm_trainer_steps_done(trainer), steps))
        ckpt = None if checkpoint is None else os.fspath(checkpoint).encode()
        losses = []
        loss = ctypes.c_float()
        first = lib.rm_trainer_steps_done(trainer)
        for s in range(first, steps):
            ctx.check(lib.rm_trainer_step(ctx.ptr, trainer, ctypes.byref(loss)))  # the GIL is released
            done = s + 1
            value = float(loss.value)
            losses.append(value)
            if not math.isfinite(value):
                raise Error("the loss is not finite at step %d (try a lower lr)" % done)
            if progress is not None and progress(done, steps, value):
                if ckpt:
                    ctx.check(lib.rm_trainer_save_checkpoint(ctx.ptr, trainer, ckpt))
                raise Cancelled("training stopped by the progress callback at step %d of %d" % (done, steps))
            if ckpt and (done == steps or (checkpoint_every > 0 and done % checkpoint_every == 0)):
                ctx.check(lib.rm_trainer_save_checkpoint(ctx.ptr, trainer, ckpt))
        if ckpt and first == steps:
            ctx.check(lib.rm_trainer_save_checkpoint(ctx.ptr, trainer, ckpt))
        if opt.ema > 0:  # the model saved is the weight average
            ctx.check(lib.rm_trainer_swap_average(ctx.ptr, trainer))
        # The command line's provenance: software, data, steps, seed, the training options, then the rest (cJSON's
        # compact text, its numbers as cJSON prints them; same key order).
        record = {"software": _software(), "data": provenance.pop("data"), "steps": steps, "seed": opt.seed,
                  "training": _cjson_parse(_lib.take_string(lib.rm_train_options_json(ctypes.byref(opt))))}
        record.update(provenance)
        ctx.check(lib.rm_model_set_provenance(ctx.ptr, model, _cjson(record).encode("utf-8")))
        ctx.check(lib.rm_model_save(ctx.ptr, model, out.encode()))
    finally:
        if trainer:
            lib.rm_trainer_free(trainer)
    return np.array(losses, dtype=np.float32)


def _record_provenance_of(model, record, key):
    """record[key] = the model's own provenance, read as cJSON reads it; left out when it does not parse, as the
    command line leaves it out."""
    own = _cjson_parse(lib.rm_model_provenance(model).decode("utf-8"))
    if own is not None:
        record[key] = own


def _check_init(config, init, freeze, encoder_lr):
    """The fine-tuning arguments, checked as the command line checks --init, --freeze and --encoder-lr, with its
    messages. Returns the encoder's learning-rate scale (1 when not given)."""
    if config is None and init is None:
        raise Error("config is required (or init, a trained model's path, to fine-tune it)")
    if freeze is not None and freeze != "encoder":
        raise Error("freeze must be encoder, not '%s'" % (freeze,))
    scale = 1.0 if encoder_lr is None else float(encoder_lr)
    if not 0.0 < scale <= 1.0:
        raise Error("encoder_lr must be in (0, 1]")
    if (freeze is not None or encoder_lr is not None) and init is None:
        raise Error("%s needs init" % ("freeze" if freeze is not None else "encoder_lr"))
    if freeze is not None and encoder_lr is not None:
        raise Error("freeze=\"encoder\" and encoder_lr exclude each other: a frozen encoder has no learning rate")
    return scale


def _names_normalization(text):
    """Whether a configuration's JSON text names a normalization (else a model of init keeps its own)."""
    root = _cjson_parse(text)
    return isinstance(root, dict) and "normalization" in root


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _init_model(ctx, init_path, tc, text, where, freeze, scale):
    """train's init (the command line's --init): the model file's weights as they are, or with a configuration (`tc`,
    parsed from `text`) its tasks mapped by name onto them (rm_model_init_from) and its normalization if it names
    one; the encoder frozen or its learning rate scaled. Returns the model (the caller's to free)."""
    source, model = ctypes.c_void_p(), ctypes.c_void_p()
    try:
        ctx.check(lib.rm_model_load(ctx.ptr, init_path.encode(), ctypes.byref(source)), "init")
        if tc is None:
            model, source = source, ctypes.c_void_p()
        else:
            ctx.check(lib.rm_model_init_from(ctx.ptr, source, ctypes.byref(tc.cfg), ctypes.byref(model)),
                      "%s (init %s)" % (where, init_path))
            if _names_normalization(text):
                ctx.check(lib.rm_model_set_normalization(ctx.ptr, model, ctypes.byref(tc.normalization)), where)
        if freeze is not None:
            ctx.check(lib.rm_model_freeze_encoder(ctx.ptr, model))
        ctx.check(lib.rm_model_set_encoder_lr_scale(ctx.ptr, model, scale), "encoder_lr")
        done, model = model, ctypes.c_void_p()
        return done
    finally:
        lib.rm_model_free(model)
        lib.rm_model_free(source)


def train(config, data, out, steps=100, *, batch=4, optimizer="adamw", lr=None, schedule="cosine", warmup=0, seed=0,
          patch=None, augment=None, rotations=False, jitter=None, blur=None, gamma=None, contrast=None,
          illumination=None, brightness=None, noise=None, depth_shift=None, ema=0.0, sampling="random", threads=None,
          progress=None, checkpoint=None, checkpoint_every=50, resume=None, init=None, freeze=None, encoder_lr=None):
    """Trains a model with the core's trainer (rm_trainer_create, rm_trainer_step; the same steps as
    ``repmode train``, docs/cli.md §3.4) and writes it (training form) to ``out``: a new one, or with ``init`` one
    that starts from a trained model's weights (fine-tuning, docs/network.md §5.6).

    config: the training configuration (docs/cli.md §4.1) as a dict, a JSON file's path or JSON text, parsed and
    checked by the core (rm_train_config_parse; missing fields take the ``lite`` defaults). None only with ``init``:
    the model's configuration and tasks as they are.

    data: a data CSV's path (``signal,target,task[,mask]``, docs/cli.md §4.2, paths relative to the CSV), its
    images read by repmode.read_image (TIFF and folders of TIFF layers, NIfTI, NRRD, MetaImage, .npy; another format
    raises repmode.Error naming the file); or NumPy samples: a list of repmode.Sample, or of
    ``(input, {task: target})`` / ``(input, {task: target}, masks)`` tuples. Inputs and regression targets are
    normalized per volume with the configuration's ``normalization``; binary targets become target > 0.5.

    steps (0: the model is written as the run starts it, without a step), batch (4), optimizer ("adamw" or "adam"),
    lr (the optimizer's: 1e-3 AdamW, 1e-4 Adam), schedule ("cosine": after a linear warm-up over ``warmup`` steps
    (0), a cosine decay to 0.1·lr at the last step; "constant": lr throughout), seed, patch (the configuration's),
    ema, sampling ("random" or "buckets"): as the command line's options of the same names, with the same
    defaults. augment (a recipe: "none", "official", "label-free" or "ink"; None: the configuration's, or with
    ``init`` and no configuration the official recipe), rotations, jitter, blur, gamma, contrast, illumination,
    brightness, noise, depth_shift: as the command line's augmentation options, each None (or False) keeping the
    configuration's value (docs/network.md §5.4). threads: the core's threads (None: all cores; the result is the
    same bit for bit for any count).

    progress: called after every step as ``progress(step, steps, loss)``; returning True stops the run, which
    raises repmode.Cancelled (Ctrl-C stops it after the step that runs, with KeyboardInterrupt). A stopped run
    writes no model; with ``checkpoint`` it saves the checkpoint first, which ``resume`` continues.

    checkpoint: a checkpoint file to write every ``checkpoint_every`` steps (0: only at the end) and at the end
    (None: none; the command line always writes ``<out>.ckpt``). resume: a checkpoint of the same configuration,
    data and seed to continue up to ``steps`` in all; the model is then the uninterrupted run's (give ``init``,
    ``freeze`` and ``encoder_lr`` again: checkpoints do not record them).

    init (``--init``): the path of a trained model file (training form) to start from: its weights, BatchNorm
    statistics included, and its normalization. Without ``config`` its configuration and tasks as they are; with
    one, whose network must be the model's (base_channels, levels, channels, activation, decoder, block, added
    expert: the first that differs is named), the configuration's tasks mapped by name (a task the model has keeps
    its gate columns and must keep its kind; a new one starts with columns of 0; the model's others are dropped), and
    the configuration's dropout, patch and, if it names one, normalization. With ``steps=0`` the model written
    predicts the same bytes as ``init``'s. freeze (``--freeze``): None, or "encoder": the encoder's weights, gates
    and BatchNorm statistics stay as ``init`` has them, its BatchNorm in inference mode. encoder_lr
    (``--encoder-lr``): the encoder's learning rate as a fraction of the rate, 0 < encoder_lr <= 1 (None: 1). Both
    need ``init`` and exclude each other. The provenance records ``"init": {"file", "sha256", "provenance"}`` (the
    file's name and SHA-256 and the model's own provenance), then ``"freeze": "encoder"`` or ``"encoder_lr"``.

    Same data, configuration, options and seed: the same model file, byte for byte, as ``repmode train`` writes
    (without ``--val``) when the data is the CSV (the provenance names the CSV file as the command line does).
    NumPy samples record ``"data": "arrays"`` and their spacing instead. Validation (``--val``,
    ``--tune-threshold``) and the JSON log are the command line's; repmode.evaluate measures a trained model.

    Returns a TrainResult (path, losses, steps).

    >>> result = repmode.train({"base_channels": 4, "levels": 2, "patch": [8, 16, 16],
    ...                         "tasks": [{"name": "double"}]},
    ...                        [(x, {"double": 2 * x})], "double.safetensors", steps=40, seed=1)
    >>> repmode.Model(result.path).predict(x, "double")
    >>> tuned = repmode.train(None, [(y, {"double": 2 * y})], "tuned.safetensors", steps=20,
    ...                       init=result.path, encoder_lr=0.1)
    """
    out = os.fspath(out)
    init_path = None if init is None else os.fspath(init)
    scale = _check_init(config, init_path, freeze, encoder_lr)
    _check_options(steps, batch, lr, optimizer, schedule, warmup, ema, sampling, checkpoint_every)
    augmentation = _Augment(augment, rotations, depth_shift, jitter=jitter, blur=blur, gamma=gamma,
                            contrast=contrast, illumination=illumination, brightness=brightness, noise=noise)
    steps, seed = int(steps), int(seed)
    text, config_path = (None, None) if config is None else _config_text(config)
    where = config_path or "config"

    with _Context(threads) as ctx:
        tc = None if text is None else _parse_config(ctx, text, config_path)
        model = ctypes.c_void_p()
        try:
            if tc is not None and (tc.cfg.in_channels != 1 or tc.cfg.out_channels != 1):
                raise Error("%s: 'in_channels' and 'out_channels' must be 1 (train reads single-channel volumes)"
                            % where)
            fine_tuning = {}
            if init_path is not None:
                model = _init_model(ctx, init_path, tc, text, where, freeze, scale)
                cfg = lib.rm_model_config(model).contents
                method = _lib.Normalization()
                ctx.check(lib.rm_model_normalization(ctx.ptr, model, ctypes.byref(method)), init_path)
                fine_tuning["init"] = {"file": os.path.basename(init_path), "sha256": _sha256(init_path)}
                _record_provenance_of(model, fine_tuning["init"], "provenance")
                if freeze is not None:
                    fine_tuning["freeze"] = "encoder"
                else:
                    fine_tuning["encoder_lr"] = scale
            else:
                cfg, method = tc.cfg, tc.normalization
            # With init and no configuration, the official recipe (as add_task), else the configuration's.
            recipe = tc.augment if tc is not None else _official_augment(ctx)
            opt = _train_options(ctx, cfg, augmentation.applied_to(ctx, recipe), steps, batch, optimizer, lr,
                                 schedule, warmup, seed, patch, ema, sampling)
            vols = _Volumes(ctx, method, _tasks_of(cfg))
            provenance = _read_data(vols, data)
            if not model:
                ctx.check(lib.rm_model_create(ctx.ptr, ctypes.byref(cfg), seed, ctypes.byref(model)))
                ctx.check(lib.rm_model_set_normalization(ctx.ptr, model, ctypes.byref(method)))
            provenance.update(fine_tuning)
            losses = _run(ctx, model, vols, opt, steps, out, provenance, progress, checkpoint, checkpoint_every,
                          resume)
        finally:
            lib.rm_model_free(model)
            if tc is not None:
                lib.rm_train_config_free(ctypes.byref(tc))
    return TrainResult(out, losses, steps)


def add_task(model, task, data, out, steps=100, *, kind="regression", output="3d", new_expert=False, expert_kernel=3,
             batch=4, optimizer="adamw", lr=None, schedule="cosine", warmup=0, seed=0, patch=None, augment=None,
             rotations=False, jitter=None, blur=None, gamma=None, contrast=None, illumination=None, brightness=None,
             noise=None, depth_shift=None, ema=0.0, sampling="random", threads=None, progress=None, checkpoint=None,
             checkpoint_every=50, resume=None):
    """Teaches the trained model file ``model`` one more task, ``task``, without changing any of its tasks
    (task-incremental learning, docs/network.md §5.5; the same run as ``repmode add-task``, docs/cli.md §3.10), and
    writes the result (training form) to ``out``.

    Every MoDE gate gains a column for the new task; with ``new_expert`` every MoDE layer also gains an expert of
    kernel ``expert_kernel`` (1, 3 or 5) that only the new task uses. Only those train: the network's weights, the
    gate biases and BatchNorm stay frozen (BatchNorm in inference mode), so the old tasks predict the same bytes as
    before. kind: "regression" or "binary"; output: "3d" (volume labels) or "2d" (2D labels of a surface volume).

    data: as repmode.train's, every volume of the new task, normalized with the model's own normalization. The other
    arguments are repmode.train's. Same inputs and seed: the same file, byte for byte, as the command line writes.
    Returns a TrainResult.
    """
    out, base_path = os.fspath(out), os.fspath(model)
    _check_options(steps, batch, lr, optimizer, schedule, warmup, ema, sampling, checkpoint_every)
    augmentation = _Augment(augment, rotations, depth_shift, jitter=jitter, blur=blur, gamma=gamma,
                            contrast=contrast, illumination=illumination, brightness=brightness, noise=noise)
    if kind not in ("regression", "binary"):
        raise Error("kind must be regression or binary, not '%s'" % kind)
    if output not in ("3d", "2d"):
        raise Error("output must be 3d or 2d, not '%s'" % output)
    if expert_kernel not in (1, 3, 5):
        raise Error("expert_kernel must be 1, 3 or 5, not %s" % (expert_kernel,))
    steps, seed = int(steps), int(seed)
    with _Context(threads) as ctx:
        base, grown = ctypes.c_void_p(), ctypes.c_void_p()
        try:
            ctx.check(lib.rm_model_load(ctx.ptr, base_path.encode(), ctypes.byref(base)))
            old = _tasks_of(lib.rm_model_config(base).contents)
            if any(t["name"] == task for t in old):
                raise Error("task %s: %s has this task already (its tasks: %s)"
                            % (task, base_path, ", ".join(t["name"] for t in old)))
            spec = lib.rm_task_make(task.encode("utf-8"), _lib.TASK_BINARY if kind == "binary" else 0)
            spec.output_2d = int(output == "2d")
            ctx.check(lib.rm_model_add_task(ctx.ptr, base, ctypes.byref(spec), expert_kernel if new_expert else 0,
                                            seed, ctypes.byref(grown)))
            ctx.check(lib.rm_model_train_only_task(ctx.ptr, grown, len(old)))
            cfg = lib.rm_model_config(grown).contents
            opt = _train_options(ctx, cfg, augmentation.applied_to(ctx, _official_augment(ctx)), steps, batch,
                                 optimizer, lr, schedule, warmup, seed, patch, ema, sampling)
            method = _lib.Normalization()
            ctx.check(lib.rm_model_normalization(ctx.ptr, grown, ctypes.byref(method)))
            vols = _Volumes(ctx, method, _tasks_of(cfg))
            provenance = _read_data(vols, data)
            provenance.update({"added_task": task, "base_model": os.path.basename(base_path)})
            _record_provenance_of(base, provenance, "base_provenance")
            losses = _run(ctx, grown, vols, opt, steps, out, provenance, progress, checkpoint, checkpoint_every,
                          resume)
        finally:
            lib.rm_model_free(grown)
            lib.rm_model_free(base)
    return TrainResult(out, losses, steps)


__all__ = ["train", "add_task", "Sample", "TrainResult"]
