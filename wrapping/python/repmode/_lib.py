"""The C API of librepmode.so.0 through ctypes: the structures and the functions the package calls, each with its
argument and result types declared (ctypes would otherwise pass 64-bit values as int and truncate pointers).

The library is looked for, in order: next to this file (a ``pip install`` copies it there), the path in the
``REPMODE_LIBRARY`` environment variable, and the build tree of the source checkout (``build/lib`` at its root) for
use without installing.
"""
import ctypes
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int64,
                    c_uint64, c_void_p)

LIBRARY_NAME = "librepmode.so.0"

# Statuses of core.h (append only there, so stable here).
OK = 0
ERR_CANCELLED = 7

TASK_BINARY = 1
NAME_MAX = 64
MAX_THREADS = 1024  # RM_MAX_THREADS of core.h


class Task(Structure):
    _fields_ = [("name", c_char * NAME_MAX), ("kind", c_int), ("threshold", c_float), ("has_color", c_int),
                ("color", c_float * 3), ("output_2d", c_int)]


class Config(Structure):
    _fields_ = [("base_channels", c_int64), ("levels", c_int), ("in_channels", c_int64), ("out_channels", c_int64),
                ("activation", c_int), ("dropout", c_float), ("patch", c_int64 * 3), ("n_tasks", c_int),
                ("tasks", POINTER(Task)), ("added_expert_kernel", c_int), ("added_expert_task", c_int),
                ("decoder_2d", c_int), ("block", c_int)]


class ModelInfo(Structure):
    _fields_ = [("deploy", c_int), ("cfg", Config), ("parameters", c_int64), ("provenance", c_char_p)]


class Normalization(Structure):
    _fields_ = [("method", c_int), ("low", c_double), ("high", c_double)]


class NormParams(Structure):
    _fields_ = [("offset", c_double), ("scale", c_double), ("clip", c_int)]


class NonFiniteCensus(Structure):
    _fields_ = [("seen", c_int64), ("nonfinite", c_int64), ("first", c_int64), ("finite_sum", c_double)]


class WindowParams(Structure):
    _fields_ = [("patch", c_int64 * 3), ("overlap", c_double), ("blend", c_int), ("tta", c_int)]


class McParams(Structure):
    _fields_ = [("samples", c_int64), ("seed", c_uint64), ("dropout", c_float), ("gate_noise", c_float),
                ("probabilities", c_int), ("depth_mean", c_int)]


class Tensor(Structure):
    _fields_ = [("data", POINTER(c_float)), ("ne", c_int64 * 5)]


# trainer.h, optim.h
class Augment(Structure):
    _fields_ = [("flips", c_int), ("rotations", c_int), ("jitter", c_float), ("blur", c_float), ("gamma", c_float),
                ("contrast", c_float), ("illumination", c_float), ("brightness", c_float), ("noise", c_float), ("depth_shift", c_int64)]


class TrainConfig(Structure):
    _fields_ = [("cfg", Config), ("tasks", POINTER(Task)), ("normalization", Normalization), ("augment", Augment)]


class TrainVolume(Structure):
    _fields_ = [("signal", POINTER(c_float)), ("target", POINTER(c_float)), ("mask", POINTER(c_float)),
                ("size", c_int64 * 3), ("task", c_int), ("target_2d", c_int)]


class OptimConfig(Structure):
    _fields_ = [("kind", c_int), ("lr", c_float), ("beta1", c_float), ("beta2", c_float), ("eps", c_float),
                ("weight_decay", c_float)]


class Schedule(Structure):
    _fields_ = [("kind", c_int), ("warmup_steps", c_int64), ("total_steps", c_int64), ("floor_ratio", c_float)]


class TrainOptions(Structure):
    _fields_ = [("patch", c_int64 * 3), ("batch", c_int), ("seed", c_uint64), ("optim", OptimConfig),
                ("schedule", Schedule), ("smoothing", c_float), ("augment", Augment), ("sampling", c_int),
                ("bucket_low", c_float), ("ema", c_float)]


# metrics.h
class RegressionMetrics(Structure):
    _fields_ = [("mse", c_double), ("mae", c_double), ("r2", c_double), ("pearson", c_double), ("count", c_int64),
                ("ssim", c_double), ("ssim_range", c_double)]


class BinaryMetrics(Structure):
    _fields_ = [("f05", c_double), ("dice", c_double), ("precision", c_double), ("recall", c_double),
                ("auc", c_double), ("count", c_int64), ("tp", c_int64), ("fp", c_int64), ("fn", c_int64),
                ("tn", c_int64)]


