"""The repository stands alone: no tracked file names a place outside it. The specification and the real test data
live in docs/ and tests/data/; a path to a sibling folder or to one machine's home would make a clean clone fail or
skip."""
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Built from pieces so that this file does not name what it forbids.
SHARED = "shared"
FORBIDDEN = re.compile(
    r"\.\./" + SHARED + r"\b"                  # the sibling folder the specification once lived in
    + r"|\b" + SHARED + r"/(?:spec|data)\b"
    + r"|(?<![\w.~/}-])/(?:wo" + r"rk|ho" + r"me)(?=/|\b)"  # an absolute path under one machine's folders
)


def tracked_files():
    """Every file git tracks, or, outside a checkout, every file of the tree but build output and git's own."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
        names = [n for n in out.decode().split("\0") if n]
        if names:
            return [ROOT / n for n in names]
    except (OSError, subprocess.CalledProcessError):
        pass
    skip = {".git", "__pycache__"}
    return [p for p in ROOT.rglob("*")
            if p.is_file() and not skip.intersection(p.relative_to(ROOT).parts)
            and not p.relative_to(ROOT).parts[0].startswith("build")]


def offences(text):
    """The lines of text that name a place outside the repository, as (line number, line)."""
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if FORBIDDEN.search(line)]


def test_the_pattern_catches_what_it_must():
    # So that the test below can fail: each of these would tie the repository to one machine.
    bad = ["see ../" + SHARED + "/spec/cli.md", SHARED + "/data/real/x.nrrd", "DIR=\"/wo" + "rk/x\"",
           "open('/ho" + "me/user/f')", "`/wo" + "rk`"]
    good = ["shared BatchNorm statistics", "std::shared_ptr<Volume>", "docs/model-file.md", "network/work/x", "${CMAKE_CURRENT_BINARY_DIR}/work",
            "https://example.org/home/page"]
    assert [b for b in bad if not offences(b)] == []
    assert [g for g in good if offences(g)] == []


def test_no_tracked_file_names_a_place_outside_the_repository():
    found = []
    files = tracked_files()
    assert files, "no files found under " + str(ROOT)
    for path in files:
        if not path.is_file():
            continue  # deleted in the work tree but still tracked
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary: images, model files
        for number, line in offences(data.decode("utf-8", errors="replace")):
            found.append(f"{path.relative_to(ROOT)}:{number}: {line}")
    assert not found, "files that name a place outside the repository:\n" + "\n".join(found)
