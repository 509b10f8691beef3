"""repmode.train through the core's trainer: reproducible (same seed, same bytes), learning a known function, the same
model file as `repmode train` on the same CSV and seed (NRRD, TIFF and NIfTI files, a folder of TIFF layers with 2D
labels and a mask), stopped by its callback and resumed from the checkpoint."""
import json
import os

import numpy as np
import pytest

import repmode
from conftest import REPMODE, run

TINY = {"base_channels": 4, "levels": 2, "patch": [8, 16, 16]}


def blobs(shape, n, seed):
    """Gaussian blobs and a little noise: a smooth volume."""
    r = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    v = np.zeros(shape, np.float32)
    for _ in range(n):
        c, s = r.random(3) * shape, r.uniform(1.5, 4)
        v += np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * s * s)).astype(np.float32)
    return v + 0.05 * r.standard_normal(shape).astype(np.float32)


def config(*tasks, **extra):
    return dict(TINY, tasks=[dict(t) if isinstance(t, dict) else {"name": t} for t in tasks], **extra)


def test_same_seed_same_bytes_and_it_learns(tmp_path):
    # The target is the square of the input: a known function the network learns from scratch.
    x = blobs((16, 32, 32), 30, 1)
    cfg = config("square")
    a = repmode.train(cfg, [(x, {"square": x ** 2})], tmp_path / "a.safetensors", steps=40, batch=2, seed=1,
                      threads=1)
    b = repmode.train(cfg, [repmode.Sample(x, {"square": x ** 2}, spacing=(1, 0.5, 0.5))], tmp_path / "b.safetensors",
                      steps=40, batch=2, seed=1, threads=2)
    c = repmode.train(cfg, [(x, {"square": x ** 2})], tmp_path / "c.safetensors", steps=40, batch=2, seed=2)
    assert np.array_equal(a.losses, b.losses) and a.steps == 40 and len(a.losses) == 40
    model_a, model_b = (tmp_path / "a.safetensors").read_bytes(), (tmp_path / "b.safetensors").read_bytes()
    # Only the provenance tells them apart (b's records its spacing): the weights are the same bytes.
    assert _weights(model_a) == _weights(model_b)
    repmode.train(cfg, [(x, {"square": x ** 2})], tmp_path / "again.safetensors", steps=40, batch=2, seed=1)
    assert (tmp_path / "again.safetensors").read_bytes() == model_a
    assert not np.array_equal(a.losses, c.losses)
    # The loss falls, and a volume the network never saw is predicted well.
    assert a.losses[-5:].mean() < 0.5 * a.losses[:5].mean()
    unseen = blobs((16, 32, 32), 30, 2)
    metrics = repmode.evaluate(a.path, unseen, unseen ** 2, "square")
    untrained = repmode.train(cfg, [(x, {"square": x ** 2})], tmp_path / "u.safetensors", steps=1, seed=1)
    assert metrics["pearson"] > 0.9 and metrics["r2"] > 0.4
    assert repmode.evaluate(untrained.path, unseen, unseen ** 2, "square")["r2"] < 0.1
    meta = _metadata(model_b)
    assert json.loads(meta["repmode.provenance"])["spacing"] == [1.0, 0.5, 0.5]
    assert json.loads(meta["repmode.provenance"])["data"] == "arrays"


def _header(data):
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), 8 + n


def _metadata(data):
    return _header(data)[0]["__metadata__"]


