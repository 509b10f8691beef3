"""Tests of tools/repmode-convert (docs/cli.md §3.8). The executable under test is $REPMODE_CONVERT (ctest passes
build/bin/repmode-convert), else tools/repmode-convert of this source tree."""

import argparse
import collections
import contextlib
import hashlib
import importlib.machinery
import importlib.util
import io
import json
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import repmode_safetensors as st  # noqa: E402
import repmode_torch as rt  # noqa: E402

CONVERT = os.environ.get("REPMODE_CONVERT") or os.path.join(REPO, "tools", "repmode-convert")


def run_process(*args):
    """Run the executable in its own process (exit status, stdout, stderr as a user sees them)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([CONVERT] + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=300)


_module = None


def run(*args):
    """Run the same script file in this process (importing torch once instead of per call), through its
    main(argv); returns an object like subprocess.run's."""
    global _module
    if _module is None:
        loader = importlib.machinery.SourceFileLoader("repmode_convert_under_test", CONVERT)
        spec = importlib.util.spec_from_loader(loader.name, loader)
        _module = importlib.util.module_from_spec(spec)
        loader.exec_module(_module)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = _module.main([str(a) for a in args])
        except SystemExit as e:
            code = e.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def small_net(activation="relu", n_tasks=3, base=2, levels=2, seed=0):
    torch.manual_seed(seed)
    net = rt.RepModeNet(base, levels, n_tasks, activation=activation)
    rt.randomize_batchnorm(net, torch.Generator().manual_seed(seed))
    return net


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_output(out, sd, ckpt, config, tasks):
    tensors, meta = st.read(str(out))
    assert list(tensors) == list(sd)
    for name, t in sd.items():
        got = tensors[name]
        assert got.shape == tuple(t.shape), name
        if name.endswith("num_batches_tracked"):
            assert got.dtype == np.int64 and got.shape == () and int(got) == int(t), name
        else:
            assert got.dtype == np.float32 and np.array_equal(got, t.numpy()), name
    assert meta["repmode.format"] == "1" and meta["repmode.form"] == "training"
    assert meta["repmode.config"] == json.dumps(config, separators=(",", ":"))
    assert json.loads(meta["repmode.tasks"]) == tasks
    assert json.loads(meta["repmode.normalization"]) == {"method": "zscore"}
    assert json.loads(meta["repmode.provenance"]) == {
        "software": "repmode-convert", "source": os.path.basename(str(ckpt)), "sha256": sha256(ckpt)}
    assert list(meta) == ["repmode.format", "repmode.form", "repmode.config", "repmode.tasks",
                          "repmode.normalization", "repmode.provenance"]


def no_leftovers(folder, keep):
    assert sorted(p.name for p in folder.iterdir()) == sorted(keep)


# ---------------------------------------------------------------------------------------------------------------

def test_help():
    r = run_process("--help")
    assert r.returncode == 0 and "CHECKPOINT" in r.stdout and "--tasks" in r.stdout


def test_official_format_with_nn_state(tmp_path):
    net = small_net()
    sd = net.state_dict()
    ckpt = tmp_path / "best.pth"
    torch.save({"nn_module": "repmode", "opts": argparse.Namespace(lr=1e-4, seed=0), "nn_state": sd,
                "optimizer_state": {}, "count_iter": 10, "count_epoch": 1}, str(ckpt))
    out = tmp_path / "m.safetensors"
    r = run_process(ckpt, out, "--tasks", "dna,membrane,ink", "--kinds", "regression,regression,binary")
    assert r.returncode == 0, r.stderr
    config = rt.model_config(2, 2, 1, 1, "relu", (32, 128, 128))
    tasks = [{"name": "dna", "kind": "regression"}, {"name": "membrane", "kind": "regression"},
             {"name": "ink", "kind": "binary"}]
    check_output(out, sd, ckpt, config, tasks)
    no_leftovers(tmp_path, ["best.pth", "m.safetensors"])


def test_bare_state_dict_frelu(tmp_path):
    net = small_net("frelu", n_tasks=2, base=3, levels=1)
    sd = net.state_dict()
    ckpt = tmp_path / "bare.pt"
    torch.save(sd, str(ckpt))
    out = tmp_path / "m.safetensors"
    r = run(ckpt, out, "--tasks", "a,b")
    assert r.returncode == 0, r.stderr
    check_output(out, sd, ckpt, rt.model_config(3, 1, 1, 1, "frelu", (32, 128, 128)),
                 [{"name": "a", "kind": "regression"}, {"name": "b", "kind": "regression"}])


def test_default_official_tasks_and_reordered_dict(tmp_path):
    net = small_net(n_tasks=12, base=1, levels=1)
    sd = net.state_dict()
    shuffled = collections.OrderedDict(reversed(list(sd.items())))
    ckpt = tmp_path / "c.pth"
    torch.save({"nn_state": shuffled}, str(ckpt))
    out = tmp_path / "m.safetensors"
    r = run(ckpt, out)
    assert r.returncode == 0, r.stderr
    check_output(out, sd, ckpt, rt.model_config(1, 1, 1, 1, "relu", (32, 128, 128)),
                 [{"name": n, "kind": "regression"} for n in rt.OFFICIAL_TASKS])


def test_non_default_task_count_needs_tasks(tmp_path):
    ckpt = tmp_path / "c.pth"
    torch.save(small_net(n_tasks=3).state_dict(), str(ckpt))
    out = tmp_path / "m.safetensors"
    r = run(ckpt, out)
    assert r.returncode == 1 and r.stderr.startswith("repmode-convert: ") and "3" in r.stderr
    assert not out.exists()


