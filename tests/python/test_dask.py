"""repmode.dask.predict over chunked volumes: on a dask.distributed cluster of two worker processes, from a Zarr store
whose chunks are smaller than the patch and not aligned to it, written to Zarr, equal bit for bit to Model.predict on
the whole volume; the normalization computed from the chunks equal to the core's (z-score and percentile); a task with
2D labels; a halo too small is caught."""
import logging
import os

import dask
import dask.array as da
import numpy as np
import pytest

import repmode
import repmode.dask
from conftest import MODELS, ROOT

PARITY = os.path.join(ROOT, "tests", "fixtures", "parity_small.model.safetensors")  # patch 8 x 12 x 16
INK = os.path.join(MODELS, "ink.safetensors")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                           silence_logs=logging.ERROR)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def volume(shape, seed):
    return (np.random.default_rng(seed).random(shape) * 4000).astype(np.uint16)


def test_zarr_on_a_distributed_cluster_equals_model_predict(client, tmp_path):
    import zarr
    from distributed import get_task_stream
    # The workers are other processes, which found the client's library.
    assert set(client.run(lambda: __import__("repmode")._lib.path).values()) == {repmode._lib.path}
    v = volume((20, 40, 44), 1)
    store = zarr.open(str(tmp_path / "in.zarr"), mode="w", shape=v.shape, chunks=(5, 7, 9), dtype=v.dtype)
    store[:] = v  # chunks smaller than the patch (8, 12, 16), not aligned to it nor to its windows
    x = da.from_zarr(str(tmp_path / "in.zarr"))
    model = repmode.Model(PARITY)
    params = repmode.dask.normalization(x, model)  # computed on the cluster, from the chunks
    assert params == model.normalization(v)
    with get_task_stream(client) as stream:
        result = repmode.dask.predict(x, model, ["dna", "ink"], block=(10, 14, 18), normalization=params)
        result.to_zarr(str(tmp_path / "out.zarr"))
    blocks = [t for t in stream.data if "_predict_block" in t["key"]]
    assert len({t["worker"] for t in blocks}) == 2  # both workers predicted blocks
    out = zarr.open(str(tmp_path / "out.zarr"), mode="r")
    assert out.chunks == (1, 5, 7, 9) and out.dtype == np.float32
    expected = model.predict(v, ["dna", "ink"])
    assert np.array_equal(out[:], expected)
    assert 0 < expected[1].min() and expected[1].max() < 1 and len(np.unique(expected[0])) > v.size // 2
    # Default blocks, normalization computed by predict itself.
    repmode.dask.predict(x, PARITY, "dna").to_zarr(str(tmp_path / "dna.zarr"))
    assert np.array_equal(zarr.open(str(tmp_path / "dna.zarr"), mode="r")[:], expected[0])


@pytest.fixture(scope="module")
def percentile_model(tmp_path_factory):
    """A tiny model (one step) that normalizes with percentiles p2-p97."""
    out = tmp_path_factory.mktemp("percentile") / "p.safetensors"
    x = np.random.default_rng(0).random((8, 16, 16), dtype=np.float32)
    repmode.train({"base_channels": 2, "levels": 1, "patch": [4, 8, 8], "tasks": [{"name": "a"}],
                   "normalization": {"method": "percentile", "low": 2, "high": 97}}, [(x, {"a": x})], out, steps=1)
    return repmode.Model(out)


