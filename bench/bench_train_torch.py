"""The PyTorch side of repmode-bench-train: training steps of a repmode model file, timed in PyTorch.

    /usr/bin/python3 bench/bench_train_torch.py MODEL TASKS D H W THREADS REPS [--input X.f32] [--target T.f32]

MODEL is a training-form repmode model file (rm_model_save); TASKS the comma-separated task indices of the batch's
samples (e.g. 0,1: batch 2). The network is built from the file's configuration with the reference
(tests/reference/repmode_torch.py: every MoDE layer merges each sample's kernel and convolves it, BatchNorm
statistics shared over the mixed-task batch) and its weights loaded. A training step, as repmode-bench-train's C
side does it, in float32 with THREADS intra-op threads and the network in train mode:

    forward     y = net(x, tasks)
    loss        mse_loss(y, target), the mean over every element
    backward    loss.backward()
    optimizer   torch.optim.AdamW (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01 on convolution
                weights only: not on BatchNorm weights and biases, biases or gates, as rm_optim_decays), then
                zero_grad(set_to_none=True)

One warm-up step (step 1), then REPS timed steps. --input and --target read x and the target, (N, in, D, H, W)
and (N, out, D, H, W), as raw little-endian float32 (else fixed random ones).

Prints to stdout, one `key value` per line:
    torch        the PyTorch version
    seconds      median seconds of the REPS timed steps
    first        seconds of the warm-up step
    forward, loss, backward, optimizer    median seconds of each phase over the timed steps
    loss1        the loss of step 1 (the file's weights)
    loss2        the loss of step 2 (after one AdamW update)
    peak_kib     VmHWM of this process during the steps, KiB
    growth_kib   that peak minus VmRSS before the first step, KiB
Exits with status 3 (and a message on stderr) when PyTorch cannot be imported, 1 on other errors.
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # the caller prints the C figures only
    print("bench_train_torch: PyTorch unavailable (%s)" % e, file=sys.stderr)
    sys.exit(3)

import repmode_safetensors as st  # noqa: E402
import repmode_torch as rt  # noqa: E402

LR, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.999), 1e-8, 0.01  # rm_optim_adamw_default()


def proc_status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def reset_peak():
    """Resets VmHWM to the current VmRSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def decays(name):
    """rm_optim_decays: weight decay on convolution weights only, not on BatchNorm weights and biases
    (subsequent_layer.0.*, conv_down.1.*, convt.1.*), any bias, or gates."""
    parts = name.split(".")
    if "gate" in parts or parts[-1] == "bias":
        return False
    for prev, c in zip(parts, parts[1:]):
        if (prev == "subsequent_layer" and c == "0") or (prev in ("conv_down", "convt") and c == "1"):
            return False
    return True


def load_net(path):
    tensors, meta = st.read(path)
    if not meta or "repmode.config" not in meta or "repmode.tasks" not in meta:
        raise ValueError("%s: not a repmode model file (no repmode.config or repmode.tasks metadata)" % path)
    if meta.get("repmode.form", "training") != "training":
        raise ValueError("%s: a %s-form file; this script reads the training form" % (path, meta["repmode.form"]))
    cfg = json.loads(meta["repmode.config"])
    n_tasks = len(json.loads(meta["repmode.tasks"]))
    if cfg.get("dropout", 0):
        raise ValueError("%s: dropout %s; the benchmark compares networks without dropout" % (path, cfg["dropout"]))
    net = rt.RepModeNet(cfg["base_channels"], cfg["levels"], n_tasks, cfg["in_channels"], cfg["out_channels"],
                        cfg["activation"], device="meta")
    net = net.to_empty(device="cpu")
    net.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    del tensors
    return net.train(), cfg, n_tasks


def read_or_random(path, shape, seed):
    if path:
        data = np.fromfile(path, dtype="<f4")
        if data.size != int(np.prod(shape)):
            raise ValueError("%s: %d floats, expected %s" % (path, data.size, shape))
        return torch.from_numpy(data.reshape(shape).astype(np.float32))
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("tasks", help="comma-separated task indices, one per sample")
    ap.add_argument("dims", nargs=3, type=int, metavar="D H W")
    ap.add_argument("threads", type=int)
    ap.add_argument("reps", type=int)
    ap.add_argument("--input", help="raw float32 input (N, in, D, H, W)")
    ap.add_argument("--target", help="raw float32 target (N, out, D, H, W)")
    a = ap.parse_args()
    if a.threads < 1 or a.reps < 1 or min(a.dims) < 1:
        ap.error("threads, repetitions and sizes must be >= 1")

    torch.set_num_threads(a.threads)
    net, cfg, n_tasks = load_net(a.model)
    tasks = [int(t) for t in a.tasks.split(",")]
    if any(t < 0 or t >= n_tasks for t in tasks):
        raise ValueError("task indices %s outside 0..%d" % (a.tasks, n_tasks - 1))
    task_ids = torch.tensor(tasks, dtype=torch.long)
    n = len(tasks)
    x = read_or_random(a.input, (n, cfg["in_channels"]) + tuple(a.dims), 1)
    target = read_or_random(a.target, (n, cfg["out_channels"]) + tuple(a.dims), 2)

    named = list(net.named_parameters())
    groups = [{"params": [p for k, p in named if decays(k)], "weight_decay": WEIGHT_DECAY},
              {"params": [p for k, p in named if not decays(k)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    opt.zero_grad(set_to_none=True)

    rss_before = proc_status_kib("VmRSS")
    reset_peak()
    steps, phases, losses = [], [], []
    for r in range(a.reps + 1):
        t0 = time.perf_counter()
        y = net(x, task_ids)
        t1 = time.perf_counter()
        loss = F.mse_loss(y, target)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        losses.append(loss.item())
        steps.append(t4 - t0)
        phases.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3))
        del y, loss
    peak = proc_status_kib("VmHWM")

    print("torch %s" % torch.__version__)
    print("seconds %.6f" % statistics.median(steps[1:]))
    print("first %.6f" % steps[0])
    for i, key in enumerate(("forward", "loss", "backward", "optimizer")):
        print("%s %.6f" % (key, statistics.median(p[i] for p in phases[1:])))
    print("loss1 %.9g" % losses[0])
    print("loss2 %.9g" % losses[1])
    print("peak_kib %d" % peak)
    print("growth_kib %d" % (peak - rss_before))


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, KeyError, st.SafetensorsError) as e:
        print("bench_train_torch: %s" % e, file=sys.stderr)
        sys.exit(1)
