#!/usr/bin/python3
"""repmode-bench-generalization: how well a model trained on one small `repmode synth cells` sample carries over to a
held-out sample of the same imaging and to one from a shifted domain (lower contrast, more noise, more blur, denser
cells, an illumination gradient: `repmode synth cells --contrast --noise --blur --density --illumination`). An
ablation of the training recipe, every row with the same sample, seed, steps and learning-rate schedule:

    today          --augment official (flips), one plain prediction
    + intensity    --augment label-free (flips, rotations, blur, gamma, contrast, illumination, brightness, noise)
    + EMA          --ema 0.99 (the weights' moving average is the model)
    + TTA          today's model, predicted with --tta (mean over the 8 in-plane flips and rotations; no training)
    all            label-free + EMA + TTA
    fine-tune      today's recipe from --init a model trained on another sample (seed 3, today's imaging)

Printed: training seconds, prediction seconds on the shifted sample, held-out Pearson r per structure (numpy, against
the z-scored target) on the shifted and on the same-domain sample, the gain of `all` over `today` and whether every
structure gains at least 0.1 on the shifted sample. References: predicting a constant gives r = 0; the input itself
as the prediction gives the r printed in the `input as prediction` row; the full recipe trained on a sample of the
shifted domain itself (seed 3; flips, EMA and TTA) is the ceiling, what the shifted imaging leaves to be found (the
`room` line: how far today's model is from it).

    /usr/bin/python3 bench/bench_generalization.py [--repmode build/bin/repmode] [--steps 300] [--no-fine-tune]

The binary: --repmode, else $REPMODE, else build/bin/repmode. Run by `make bench`, never by CI: it trains seven models
one after the other (about 7 minutes on two idle cores)."""
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
from images import read_mha, read_nrrd  # noqa: E402

STRUCTURES = ["nuclei", "membranes", "nucleoli", "mitochondria"]
CONFIG = os.path.join(HERE, "..", "examples", "configs", "cells-small.json")
SIZE = "16,128,128"
# The shifted domain: another microscope's settings, each a factor on today's synthetic imaging (1 = today's;
# illumination 0 = today's flat field).
SHIFT = "contrast=0.6,noise=2,blur=1.5,density=1.3,illumination=0.3"
GAIN = 0.1  # the bar: `all` over `today` on the shifted sample, every structure


def repmode(exe, *args):
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("repmode %s failed: %s" % (args[0], r.stderr.strip()))
    return r.stdout


def zscore(a):
    a = np.asarray(a, dtype=np.float64)
    return (a - a.mean()) / a.std()


