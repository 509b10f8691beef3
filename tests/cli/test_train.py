"""repmode train (docs/cli.md §3.4): a tiny model on `repmode synth cells` data; reproducibility across runs, thread
counts and a resumed run; validation lines in the log; percentile normalization recorded in the model and applied by
eval and predict as np.percentile does; and the errors on bad input, which leave no model file. Also an ink task with
2D labels trained on `repmode synth scroll` data (docs/network.md §7), and --tune-threshold: the F0.5-best threshold on
the validation data, saved in the model and measured by eval as a brute force over predict's probabilities finds it."""
import hashlib
import json
import math
import os
import shutil
import subprocess

import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import repmode_safetensors as st  # noqa: E402
import csv_cases  # noqa: E402
from images import image_bytes, read_mha, read_nrrd, write_mha  # noqa: E402
REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))

CONFIG = {"base_channels": 4, "levels": 2, "activation": "relu", "dropout": 0, "patch": [16, 32, 32],
          "tasks": [{"name": "nuclei", "kind": "regression"}, {"name": "membranes", "kind": "binary"}]}


def run(*args):
    return subprocess.run([REPMODE, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A 16x32x32 cell field, a config of two tasks (one per kind) and a CSV using them."""
    d = tmp_path_factory.mktemp("cells")
    r = run("synth", "cells", "--out", d, "--size", "16,32,32", "--seed", 3)
    assert r.returncode == 0, r.stderr
    rows = [l for l in (d / "data.csv").read_text().splitlines() if l.split(",")[-1] in ("task", "nuclei", "membranes")]
    assert len(rows) == 3
    (d / "train.csv").write_text("\n".join(rows) + "\n")
    (d / "config.json").write_text(json.dumps(CONFIG))
    return d


def train(sample, out, *extra, steps=20):
    return run("train", "--config", sample / "config.json", "--data", sample / "train.csv", "--out", out,
               "--steps", steps, "--batch", 2, *extra)


def test_trains_and_writes_model_and_log(sample, tmp_path):
    out, log = tmp_path / "m.safetensors", tmp_path / "log.jsonl"
    r = train(sample, out, "--log", log)
    assert r.returncode == 0, r.stderr
    assert "step 20/20" in r.stderr
    assert out.exists() and (tmp_path / "m.safetensors.ckpt").exists()
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    assert [l["step"] for l in lines] == list(range(1, 21))
    # The default schedule: from lr, a cosine decay to 0.1·lr at the last step (step s of 20 counts from 0).
    for s, l in enumerate(lines):
        want = 1e-4 + (1e-3 - 1e-4) * 0.5 * (1 + math.cos(math.pi * s / 19))
        assert math.isfinite(l["loss"]) and l["lr"] == pytest.approx(want, rel=1e-6)
        assert l["seconds"] >= 0 and l["steps_per_second"] >= 0
    info = run("info", "--json", out)
    assert info.returncode == 0, info.stderr
    info = json.loads(info.stdout)
    assert info["form"] == "training"
    assert info["config"]["base_channels"] == 4 and info["config"]["levels"] == 2
    assert info["config"]["patch"] == [16, 32, 32]
    assert [(t["name"], t["kind"]) for t in info["tasks"]] == [("nuclei", "regression"), ("membranes", "binary")]
    _, metadata = st.read(str(out))
    assert json.loads(metadata["repmode.normalization"]) == {"method": "zscore"}  # the official default
    provenance = json.loads(metadata["repmode.provenance"])
    assert provenance["software"].startswith("repmode ")
    assert provenance["data"] == "train.csv" and provenance["steps"] == 20 and provenance["seed"] == 0
    # How it trained: train's defaults (docs/cli.md §3.4), the configuration's patch and the official flips.
    assert provenance["training"] == {
        "patch": [16, 32, 32], "batch": 2,
        "optimizer": {"kind": "adamw", "lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-08, "weight_decay": 0.01},
        "schedule": {"kind": "cosine", "warmup": 0, "total_steps": 20, "floor": 0.1}, "smoothing": 0.1,
        "sampling": "random",
        "augment": {"flips": True, "rotations": False, "jitter": 0, "blur": 0, "gamma": 0, "contrast": 0,
                    "illumination": 0, "brightness": 0, "noise": 0, "depth_shift": 0},
        "ema": 0}


def test_reproducible_across_runs_and_threads(sample, tmp_path):
    paths = []
    for i, threads in enumerate((1, 2, 2)):
        out = tmp_path / f"m{i}.safetensors"
        r = train(sample, out, "--threads", threads, "--seed", 5, steps=8)
        assert r.returncode == 0, r.stderr
        paths.append(out.read_bytes())
    assert paths[0] == paths[1] == paths[2]
    other = tmp_path / "other.safetensors"
    assert train(sample, other, "--seed", 6, steps=8).returncode == 0
    assert other.read_bytes() != paths[0]


# A run cut short by --steps has a learning-rate schedule of its own: the runs that are resumed here have a constant
# rate, so that their first part is the uninterrupted run's first steps.
CONSTANT = ("--schedule", "constant")


def test_resume_equals_one_run(sample, tmp_path):
    whole = tmp_path / "whole.safetensors"
    r = train(sample, whole, "--seed", 2, "--optimizer", "adam", "--lr", "5e-4", *CONSTANT)
    assert r.returncode == 0, r.stderr
    ten = tmp_path / "ten.safetensors"
    r = train(sample, ten, "--seed", 2, "--optimizer", "adam", "--lr", "5e-4", "--checkpoint", tmp_path / "ten.ckpt",
              *CONSTANT, steps=10)
    assert r.returncode == 0, r.stderr
    resumed, log = tmp_path / "resumed.safetensors", tmp_path / "resumed.jsonl"
    r = train(sample, resumed, "--seed", 2, "--optimizer", "adam", "--lr", "5e-4", "--resume", tmp_path / "ten.ckpt",
              "--log", log, *CONSTANT)
    assert r.returncode == 0, r.stderr
    assert [json.loads(l)["step"] for l in log.read_text().splitlines()] == list(range(11, 21))
    assert ten.read_bytes() != whole.read_bytes()
    assert resumed.read_bytes() == whole.read_bytes()


def test_a_resumed_run_keeps_the_best_model_saved_before_the_interruption(sample, tmp_path):
    # With this rate the validation score is best at step 5 and worse at 10, 15 and 20: the run's model is step 5's.
    args = ("--seed", 2, "--lr", "1e-2", "--val", sample / "train.csv", "--val-every", 5, *CONSTANT)
    whole, log = tmp_path / "whole.safetensors", tmp_path / "whole.jsonl"
    r = train(sample, whole, *args, "--log", log)
    assert r.returncode == 0, r.stderr
    best = [l["best"] for l in map(json.loads, log.read_text().splitlines()) if "validation" in l]
    assert best == [True, False, False, False]

    part, ckpt = tmp_path / "part.safetensors", tmp_path / "part.ckpt"
    r = train(sample, part, *args, "--checkpoint", ckpt, steps=10)
    assert r.returncode == 0, r.stderr
    _, metadata = st.read(str(ckpt))
    state = json.loads(metadata["repmode.checkpoint"])
    first = [json.loads(l) for l in log.read_text().splitlines() if '"validation"' in l][0]
    # (cJSON prints the log's numbers to 15 significant digits when that reads back within its epsilon)
    assert state["step"] == 10 and state["best"] == pytest.approx(first["score"], rel=1e-14)
    log2 = tmp_path / "resumed.jsonl"
    r = train(sample, part, *args, "--resume", ckpt, "--log", log2)
    assert r.returncode == 0, r.stderr
    assert [l["best"] for l in map(json.loads, log2.read_text().splitlines()) if "validation" in l] == [False, False]
    assert part.read_bytes() == whole.read_bytes()


def test_warmup_cosine_schedule(sample, tmp_path):
    log = tmp_path / "log.jsonl"
    r = train(sample, tmp_path / "m.safetensors", "--warmup", 4, "--lr", "1e-3", "--log", log, steps=12)
    assert r.returncode == 0, r.stderr
    lrs = [json.loads(l)["lr"] for l in log.read_text().splitlines()]
    assert lrs[0] == pytest.approx(2.5e-4) and lrs[3] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))


def test_a_constant_schedule_keeps_the_rate(sample, tmp_path):
    log = tmp_path / "log.jsonl"
    r = train(sample, tmp_path / "m.safetensors", "--schedule", "constant", "--lr", "2e-3", "--log", log, steps=5)
    assert r.returncode == 0, r.stderr
    assert [json.loads(l)["lr"] for l in log.read_text().splitlines()] == [pytest.approx(2e-3)] * 5
    for args, message in ((("--schedule", "step"), "--schedule must be cosine or constant"),
                          (("--schedule", "constant", "--warmup", 2), "--warmup needs the cosine schedule")):
        r = train(sample, tmp_path / "bad.safetensors", *args, steps=5)
        assert r.returncode == 1 and message in r.stderr, r.stderr


def test_augmentations_are_reproducible_and_change_the_run(sample, tmp_path):
    plain, a, b = (tmp_path / n for n in ("plain.safetensors", "a.safetensors", "b.safetensors"))
    assert train(sample, plain, steps=4).returncode == 0
    for out, threads in ((a, 1), (b, 2)):
        r = train(sample, out, "--rotations", "--jitter", "0.1", "--noise", "0.05", "--threads", threads, steps=4)
        assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b.read_bytes() != plain.read_bytes()


def test_error_bad_augmentation(sample, tmp_path):
    assert "--jitter" in error(sample, tmp_path, None, None, "--jitter", "1.5")
    assert "--noise" in error(sample, tmp_path, None, None, "--noise", "-1")
    msg = error(sample, tmp_path, None, None, "--rotations", "--patch", "16,32,16")
    assert "--rotations" in msg and "square" in msg


def test_resume_with_another_seed_fails(sample, tmp_path):
    r = train(sample, tmp_path / "a.safetensors", "--seed", 1, steps=2)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "b.safetensors"
    r = train(sample, out, "--seed", 7, "--resume", tmp_path / "a.safetensors.ckpt", steps=4)
    assert r.returncode == 1
    assert r.stderr.startswith("repmode: ") and "seed" in r.stderr
    assert not out.exists()


def test_validation_lines(sample, tmp_path):
    out, log = tmp_path / "m.safetensors", tmp_path / "log.jsonl"
    r = train(sample, out, "--val", sample / "train.csv", "--val-every", 5, "--log", log, steps=10)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    val = [l for l in lines if "validation" in l]
    assert [l["step"] for l in val] == [5, 10]
    assert len([l for l in lines if "loss" in l]) == 10
    for l in val:
        kinds = {v["task"]: v for v in l["validation"]}
        assert set(kinds) == {"nuclei", "membranes"}
        assert {"mse", "mae", "r2", "pearson"} <= set(kinds["nuclei"]) and kinds["nuclei"]["kind"] == "regression"
        assert {"f05", "dice", "precision", "recall", "auc"} <= set(kinds["membranes"])
        assert kinds["membranes"]["kind"] == "binary"
        assert math.isfinite(l["score"])
    assert out.exists()


def error(sample, tmp_path, config=None, data=None, *extra):
    out = tmp_path / "m.safetensors"
    r = run("train", "--config", config or sample / "config.json", "--data", data or sample / "train.csv",
            "--out", out, "--steps", 2, "--batch", 1, *extra)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("repmode: ")
    assert not out.exists() and not (tmp_path / "m.safetensors.ckpt").exists()
    return r.stderr.strip().splitlines()[-1]


def write_csv(tmp_path, sample, text, name="d.csv"):
    for f in os.listdir(sample):
        if f.endswith(".nrrd") and not (tmp_path / f).exists():
            os.symlink(sample / f, tmp_path / f)
    (tmp_path / name).write_text(text)
    return tmp_path / name


def test_error_missing_csv(sample, tmp_path):
    assert "nothere.csv" in error(sample, tmp_path, data=tmp_path / "nothere.csv")


def test_error_unknown_task(sample, tmp_path):
    d = write_csv(tmp_path, sample, "signal,target,task\nsignal.nrrd,nuclei.nrrd,nuclei\n"
                                    "signal.nrrd,nucleoli.nrrd,nucleoli\n")
    msg = error(sample, tmp_path, data=d)
    assert "line 3" in msg and "nucleoli" in msg


def test_error_missing_image(sample, tmp_path):
    d = write_csv(tmp_path, sample, "signal,target,task\nsignal.nrrd,gone.nrrd,nuclei\n")
    assert "gone.nrrd" in error(sample, tmp_path, data=d)


def test_error_mismatched_sizes(sample, tmp_path):
    other = tmp_path / "small"
    assert run("synth", "cells", "--out", other, "--size", "16,32,16").returncode == 0
    d = write_csv(tmp_path, sample, "signal,target,task\nsignal.nrrd,small/nuclei.nrrd,nuclei\n")
    msg = error(sample, tmp_path, data=d)
    assert "signal.nrrd" in msg and "small/nuclei.nrrd" in msg and "16 x 32 x 16" in msg


def test_error_2d_labels_for_a_3d_task(scroll, tmp_path):
    cfg = tmp_path / "ink3d.json"
    cfg.write_text(json.dumps(dict(INK_CONFIG, tasks=[{"name": "ink", "kind": "binary"}])))
    msg = error(scroll, tmp_path, config=cfg, data=scroll / "data.csv")
    assert "line 2" in msg and "inklabels.nrrd" in msg and "2D image of 64 x 64" in msg
    assert "task 'ink' has 3D labels" in msg and '"output": "2d"' in msg


def test_error_3d_labels_for_a_2d_task(scroll, tmp_path):
    write_mha(tmp_path / "volume.mha", np.zeros((16, 64, 64), np.uint8))
    d = link_csv(tmp_path, scroll, "signal,target,task,mask\nscroll/surface_volume,volume.mha,ink,scroll/mask.nrrd\n")
    msg = error(scroll, tmp_path, config=scroll / "config.json", data=d)
    assert "volume.mha is a volume of 16 x 64 x 64" in msg and "task 'ink' has 2D labels" in msg and "64 x 64" in msg


@pytest.mark.parametrize("which", ["target", "mask"])
def test_error_2d_label_of_the_wrong_size(scroll, tmp_path, which):
    write_mha(tmp_path / "narrow.mha", np.zeros((64, 48), np.uint8))  # a true 2D image
    target, mask = ("narrow.mha", "scroll/mask.nrrd") if which == "target" else ("scroll/inklabels.nrrd", "narrow.mha")
    d = link_csv(tmp_path, scroll, "signal,target,task,mask\nscroll/surface_volume,%s,ink,%s\n" % (target, mask))
    msg = error(scroll, tmp_path, config=scroll / "config.json", data=d)
    assert "narrow.mha is a 2D image of 64 x 48" in msg and "64 x 64" in msg and "cover them exactly" in msg


def test_error_bad_output_field(sample, tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps(dict(CONFIG, tasks=[{"name": "ink", "kind": "binary", "output": "2.5d"}])))
    assert "'output' must be" in error(sample, tmp_path, config=cfg)


def test_task_colors_go_into_the_model_and_predicts_colour_table(sample, tmp_path):
    cfg, out = tmp_path / "colored.json", tmp_path / "m.safetensors"
    color = [1.0, 0.5, 0.2]
    tasks = [dict(CONFIG["tasks"][0]), dict(CONFIG["tasks"][1], color=color)]
    cfg.write_text(json.dumps(dict(CONFIG, tasks=tasks)))
    r = run("train", "--config", cfg, "--data", sample / "train.csv", "--out", out, "--steps", 2, "--batch", 1)
    assert r.returncode == 0, r.stderr
    _, metadata = st.read(str(out))
    recorded = {t["name"]: t for t in json.loads(metadata["repmode.tasks"])}
    assert "color" not in recorded["nuclei"]
    assert recorded["membranes"]["color"] == pytest.approx(color, abs=1e-7)
    r = run("predict", "--model", out, "--task", "nuclei,membranes", "--input", sample / "signal.nrrd", "--output",
            tmp_path / "p.mha", "--labels", tmp_path / "l.nrrd", "--colors", tmp_path / "l.ctbl")
    assert r.returncode == 0, r.stderr
    rows = [l.split() for l in (tmp_path / "l.ctbl").read_text().splitlines() if not l.startswith("#")]
    assert rows[2] == ["2", "membranes", *[str(math.floor(255 * c + 0.5)) for c in color], "255"]


@pytest.mark.parametrize("color", [[1, 2, 0], [0.5, 0.5], "red", [0, None, 1]])
def test_error_bad_task_color(sample, tmp_path, color):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps(dict(CONFIG, tasks=[{"name": "nuclei", "kind": "regression", "color": color}])))
    assert "'color' must be [r, g, b], each in [0, 1]" in error(sample, tmp_path, config=cfg)


# ---- 2D labels of a surface volume (docs/network.md §7) -----------------------------------------------------------

INK_CONFIG = {"base_channels": 4, "levels": 2, "patch": [8, 32, 32],
              "tasks": [{"name": "ink", "kind": "binary", "output": "2d"}]}


@pytest.fixture(scope="module")
def scroll(tmp_path_factory):
    """A 16x64x64 synthetic papyrus surface volume with its 2D ink label and fragment mask, as `repmode synth
    scroll` writes them (data.csv included), and a config of one ink task with 2D labels."""
    d = tmp_path_factory.mktemp("scroll")
    r = run("synth", "scroll", "--out", d, "--size", "16,64,64", "--seed", 1)
    assert r.returncode == 0, r.stderr
    (d / "config.json").write_text(json.dumps(INK_CONFIG))
    return d


def link_csv(tmp_path, scroll, text):
    if not (tmp_path / "scroll").exists():
        os.symlink(scroll, tmp_path / "scroll")
    (tmp_path / "d.csv").write_text(text)
    return tmp_path / "d.csv"


def train_ink(scroll, out, *extra, steps=6):
    return run("train", "--config", scroll / "config.json", "--data", scroll / "data.csv", "--out", out,
               "--steps", steps, "--batch", 2, *extra)


def test_synth_scroll_data_trains_an_ink_task_on_2d_labels(scroll, tmp_path):
    out, log = tmp_path / "ink.safetensors", tmp_path / "log.jsonl"
    r = train_ink(scroll, out, "--val", scroll / "data.csv", "--log", log)
    assert r.returncode == 0, r.stderr
    info = json.loads(run("info", "--json", out).stdout)
    assert info["tasks"] == [{"name": "ink", "kind": "binary", "output": "2d"}]
    assert "2D labels" in run("info", out).stdout
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    assert all(math.isfinite(l["loss"]) for l in lines if "loss" in l)
    (val,) = [l for l in lines if "validation" in l]
    (item,) = val["validation"]
    # Measured on the 2D map: one value per pixel of the fragment mask.
    mask = read_nrrd(scroll / "mask.nrrd")
    assert mask.shape == (1, 64, 64)
    assert item["voxels"] == int((mask > 0).sum()) and item["kind"] == "binary"
    assert {"f05", "dice", "precision", "recall", "auc"} <= set(item)

    # repmode eval on the 2D target measures the same map.
    r = run("eval", "--model", out, "--task", "ink", "--input", scroll / "surface_volume", "--target",
            scroll / "inklabels.nrrd", "--mask", scroll / "mask.nrrd", "--patch", "8,32,32")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["voxels"] == item["voxels"]
    for key in ("f05", "dice", "precision", "recall", "auc"):
        assert (got[key] is None and item[key] is None) or got[key] == pytest.approx(item[key], abs=1e-6), key


def test_the_2d_decoder_trains_reproducibly_and_predicts_one_map(scroll, tmp_path):
    """decoder 2d (docs/network.md §7.2): the configuration, the same bytes on 1 and 2 threads, a one-layer map from
    predict on a volume deeper than the patch (windows along depth blended), and a 3D task refused."""
    cfg = tmp_path / "2d.json"
    cfg.write_text(json.dumps(dict(INK_CONFIG, decoder="2d")))
    models = []
    for threads in (1, 2):
        out = tmp_path / ("m%d.safetensors" % threads)
        r = run("train", "--config", cfg, "--data", scroll / "data.csv", "--out", out, "--steps", 6, "--batch", 2,
                "--threads", threads, "--patch", "8,32,32")
        assert r.returncode == 0, r.stderr
        models.append(out.read_bytes())
    assert models[0] == models[1]
    info = run("info", tmp_path / "m1.safetensors").stdout
    assert "decoder:     2d" in info
    assert json.loads(run("info", "--json", tmp_path / "m1.safetensors").stdout)["config"]["decoder"] == "2d"
    pred = tmp_path / "ink.nrrd"
    r = run("predict", "--model", tmp_path / "m1.safetensors", "--task", "ink", "--input", scroll / "surface_volume",
            "--output", pred, "--patch", "8,32,32")
    assert r.returncode == 0, r.stderr
    prob = read_nrrd(pred)
    assert prob.shape == (1, 64, 64) and np.all((prob >= 0) & (prob <= 1))
    cfg.write_text(json.dumps(dict(INK_CONFIG, decoder="2d", tasks=[{"name": "ink", "kind": "binary"}])))
    r = run("train", "--config", cfg, "--data", scroll / "data.csv", "--out", tmp_path / "x.safetensors")
    assert r.returncode == 1 and "task 'ink' needs 2D labels" in r.stderr, r.stderr


@pytest.mark.parametrize("block", ["inception", "plain"])
def test_the_comparison_networks_train_reproducibly(sample, tmp_path, block):
    """blocks "inception" and "plain" (docs/network.md §9): one task, the same bytes on 1 and 2 threads, their
    layers in info, and add-task refused (no gates)."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(dict(CONFIG, block=block, tasks=[{"name": "nuclei"}])))
    csv = sample / ("nuclei-%s.csv" % block)  # beside the images it names
    csv.write_text("\n".join(l for l in (sample / "train.csv").read_text().splitlines()
                             if l.split(",")[-1] in ("task", "nuclei")) + "\n")
    models = []
    for threads in (1, 2):
        out = tmp_path / ("m%d.safetensors" % threads)
        r = run("train", "--config", cfg, "--data", csv, "--out", out, "--steps", 4, "--batch", 2,
                "--threads", threads)
        assert r.returncode == 0, r.stderr
        models.append(out.read_bytes())
    assert models[0] == models[1]
    info = run("info", tmp_path / "m1.safetensors").stdout
    assert ("Inception blocks" if block == "inception" else "plain 3x3x3") in info
    r = run("add-task", "--model", tmp_path / "m1.safetensors", "--task", "membranes", "--data", csv,
            "--out", tmp_path / "x.safetensors")
    assert r.returncode == 1 and "without task gates" in r.stderr, r.stderr
    cfg.write_text(json.dumps(dict(CONFIG, block=block)))
    r = run("train", "--config", cfg, "--data", csv, "--out", tmp_path / "x.safetensors")
    assert r.returncode == 1 and "single-task" in r.stderr, r.stderr


def test_2d_labels_train_reproducibly_across_threads_and_a_resume(scroll, tmp_path):
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    assert train_ink(scroll, one, "--threads", 1, "--seed", 4, *CONSTANT).returncode == 0
    r = train_ink(scroll, two, "--threads", 2, "--seed", 4, "--checkpoint", tmp_path / "half.ckpt", *CONSTANT, steps=3)
    assert r.returncode == 0, r.stderr
    r = train_ink(scroll, two, "--threads", 2, "--seed", 4, "--resume", tmp_path / "half.ckpt", *CONSTANT)
    assert r.returncode == 0, r.stderr
    assert one.read_bytes() == two.read_bytes()


def test_bucketed_sampling_is_reproducible_and_changes_the_run(scroll, tmp_path):
    a, b, c = (tmp_path / f"{n}.safetensors" for n in "abc")
    for out, sampling in ((a, "buckets"), (b, "buckets"), (c, "random")):
        r = train_ink(scroll, out, "--sampling", sampling, "--seed", 3)
        assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_error_bucketed_sampling_without_a_binary_task(sample, tmp_path):
    d = write_csv(tmp_path, sample, "signal,target,task\nsignal.nrrd,nuclei.nrrd,nuclei\n")
    assert "binary" in error(sample, tmp_path, None, d, "--sampling", "buckets")
    assert "--sampling" in error(sample, tmp_path, None, None, "--sampling", "rare")


def test_mixed_2d_and_3d_labels_in_one_run(scroll, sample, tmp_path):
    cfg = tmp_path / "mixed.json"
    cfg.write_text(json.dumps(dict(INK_CONFIG, tasks=[{"name": "ink", "kind": "binary", "output": "2d"},
                                                      {"name": "nuclei", "kind": "regression"}])))
    os.symlink(sample, tmp_path / "cells")
    d = link_csv(tmp_path, scroll, "signal,target,task,mask\nscroll/surface_volume,scroll/inklabels.nrrd,ink,"
                                   "scroll/mask.nrrd\ncells/signal.nrrd,cells/nuclei.nrrd,nuclei,\n")
    out, log = tmp_path / "m.safetensors", tmp_path / "log.jsonl"
    r = run("train", "--config", cfg, "--data", d, "--out", out, "--steps", 4, "--batch", 3, "--val", d, "--log", log)
    assert r.returncode == 0, r.stderr
    (val,) = [json.loads(l) for l in log.read_text().splitlines() if "validation" in l]
    kinds = {v["task"]: v for v in val["validation"]}
    assert kinds["ink"]["kind"] == "binary" and kinds["nuclei"]["kind"] == "regression"
    assert kinds["nuclei"]["voxels"] == 16 * 32 * 32


# ---- --tune-threshold ----------------------------------------------------------------------------------------------

def f05(prob, target, t):
    pred = prob > t
    tp, fp, fn = int((pred & target).sum()), int((pred & ~target).sum()), int((~pred & target).sum())
    return 1.0 if tp == fp == fn == 0 else 1.25 * tp / (1.25 * tp + 0.25 * fn + fp)


def best_f05(prob, target):
    """The best F0.5 of `prob > t` against `target` over every threshold t in [0, 1] that makes a different cut: each
    distinct value, and 0 (everything positive)."""
    return max(f05(prob, target, t) for t in np.concatenate([np.unique(prob), [0.0, 1.0]]))


def predict_ink(scroll, model, tmp_path):
    """`repmode predict`'s probabilities of the 2D ink map, the fragment mask and the ink label, as (1, 64, 64)."""
    pred = tmp_path / "p.mha"
    r = run("predict", "--model", model, "--task", "ink", "--input", scroll / "surface_volume", "--output", pred,
            "--patch", "8,32,32")
    assert r.returncode == 0, r.stderr
    prob, _ = read_mha(str(pred))
    inside = read_nrrd(scroll / "mask.nrrd") > 0.5
    ink = read_nrrd(scroll / "inklabels.nrrd") > 0.5
    assert prob.shape == inside.shape == ink.shape == (1, 64, 64)
    return prob, inside, ink


def test_tune_threshold_saves_the_f05_best_threshold_that_eval_measures(scroll, tmp_path):
    out, log = tmp_path / "ink.safetensors", tmp_path / "log.jsonl"
    r = train_ink(scroll, out, "--val", scroll / "data.csv", "--tune-threshold", "--log", log)
    assert r.returncode == 0, r.stderr
    (task,) = json.loads(st.read(str(out))[1]["repmode.tasks"])
    threshold = task["threshold"]
    assert 0 <= threshold <= 1 and threshold != 0.5
    assert "threshold ink" in r.stderr

    # The reference: every threshold tried on `repmode predict`'s probabilities of the 2D map, inside the mask.
    prob, inside, ink = predict_ink(scroll, out, tmp_path)
    want = best_f05(prob[inside], ink[inside])

    r = run("eval", "--model", out, "--task", "ink", "--input", scroll / "surface_volume", "--target",
            scroll / "inklabels.nrrd", "--mask", scroll / "mask.nrrd", "--patch", "8,32,32")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["threshold"] == pytest.approx(threshold, abs=1e-7)
    assert got["f05"] == pytest.approx(want, abs=1e-6)
    # The validation measured the same map at the same threshold (one volume: pooled and per volume agree).
    (val,) = [json.loads(l) for l in log.read_text().splitlines() if "validation" in l]
    (item,) = val["validation"]
    assert item["threshold"] == pytest.approx(threshold, abs=1e-7)
    assert item["f05"] == pytest.approx(want, abs=1e-6)
    assert val["score"] == pytest.approx(1 - want, abs=1e-6)


def test_tune_threshold_pools_the_validation_volumes_of_a_task(scroll, tmp_path):
    # The fragment inside its mask, and the whole map again without a mask: one threshold for both together.
    d = link_csv(tmp_path, scroll, "signal,target,task,mask\nscroll/surface_volume,scroll/inklabels.nrrd,ink,"
                                   "scroll/mask.nrrd\nscroll/surface_volume,scroll/inklabels.nrrd,ink,\n")
    out, log = tmp_path / "ink.safetensors", tmp_path / "log.jsonl"
    r = train_ink(scroll, out, "--val", d, "--tune-threshold", "--log", log)
    assert r.returncode == 0, r.stderr
    (task,) = json.loads(st.read(str(out))[1]["repmode.tasks"])
    prob, inside, ink = predict_ink(scroll, out, tmp_path)
    pooled_prob, pooled_ink = np.concatenate([prob[inside], prob.ravel()]), np.concatenate([ink[inside], ink.ravel()])
    assert f05(pooled_prob, pooled_ink, task["threshold"]) == pytest.approx(best_f05(pooled_prob, pooled_ink), abs=1e-9)
    (val,) = [json.loads(l) for l in log.read_text().splitlines() if "validation" in l]
    assert [v["voxels"] for v in val["validation"]] == [int(inside.sum()), 64 * 64]
    assert all(v["threshold"] == pytest.approx(task["threshold"], abs=1e-7) for v in val["validation"])
    for v, where in zip(val["validation"], (inside, np.ones_like(inside))):
        assert v["f05"] == pytest.approx(f05(prob[where], ink[where], task["threshold"]), abs=1e-6)


def test_tune_threshold_leaves_regression_tasks_and_the_training_alone(sample, tmp_path):
    logs = {}
    for tune in (False, True):
        out, logs[tune] = tmp_path / f"m{tune}.safetensors", tmp_path / f"log{tune}.jsonl"
        r = train(sample, out, "--val", sample / "train.csv", "--log", logs[tune], *(["--tune-threshold"] * tune),
                  steps=4)
        assert r.returncode == 0, r.stderr
        tasks = {t["name"]: t for t in json.loads(st.read(str(out))[1]["repmode.tasks"])}
        assert "threshold" not in tasks["nuclei"] and ("threshold" in tasks["membranes"]) == tune
    plain, tuned = ([json.loads(l) for l in logs[t].read_text().splitlines()] for t in (False, True))
    assert [l["loss"] for l in plain if "loss" in l] == [l["loss"] for l in tuned if "loss" in l]
    (plain,), (tuned,) = ([{v["task"]: v for v in l["validation"]} for l in x if "validation" in l]
                          for x in (plain, tuned))
    assert plain["nuclei"] == tuned["nuclei"]
    assert plain["membranes"]["threshold"] == 0.5 and tuned["membranes"]["f05"] >= plain["membranes"]["f05"]


def test_error_tune_threshold_without_val_or_binary_task(sample, tmp_path):
    msg = error(sample, tmp_path, None, None, "--tune-threshold")
    assert "--tune-threshold" in msg and "--val" in msg
    cfg = tmp_path / "regression.json"
    cfg.write_text(json.dumps(dict(CONFIG, tasks=[{"name": "nuclei", "kind": "regression"}])))
    d = write_csv(tmp_path, sample, "signal,target,task\nsignal.nrrd,nuclei.nrrd,nuclei\n")
    msg = error(sample, tmp_path, cfg, d, "--val", d, "--tune-threshold")
    assert "--tune-threshold" in msg and "binary" in msg


# ---- percentile normalization (docs/network.md §1.2) ----------------------------------------------------------------

@pytest.mark.parametrize("given, recorded", [
    ("percentile", {"method": "percentile", "low": 1, "high": 99}),
    ({"method": "percentile", "low": 2.5, "high": 97.5}, {"method": "percentile", "low": 2.5, "high": 97.5}),
    ("zscore", {"method": "zscore"}),
])
def test_the_model_records_the_configured_normalization(sample, tmp_path, given, recorded):
    cfg, out = tmp_path / "c.json", tmp_path / "m.safetensors"
    cfg.write_text(json.dumps(dict(CONFIG, normalization=given)))
    r = run("train", "--config", cfg, "--data", sample / "train.csv", "--out", out, "--steps", 2, "--batch", 1)
    assert r.returncode == 0, r.stderr
    assert json.loads(st.read(str(out))[1]["repmode.normalization"]) == recorded
    assert json.loads(st.read(str(out) + ".ckpt")[1]["repmode.normalization"]) == recorded


def test_a_percentile_model_is_evaluated_and_predicted_as_numpy_normalizes(sample, tmp_path):
    from test_eval import percentile, reference_prediction, regression_metrics
    cfg, out = tmp_path / "c.json", tmp_path / "m.safetensors"
    cfg.write_text(json.dumps(dict(CONFIG, normalization={"method": "percentile", "low": 1, "high": 99})))
    r = run("train", "--config", cfg, "--data", sample / "train.csv", "--out", out, "--steps", 4, "--batch", 2)
    assert r.returncode == 0, r.stderr
    signal, nuclei = read_nrrd(sample / "signal.nrrd"), read_nrrd(sample / "nuclei.nrrd")
    want = reference_prediction("nuclei", signal, percentile, model=out)  # the whole volume is one window

    pred = tmp_path / "p.mha"
    r = run("predict", "--model", out, "--task", "nuclei", "--input", sample / "signal.nrrd", "--output", pred,
            "--patch", "16,32,32")
    assert r.returncode == 0, r.stderr
    got, _ = read_mha(str(pred))
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4

    r = run("eval", "--model", out, "--task", "nuclei", "--input", sample / "signal.nrrd", "--target",
            sample / "nuclei.nrrd", "--patch", "16,32,32")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    for key, value in regression_metrics(want, percentile(nuclei)).items():  # the target normalized the same way
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_error_bad_normalization(sample, tmp_path):
    cfg = tmp_path / "bad.json"
    for value, words in [("minmax", ["'normalization' must be"]), (5, ["'normalization' must be"]),
                         ({"method": "percentile", "low": 99, "high": 1}, ["'normalization'", "'low'"]),
                         ({"method": "percentile", "lo": 1}, ["'normalization'", "unknown field 'lo'"]),
                         ({"method": "percentile", "high": "99"}, ["'normalization'", "'high' must be a number"]),
                         ({"method": "clahe"}, ["'normalization'", "'method'"])]:
        cfg.write_text(json.dumps(dict(CONFIG, normalization=value)))
        msg = error(sample, tmp_path, config=cfg)
        assert "bad.json" in msg and all(w in msg for w in words), (value, msg)


def test_error_config_is_the_cores_message_after_the_file_name(sample, tmp_path):
    """The core reads the configuration (rm_train_config_parse); train reports its message, which names the field."""
    cfg = tmp_path / "bad.json"
    for fields, expected in [
        ({"tasks": [{"name": "membranes", "kind": "binary", "threshold": 1.5}]},
         "config: task 'membranes': threshold = 1.5 is outside [0, 1]"),
        ({"colour": [1, 0, 0]}, "config: unknown field 'colour'"),
        ({"tasks": [{"name": "nuclei"}, {"name": "nuclei", "kind": "binary"}]},
         "config: task 'nuclei' appears twice in 'tasks'"),
        ({"tasks": [{"name": "nuclei", "kind": "regression", "color": "red"}]},
         "config: tasks[0] ('nuclei'): 'color' must be [r, g, b], each in [0, 1]"),
        ({"levels": 9}, "config: levels = 9 is outside 1..8"),
        ({"in_channels": 2}, "'in_channels' and 'out_channels' must be 1 (train reads single-channel volumes)"),
    ]:
        cfg.write_text(json.dumps(dict(CONFIG, **fields)))
        assert error(sample, tmp_path, config=cfg) == "repmode: %s: %s" % (cfg, expected)


def test_on_a_terminal_the_shared_progress_bar_shows_every_step(sample, tmp_path):
    """On a terminal, stderr gets cli.cxx's one progress bar, redrawn per step with the step's loss after the
    percentage, and none of the stage lines written when stderr is not a terminal."""
    import pty
    master, slave = pty.openpty()
    r = subprocess.run([REPMODE, "train", "--config", sample / "config.json", "--data", sample / "train.csv", "--out",
                        tmp_path / "m.safetensors", "--steps", "2", "--batch", "1"],
                       stdout=subprocess.DEVNULL, stderr=slave, timeout=300)
    os.close(slave)
    text = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the terminal's writer has gone and everything was read
            break
        if not chunk:
            break
        text += chunk
    os.close(master)
    text = text.decode()
    assert r.returncode == 0, text
    assert " 50% step 1/2 loss " in text and "100% step 2/2 loss " in text, text
    assert "\rrepmode: train [" in text and "repmode: train: " not in text, text


def test_error_empty_csv(sample, tmp_path):
    d = write_csv(tmp_path, sample, "signal,target,task\n")
    assert "no rows" in error(sample, tmp_path, data=d)


def files_read(stderr):
    """The images train read, in order, from its progress lines ("repmode: train: reading <path>")."""
    start = "repmode: train: reading "
    lines = [l[len(start):] for l in stderr.splitlines() if l.startswith(start)]
    return [l for l in lines if not l.endswith("config.json")]


def test_csv_quoting_bom_and_crlf(sample, tmp_path):
    """RFC 4180 fields (a comma, doubled quotes and spaces inside quotes, a line break inside quotes), a UTF-8
    byte-order mark, CRLF and CR line ends, a blank line: train reads the files Python's csv module reads there."""
    d = csv_cases.write_quoted(sample, tmp_path)
    r = run("train", "--config", sample / "config.json", "--data", d, "--out", tmp_path / "m.safetensors",
            "--steps", 1, "--batch", 1)
    assert r.returncode == 0, r.stderr
    assert files_read(r.stderr) == csv_cases.csv_module_reads(d) == [str(tmp_path / f) for f in csv_cases.QUOTED_FILES]


@pytest.mark.parametrize("text, where", csv_cases.BAD)
def test_csv_errors_name_the_line(sample, tmp_path, text, where):
    d = write_csv(tmp_path, sample, "")
    d.write_bytes(text)
    assert error(sample, tmp_path, data=d).startswith("repmode: %s%s" % (d, where))


def test_error_bad_config(sample, tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text("{\"base_channels\": 4,")
    assert "bad.json" in error(sample, tmp_path, config=cfg)
    cfg.write_text(json.dumps(dict(CONFIG, activation="swish")))
    assert "activation" in error(sample, tmp_path, config=cfg)
    cfg.write_text(json.dumps(dict(CONFIG, tasks=[{"name": "nuclei", "kind": "probability"}])))
    assert "kind" in error(sample, tmp_path, config=cfg)


def test_files_are_checked_before_the_first_step(sample, tmp_path):
    """/dev/zero as a configuration or CSV was read without end; a bad --out failed after the last step."""
    def refused(r, words):
        assert r.returncode == 1, (r.returncode, r.stderr)
        assert words in r.stderr, r.stderr
        assert "step" not in r.stderr, r.stderr  # nothing trained

    out = tmp_path / "m.safetensors"
    refused(run("train", "--config", "/dev/zero", "--data", sample / "train.csv", "--out", out, "--steps", 2),
            "the configuration /dev/zero is not a regular file")
    refused(run("train", "--config", sample / "config.json", "--data", "/dev/zero", "--out", out, "--steps", 2),
            "the data CSV /dev/zero is not a regular file")
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.truncate((16 << 20) + 1)
    refused(run("train", "--config", sample / "config.json", "--data", big, "--out", out, "--steps", 2),
            "holds 16777217 bytes; at most 16 MiB are read")
    refused(train(sample, tmp_path / "none" / "m.safetensors"), "--out: cannot write")
    refused(train(sample, out, "--checkpoint", out), "--out and --checkpoint name the same file")
    refused(train(sample, sample / "train.csv"), "--out names the input of --data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv"]


# ---- the convolution engine's instruction sets (docs/network.md §8.1) ---------------------------------------------

def with_isa(isa, *args):
    env = dict(os.environ)
    env.pop("REPMODE_ISA", None)
    if isa:
        env["REPMODE_ISA"] = isa
    return subprocess.run([REPMODE, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def test_every_instruction_set_trains_and_predicts_alike(sample, tmp_path):
    """16 channels take the direct kernels in every pass of level 1. Each path the processor offers trains and
    predicts; AVX2 gives the bytes of AVX-512; the portable path (OpenBLAS) agrees to float32 rounding."""
    version = with_isa(None, "--version")
    assert version.returncode == 0, version.stderr
    best = version.stdout.splitlines()[1].split()[1]
    isas = ["portable", "avx2", "avx512"][: ["portable", "avx2", "avx512"].index(best) + 1]
    cfg = tmp_path / "wide.json"
    cfg.write_text(json.dumps(dict(CONFIG, base_channels=16, levels=1)))
    weights, predictions = {}, {}
    for isa in isas:
        assert with_isa(isa, "--version").stdout.splitlines()[1].split()[1] == isa
        out, pred = tmp_path / f"{isa}.safetensors", tmp_path / f"{isa}.mha"
        r = with_isa(isa, "train", "--config", cfg, "--data", sample / "train.csv", "--out", out, "--steps", 3,
                     "--batch", 2, "--seed", 4)
        assert r.returncode == 0, r.stderr
        r = with_isa(isa, "predict", "--model", out, "--task", "nuclei", "--input", sample / "signal.nrrd",
                     "--output", pred)
        assert r.returncode == 0, r.stderr
        weights[isa] = st.read(str(out))[0]
        predictions[isa] = read_mha(pred)[0]
    if "avx512" in isas:
        assert (tmp_path / "avx2.safetensors").read_bytes() == (tmp_path / "avx512.safetensors").read_bytes()
        assert image_bytes(tmp_path / "avx2.mha") == image_bytes(tmp_path / "avx512.mha")
    for isa in isas[1:]:
        for name, w in weights["portable"].items():
            # AdamW moves a weight whose gradient is near zero by up to the rate per step whatever its size, so a
            # few such weights may part by ~1e-4 after 3 steps at 1e-3; the rest agree to float32 rounding.
            np.testing.assert_allclose(weights[isa][name], w, rtol=1e-3, atol=3e-4, err_msg=name)
            assert np.mean(np.abs(weights[isa][name] - w)) < 1e-6, name
        np.testing.assert_allclose(predictions[isa], predictions["portable"], rtol=1e-3, atol=1e-4)


def test_an_unknown_instruction_set_is_refused(sample, tmp_path):
    r = with_isa("sse9", "predict", "--model", tmp_path / "none.safetensors", "--task", "nuclei", "--input",
                 sample / "signal.nrrd", "--output", tmp_path / "p.mha")
    assert r.returncode == 1
    assert "REPMODE_ISA=sse9 names no instruction set" in r.stderr
    assert not (tmp_path / "p.mha").exists()


# ---- fine-tuning: train --init (docs/network.md §5.6) -------------------------------------------------------------

@pytest.fixture(scope="module")
def start_model(sample, tmp_path_factory):
    """A model trained 10 steps on nuclei and membranes, the start of the fine-tuning runs, and its predictions."""
    d = tmp_path_factory.mktemp("init")
    r = train(sample, d / "m0.safetensors", steps=10)
    assert r.returncode == 0, r.stderr
    for task in ("nuclei", "membranes"):
        predict(sample, d / "m0.safetensors", task, d / f"{task}.nrrd")
    return d


def predict(sample, model, task, out):
    r = run("predict", "--model", model, "--task", task, "--input", sample / "signal.nrrd", "--output", out)
    assert r.returncode == 0, r.stderr


def fine_tune(sample, start, out, *extra, steps=3, data=None):
    return run("train", "--init", start / "m0.safetensors", "--data", data or sample / "train.csv", "--out", out,
               "--steps", steps, "--batch", 2, *extra)


def test_init_at_step_0_predicts_the_bytes_of_the_initial_model(sample, start_model, tmp_path):
    out = tmp_path / "m.safetensors"
    r = fine_tune(sample, start_model, out, steps=0)
    assert r.returncode == 0, r.stderr
    for task in ("nuclei", "membranes"):
        predict(sample, out, task, tmp_path / "p.nrrd")
        assert image_bytes(tmp_path / "p.nrrd") == image_bytes(start_model / f"{task}.nrrd"), task
    (w0, meta0), (w, meta) = st.read(str(start_model / "m0.safetensors")), st.read(str(out))
    assert list(w) == list(w0)
    for name, value in w0.items():  # bit for bit, BatchNorm statistics and counters included
        assert w[name].dtype == value.dtype and w[name].tobytes() == value.tobytes(), name
    for key in ("repmode.config", "repmode.tasks", "repmode.normalization"):
        assert json.loads(meta[key]) == json.loads(meta0[key]), key
    provenance = json.loads(meta["repmode.provenance"])
    assert provenance["steps"] == 0 and provenance["encoder_lr"] == 1 and "freeze" not in provenance
    assert provenance["init"] == {
        "file": "m0.safetensors", "sha256": hashlib.sha256((start_model / "m0.safetensors").read_bytes()).hexdigest(),
        "provenance": json.loads(meta0["repmode.provenance"])}


def membranes_and_mitochondria(sample, tmp_path):
    rows = [l for l in (sample / "data.csv").read_text().splitlines()
            if l.split(",")[-1] in ("task", "membranes", "mitochondria")]
    return write_csv(tmp_path, sample, "\n".join(rows) + "\n")


def test_init_with_a_config_maps_the_tasks_by_name(sample, start_model, tmp_path):
    config = dict(CONFIG, patch=[16, 16, 16], normalization="percentile",
                  tasks=[{"name": "membranes", "kind": "binary", "threshold": 0.3}, {"name": "mitochondria"}])
    (tmp_path / "c.json").write_text(json.dumps(config))
    out = tmp_path / "m.safetensors"
    r = fine_tune(sample, start_model, out, "--config", tmp_path / "c.json", steps=0,
                  data=membranes_and_mitochondria(sample, tmp_path))
    assert r.returncode == 0, r.stderr
    (w0, _), (w, meta) = st.read(str(start_model / "m0.safetensors")), st.read(str(out))
    tasks = json.loads(meta["repmode.tasks"])
    assert [(t["name"], t["kind"], t.get("threshold")) for t in tasks] == [
        ("membranes", "binary", 0.3), ("mitochondria", "regression", None)]
    assert json.loads(meta["repmode.config"])["patch"] == [16, 16, 16]  # not part of the network: the config's
    assert json.loads(meta["repmode.normalization"])["method"] == "percentile"  # the config names one
    gates = 0
    for name, value in w0.items():
        if name.endswith("gate.weight"):  # (5·co, tasks): membranes was column 1, mitochondria is new
            gates += 1
            assert w[name].shape == (value.shape[0], 2), name
            assert w[name][:, 0].tobytes() == value[:, 1].tobytes(), name
            assert not np.any(w[name][:, 1]), name
        else:
            assert w[name].tobytes() == value.tobytes(), name
    assert gates == 11
    # The same function for membranes: the same bytes under the model's normalization and patch (predict's windows).
    (tmp_path / "c.json").write_text(json.dumps(dict(config, normalization="zscore", patch=CONFIG["patch"])))
    r = fine_tune(sample, start_model, out, "--config", tmp_path / "c.json", steps=0,
                  data=membranes_and_mitochondria(sample, tmp_path))
    assert r.returncode == 0, r.stderr
    predict(sample, out, "membranes", tmp_path / "p.nrrd")
    assert image_bytes(tmp_path / "p.nrrd") == image_bytes(start_model / "membranes.nrrd")


def test_init_trains_from_the_given_weights(sample, start_model, tmp_path):
    out = tmp_path / "m.safetensors"
    r = fine_tune(sample, start_model, out, steps=1)
    assert r.returncode == 0, r.stderr
    w0, w = st.read(str(start_model / "m0.safetensors"))[0], st.read(str(out))[0]
    changed = [name for name in w0 if w[name].tobytes() != w0[name].tobytes()]
    assert "conv_out.expert_conv5x5_conv" in changed and "encoder_block1.conv_more.conv1.expert_conv5x5_conv" in changed
    predict(sample, out, "nuclei", tmp_path / "p.nrrd")
    assert image_bytes(tmp_path / "p.nrrd") != image_bytes(start_model / "nuclei.nrrd")


def test_init_freeze_encoder_keeps_the_encoder_bit_for_bit(sample, start_model, tmp_path):
    out = tmp_path / "m.safetensors"
    r = fine_tune(sample, start_model, out, "--freeze", "encoder", "--lr", "1e-2")
    assert r.returncode == 0, r.stderr
    (w0, _), (w, meta) = st.read(str(start_model / "m0.safetensors")), st.read(str(out))
    encoder = [name for name in w0 if name.startswith("encoder_block")]
    assert len(encoder) == 2 * (2 * 14 + 6)  # per level two MoDE layers of 14 tensors and a down-sampling of 6
    for name in encoder:  # weights, gates, BatchNorm weights, statistics and counters
        assert w[name].tobytes() == w0[name].tobytes(), name
    for name in w0:
        if not name.startswith("encoder_block") and not name.endswith("_pool"):
            assert w[name].tobytes() != w0[name].tobytes(), name + " did not train"
    assert json.loads(meta["repmode.provenance"])["freeze"] == "encoder"


def test_init_encoder_lr_scales_the_first_step_of_the_encoder(sample, start_model, tmp_path):
    # The first step's gradient is the same in both runs (same weights, batch and seed); Adam's first step is
    # lr·g/(|g| + ε): with --encoder-lr 0.25 an encoder weight moves a quarter as far, the rest the same bytes.
    runs = {}
    for scale in ("1", "0.25"):
        out = tmp_path / f"m{scale}.safetensors"
        r = fine_tune(sample, start_model, out, "--optimizer", "adam", "--lr", "1e-3", "--encoder-lr", scale, steps=1)
        assert r.returncode == 0, r.stderr
        runs[scale] = st.read(str(out))
    w0 = st.read(str(start_model / "m0.safetensors"))[0]
    full, quarter = runs["1"][0], runs["0.25"][0]
    for name, value in w0.items():
        if not name.startswith("encoder_block") or value.dtype != np.float32 or "running_" in name:
            assert quarter[name].tobytes() == full[name].tobytes(), name
            continue
        d_full = full[name].astype(np.float64) - value
        d_quarter = quarter[name].astype(np.float64) - value
        ulp = np.spacing(np.abs(value)).astype(np.float64)
        np.testing.assert_allclose(d_quarter, 0.25 * d_full, rtol=0, atol=2 * ulp.max(), err_msg=name)
        if name.endswith("_conv"):
            assert np.abs(d_full).max() > 5e-4, name  # the full step is about lr
    assert json.loads(runs["0.25"][1]["repmode.provenance"])["encoder_lr"] == 0.25


@pytest.mark.parametrize("case", ["missing", "truncated", "deploy", "network", "kind", "freeze-without-init",
                                  "freeze-what", "freeze-and-lr", "lr-zero", "lr-above-1", "no-config"])
def test_init_errors_leave_no_model(sample, start_model, tmp_path, case):
    m0 = start_model / "m0.safetensors"
    args = ["train", "--init", m0, "--data", sample / "train.csv"]
    if case == "missing":
        args[2], message = tmp_path / "none.safetensors", "--init: " + str(tmp_path / "none.safetensors")
    elif case == "truncated":
        (tmp_path / "t.safetensors").write_bytes(m0.read_bytes()[:5000])
        args[2], message = tmp_path / "t.safetensors", "truncated"
    elif case == "deploy":
        r = run("reparam", "--model", m0, "--task", "nuclei", "--out", tmp_path / "d.safetensors")
        assert r.returncode == 0, r.stderr
        args[2], message = tmp_path / "d.safetensors", "deploy-form"
    elif case in ("network", "kind"):
        config = dict(CONFIG, base_channels=8) if case == "network" else dict(
            CONFIG, tasks=[{"name": "nuclei", "kind": "binary"}, {"name": "membranes", "kind": "binary"}])
        (tmp_path / "c.json").write_text(json.dumps(config))
        args += ["--config", tmp_path / "c.json"]
        message = ("'base_channels' differs from the model's" if case == "network"
                   else "task 'nuclei' is binary in the configuration but regression in the model")
    elif case == "freeze-without-init":
        args[1:3] = ["--config", sample / "config.json"]
        args, message = args + ["--freeze", "encoder"], "--freeze needs --init"
    elif case == "freeze-what":
        args, message = args + ["--freeze", "decoder"], "--freeze must be encoder"
    elif case == "freeze-and-lr":
        args, message = args + ["--freeze", "encoder", "--encoder-lr", "0.5"], "exclude each other"
    elif case in ("lr-zero", "lr-above-1"):
        args, message = args + ["--encoder-lr", "0" if case == "lr-zero" else "1.5"], "--encoder-lr must be in (0, 1]"
    else:
        args, message = args[:1] + args[3:], "--config C.json is required (or --init"
    out = tmp_path / "m.safetensors"
    r = run(*args, "--out", out, "--steps", 2, "--batch", 2)
    assert r.returncode == 1, r.stderr
    assert message in r.stderr.strip().splitlines()[-1], r.stderr
    assert not out.exists() and not (tmp_path / "m.safetensors.ckpt").exists()


# ---- augmentation and weight averaging (docs/network.md §5.4) --------------------------------------------------------

def test_an_augment_recipe_in_the_configuration_equals_the_option(sample, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(dict(CONFIG, augment={"preset": "label-free", "gamma": 0.5})))
    given = tmp_path / "given.safetensors"
    r = run("train", "--config", config, "--data", sample / "train.csv", "--out", given, "--steps", 6, "--batch", 2)
    assert r.returncode == 0, r.stderr
    option = tmp_path / "option.safetensors"
    assert train(sample, option, "--augment", "label-free", "--gamma", 0.5, steps=6).returncode == 0
    plain = tmp_path / "plain.safetensors"
    assert train(sample, plain, steps=6).returncode == 0
    assert given.read_bytes() == option.read_bytes() != plain.read_bytes()
    # The configuration's recipe, with one value changed on the command line, is the recipe with that value.
    changed = tmp_path / "changed.safetensors"
    r = run("train", "--config", config, "--data", sample / "train.csv", "--out", changed, "--steps", 6, "--batch", 2,
            "--gamma", 0.3)
    assert r.returncode == 0, r.stderr
    label_free = tmp_path / "label-free.safetensors"
    assert train(sample, label_free, "--augment", "label-free", steps=6).returncode == 0
    assert changed.read_bytes() == label_free.read_bytes()


@pytest.mark.parametrize("args,message", [
    (("--augment", "strong"), "--augment must be none, official, label-free or ink"),
    (("--gamma", -1), "--gamma"), (("--blur", 20), "--blur"), (("--contrast", 1), "--contrast"),
    (("--depth-shift", -2), "--depth-shift"), (("--ema", 1), "--ema must be in (0, 1)"),
    (("--ema", -0.5), "--ema")])
def test_bad_augmentation_and_average_options_are_refused(sample, tmp_path, args, message):
    out = tmp_path / "m.safetensors"
    r = train(sample, out, *args, steps=2)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert not out.exists()


def test_the_model_records_the_options_it_trained_with(sample, tmp_path):
    out = tmp_path / "m.safetensors"
    r = train(sample, out, "--augment", "label-free", "--noise", 0.05, "--gamma", 0.25, "--ema", 0.9, "--optimizer",
              "adam", "--lr", 0.0003, "--schedule", "constant", "--sampling", "buckets", steps=3)
    assert r.returncode == 0, r.stderr
    training = json.loads(st.read(str(out))[1]["repmode.provenance"])["training"]
    assert training["optimizer"] == {"kind": "adam", "lr": 0.0003, "beta1": 0.9, "beta2": 0.999, "eps": 1e-08,
                                     "weight_decay": 0}
    assert training["schedule"] == {"kind": "constant"} and training["ema"] == 0.9
    assert training["sampling"] == "buckets" and 0 < training["bucket_low"] < 1
    # label-free's values (docs/network.md §5.4) with the two given on the command line in their place.
    assert training["augment"] == {"flips": True, "rotations": True, "jitter": 0, "blur": 1, "gamma": 0.25,
                                   "contrast": 0.3, "illumination": 1, "brightness": 0.2, "noise": 0.05,
                                   "depth_shift": 0}
    # Given back as a configuration's augment, the recorded recipe trains the same model.
    config = json.loads((sample / "config.json").read_text())
    config["augment"] = training["augment"]
    (tmp_path / "recorded.json").write_text(json.dumps(config))
    again = tmp_path / "again.safetensors"
    r = run("train", "--config", tmp_path / "recorded.json", "--data", sample / "train.csv", "--out", again, "--steps",
            3, "--batch", 2, "--ema", 0.9, "--optimizer", "adam", "--lr", 0.0003, "--schedule", "constant",
            "--sampling", "buckets")
    assert r.returncode == 0, r.stderr
    trained, retrained = st.read(str(out))[0], st.read(str(again))[0]
    assert trained.keys() == retrained.keys()
    assert all(np.array_equal(trained[k], retrained[k]) for k in trained)


def test_the_weight_average_is_saved_and_resumes_exactly(sample, tmp_path):
    whole, plain = tmp_path / "whole.safetensors", tmp_path / "plain.safetensors"
    assert train(sample, whole, "--ema", 0.9, "--seed", 4, *CONSTANT, steps=12).returncode == 0
    assert train(sample, plain, "--seed", 4, steps=12).returncode == 0
    averaged, last = st.read(str(whole))[0], st.read(str(plain))[0]
    assert averaged.keys() == last.keys()
    moved = [k for k in averaged if averaged[k].dtype == np.float32 and not np.array_equal(averaged[k], last[k])]
    assert moved, "the saved model is the last weights, not their average"
    part, ckpt = tmp_path / "part.safetensors", tmp_path / "part.ckpt"
    assert train(sample, part, "--ema", 0.9, "--seed", 4, "--checkpoint", ckpt, *CONSTANT, steps=5).returncode == 0
    r = train(sample, part, "--seed", 4, "--resume", ckpt, *CONSTANT, steps=12)  # without --ema: refused (an average)
    assert r.returncode != 0 and "weight average" in r.stderr, r.stderr
    r = train(sample, part, "--ema", 0.9, "--seed", 4, "--resume", ckpt, *CONSTANT, steps=12)
    assert r.returncode == 0, r.stderr
    assert part.read_bytes() == whole.read_bytes()
