"""repmode eval (docs/cli.md §3.6): metrics of whole-volume predictions checked against the PyTorch reference and numpy
formulas written independently of the C code; a model's percentile normalization against np.percentile; a task with
2D labels measured on the depth mean of its prediction; the image formats and folders ITK reads; and the errors."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import repmode_safetensors as st  # noqa: E402
from images import write_mha, write_nrrd  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))
SMALL = os.path.join(HERE, "..", "fixtures", "parity_small.model.safetensors")
REAL_CT = os.path.join(HERE, "..", "data", "real", "ct_headsq", "headsq_64x64x93_int16.nrrd")
SHAPE = (8, 12, 16)  # the fixture's patch: one window covers the volume, so the Gaussian blending cancels
PATCH = "8,12,16"


def run(*args):
    return subprocess.run([REPMODE, *args], capture_output=True, text=True, timeout=300)


def evaluate(*args):
    r = run("eval", "--model", SMALL, *args)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout
    return json.loads(lines[0])


def zscore(a):
    a = np.asarray(a, dtype=np.float64)
    return (a - a.mean()) / a.std()


def percentile(a, low=1.0, high=99.0):
    """Percentile normalization as numpy computes it: np.percentile's default ('linear') bounds, then
    (a - lo) / (hi - lo) clipped to [0, 1]."""
    a = np.asarray(a, dtype=np.float64)
    lo, hi = np.percentile(a, [low, high])
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


def reference_prediction(task, x, normalize=zscore, model=SMALL):
    """The deploy network of `task` of a training-form `model` (PyTorch reference, float64) on the volume x
    (Z, Y, X) normalized by `normalize` (the official z-score by default)."""
    import torch  # installed by tools/install-deps.sh: missing is a failure
    import repmode_torch as rt

    tensors, metadata = st.read(str(model))
    config = json.loads(metadata["repmode.config"])
    names = [t["name"] for t in json.loads(metadata["repmode.tasks"])]
    net = rt.RepModeNet(config["base_channels"], config["levels"], len(names), activation=config["activation"],
                        decoder=config.get("decoder", "3d"), block=config.get("block", "mode"))
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    net = net.double().eval()
    x = torch.from_numpy(normalize(x)[None, None])
    with torch.no_grad():  # the deploy form of RepMode; the comparison networks have no other than their own
        y = rt.DeployNet(net, names.index(task))(x) if net.block == "mode" else net(x, [names.index(task)])
    return y[0, 0].numpy()


def regression_metrics(p, t):
    d = t - p
    return {"mse": float(np.mean(d * d)), "mae": float(np.mean(np.abs(d))),
            "r2": float(1 - np.sum(d * d) / np.sum((t - t.mean()) ** 2)),
            "pearson": float(np.corrcoef(p.ravel(), t.ravel())[0, 1]), "voxels": p.size}


def ssim_2d(p, t, data_range):
    """Mean SSIM of two 2D images by its definition (Wang et al. 2004): Gaussian weights of sigma 1.5 over every
    whole 11 x 11 window, variances without the sample correction, C1 = (0.01 L)^2, C2 = (0.03 L)^2."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / g.sum() ** 2
    p, t = np.asarray(p, np.float64), np.asarray(t, np.float64)

    def mean(a):
        return np.einsum("ijkl,kl->ij", np.lib.stride_tricks.sliding_window_view(a, (11, 11)), w)

    mp, mt = mean(p), mean(t)
    vp, vt, cov = mean(p * p) - mp * mp, mean(t * t) - mt * mt, mean(p * t) - mp * mt
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return float(np.mean((2 * mp * mt + c1) * (2 * cov + c2) / ((mp * mp + mt * mt + c1) * (vp + vt + c2))))


def auc(prob, positive):
    """Mann-Whitney U / (positives·negatives), ties counting one half (average ranks)."""
    order = np.argsort(prob, kind="stable")
    sorted_p = prob[order]
    ranks = np.empty(prob.size)
    i = 0
    while i < prob.size:
        j = i
        while j + 1 < prob.size and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def binary_metrics(prob, target, threshold=0.5):
    pos, pred = target > 0.5, prob > threshold
    tp, fp, fn = int(np.sum(pred & pos)), int(np.sum(pred & ~pos)), int(np.sum(~pred & pos))
    return {"f05": 1.25 * tp / (1.25 * tp + 0.25 * fn + fp), "dice": 2 * tp / (2 * tp + fp + fn),
            "precision": tp / (tp + fp), "recall": tp / (tp + fn), "auc": auc(prob.ravel(), pos.ravel()),
            "voxels": prob.size}


