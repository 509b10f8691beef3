"""repmode predict: the prediction against the PyTorch reference, the input's geometry kept, label maps (task
threshold or Otsu), the colour table, several tasks in one run, streamed output equal to the whole, a folder of
TIFF layers, a percentile model against np.percentile (streamed too), --mask against numpy's np.where, and errors
(exit 1, nothing written)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from images import image_bytes, read_mha, write_mha  # noqa: E402
from test_eval import SMALL, p2_98, percentile_model, reference_prediction, with_outliers  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))
SPACING, ORIGIN = (0.5, 0.7, 2.0), (1.0, -2.0, 3.5)


def run(*args):
    return subprocess.run([REPMODE, *args], capture_output=True, text=True, timeout=300)


def volume(tmp_path, seed=0):
    x = np.random.default_rng(seed).normal(100.0, 20.0, size=(8, 12, 16)).astype(np.float32)
    path = tmp_path / "in.mha"
    write_mha(str(path), x, spacing=SPACING, origin=ORIGIN)
    return x, path


def test_the_2d_decoder_predicts_the_reference_map(tmp_path):
    """decoder 2d (docs/network.md §7.2, fixture parity_2d): one window covers the volume, so predict writes the
    reference network's 2D map (a probability for the binary task, the logit map for the regression one), with the
    surface's in-plane geometry."""
    model = os.path.join(HERE, "..", "fixtures", "parity_2d.model.safetensors")
    x, path = volume(tmp_path, seed=3)
    for task, to_output in (("ink", lambda v: 1 / (1 + np.exp(-v))), ("sheet", lambda v: v)):
        out = tmp_path / (task + ".mha")
        r = run("predict", "--model", model, "--task", task, "--input", str(path), "--output", str(out),
                "--patch", "8,12,16")
        assert r.returncode == 0, r.stderr
        got, header = read_mha(str(out))
        want = reference_prediction(task, x, model=model)
        assert want.shape == x.shape and np.array_equal(want, np.broadcast_to(want[:1], want.shape))
        assert got.shape == (1,) + x.shape[1:]
        want = to_output(want[:1])
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), task
        assert [float(v) for v in header["ElementSpacing"].split()] == pytest.approx(list(SPACING))


@pytest.mark.parametrize("block", ["inception", "plain"])
def test_the_comparison_networks_predict_the_reference(tmp_path, block):
    """blocks "inception" and "plain" (docs/network.md §9, fixtures parity_inception and parity_plain), one window."""
    model = os.path.join(HERE, "..", "fixtures", "parity_%s.model.safetensors" % block)
    x, path = volume(tmp_path, seed=5)
    out = tmp_path / "dna.mha"
    r = run("predict", "--model", model, "--task", "dna", "--input", str(path), "--output", str(out),
            "--patch", "8,12,16")
    assert r.returncode == 0, r.stderr
    got, _ = read_mha(str(out))
    want = reference_prediction("dna", x, model=model)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_prediction_matches_the_reference_and_keeps_the_geometry(tmp_path):
    x, path = volume(tmp_path)
    out = tmp_path / "pred.mha"
    r = run("predict", "--model", SMALL, "--task", "membrane", "--input", str(path), "--output", str(out),
            "--patch", "8,12,16")
    assert r.returncode == 0, r.stderr
    got, header = read_mha(str(out))
    want = reference_prediction("membrane", x)
    assert got.shape == x.shape
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4
    assert [float(v) for v in header["ElementSpacing"].split()] == list(SPACING)
    assert [float(v) for v in header["Offset"].split()] == list(ORIGIN)


def test_binary_task_gives_probabilities_labels_and_a_colour_table(tmp_path):
    x, path = volume(tmp_path, 1)
    out, labels, colors = tmp_path / "p.mha", tmp_path / "l.mha", tmp_path / "colors.txt"
    r = run("predict", "--model", SMALL, "--task", "ink", "--input", str(path), "--output", str(out), "--labels",
            str(labels), "--colors", str(colors), "--patch", "8,12,16", "--threshold", "0.5")
    assert r.returncode == 0, r.stderr
    prob, _ = read_mha(str(out))
    want = 1.0 / (1.0 + np.exp(-reference_prediction("ink", x)))
    assert np.abs(prob - want).max() < 1e-5
    lab, header = read_mha(str(labels))
    assert lab.dtype == np.uint8
    assert np.array_equal(lab, (prob > 0.5).astype(np.uint8))
    assert [float(v) for v in header["ElementSpacing"].split()] == list(SPACING)
    lines = colors.read_text().splitlines()
    assert lines[1].split()[:2] == ["0", "background"] and lines[2].split()[:2] == ["1", "ink"]


