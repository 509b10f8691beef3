"""The PyTorch side of repmode-bench-network: the deploy form of a repmode model file, timed in PyTorch.

    /usr/bin/python3 bench/bench_network_torch.py MODEL TASK D H W THREADS REPS [--input X.f32] [--output Y.f32]

MODEL is a training-form repmode model file (rm_model_save); TASK a task index or name. The network is built from
the file's configuration with the reference (tests/reference/repmode_torch.py), its weights loaded, and turned into
the re-parameterized, BatchNorm-folded DeployNet for the task: a plain U-Net of Conv3d / ConvTranspose3d with
biases, the same work as rm_deploy_forward. The forward of one (1, in, D, H, W) input runs under
torch.inference_mode() with THREADS intra-op threads: one warm-up call, then REPS timed calls.

--input reads the input as raw little-endian float32 (else a fixed random input); --output writes the output of
the last call the same way, for the caller to compare with its own.

Prints to stdout, one `key value` per line:
    torch        the PyTorch version
    seconds      median seconds of the REPS timed calls
    first        seconds of the warm-up call
    peak_kib     VmHWM of this process during the calls (after the training form is dropped), KiB
    growth_kib   that peak minus VmRSS before the first call, KiB
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
except ImportError as e:  # the caller prints the C figures only
    print("bench_network_torch: PyTorch unavailable (%s)" % e, file=sys.stderr)
    sys.exit(3)

import repmode_safetensors as st  # noqa: E402
import repmode_torch as rt  # noqa: E402


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


def load_deploy_net(path, task):
    tensors, meta = st.read(path)
    if not meta or "repmode.config" not in meta or "repmode.tasks" not in meta:
        raise ValueError("%s: not a repmode model file (no repmode.config or repmode.tasks metadata)" % path)
    if meta.get("repmode.form", "training") != "training":
        raise ValueError("%s: a %s-form file; this script reads the training form" % (path, meta["repmode.form"]))
    cfg = json.loads(meta["repmode.config"])
    tasks = [t["name"] for t in json.loads(meta["repmode.tasks"])]
    if task in tasks:
        task_index = tasks.index(task)
    elif task.isdigit() and int(task) < len(tasks):
        task_index = int(task)
    else:
        raise ValueError("task %s is neither one of %s nor an index 0..%d" % (task, ", ".join(tasks), len(tasks) - 1))
    # Built on the meta device and then given empty storage: no time spent on an initialization that the loaded
    # weights overwrite anyway.
    net = rt.RepModeNet(cfg["base_channels"], cfg["levels"], len(tasks), cfg["in_channels"], cfg["out_channels"],
                        cfg["activation"], device="meta")
    net = net.to_empty(device="cpu")
    net.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    del tensors
    net.eval()
    deploy = rt.DeployNet(net, task_index).eval()
    return deploy, cfg["in_channels"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("task")
    ap.add_argument("dims", nargs=3, type=int, metavar="D H W")
    ap.add_argument("threads", type=int)
    ap.add_argument("reps", type=int)
    ap.add_argument("--input", help="raw float32 input (1, in, D, H, W)")
    ap.add_argument("--output", help="write the output here as raw float32")
    a = ap.parse_args()
    if a.threads < 1 or a.reps < 1 or min(a.dims) < 1:
        ap.error("threads, repetitions and sizes must be >= 1")

    torch.set_num_threads(a.threads)
    deploy, in_channels = load_deploy_net(a.model, a.task)
    shape = (1, in_channels) + tuple(a.dims)
    if a.input:
        data = np.fromfile(a.input, dtype="<f4")
        if data.size != int(np.prod(shape)):
            raise ValueError("%s: %d floats, expected %s" % (a.input, data.size, shape))
        x = torch.from_numpy(data.reshape(shape).astype(np.float32))
    else:
        x = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1

    rss_before = proc_status_kib("VmRSS")
    reset_peak()
    times = []
    with torch.inference_mode():
        for r in range(a.reps + 1):
            t0 = time.perf_counter()
            y = deploy(x)
            times.append(time.perf_counter() - t0)
    peak = proc_status_kib("VmHWM")
    if a.output:
        y.contiguous().numpy().astype("<f4").tofile(a.output)

    print("torch %s" % torch.__version__)
    print("seconds %.6f" % statistics.median(times[1:]))
    print("first %.6f" % times[0])
    print("peak_kib %d" % peak)
    print("growth_kib %d" % (peak - rss_before))


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, KeyError, st.SafetensorsError) as e:
        print("bench_network_torch: %s" % e, file=sys.stderr)
        sys.exit(1)
