"""Failures come back as repmode.Error with the core's message; cancelling (a progress callback, or Ctrl-C) stops the
core and leaves the model usable."""
import os
import signal

import numpy as np
import pytest

import repmode
from conftest import MODELS

CELLS = os.path.join(MODELS, "cells.safetensors")


def test_missing_file_gives_the_core_message(tmp_path):
    missing = str(tmp_path / "nothing.safetensors")
    with pytest.raises(repmode.Error, match="nothing.safetensors"):
        repmode.Model(missing)


def test_malformed_file_gives_the_core_message(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(repmode.Error, match="bad.safetensors"):
        repmode.Model(str(bad))


def test_unknown_task_names_the_model_tasks():
    model = repmode.Model(CELLS)
    with pytest.raises(repmode.Error, match="no task 'golgi'.*nuclei, membranes"):
        model.predict(np.zeros((16, 32, 32)), "golgi")


def test_2d_array_is_refused():
    with pytest.raises(repmode.Error, match="3D array"):
        repmode.Model(CELLS).predict(np.zeros((32, 32)), "nuclei")


def test_bad_patch_gives_the_core_message():
    # Not a multiple of 2^levels (8): the core refuses the window, and says why.
    with pytest.raises(repmode.Error, match="patch") as e:
        repmode.Model(CELLS).predict(np.zeros((16, 32, 32)), "nuclei", patch=(16, 30, 32))
    assert not isinstance(e.value, repmode.Cancelled)


def test_progress_callback_cancels():
    model = repmode.Model(CELLS)
    seen = []

    def stop_at_half(fraction):
        seen.append(fraction)
        return fraction >= 0.5

    volume = np.random.default_rng(1).random((16, 64, 64))
    with pytest.raises(repmode.Cancelled):
        model.predict(volume, "nuclei", progress=stop_at_half)
    assert seen and seen[-1] >= 0.5 and max(seen) < 1.0
    # Nothing is left half done: the next prediction runs whole, with fractions rising to 1.
    seen.clear()
    model.predict(volume, "nuclei", progress=lambda f: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_ctrl_c_cancels_with_keyboard_interrupt():
    model = repmode.Model(CELLS)
    calls = []

    def interrupt_once(fraction):
        calls.append(fraction)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the core computes

    with pytest.raises(KeyboardInterrupt):
        model.predict(np.random.default_rng(2).random((16, 64, 64)), "nuclei", progress=interrupt_once)
    assert len(calls) <= 2  # stopped at once, not after the last of its 9 windows


def test_exception_in_callback_is_raised():
    with pytest.raises(ZeroDivisionError):
        repmode.Model(CELLS).predict(np.zeros((16, 32, 32)), "nuclei", progress=lambda f: 1 / 0)


def test_thread_counts_beyond_the_cores_limit_are_refused_before_any_work():
    header = open(os.path.join(os.path.dirname(__file__), "..", "..", "include", "repmode", "core.h")).read()
    limit = int(header.split("#define RM_MAX_THREADS")[1].split()[0])
    assert repmode._lib.MAX_THREADS == limit
    model = repmode.Model(CELLS)
    for threads in (100000, limit + 1, -1):  # 100000 crashed inside OpenMP before the limit
        with pytest.raises(repmode.Error, match="threads=%d is out of range: 0 \\(all cores\\) to %d" % (threads, limit)):
            model.predict(np.zeros((16, 32, 32)), "nuclei", threads=threads)


def test_non_finite_voxels_are_refused_or_replaced_as_the_command_line_does():
    x = np.random.default_rng(5).normal(100.0, 20.0, size=(16, 32, 32)).astype(np.float32)
    x[3, 7, 11] = np.nan
    x[9, 0, 1] = -np.inf
    model = repmode.Model(CELLS)
    with pytest.raises(repmode.Error, match=r"2 of 16384 voxels are not finite.*\(x, y, z\) = \(11, 7, 3\)"):
        model.predict(x, "nuclei")
    finite = x[np.isfinite(x)]
    total = 0.0
    for v in finite:  # the core's order: index order, in double
        total += float(v)
    for policy, fill in (("zero", np.float32(0.0)), ("mean", np.float32(total / finite.size))):
        want = model.predict(np.where(np.isfinite(x), x, fill).astype(np.float32), "nuclei")
        got = model.predict(x, "nuclei", non_finite=policy)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), policy
    with pytest.raises(repmode.Error, match="'median' is not a policy"):
        model.predict(x, "nuclei", non_finite="median")
