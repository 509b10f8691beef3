"""repmode.add_task (docs/network.md §5.5): the command line's add-task run from Python. The same inputs give the same
model file, byte for byte, as ``repmode add-task``; the old tasks predict the same arrays before and after; bad requests
raise repmode.Error naming the problem and write nothing."""
import json
import os
import struct

import numpy as np
import pytest

import repmode
from conftest import REPMODE, run

TINY = {"base_channels": 4, "levels": 2, "patch": [16, 32, 32],
        "tasks": [{"name": "nuclei"}, {"name": "membranes"}]}


@pytest.fixture(scope="module")
def base(cells, tmp_path_factory):
    """A model trained on two structures of the cell sample, and CSVs of the others."""
    volume, _, folder = cells
    d = tmp_path_factory.mktemp("add_task")
    rows = (folder / "data.csv").read_text().splitlines()
    subsets = {"old": ("nuclei", "membranes"), "mito": ("mitochondria",), "both": ("nuclei", "mitochondria")}
    for name, keep in subsets.items():
        lines = [rows[0]] + [",".join([os.path.relpath(folder / c, d) if c and i < 2 else c
                                       for i, c in enumerate(r.split(","))])
                             for r in rows[1:] if r.split(",")[2] in keep]
        (d / f"{name}.csv").write_text("\n".join(lines) + "\n")
    repmode.train(TINY, d / "old.csv", d / "old.safetensors", steps=15, batch=2, seed=1)
    return volume, d


def _metadata(data):
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n])["__metadata__"]


def test_the_command_line_model_and_the_old_tasks_unchanged(base, tmp_path):
    volume, d = base
    old = repmode.Model(d / "old.safetensors")
    before = {t: old.predict(volume, t) for t in ("nuclei", "membranes")}
    got = repmode.add_task(d / "old.safetensors", "mitochondria", d / "mito.csv", tmp_path / "py.safetensors",
                           steps=20, batch=2, lr=1e-2, seed=4, new_expert=True)
    assert got.steps == 20 and len(got.losses) == 20
    run([REPMODE, "add-task", "--model", d / "old.safetensors", "--task", "mitochondria", "--data", d / "mito.csv",
         "--out", tmp_path / "cli.safetensors", "--steps", "20", "--batch", "2", "--lr", "1e-2", "--seed", "4",
         "--new-expert"])
    cli = (tmp_path / "cli.safetensors").read_bytes()
    assert (tmp_path / "py.safetensors").read_bytes() == cli
    provenance = json.loads(_metadata(cli)["repmode.provenance"])
    assert provenance["added_task"] == "mitochondria" and provenance["base_model"] == "old.safetensors"
    new = repmode.Model(tmp_path / "py.safetensors")
    assert [t.name for t in new.tasks] == ["nuclei", "membranes", "mitochondria"]
    for task, want in before.items():
        assert np.array_equal(new.predict(volume, task), want), task


def test_bad_requests_raise_and_write_nothing(base, tmp_path):
    _, d = base
    out = tmp_path / "m.safetensors"
    cases = [
        (dict(task="nuclei", data=d / "mito.csv"), "has this task already (its tasks: nuclei, membranes)"),
        (dict(task="mitochondria", data=d / "both.csv"), "the model trains only 'mitochondria'"),
        (dict(task="mitochondria", data=d / "mito.csv", kind="ink"), "kind must be regression or binary"),
        (dict(task="mitochondria", data=d / "mito.csv", new_expert=True, expert_kernel=2), "expert_kernel must be"),
        (dict(task="mito chondria", data=d / "mito.csv"), "may only use letters"),
    ]
    for kwargs, message in cases:
        with pytest.raises(repmode.Error, match=message.replace("(", r"\(").replace(")", r"\)")):
            repmode.add_task(d / "old.safetensors", out=out, steps=2, **kwargs)
        assert not out.exists()
    with pytest.raises(repmode.Error, match="missing.safetensors"):
        repmode.add_task(d / "missing.safetensors", "mitochondria", d / "mito.csv", out, steps=2)
