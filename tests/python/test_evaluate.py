"""repmode.reparam against `repmode reparam` (the same bytes), and repmode.evaluate against `repmode eval` on the same
files and against the metrics computed directly in NumPy from the prediction."""
import json
import os

import numpy as np
import pytest

import repmode
from conftest import MODELS, REPMODE, run
from images import write_nrrd

CELLS = os.path.join(MODELS, "cells.safetensors")
INK = os.path.join(MODELS, "ink.safetensors")


@pytest.mark.parametrize("tasks", ["nuclei", "nuclei,membranes", "all"])
def test_reparam_writes_the_command_line_bytes(tmp_path, tasks):
    cli, py = tmp_path / "cli.safetensors", tmp_path / "py.safetensors"
    run([REPMODE, "reparam", "--model", CELLS, "--task", tasks, "--out", cli])
    deploy = repmode.reparam(CELLS, tasks, py)
    assert py.read_bytes() == cli.read_bytes()
    assert deploy.deploy_form and isinstance(deploy, repmode.Model)
    # A list of names is the comma-separated list; the deploy form predicts as the training form does.
    if tasks == "nuclei,membranes":
        again = repmode.Model(CELLS).reparam(["nuclei", "membranes"], tmp_path / "again.safetensors")
        assert (tmp_path / "again.safetensors").read_bytes() == cli.read_bytes()
        volume = np.random.default_rng(4).random((16, 32, 32), dtype=np.float32)
        assert np.array_equal(again.predict(volume, "membranes"), repmode.Model(CELLS).predict(volume, "membranes"))