def test_regression_label_map_splits_at_one_threshold(tmp_path):
    _, path = volume(tmp_path, 2)
    out, labels = tmp_path / "p.mha", tmp_path / "l.mha"
    r = run("predict", "--model", SMALL, "--task", "dna", "--input", str(path), "--output", str(out), "--labels",
            str(labels), "--patch", "8,12,16")
    assert r.returncode == 0, r.stderr
    pred, _ = read_mha(str(out))
    lab, _ = read_mha(str(labels))
    assert 0 < lab.sum() < lab.size  # Otsu found a cut inside the range
    assert pred[lab == 0].max() <= pred[lab == 1].min()


def test_errors_exit_1_and_write_nothing(tmp_path):
    _, path = volume(tmp_path)
    write_mha(str(tmp_path / "rgb.mha"), np.zeros((4, 4, 4, 3), np.uint8), components=3)
    (tmp_path / "cut.mha").write_bytes(path.read_bytes()[:-100])  # truncated voxel data
    out = tmp_path / "out.mha"
    cases = [
        (["--task", "dna", "--input", str(tmp_path / "absent.mha"), "--output", str(out)], "absent.mha"),
        (["--task", "nucleolus", "--input", str(path), "--output", str(out)], "no task 'nucleolus'"),
        (["--task", "dna,dna", "--input", str(path), "--output", str(out)], "'dna' twice"),
        (["--task", "dna,ink", "--input", str(path), "--output", str(out), "--threshold", "1,2,3"], "3 values"),
        (["--task", "dna", "--input", str(path), "--output", str(out), "--patch", "6,12,16"], "multiple of"),
        (["--task", "dna", "--input", str(tmp_path / "rgb.mha"), "--output", str(out)], "scalar"),
        (["--task", "dna", "--input", str(tmp_path / "cut.mha"), "--output", str(out)], "cut.mha"),
        (["--task", "dna", "--input", str(path), "--output", str(tmp_path / "no" / "out.mha")], "does not exist"),
    ]
    for args, needle in cases:
        r = run("predict", "--model", SMALL, *args)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.splitlines()[-1].startswith("repmode: ") and needle in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mha", "in.mha", "rgb.mha"]


def test_several_tasks_give_one_component_and_one_label_each(tmp_path):
    x, path = volume(tmp_path, 3)
    alone = {}
    for task in ["membrane", "ink"]:
        one = tmp_path / (task + ".mha")
        r = run("predict", "--model", SMALL, "--task", task, "--input", str(path), "--output", str(one),
                "--patch", "8,12,16")
        assert r.returncode == 0, r.stderr
        alone[task], _ = read_mha(str(one))
    # thresholds that leave each task some voxels of its own
    t = [float(np.quantile(alone["membrane"], 0.7)), float(np.quantile(alone["ink"], 0.7))]
    both, labels = tmp_path / "both.mha", tmp_path / "labels.mha"
    r = run("predict", "--model", SMALL, "--task", "membrane,ink", "--input", str(path), "--output", str(both),
            "--labels", str(labels), "--threshold", "%r,%r" % tuple(t), "--patch", "8,12,16")
    assert r.returncode == 0, r.stderr
    pred, header = read_mha(str(both))
    assert pred.shape == x.shape + (2,)
    assert [float(v) for v in header["ElementSpacing"].split()] == list(SPACING)
    for i, task in enumerate(["membrane", "ink"]):
        assert np.array_equal(pred[..., i], alone[task]), task
    # each voxel: the task furthest above its threshold, or background
    margin = np.stack([pred[..., i].astype(np.float64) - t[i] for i in range(2)], axis=-1)
    want = np.where(margin.max(axis=-1) > 0, margin.argmax(axis=-1) + 1, 0)
    lab, _ = read_mha(str(labels))
    assert np.array_equal(lab, want)
    assert set(np.unique(lab)) == {0, 1, 2}


