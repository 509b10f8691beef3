"""The examples run as they stand: examples/itk_predict.cxx (an ITK pipeline of one's own around
itk::RepModeImageFilter and itk::RepModeLabelMapFilter, streamed) writes the same bytes as `repmode predict` and
`repmode predict --labels`, which test_predict.py checks against the PyTorch reference; its label map is the
prediction thresholded here; and it fails cleanly on a task the model lacks."""
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from images import image_bytes, read_mha, write_mha  # noqa: E402
from test_eval import SMALL  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))
EXAMPLE = os.environ.get("REPMODE_ITK_PREDICT", os.path.join(HERE, "..", "..", "build", "bin", "repmode-itk-predict"))


def otsu(values, bins=256):
    """Otsu's threshold over a histogram of `bins` equal bins from the minimum to the maximum, at the upper edge of
    the last bin of the lower class (ITK's OtsuThresholdCalculator)."""
    counts, edges = np.histogram(values, bins=bins, range=(values.min(), values.max()))
    p = counts / counts.sum()
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)[:-1]
    m0 = np.cumsum(p * mids)[:-1]
    between = (m0 - w0 * (p * mids).sum()) ** 2 / (w0 * (1 - w0))
    return edges[1:][np.nanargmax(between)]


def test_itk_pipeline_example_writes_what_predict_writes(tmp_path):
    x = np.random.default_rng(9).normal(50.0, 10.0, size=(24, 12, 16)).astype(np.int16)
    path = tmp_path / "in.mha"
    write_mha(str(path), x, spacing=(0.5, 0.5, 2.0))
    for task in ["dna", "ink"]:  # regression (Otsu's threshold) and binary (0.5 on the probability)
        mine, theirs = tmp_path / (task + "-example.mha"), tmp_path / (task + "-predict.mha")
        mine_labels, their_labels = tmp_path / (task + "-example-labels.mha"), tmp_path / (task + "-labels.mha")
        r = subprocess.run([EXAMPLE, SMALL, task, str(path), str(mine), "3", str(mine_labels)], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([REPMODE, "predict", "--model", SMALL, "--task", task, "--input", str(path), "--output",
                            str(theirs), "--labels", str(their_labels)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert image_bytes(mine) == image_bytes(theirs)
        assert image_bytes(mine_labels) == image_bytes(their_labels)
        prediction, _ = read_mha(str(mine))
        labels, header = read_mha(str(mine_labels))
        assert header["ElementType"] == "MET_UCHAR"
        threshold = 0.5 if task == "ink" else otsu(prediction.ravel().astype(np.float64))
        np.testing.assert_array_equal(labels, (prediction > threshold).astype(np.uint8))
        assert 0 < labels.sum() < labels.size
    r = subprocess.run([EXAMPLE, SMALL, "golgi", str(path), str(tmp_path / "no.mha")], capture_output=True, text=True)
    assert r.returncode == 1 and "golgi" in r.stderr, r.stderr
    assert not (tmp_path / "no.mha").exists()
