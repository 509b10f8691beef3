"""repmode.read_image: the images the command line reads (docs/cli.md §1.4), read in Python, with their spacing.

Formats, chosen by the name as the command line chooses them:

- ``.tif``/``.tiff`` with tifffile (pages are layers), and a **folder** of 2D TIFF layers sorted by name (the
  Vesuvius ``surface_volume/``); spacing: the X/Y resolution tags (1 / resolution) and the ImageJ ``spacing`` for Z,
  in the file's unit;
- ``.nii``/``.nii.gz`` with nibabel (scaled by its slope and intercept when the header gives them, transposed from
  nibabel's (X, Y, Z) to (Z, Y, X)); spacing: the header's zooms;
- ``.nrrd``/``.nhdr`` and ``.mha``/``.mhd``, read here (raw, gzip or zlib data; attached or detached);
- ``.npy`` (NumPy; no spacing: 1, 1, 1).

Anything else (e.g. DICOM, or a compressed TIFF codec that tifffile lacks) raises repmode.Error naming the file.
Multi-component images (RGB, vectors) and images of more than 3 dimensions are refused, as the command line refuses
them; a 2D image is a volume of one layer. The voxels keep their type: convert with ``astype(np.float32)``, as the
command line converts them (predict, train and evaluate do it themselves).
"""
import bz2
import gzip
import os
import re
import zlib

import numpy as np

from ._model import Error