def test_a_mask_zeroes_predictions_and_labels_outside_it(tmp_path):
    x, path = volume(tmp_path, 5)
    m = (np.random.default_rng(6).random(x.shape) > 0.4).astype(np.float32)
    m[0, 0, :4] = [0.5, 0.51, 2.0, -1.0]  # only values above 0.5 keep a voxel
    write_mha(str(tmp_path / "mask.mha"), m)  # its own geometry: the prediction's is used
    # A threshold below every membrane value: outside the mask only the masking leaves label 0.
    common = ["--model", SMALL, "--task", "membrane,ink", "--input", str(path), "--patch", "8,12,16", "--threshold",
              "-1000,0.5"]
    outputs = {}
    for name, extra in [("plain", []), ("masked", ["--mask", str(tmp_path / "mask.mha")])]:
        out, labels = tmp_path / (name + ".mha"), tmp_path / (name + "-labels.mha")
        r = run("predict", *common, "--output", str(out), "--labels", str(labels), "--divisions", "3", *extra)
        assert r.returncode == 0, r.stderr
        outputs[name] = (read_mha(str(out)), read_mha(str(labels))[0])
    (plain, plain_header), plain_labels = outputs["plain"]
    (got, header), labels = outputs["masked"]
    keep = m > 0.5
    assert np.array_equal(got, np.where(keep[..., None], plain, 0))
    assert np.array_equal(labels, np.where(keep, plain_labels, 0))
    # The same header, but for the provenance, which names the mask.
    assert json.loads(header.pop("repmode.provenance"))["mask"]["file"] == str(tmp_path / "mask.mha")
    assert json.loads(plain_header.pop("repmode.provenance"))["mask"] is None
    assert plain_labels.min() >= 1 and header == plain_header


def test_a_mask_of_another_size_is_refused_before_any_work(tmp_path):
    _, path = volume(tmp_path)
    write_mha(str(tmp_path / "small.mha"), np.ones((8, 12, 15), np.float32))
    out = tmp_path / "out.mha"
    r = run("predict", "--model", SMALL, "--task", "dna", "--input", str(path), "--output", str(out), "--mask",
            str(tmp_path / "small.mha"))
    assert r.returncode == 1
    assert "small.mha: the mask is 8 x 12 x 15 voxels, the prediction 8 x 12 x 16" in r.stderr.splitlines()[-1]
    assert "normalizing" not in r.stderr and not out.exists()
    r = run("predict", "--model", SMALL, "--task", "dna", "--input", str(path), "--output", str(out), "--mask",
            str(tmp_path / "absent.mha"))
    assert r.returncode == 1 and "absent.mha" in r.stderr.splitlines()[-1] and not out.exists()


def test_streamed_pieces_equal_one_piece(tmp_path):
    x = np.random.default_rng(4).normal(0.0, 1.0, size=(40, 12, 16)).astype(np.float32)
    path = tmp_path / "tall.mha"
    write_mha(str(path), x)
    outputs = []
    for pieces in ["1", "3", "7"]:
        out = tmp_path / ("p%s.mha" % pieces)
        r = run("predict", "--model", SMALL, "--task", "dna", "--input", str(path), "--output", str(out),
                "--patch", "8,12,16", "--divisions", pieces)
        assert r.returncode == 0, r.stderr
        outputs.append(image_bytes(out))
    assert outputs[0] == outputs[1] == outputs[2]
    # A .mhd named by an absolute path, streamed from another folder that has a file of its data file's name: every
    # piece lands in its own data file, and the other file is untouched (MetaIO would write later pieces into it: a
    # .mhd is written whole).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "split.raw").write_bytes(b"not yours" * 2000)
    out = tmp_path / "split.mhd"
    r = subprocess.run([REPMODE, "predict", "--model", SMALL, "--task", "dna", "--input", str(path), "--output",
                        str(out), "--patch", "8,12,16", "--divisions", "3"], capture_output=True, text=True,
                       timeout=300, cwd=str(elsewhere))
    assert r.returncode == 0, r.stderr
    assert os.listdir(elsewhere) == ["split.raw"] and (elsewhere / "split.raw").read_bytes() == b"not yours" * 2000
    assert (tmp_path / "split.raw").read_bytes() == image_bytes(tmp_path / "p1.mha")[-x.size * 4:]


def tta_transform(a, k):
    """Transform k of docs/network.md §6.4 on a (Z, Y, X) array: a flip of X when k >= 4, then k % 4 quarter turns."""
    return np.rot90(a[:, :, ::-1] if k >= 4 else a, k % 4, axes=(1, 2))


def tta_inverse(a, k):
    b = np.rot90(a, -(k % 4), axes=(1, 2))
    return b[:, :, ::-1] if k >= 4 else b