def test_percentile_normalization_from_chunks_equals_the_core(percentile_model):
    rng = np.random.default_rng(3)
    cases = [rng.standard_normal((9, 13, 11)).astype(np.float32),             # negative and positive
             rng.integers(0, 5, (9, 13, 11)).astype(np.float32),                # many ties
             np.where(rng.random((9, 13, 11)) < 0.5, -0.0, 0.0).astype(np.float32),  # -0 and +0
             np.full((3, 4, 5), 7.0, np.float32)]                               # constant
    with dask.config.set(scheduler="threads"):
        for v in cases:
            got = repmode.dask.normalization(da.from_array(v, chunks=(4, 5, 3)), percentile_model)
            assert got == percentile_model.normalization(v) and got.clip
        v = cases[0]
        result = repmode.dask.predict(da.from_array(v, chunks=(4, 5, 3)), percentile_model, "a")
        assert np.array_equal(result.compute(), percentile_model.predict(v, "a"))
        # The core's refusal of a NaN, naming the same voxel.
        bad = cases[0].copy()
        bad[5, 2, 7] = np.nan
        bad[6, 0, 0] = np.inf
        with pytest.raises(repmode.Error) as core:
            percentile_model.normalization(bad)
        with pytest.raises(repmode.Error) as chunked:
            repmode.dask.normalization(da.from_array(bad, chunks=(4, 5, 3)), percentile_model)
        assert str(chunked.value) == str(core.value) and "NaN" in str(core.value)


def test_zscore_from_chunks_equals_the_core_on_awkward_values():
    model = repmode.Model(PARITY)
    rng = np.random.default_rng(4)
    v = (rng.standard_normal((17, 19, 23)) * 1e6 + 3.3e7).astype(np.float64)  # rounding in every partial sum
    with dask.config.set(scheduler="threads"):
        got = repmode.dask.normalization(da.from_array(v, chunks=(3, 8, 5)), model)
    assert got == model.normalization(v)


def test_2d_labels_are_predicted_in_blocks_of_the_whole_depth():
    model = repmode.Model(INK)  # patch 16 x 64 x 64, a binary task with 2D labels
    v = volume((16, 150, 140), 2)
    with dask.config.set(scheduler="threads"):
        result = repmode.dask.predict(da.from_array(v, chunks=(4, 50, 35)), model, "ink", block=(16, 75, 70))
        assert result.shape == (1, 150, 140) and result.chunks == ((1,), (50,) * 3, (35,) * 4)
        assert np.array_equal(result.compute(), model.predict(v, "ink"))


def test_uncertainty_in_blocks_equals_model_predict():
    # Monte Carlo passes block by block: the draws are keyed by window and voxel, so the blocks are the whole run's.
    model = repmode.Model(PARITY)
    v = volume((20, 30, 37), 3)
    options = {"samples": 3, "seed": 4, "dropout": 0.2, "gate_noise": 0.3}
    want = model.predict(v, ["dna", "ink"], uncertainty=options)
    with dask.config.set(scheduler="threads"):
        mean, sd = repmode.dask.predict(da.from_array(v, chunks=(7, 11, 13)), model, ["dna", "ink"],
                                        block=(10, 14, 18), uncertainty=options)
        assert mean.shape == sd.shape == (2, 20, 30, 37)
        assert np.array_equal(mean.compute(), want[0]) and np.array_equal(sd.compute(), want[1])
    assert want[1].max() > 0
    # A task with 2D labels: one layer of each.
    ink = repmode.Model(INK)
    w = volume((16, 80, 70), 5)
    with dask.config.set(scheduler="threads"):
        mean2d, sd2d = repmode.dask.predict(da.from_array(w, chunks=(4, 40, 35)), ink, "ink", block=(16, 64, 64),
                                            uncertainty={"samples": 2})
        got = (mean2d.compute(), sd2d.compute())
    expected = ink.predict(w, "ink", uncertainty={"samples": 2})
    assert got[0].shape == (1, 80, 70)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_a_halo_too_small_is_caught(monkeypatch):
    # Half the patch would do for blocks on the window grid (stride patch / 2 here); a quarter is too little.
    monkeypatch.setattr(repmode.dask, "halo", lambda patch: tuple(p // 4 for p in patch))
    v = volume((16, 36, 48), 3)
    with dask.config.set(scheduler="sync"):
        with pytest.raises(repmode.Error, match="halo is too small"):
            repmode.dask.predict(da.from_array(v, chunks=(8, 12, 16)), PARITY, "dna", block=(8, 12, 16)).compute()
