"""repmode.train's fine-tuning (init, freeze, encoder_lr; docs/network.md §5.6): the command line's `repmode train
--init` run from Python. The same inputs give the same model file, byte for byte, provenance included, as the command
line; with steps=0 the model written is the one it starts from (every tensor, every prediction); bad combinations are
refused with the command line's messages and write nothing."""
import hashlib
import json
import subprocess

import numpy as np
import pytest

import repmode
from conftest import REPMODE, run
from test_train import TINY, _metadata, _weights

STEPS = ["--steps", "4", "--batch", "2", "--seed", "3", "--lr", "3e-3"]
KWARGS = {"steps": 4, "batch": 2, "seed": 3, "lr": 3e-3}


@pytest.fixture(scope="module")
def start(cells, tmp_path_factory):
    """(the cell volume, a folder with m0.safetensors trained on two of its structures, the CSV of those (two.csv)
    and of all four (four.csv), absolute paths)."""
    volume, _, folder = cells
    d = tmp_path_factory.mktemp("fine_tune")
    rows = (folder / "data.csv").read_text().splitlines()
    absolute = [rows[0]] + [",".join(str(folder / c) if i < 2 else c for i, c in enumerate(r.split(",")))
                            for r in rows[1:]]
    (d / "four.csv").write_text("\n".join(absolute) + "\n")
    (d / "two.csv").write_text("\n".join(r for r in absolute if not r.endswith(("nucleoli", "mitochondria"))) + "\n")
    cfg = dict(TINY, tasks=[{"name": "nuclei"}, {"name": "membranes"}])
    repmode.train(cfg, d / "two.csv", d / "m0.safetensors", steps=6, batch=2, seed=1)
    return volume, d


def cli_train(d, out, *args):
    run([REPMODE, "train", "--init", d / "m0.safetensors", "--out", out] + list(args))
    return out.read_bytes()


