"""repmode.read_image: the formats the command line reads, read in Python with their spacing, and refusals that name
the file."""
import gzip

import numpy as np
import pytest

import repmode
from images import write_mha, write_nrrd


def test_metaimage_and_nrrd_with_their_spacing(tmp_path):
    v = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) - 20
    write_mha(str(tmp_path / "v.mha"), v, spacing=(0.5, 0.25, 2.0))  # ITK's (x, y, z) order
    write_nrrd(str(tmp_path / "v.nrrd"), v.astype(np.float32), spacing=(0.5, 0.25, 2.0))
    for name, dtype in [("v.mha", np.int16), ("v.nrrd", np.float32)]:
        array, spacing = repmode.read_image(tmp_path / name)
        assert array.dtype == dtype and np.array_equal(array, v) and spacing == (2.0, 0.25, 0.5)
    # A 2D image is one layer; gzip-encoded NRRD and zlib-compressed MetaImage read too.
    write_mha(str(tmp_path / "m.mha"), v[0].astype(np.uint8), spacing=(0.3, 0.7))
    array, spacing = repmode.read_image(tmp_path / "m.mha")
    assert array.shape == (1, 4, 5) and np.array_equal(array[0], v[0].astype(np.uint8))
    assert spacing == (1.0, 0.7, 0.3)
    header = b"NRRD0004\ntype: ushort\ndimension: 3\nsizes: 5 4 3\nspacings: 1 2 3\nendian: big\nencoding: gzip\n\n"
    (tmp_path / "g.nrrd").write_bytes(header + gzip.compress(v.astype(">u2").tobytes()))
    array, spacing = repmode.read_image(tmp_path / "g.nrrd")
    assert np.array_equal(array, v.astype(np.uint16)) and spacing == (3.0, 2.0, 1.0)
    import zlib
    text = (tmp_path / "v.mha").read_bytes()
    head, _, data = text.partition(b"ElementDataFile = LOCAL\n")
    (tmp_path / "z.mha").write_bytes(head + b"CompressedData = True\nElementDataFile = LOCAL\n" + zlib.compress(data))
    assert np.array_equal(repmode.read_image(tmp_path / "z.mha")[0], v)


def test_tiff_nifti_and_layers(tmp_path):
    import nibabel
    import tifffile
    v = np.random.default_rng(0).integers(0, 60000, (4, 6, 7)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", v, imagej=True, resolution=(2.0, 4.0), metadata={"spacing": 3.0})
    array, spacing = repmode.read_image(tmp_path / "s.tif")
    assert np.array_equal(array, v) and spacing == pytest.approx((3.0, 0.25, 0.5))
    img = nibabel.Nifti1Image(np.ascontiguousarray(v.T), np.diag([0.5, 0.25, 2.0, 1.0]))
    nibabel.save(img, str(tmp_path / "s.nii.gz"))
    array, spacing = repmode.read_image(tmp_path / "s.nii.gz")
    assert np.array_equal(array, v) and spacing == (2.0, 0.25, 0.5)
    (tmp_path / "layers").mkdir()
    for z in range(4):
        tifffile.imwrite(tmp_path / "layers" / ("%02d.tif" % z), v[z])
    (tmp_path / "layers" / "notes.txt").write_text("not a layer")
    assert np.array_equal(repmode.read_image(tmp_path / "layers")[0], v)


def test_refusals_name_the_file(tmp_path):
    import tifffile
    with pytest.raises(repmode.Error, match="missing.nrrd: no such file"):
        repmode.read_image(tmp_path / "missing.nrrd")
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(repmode.Error, match="x.png: not an image format"):
        repmode.read_image(tmp_path / "x.png")
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 9, 3), np.uint8), photometric="rgb")
    with pytest.raises(repmode.Error, match="rgb.tif holds 3-component"):
        repmode.read_image(tmp_path / "rgb.tif")
    (tmp_path / "short.nrrd").write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 5 4 3\nencoding: raw\n\n1234")
    with pytest.raises(repmode.Error, match="short.nrrd .*truncated"):
        repmode.read_image(tmp_path / "short.nrrd")
    np.save(tmp_path / "four.npy", np.zeros((2, 2, 2, 2)))
    with pytest.raises(repmode.Error, match="four.npy is an image of 4 dimensions"):
        repmode.read_image(tmp_path / "four.npy")