def test_reparam_refuses_unknown_tasks_and_deploy_forms(tmp_path):
    with pytest.raises(repmode.Error, match="no task 'golgi'.*nuclei, membranes"):
        repmode.reparam(CELLS, "nuclei,golgi", tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    deploy = repmode.reparam(CELLS, "nuclei", tmp_path / "d.safetensors")
    with pytest.raises(repmode.Error, match="deploy"):
        deploy.reparam("nuclei", tmp_path / "again.safetensors")


def cli_eval(args):
    return json.loads(run([REPMODE, "eval"] + args).stdout)


def assert_same_metrics(got, cli):
    # cJSON prints a double with 15 significant digits when that reads back within an epsilon of it, else 17.
    assert got.keys() == cli.keys()
    for k, v in cli.items():
        if isinstance(v, float):
            assert got[k] == pytest.approx(v, rel=1e-14, abs=1e-300), k
        else:
            assert got[k] == v, k


def zscore(a):
    a = a.astype(np.float64)
    return ((a - a.mean()) / a.std()).astype(np.float32)


def ssim_3d(p, t, data_range):
    """Mean SSIM by its definition (Wang et al. 2004), in 3D: Gaussian weights of sigma 1.5 over every whole
    11 x 11 x 11 window, variances without the sample correction, C1 = (0.01 L)^2, C2 = (0.03 L)^2."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()
    w = g[:, None, None] * g[None, :, None] * g[None, None, :]

    def mean(a):
        return np.einsum("ijklmn,lmn->ijk", np.lib.stride_tricks.sliding_window_view(a, (11, 11, 11)), w)

    mp, mt = mean(p), mean(t)
    vp, vt, cov = mean(p * p) - mp * mp, mean(t * t) - mt * mt, mean(p * t) - mp * mt
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return float(np.mean((2 * mp * mt + c1) * (2 * cov + c2) / ((mp * mp + mt * mt + c1) * (vp + vt + c2))))


def test_regression_metrics_equal_eval_and_numpy(cells, tmp_path):
    volume, signal, folder = cells
    target, _ = repmode.read_image(folder / "nuclei.nrrd")
    mask = np.zeros(volume.shape, dtype=np.uint8)
    mask[:, 8:56, 4:40] = 1
    write_nrrd(str(tmp_path / "mask.nrrd"), mask)
    for m, extra in [(None, []), (mask, ["--mask", tmp_path / "mask.nrrd"])]:
        got = repmode.evaluate(CELLS, volume, target, "nuclei", mask=m, threads=2)
        cli = cli_eval(["--model", CELLS, "--task", "nuclei", "--input", signal, "--target", folder / "nuclei.nrrd"]
                       + extra)
        assert_same_metrics(got, cli)
        assert got["kind"] == "regression" and got["voxels"] == (volume.size if m is None else int(mask.sum()))
        # NumPy, from the prediction (normalized intensities) and the target z-scored over the whole volume.
        p = repmode.Model(CELLS).predict(volume, "nuclei").astype(np.float64)
        t = zscore(target).astype(np.float64)
        if m is None:
            assert got["ssim_range"] == pytest.approx(np.ptp(t), rel=1e-6)
            assert got["ssim"] == pytest.approx(ssim_3d(p, t, np.ptp(t)), rel=1e-5)
        if m is not None:
            p, t = p[m > 0], t[m > 0]
        assert got["mse"] == pytest.approx(np.mean((p - t) ** 2), rel=1e-5)
        assert got["mae"] == pytest.approx(np.mean(np.abs(p - t)), rel=1e-5)
        assert got["r2"] == pytest.approx(1 - np.sum((t - p) ** 2) / np.sum((t - t.mean()) ** 2), rel=1e-5)
        assert got["pearson"] == pytest.approx(np.corrcoef(p.ravel(), t.ravel())[0, 1], rel=1e-5)
    assert 0.5 < got["r2"] < 1  # a trained model, measured


def auc(prob, positive):
    """ROC AUC: Mann-Whitney U over ranks, ties counted one half."""
    order = np.argsort(prob, kind="stable")
    values = prob[order]
    ranks = np.empty(len(prob))
    _, first, counts = np.unique(values, return_index=True, return_counts=True)
    for f, c in zip(first, counts):
        ranks[order[f:f + c]] = f + (c + 1) / 2.0
    n_pos = positive.sum()
    n_neg = len(prob) - n_pos
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def test_binary_metrics_of_2d_labels_equal_eval_and_numpy(scroll):
    layers, surface, folder = scroll
    ink, _ = repmode.read_image(folder / "inklabels.nrrd")
    fragment, _ = repmode.read_image(folder / "mask.nrrd")
    assert ink.shape == (1, 64, 64)
    got = repmode.evaluate(INK, layers, ink[0], "ink", mask=fragment)  # a (Y, X) map is taken as (1, Y, X)
    cli = cli_eval(["--model", INK, "--task", "ink", "--input", surface, "--target", folder / "inklabels.nrrd",
                    "--mask", folder / "mask.nrrd"])
    assert_same_metrics(got, cli)
    assert got["kind"] == "binary" and got["threshold"] == pytest.approx(0.8476064)
    prob = repmode.Model(INK).predict(layers, "ink")
    sel = fragment > 0.5
    p, positive = prob[sel].astype(np.float64), ink[sel] > 0.5
    predicted = p > np.float32(got["threshold"])
    tp, fp = np.sum(predicted & positive), np.sum(predicted & ~positive)
    fn = np.sum(~predicted & positive)
    assert got["voxels"] == sel.sum()
    assert got["f05"] == pytest.approx(1.25 * tp / (1.25 * tp + 0.25 * fn + fp))
    assert got["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert got["precision"] == pytest.approx(tp / (tp + fp))
    assert got["recall"] == pytest.approx(tp / (tp + fn))
    assert got["auc"] == pytest.approx(auc(p, positive), rel=1e-9)
    assert got["auc"] > 0.7
    # Another threshold than the model's: the same counts as NumPy's at it.
    half = repmode.evaluate(INK, layers, ink, "ink", mask=fragment, threshold=0.5)
    predicted = p > 0.5
    tp, fp = np.sum(predicted & positive), np.sum(predicted & ~positive)
    assert half["threshold"] == 0.5 and half["precision"] == pytest.approx(tp / (tp + fp))


def test_evaluate_checks_shapes():
    volume = np.zeros((16, 32, 32))
    with pytest.raises(repmode.Error, match="same shape"):
        repmode.evaluate(CELLS, volume, np.zeros((16, 32, 31)), "nuclei")
    with pytest.raises(repmode.Error, match="2D labels"):
        repmode.evaluate(INK, volume, np.zeros((16, 32, 32)), "ink")
