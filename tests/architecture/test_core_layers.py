"""The core's folders form layers: a file may include the private headers of its own folder and of the folders
below it (core/CMakeLists.txt lists them), never of one above. A folder that reached up would make a circle."""
import pathlib
import re

CORE = pathlib.Path(__file__).resolve().parents[2] / "core"

# Each folder and the folders it may use, as core/CMakeLists.txt describes them.
ALLOWED = {
    "base": set(),
    "ops": {"base"},
    "volume": {"base"},
    "model": {"base", "ops", "volume"},
    "io": {"base", "ops", "volume", "model"},
    "predict": {"base", "ops", "volume", "model"},
    "train": {"base", "ops", "volume", "model", "io"},
    "synth": {"base"},
}
# Public headers a folder may use: those of the concepts it may use.
PUBLIC = {
    "core.h": "base", "ops.h": "ops", "normalize.h": "volume", "nonfinite.h": "volume", "metrics.h": "volume", "model.h": "model",
    "predict.h": "predict", "trainer.h": "train", "optim.h": "train", "synth.h": "synth",
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def folder_of(path):
    return path.relative_to(CORE).parts[0]


def sources():
    return [p for p in CORE.rglob("*") if p.suffix in (".c", ".h")]


def test_every_source_lies_in_a_known_folder():
    stray = [str(p.relative_to(CORE)) for p in sources() if len(p.relative_to(CORE).parts) < 2]
    unknown = sorted({folder_of(p) for p in sources()} - set(ALLOWED))
    assert not stray, f"files directly in core/: {stray}"
    assert not unknown, f"folders missing from the layering: {unknown}"


def test_no_folder_reaches_up():
    wrong = []
    for path in sources():
        own = folder_of(path)
        for name in INCLUDE.findall(path.read_text()):
            if name.startswith("repmode/"):
                used = PUBLIC.get(name[len("repmode/"):])
                assert used, f"{path.relative_to(CORE)}: {name} is not in this test's table of public headers"
            else:
                target = CORE / name
                assert target.exists(), f"{path.relative_to(CORE)} includes {name}, which is not core/{name}"
                used = folder_of(target)
            if used != own and used not in ALLOWED[own]:
                wrong.append(f"{path.relative_to(CORE)} ({own}) includes {name} ({used})")
    assert not wrong, "\n".join(wrong)


def test_the_layering_itself_has_no_circle():
    def reaches(a, b, seen=()):
        return any(x == b or (x not in seen and reaches(x, b, seen + (x,))) for x in ALLOWED[a])
    assert not [f for f in ALLOWED if reaches(f, f)]
