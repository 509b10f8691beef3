"""Non-finite voxels (docs/cli.md §3.5). predict: refused by default with their count and the first voxel's
(x, y, z), nothing written; --non-finite zero and mean give, bit for bit, the prediction of the same volume with
those voxels set by hand (0, or the finite voxels' mean summed in double in index order, as written out here),
whole and streamed. eval: the same choice for its input, a non-finite target refused. train: refused, naming the
file."""
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from images import image_bytes, write_mha  # noqa: E402
from test_eval import SMALL  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))


def predict(tmp_path, volume, name, *options):
    path, out = tmp_path / (name + ".mha"), tmp_path / (name + "-pred.mha")
    write_mha(str(path), volume, spacing=(0.5, 0.7, 2.0))
    r = subprocess.run([REPMODE, "predict", "--model", SMALL, "--task", "dna,membrane", "--input", str(path),
                        "--output", str(out), "--labels", str(tmp_path / (name + "-labels.mha")), *options],
                       capture_output=True, text=True, timeout=300)
    return r, out


def with_non_finite():
    x = np.random.default_rng(3).normal(100.0, 20.0, size=(8, 12, 16)).astype(np.float32)
    x[2, 4, 1] = np.nan   # flat index 2*192 + 4*16 + 1 = 449: the first
    x[5, 0, 7] = np.inf
    x[7, 11, 15] = -np.inf
    return x


def test_non_finite_voxels_are_refused_with_their_count_and_the_first_position(tmp_path):
    r, out = predict(tmp_path, with_non_finite(), "bad")
    assert r.returncode == 1, r.stderr
    assert "bad.mha: 3 of 1536 voxels are not finite (NaN or infinite), the first at voxel (x, y, z) = (1, 4, 2)" \
        in r.stderr, r.stderr
    assert "--non-finite zero or mean" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mha"]


def test_zero_and_mean_equal_the_volume_repaired_by_hand_whole_and_streamed(tmp_path):
    x = with_non_finite()
    finite = x[np.isfinite(x)]
    total = 0.0
    for v in finite:  # the core's order: index order, in double
        total += float(v)
    fills = {"zero": np.float32(0.0), "mean": np.float32(total / finite.size)}
    for policy, fill in fills.items():
        repaired = np.where(np.isfinite(x), x, fill).astype(np.float32)
        r, want = predict(tmp_path, repaired, "hand-" + policy)
        assert r.returncode == 0, r.stderr
        for streamed in ([], ["--divisions", "3"]):
            name = policy + ("-streamed" if streamed else "")
            r, got = predict(tmp_path, x, name, "--non-finite", policy, *streamed)
            assert r.returncode == 0, r.stderr
            assert "replacing 3 non-finite voxel(s)" in r.stderr and "--non-finite " + policy in r.stderr
            assert image_bytes(got) == image_bytes(want), name
            assert image_bytes(tmp_path / (name + "-labels.mha")) == \
                image_bytes(tmp_path / ("hand-" + policy + "-labels.mha")), name


def test_a_finite_volume_is_untouched_by_every_policy(tmp_path):
    x = np.random.default_rng(4).normal(100.0, 20.0, size=(8, 12, 16)).astype(np.float32)
    r, want = predict(tmp_path, x, "plain")
    assert r.returncode == 0, r.stderr
    for policy in ("refuse", "zero", "mean"):
        r, got = predict(tmp_path, x, "plain-" + policy, "--non-finite", policy)
        assert r.returncode == 0 and "replacing" not in r.stderr, r.stderr
        assert image_bytes(got) == image_bytes(want), policy


def run_repmode(*args):
    return subprocess.run([REPMODE, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_eval_refuses_or_replaces_the_input_and_refuses_a_non_finite_target(tmp_path):
    x = with_non_finite()
    gt = np.random.default_rng(8).normal(size=x.shape).astype(np.float32)
    write_mha(str(tmp_path / "bad.mha"), x)
    write_mha(str(tmp_path / "gt.mha"), gt)
    common = ["eval", "--model", SMALL, "--task", "dna", "--target", tmp_path / "gt.mha"]
    r = run_repmode(*common, "--input", tmp_path / "bad.mha")
    assert r.returncode == 1 and "bad.mha: 3 of 1536 voxels are not finite" in r.stderr, r.stderr
    write_mha(str(tmp_path / "hand.mha"), np.where(np.isfinite(x), x, np.float32(0)).astype(np.float32))
    want = run_repmode(*common, "--input", tmp_path / "hand.mha")
    got = run_repmode(*common, "--input", tmp_path / "bad.mha", "--non-finite", "zero")
    assert want.returncode == 0 and got.returncode == 0, (want.stderr, got.stderr)
    assert got.stdout == want.stdout
    gt[0, 0, 0] = np.nan
    write_mha(str(tmp_path / "gt.mha"), gt)
    r = run_repmode(*common, "--input", tmp_path / "hand.mha", "--non-finite", "zero")
    assert r.returncode == 1 and "gt.mha: 1 of 1536 voxels are not finite" in r.stderr, r.stderr
    assert "a target must be finite" in r.stderr


def test_train_refuses_non_finite_data_naming_the_file(tmp_path):
    x = with_non_finite()
    write_mha(str(tmp_path / "signal.mha"), x)
    write_mha(str(tmp_path / "target.mha"), np.zeros_like(x))
    (tmp_path / "data.csv").write_text("signal,target,task\nsignal.mha,target.mha,dna\n")
    (tmp_path / "config.json").write_text('{"base_channels": 2, "levels": 1, "patch": [8, 8, 8], '
                                          '"tasks": [{"name": "dna", "kind": "regression"}]}')
    r = run_repmode("train", "--config", tmp_path / "config.json", "--data", tmp_path / "data.csv", "--out",
                    tmp_path / "m.safetensors", "--steps", 2)
    assert r.returncode == 1, r.stderr
    assert "signal.mha: 3 of 1536 voxels are not finite" in r.stderr and "training data must be finite" in r.stderr
    assert not (tmp_path / "m.safetensors").exists()
