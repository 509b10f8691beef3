#!/usr/bin/env python3
"""Predicts a TIFF stack with NumPy and tifffile, and writes the prediction and the label map as TIFF stacks that keep
the input's spacing.

    python3 examples/python/predict_tifffile.py MODEL IN.tif TASK OUT_PREFIX [--threads N]

    python3 examples/python/predict_tifffile.py examples/models/cells.safetensors cells.tif nuclei out/cells
    # -> out/cells-nuclei.tif (float32) and out/cells-nuclei-labels.tif (uint8)

The input is read whole: a multi-page TIFF is (Z, Y, X), its voxel size in the X/Y resolution tags (pixels per unit)
and, for Z, in the ImageJ metadata ("spacing", with its "unit"), as ImageJ/Fiji and tifffile write them. The outputs
are ImageJ hyperstacks with the same resolution, Z spacing and unit, so Fiji, napari or ITK show them over the input.
A task with 2D labels (ink on a surface volume) gives one layer. Without repmode installed, run it from a checkout
built in build/ with PYTHONPATH=wrapping/python.
"""
import argparse
import os

import numpy as np
import tifffile

import repmode


def read_tiff(path):
    """(volume (Z, Y, X), spacing (z, y, x), unit) of a TIFF stack."""
    with tifffile.TiffFile(path) as tif:
        volume = tif.asarray()
        meta = tif.imagej_metadata or {}
        page = tif.pages[0]
        xy = []
        for tag in ("YResolution", "XResolution"):  # pixels per unit, as a fraction
            t = page.tags.get(tag)
            num, den = t.value if t is not None else (1, 1)
            xy.append(den / num)
    if volume.ndim == 2:
        volume = volume[np.newaxis]
    return volume, (float(meta.get("spacing", 1.0)), xy[0], xy[1]), meta.get("unit", "pixel")


def write_tiff(path, array, spacing, unit):
    """An ImageJ hyperstack (Z, Y, X) with the voxel size: X/Y resolution tags and the Z spacing."""
    tifffile.imwrite(path, array, imagej=True, resolution=(1.0 / spacing[2], 1.0 / spacing[1]),
                     metadata={"spacing": spacing[0], "unit": unit, "axes": "ZYX"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("input")
    parser.add_argument("task")
    parser.add_argument("out_prefix")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    volume, spacing, unit = read_tiff(args.input)
    model = repmode.Model(args.model)
    print("%s: %s %s voxels of %s x %s x %s %s" % (args.input, " x ".join(map(str, volume.shape)), volume.dtype,
                                                  *spacing, unit))
    prediction = model.predict(volume, args.task, threads=args.threads,
                               progress=lambda f: print("\rpredicting %3.0f%%" % (100 * f), end="", flush=True))
    print()
    labels = model.labels(prediction, args.task)
    os.makedirs(os.path.dirname(os.path.abspath(args.out_prefix)), exist_ok=True)
    out = "%s-%s.tif" % (args.out_prefix, args.task)
    write_tiff(out, prediction, spacing, unit)
    write_tiff("%s-%s-labels.tif" % (args.out_prefix, args.task), labels, spacing, unit)
    print("wrote %s and its label map (threshold %.4g, %d voxels labelled)"
          % (out, model.thresholds_used[0], int(np.count_nonzero(labels))))


if __name__ == "__main__":
    main()
