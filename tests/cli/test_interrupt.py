"""SIGINT and SIGTERM stop a run cleanly (docs/cli.md §1.5): predict cancels the core at its next window and removes
its temporary file, exit 128 + the signal, no output; train stops between steps and its last checkpoint stays
loadable; and the temporary file a SIGKILL leaves behind is removed by the next run that writes the same output."""
import os
import signal
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from images import write_mha  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))
CELLS = os.path.join(HERE, "..", "..", "examples", "models", "cells.safetensors")


def start_predict(tmp_path, output):
    source = tmp_path / "in.mha"
    if not source.exists():  # 32 x 128 x 128 through the cells model on one thread: a few seconds
        write_mha(str(source), np.random.default_rng(0).normal(size=(32, 128, 128)).astype(np.float32))
    return subprocess.Popen([REPMODE, "predict", "--model", CELLS, "--task", "nuclei", "--input", str(source),
                             "--output", str(output), "--threads", "1", "--divisions", "8"],
                            stderr=subprocess.PIPE, text=True)


def wait_for_line(process, words):
    lines = []
    for line in process.stderr:
        lines.append(line)
        if words in line:
            return lines
    raise AssertionError("never printed %r: %s" % (words, "".join(lines)))


def test_sigint_and_sigterm_stop_predict_and_leave_nothing(tmp_path):
    for signo in (signal.SIGINT, signal.SIGTERM):
        out = tmp_path / "out.mha"
        p = start_predict(tmp_path, out)
        wait_for_line(p, "predicting")
        time.sleep(0.3)
        p.send_signal(signo)
        rest = p.stderr.read()
        assert p.wait(timeout=60) == 128 + signo, rest
        name = "SIGINT" if signo == signal.SIGINT else "SIGTERM"
        assert "interrupted by %s: stopped, and no output was left behind" % name in rest, rest
        assert sorted(q.name for q in tmp_path.iterdir()) == ["in.mha"]


def test_the_temporary_file_of_a_killed_run_is_removed_by_the_next(tmp_path):
    out = tmp_path / "out.mha"
    p = start_predict(tmp_path, out)
    wait_for_line(p, "predicting")
    temp = tmp_path / (".out.tmp-%d.mha" % p.pid)
    deadline = time.time() + 60
    while not temp.exists() and time.time() < deadline:  # the streamed writer has begun
        time.sleep(0.05)
    assert temp.exists()
    p.kill()
    p.wait(timeout=60)
    p.stderr.close()
    live = tmp_path / (".out.tmp-%d.mha" % os.getpid())  # a live process's file is not touched
    live.write_bytes(b"in use")
    small = tmp_path / "small.mha"
    write_mha(str(small), np.random.default_rng(1).normal(size=(16, 32, 32)).astype(np.float32))
    r = subprocess.run([REPMODE, "predict", "--model", CELLS, "--task", "nuclei", "--input", str(small), "--output",
                        str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted([live.name, "in.mha", "out.mha", "small.mha"])


def test_sigint_stops_training_between_steps_and_the_checkpoint_loads(tmp_path):
    r = subprocess.run([REPMODE, "synth", "cells", "--out", str(tmp_path / "cells"), "--size", "16,32,32"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    config = tmp_path / "config.json"
    config.write_text('{"base_channels": 4, "levels": 2, "patch": [16, 32, 32], '
                      '"tasks": [{"name": "nuclei", "kind": "regression"}]}')
    rows = [l for l in (tmp_path / "cells" / "data.csv").read_text().splitlines()
            if l.split(",")[-1] in ("task", "nuclei")]
    (tmp_path / "cells" / "train.csv").write_text("\n".join(rows) + "\n")
    out, ckpt = tmp_path / "m.safetensors", tmp_path / "m.ckpt"
    p = subprocess.Popen([REPMODE, "train", "--config", str(config), "--data", str(tmp_path / "cells" / "train.csv"),
                          "--out", str(out), "--checkpoint", str(ckpt), "--checkpoint-every", "5", "--steps", "100000",
                          "--threads", "1"], stderr=subprocess.PIPE, text=True)
    wait_for_line(p, "step 20/")
    p.send_signal(signal.SIGINT)
    rest = p.stderr.read()
    assert p.wait(timeout=60) == 130, rest
    assert "interrupted by SIGINT" in rest, rest
    assert not out.exists()
    r = subprocess.run([REPMODE, "info", "--json", str(ckpt)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not [q.name for q in tmp_path.iterdir() if ".tmp-" in q.name]