def _weights(data):
    """The tensors of a safetensors file: their names, shapes and bytes."""
    header, start = _header(data)
    return {k: (v["shape"], data[start + v["data_offsets"][0]:start + v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"}


def cli_train(tmp_path, cfg, csv, out, *args):
    cfg_path = tmp_path / (out + ".json")
    cfg_path.write_text(json.dumps(cfg))
    log = tmp_path / (out + ".jsonl")
    run([REPMODE, "train", "--config", cfg_path, "--data", csv, "--out", tmp_path / out, "--log", log] + list(args))
    return (tmp_path / out).read_bytes(), [json.loads(line)["loss"] for line in log.read_text().splitlines()]


def test_the_command_line_model_from_the_same_csv(cells, tmp_path):
    _, _, folder = cells
    cfg = config("nuclei", "membranes", "nucleoli", "mitochondria")
    cli, cli_losses = cli_train(tmp_path, cfg, folder / "data.csv", "cli.safetensors", "--steps", "30", "--seed", "3",
                                "--batch", "2", "--lr", "3e-3", "--warmup", "5")
    got = repmode.train(cfg, folder / "data.csv", tmp_path / "py.safetensors", steps=30, seed=3, batch=2, lr=3e-3,
                        warmup=5)
    assert got.losses.tolist() == pytest.approx(cli_losses, rel=1e-7)  # the log's floats, printed by cJSON
    assert (tmp_path / "py.safetensors").read_bytes() == cli  # provenance included
    training = {"patch": TINY["patch"], "batch": 2,
                "optimizer": {"kind": "adamw", "lr": 0.003, "beta1": 0.9, "beta2": 0.999, "eps": 1e-08,
                              "weight_decay": 0.01},
                "schedule": {"kind": "cosine", "warmup": 5, "total_steps": 30, "floor": 0.1}, "smoothing": 0.1,
                "sampling": "random",
                "augment": {"flips": True, "rotations": False, "jitter": 0, "blur": 0, "gamma": 0, "contrast": 0,
                            "illumination": 0, "brightness": 0, "noise": 0, "depth_shift": 0},
                "ema": 0}
    assert json.loads(_metadata(cli)["repmode.provenance"]) == {"software": repmode._train._software(),
                                                                "data": "data.csv", "steps": 30, "seed": 3,
                                                                "training": training}


def test_augmentation_and_the_weight_average_as_the_command_line(cells, tmp_path):
    _, _, folder = cells
    cfg = config("nuclei", "membranes", "nucleoli", "mitochondria", augment="ink")
    cli, _ = cli_train(tmp_path, cfg, folder / "data.csv", "cli.safetensors", "--steps", "8", "--seed", "3",
                       "--batch", "2", "--augment", "label-free", "--blur", "2", "--depth-shift", "1", "--ema", "0.9")
    repmode.train(cfg, folder / "data.csv", tmp_path / "py.safetensors", steps=8, seed=3, batch=2,
                  augment="label-free", blur=2, depth_shift=1, ema=0.9)
    assert (tmp_path / "py.safetensors").read_bytes() == cli
    with pytest.raises(repmode.Error, match="'gamma'"):
        repmode.train(cfg, folder / "data.csv", tmp_path / "bad.safetensors", steps=2, gamma=-1)
    with pytest.raises(repmode.Error, match="not 'strong'"):
        repmode.train(cfg, folder / "data.csv", tmp_path / "bad.safetensors", steps=2, augment="strong")


def test_tiff_nifti_and_percentile_as_the_command_line(tmp_path):
    """A signal as a TIFF stack and targets as NIfTI (read by tifffile and nibabel here, by ITK in the CLI)."""
    import nibabel
    import tifffile
    x = (blobs((16, 24, 32), 20, 5) * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "signal.tif", x)
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray((x.astype(np.float32) ** 0.5).T), np.eye(4)),
                 str(tmp_path / "root.nii.gz"))
    label = (x > np.percentile(x, 80)).astype(np.uint8)
    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(label.T), np.eye(4)), str(tmp_path / "label.nii"))
    np.save(tmp_path / "signal.npy", x)
    (tmp_path / "data.csv").write_text("signal,target,task\nsignal.tif,root.nii.gz,root\nsignal.tif,label.nii,bright\n")
    cfg = config("root", {"name": "bright", "kind": "binary"}, normalization="percentile")
    cli, cli_losses = cli_train(tmp_path, cfg, tmp_path / "data.csv", "cli.safetensors", "--steps", "12",
                                "--seed", "7", "--batch", "3", "--rotations")
    got = repmode.train(cfg, tmp_path / "data.csv", tmp_path / "py.safetensors", steps=12, seed=7, batch=3,
                        rotations=True)
    assert (tmp_path / "py.safetensors").read_bytes() == cli
    assert got.losses.tolist() == pytest.approx(cli_losses, rel=1e-7)
    # The arrays themselves train the same weights (only the provenance differs).
    arrays = repmode.train(cfg, [(x, {"root": x.astype(np.float32) ** 0.5, "bright": label})],
                           tmp_path / "arrays.safetensors", steps=12, seed=7, batch=3, rotations=True)
    assert np.array_equal(arrays.losses, got.losses)
    assert _weights((tmp_path / "arrays.safetensors").read_bytes()) == _weights(cli)
    # .npy reads too; a format Python does not read is refused, naming the file.
    (tmp_path / "npy.csv").write_text("signal,target,task\nsignal.npy,label.nii,bright\n")
    repmode.train(cfg, tmp_path / "npy.csv", tmp_path / "npy.safetensors", steps=1)
    (tmp_path / "bad.csv").write_text("signal,target,task\nsignal.tif,label.png,bright\n")
    (tmp_path / "label.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(repmode.Error, match="label.png"):
        repmode.train(cfg, tmp_path / "bad.csv", tmp_path / "bad.safetensors", steps=1)


def test_2d_labels_of_a_folder_of_layers_as_the_command_line(scroll, tmp_path):
    layers, surface, folder = scroll
    cfg = config({"name": "ink", "kind": "binary", "output": "2d"}, patch=[8, 32, 32])
    cli, _ = cli_train(tmp_path, cfg, folder / "data.csv", "cli.safetensors", "--steps", "6", "--seed", "1",
                       "--sampling", "buckets", "--batch", "2")
    repmode.train(cfg, folder / "data.csv", tmp_path / "py.safetensors", steps=6, seed=1, sampling="buckets", batch=2)
    assert (tmp_path / "py.safetensors").read_bytes() == cli


def test_cancel_then_resume_from_the_checkpoint(tmp_path):
    x = blobs((16, 32, 32), 20, 3)
    data = [(x, {"a": x ** 2})]
    cfg = config("a")
    whole = repmode.train(cfg, data, tmp_path / "whole.safetensors", steps=10, seed=4, batch=2)
    seen = []

    def stop_at_4(step, steps, loss):
        seen.append((step, steps, loss))
        return step == 4

    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(repmode.Cancelled, match="step 4"):
        repmode.train(cfg, data, tmp_path / "part.safetensors", steps=10, seed=4, batch=2, progress=stop_at_4,
                      checkpoint=ckpt)
    assert [s[0] for s in seen] == [1, 2, 3, 4] and seen[0][1] == 10
    assert [s[2] for s in seen] == pytest.approx(whole.losses[:4].tolist(), rel=0, abs=0)
    assert not (tmp_path / "part.safetensors").exists() and ckpt.exists()
    rest = repmode.train(cfg, data, tmp_path / "part.safetensors", steps=10, seed=4, batch=2, resume=ckpt)
    assert rest.steps == 10 and np.array_equal(rest.losses, whole.losses[4:])
    assert (tmp_path / "part.safetensors").read_bytes() == (tmp_path / "whole.safetensors").read_bytes()


def test_bad_configurations_and_data_are_refused(tmp_path):
    x = np.zeros((8, 16, 16), np.float32)
    with pytest.raises(repmode.Error, match="config: .*colour"):
        repmode.train(config("a", colour=1), [(x, {"a": x})], tmp_path / "m.safetensors", steps=1)
    with pytest.raises(repmode.Error, match="not one of the configuration's tasks"):
        repmode.train(config("a"), [(x, {"b": x})], tmp_path / "m.safetensors", steps=1)
    with pytest.raises(repmode.Error, match="same size"):
        repmode.train(config("a"), [(x, {"a": x[:4]})], tmp_path / "m.safetensors", steps=1)
    with pytest.raises(repmode.Error, match="multiple of 2\\^levels"):
        repmode.train(config("a"), [(x, {"a": x})], tmp_path / "m.safetensors", steps=1, patch=(8, 14, 16))
    with pytest.raises(repmode.Error, match="optimizer"):
        repmode.train(config("a"), [(x, {"a": x})], tmp_path / "m.safetensors", steps=1, optimizer="sgd")
    assert not (tmp_path / "m.safetensors").exists()
    # A configuration file's errors name it.
    (tmp_path / "c.json").write_text('{"levels": 0, "tasks": [{"name": "a"}]}')
    with pytest.raises(repmode.Error, match="c.json: config: .*levels"):
        repmode.train(str(tmp_path / "c.json"), [(x, {"a": x})], tmp_path / "m.safetensors", steps=1)


def test_ctrl_c_stops_training(tmp_path):
    import signal
    x = blobs((8, 16, 16), 5, 6)
    steps = []

    def interrupt(step, total, loss):
        steps.append(step)
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the run

    with pytest.raises(KeyboardInterrupt):
        repmode.train(config("a"), [(x, {"a": x})], tmp_path / "m.safetensors", steps=50, progress=interrupt)
    assert steps[-1] <= 3 and not (tmp_path / "m.safetensors").exists()
