"""repmode batch (docs/cli.md §3.11): every row of a manifest equals `repmode predict` of the same options and its
metrics `repmode eval`'s; the same manifest twice gives the same bytes apart from the recorded date; a batch killed
midway (SIGKILL) resumes with only the missing rows and ends as an uninterrupted run; a corrupt row fails alone;
the report opens in headless Chromium with every picture loaded and one table row per volume."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "report"))
import check_report  # noqa: E402
from images import read_mha, write_mha  # noqa: E402
from test_eval import SMALL  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(HERE, "..", "..", "build", "bin", "repmode"))
METRICS = ["mse", "mae", "r2", "pearson", "ssim", "f05", "dice", "precision", "recall", "auc"]


def run(*args, **kw):
    return subprocess.run([REPMODE, *args], capture_output=True, text=True, timeout=600, **kw)


def sample(seed, shape=(8, 24, 32)):
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    signal = 100 + 40 * np.sin(3 * x + 2 * y + seed) * np.cos(2 * z) + 5 * rng.standard_normal(shape)
    target = 10 + 3 * np.cos(2 * x - y) + rng.standard_normal(shape)
    return signal.astype(np.float32), target.astype(np.float32)


def make_manifest(folder, rows=4, shape=(8, 24, 32)):
    """Volumes and their targets under folder/data, and folder/manifest.csv with paths relative to it: a
    regression row with a target, one with per-row options (overlap, threshold, seed of 2 Monte Carlo passes), a
    binary row with a binary target and its mask, the rest plain."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    lines = ["input,task,target,mask,name,overlap,threshold,mc_samples,seed"]
    for i in range(rows):
        signal, target = sample(i, shape)
        write_mha(str(data / ("vol%d.mha" % i)), signal)
        write_mha(str(data / ("target%d.mha" % i)), target)
        if i == 0:
            lines.append("data/vol0.mha,dna,data/target0.mha,,,,,,")
        elif i == 1:
            lines.append("data/vol1.mha,membrane,,,second,0.25,0.5,2,7")
        elif i == 2:
            write_mha(str(data / "ink2.mha"), (target > 10).astype(np.uint8))
            write_mha(str(data / "mask2.mha"), (signal > 90).astype(np.uint8))
            lines.append("data/vol2.mha,ink,data/ink2.mha,data/mask2.mha,,,,,")
        else:
            lines.append("data/vol%d.mha,dna,,,,,,," % i)
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


def batch(manifest, out, *extra, picture=64, **kw):
    return run("batch", "--model", SMALL, "--manifest", str(manifest), "--out", str(out), "--format", "mha",
               "--picture-size", str(picture), *extra, **kw)


def summary(out):
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def without_date(path):
    """The bytes of a MetaImage file with the record's date blanked (its only varying field)."""
    data = open(path, "rb").read()
    start = data.index(b'"date":"') + len(b'"date":"')
    return data[:start] + b"X" * 20 + data[start + 20:]


def outputs(out):
    return sorted(p for p in os.listdir(out) if p.endswith((".mha", ".png")))


def test_every_row_is_predict_of_its_options_and_eval_of_its_target(tmp_path):
    manifest = make_manifest(tmp_path)
    out = tmp_path / "out"
    r = batch(manifest, out)
    assert r.returncode == 0, r.stderr
    rows = summary(out)
    assert [row["name"] for row in rows] == ["vol0", "second", "vol2", "vol3"]
    assert [row["status"] for row in rows] == ["done"] * 4
    assert [int(row["voxels"]) for row in rows] == [8 * 24 * 32] * 4
    options = {"second": ["--overlap", "0.25", "--threshold", "0.5", "--mc-samples", "2", "--seed", "7"],
               "vol2": ["--mask", str(tmp_path / "data" / "mask2.mha")]}
    tasks = {"vol0": "dna", "second": "membrane", "vol2": "ink", "vol3": "dna"}
    inputs = {"vol0": "vol0", "second": "vol1", "vol2": "vol2", "vol3": "vol3"}
    for name, task in tasks.items():
        want = tmp_path / ("want-" + name + ".mha")
        labels = tmp_path / ("want-" + name + "-labels.mha")
        source = tmp_path / "data" / (inputs[name] + ".mha")
        r = run("predict", "--model", SMALL, "--task", task, "--input", str(source), "--output", str(want), "--labels",
                str(labels), *options.get(name, []))
        assert r.returncode == 0, r.stderr
        for got, expected in ((out / (name + ".mha"), want), (out / (name + "-labels.mha"), labels)):
            a, b = read_mha(str(got)), read_mha(str(expected))
            assert np.array_equal(a[0].view(np.uint8), b[0].view(np.uint8)), got
            ra, rb = json.loads(a[1]["repmode.provenance"]), json.loads(b[1]["repmode.provenance"])
            assert ra.pop("via") == "repmode batch" and rb.pop("via") == "repmode predict"
            ra.pop("date"), rb.pop("date")
            assert ra == rb
    # Metrics: eval's, for the rows with a target; none for the others.
    for row, task, target, mask in ((rows[0], "dna", "target0", None), (rows[2], "ink", "ink2", "mask2")):
        args = ["eval", "--model", SMALL, "--task", task, "--input", str(tmp_path / "data" / (row["name"] + ".mha")),
                "--target", str(tmp_path / "data" / (target + ".mha"))]
        if mask:
            args += ["--mask", str(tmp_path / "data" / (mask + ".mha"))]
        e = run(*args)
        assert e.returncode == 0, e.stderr
        want = json.loads(e.stdout)
        for m in METRICS:
            if m in want and want[m] is not None:
                assert float(row[m]) == pytest.approx(want[m], rel=1e-6, abs=1e-9), (m, row, want)
            else:
                assert row[m] in ("", "nan"), (m, row)
    assert all(rows[1][m] == "" and rows[3][m] == "" for m in METRICS)
    # Pictures: render's, of the input with the labels over it.
    for name in tasks:
        picture = tmp_path / ("want-" + name + ".png")
        r = run("render", "--input", str(tmp_path / "data" / (inputs[name] + ".mha")), "--labels",
                str(tmp_path / ("want-" + name + "-labels.mha")), "--out", str(picture), "--size", "64")
        assert r.returncode == 0, r.stderr
        assert (out / (name + ".png")).read_bytes() == picture.read_bytes()