_NRRD_TYPES = {}
for _names, _dtype in [(("signed char", "int8", "int8_t"), "i1"),
                       (("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
                       (("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
                       (("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
                       (("int", "signed int", "int32", "int32_t"), "i4"),
                       (("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
                       (("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
                         "int64_t"), "i8"),
                       (("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), "u8"),
                       (("float",), "f4"), (("double",), "f8")]:
    for _name in _names:
        _NRRD_TYPES[_name] = _dtype

_MET_TYPES = {"MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2", "MET_INT": "i4",
              "MET_UINT": "u4", "MET_LONG": "i4", "MET_ULONG": "u4", "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8",
              "MET_FLOAT": "f4", "MET_DOUBLE": "f8"}


def read_image(path):
    """(array, spacing) of an image file or a folder of TIFF layers: the array (Z, Y, X), X fastest, in the file's
    voxel type (a 2D image is one layer: (1, Y, X)); spacing (z, y, x). Raises repmode.Error naming the file for a
    format it cannot read or a file that is not a scalar image of 2 or 3 dimensions.

    >>> signal, spacing = repmode.read_image("cells/signal.nrrd")      # what `repmode synth cells` writes
    >>> layers, _ = repmode.read_image("scroll/surface_volume")        # a folder of 2D TIFF layers
    """
    path = os.fspath(path)
    name = path.lower()
    try:
        if os.path.isdir(path):
            array, spacing = _read_tiff_folder(path)
        elif not os.path.isfile(path):
            raise Error("cannot read %s: no such file or folder" % path)
        elif name.endswith((".tif", ".tiff")):
            array, spacing = _read_tiff(path)
        elif name.endswith((".nii", ".nii.gz")):
            array, spacing = _read_nifti(path)
        elif name.endswith((".nrrd", ".nhdr")):
            array, spacing = _read_nrrd(path)
        elif name.endswith((".mha", ".mhd")):
            array, spacing = _read_metaimage(path)
        elif name.endswith(".npy"):
            array, spacing = np.load(path, allow_pickle=False), (1.0, 1.0, 1.0)
        else:
            raise Error("cannot read %s: not an image format repmode reads in Python (.tif, .tiff, a folder of TIFF "
                        "layers, .nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd, .npy)" % path)
    except Error:
        raise
    except ImportError as e:
        raise Error("cannot read %s: %s (install Debian's python3-tifffile or python3-nibabel)" % (path, e)) from e
    except Exception as e:  # a reader's own failure, named after the file
        raise Error("cannot read %s: %s" % (path, e)) from e
    array = np.asarray(array)
    if array.dtype.fields is not None or array.dtype.kind not in "biuf":
        raise Error("%s holds %s voxels: repmode reads scalar images" % (path, array.dtype))
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise Error("%s is an image of %d dimensions %s: repmode reads 2D and 3D scalar images" %
                    (path, array.ndim, array.shape))
    if array.size == 0:
        raise Error("cannot read %s: it has no voxels (shape %s, Z, Y, X)" % (path, array.shape))
    return array, tuple(float(s) for s in spacing)


# ---- TIFF ----------------------------------------------------------------------------------------------------------

def _resolution(page):
    """(y, x) spacing of a TIFF page: 1 / resolution, 1 without the tags."""
    spacing = []
    for tag in ("YResolution", "XResolution"):
        t = page.tags.get(tag)
        if t is None:
            spacing.append(1.0)
            continue
        num, den = t.value
        spacing.append(den / num if num else 1.0)
    return spacing


def _read_tiff(path):
    import tifffile
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes
        if "S" in axes and series.shape[axes.index("S")] > 1:
            raise Error("%s holds %d-component voxels (%s): repmode reads scalar images"
                        % (path, series.shape[axes.index("S")], axes))
        array = series.asarray()
        y, x = _resolution(tif.pages[0])
        z = float((tif.imagej_metadata or {}).get("spacing", 1.0))
    return np.squeeze(array) if array.ndim > 3 else array, (z, y, x)


def _read_tiff_folder(path):
    import tifffile
    layers = sorted(f for f in os.listdir(path)
                    if f.lower().endswith((".tif", ".tiff")) and os.path.isfile(os.path.join(path, f)))
    if not layers:
        raise Error("the folder %s holds no .tif layers" % path)
    arrays = []
    for f in layers:
        a = tifffile.imread(os.path.join(path, f))
        if a.ndim != 2:
            raise Error("the layer %s is not a 2D scalar image (shape %s); a folder of layers holds 2D images"
                        % (os.path.join(path, f), a.shape))
        arrays.append(a)
    with tifffile.TiffFile(os.path.join(path, layers[0])) as tif:
        y, x = _resolution(tif.pages[0])
    return np.stack(arrays), (1.0, y, x)


# ---- NIfTI ---------------------------------------------------------------------------------------------------------

def _read_nifti(path):
    import nibabel
    img = nibabel.load(path)
    shape = list(img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape.pop()
    if len(shape) > 3:
        raise Error("%s is an image of shape %s (X, Y, Z, ...): repmode reads 2D and 3D scalar images"
                    % (path, tuple(img.shape)))
    array = np.asanyarray(img.dataobj).reshape(shape)
    zooms = [float(v) for v in img.header.get_zooms()[:len(shape)]]
    zooms += [1.0] * (3 - len(zooms))
    return np.ascontiguousarray(array.T), tuple(zooms[::-1])


# ---- NRRD and MetaImage -------------------------------------------------------------------------------------------

def _data(path, raw, encoding, skip):
    """Voxel bytes of a data block (raw or compressed)."""
    if encoding == "raw":
        return raw[skip:] if skip >= 0 else raw
    if encoding in ("gzip", "gz"):
        return gzip.decompress(raw)
    if encoding in ("bzip2", "bz2"):
        return bz2.decompress(raw)
    if encoding == "zlib":
        return zlib.decompress(raw)
    raise Error("cannot read %s: its data encoding '%s' is not one repmode reads in Python (raw, gzip, bzip2)"
                % (path, encoding))


def _voxels(path, data, dtype, dims):
    """The (Z, Y, X) array of `dims` (fastest first) from bytes, checked to be complete."""
    count = int(np.prod(dims))
    if len(data) < count * dtype.itemsize:
        raise Error("%s holds %d bytes of voxels for %s voxels of %d bytes: it is truncated"
                    % (path, len(data), " x ".join(map(str, dims)), dtype.itemsize))
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(tuple(dims[::-1])).astype(dtype.newbyteorder("="))


def _read_nrrd(path):
    with open(path, "rb") as f:
        content = f.read()
    if not content.startswith(b"NRRD"):
        raise Error("%s is not a NRRD file (no NRRD magic)" % path)
    end = content.find(b"\n\n")
    if end < 0 and not path.lower().endswith(".nhdr"):
        raise Error("%s: the NRRD header does not end (no blank line)" % path)
    header_text = content[:end if end >= 0 else len(content)].decode("latin-1")
    fields = {}
    for line in header_text.splitlines()[1:]:
        if not line or line.startswith("#") or ":=" in line:
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            raise Error("%s: a NRRD header line without 'field: value': %r" % (path, line))
        fields[key.strip().lower()] = value.strip()
    for need in ("type", "dimension", "sizes", "encoding"):
        if need not in fields:
            raise Error("%s: the NRRD header has no '%s' field" % (path, need))
    if fields["type"] not in _NRRD_TYPES:
        raise Error("%s: NRRD type '%s' is not a scalar type repmode reads" % (path, fields["type"]))
    dims = [int(v) for v in fields["sizes"].split()]
    kinds = fields.get("kinds", "").split()
    if any(k not in ("domain", "space", "time", "???", "none") for k in kinds):
        raise Error("%s holds non-scalar voxels (kinds: %s): repmode reads scalar images" % (path, fields["kinds"]))
    if len(dims) > 3:
        raise Error("%s is an image of %d dimensions: repmode reads 2D and 3D scalar images" % (path, len(dims)))
    dtype = np.dtype(_NRRD_TYPES[fields["type"]])
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if fields.get("endian", "little") == "big" else "<")
    data_file = fields.get("data file", fields.get("datafile"))
    if data_file:
        if data_file.startswith("LIST") or len(data_file.split()) > 1:
            raise Error("%s: NRRD data in several files is not read in Python" % path)
        with open(os.path.join(os.path.dirname(path), data_file), "rb") as f:
            raw = f.read()
    else:
        raw = content[end + 2:]
    skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
    data = _data(path, raw, fields["encoding"].lower(), skip)
    if skip == -1:
        data = data[len(data) - int(np.prod(dims)) * dtype.itemsize:]
    spacing = [1.0] * len(dims)
    if "space directions" in fields:
        vectors = re.findall(r"\(([^)]*)\)", fields["space directions"])
        spacing = [float(np.linalg.norm([float(c) for c in v.split(",")])) for v in vectors][:len(dims)]
    elif "spacings" in fields:
        spacing = [float(v) if v.lower() != "nan" else 1.0 for v in fields["spacings"].split()]
    spacing += [1.0] * (3 - len(spacing))
    return _voxels(path, data, dtype, dims), tuple(spacing[:3][::-1])


def _read_metaimage(path):
    with open(path, "rb") as f:
        content = f.read()
    fields, pos = {}, 0
    while True:
        end = content.find(b"\n", pos)
        if end < 0:
            raise Error("%s: the MetaImage header has no ElementDataFile" % path)
        key, sep, value = content[pos:end].decode("latin-1").partition("=")
        pos = end + 1
        if not sep:
            continue
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    dims = [int(v) for v in fields.get("DimSize", "").split()]
    if not dims:
        raise Error("%s: the MetaImage header has no DimSize" % path)
    if int(fields.get("ElementNumberOfChannels", "1")) != 1:
        raise Error("%s holds %s-component voxels: repmode reads scalar images"
                    % (path, fields["ElementNumberOfChannels"]))
    if len(dims) > 3:
        raise Error("%s is an image of %d dimensions: repmode reads 2D and 3D scalar images" % (path, len(dims)))
    if fields.get("ElementType") not in _MET_TYPES:
        raise Error("%s: MetaImage element type %s is not a scalar type repmode reads"
                    % (path, fields.get("ElementType")))
    dtype = np.dtype(_MET_TYPES[fields["ElementType"]])
    msb = fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB", "False")).lower() == "true"
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msb else "<")
    data_file = fields["ElementDataFile"]
    if data_file == "LOCAL":
        raw = content[pos:]
    elif data_file.startswith("LIST") or "%" in data_file:
        raise Error("%s: MetaImage data in several files is not read in Python" % path)
    else:
        with open(os.path.join(os.path.dirname(path), data_file), "rb") as f:
            raw = f.read()
    compressed = fields.get("CompressedData", "False").lower() == "true"
    data = zlib.decompress(raw) if compressed else raw
    skip = int(fields.get("HeaderSize", "0"))
    if skip == -1:
        data = data[len(data) - int(np.prod(dims)) * dtype.itemsize:]
    elif skip > 0 and not compressed:
        data = data[skip:]
    spacing = [float(v) for v in fields.get("ElementSpacing", fields.get("ElementSize", "")).split()]
    spacing = spacing or [1.0] * len(dims)
    spacing += [1.0] * (3 - len(spacing))
    return _voxels(path, data, dtype, dims), tuple(spacing[:3][::-1])
