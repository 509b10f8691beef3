"""repmode add-task (docs/cli.md §3.10, docs/network.md §5.5): a tiny model trained on two structures of a
`repmode synth cells` sample learns a third. The old tasks' predictions are compared byte for byte with those the
model made before (predict's output files, and the model's tensors of the old tasks against the file read with the
reference safetensors reader); the new task's loss must fall; and the errors on bad input leave no model file."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import repmode_safetensors as st  # noqa: E402
sys.path.insert(0, HERE)
from images import image_bytes  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))

CONFIG = {"base_channels": 4, "levels": 2, "activation": "frelu", "dropout": 0.1, "patch": [16, 32, 32],
          "tasks": [{"name": "nuclei", "kind": "regression"}, {"name": "membranes", "kind": "regression"}]}


def run(*args):
    return subprocess.run([REPMODE, *map(str, args)], capture_output=True, text=True, timeout=300)


def ok(*args):
    r = run(*args)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A 16x32x32 cell field, a model trained on nuclei and membranes, and a CSV of its mitochondria."""
    d = tmp_path_factory.mktemp("add_task")
    ok("synth", "cells", "--out", d, "--size", "16,32,32", "--seed", 3)
    rows = (d / "data.csv").read_text().splitlines()
    (d / "old.csv").write_text("\n".join(r for r in rows if r.split(",")[-1] in ("task", "nuclei", "membranes")) + "\n")
    (d / "new.csv").write_text("\n".join(r for r in rows if r.split(",")[-1] in ("task", "mitochondria")) + "\n")
    (d / "config.json").write_text(json.dumps(CONFIG))
    ok("train", "--config", d / "config.json", "--data", d / "old.csv", "--out", d / "old.safetensors",
       "--steps", 15, "--batch", 2)
    for task in ("nuclei", "membranes"):
        ok("predict", "--model", d / "old.safetensors", "--task", task, "--input", d / "signal.nrrd",
           "--output", d / f"before_{task}.nrrd")
    return d


def add_task(base, out, *extra, steps=30):
    return run("add-task", "--model", base / "old.safetensors", "--task", "mitochondria", "--data", base / "new.csv",
               "--out", out, "--steps", steps, "--batch", 2, "--lr", "1e-2", *extra)


@pytest.mark.parametrize("extra", [(), ("--new-expert",), ("--new-expert", "--expert-kernel", 5)])
def test_old_tasks_predict_the_same_bytes_and_the_new_task_learns(base, tmp_path, extra):
    out = tmp_path / "new.safetensors"
    r = add_task(base, out, *extra)
    assert r.returncode == 0, r.stderr
    for task in ("nuclei", "membranes"):
        ok("predict", "--model", out, "--task", task, "--input", base / "signal.nrrd", "--output", tmp_path / "a.nrrd")
        assert image_bytes(tmp_path / "a.nrrd") == image_bytes(base / f"before_{task}.nrrd"), task

    (old, old_meta), (new, meta) = st.read(str(base / "old.safetensors")), st.read(str(out))
    assert [t["name"] for t in json.loads(meta["repmode.tasks"])] == ["nuclei", "membranes", "mitochondria"]
    provenance = json.loads(meta["repmode.provenance"])
    assert provenance["added_task"] == "mitochondria" and provenance["base_model"] == "old.safetensors"
    assert provenance["base_provenance"] == json.loads(old_meta["repmode.provenance"])
    kernel = extra[-1] if len(extra) == 3 else 3 if extra else 0
    config = json.loads(meta["repmode.config"])
    assert config.get("added_expert") == ({"kernel": kernel, "first_task": 2} if kernel else None)
    for name, value in old.items():
        if name.endswith("gate.weight"):
            # the old tasks' columns, and their rows of the five experts, as they were
            np.testing.assert_array_equal(new[name][:value.shape[0], :2], value, err_msg=name)
            assert np.any(new[name][:, 2] != 0), name  # the new task's column trained
        elif name.endswith("gate.bias"):
            np.testing.assert_array_equal(new[name][:value.shape[0]], value, err_msg=name)
        else:
            np.testing.assert_array_equal(new[name], value, err_msg=name)
    added = [n for n in new if n.endswith("expert_added_conv")]
    assert len(added) == (11 if kernel else 0)  # every MoDE layer of 2 levels: 4 + 2 + 4 + the final
    for n in added:
        assert new[n].shape[2:] == (kernel,) * 3
    info = ok("info", out).stdout
    assert ("added conv%d used from task 2 (mitochondria)" % kernel in info) == bool(kernel)


def test_the_new_task_learns_its_data(base, tmp_path):
    """Its training loss falls: the mean of the last ten steps well below that of the first ten (the learning test,
    tests/learning, holds a longer run to a Pearson r on a held-out sample)."""
    log = tmp_path / "log.jsonl"
    r = add_task(base, tmp_path / "m.safetensors", "--new-expert", "--log", log, steps=60)
    assert r.returncode == 0, r.stderr
    losses = [json.loads(line)["loss"] for line in log.read_text().splitlines()]
    assert len(losses) == 60
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10]), losses


def test_bad_requests_fail_with_a_message_and_no_model(base, tmp_path):
    out = tmp_path / "m.safetensors"
    cases = [
        (("add-task", "--model", base / "old.safetensors", "--task", "nuclei", "--data", base / "new.csv",
          "--out", out), "has this task already (its tasks: nuclei, membranes)"),
        (("add-task", "--model", base / "old.safetensors", "--task", "mitochondria", "--data", base / "old.csv",
          "--out", out), "the model trains only 'mitochondria'"),
        (("add-task", "--model", base / "old.safetensors", "--task", "mitochondria", "--data", base / "new.csv",
          "--out", out, "--new-expert", "--expert-kernel", 2), "--expert-kernel must be 1, 3 or 5"),
        (("add-task", "--model", base / "old.safetensors", "--task", "mitochondria", "--data", base / "new.csv",
          "--out", out, "--expert-kernel", 3), "--expert-kernel needs --new-expert"),
        (("add-task", "--model", base / "old.safetensors", "--task", "a b", "--data", base / "new.csv",
          "--out", out), "may only use letters"),
        (("add-task", "--model", base / "missing.safetensors", "--task", "mitochondria", "--data", base / "new.csv",
          "--out", out), "missing.safetensors"),
        (("add-task", "--model", base / "old.safetensors", "--task", "mitochondria", "--kind", "ink",
          "--data", base / "new.csv", "--out", out), "--kind must be regression or binary"),
    ]
    for args, message in cases:
        r = run(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert message in r.stderr, (args, r.stderr)
        assert not out.exists()
    deploy = tmp_path / "deploy.safetensors"
    ok("reparam", "--model", base / "old.safetensors", "--task", "nuclei", "--out", deploy)
    r = run("add-task", "--model", deploy, "--task", "mitochondria", "--data", base / "new.csv", "--out", out)
    assert r.returncode == 1 and "deploy" in r.stderr, r.stderr
    assert not out.exists()
