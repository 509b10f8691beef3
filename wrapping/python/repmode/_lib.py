"""The C API of librepmode.so.0 through ctypes: the structures and the functions the package calls, each with its
argument and result types declared (ctypes would otherwise pass 64-bit values as int and truncate pointers).

The library is looked for, in order: next to this file (a ``pip install`` copies it there), the path in the
``REPMODE_LIBRARY`` environment variable, and the build tree of the source checkout (``build/lib`` at its root) for
use without installing.
"""
import ctypes
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int64,
                    c_void_p)

LIBRARY_NAME = "librepmode.so.0"

# Statuses of core.h (append only there, so stable here).
OK = 0
ERR_CANCELLED = 7

TASK_BINARY = 1
NAME_MAX = 64


class Task(Structure):
    _fields_ = [("name", c_char * NAME_MAX), ("kind", c_int), ("threshold", c_float), ("has_color", c_int),
                ("color", c_float * 3), ("output_2d", c_int)]


class Config(Structure):
    _fields_ = [("base_channels", c_int64), ("levels", c_int), ("in_channels", c_int64), ("out_channels", c_int64),
                ("activation", c_int), ("dropout", c_float), ("patch", c_int64 * 3), ("n_tasks", c_int),
                ("tasks", POINTER(Task))]


class ModelInfo(Structure):
    _fields_ = [("deploy", c_int), ("cfg", Config), ("parameters", c_int64)]


class Normalization(Structure):
    _fields_ = [("method", c_int), ("low", c_double), ("high", c_double)]


class NormParams(Structure):
    _fields_ = [("offset", c_double), ("scale", c_double), ("clip", c_int)]


class WindowParams(Structure):
    _fields_ = [("patch", c_int64 * 3), ("overlap", c_double), ("blend", c_int)]


class Tensor(Structure):
    _fields_ = [("data", POINTER(c_float)), ("ne", c_int64 * 5)]


# rm_read_fn and rm_progress_fn. CFUNCTYPE callbacks take the GIL back while they run Python code.
READ_FN = CFUNCTYPE(c_int, c_void_p, POINTER(c_int64), POINTER(c_int64), POINTER(c_float))
PROGRESS_FN = CFUNCTYPE(c_int, c_void_p, c_double)

_status = c_int
_ctx = c_void_p
_FUNCTIONS = {
    "rm_ctx_create": (_ctx, [c_int]),
    "rm_ctx_free": (None, [_ctx]),
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