def test_the_same_manifest_twice_gives_the_same_bytes_and_two_jobs_too(tmp_path):
    manifest = make_manifest(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    assert batch(manifest, first).returncode == 0
    r = batch(manifest, second, "--jobs", "2", "--threads", "2")
    assert r.returncode == 0, r.stderr
    assert outputs(first) == outputs(second) and len(outputs(first)) == 12
    for name in outputs(first):
        if name.endswith(".mha"):
            assert without_date(first / name) == without_date(second / name), name
        else:
            assert (first / name).read_bytes() == (second / name).read_bytes(), name
    a, b = summary(first), summary(second)
    for row in a + b:
        row.pop("seconds")
    assert a == b


def test_a_killed_batch_resumes_with_the_missing_rows_only(tmp_path):
    # Volumes big enough for a row to take a while with the fixture's small windows.
    manifest = make_manifest(tmp_path, rows=6, shape=(8, 48, 64))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    r = batch(manifest, whole)
    assert r.returncode == 0, r.stderr
    process = subprocess.Popen([REPMODE, "batch", "--model", SMALL, "--manifest", str(manifest), "--out", str(killed),
                                "--format", "mha", "--picture-size", "64", "--jobs", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "vol0.png").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = {n[:-4] for n in outputs(killed) if n.endswith(".png")}
    assert "vol0" in done_before and len(done_before) < 6, done_before  # killed midway
    assert not (killed / "summary.csv").exists()

    r = batch(manifest, killed)
    assert r.returncode == 0, r.stderr
    status = {row["name"]: row["status"] for row in summary(killed)}
    assert {n for n, s in status.items() if s == "skipped"} == done_before
    assert {n for n, s in status.items() if s == "done"} == set(status) - done_before
    assert outputs(killed) == outputs(whole)
    assert not [n for n in os.listdir(killed) if ".tmp-" in n]  # the killed run's temporary files are gone
    for name in outputs(whole):
        if name.endswith(".mha"):
            assert without_date(whole / name) == without_date(killed / name), name
    a, b = summary(whole), summary(killed)
    for row in a + b:
        row.pop("seconds"), row.pop("status"), row.pop("message")
    assert a == b


def test_a_corrupt_row_fails_alone_with_its_message(tmp_path):
    manifest = make_manifest(tmp_path, rows=3)
    data = open(tmp_path / "data" / "vol1.mha", "rb").read()
    open(tmp_path / "data" / "vol1.mha", "wb").write(data[: len(data) // 2])  # cut short
    out = tmp_path / "out"
    r = batch(manifest, out)
    assert r.returncode == 1 and "1 of 3 row(s) failed" in r.stderr, r.stderr
    rows = summary(out)
    assert [row["status"] for row in rows] == ["done", "failed", "done"]
    assert "vol1.mha" in rows[1]["message"] and "truncated" in rows[1]["message"], rows[1]
    assert not [n for n in os.listdir(out) if n.startswith("second")]
    assert check_report.check(str(out / "report.html"), 3) == {"images": 2, "rows": 3}


@pytest.mark.skipif(not check_report.available(), reason=check_report.missing())
def test_the_report_shows_every_volume_in_chromium(tmp_path):
    manifest = make_manifest(tmp_path, rows=5)
    out = tmp_path / "out"
    assert batch(manifest, out, picture=160).returncode == 0
    shot = os.environ.get("REPMODE_REPORT_SCREENSHOT", str(tmp_path / "report.png"))
    assert check_report.check(str(out / "report.html"), 5, screenshot=shot) == {"images": 5, "rows": 5}
    assert os.path.getsize(shot) > 10000
    # The check can fail: a picture that is not a PNG is a broken image.
    page = (out / "report.html").read_text()
    start = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    (out / "broken.html").write_text(page[:start] + "bm90IGEgUE5H" + page[page.index('"', start):])
    with pytest.raises(AssertionError, match="did not load"):
        check_report.check(str(out / "broken.html"), 5)


@pytest.mark.parametrize("text, message", [
    ("input,task,colour\na.mha,dna,red\n", "unknown column 'colour'"),
    ("task\ndna\n", "must name the columns input and task"),
    ("input,task\na.mha,dna\nb/a.mha,dna\n", "would both write 'a'"),
    ("input,task,overlap\na.mha,dna,half\n", "overlap: 'half' is not a number"),
    ("input,task,uncertainty\na.mha,dna,maybe\n", "'maybe' is neither yes nor no"),
    ("input,task,blend\na.mha,dna,linear\n", "'linear' is neither gaussian nor constant"),
    ("input,task,overlap\na.mha,dna,1\n", "overlap must be in [0, 1)"),
    ("input,task\n", "has no rows"),
])
def test_a_bad_manifest_is_refused_before_any_work(tmp_path, text, message):
    (tmp_path / "m.csv").write_text(text)
    r = batch(tmp_path / "m.csv", tmp_path / "out")
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
