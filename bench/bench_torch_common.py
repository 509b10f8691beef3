"""What the PyTorch sides of the benchmarks share (bench_network_torch.py, bench_train_torch.py): the command line,
the model file, raw float files, and the line protocol with the C benchmark that drives them (bench_common.h).

Importing it exits with status 3 (and a message on stderr) when PyTorch cannot be imported: the benchmark then
prints its C figures only.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
SCRIPT = os.path.splitext(os.path.basename(sys.argv[0]))[0]

try:
    import numpy as np
    import torch
except ImportError as e:
    print("%s: PyTorch unavailable (%s)" % (SCRIPT, e), file=sys.stderr)
    sys.exit(3)

import repmode_safetensors as st  # noqa: E402
import repmode_torch as rt  # noqa: E402


def parse_args(doc, task_help, options):
    """MODEL TASK D H W THREADS [--input X.f32] and the script's own options ((flag, help) pairs); sets PyTorch's
    intra-op threads."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("task", help=task_help)
    ap.add_argument("dims", nargs=3, type=int, metavar="D H W")
    ap.add_argument("threads", type=int)
    ap.add_argument("--input", help="raw float32 input (N, in, D, H, W)")
    for flag, text in options:
        ap.add_argument(flag, help=text)
    a = ap.parse_args()
    if a.threads < 1 or min(a.dims) < 1:
        ap.error("threads and sizes must be >= 1")
    torch.set_num_threads(a.threads)
    return a


def load_net(path):
    """The training-form network of a repmode model file (rm_model_save), its configuration and its task names."""
    tensors, meta = st.read(path)
    if not meta or "repmode.config" not in meta or "repmode.tasks" not in meta:
        raise ValueError("%s: not a repmode model file (no repmode.config or repmode.tasks metadata)" % path)
    if meta.get("repmode.form", "training") != "training":
        raise ValueError("%s: a %s-form file; this script reads the training form" % (path, meta["repmode.form"]))
    cfg = json.loads(meta["repmode.config"])
    tasks = [t["name"] for t in json.loads(meta["repmode.tasks"])]
    # Built on the meta device and then given empty storage: no time spent on an initialization that the loaded
    # weights overwrite anyway.
    net = rt.RepModeNet(cfg["base_channels"], cfg["levels"], len(tasks), cfg["in_channels"], cfg["out_channels"],
                        cfg["activation"], device="meta")
    net = net.to_empty(device="cpu")
    net.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    return net, cfg, tasks


def read_or_random(path, shape, seed):
    """Raw little-endian float32 of the given shape from path; without a path, a fixed random tensor in [-1, 1)."""
    if path:
        data = np.fromfile(path, dtype="<f4")
        if data.size != int(np.prod(shape)):
            raise ValueError("%s: %d floats, expected %s" % (path, data.size, shape))
        return torch.from_numpy(data.reshape(shape).astype(np.float32))
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


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


def serve(call, finish):
    """The protocol with the benchmark. call() makes one call and returns its seconds: the whole call first, then
    those of its parts if any. It is made once as the warm-up, then "ready <PyTorch version>" goes out; each "run"
    makes one timed call and replies with its seconds on one line; at "done" the script prints, one `key value` per
    line:
        first        seconds of the warm-up call
        peak_kib     VmHWM of this process over the calls (reset before the warm-up), KiB
        growth_kib   that peak minus VmRSS before the warm-up, KiB
    and then what finish() prints (after the peak is taken, so that what it does is not in it)."""
    rss_before = proc_status_kib("VmRSS")
    reset_peak()
    first = call()[0]
    print("ready %s" % torch.__version__, flush=True)
    while True:
        command = sys.stdin.readline()
        if not command:
            sys.exit(1)  # the benchmark has gone, and said why
        if command == "done\n":
            break
        if command != "run\n":
            raise ValueError("unknown command %r" % command)
        print(" ".join("%.9f" % t for t in call()), flush=True)
    peak = proc_status_kib("VmHWM")
    print("first %.9f" % first)
    print("peak_kib %d" % peak)
    print("growth_kib %d" % (peak - rss_before))
    finish()
    sys.stdout.flush()


def run(main):
    """main() with the errors a bad file or argument gives turned into a message and exit status 1."""
    try:
        main()
    except (OSError, ValueError, KeyError, st.SafetensorsError) as e:
        print("%s: %s" % (SCRIPT, e), file=sys.stderr)
        sys.exit(1)