def test_tta_is_the_mean_of_eight_transformed_predictions_and_streams(tmp_path):
    """--tta against numpy: the input turned and flipped 8 ways, each predicted plainly with one window (the
    fixture's patch turned along), turned back, averaged. Then streamed pieces equal the whole, and the record says
    tta."""
    x, path = volume(tmp_path, seed=9)  # 8 x 12 x 16: four transforms give 8 x 16 x 12
    out = tmp_path / "tta.mha"
    r = run("predict", "--model", SMALL, "--task", "dna", "--input", str(path), "--output", str(out), "--patch",
            "8,12,16", "--tta")
    assert r.returncode == 0, r.stderr
    got, header = read_mha(str(out))
    want = np.zeros(x.shape)
    for k in range(8):
        t = np.ascontiguousarray(tta_transform(x, k))
        write_mha(str(tmp_path / "t.mha"), t)
        r = run("predict", "--model", SMALL, "--task", "dna", "--input", str(tmp_path / "t.mha"), "--output",
                str(tmp_path / "t-out.mha"), "--patch", "%d,%d,%d" % t.shape)
        assert r.returncode == 0, r.stderr
        want += tta_inverse(read_mha(str(tmp_path / "t-out.mha"))[0], k) / 8
    plain = run("predict", "--model", SMALL, "--task", "dna", "--input", str(path), "--output",
                str(tmp_path / "plain.mha"), "--patch", "8,12,16")
    assert plain.returncode == 0, plain.stderr
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= 1e-5 * scale
    assert np.abs(got - read_mha(str(tmp_path / "plain.mha"))[0]).max() > 1e-3 * scale
    assert json.loads(header["repmode.provenance"])["parameters"]["tta"] is True
    tall = tmp_path / "tall.mha"
    write_mha(str(tall), np.random.default_rng(10).normal(size=(40, 12, 16)).astype(np.float32))
    pieces = []
    for n in ("1", "3"):
        r = run("predict", "--model", SMALL, "--task", "dna", "--input", str(tall), "--output",
                str(tmp_path / ("tall-%s.mha" % n)), "--patch", "8,12,16", "--tta", "--divisions", n)
        assert r.returncode == 0, r.stderr
        pieces.append(image_bytes(tmp_path / ("tall-%s.mha" % n)))
    assert pieces[0] == pieces[1]


def test_a_folder_of_tiff_layers_is_one_volume(tmp_path):
    import tifffile  # installed by tools/install-deps.sh: missing is a failure
    x = np.random.default_rng(5).integers(1000, 60000, size=(8, 12, 16)).astype(np.uint16)
    layers = tmp_path / "surface_volume"
    layers.mkdir()
    for z in range(x.shape[0]):
        tifffile.imwrite(str(layers / ("%02d.tif" % z)), x[z])
    out = tmp_path / "p.mha"
    r = run("predict", "--model", SMALL, "--task", "dna", "--input", str(layers), "--output", str(out),
            "--patch", "8,12,16")
    assert r.returncode == 0, r.stderr
    got, header = read_mha(str(out))
    want = reference_prediction("dna", x.astype(np.float32))
    assert got.shape == x.shape
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4
    assert float(header["ElementSpacing"].split()[2]) == 1.0


def test_a_percentile_model_matches_numpy_percentiles_and_streams(tmp_path):
    model = percentile_model(tmp_path)  # p2-p98
    x = with_outliers(np.random.default_rng(6).normal(100.0, 20.0, size=(8, 12, 16)).astype(np.float32))
    path = tmp_path / "in.mha"
    write_mha(str(path), x)
    for task in ("membrane", "ink"):
        out = tmp_path / (task + ".mha")
        r = run("predict", "--model", model, "--task", task, "--input", str(path), "--output", str(out),
                "--patch", "8,12,16")
        assert r.returncode == 0, r.stderr
        assert "percentile p2-p98" in r.stderr
        got, _ = read_mha(str(out))
        want = reference_prediction(task, x, p2_98)
        if task == "ink":
            assert np.abs(got - 1.0 / (1.0 + np.exp(-want))).max() < 1e-5
            continue
        assert np.abs(got - want).max() / np.abs(want).max() < 1e-4
        official = reference_prediction(task, x)  # the z-scored input gives another prediction
        assert np.abs(got - official).max() / np.abs(official).max() > 1e-2
    # streamed: the percentiles of two passes over pieces, and the prediction in pieces, equal one piece
    tall = np.random.default_rng(7).gamma(2.0, 30.0, size=(40, 12, 16)).astype(np.float32)
    write_mha(str(tmp_path / "tall.mha"), tall)
    outputs = []
    for pieces in ["1", "3", "7"]:
        out = tmp_path / ("p%s.mha" % pieces)
        r = run("predict", "--model", model, "--task", "dna", "--input", str(tmp_path / "tall.mha"), "--output",
                str(out), "--patch", "8,12,16", "--divisions", pieces)
        assert r.returncode == 0, r.stderr
        outputs.append(image_bytes(out))
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_percentile_model_refuses_non_finite_voxels(tmp_path):
    x = np.ones((8, 12, 16), np.float32)
    x[2, 3, 4] = np.inf
    write_mha(str(tmp_path / "inf.mha"), x)
    out = tmp_path / "out.mha"
    r = run("predict", "--model", percentile_model(tmp_path), "--task", "dna", "--input", str(tmp_path / "inf.mha"),
            "--output", str(out), "--patch", "8,12,16")
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[-1].startswith("repmode: ") and "inf.mha" in r.stderr and "finite" in r.stderr
    assert not out.exists()


