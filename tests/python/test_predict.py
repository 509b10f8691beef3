"""repmode.Model over NumPy volumes against `repmode predict` on the same volumes, bit for bit: predictions and label
maps, a regression model with several tasks and a binary task with 2D labels."""
import os
import threading
import time

import numpy as np
import pytest

import repmode
from conftest import MODELS, cli_predict


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
