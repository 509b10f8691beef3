"""RepModeSegmentation driven as 3D Slicer drives a command-line module: its --xml against the Slicer Execution Model
schema, the command line built from that XML (flags from <longflag>/<flag>, images at their <index> as NRRD files,
--returnparameterfile, --processinformationaddress), then the outputs checked against the input's geometry, against
`repmode predict` on the same input (bit for bit), against the threshold, and the progress lines and the
return-parameter file against Slicer's protocol. A bad model path: a clear error, a non-zero exit, no output."""
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from images import write_nrrd  # noqa: E402  (NRRD as Slicer writes it for a module: LPS, space directions)
MODULE = os.environ.get("REPMODE_SLICER_MODULE", os.path.join(ROOT, "build", "bin", "RepModeSegmentation"))
REPMODE = os.environ.get("REPMODE", os.path.join(ROOT, "build", "bin", "repmode"))
SCHEMA = os.path.join(HERE, "ModuleDescription.libxml2.xsd")
CELLS = os.path.join(ROOT, "examples", "models", "cells.safetensors")
CT = os.path.join(ROOT, "tests", "data", "real", "ct_headsq", "headsq_64x64x93_int16.nrrd")

# The image types Slicer's parser accepts (the schema leaves `type` free).
SLICER_IMAGE_TYPES = {"any", "scalar", "label", "tensor", "diffusion-weighted", "vector", "signal", "multichannel",
                      "dynamic-contrast-enhanced"}
# An oblique direction (a rotation about z by 30 degrees, ITK's row-major matrix) and an origin far from 0, as a
# Slicer volume may have: an output that lost them would show.
C, S = np.cos(np.pi / 6), np.sin(np.pi / 6)
DIRECTION = np.array([[C, -S, 0.0], [S, C, 0.0], [0.0, 0.0, 1.0]])
ORIGIN = (12.5, -40.25, 7.0)


# --- NRRD headers read here (no ITK in Python): the geometry of raw NRRD files as ITK writes them.

def nrrd_header(path):
    with open(path, "rb") as f:
        data = f.read()
    end = data.index(b"\n\n")
    fields = dict(line.split(": ", 1) for line in data[:end].decode("ascii").splitlines()[1:]
                  if ": " in line and not line.startswith("#"))
    return fields, data[end + 2:]


def vectors(text):
    return np.array([[float(v) for v in group.split(",")] for group in re.findall(r"\(([^)]*)\)", text)])


def read_nrrd(path):
    """(array (Z, Y, X), spacing (x, y, z), origin, direction (ITK's: column j is axis j's unit vector))."""
    fields, raw = nrrd_header(path)
    assert fields["encoding"] == "raw", fields
    types = {"uchar": "u1", "unsigned char": "u1", "short": "i2", "ushort": "u2", "float": "f4", "double": "f8"}
    dtype = np.dtype(types[fields["type"]]).newbyteorder("<" if fields.get("endian", "little") == "little" else ">")
    sizes = [int(v) for v in fields["sizes"].split()][::-1]
    array = np.frombuffer(raw, dtype=dtype, count=int(np.prod(sizes))).reshape(sizes)
    axes = vectors(fields["space directions"])  # one row per axis: the axis' direction times its spacing
    spacing = np.linalg.norm(axes, axis=1)
    direction = (axes / spacing[:, None]).T
    origin = vectors(fields["space origin"])[0]
    # NRRD's space is LPS here, as ITK's physical space.
    assert fields["space"] in ("left-posterior-superior", "LPS"), fields
    return array.astype(dtype.newbyteorder("=")), spacing, origin, direction


# --- The module description.

