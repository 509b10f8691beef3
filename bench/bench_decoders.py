#!/usr/bin/python3
"""repmode-bench-decoders: the 3D decoder (the depth mean of 3D logits) and the 2D decoder (depth-averaged skips, 2D
MoDE layers; docs/network.md §7.2) trained alike on `repmode synth scroll`, side by side: F0.5 of the ink map on a
held-out fragment (inside its mask, at the threshold tuned on a validation fragment), trainable parameters,
multiply-adds per voxel, seconds per training step and prediction voxels per second. The 2D decoder trains twice:
with the 3D decoder's steps, and with three times as many (about the 3D decoder's training time).

    /usr/bin/python3 bench/bench_decoders.py [--repmode build/bin/repmode] [--steps 300]

Run by `make bench`, never by CI: it trains two models (a few minutes on two cores)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cli"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "learning"))
from images import read_nrrd  # noqa: E402
from test_learning import f05  # noqa: E402  the learning test's F0.5, the Kaggle metric

CONFIGS = os.path.join(HERE, "..", "examples", "configs")
# (decoder, configuration, steps as a multiple of --steps): the 2D decoder with the same steps, and with three times
# as many, about the 3D decoder's training time (its recipe in tests/learning).
RUNS = [("3d", "scroll-small.json", 1), ("2d", "scroll-small-2d.json", 1), ("2d", "scroll-small-2d.json", 3)]


def repmode(exe, *args):
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("repmode %s failed: %s" % (args[0], r.stderr.strip()))
    return r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repmode", default=os.path.join(HERE, "..", "build", "bin", "repmode"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    exe = args.repmode
    with tempfile.TemporaryDirectory() as tmp:
        samples = {}
        for name, seed in (("train", 1), ("val", 3), ("held_out", 2)):
            samples[name] = os.path.join(tmp, name)
            repmode(exe, "synth", "scroll", "--out", samples[name], "--seed", seed, "--size", "16,256,256")
        held = samples["held_out"]
        truth = read_nrrd(os.path.join(held, "inklabels.nrrd")) > 0.5
        inside = read_nrrd(os.path.join(held, "mask.nrrd")) > 0.5
        rows = []
        for decoder, config, factor in RUNS:
            steps_run = args.steps * factor
            tag = "%s-%d" % (decoder, steps_run)
            model, log = os.path.join(tmp, tag + ".safetensors"), os.path.join(tmp, tag + ".jsonl")
            repmode(exe, "train", "--config", os.path.join(CONFIGS, config), "--data",
                    os.path.join(samples["train"], "data.csv"), "--val", os.path.join(samples["val"], "data.csv"),
                    "--val-every", 50, "--tune-threshold", "--sampling", "buckets", "--out", model, "--steps",
                    steps_run, "--batch", 4, "--lr", "2e-3", "--seed", 1, "--threads", args.threads, "--log", log)
            steps = [json.loads(line) for line in open(log) if '"loss"' in line]
            # the median step: the steps after a validation also carry its time
            seconds_per_step = float(np.median(np.diff([0.0] + [line["seconds"] for line in steps])))
            info = json.loads(repmode(exe, "info", "--json", model))
            threshold = next(iter(info["tasks"])).get("threshold", 0.5)
            prediction = os.path.join(tmp, tag + ".nrrd")
            start = time.perf_counter()
            repmode(exe, "predict", "--model", model, "--task", "ink", "--input",
                    os.path.join(held, "surface_volume"), "--output", prediction, "--threads", args.threads)
            voxels_per_second = 16 * 256 * 256 / (time.perf_counter() - start)
            prob = read_nrrd(prediction)
            rows.append((decoder, steps_run, f05(prob[inside], truth[inside], threshold), threshold,
                         info["parameters"], info["macs_per_voxel"], seconds_per_step, seconds_per_step * steps_run,
                         voxels_per_second))
    print("repmode-bench-decoders: synth scroll 16x256x256 (train seed 1, validation 3, held-out 2), batch 4, "
          "patch 16x64x64, lr 2e-3, bucketed crops, threshold tuned on the validation fragment, %d threads"
          % args.threads)
    print("| decoder | steps | F0.5 held-out | threshold | parameters | multiply-adds per voxel | s per step | "
          "training s | predict voxels/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for decoder, steps, score, threshold, params, macs, sps, total, vps in rows:
        print("| %s | %d | %.3f | %.3f | %d | %.1f k | %.3f | %.0f | %.3g |"
              % (decoder, steps, score, threshold, params, macs / 1e3, sps, total, vps))
    three, two = rows[0], rows[1]
    print("2d / 3d: parameters %.2fx, multiply-adds %.2fx, seconds per training step %.2fx, prediction speed %.2fx"
          % (two[4] / three[4], two[5] / three[5], two[6] / three[6], two[8] / three[8]))


if __name__ == "__main__":
    main()