def pearson(prediction, target):
    """Pearson r of a prediction against a z-scored target (0 for a constant prediction)."""
    p = np.asarray(prediction, dtype=np.float64).ravel()
    if p.std() == 0:
        return 0.0
    return float(np.mean(zscore(p) * target.ravel()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repmode", default=os.environ.get("REPMODE") or os.path.join(HERE, "..", "build", "bin",
                                                                                     "repmode"))
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps of every training run (batch 4)")
    ap.add_argument("--seed", type=int, default=1, help="the training runs' seed (their weights and draws; the "
                    "samples stay the same), to see how far another seed moves the figures")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shift", default=SHIFT, help="the shifted sample's imaging: name=value,... of `repmode synth "
                    "cells` options (default %(default)s)")
    ap.add_argument("--ema", type=float, default=0.99)
    ap.add_argument("--augment", default="label-free", help="the `+ intensity` recipe (default %(default)s); "
                    "extra `repmode train` options may follow after a space, e.g. 'label-free --gamma 0.5'")
    ap.add_argument("--no-fine-tune", dest="fine_tune", action="store_false",
                    help="without the fine-tuning row (two training runs fewer)")
    args = ap.parse_args()
    exe = args.repmode
    shift = [kv.split("=") for kv in args.shift.split(",") if kv]
    augment = args.augment.split()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="repmode-bench-generalization-") as tmp:
        def synth(name, seed, imaging=()):
            path = os.path.join(tmp, name)
            repmode(exe, "synth", "cells", "--out", path, "--seed", seed, "--size", SIZE, "--threads", args.threads,
                    *[a for k, v in imaging for a in ("--" + k, v)])
            return path

        train_sample = synth("train", 1)
        held = {"shifted": synth("shifted", 2, shift), "same": synth("same", 2)}
        targets = {(d, t): zscore(read_nrrd(os.path.join(p, t + ".nrrd"))) for d, p in held.items()
                   for t in STRUCTURES}
        inputs = {d: read_nrrd(os.path.join(p, "signal.nrrd")) for d, p in held.items()}

        def train(name, *options, data=os.path.join(train_sample, "data.csv")):
            model = os.path.join(tmp, name + ".safetensors")
            start = time.perf_counter()
            repmode(exe, "train", "--config", CONFIG, "--data", data, "--out", model, "--steps", args.steps,
                    "--warmup", 20, "--batch", 4, "--lr", "2e-3", "--seed", args.seed, "--threads", args.threads,
                    *options)
            return model, time.perf_counter() - start

        def score(model, tta):
            """{domain: [r per structure]}, seconds of the shifted sample's prediction."""
            rs, seconds = {}, 0.0
            for d, path in held.items():
                out = os.path.join(tmp, "p.mha")
                start = time.perf_counter()
                # One window over the whole 16x128x128 sample (no blending seams; the network is convolutional).
                repmode(exe, "predict", "--model", model, "--task", ",".join(STRUCTURES), "--input",
                        os.path.join(path, "signal.nrrd"), "--output", out, "--patch", SIZE, "--threads",
                        args.threads, *(["--tta"] if tta else []))
                if d == "shifted":
                    seconds = time.perf_counter() - start
                p, _ = read_mha(out)
                rs[d] = [pearson(p[..., i], targets[d, t]) for i, t in enumerate(STRUCTURES)]
            return rs, seconds

        rows = []  # (name, training seconds, prediction seconds, {domain: rs})
        today, s_today = train("today", "--augment", "official")
        rows.append(("today (flips)", s_today) + score(today, False)[::-1])
        intensity, s = train("intensity", "--augment", *augment)
        rows.append(("+ intensity (%s)" % " ".join(augment), s) + score(intensity, False)[::-1])
        ema, s = train("ema", "--augment", "official", "--ema", args.ema)
        rows.append(("+ EMA %g" % args.ema, s) + score(ema, False)[::-1])
        rows.append(("+ TTA (today's model)", s_today) + score(today, True)[::-1])
        full, s = train("all", "--augment", *augment, "--ema", args.ema)
        rows.append(("all (%s, EMA, TTA)" % augment[0], s) + score(full, True)[::-1])
        if args.fine_tune:
            other = synth("other", 3)
            base, s_base = train("pretrained", "--augment", "official", data=os.path.join(other, "data.csv"))
            tuned, s = train("fine-tuned", "--augment", "official", "--init", base)
            rows.append(("fine-tune (from seed 3)", s_base + s) + score(tuned, False)[::-1])
        # The ceiling: a model trained on a sample of the shifted domain itself (seed 3; flips, EMA, TTA: inside
        # its own domain it needs no intensity augmentation): how much of each structure the shifted imaging leaves
        # to be found at all, by this network in this many steps.
        inside = synth("inside", 3, shift)
        oracle, s_oracle = train("oracle", "--augment", "official", "--ema", args.ema,
                                 data=os.path.join(inside, "data.csv"))
        ceiling = (s_oracle,) + score(oracle, True)[::-1]
        reference = {d: [pearson(inputs[d], targets[d, t]) for t in STRUCTURES] for d in held}
    elapsed = time.perf_counter() - started

    print("repmode-bench-generalization: synth cells %s, trained on the sample of seed 1 (today's imaging); held "
          "out: seed 2 shifted (%s) and seed 2 same-domain; %d steps, batch 4, lr 2e-3, 20 warm-up steps, training "
          "seed %d, base 8, 3 levels, patch 16x32x32, %d threads"
          % (SIZE.replace(",", "x"), args.shift, args.steps, args.seed, args.threads))
    print("| recipe | training s | predict s (shifted) | " + " | ".join("r %s shifted" % t for t in STRUCTURES) +
          " | " + " | ".join("r %s same" % t for t in STRUCTURES) + " |")
    print("|---|---|---|" + "---|" * (2 * len(STRUCTURES)))

    def line(name, train_s, predict_s, rs):
        print("| %s | %s | %s | %s | %s |" % (name, train_s, predict_s, " | ".join("%.3f" % r for r in rs["shifted"]),
                                             " | ".join("%.3f" % r for r in rs["same"])))

    for name, train_s, predict_s, rs in rows:
        line(name, "%.0f" % train_s + (" (none extra)" if "TTA (today" in name else "") +
             (" (both runs)" if name.startswith("fine-tune") else ""), "%.1f" % predict_s, rs)
    line("reference: input as prediction", "-", "-", reference)
    line("reference: trained on the shifted domain (seed 3; flips, EMA, TTA)", "%.0f" % ceiling[0], "%.1f" % ceiling[1],
         ceiling[2])
    line("reference: a constant", "-", "-", {d: [0.0] * len(STRUCTURES) for d in held})
    gains = {d: [a - b for a, b in zip(rows[4][3][d], rows[0][3][d])] for d in held}
    print("| gain: all - today | | | %s | %s |" % (" | ".join("%+.3f" % g for g in gains["shifted"]),
                                                    " | ".join("%+.3f" % g for g in gains["same"])))
    room = [c - b for c, b in zip(ceiling[2]["shifted"], rows[0][3]["shifted"])]
    print("| room: shifted-domain model - today | | | %s | |" % " | ".join("%+.3f" % g for g in room))
    short = [t for t, g in zip(STRUCTURES, gains["shifted"]) if g < GAIN]
    if short:
        print("all over today on the shifted sample: NOT every structure gains >= %.1f in r (short: %s; a model "
              "trained on the shifted domain itself gains %s over today)"
              % (GAIN, ", ".join(short), ", ".join("%+.3f" % room[STRUCTURES.index(t)] for t in short)))
    else:
        print("all over today on the shifted sample: every structure gains >= %.1f in r" % GAIN)
    print("whole benchmark: %.0f s" % elapsed)


if __name__ == "__main__":
    main()
