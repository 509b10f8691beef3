#!/usr/bin/python3
"""repmode-bench-backbones: RepMode, the Inception network and a plain U-Net (docs/network.md §9) trained with the
same budget on `repmode synth cells`, side by side: trainable parameters, multiply-adds per voxel, seconds per
training step, prediction voxels per second and Pearson r per structure on a held-out sample.

The budget: every network sees the same samples. RepMode learns the four structures in one multi-task run of S
steps (batch 4, mixed tasks); the single-task networks train one model per structure for S/4 steps each, so each
structure gets the same number of samples in all three. Every network has the same U-Net (examples/configs/
cells-small.json: base 8, 3 levels, patch 16x32x32), lr 2e-3 with 20 warm-up steps, seed 1.

    /usr/bin/python3 bench/bench_backbones.py [--repmode build/bin/repmode] [--steps 900]

Run by `make bench`, never by CI."""
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
from images import read_nrrd  # noqa: E402

STRUCTURES = ["nuclei", "membranes", "nucleoli", "mitochondria"]
CONFIG = os.path.join(HERE, "..", "examples", "configs", "cells-small.json")


def repmode(exe, *args):
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("repmode %s failed: %s" % (args[0], r.stderr.strip()))
    return r.stdout


def train(exe, config, data, out, steps, threads):
    """Trains; returns the median seconds per step of its log."""
    log = out + ".jsonl"
    repmode(exe, "train", "--config", config, "--data", data, "--out", out, "--steps", steps, "--warmup", 20,
            "--batch", 4, "--lr", "2e-3", "--seed", 1, "--threads", threads, "--log", log)
    seconds = [json.loads(line)["seconds"] for line in open(log)]
    return float(np.median(np.diff([0.0] + seconds)))


def pearson(prediction, target):
    return float(np.corrcoef(prediction.astype(np.float64).ravel(), target.astype(np.float64).ravel())[0, 1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repmode", default=os.path.join(HERE, "..", "build", "bin", "repmode"))
    ap.add_argument("--steps", type=int, default=900, help="RepMode's steps; S/4 per single-task model")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    exe = args.repmode
    base = json.load(open(CONFIG))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        samples = [os.path.join(tmp, "train%d" % s) for s in (1, 3)]
        for seed, path in zip((1, 3), samples):
            repmode(exe, "synth", "cells", "--out", path, "--seed", seed, "--size", "16,128,128")
        held = os.path.join(tmp, "held_out")
        repmode(exe, "synth", "cells", "--out", held, "--seed", 2, "--size", "16,128,128")
        voxels = 16 * 128 * 128
        lines = {}
        for s in samples:
            for row in open(os.path.join(s, "data.csv")).read().splitlines()[1:]:
                signal, target, task = row.split(",")
                lines.setdefault(task, []).append("%s,%s,%s" % (os.path.join(s, signal), os.path.join(s, target),
                                                                task))
        def write_csv(name, tasks):
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                f.write("signal,target,task\n" + "".join(l + "\n" for t in tasks for l in lines[t]))
            return path

        targets = {t: read_nrrd(os.path.join(held, t + ".nrrd")) for t in STRUCTURES}
        targets = {t: (v - v.mean()) / v.std() for t, v in targets.items()}

        def score(model, task):
            out = os.path.join(tmp, "p.nrrd")
            start = time.perf_counter()
            repmode(exe, "predict", "--model", model, "--task", task, "--input", os.path.join(held, "signal.nrrd"),
                    "--output", out, "--threads", args.threads)
            return pearson(read_nrrd(out), targets[task]), voxels / (time.perf_counter() - start)

        # RepMode: one model of the four tasks.
        model = os.path.join(tmp, "repmode.safetensors")
        sps = train(exe, CONFIG, write_csv("all.csv", STRUCTURES), model, args.steps, args.threads)
        info = json.loads(repmode(exe, "info", "--json", model))
        scores = [score(model, t) for t in STRUCTURES]
        rows.append(("RepMode (one model, 4 tasks)", info["parameters"], info["macs_per_voxel"], sps, args.steps,
                     float(np.mean([v for _, v in scores])), [r for r, _ in scores]))
        # The single-task networks: a model per structure.
        for block in ("inception", "plain"):
            params = macs = 0
            per_step, speeds, rs = [], [], []
            for t in STRUCTURES:
                config = os.path.join(tmp, "%s-%s.json" % (block, t))
                json.dump(dict(base, block=block, tasks=[{"name": t, "kind": "regression"}]), open(config, "w"))
                model = os.path.join(tmp, "%s-%s.safetensors" % (block, t))
                per_step.append(train(exe, config, write_csv(t + ".csv", [t]), model, args.steps // 4, args.threads))
                info = json.loads(repmode(exe, "info", "--json", model))
                params += info["parameters"]
                macs = info["macs_per_voxel"]
                r, v = score(model, t)
                rs.append(r)
                speeds.append(v)
            rows.append(("%s (4 models)" % block.capitalize(), params, macs, float(np.mean(per_step)),
                         4 * (args.steps // 4), float(np.mean(speeds)), rs))
    print("repmode-bench-backbones: synth cells 16x128x128 (train seeds 1 and 3, held-out seed 2), base 8, 3 levels, "
          "patch 16x32x32, batch 4, %d threads" % args.threads)
    print("| network | parameters | multiply-adds per voxel (one task) | s per step | steps | predict voxels/s "
          "(one task) | " + " | ".join("r " + t for t in STRUCTURES) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(STRUCTURES))
    for name, params, macs, sps, steps, vps, rs in rows:
        print("| %s | %d | %.1f k | %.3f | %d | %.3g | %s |" % (name, params, macs / 1e3, sps, steps, vps,
                                                                " | ".join("%.3f" % r for r in rs)))


if __name__ == "__main__":
    main()
