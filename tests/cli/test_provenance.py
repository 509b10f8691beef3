"""Provenance (docs/cli.md §1.6): every image predict writes carries the record of how it was made, checked here
against what the test itself knows (hashlib's SHA-256 of the files, the options it gave, numpy's mean and standard
deviation of the input, the clock around the run); `repmode info` prints it; `repmode verify` gives identical bytes
for an untouched output and names the first difference of a changed one."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from images import read_mha, write_mha  # noqa: E402
from test_eval import SMALL  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))


def run(*args, env=None):
    return subprocess.run([REPMODE, *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def header_record(path):
    """The record as the test reads it from the file, independently of repmode: the NRRD field 'repmode.provenance:='
    (no backslashes in these tests' paths, so no NRRD escapes), the MetaImage line 'repmode.provenance = ', or the
    sidecar."""
    if path.endswith((".nii", ".nii.gz", ".tif")):
        with open(path + ".json", encoding="utf-8") as f:
            return json.loads(f.read())
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    for line in head.split(b"\n"):
        for prefix in (b"repmode.provenance:=", b"repmode.provenance = "):
            if line.startswith(prefix):
                return json.loads(line[len(prefix):].decode("utf-8"))
    raise AssertionError("no provenance in " + path)


def inputs(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.normal(100.0, 20.0, size=(8, 12, 16)).astype(np.float32)
    mask = (rng.random((8, 12, 16)) > 0.3).astype(np.uint8)
    write_mha(str(tmp_path / "in.mha"), x)
    write_mha(str(tmp_path / "mask.mha"), mask)
    return x


def predict_all(tmp_path, *extra, env=None):
    """predict with every kind of output, one per format: the prediction (NRRD), labels (MetaImage), uncertainty
    (NIfTI: a sidecar), segmentation (NRRD)."""
    out = {k: str(tmp_path / n) for k, n in (("prediction", "p.nrrd"), ("labels", "l.mha"),
                                            ("uncertainty", "u.nii"), ("segmentation", "s.seg.nrrd"))}
    r = run("predict", "--model", SMALL, "--task", "dna", "--input", str(tmp_path / "in.mha"),
            "--mask", str(tmp_path / "mask.mha"), "--output", out["prediction"], "--labels", out["labels"],
            "--uncertainty", out["uncertainty"], "--segmentation", out["segmentation"], "--patch", "8,12,16",
            "--overlap", "0.25", "--threshold", "0.125", "--mc-samples", "3", "--seed", "11",
            "--mc-dropout", "0.2", "--gate-noise", "0.05", *extra, env=env)
    assert r.returncode == 0, r.stderr
    return out


def test_every_output_records_how_it_was_made(tmp_path):
    x = inputs(tmp_path)
    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    out = predict_all(tmp_path)
    after = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
    version = run("--version").stdout.split("\n")
    engine = version[1].split()[1]
    for role, path in out.items():
        rec = header_record(path)
        assert rec["output"] == role
        assert rec["software"]["name"] == "repmode" and "repmode " + rec["software"]["version"] == version[0]
        assert rec["software"]["engine"] == engine and rec["software"]["blas"]
        assert rec["via"] == "repmode predict"
        assert before <= rec["date"] <= after
        assert rec["model"] == {"file": os.path.abspath(SMALL), "sha256": sha256(SMALL),
                                "provenance": {"software": "repmode tests/reference/make_fixtures.py", "seed": 1}}
        assert rec["input"] == {"file": str(tmp_path / "in.mha"), "sha256": sha256(tmp_path / "in.mha")}
        assert rec["mask"] == {"file": str(tmp_path / "mask.mha"), "sha256": sha256(tmp_path / "mask.mha")}
        assert rec["tasks"] == ["dna"]
        assert rec["parameters"] == {"patch": [8, 12, 16], "overlap": 0.25, "blend": "gaussian", "tta": False,
                                     "thresholds": [0.125],
                                     "non_finite": "refuse", "mc_samples": 3, "seed": 11, "mc_dropout": 0.2,
                                     "gate_noise": 0.05, "divisions": 0}
        norm = rec["normalization"]  # z-score: (x - mean) / sd, the population sd
        assert norm["method"] == "zscore" and norm["clip"] is False
        assert norm["offset"] == pytest.approx(float(np.mean(x, dtype=np.float64)), rel=1e-12)
        assert norm["scale"] == pytest.approx(1.0 / float(np.std(x, dtype=np.float64)), rel=1e-9)
    # The segmentation keeps Slicer's fields beside the record.
    with open(out["segmentation"], "rb") as f:
        assert b"Segment0_Name:=dna" in f.read(1 << 16)


def test_info_prints_the_record(tmp_path):
    inputs(tmp_path)
    out = predict_all(tmp_path)
    for path in out.values():
        r = run("info", path, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == header_record(path)
    text = run("info", out["labels"])
    assert text.returncode == 0, text.stderr
    assert "parameters.overlap: 0.25" in text.stdout.splitlines()
    assert "input.sha256: " + sha256(tmp_path / "in.mha") in text.stdout.splitlines()
    plain = run("info", str(tmp_path / "in.mha"))
    assert plain.returncode == 1 and "without a repmode provenance record" in plain.stderr


def test_a_fixed_source_date_gives_the_same_bytes_on_any_thread_count(tmp_path):
    inputs(tmp_path)
    first = tmp_path / "one"
    second = tmp_path / "two"
    first.mkdir()
    second.mkdir()
    for d in (first, second):
        shutil.copy(tmp_path / "in.mha", d)
        shutil.copy(tmp_path / "mask.mha", d)
    a = predict_all(first, "--threads", "1", env={"SOURCE_DATE_EPOCH": "1000"})
    b = predict_all(second, "--threads", "2", env={"SOURCE_DATE_EPOCH": "1000"})
    for role in a:
        ra, rb = header_record(a[role]), header_record(b[role])
        assert ra["date"] == "1970-01-01T00:16:40Z" == rb["date"]
        ra["input"]["file"] = rb["input"]["file"]
        ra["mask"]["file"] = rb["mask"]["file"]
        assert ra == rb
    pa, pb = read_mha(a["labels"])[0], read_mha(b["labels"])[0]
    assert np.array_equal(pa, pb)
    r = run("predict", "--model", SMALL, "--task", "dna", "--input", str(tmp_path / "in.mha"), "--output",
            str(tmp_path / "x.mha"), env={"SOURCE_DATE_EPOCH": "soon"})
    assert r.returncode == 1 and "SOURCE_DATE_EPOCH=soon" in r.stderr and not (tmp_path / "x.mha").exists()


def test_verify_reproduces_every_output(tmp_path):
    inputs(tmp_path)
    for role, path in predict_all(tmp_path).items():
        r = run("verify", path)
        assert r.returncode == 0, (role, r.stdout, r.stderr)
        assert r.stdout.startswith("identical: " + path), r.stdout


def test_verify_names_the_first_changed_voxel(tmp_path):
    inputs(tmp_path)
    out = predict_all(tmp_path)
    labels, header = read_mha(out["labels"])
    with open(out["labels"], "rb") as f:
        data = bytearray(f.read())
    start = len(data) - labels.size  # the 8-bit voxels end the file
    z, y, x = 5, 7, 9
    data[start + (z * 12 + y) * 16 + x] ^= 1
    with open(out["labels"], "wb") as f:
        f.write(data)
    r = run("verify", out["labels"])
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "the voxel (x, y, z) = (9, 7, 5)" in r.stdout and "(1 values differ)" in r.stdout, r.stdout


def test_verify_refuses_another_input_and_finds_a_moved_one(tmp_path):
    x = inputs(tmp_path)
    out = predict_all(tmp_path)
    moved = tmp_path / "moved.mha"
    os.rename(tmp_path / "in.mha", moved)
    r = run("verify", out["prediction"])
    assert r.returncode == 1 and "give its place with --input" in r.stderr, r.stderr
    r = run("verify", out["prediction"], "--input", str(moved))
    assert r.returncode == 0 and r.stdout.startswith("identical"), (r.stdout, r.stderr)
    write_mha(str(moved), x + 1)
    r = run("verify", out["prediction"], "--input", str(moved))
    assert r.returncode == 3 and r.stdout.startswith("differs: input.sha256: " + str(moved)), r.stdout


def test_verify_refuses_what_it_cannot_verify(tmp_path):
    inputs(tmp_path)
    r = run("verify", str(tmp_path / "in.mha"))
    assert r.returncode == 1 and "has no repmode provenance record" in r.stderr
    (tmp_path / "notes.txt").write_text("hello")
    r = run("verify", str(tmp_path / "notes.txt"))
    assert r.returncode == 1 and "not an image file" in r.stderr
    r = run("verify", str(tmp_path / "absent.nrrd"))
    assert r.returncode == 1 and "absent.nrrd" in r.stderr