# rm_read_fn and rm_progress_fn. CFUNCTYPE callbacks take the GIL back while they run Python code.
READ_FN = CFUNCTYPE(c_int, c_void_p, POINTER(c_int64), POINTER(c_int64), POINTER(c_float))
PROGRESS_FN = CFUNCTYPE(c_int, c_void_p, c_double)

_status = c_int
_ctx = c_void_p
_FUNCTIONS = {
    "rm_ctx_create": (_ctx, [c_int]),
    "rm_ctx_free": (None, [_ctx]),
    "rm_nonfinite_policy_parse": (_status, [_ctx, c_char_p, POINTER(c_int)]),
    "rm_nonfinite_census_add": (None, [POINTER(NonFiniteCensus), POINTER(c_float), c_int64]),
    "rm_nonfinite_resolve": (_status, [_ctx, POINTER(NonFiniteCensus), c_int, POINTER(c_int64), POINTER(c_float)]),
    "rm_nonfinite_replace": (c_int64, [POINTER(c_float), c_int64, c_float]),
    "rm_ctx_error": (c_char_p, [_ctx]),
    "rm_model_info_read": (_status, [_ctx, c_char_p, POINTER(ModelInfo)]),
    "rm_model_info_free": (None, [POINTER(ModelInfo)]),
    "rm_config_json": (c_void_p, [POINTER(Config)]),  # char * to release with rm_free: kept as a pointer
    "rm_free": (None, [c_void_p]),
    "rm_deploy_load": (_status, [_ctx, c_char_p, c_char_p, POINTER(c_void_p)]),
    "rm_deploy_free": (None, [c_void_p]),
    "rm_deploy_normalization": (_status, [_ctx, c_void_p, POINTER(Normalization)]),
    "rm_normalization_compute": (_status, [_ctx, POINTER(Normalization), POINTER(c_float), c_int64,
                                           POINTER(NormParams)]),
    "rm_normalize": (None, [POINTER(NormParams), POINTER(c_float), POINTER(c_float), c_int64]),
    "rm_predict_region": (_status, [_ctx, c_void_p, POINTER(WindowParams), POINTER(c_int64), READ_FN, c_void_p,
                                    POINTER(c_int64), POINTER(c_int64), POINTER(c_float), PROGRESS_FN, c_void_p]),
    "rm_depth_mean_forward": (_status, [_ctx, POINTER(Tensor), POINTER(Tensor)]),
    "rm_predict_region_mc": (_status, [_ctx, c_void_p, c_void_p, c_int, POINTER(WindowParams), POINTER(McParams),
                                       POINTER(c_int64), READ_FN, c_void_p, POINTER(c_int64), POINTER(c_int64),
                                       POINTER(c_float), POINTER(c_float), PROGRESS_FN, c_void_p]),
    "rm_deploy_task": (c_int, [c_void_p]),
    "rm_norm_params_zscore": (NormParams, [c_double, c_double]),
    "rm_normalization_ranks": (None, [POINTER(Normalization), c_int64, POINTER(c_int64)]),
    "rm_norm_params_percentile": (NormParams, [POINTER(Normalization), c_int64, POINTER(c_float)]),
    "rm_normalization_validate": (_status, [_ctx, POINTER(Normalization)]),
    # the training form (model.h)
    "rm_model_create": (_status, [_ctx, POINTER(Config), c_uint64, POINTER(c_void_p)]),
    "rm_model_load": (_status, [_ctx, c_char_p, POINTER(c_void_p)]),
    "rm_model_free": (None, [c_void_p]),
    "rm_model_config": (POINTER(Config), [c_void_p]),
    "rm_model_task_index": (c_int, [c_void_p, c_char_p]),
    "rm_model_save": (_status, [_ctx, c_void_p, c_char_p]),
    "rm_model_save_deploy": (_status, [_ctx, c_void_p, POINTER(c_int), c_int, c_char_p]),
    "rm_model_set_provenance": (_status, [_ctx, c_void_p, c_char_p]),
    "rm_model_set_normalization": (_status, [_ctx, c_void_p, POINTER(Normalization)]),
    "rm_model_normalization": (_status, [_ctx, c_void_p, POINTER(Normalization)]),
    "rm_model_provenance": (c_char_p, [c_void_p]),
    "rm_model_add_task": (_status, [_ctx, c_void_p, POINTER(Task), c_int, c_uint64, POINTER(c_void_p)]),
    "rm_model_train_only_task": (_status, [_ctx, c_void_p, c_int]),
    # fine-tuning (docs/network.md §5.6)
    "rm_model_init_from": (_status, [_ctx, c_void_p, POINTER(Config), POINTER(c_void_p)]),
    "rm_model_freeze_encoder": (_status, [_ctx, c_void_p]),
    "rm_model_set_encoder_lr_scale": (_status, [_ctx, c_void_p, c_float]),
    "rm_task_make": (Task, [c_char_p, c_int]),
    # training (trainer.h, optim.h)
    "rm_train_config_parse": (_status, [_ctx, c_char_p, POINTER(TrainConfig)]),
    "rm_augment_none": (Augment, []),
    "rm_augment_preset": (_status, [_ctx, c_char_p, POINTER(Augment)]),
    "rm_augment_validate": (_status, [_ctx, POINTER(Augment)]),
    "rm_trainer_swap_average": (_status, [_ctx, c_void_p]),
    "rm_train_config_free": (None, [POINTER(TrainConfig)]),
    "rm_train_options_official": (TrainOptions, [POINTER(c_int64)]),
    "rm_train_options_json": (c_void_p, [POINTER(TrainOptions)]),  # released with rm_free (take_string)
    "rm_optim_adam_official": (OptimConfig, []),
    "rm_optim_adamw_default": (OptimConfig, []),
    "rm_schedule_constant": (Schedule, []),
    "rm_schedule_warmup_cosine": (Schedule, [c_int64, c_int64, c_float]),
    "rm_schedule_lr": (c_float, [POINTER(Schedule), c_float, c_int64]),
    "rm_trainer_create": (_status, [_ctx, c_void_p, POINTER(TrainOptions), POINTER(TrainVolume), c_int,
                                    POINTER(c_void_p)]),
    "rm_trainer_free": (None, [c_void_p]),
    "rm_trainer_step": (_status, [_ctx, c_void_p, POINTER(c_float)]),
    "rm_trainer_steps_done": (c_int64, [c_void_p]),
    "rm_trainer_save_checkpoint": (_status, [_ctx, c_void_p, c_char_p]),
    "rm_trainer_load_checkpoint": (_status, [_ctx, c_void_p, c_char_p]),
    # metrics.h
    "rm_regression_metrics_compute": (_status, [_ctx, POINTER(Tensor), POINTER(Tensor), POINTER(Tensor),
                                                POINTER(RegressionMetrics)]),
    "rm_binary_metrics_compute": (_status, [_ctx, POINTER(Tensor), POINTER(Tensor), POINTER(Tensor), c_float,
                                            POINTER(BinaryMetrics)]),
}


