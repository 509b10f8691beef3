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
    """array: (Z, Y, X), or (Z, Y, X, C) with components=C (e.g. RGB)."""
    a = np.ascontiguousarray(array)
    a = a.astype(a.dtype.newbyteorder("<"))
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
    """(array (Z, Y, X), header dict) of a .mha written by ITK (uncompressed, LOCAL data)."""
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
    array = np.frombuffer(data[pos:], dtype=dtype, count=int(np.prod(dims))).reshape(dims[::-1])
    return array.astype(dtype.newbyteorder("=")), header


def write_nrrd(path, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    a = np.ascontiguousarray(array)
    header = [
        "NRRD0004",
        "type: " + _NRRD_TYPES[a.dtype],
        "dimension: 3",
        "space: left-posterior-superior",
        "sizes: %d %d %d" % (a.shape[2], a.shape[1], a.shape[0]),
        "space directions: (%r,0,0) (0,%r,0) (0,0,%r)" % tuple(float(s) for s in spacing),
        "space origin: (%r,%r,%r)" % tuple(float(o) for o in origin),
        "endian: little",
        "encoding: raw",
    ]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n\n").encode("ascii"))
        f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
