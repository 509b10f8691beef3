"""repmode info and reparam (docs/cli.md §3.1-§3.2): their outputs checked against the PyTorch reference and
the model files themselves, and their errors (message on stderr, exit code 1, no output file)."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import repmode_safetensors as st  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))
CONVERT = os.environ.get("REPMODE_CONVERT", os.path.join(HERE, "..", "..", "build", "bin", "repmode-convert"))
FIXTURES = os.path.join(HERE, "..", "fixtures")
SMALL = os.path.join(FIXTURES, "parity_small.model.safetensors")
FRELU = os.path.join(FIXTURES, "parity_frelu.model.safetensors")
NOT_TRAINABLE = ("running_mean", "running_var", "num_batches_tracked", "_pool")


def run(*args):
    return subprocess.run([REPMODE, *args], capture_output=True, text=True, timeout=300)


def trainable_count(path):
    tensors, _ = st.read(path)
    return sum(int(t.size) for name, t in tensors.items() if not name.endswith(NOT_TRAINABLE))


@pytest.mark.parametrize("model", [SMALL, FRELU])
def test_info_json_reports_the_files_configuration_tasks_and_trainable_count(model):
    r = run("info", "--json", model)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    _, metadata = st.read(model)
    assert info["form"] == "training"
    assert info["config"] == json.loads(metadata["repmode.config"])
    assert info["tasks"] == json.loads(metadata["repmode.tasks"])
    assert info["parameters"] == trainable_count(model)


def test_info_text_names_every_task_and_the_form():
    r = run("info", SMALL)
    assert r.returncode == 0, r.stderr
    for word in ("training", "dna (regression)", "membrane (regression)", "ink (binary)", str(trainable_count(SMALL))):
        assert word in r.stdout


@pytest.mark.parametrize("model,tasks", [(SMALL, "ink"), (SMALL, "all"), (FRELU, "a,b")])
def test_reparam_writes_the_reference_deploy_network(tmp_path, model, tasks):
    import torch  # installed by tools/install-deps.sh: missing is a failure
    import repmode_torch as rt

    out = tmp_path / "deploy.safetensors"
    r = run("reparam", "--model", model, "--task", tasks, "--out", str(out))
    assert r.returncode == 0, r.stderr
    tensors, metadata = st.read(model)
    config = json.loads(metadata["repmode.config"])
    names = [t["name"] for t in json.loads(metadata["repmode.tasks"])]
    wanted = names if tasks == "all" else tasks.split(",")

    net = rt.RepModeNet(config["base_channels"], config["levels"], len(names), activation=config["activation"])
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    net = net.double().eval()
    deployed, deploy_meta = st.read(str(out))
    assert deploy_meta["repmode.form"] == "deploy"
    assert [t["name"] for t in json.loads(deploy_meta["repmode.tasks"])] == wanted
    expected = {}
    for name in wanted:
        expected.update(rt.DeployNet(net, names.index(name)).deploy_state_dict(prefix="deploy.%s." % name))
    assert sorted(deployed) == sorted(expected)
    for key, value in expected.items():
        got = torch.from_numpy(deployed[key].astype("float64"))
        scale = max(float(value.abs().max()), 1e-30)
        assert float((got - value).abs().max()) / scale < 1e-5, key

    info = run("info", "--json", str(out))
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["form"] == "deploy"


def expect_failure(r, needle):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("repmode: "), r.stderr
    assert needle in r.stderr, r.stderr


def test_errors_exit_1_with_a_message_and_write_nothing(tmp_path):
    out = tmp_path / "out.safetensors"
    expect_failure(run("info", str(tmp_path / "absent.safetensors")), "absent.safetensors")
    expect_failure(run("reparam", "--model", SMALL, "--task", "nucleolus", "--out", str(out)), "no task 'nucleolus'")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(open(SMALL, "rb").read()[:5000])
    expect_failure(run("reparam", "--model", str(truncated), "--task", "all", "--out", str(out)), "cut.safetensors")
    expect_failure(run("reparam", "--model", SMALL, "--task", "dna", "--out", str(tmp_path / "no" / "dir.st")),
                   "no/dir.st")
    deploy = tmp_path / "deploy.safetensors"
    assert run("reparam", "--model", SMALL, "--task", "dna", "--out", str(deploy)).returncode == 0
    expect_failure(run("reparam", "--model", str(deploy), "--task", "dna", "--out", str(out)),
                   "deploy.safetensors is a deploy-form model already: reparam takes a training-form model")
    expect_failure(run("reparam", "--model", str(deploy), "--task", "dna", "--out", str(deploy)),
                   "--out names the input of --model")
    expect_failure(run("info"), "model")
    expect_failure(run("frobnicate"), "unknown subcommand")
    for threads in ("100000", "50000", "1025", "-1"):  # 100000 crashed inside OpenMP; 50000 made libgomp exit
        expect_failure(run("reparam", "--model", SMALL, "--task", "dna", "--out", str(out), "--threads", threads),
                       "--threads %s is out of range: 0 (all cores) to 1024" % threads)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.safetensors", "deploy.safetensors"]


def test_help_exits_0():
    for args in (["--help"], ["info", "--help"], ["reparam", "--help"]):
        r = run(*args)
        assert r.returncode == 0, r.stderr
        assert "repmode" in r.stdout


def test_a_converted_official_checkpoint_is_described_by_info(tmp_path):
    import torch  # installed by tools/install-deps.sh: missing is a failure
    import repmode_torch as rt

    net = rt.RepModeNet(4, 2, 3)
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"nn_state": net.state_dict(), "count_iter": 1}, str(checkpoint))
    out = tmp_path / "converted.safetensors"
    r = subprocess.run([CONVERT, str(checkpoint), str(out), "--tasks", "dna,membrane,ink"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    info = run("info", "--json", str(out))
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout)
    assert described["parameters"] == sum(p.numel() for p in net.parameters())
    assert [t["name"] for t in described["tasks"]] == ["dna", "membrane", "ink"]