def _candidates():
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, LIBRARY_NAME)
    if os.environ.get("REPMODE_LIBRARY"):
        yield os.environ["REPMODE_LIBRARY"]
    # wrapping/python/repmode -> the checkout's root, whose build/ is the default build tree
    yield os.path.join(here, "..", "..", "..", "build", "lib", LIBRARY_NAME)


def _load():
    tried = []
    for path in _candidates():
        if os.path.isfile(path):
            lib = ctypes.CDLL(os.path.normpath(path))
            for name, (restype, argtypes) in _FUNCTIONS.items():
                f = getattr(lib, name)
                f.restype, f.argtypes = restype, argtypes
            return lib
        tried.append(os.path.normpath(path))
    raise OSError("repmode: cannot find %s (looked at %s; set REPMODE_LIBRARY to its path)"
                  % (LIBRARY_NAME, ", ".join(tried)))


lib = _load()
path = lib._name


def take_string(pointer):
    """The text of a char * the library allocated, released with rm_free."""
    if not pointer:
        raise MemoryError("repmode: out of memory")
    try:
        return ctypes.string_at(pointer).decode("utf-8")
    finally:
        lib.rm_free(pointer)


def floats(array):
    """A float * to a C-contiguous float32 NumPy array's data."""
    return array.ctypes.data_as(POINTER(c_float))


def int64s(values):
    return (c_int64 * len(values))(*values)


def tensor(array):
    """An rm_tensor (1, 1, Z, Y, X) over a C-contiguous float32 array of 3 dimensions (or fewer: leading 1s)."""
    shape = (1,) * (5 - array.ndim) + tuple(array.shape)
    return Tensor(floats(array), (c_int64 * 5)(*shape))



