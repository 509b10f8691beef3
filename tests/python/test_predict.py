"""repmode.Model over NumPy volumes against `repmode predict` on the same volumes, bit for bit: predictions and label
maps, a regression model with several tasks and a binary task with 2D labels, and Monte Carlo uncertainty."""
import os
import threading
import time

import numpy as np
import pytest

import repmode
from conftest import MODELS, REPMODE, ROOT, cli_predict, read_mha, run


def test_model_describes_tasks_and_configuration():
    cells = repmode.Model(os.path.join(MODELS, "cells.safetensors"))
    assert [t.name for t in cells.tasks] == ["nuclei", "membranes", "nucleoli", "mitochondria"]
    assert {t.kind for t in cells.tasks} == {"regression"}
    assert cells.config["patch"] == [16, 32, 32] and cells.config["levels"] == 3
    ink = repmode.Model(os.path.join(MODELS, "ink.safetensors")).task("ink")
    assert ink.kind == "binary" and ink.output_2d
    assert ink.threshold == pytest.approx(0.8476064)


def test_several_tasks_equal_the_command_line(cells):
    volume, signal, folder = cells
    expected, expected_labels = cli_predict(folder, "cells.safetensors", "nuclei,membranes", signal, "cells")
    model = repmode.Model(os.path.join(MODELS, "cells.safetensors"))
    got = model.predict(volume, ["nuclei", "membranes"], threads=2)
    assert got.dtype == np.float32 and got.shape == (2, 16, 64, 64)
    # The CLI writes one component per task, last: (Z, Y, X, 2).
    assert np.array_equal(got, np.moveaxis(expected, -1, 0))
    assert expected.std() > 0.01  # a prediction, not a constant
    # One task alone is the same as within a list; the input's dtype does not matter (float64 here).
    assert np.array_equal(model.predict(volume.astype(np.float64), "membranes"), got[1])
    # Regression tasks without thresholds: Otsu's threshold of each prediction, as the CLI's label map.
    labels = model.labels(got, ["nuclei", "membranes"])
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1, 2}
    assert np.array_equal(labels, expected_labels)


def test_binary_task_with_2d_labels_equals_the_command_line(scroll):
    layers, surface, folder = scroll
    expected, expected_labels = cli_predict(folder, "ink.safetensors", "ink", surface, "ink")
    assert expected.shape == (1, 64, 64)  # the CLI writes a one-layer image
    model = repmode.Model(os.path.join(MODELS, "ink.safetensors"))
    got = model.predict(layers, "ink")  # uint16 layers, converted as the CLI converts them
    assert got.shape == (1, 64, 64) and np.array_equal(got, expected)
    assert 0 <= got.min() and got.max() <= 1 and expected.std() > 0.01
    labels = model.labels(got, "ink")  # the model's threshold
    assert model.thresholds_used == [pytest.approx(0.8476064)]
    assert np.array_equal(labels, expected_labels) and labels.any()
    assert np.array_equal(model.labels(got, "ink", threshold=0.5), (got > 0.5).astype(np.uint8))


def test_the_2d_decoder_equals_the_command_line(scroll, tmp_path):
    """decoder 2d (fixture parity_2d; windows along depth too): Model.predict writes the command line's map."""
    layers, surface, _ = scroll
    model_file = os.path.join(ROOT, "tests", "fixtures", "parity_2d.model.safetensors")
    out = tmp_path / "ink.mha"
    run([REPMODE, "predict", "--model", model_file, "--task", "ink", "--input", surface, "--output", out])
    model = repmode.Model(model_file)
    assert model.config["decoder"] == "2d"
    got = model.predict(layers, "ink", threads=2)
    assert got.shape == (1, 64, 64) and np.array_equal(got, read_mha(str(out))[0])
    mean, spread = model.predict(layers, "ink", uncertainty={"samples": 2, "seed": 1})
    assert mean.shape == spread.shape == (1, 64, 64) and spread.max() > 0


def test_uncertainty_equals_the_command_line_and_is_seeded(cells, tmp_path):
    volume, signal, folder = cells
    out, sd = tmp_path / "mean.mha", tmp_path / "sd.mha"
    run([REPMODE, "predict", "--model", os.path.join(MODELS, "cells.safetensors"), "--task", "nuclei", "--input",
         signal, "--output", out, "--uncertainty", sd, "--mc-samples", "3", "--seed", "5"])
    model = repmode.Model(os.path.join(MODELS, "cells.safetensors"))
    mean, spread = model.predict(volume, "nuclei", uncertainty={"samples": 3, "seed": 5}, threads=2)
    assert np.array_equal(mean, read_mha(str(out))[0]) and np.array_equal(spread, read_mha(str(sd))[0])
    assert spread.min() >= 0 and spread.max() > 0
    again = model.predict(volume, "nuclei", uncertainty={"samples": 3, "seed": 5}, threads=1)
    assert np.array_equal(again[0], mean) and np.array_equal(again[1], spread)
    # One pass without dropout or noise: the plain prediction and no spread; several tasks stack both.
    quiet = model.predict(volume, ["nuclei", "membranes"], uncertainty={"samples": 1, "dropout": 0, "gate_noise": 0})
    assert np.array_equal(quiet[0], model.predict(volume, ["nuclei", "membranes"])) and not quiet[1].any()
    with pytest.raises(repmode.Error, match="unknown option"):
        model.predict(volume, "nuclei", uncertainty={"passes": 3})


def test_tta_equals_the_command_line_and_dask(cells, tmp_path):
    volume, signal, folder = cells
    out = tmp_path / "tta.mha"
    run([REPMODE, "predict", "--model", os.path.join(MODELS, "cells.safetensors"), "--task", "nuclei", "--input",
         signal, "--output", out, "--tta"])
    model = repmode.Model(os.path.join(MODELS, "cells.safetensors"))
    got = model.predict(volume, "nuclei", tta=True)
    assert np.array_equal(got, read_mha(str(out))[0])
    assert not np.array_equal(got, model.predict(volume, "nuclei"))
    import dask.array as da
    from repmode import dask as rd
    blocks = rd.predict(da.from_array(volume, chunks=(16, 32, 32)), model, "nuclei", tta=True).compute()
    assert np.array_equal(blocks, got)


def test_uncertainty_of_a_task_with_2d_labels_is_one_layer(scroll):
    layers, _, _ = scroll
    model = repmode.Model(os.path.join(MODELS, "ink.safetensors"))
    mean, spread = model.predict(layers, "ink", uncertainty=True)
    assert mean.shape == spread.shape == (1, 64, 64)
    assert 0 < mean.min() and mean.max() < 1 and spread.max() > 0


def test_the_gil_is_released_while_the_core_computes():
    # Another thread wakes every millisecond while the core predicts. With the GIL released through the C calls it
    # wakes on time; were it held, it would stall for whole windows (about 99% of the run, measured with PyDLL).
    model = repmode.Model(os.path.join(MODELS, "cells.safetensors"))
    done = threading.Event()

    def predict():
        try:
            model.predict(np.random.default_rng(3).random((16, 64, 64)), "nuclei", threads=1)
        finally:
            done.set()

    worker = threading.Thread(target=predict)
    wakes = [time.perf_counter()]
    worker.start()
    while not done.is_set():
        time.sleep(0.001)
        wakes.append(time.perf_counter())
    worker.join()
    gaps = np.diff(wakes)
    stalled = gaps[gaps > 0.02].sum() / (wakes[-1] - wakes[0])
    assert stalled < 0.5, (stalled, gaps.max())