def cli_error(*args):
    """The message `repmode train` fails with (the last line it prints, without "repmode: ")."""
    r = subprocess.run([str(a) for a in [REPMODE, "train"] + list(args)], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    return r.stderr.strip().splitlines()[-1].replace("repmode: ", "", 1)


def _provenance(data):
    return json.loads(_metadata(data)["repmode.provenance"])


@pytest.mark.parametrize("cli_options, options, tail", [
    ([], {}, ',"encoder_lr":1}'),  # cJSON's 1, not Python's 1.0
    (["--freeze", "encoder"], {"freeze": "encoder"}, ',"freeze":"encoder"}'),
    (["--encoder-lr", "0.25"], {"encoder_lr": 0.25}, ',"encoder_lr":0.25}'),
], ids=["init", "freeze", "encoder_lr"])
def test_the_command_line_model_from_a_trained_one(start, tmp_path, cli_options, options, tail):
    _, d = start
    cli = cli_train(d, tmp_path / "cli.safetensors", "--data", d / "two.csv", *(STEPS + cli_options))
    got = repmode.train(None, d / "two.csv", tmp_path / "py.safetensors", init=d / "m0.safetensors", **KWARGS,
                        **options)
    assert got.steps == 4 and len(got.losses) == 4
    assert (tmp_path / "py.safetensors").read_bytes() == cli  # provenance included
    m0 = (d / "m0.safetensors").read_bytes()
    provenance = _provenance(cli)
    assert provenance["init"] == {"file": "m0.safetensors", "sha256": hashlib.sha256(m0).hexdigest(),
                                  "provenance": _provenance(m0)}
    assert list(provenance)[-2] == "init" and _metadata(cli)["repmode.provenance"].endswith(tail)
    before, after = _weights(m0), _weights(cli)
    encoder = [k for k in before if k.startswith("encoder_block")]
    assert encoder and before.keys() == after.keys()
    if "freeze" in options:  # the encoder, BatchNorm statistics included, as m0 has it; the rest trained
        assert all(after[k] == before[k] for k in encoder)
        assert any(after[k] != before[k] for k in before if k not in encoder)
    else:
        assert any(after[k] != before[k] for k in encoder)


def test_a_configuration_maps_the_tasks_by_name(start, tmp_path):
    # Tasks reordered, a new one (its gate columns start at 0), its own normalization: as the command line.
    _, d = start
    cfg = dict(TINY, tasks=[{"name": "membranes"}, {"name": "mitochondria"}, {"name": "nuclei"}],
               normalization="percentile", dropout=0.1)
    (d / "mapped.json").write_text(json.dumps(cfg))
    (d / "three.csv").write_text("\n".join(r for r in (d / "four.csv").read_text().splitlines()
                                           if not r.endswith("nucleoli")) + "\n")
    cli = cli_train(d, tmp_path / "cli.safetensors", "--config", d / "mapped.json", "--data", d / "three.csv",
                    "--freeze", "encoder", *STEPS)
    repmode.train(d / "mapped.json", d / "three.csv", tmp_path / "py.safetensors", init=d / "m0.safetensors",
                  freeze="encoder", **KWARGS)
    assert (tmp_path / "py.safetensors").read_bytes() == cli
    # The configuration as a dict trains the same weights (the provenance is the same too: it names no config).
    repmode.train(cfg, d / "three.csv", tmp_path / "dict.safetensors", init=d / "m0.safetensors", freeze="encoder",
                  **KWARGS)
    assert (tmp_path / "dict.safetensors").read_bytes() == cli
    assert [t.name for t in repmode.Model(tmp_path / "py.safetensors").tasks] == ["membranes", "mitochondria",
                                                                                    "nuclei"]


def test_no_step_writes_the_model_it_starts_from(start, tmp_path):
    volume, d = start
    m0 = repmode.Model(d / "m0.safetensors")
    got = repmode.train(None, d / "two.csv", tmp_path / "py.safetensors", steps=0, init=d / "m0.safetensors")
    assert got.steps == 0 and len(got.losses) == 0
    data = (tmp_path / "py.safetensors").read_bytes()
    assert _weights(data) == _weights((d / "m0.safetensors").read_bytes())  # every tensor, read independently
    assert data == cli_train(d, tmp_path / "cli.safetensors", "--data", d / "two.csv", "--steps", "0")
    assert _provenance(data)["steps"] == 0
    tuned = repmode.Model(tmp_path / "py.safetensors")
    for task in ("nuclei", "membranes"):
        assert np.array_equal(tuned.predict(volume, task), m0.predict(volume, task)), task
    # With a configuration that reorders the tasks: each predicts the same bytes by name.
    mapped = repmode.train(dict(TINY, tasks=[{"name": "membranes"}, {"name": "nuclei"}]), d / "two.csv",
                           tmp_path / "mapped.safetensors", steps=0, init=d / "m0.safetensors")
    mapped = repmode.Model(mapped.path)
    for task in ("nuclei", "membranes"):
        assert np.array_equal(mapped.predict(volume, task), m0.predict(volume, task)), task


def test_bad_combinations_are_refused_as_the_command_line(start, tmp_path):
    _, d = start
    m0, data, out = d / "m0.safetensors", d / "two.csv", tmp_path / "m.safetensors"
    common = ["--data", data, "--out", out]

    def refused(cli_args, **kwargs):
        """Python's message, checked against the command line's (its options named as Python's arguments)."""
        with pytest.raises(repmode.Error) as e:
            repmode.train(kwargs.pop("config", None), data, out, steps=1, **kwargs)
        cli = cli_error(*(cli_args + common))
        for option, argument in (("--config C.json", "config"),
                                 ("--init M0 to fine-tune a trained model", "init, a trained model's path, to "
                                                                            "fine-tune it"),
                                 ("--init", "init"), ("--freeze encoder", "freeze=\"encoder\""),
                                 ("--freeze", "freeze"), ("--encoder-lr", "encoder_lr")):
            cli = cli.replace(option, argument)
        assert str(e.value) == cli
        return cli

    assert "exclude each other" in refused(["--init", m0, "--freeze", "encoder", "--encoder-lr", "0.5"], init=m0,
                                           freeze="encoder", encoder_lr=0.5)
    assert "cannot open" in refused(["--init", d / "missing.safetensors"], init=d / "missing.safetensors")
    (d / "wide.json").write_text(json.dumps(dict(TINY, base_channels=8, tasks=[{"name": "nuclei"}])))
    wide = str(d / "wide.json")
    assert "'base_channels' differs" in refused(["--config", wide, "--init", m0], config=wide, init=m0)
    assert "needs init" in refused(["--config", wide, "--freeze", "encoder"], config=wide, freeze="encoder")
    assert "needs init" in refused(["--config", wide, "--encoder-lr", "0.5"], config=wide, encoder_lr=0.5)
    assert "(0, 1]" in refused(["--init", m0, "--encoder-lr", "1.5"], init=m0, encoder_lr=1.5)
    assert "not 'decoder'" in refused(["--init", m0, "--freeze", "decoder"], init=m0, freeze="decoder")
    assert "is required" in refused([])
    # A task the model has, of another kind (the core's message, after the configuration and the model).
    with pytest.raises(repmode.Error, match="^config \\(init .*m0.safetensors\\): .*nuclei"):
        repmode.train(dict(TINY, tasks=[{"name": "nuclei", "kind": "binary"}]), data, out, steps=1, init=m0)
    assert not out.exists()