def assert_metrics(got, expected):
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (key, got, expected)


def sample(seed=0):
    """An input volume with structure and a target that depends on it (plus noise)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    signal = 100 + 40 * np.sin(3 * x + 2 * y) * np.cos(2 * z) + 5 * rng.standard_normal(SHAPE)
    target = 10 + 3 * np.cos(2 * x - y) + rng.standard_normal(SHAPE)
    return signal.astype(np.float32), target.astype(np.float32)


@pytest.mark.parametrize("task", ["dna", "membrane"])
def test_regression_metrics_match_the_reference(tmp_path, task):
    signal, target = sample()
    write_mha(tmp_path / "in.mha", signal, spacing=(0.5, 0.5, 2.0), origin=(1, 2, 3))
    write_mha(tmp_path / "gt.mha", target)
    got = evaluate("--task", task, "--input", str(tmp_path / "in.mha"), "--target", str(tmp_path / "gt.mha"),
                   "--patch", PATCH, "--threads", "2")
    assert got["task"] == task and got["kind"] == "regression"
    expected = regression_metrics(reference_prediction(task, signal), zscore(target))
    assert_metrics(got, expected)
    # 8 layers are fewer than SSIM's 11-voxel window: undefined, with the range it would have used.
    assert got["ssim"] is None
    assert got["ssim_range"] == pytest.approx(np.ptp(zscore(target)), rel=1e-5)


def test_nrrd_input_and_a_mask_select_voxels(tmp_path):
    signal, target = sample(1)
    mask = np.zeros(SHAPE, np.uint8)
    mask[2:6, 3:9, 4:12] = 1
    write_nrrd(tmp_path / "in.nrrd", signal)
    write_mha(tmp_path / "gt.mha", target.astype(np.float64))
    write_mha(tmp_path / "mask.mha", mask)
    got = evaluate("--task", "dna", "--input", str(tmp_path / "in.nrrd"), "--target", str(tmp_path / "gt.mha"),
                   "--mask", str(tmp_path / "mask.mha"), "--patch", PATCH)
    p, t = reference_prediction("dna", signal), zscore(target)
    sel = mask > 0
    assert_metrics(got, regression_metrics(p[sel], t[sel]))
    assert got["voxels"] == int(sel.sum())


def test_binary_metrics_match_the_reference(tmp_path):
    signal, _ = sample(2)
    logits = reference_prediction("ink", signal)
    prob = 1 / (1 + np.exp(-logits))
    # A target that agrees with the prediction in part, so every metric is informative.
    rng = np.random.default_rng(3)
    target = ((prob > np.median(prob)) ^ (rng.random(SHAPE) < 0.2)).astype(np.uint8)
    write_mha(tmp_path / "in.mha", signal)
    write_mha(tmp_path / "gt.mha", target)
    got = evaluate("--task", "ink", "--input", str(tmp_path / "in.mha"), "--target", str(tmp_path / "gt.mha"),
                   "--patch", PATCH)
    assert got["kind"] == "binary"
    # No logit so close to the threshold that float32 and float64 could disagree about its side.
    assert np.min(np.abs(logits)) > 1e-5
    assert_metrics(got, binary_metrics(prob, target))


def test_binary_auc_of_one_class_is_null(tmp_path):
    signal, _ = sample(4)
    write_mha(tmp_path / "in.mha", signal)
    write_mha(tmp_path / "gt.mha", np.zeros(SHAPE, np.uint8))
    got = evaluate("--task", "ink", "--input", str(tmp_path / "in.mha"), "--target", str(tmp_path / "gt.mha"),
                   "--patch", PATCH)
    assert got["auc"] is None
    assert all(isinstance(got[k], float) or isinstance(got[k], int) for k in ("f05", "dice", "precision", "recall"))


def test_a_folder_of_tiff_layers_reads_as_the_same_volume(tmp_path):
    import tifffile  # installed by tools/install-deps.sh: missing is a failure
    signal, target = sample(5)
    signal = np.round(signal * 100).astype(np.uint16)
    layers = tmp_path / "layers"
    layers.mkdir()
    for z in range(SHAPE[0]):
        tifffile.imwrite(str(layers / ("%02d.tif" % z)), signal[z])
    write_mha(tmp_path / "in.mha", signal)
    write_mha(tmp_path / "gt.mha", target)
    common = ("--task", "membrane", "--target", str(tmp_path / "gt.mha"), "--patch", PATCH)
    from_folder = evaluate("--input", str(layers), *common)
    from_mha = evaluate("--input", str(tmp_path / "in.mha"), *common)
    assert from_folder == from_mha
    assert_metrics(from_folder, regression_metrics(reference_prediction("membrane", signal), zscore(target)))


# ---- percentile normalization (docs/network.md §1.2) ----------------------------------------------------------------

def fixture_with(tmp_path, name, **metadata):
    """The fixture model with some of its repmode.* metadata replaced (given as JSON values), same weights."""
    tensors, meta = st.read(SMALL)
    meta = dict(meta, **{"repmode." + key: st.json_string(value) for key, value in metadata.items()})
    path = tmp_path / name
    st.write(str(path), list(tensors.items()), meta)  # read keeps the file order
    return str(path)


PERCENTILE = {"method": "percentile", "low": 2, "high": 98}


def percentile_model(tmp_path):
    return fixture_with(tmp_path, "percentile.safetensors", normalization=PERCENTILE)


def with_outliers(signal):
    """A few voxels far outside the rest: clipping at the percentiles changes them, a z-score would not."""
    s = signal.copy()
    s.flat[::97] = 1000.0
    s.flat[5::89] = -500.0
    return s


def p2_98(a):
    return percentile(a, 2, 98)


@pytest.mark.parametrize("task", ["dna", "membrane"])
def test_a_percentile_model_normalizes_input_and_target_as_numpy_does(tmp_path, task):
    model = percentile_model(tmp_path)
    signal, target = sample(8)
    signal, target = with_outliers(signal), with_outliers(target)
    write_mha(tmp_path / "in.mha", signal)
    write_mha(tmp_path / "gt.mha", target)
    r = run("eval", "--model", model, "--task", task, "--input", str(tmp_path / "in.mha"), "--target",
            str(tmp_path / "gt.mha"), "--patch", PATCH)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert_metrics(got, regression_metrics(reference_prediction(task, signal, p2_98), p2_98(target)))
    official = regression_metrics(reference_prediction(task, signal), zscore(target))
    assert got["mse"] != pytest.approx(official["mse"], rel=0.01)  # the model's method, not the official one
    assert "percentile p2-p98" in r.stderr


def test_a_percentile_model_binary_task(tmp_path):
    model = percentile_model(tmp_path)
    signal = with_outliers(sample(9)[0])
    logits = reference_prediction("ink", signal, p2_98)
    prob = 1 / (1 + np.exp(-logits))
    rng = np.random.default_rng(10)
    target = ((prob > np.median(prob)) ^ (rng.random(SHAPE) < 0.2)).astype(np.uint8)
    write_mha(tmp_path / "in.mha", signal)
    write_mha(tmp_path / "gt.mha", target)
    r = run("eval", "--model", model, "--task", "ink", "--input", str(tmp_path / "in.mha"), "--target",
            str(tmp_path / "gt.mha"), "--patch", PATCH)
    assert r.returncode == 0, r.stderr
    assert np.min(np.abs(logits)) > 1e-5  # no side of the threshold in doubt between float32 and float64
    assert_metrics(json.loads(r.stdout), binary_metrics(prob, target))


def test_percentile_refuses_non_finite_voxels_and_bad_model_metadata(tmp_path):
    signal, target = sample()
    signal[3, 4, 5] = np.nan
    write_mha(tmp_path / "nan.mha", signal)
    write_mha(tmp_path / "gt.mha", target)
    r = run("eval", "--model", percentile_model(tmp_path), "--task", "dna", "--input", str(tmp_path / "nan.mha"),
            "--target", str(tmp_path / "gt.mha"), "--patch", PATCH)
    expect_failure(r, "nan.mha", "finite")
    bad = fixture_with(tmp_path, "bad.safetensors", normalization={"method": "percentile", "low": 99, "high": 1})
    r = run("eval", "--model", bad, "--task", "dna", "--input", str(tmp_path / "gt.mha"), "--target",
            str(tmp_path / "gt.mha"), "--patch", PATCH)
    expect_failure(r, "bad.safetensors", "repmode.normalization", "'low'")


def test_the_real_ct_volume_is_readable():
    assert os.path.exists(REAL_CT), REAL_CT + " is missing (real data kept in the repository)"
    got = evaluate("--task", "dna", "--input", REAL_CT, "--target", REAL_CT, "--patch", "32,32,32")
    assert got["voxels"] == 64 * 64 * 93
    assert all(math.isfinite(got[k]) for k in ("mse", "mae", "r2", "pearson"))


def test_progress_is_one_line_per_stage_on_a_pipe(tmp_path):
    signal, target = sample()
    write_mha(tmp_path / "in.mha", signal)
    write_mha(tmp_path / "gt.mha", target)
    r = run("eval", "--model", SMALL, "--task", "dna", "--input", str(tmp_path / "in.mha"), "--target",
            str(tmp_path / "gt.mha"))  # the model's own patch
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) >= 4 and all(line.startswith("repmode: ") for line in lines), r.stderr
    assert "\r" not in r.stderr


def expect_failure(r, *needles):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("repmode: "), r.stderr
    for needle in needles:
        assert needle in last, r.stderr
    assert r.stdout == ""


def test_errors_exit_1_with_a_useful_message(tmp_path):
    signal, target = sample()
    write_mha(tmp_path / "in.mha", signal)
    write_mha(tmp_path / "gt.mha", target)
    write_mha(tmp_path / "small.mha", target[:, :, :8])
    write_mha(tmp_path / "rgb.mha", np.zeros(SHAPE + (3,), np.uint8), components=3)
    inp, gt = str(tmp_path / "in.mha"), str(tmp_path / "gt.mha")

    def ev(*args):
        return run("eval", "--model", SMALL, "--patch", PATCH, *args)

    expect_failure(ev("--task", "dna", "--input", str(tmp_path / "absent.mha"), "--target", gt), "absent.mha")
    expect_failure(ev("--task", "dna", "--input", inp, "--target", str(tmp_path / "small.mha")),
                   "small.mha", "8 x 12 x 8", "in.mha", "8 x 12 x 16")
    expect_failure(ev("--task", "nucleolus", "--input", inp, "--target", gt), "no task 'nucleolus'", "dna", "ink")
    expect_failure(ev("--task", "dna", "--input", str(tmp_path / "rgb.mha"), "--target", gt), "rgb.mha", "3-component")
    expect_failure(ev("--task", "dna", "--input", inp, "--target", gt, "--mask", str(tmp_path / "small.mha")),
                   "small.mha", "same size")
    expect_failure(ev("--task", "dna", "--input", str(tmp_path), "--target", gt), "no .tif layers")
    expect_failure(ev("--task", "dna", "--input", inp, "--target", gt, "--overlap", "1.5"), "--overlap")
    expect_failure(run("eval", "--model", SMALL, "--task", "dna", "--input", inp, "--target", gt, "--patch", "8,12"),
                   "--patch")


# ---- 2D labels (docs/network.md §7) ----------------------------------------------------------------------------------

def with_2d_ink(tmp_path, threshold=None):
    """The fixture model with its task 'ink' marked as trained on 2D labels ("output": "2d"), same weights, and
    the given label threshold."""
    tasks = json.loads(st.read(SMALL)[1]["repmode.tasks"])
    for t in tasks:
        if t["name"] == "ink":
            t["output"] = "2d"
            if threshold is not None:
                t["threshold"] = threshold
    return fixture_with(tmp_path, "ink2d.safetensors", tasks=tasks)


def test_2d_labels_are_measured_on_the_mean_over_depth(tmp_path):
    signal, _ = sample(6)
    logits = reference_prediction("ink", signal).mean(axis=0)  # the 2D logit map
    prob = 1 / (1 + np.exp(-logits))
    # The untrained fixture's probabilities sit in a narrow band: a threshold in the widest gap of their middle half,
    # so float32 and float64 agree about every pixel's side.
    middle = np.sort(prob.ravel())[prob.size // 4:3 * prob.size // 4]
    k = int(np.argmax(np.diff(middle)))
    assert middle[k + 1] - middle[k] > 1e-6
    threshold = float(np.float32((middle[k] + middle[k + 1]) / 2))
    model = with_2d_ink(tmp_path, threshold)
    rng = np.random.default_rng(7)
    target = ((prob > np.median(prob)) ^ (rng.random(SHAPE[1:]) < 0.2)).astype(np.uint8)
    mask = np.zeros(SHAPE[1:], np.uint8)
    mask[2:11, 1:14] = 1
    write_mha(tmp_path / "in.mha", signal)
    write_mha(tmp_path / "gt.mha", target)  # a true 2D image
    write_mha(tmp_path / "mask.mha", mask[None])  # a volume of one layer
    r = run("eval", "--model", model, "--task", "ink", "--input", str(tmp_path / "in.mha"), "--target",
            str(tmp_path / "gt.mha"), "--mask", str(tmp_path / "mask.mha"), "--patch", PATCH)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    sel = mask > 0
    assert got["kind"] == "binary" and got["voxels"] == int(sel.sum())
    assert got["threshold"] == pytest.approx(threshold, rel=1e-7)
    assert_metrics(got, binary_metrics(prob[sel], target[sel], threshold))


def test_ssim_of_a_regression_task_with_2d_labels(tmp_path):
    """A 2D label (12 x 16) holds whole 11 x 11 windows: the 2D index against its definition."""
    tasks = json.loads(st.read(SMALL)[1]["repmode.tasks"])
    for t in tasks:
        if t["name"] == "dna":
            t["output"] = "2d"
    model = fixture_with(tmp_path, "dna2d.safetensors", tasks=tasks)
    signal, target = sample(8)
    target2d = target.mean(axis=0)
    write_mha(tmp_path / "in.mha", signal)
    write_mha(tmp_path / "gt.mha", target2d)
    r = run("eval", "--model", model, "--task", "dna", "--input", str(tmp_path / "in.mha"), "--target",
            str(tmp_path / "gt.mha"), "--patch", PATCH)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    p, t = reference_prediction("dna", signal).mean(axis=0), zscore(target2d)
    assert got["ssim_range"] == pytest.approx(np.ptp(t), rel=1e-5)
    assert got["ssim"] == pytest.approx(ssim_2d(p, t, np.ptp(t)), rel=1e-4, abs=1e-6)
    assert_metrics(got, regression_metrics(p, t))


def test_2d_and_3d_labels_are_refused_for_the_other_kind_of_task(tmp_path):
    model = with_2d_ink(tmp_path)
    signal, target = sample()
    write_mha(tmp_path / "in.mha", signal)
    write_mha(tmp_path / "gt3d.mha", target)
    write_mha(tmp_path / "gt2d.mha", target[0])
    write_mha(tmp_path / "narrow.mha", target[0, :, :8])
    inp = str(tmp_path / "in.mha")

    def ev(m, task, gt, *extra):
        return run("eval", "--model", m, "--task", task, "--input", inp, "--target", str(tmp_path / gt), "--patch",
                   PATCH, *extra)

    expect_failure(ev(model, "ink", "gt3d.mha"), "gt3d.mha", "8 x 12 x 16", "task 'ink' has 2D labels", "12 x 16")
    expect_failure(ev(model, "ink", "narrow.mha"), "narrow.mha", "12 x 8", "12 x 16", "cover them exactly")
    expect_failure(ev(model, "ink", "gt2d.mha", "--mask", str(tmp_path / "gt3d.mha")), "gt3d.mha", "2D labels")
    expect_failure(ev(SMALL, "ink", "gt2d.mha"), "gt2d.mha", "task 'ink' has 3D labels", '"output": "2d"')
    expect_failure(ev(SMALL, "dna", "gt2d.mha"), "gt2d.mha", "task 'dna' has 3D labels")
