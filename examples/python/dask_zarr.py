#!/usr/bin/env python3
"""Predicts a volume stored in Zarr with Dask on a local dask.distributed cluster, writing the prediction to Zarr
block by block: the volume is never gathered in one process, and the result equals repmode.Model.predict on the
whole volume bit for bit.

    python3 examples/python/dask_zarr.py MODEL IN.zarr TASK OUT.zarr [--workers 2] [--block Z,Y,X]
    python3 examples/python/dask_zarr.py MODEL IMAGE TASK OUT.zarr --to-zarr IN.zarr --chunks 16,64,64

IN.zarr is a 3D array (Z, Y, X); its spacing, if any, in its attributes ("spacing": [z, y, x]), which the output
gets too. With --to-zarr, IMAGE (any file repmode.read_image reads: TIFF, NIfTI, NRRD, MetaImage, .npy, a folder
of TIFF layers) is first copied into IN.zarr with the given chunks and its spacing. The cluster has --workers
processes of one thread each; each block of the prediction is computed by one worker from the block and its halo.
Without repmode installed, run it from a checkout built in build/ with PYTHONPATH=wrapping/python.
"""
import argparse
import time

import dask.array as da
import numpy as np
import zarr
from distributed import Client, LocalCluster

import repmode
import repmode.dask


def sizes(text):
    values = [int(v) for v in text.split(",")]
    if len(values) != 3:
        raise argparse.ArgumentTypeError("expected Z,Y,X")
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("input", help="a Zarr array, or an image with --to-zarr")
    parser.add_argument("task")
    parser.add_argument("output", help="the Zarr array to write")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--block", type=sizes, default=None, help="voxels predicted per task (default: see "
                                                                 "repmode.dask)")
    parser.add_argument("--to-zarr", metavar="IN.zarr", help="copy the image INPUT into this Zarr array first")
    parser.add_argument("--chunks", type=sizes, default=[16, 64, 64], help="chunks of --to-zarr's array")
    args = parser.parse_args()

    source = args.input
    if args.to_zarr:
        image, spacing = repmode.read_image(args.input)
        z = zarr.open(args.to_zarr, mode="w", shape=image.shape, chunks=args.chunks, dtype=image.dtype)
        z[:] = image
        z.attrs["spacing"] = list(spacing)
        source = args.to_zarr
        print("copied %s into %s (chunks %s)" % (args.input, source, args.chunks))

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        start = time.time()
        volume = da.from_zarr(source)
        spacing = zarr.open(source, mode="r").attrs.get("spacing")
        model = repmode.Model(args.model)
        params = repmode.dask.normalization(volume, model)  # from the chunks, on the cluster
        print("%s: %s voxels in chunks of %s; %s on %d workers; normalization offset %.6g scale %.6g"
              % (source, " x ".join(map(str, volume.shape)), " x ".join(map(str, volume.chunksize)), args.task,
                 len(client.scheduler_info()["workers"]), params.offset, params.scale))
        prediction = repmode.dask.predict(volume, model, args.task, block=args.block, normalization=params)
        prediction.to_zarr(args.output, overwrite=True)  # each block written by the worker that computed it
        out = zarr.open(args.output, mode="r+")
        if spacing is not None:
            out.attrs["spacing"] = spacing
        print("wrote %s: %s float32 in chunks of %s, %.1f s"
              % (args.output, " x ".join(map(str, out.shape)), " x ".join(map(str, out.chunks)), time.time() - start))
        print("prediction range %.4g .. %.4g" % (float(np.min(out[:1])), float(np.max(out[:1]))))


if __name__ == "__main__":
    main()
