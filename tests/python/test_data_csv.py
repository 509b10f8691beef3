"""repmode.train's data CSV (docs/cli.md §4.2) read as `repmode train` reads it: RFC 4180 quoting, a byte-order mark,
CRLF and CR line ends give the rows Python's csv module reads, and the same model file as the command line; bad CSVs
give the command line's message, word for word."""
import json
import subprocess

import pytest

import repmode
from conftest import REPMODE
import csv_cases

CONFIG = {"base_channels": 2, "levels": 1, "patch": [8, 16, 16],
          "tasks": [{"name": "nuclei"}, {"name": "membranes", "kind": "binary"}]}


def test_quoted_csv_reads_as_the_csv_module_and_the_command_line(cells, tmp_path):
    path = csv_cases.write_quoted(cells[2], tmp_path)
    rows = repmode._train._csv_rows(path)
    assert [l for l, *_ in rows] == [3, 4]
    files = []
    for _, signal, target, _, mask in rows:
        files += ([] if signal in files else [signal]) + [target] + ([mask] if mask else [])
    assert files == csv_cases.csv_module_reads(path)
    got = repmode.train(CONFIG, path, tmp_path / "py.safetensors", steps=1, batch=1)
    (tmp_path / "c.json").write_text(json.dumps(CONFIG))
    r = subprocess.run([REPMODE, "train", "--config", tmp_path / "c.json", "--data", path, "--out",
                        tmp_path / "cli.safetensors", "--steps", "1", "--batch", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cli.safetensors").read_bytes() == open(got.path, "rb").read()


@pytest.mark.parametrize("text, where", csv_cases.BAD)
def test_bad_csvs_give_the_command_lines_message(tmp_path, text, where):
    path = tmp_path / "d.csv"
    path.write_bytes(text)
    (tmp_path / "c.json").write_text(json.dumps(CONFIG))
    r = subprocess.run([REPMODE, "train", "--config", tmp_path / "c.json", "--data", path, "--out",
                        tmp_path / "cli.safetensors"], capture_output=True, text=True)
    message = r.stderr.splitlines()[-1]
    assert r.returncode == 1 and message.startswith("repmode: %s%s" % (path, where)), r.stderr
    with pytest.raises(repmode.Error) as e:
        repmode.train(CONFIG, str(path), tmp_path / "m.safetensors", steps=1)
    assert "repmode: %s" % e.value == message
