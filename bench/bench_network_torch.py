"""The PyTorch side of repmode-bench-network: the deploy form of a repmode model file, timed in PyTorch.

    /usr/bin/python3 bench/bench_network_torch.py MODEL TASK D H W THREADS [--input X.f32] [--output Y.f32]

MODEL is a training-form repmode model file (rm_model_save); TASK a task index or name. The network is built from
the file's configuration with the reference (tests/reference/repmode_torch.py), its weights loaded, and turned into
the re-parameterized, BatchNorm-folded DeployNet for the task: a plain U-Net of Conv3d / ConvTranspose3d with
biases, the same work as rm_deploy_forward. The forward of one (1, in, D, H, W) input runs under
torch.inference_mode() with THREADS intra-op threads: one warm-up call, then one timed call per "run" from the
benchmark, which drives this script over its standard input and output (bench_torch_common.serve).

--input reads the input as raw little-endian float32 (else a fixed random input); --output writes the output of
the last call the same way at "done", for the caller to compare with its own.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
import bench_torch_common as common  # noqa: E402  (exits with status 3 without PyTorch)
from bench_torch_common import rt, torch  # noqa: E402


def load_deploy_net(path, task):
    """The DeployNet of the file's task; the training form is dropped on return."""
    net, cfg, tasks = common.load_net(path)
    if task in tasks:
        task_index = tasks.index(task)
    elif task.isdigit() and int(task) < len(tasks):
        task_index = int(task)
    else:
        raise ValueError("task %s is neither one of %s nor an index 0..%d" % (task, ", ".join(tasks), len(tasks) - 1))
    return rt.DeployNet(net.eval(), task_index).eval(), cfg["in_channels"]


def main():
    a = common.parse_args(__doc__, "a task index or name", [("--output", "write the output here as raw float32")])
    deploy, in_channels = load_deploy_net(a.model, a.task)
    x = common.read_or_random(a.input, (1, in_channels) + tuple(a.dims), 1)
    last = []

    def call():
        t0 = time.perf_counter()
        last[:] = [deploy(x)]
        return (time.perf_counter() - t0,)

    def finish():
        if a.output:
            last[0].contiguous().numpy().astype("<f4").tofile(a.output)

    with torch.inference_mode():
        common.serve(call, finish)


if __name__ == "__main__":
    common.run(main)
