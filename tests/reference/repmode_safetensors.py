"""A small safetensors writer and reader in pure Python (json + struct; numpy for the reader's arrays).

The one implementation shared by make_fixtures.py and tools/repmode-convert. Layout (docs/model-file.md §1):

    8 bytes   N = header length, unsigned 64-bit little-endian
    N bytes   UTF-8 JSON: {"__metadata__": {...}, "<name>": {"dtype", "shape", "data_offsets": [b, e]}, ...}
              written compactly (separators "," and ":"), "__metadata__" first, then the tensors in the order
              given, padded with spaces to a multiple of 8 bytes
    rest      the tensors' bytes, little-endian, C order, contiguous, in the same order as the header

The writer emits F32 and I64 only; the reader also widens F16 and BF16 to float32. Output is a pure function
of the inputs: the same tensors and metadata always give the same bytes.
"""

import json
import os
import struct
import tempfile

import numpy as np

WRITE_DTYPES = {"F32": ("<f4", 4), "I64": ("<i8", 8)}
READ_DTYPES = {"F32": ("<f4", 4), "I64": ("<i8", 8), "F64": ("<f8", 8), "I32": ("<i4", 4),
               "F16": ("<f2", 2), "BF16": ("<u2", 2)}


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file (the message says what is wrong)."""


def json_string(obj):
    """The compact JSON used for every metadata value: json.dumps(obj, separators=(",", ":"))."""
    return json.dumps(obj, separators=(",", ":"))


def _as_array(value):
    """A torch tensor or numpy array -> (dtype tag, C-contiguous little-endian numpy array)."""
    if hasattr(value, "detach"):          # torch.Tensor, without importing torch here
        value = value.detach().cpu().contiguous().numpy()
    arr = np.asarray(value)
    if arr.dtype == np.float32:
        tag = "F32"
    elif arr.dtype == np.int64:
        tag = "I64"
    else:
        raise TypeError("only float32 and int64 tensors are written (got %s)" % arr.dtype)
    # (np.ascontiguousarray would turn a 0-d array into shape (1,); astype keeps shape () for scalars)
    return tag, arr.astype(WRITE_DTYPES[tag][0], order="C", copy=False)


def _layout(tensors, metadata):
    """-> (header bytes including the 8-byte length, [numpy arrays in file order])."""
    header = {}
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("metadata keys and values must be strings (%r)" % (k,))
        header["__metadata__"] = dict(metadata)
    arrays = []
    offset = 0
    for name, value in tensors:
        if name == "__metadata__" or name in header:
            raise ValueError("duplicate or reserved tensor name %r" % (name,))
        tag, arr = _as_array(value)
        header[name] = {"dtype": tag, "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        arrays.append(arr)
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, arrays


def encode(tensors, metadata=None):
    """tensors: iterable of (name, tensor) in file order; metadata: dict str -> str. Returns the file bytes."""
    head, arrays = _layout(tensors, metadata)
    return head + b"".join(a.tobytes() for a in arrays)


def write(path, tensors, metadata=None):
    """Write a safetensors file atomically (see write_atomic), streaming the tensors one by one."""
    head, arrays = _layout(tensors, metadata)

    def emit(f):
        f.write(head)
        for a in arrays:
            f.write(a.tobytes())

    write_atomic(path, emit)


def write_atomic(path, data):
    """Write to path through a temporary file in the same folder, then os.replace: a failure leaves either the
    old file or nothing, never a partial file. data: bytes, or a function that writes to the open file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def decode(data):
    """File bytes -> (dict name -> numpy array in header order, metadata dict or None).
    Enforces the reader rules of docs/model-file.md §1.5; raises SafetensorsError with the reason."""
    if len(data) < 8:
        raise SafetensorsError("file too short for a safetensors header (%d bytes)" % len(data))
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise SafetensorsError("header length %d does not fit the file (%d bytes)" % (n, len(data)))

    def no_duplicates(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                raise SafetensorsError("duplicate key %r in header" % (k,))
            d[k] = v
        return d

    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError("header is not valid JSON: %s" % e)
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise SafetensorsError("__metadata__ must map strings to strings")
    buf = memoryview(data)[8 + n:]
    spans = []
    out = {}
    for name, info in header.items():
        if not isinstance(info, dict):
            raise SafetensorsError("tensor %r: entry is not an object" % name)
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in READ_DTYPES:
            raise SafetensorsError("tensor %r: unsupported dtype %r" % (name, dtype))
        if (not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                   for s in shape)):
            raise SafetensorsError("tensor %r: bad shape %r" % (name, shape))
        if (not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= len(buf)):
            raise SafetensorsError("tensor %r: data_offsets %r out of bounds (%d data bytes)"
                                   % (name, offs, len(buf)))
        np_dtype, size = READ_DTYPES[dtype]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if offs[1] - offs[0] != count * size:
            raise SafetensorsError("tensor %r: %d bytes for %s %s" % (name, offs[1] - offs[0], dtype, shape))
        spans.append((offs[0], offs[1], name))
        arr = np.frombuffer(buf[offs[0]:offs[1]], dtype=np_dtype).reshape(shape)
        if dtype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        elif dtype == "F16":
            arr = arr.astype(np.float32)
        out[name] = arr.copy()
    end = 0
    for b, e, name in sorted(spans):
        if b != end:
            raise SafetensorsError("tensor %r: data at %d, expected %d (gap or overlap)" % (name, b, end))
        end = e
    if end != len(buf):
        raise SafetensorsError("%d trailing data bytes not covered by any tensor" % (len(buf) - end))
    return out, metadata


def read(path):
    with open(path, "rb") as f:
        return decode(f.read())


# ---------------------------------------------------------------------------------------------------------------
# repmode model-file metadata (docs/model-file.md §2)

def model_metadata(config, tasks, normalization, provenance, form="training"):
    """The __metadata__ of a repmode model file; every value is compact JSON (or the plain format string).
    config: the fields of docs/model-file.md §2.3; tasks: list of {"name", "kind", ...} in index order."""
    return {
        "repmode.format": "1",
        "repmode.form": form,
        "repmode.config": json_string(config),
        "repmode.tasks": json_string(tasks),
        "repmode.normalization": json_string(normalization),
        "repmode.provenance": json_string(provenance),
    }