@pytest.fixture(scope="module")
def description():
    r = subprocess.run([MODULE, "--xml"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def parameters(xml):
    root = ET.fromstring(xml)
    return [p for group in root.findall("parameters") for p in group if p.tag not in ("label", "description")]


def test_xml_validates_against_the_slicer_schema(tmp_path, description):
    path = tmp_path / "RepModeSegmentation.xml"
    path.write_text(description)
    r = subprocess.run(["xmllint", "--noout", "--schema", SCHEMA, str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "validates" in r.stderr


def test_schema_check_can_fail(tmp_path, description):
    # The validation above means something: a description with an element the schema does not know is refused.
    path = tmp_path / "bad.xml"
    path.write_text(description.replace("<category>", "<acknowledgements>x</acknowledgements><category>"))
    r = subprocess.run(["xmllint", "--noout", "--schema", SCHEMA, str(path)], capture_output=True, text=True)
    assert r.returncode != 0


def test_xml_describes_the_module_as_slicer_needs(description):
    root = ET.fromstring(description)
    for field in ("category", "title", "description", "version", "documentation-url", "contributor", "license"):
        assert (root.findtext(field) or "").strip(), field
    version = subprocess.run([MODULE, "--version"], capture_output=True, text=True).stdout
    assert root.findtext("version") in version
    assert "RepMode" in root.findtext("description") and "CVPR 2023" in root.findtext("description")
    params = {p.findtext("name"): p for p in parameters(description)}
    for p in params.values():
        assert p.findtext("label") and p.findtext("description"), p.findtext("name")
    model = params["modelFile"]
    assert model.tag == "file" and ".safetensors" in model.get("fileExtensions")
    assert params["task"].tag == "string" and params["task"].findtext("default") == "nuclei"
    assert params["inputVolume"].tag == "image" and params["inputVolume"].findtext("channel") == "input"
    assert params["outputVolume"].findtext("channel") == "output"
    assert params["labelMap"].tag == "image" and params["labelMap"].get("type") == "label"
    assert params["labelMap"].findtext("channel") == "output"
    assert float(params["overlap"].findtext("default")) == 0.5
    for p in params.values():
        if p.tag == "image":
            assert p.get("type", "any") in SLICER_IMAGE_TYPES
    indices = sorted(int(p.findtext("index")) for p in params.values() if p.find("index") is not None)
    assert indices == list(range(len(indices)))


# --- Running it as Slicer does.

def slicer_command(xml, values, workdir):
    """The command line Slicer builds: --processinformationaddress and --returnparameterfile, each non-index
    parameter as its flag with the value chosen (else its default), then the index parameters in index order."""
    flags, indexed = [], []
    for p in parameters(xml):
        name = p.findtext("name")
        value = values.get(name, p.findtext("default") or "")
        if p.find("index") is not None:
            indexed.append((int(p.findtext("index")), value))
            continue
        flag = "--" + p.findtext("longflag") if p.find("longflag") is not None else "-" + p.findtext("flag")
        flags += [flag, str(value)]
    returns = os.path.join(workdir, "returns.txt")
    command = [MODULE, "--processinformationaddress", "0x55d1c0de", "--returnparameterfile", returns] + flags
    return command + [v for _, v in sorted(indexed)], returns


def progress_lines(stdout):
    """Checks Slicer's protocol: one start, progress fractions in [0, 1] that never go back and end at 1, one end
    with a time, in that order. Returns the fractions."""
    start = re.search(r"<filter-start>\s*<filter-name>([^<]+)</filter-name>\s*<filter-comment>[^<]*"
                      r"</filter-comment>\s*</filter-start>", stdout)
    end = re.search(r"<filter-end>\s*<filter-name>([^<]+)</filter-name>\s*<filter-time>([^<]+)</filter-time>\s*"
                    r"</filter-end>", stdout)
    assert start and end, stdout
    assert start.group(1) == end.group(1) == "RepModeSegmentation"
    assert float(end.group(2)) >= 0
    fractions = [(m.start(), float(m.group(1))) for m in re.finditer(r"<filter-progress>([^<]+)</filter-progress>",
                                                                     stdout)]
    assert fractions, stdout
    assert all(start.end() <= at <= end.start() for at, _ in fractions)
    values = [f for _, f in fractions]
    assert all(0.0 <= f <= 1.0 for f in values)
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[-1] == 1.0
    return values


def run_as_slicer(tmp_path, xml, model, task, voxels, spacing, values=None):
    source = tmp_path / "input.nrrd"
    write_nrrd(str(source), voxels, spacing, ORIGIN, DIRECTION)
    outputs = {"outputVolume": str(tmp_path / "prediction.nrrd"), "labelMap": str(tmp_path / "labels.nrrd")}
    chosen = {"modelFile": model, "task": task, "inputVolume": str(source), **outputs, **(values or {})}
    command, returns = slicer_command(xml, chosen, str(tmp_path))
    r = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    progress_lines(r.stdout)

    # The return-parameter file names every output parameter of the description, as "name = value".
    with open(returns) as f:
        returned = dict(line.rstrip("\n").split(" = ", 1) for line in f if line.strip())
    output_names = {p.findtext("name") for p in parameters(xml) if p.findtext("channel") == "output"}
    assert set(returned) == output_names
    assert returned == outputs

    # Geometry: the input's spacing, origin and direction on both outputs.
    for path in outputs.values():
        array, got_spacing, got_origin, got_direction = read_nrrd(path)
        assert array.shape == voxels.shape
        np.testing.assert_allclose(got_spacing, spacing, rtol=1e-6)
        np.testing.assert_allclose(got_origin, ORIGIN, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(got_direction, DIRECTION, atol=1e-6)

    # The prediction and label map are repmode predict's, bit for bit.
    want_pred, want_labels = tmp_path / "want-prediction.nrrd", tmp_path / "want-labels.nrrd"
    args = [REPMODE, "predict", "--model", model, "--task", task, "--input", str(source), "--output", str(want_pred),
            "--labels", str(want_labels)]
    for name, value in (values or {}).items():  # the same options: predict's flags are the module's
        args += ["--" + name, value]
    r2 = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr
    prediction = read_nrrd(outputs["outputVolume"])[0]
    labels = read_nrrd(outputs["labelMap"])[0]
    assert prediction.dtype == np.float32 and labels.dtype == np.uint8
    assert np.array_equal(prediction.view(np.uint32), read_nrrd(str(want_pred))[0].view(np.uint32))
    assert np.array_equal(labels, read_nrrd(str(want_labels))[0])
    return prediction, labels, r.stdout


def test_synthetic_cells_as_slicer_runs_it(tmp_path, description):
    cells = tmp_path / "cells"
    r = subprocess.run([REPMODE, "synth", "cells", "--out", str(cells), "--size", "16,64,64"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    signal, spacing, _, _ = read_nrrd(str(cells / "signal.nrrd"))
    prediction, labels, stdout = run_as_slicer(tmp_path, description, CELLS, "nuclei", signal.astype(np.float32),
                                               spacing, {"threshold": "0.5", "overlap": "0.25"})
    # Labels: 1 exactly where the prediction passes the threshold given, 0 elsewhere; both present on a cell field.
    assert set(np.unique(labels)) == {0, 1}
    assert np.array_equal(labels, (prediction > 0.5).astype(np.uint8))
    # The prediction follows the nuclei it was trained on (a module that wrote zeros or the input would not).
    nuclei = read_nrrd(str(cells / "nuclei.nrrd"))[0].astype(np.float64)
    assert np.corrcoef(prediction.ravel(), nuclei.ravel())[0, 1] > 0.5


def test_real_ct_keeps_its_geometry(tmp_path, description):
    # A real head CT (64 x 64 x 93, int16) through a cells task: the check is geometry and plumbing, with the volume
    # streamed in pieces.
    ct, spacing, _, _ = read_nrrd_spacings(CT)
    prediction, labels, _ = run_as_slicer(tmp_path, description, CELLS, "membranes", ct, spacing,
                                          {"divisions": "3"})
    assert np.isfinite(prediction).all()
    assert set(np.unique(labels)) <= {0, 1}


def read_nrrd_spacings(path):
    """The committed CT has `spacings` and no space (as VTK wrote it): its array and spacing."""
    fields, raw = nrrd_header(path)
    sizes = [int(v) for v in fields["sizes"].split()][::-1]
    array = np.frombuffer(raw, dtype="<i2", count=int(np.prod(sizes))).reshape(sizes).astype(np.int16)
    return array, np.array([float(v) for v in fields["spacings"].split()]), None, None


def test_bad_model_path_fails_cleanly(tmp_path, description):
    source = tmp_path / "input.nrrd"
    write_nrrd(str(source), np.ones((16, 32, 32), np.float32), (1.0, 1.0, 1.0), ORIGIN, DIRECTION)
    missing = str(tmp_path / "no-such-model.safetensors")
    chosen = {"modelFile": missing, "task": "nuclei", "inputVolume": str(source),
              "outputVolume": str(tmp_path / "prediction.nrrd"), "labelMap": str(tmp_path / "labels.nrrd")}
    command, returns = slicer_command(description, chosen, str(tmp_path))
    r = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "no-such-model.safetensors" in r.stderr and "RepModeSegmentation" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["input.nrrd"]  # no output, no temporary file, no return file


def test_unknown_task_fails_cleanly(tmp_path, description):
    source = tmp_path / "input.nrrd"
    write_nrrd(str(source), np.ones((16, 32, 32), np.float32), (1.0, 1.0, 1.0), ORIGIN, DIRECTION)
    chosen = {"modelFile": CELLS, "task": "ink", "inputVolume": str(source),
              "outputVolume": str(tmp_path / "prediction.nrrd"), "labelMap": str(tmp_path / "labels.nrrd")}
    command, _ = slicer_command(description, chosen, str(tmp_path))
    r = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "no task 'ink'" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["input.nrrd"]


def test_echo_prints_the_parameters(tmp_path, description):
    r = subprocess.run([MODULE, "--echo", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--returnparameterfile" in r.stdout and "--processinformationaddress" in r.stdout
    assert shutil.which("xmllint"), "libxml2-utils (make deps installs it)"
