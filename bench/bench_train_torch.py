"""The PyTorch side of repmode-bench-train: training steps of a repmode model file, timed in PyTorch.

    /usr/bin/python3 bench/bench_train_torch.py MODEL TASKS D H W THREADS [--input X.f32] [--target T.f32]

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

One warm-up step (step 1), then one timed step per "run" from the benchmark, which drives this script over its
standard input and output (bench_torch_common.serve); the reply gives the step's seconds, then those of the
forward, loss, backward and optimizer. --input and --target read x and the target, (N, in, D, H, W) and
(N, out, D, H, W), as raw little-endian float32 (else fixed random ones).

At "done", beside bench_torch_common.serve's lines:
    loss1        the loss of step 1 (the file's weights)
    loss2        the loss of step 2 (after one AdamW update)
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import bench_torch_common as common  # noqa: E402  (exits with status 3 without PyTorch)
from bench_torch_common import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LR, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.999), 1e-8, 0.01  # rm_optim_adamw_default()


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


def main():
    a = common.parse_args(__doc__, "comma-separated task indices, one per sample",
                          [("--target", "raw float32 target (N, out, D, H, W)")])
    net, cfg, task_names = common.load_net(a.model)
    if cfg.get("dropout", 0):
        raise ValueError("%s: dropout %s; the benchmark compares networks without dropout" % (a.model, cfg["dropout"]))
    net.train()
    tasks = [int(t) for t in a.task.split(",")]
    if any(t < 0 or t >= len(task_names) for t in tasks):
        raise ValueError("task indices %s outside 0..%d" % (a.task, len(task_names) - 1))
    task_ids = torch.tensor(tasks, dtype=torch.long)
    n = len(tasks)
    x = common.read_or_random(a.input, (n, cfg["in_channels"]) + tuple(a.dims), 1)
    target = common.read_or_random(a.target, (n, cfg["out_channels"]) + tuple(a.dims), 2)

    named = list(net.named_parameters())
    groups = [{"params": [p for k, p in named if decays(k)], "weight_decay": WEIGHT_DECAY},
              {"params": [p for k, p in named if not decays(k)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    opt.zero_grad(set_to_none=True)
    losses = []

    def step():
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
        return t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3

    def finish():
        print("loss1 %.9g" % losses[0])
        print("loss2 %.9g" % losses[1])

    common.serve(step, finish)


if __name__ == "__main__":
    common.run(main)
