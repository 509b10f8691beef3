"""Small images for the command-line tests, written and read without ITK (Debian has no ITK for Python):
MetaImage (.mha: a text header, then the raw voxels) and NRRD (.nrrd: the same idea). Arrays are numpy (Z, Y, X),
X fastest, as ITK stores them; geometry is in ITK's (x, y, z) order."""
import numpy as np

_MET_TYPES = {np.dtype("uint8"): "MET_UCHAR", np.dtype("int8"): "MET_CHAR", np.dtype("uint16"): "MET_USHORT",
              np.dtype("int16"): "MET_SHORT", np.dtype("int32"): "MET_INT", np.dtype("uint32"): "MET_UINT",
              np.dtype("float32"): "MET_FLOAT", np.dtype("float64"): "MET_DOUBLE"}
_NRRD_TYPES = {np.dtype("uint8"): "uchar", np.dtype("int16"): "short", np.dtype("uint16"): "ushort",
               np.dtype("int32"): "int", np.dtype("float32"): "float", np.dtype("float64"): "double"}


def write_mha(path, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None, components=1):
    """array: (Z, Y, X), or (Z, Y, X, C) with components=C (e.g. RGB); or a 2D image (Y, X), written with NDims = 2
    and the first two values of spacing and origin."""
    a = np.ascontiguousarray(array)
    a = a.astype(a.dtype.newbyteorder("<"))
    if a.ndim == 2:
        header = [
            "ObjectType = Image",
            "NDims = 2",
            "BinaryData = True",
            "BinaryDataByteOrderMSB = False",
            "TransformMatrix = 1 0 0 1",
            "Offset = " + " ".join(repr(float(v)) for v in origin[:2]),
            "ElementSpacing = " + " ".join(repr(float(v)) for v in spacing[:2]),
            "DimSize = %d %d" % (a.shape[1], a.shape[0]),
            "ElementType = " + _MET_TYPES[a.dtype.newbyteorder("=")],
            "ElementDataFile = LOCAL",
        ]
        with open(path, "wb") as f:
            f.write(("\n".join(header) + "\n").encode("ascii"))
            f.write(a.tobytes())
        return
    shape = a.shape[:3]
    direction = direction if direction is not None else (1, 0, 0, 0, 1, 0, 0, 0, 1)
    header = [
        "ObjectType = Image",
        "NDims = 3",
        "BinaryData = True",
        "BinaryDataByteOrderMSB = False",
        "TransformMatrix = " + " ".join(repr(float(v)) for v in direction),
        "Offset = " + " ".join(repr(float(v)) for v in origin),
        "ElementSpacing = " + " ".join(repr(float(v)) for v in spacing),
        "DimSize = %d %d %d" % (shape[2], shape[1], shape[0]),
    ]
    if components != 1:
        header.append("ElementNumberOfChannels = %d" % components)
    header += ["ElementType = " + _MET_TYPES[a.dtype.newbyteorder("=")], "ElementDataFile = LOCAL"]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(a.tobytes())


def read_mha(path):
    """(array (Z, Y, X), or (Z, Y, X, C) for C components; header dict) of a .mha written by ITK (uncompressed,
    LOCAL data)."""
    with open(path, "rb") as f:
        data = f.read()
    header, pos = {}, 0
    while True:
        end = data.index(b"\n", pos)
        key, _, value = data[pos:end].decode("ascii").partition("=")
        header[key.strip()] = value.strip()
        pos = end + 1
        if key.strip() == "ElementDataFile":
            break
    dims = [int(v) for v in header["DimSize"].split()]
    types = {v: k for k, v in _MET_TYPES.items()}
    dtype = types[header["ElementType"]].newbyteorder(">" if header.get("BinaryDataByteOrderMSB") == "True" else "<")
    shape = dims[::-1] + ([int(header["ElementNumberOfChannels"])] if "ElementNumberOfChannels" in header else [])
    array = np.frombuffer(data[pos:], dtype=dtype, count=int(np.prod(shape))).reshape(shape)
    return array.astype(dtype.newbyteorder("=")), header


def write_nrrd(path, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None):
    """direction: ITK's row-major 3x3 matrix (column j is axis j's unit vector), as Slicer writes it; default the
    identity."""
    a = np.ascontiguousarray(array)
    d = np.reshape(direction if direction is not None else np.eye(3), (3, 3))
    axes = (d * np.asarray(spacing, dtype=float)[None, :]).T  # NRRD: one vector per axis, its spacing included
    header = [
        "NRRD0004",
        "type: " + _NRRD_TYPES[a.dtype],
        "dimension: 3",
        "space: left-posterior-superior",
        "sizes: %d %d %d" % (a.shape[2], a.shape[1], a.shape[0]),
        "space directions: " + " ".join("(%s)" % ",".join(repr(float(v)) for v in axis) for axis in axes),
        "space origin: (%r,%r,%r)" % tuple(float(o) for o in origin),
        "endian: little",
        "encoding: raw",
    ]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n\n").encode("ascii"))
        f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())


def read_nrrd(path):
    """The (Z, Y, X) array of an uncompressed (raw) NRRD of 1 to 3 dimensions, as ITK writes them."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.index(b"\n\n")
    fields = dict(line.split(": ", 1) for line in data[:end].decode("ascii").splitlines()[1:] if ": " in line)
    assert fields["encoding"] == "raw", fields
    types = {"unsigned char": "u1", "uchar": "u1", "uint8": "u1", "short": "i2", "unsigned short": "u2",
             "ushort": "u2", "float": "f4", "double": "f8"}
    dtype = np.dtype(types[fields["type"]]).newbyteorder("<" if fields.get("endian", "little") == "little" else ">")
    sizes = [int(v) for v in fields["sizes"].split()][::-1]
    while len(sizes) < 3:
        sizes.insert(0, 1)
    return np.frombuffer(data[end + 2:], dtype=dtype, count=int(np.prod(sizes))).reshape(sizes).astype(dtype.newbyteorder("="))


def image_bytes(path):
    """The bytes of an image file without its provenance record (docs/cli.md §1.6: the NRRD or MetaImage header line
    'repmode.provenance…'), which names the input, the date and the engine: what two runs that should write the same
    image must agree on."""
    with open(path, "rb") as f:
        data = f.read()
    start = data.find(b"\nrepmode.provenance")
    if start < 0:
        return data
    return data[:start] + data[data.index(b"\n", start + 1):]