# ---- Monte Carlo dropout ----

def mc_run(tmp_path, path, name, *args):
    out, sd = tmp_path / (name + ".mha"), tmp_path / (name + "_sd.mha")
    r = run("predict", "--model", SMALL, "--task", "ink", "--input", str(path), "--output", str(out), "--patch",
            "8,12,16", "--uncertainty", str(sd), *args)
    assert r.returncode == 0, r.stderr
    return out, sd


def test_monte_carlo_passes_give_a_seeded_mean_and_uncertainty(tmp_path):
    x, path = volume(tmp_path, 5)
    a = mc_run(tmp_path, path, "a", "--mc-samples", "4", "--seed", "3")
    b = mc_run(tmp_path, path, "b", "--mc-samples", "4", "--seed", "3", "--threads", "1")
    c = mc_run(tmp_path, path, "c", "--mc-samples", "4", "--seed", "4")
    assert image_bytes(a[0]) == image_bytes(b[0]) and image_bytes(a[1]) == image_bytes(b[1])
    assert image_bytes(a[1]) != image_bytes(c[1])
    mean, header = read_mha(str(a[0]))
    sd, sd_header = read_mha(str(a[1]))
    assert mean.shape == sd.shape == x.shape
    assert sd_header["ElementSpacing"] == header["ElementSpacing"] and sd_header["Offset"] == header["Offset"]
    assert 0 < mean.min() and mean.max() < 1  # the mean of probabilities
    assert sd.min() >= 0 and sd.max() > 0
    # One pass without dropout or noise is the plain prediction, with no spread.
    quiet = mc_run(tmp_path, path, "quiet", "--mc-samples", "1", "--mc-dropout", "0", "--gate-noise", "0")
    plain = tmp_path / "plain.mha"
    r = run("predict", "--model", SMALL, "--task", "ink", "--input", str(path), "--output", str(plain), "--patch",
            "8,12,16")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(read_mha(str(quiet[0]))[0], read_mha(str(plain))[0])
    assert not read_mha(str(quiet[1]))[0].any()


def test_monte_carlo_mean_streams_in_pieces(tmp_path):
    x = np.random.default_rng(6).normal(0.0, 1.0, size=(40, 12, 16)).astype(np.float32)
    path = tmp_path / "tall.mha"
    write_mha(str(path), x)
    outputs = []
    for pieces in ["1", "3"]:
        out = tmp_path / ("p%s.mha" % pieces)
        r = run("predict", "--model", SMALL, "--task", "dna", "--input", str(path), "--output", str(out),
                "--patch", "8,12,16", "--divisions", pieces, "--mc-samples", "3", "--seed", "9")
        assert r.returncode == 0, r.stderr
        outputs.append(image_bytes(out))
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("args, words", [
    (["--mc-samples", "2", "--mc-dropout", "1"], "--mc-dropout must be in [0, 1)"),
    (["--mc-samples", "2", "--gate-noise", "-1"], "--gate-noise must be a finite number >= 0"),
    (["--seed", "3"], "give --mc-samples N or --uncertainty U too"),
    (["--uncertainty", "SD", "--mc-samples", "0"], "--uncertainty needs at least one Monte Carlo pass"),
])
def test_monte_carlo_errors_exit_1_and_write_nothing(tmp_path, args, words):
    _, path = volume(tmp_path, 7)
    out = tmp_path / "p.mha"
    args = [str(tmp_path / "sd.mha") if a == "SD" else a for a in args]
    r = run("predict", "--model", SMALL, "--task", "ink", "--input", str(path), "--output", str(out), "--patch",
            "8,12,16", *args)
    assert r.returncode == 1 and words in r.stderr, r.stderr
    assert not out.exists() and not (tmp_path / "sd.mha").exists()