def test_wrong_task_count(tmp_path):
    ckpt = tmp_path / "c.pth"
    torch.save({"nn_state": small_net(n_tasks=3).state_dict()}, str(ckpt))
    out = tmp_path / "m.safetensors"
    r = run_process(ckpt, out, "--tasks", "a,b")
    assert r.returncode == 1
    assert r.stderr.startswith("repmode-convert: ") and "2" in r.stderr and "3" in r.stderr
    no_leftovers(tmp_path, ["c.pth"])


def test_bad_kinds(tmp_path):
    ckpt = tmp_path / "c.pth"
    torch.save(small_net(n_tasks=3).state_dict(), str(ckpt))
    for kinds in ("regression,binary", "regression,binary,nonsense"):
        r = run(ckpt, tmp_path / "m.safetensors", "--tasks", "a,b,c", "--kinds", kinds)
        assert r.returncode == 1 and r.stderr.startswith("repmode-convert: ")
    no_leftovers(tmp_path, ["c.pth"])


def test_missing_file(tmp_path):
    out = tmp_path / "m.safetensors"
    r = run_process(tmp_path / "nope.pth", out)
    assert r.returncode == 1 and r.stderr.startswith("repmode-convert: ") and "nope.pth" in r.stderr
    no_leftovers(tmp_path, [])


def test_bad_usage():
    r = run_process()
    assert r.returncode == 1 and "repmode-convert: " in r.stderr
    r = run("a", "b", "--no-such-option")
    assert r.returncode == 1


def test_truncated_and_garbage_files(tmp_path):
    ckpt = tmp_path / "c.pth"
    torch.save({"nn_state": small_net().state_dict()}, str(ckpt))
    data = ckpt.read_bytes()
    garbage = np.random.RandomState(0).randint(0, 256, 3000, dtype=np.uint8).tobytes()
    cases = {"truncated.pth": data[: len(data) // 2], "garbage.pth": garbage,
             "empty.pth": b"", "text.pth": b"not a checkpoint\n"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        out = tmp_path / ("out-" + name + ".safetensors")
        r = run(tmp_path / name, out)
        assert r.returncode == 1, (name, r.returncode, r.stderr)
        assert r.stderr.startswith("repmode-convert: ") and "Traceback" not in r.stderr, (name, r.stderr)
        assert not out.exists()
    no_leftovers(tmp_path, ["c.pth"] + list(cases))


def test_not_a_state_dict(tmp_path):
    for i, obj in enumerate(({"nn_state": [1, 2]}, [torch.ones(2)], {"a": 1}, {})):
        ckpt = tmp_path / ("x%d.pth" % i)
        torch.save(obj, str(ckpt))
        r = run(ckpt, tmp_path / "m.safetensors")
        assert r.returncode == 1 and r.stderr.startswith("repmode-convert: "), (obj, r.stderr)
    assert not (tmp_path / "m.safetensors").exists()


def test_unknown_missing_misshaped_tensors(tmp_path):
    sd = small_net().state_dict()
    extra = collections.OrderedDict(sd)
    extra["encoder_block1.conv_more.conv1.expert_conv7x7_conv"] = torch.zeros(2, 1, 7, 7, 7)
    missing = collections.OrderedDict(sd)
    del missing["bottle_block.conv2.gate.bias"]
    shaped = collections.OrderedDict(sd)
    shaped["decoder_block1.convt.0.weight"] = torch.zeros(4, 2, 3, 3, 3)
    pool = collections.OrderedDict(sd)
    pool["conv_out.expert_avg3x3_pool"] = torch.ones(3, 3, 3)
    dtype = collections.OrderedDict(sd)
    dtype["conv_out.gate.bias"] = torch.zeros(5, dtype=torch.int64)
    for label, bad, word in (("extra", extra, "expert_conv7x7_conv"), ("missing", missing, "bottle_block.conv2.gate.bias"),
                             ("shape", shaped, "decoder_block1.convt.0.weight"),
                             ("pool", pool, "conv_out.expert_avg3x3_pool"), ("dtype", dtype, "conv_out.gate.bias")):
        ckpt = tmp_path / (label + ".pth")
        torch.save({"nn_state": bad}, str(ckpt))
        out = tmp_path / (label + ".safetensors")
        r = run(ckpt, out, "--tasks", "a,b,c")
        assert r.returncode == 1, (label, r.stderr)
        assert r.stderr.startswith("repmode-convert: ") and word in r.stderr, (label, r.stderr)
        assert not out.exists()


def test_existing_output_replaced_and_failure_keeps_it(tmp_path):
    ckpt = tmp_path / "c.pth"
    torch.save(small_net().state_dict(), str(ckpt))
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"old")
    assert run(ckpt, out, "--tasks", "a,b,c").returncode == 0
    new = out.read_bytes()
    assert new != b"old"
    assert run(ckpt, out, "--tasks", "a,b").returncode == 1
    assert out.read_bytes() == new
    no_leftovers(tmp_path, ["c.pth", "m.safetensors"])


def test_output_folder_missing(tmp_path):
    ckpt = tmp_path / "c.pth"
    torch.save(small_net().state_dict(), str(ckpt))
    r = run(ckpt, tmp_path / "no" / "m.safetensors", "--tasks", "a,b,c")
    assert r.returncode == 1 and r.stderr.startswith("repmode-convert: ")
