"""RepModeSegmentation driven as 3D Slicer drives a command-line module: its --xml against the Slicer Execution Model
schema, the command line built from that XML as Slicer builds it (examples/slicer/run_as_slicer.py: flags from
<longflag>/<flag>, images at their <index> as NRRD files), then the outputs checked against the input's geometry,
against `repmode predict` on the same input (bit for bit), against the thresholds computed here, the segmentation's
header against Slicer's segmentation fields (every one, the extents against bounding boxes computed here), and the
progress lines and the return-parameter file against Slicer's protocol. Bad input: a clear error, a non-zero exit, no
output."""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
sys.path.insert(0, os.path.join(ROOT, "examples", "slicer"))
from images import write_nrrd  # noqa: E402  (NRRD as Slicer writes it for a module: LPS, space directions)
from run_as_slicer import command_line, parameters, read_return_parameters  # noqa: E402
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
OUTPUTS = ("outputVolume", "labelMap", "segmentation", "uncertaintyVolume")


# --- NRRD headers read here (no ITK in Python): the geometry of raw NRRD files as ITK writes them.

def nrrd_header(path):
    """(fields "key: value", key/value pairs "key:=value", raw data) of a NRRD file."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.index(b"\n\n")
    lines = data[:end].decode("ascii").splitlines()[1:]
    pairs = dict(line.split(":=", 1) for line in lines if ":=" in line)
    fields = dict(line.split(": ", 1) for line in lines
                  if ": " in line and ":=" not in line and not line.startswith("#"))
    return fields, pairs, data[end + 2:]


def vectors(text):
    return np.array([[float(v) for v in group.split(",")] for group in re.findall(r"\(([^)]*)\)", text)])


def read_nrrd(path):
    """(array (Z, Y, X) or (Z, Y, X, C), spacing (x, y, z), origin, direction (ITK's: column j is axis j's unit
    vector))."""
    fields, _, raw = nrrd_header(path)
    assert fields["encoding"] == "raw", fields
    types = {"uchar": "u1", "unsigned char": "u1", "short": "i2", "ushort": "u2", "float": "f4", "double": "f8"}
    dtype = np.dtype(types[fields["type"]]).newbyteorder("<" if fields.get("endian", "little") == "little" else ">")
    sizes = [int(v) for v in fields["sizes"].split()][::-1]  # a component axis comes first in the file, last here
    array = np.frombuffer(raw, dtype=dtype, count=int(np.prod(sizes))).reshape(sizes)
    axes = vectors(fields["space directions"])  # one row per axis: the axis' direction times its spacing
    spacing = np.linalg.norm(axes, axis=1)
    direction = (axes / spacing[:, None]).T
    origin = vectors(fields["space origin"])[0]
    # NRRD's space is LPS here, as ITK's physical space.
    assert fields["space"] in ("left-posterior-superior", "LPS"), fields
    return array.astype(dtype.newbyteorder("=")), spacing, origin, direction


def read_colors(path):
    """predict --colors' table: {label: (name, (r, g, b))} with components 0..255."""
    table = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                index, name, r, g, b, _ = line.split()
                table[int(index)] = (name, (int(r), int(g), int(b)))
    return table


def coloured_model(path, colors):
    """A copy of the cells model whose tasks in `colors` ({name: [r, g, b]} in 0..1) have that `color`
    (docs/model-file.md): the safetensors header's metadata rewritten, the tensors unchanged."""
    with open(CELLS, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    tasks = json.loads(header["__metadata__"]["repmode.tasks"])
    for t in tasks:
        if t["name"] in colors:
            t["color"] = colors[t["name"]]
    header["__metadata__"]["repmode.tasks"] = json.dumps(tasks)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data[8 + n:])
    return str(path)


# --- The module description.

@pytest.fixture(scope="module")
def description():
    r = subprocess.run([MODULE, "--xml"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


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
    for name in OUTPUTS:
        assert params[name].tag == "image" and params[name].findtext("channel") == "output", name
    assert params["labelMap"].get("type") == "label"
    # The segmentation: a label image offered as a Slicer segmentation node (qSlicerCLIModuleUIHelper offers
    # vtkMRMLSegmentationNode for type="label"), passed as a .seg.nrrd file (its first file extension), which the
    # segmentation node's storage reads with its segments.
    assert params["segmentation"].get("type") == "label"
    assert params["segmentation"].get("fileExtensions").split(",")[0] == ".seg.nrrd"
    assert float(params["overlap"].findtext("default")) == 0.5
    for p in params.values():
        if p.tag == "image":
            assert p.get("type", "any") in SLICER_IMAGE_TYPES
    indices = sorted(int(p.findtext("index")) for p in params.values() if p.find("index") is not None)
    assert indices == list(range(len(indices)))


# --- Running it as Slicer does.

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


class Run:
    """What one run of the module gave, with repmode predict's outputs for the same input and options."""


def run_as_slicer(tmp_path, xml, model, task, voxels, spacing, values=None, extra=()):
    source = tmp_path / "input.nrrd"
    write_nrrd(str(source), voxels, spacing, ORIGIN, DIRECTION)
    outputs = {"outputVolume": str(tmp_path / "prediction.nrrd"), "labelMap": str(tmp_path / "labels.nrrd"),
               "segmentation": str(tmp_path / "segmentation.seg.nrrd")}
    chosen = {"modelFile": model, "task": task, "inputVolume": str(source), **outputs, **(values or {})}
    returns = str(tmp_path / "returns.params")
    command = command_line(MODULE, xml, chosen, returns)
    # What Slicer adds for modules run as shared objects, and what `extra` adds, before the positional arguments.
    command[1:1] = ["--processinformationaddress", "0x55d1c0de", *extra]
    r = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    progress_lines(r.stdout)

    # The return-parameter file names every output parameter of the description, as "name = value".
    returned = read_return_parameters(returns)
    output_names = {p.findtext("name") for p in parameters(xml) if p.findtext("channel") == "output"}
    assert set(returned) == output_names == set(OUTPUTS)
    assert returned == {**outputs, "uncertaintyVolume": ""}  # none chosen: an empty argument

    # Geometry: the input's spacing, origin and direction on every output.
    for path in outputs.values():
        array, got_spacing, got_origin, got_direction = read_nrrd(path)
        assert array.shape == voxels.shape
        np.testing.assert_allclose(got_spacing, spacing, rtol=1e-6)
        np.testing.assert_allclose(got_origin, ORIGIN, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(got_direction, DIRECTION, atol=1e-6)

    # The outputs are repmode predict's, bit for bit: the prediction (the first task's component), the label map
    # and the segmentation, its header included.
    want = {name: str(tmp_path / ("want-" + os.path.basename(path))) for name, path in outputs.items()}
    colors = str(tmp_path / "want-colors.txt")
    args = [REPMODE, "predict", "--model", model, "--task", task, "--input", str(source), "--output",
            want["outputVolume"], "--labels", want["labelMap"], "--segmentation", want["segmentation"],
            "--colors", colors]
    flags = {p.findtext("name"): p.findtext("longflag") for p in parameters(xml)}
    for name, value in (values or {}).items():  # the same options: predict's flags are the module's
        args += ["--" + flags[name]] if value == "true" else ["--" + flags[name], value]
    r2 = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr
    run = Run()
    run.stdout = r.stdout
    run.prediction = read_nrrd(outputs["outputVolume"])[0]
    run.labels = read_nrrd(outputs["labelMap"])[0]
    run.segmentation = read_nrrd(outputs["segmentation"])[0]
    run.fields = nrrd_header(outputs["segmentation"])[1]
    components = read_nrrd(want["outputVolume"])[0]
    run.predictions = components[None] if components.ndim == 3 else np.moveaxis(components, -1, 0)
    run.colors = read_colors(colors)
    assert run.prediction.dtype == np.float32 and run.labels.dtype == run.segmentation.dtype == np.uint8
    assert np.array_equal(run.prediction.view(np.uint32), run.predictions[0].view(np.uint32))
    assert np.array_equal(run.labels, read_nrrd(want["labelMap"])[0])
    assert np.array_equal(run.segmentation, read_nrrd(want["segmentation"])[0])
    # The provenance (docs/cli.md §1.6) of every output names the module; apart from that and the date, the
    # segmentation's header is predict's.
    want_fields = nrrd_header(want["segmentation"])[1]
    records = [json.loads(f.pop("repmode.provenance")) for f in (run.fields, want_fields)]
    assert run.fields == want_fields
    assert records[0].pop("via") == "RepModeSegmentation" and records[1].pop("via") == "repmode predict"
    assert records[0].pop("date") and records[1].pop("date")
    assert records[0] == records[1]
    for name, path in outputs.items():
        record = json.loads(nrrd_header(path)[1]["repmode.provenance"])
        role = {"outputVolume": "prediction", "labelMap": "labels", "segmentation": "segmentation"}[name]
        assert record["output"] == role + (" (first task)" if name == "outputVolume" and "," in task else "")
        assert record["via"] == "RepModeSegmentation"
    return run


def extent(labels, value):
    """Slicer's extent of a segment, "i0 i1 j0 j1 k0 k1" (x, y, z voxel indices, inclusive), of `value`'s voxels."""
    z, y, x = np.nonzero(labels == value)
    if len(x) == 0:
        return "0 -1 0 -1 0 -1"
    return " ".join(str(v) for v in (x.min(), x.max(), y.min(), y.max(), z.min(), z.max()))


def check_segmentation(run, tasks, spacing, model_colors):
    """Every header field of the segmentation against Slicer's (vtkMRMLSegmentationStorageNode) and the values the
    test knows: names, label values, colours (the colour table's, the model's where it gives one), extents (the
    labels' bounding boxes), the reference geometry (the input's, in RAS); the voxels are the label map's."""
    assert np.array_equal(run.segmentation, run.labels)
    fields = run.fields
    keys = {"ID", "Name", "NameAutoGenerated", "Color", "ColorAutoGenerated", "Extent", "LabelValue", "Layer",
            "Tags"}
    expected = {f"Segment{i}_{k}" for i in range(len(tasks)) for k in keys}
    expected |= {"Segmentation_" + k for k in ("MasterRepresentation", "ContainedRepresentationNames",
                                               "ConversionParameters", "ReferenceImageExtentOffset")}
    assert set(fields) == expected
    for i, task in enumerate(tasks):
        f = {k: fields[f"Segment{i}_{k}"] for k in keys}
        assert f["ID"] == f["Name"] == task
        assert f["NameAutoGenerated"] == "0"
        assert f["LabelValue"] == str(i + 1)
        assert f["Layer"] == "0"
        assert f["Tags"] == "Segmentation.Status:inprogress|"
        assert f["Extent"] == extent(run.labels, i + 1), task
        name, rgb = run.colors[i + 1]
        assert name == task
        color = [float(v) for v in f["Color"].split()]
        np.testing.assert_allclose(color, np.array(rgb) / 255.0, atol=1e-6)
        if task in model_colors:
            np.testing.assert_allclose(color, model_colors[task], atol=1e-6)
        assert f["ColorAutoGenerated"] == ("0" if task in model_colors else "1")
    assert fields["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert fields["Segmentation_ContainedRepresentationNames"] == "Binary labelmap|"
    assert fields["Segmentation_ReferenceImageExtentOffset"] == "0 0 0"
    # "name|value|description&" per conversion parameter; the reference geometry is the IJK-to-RAS matrix, row by
    # row, then the extent, each followed by ';'.
    conversion = fields["Segmentation_ConversionParameters"]
    assert conversion.endswith("&")
    parameters_ = {p.split("|")[0]: p.split("|")[1] for p in conversion[:-1].split("&")}
    numbers = parameters_["Reference image geometry"].split(";")
    assert numbers[-1] == ""
    matrix = np.array([float(v) for v in numbers[:16]]).reshape(4, 4)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = DIRECTION * np.asarray(spacing)[None, :]
    ijk_to_lps[:3, 3] = ORIGIN
    np.testing.assert_allclose(matrix, np.diag([-1.0, -1.0, 1.0, 1.0]) @ ijk_to_lps, atol=1e-9)
    z, y, x = run.labels.shape
    assert [int(v) for v in numbers[16:22]] == [0, x - 1, 0, y - 1, 0, z - 1]


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """A synthetic cell field (signal.nrrd, nuclei.nrrd, ...), 16 x 64 x 64."""
    folder = tmp_path_factory.mktemp("cells")
    r = subprocess.run([REPMODE, "synth", "cells", "--out", str(folder), "--size", "16,64,64"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return folder


def test_synthetic_cells_as_slicer_runs_it(tmp_path, description, cells):
    signal, spacing, _, _ = read_nrrd(str(cells / "signal.nrrd"))
    run = run_as_slicer(tmp_path, description, CELLS, "nuclei", signal.astype(np.float32), spacing,
                        {"threshold": "0.5", "overlap": "0.25"})
    # Labels: 1 exactly where the prediction passes the threshold given, 0 elsewhere; both present on a cell field.
    assert set(np.unique(run.labels)) == {0, 1}
    assert np.array_equal(run.labels, (run.prediction > 0.5).astype(np.uint8))
    # The prediction follows the nuclei it was trained on (a module that wrote zeros or the input would not).
    nuclei = read_nrrd(str(cells / "nuclei.nrrd"))[0].astype(np.float64)
    assert np.corrcoef(run.prediction.ravel(), nuclei.ravel())[0, 1] > 0.5
    check_segmentation(run, ["nuclei"], spacing, {})


def test_test_time_augmentation_as_slicer_runs_it(tmp_path, description, cells):
    # The outputs equal predict --tta's (run_as_slicer compares them); without it the prediction differs.
    signal, spacing, _, _ = read_nrrd(str(cells / "signal.nrrd"))
    (tmp_path / "tta").mkdir()
    (tmp_path / "plain").mkdir()
    tta = run_as_slicer(tmp_path / "tta", description, CELLS, "nuclei", signal.astype(np.float32), spacing,
                        {"tta": "true"})
    plain = run_as_slicer(tmp_path / "plain", description, CELLS, "nuclei", signal.astype(np.float32), spacing)
    assert not np.array_equal(tta.prediction, plain.prediction)
    assert np.corrcoef(tta.prediction.ravel(), plain.prediction.ravel())[0, 1] > 0.9


def test_several_tasks_as_slicer_runs_them(tmp_path, description, cells):
    # Three tasks, one with a colour from the model; the third's threshold is never passed: an empty segment.
    tasks, thresholds = ["nuclei", "membranes", "mitochondria"], [1.0, 0.5, 1e9]
    model_colors = {"membranes": [0.2, 0.4, 1.0]}
    model = coloured_model(tmp_path / "coloured.safetensors", model_colors)
    signal, spacing, _, _ = read_nrrd(str(cells / "signal.nrrd"))
    run = run_as_slicer(tmp_path, description, model, ",".join(tasks), signal.astype(np.float32), spacing,
                        {"threshold": ",".join(str(t) for t in thresholds)})
    assert len(run.predictions) == len(tasks)
    # Label i + 1 where task i passes its threshold; where several do, the task furthest above its own (the first on
    # a tie); computed here from predict's predictions.
    margins = run.predictions.astype(np.float64) - np.array(thresholds)[:, None, None, None]
    want = np.where(margins.max(axis=0) > 0, margins.argmax(axis=0) + 1, 0).astype(np.uint8)
    assert np.array_equal(run.labels, want)
    assert set(np.unique(run.labels)) == {0, 1, 2}  # both real tasks present, so the check above means something
    check_segmentation(run, tasks, spacing, model_colors)
    assert run.fields["Segment2_Extent"] == "0 -1 0 -1 0 -1"


def test_uncertainty_as_slicer_runs_it(tmp_path, description, cells):
    # An uncertainty volume chosen: the module runs Monte Carlo passes with its defaults and the options given, and
    # writes predict --uncertainty's images, the input's geometry kept.
    signal, spacing, _, _ = read_nrrd(str(cells / "signal.nrrd"))
    source = tmp_path / "input.nrrd"
    write_nrrd(str(source), signal.astype(np.float32), spacing, ORIGIN, DIRECTION)
    outputs = {"outputVolume": str(tmp_path / "prediction.nrrd"), "labelMap": str(tmp_path / "labels.nrrd"),
               "segmentation": str(tmp_path / "segmentation.seg.nrrd"),
               "uncertaintyVolume": str(tmp_path / "uncertainty.nrrd")}
    returns = str(tmp_path / "returns.params")
    command = command_line(MODULE, description, {"modelFile": CELLS, "task": "nuclei", "inputVolume": str(source),
                                                 "mcSamples": "3", "seed": "4", **outputs}, returns)
    assert command[-1] == outputs["uncertaintyVolume"]  # the last positional argument
    r = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    progress_lines(r.stdout)
    assert read_return_parameters(returns) == outputs
    want_p, want_sd = str(tmp_path / "want-p.nrrd"), str(tmp_path / "want-sd.nrrd")
    r2 = subprocess.run([REPMODE, "predict", "--model", CELLS, "--task", "nuclei", "--input", str(source), "--output",
                         want_p, "--uncertainty", want_sd, "--mc-samples", "3", "--seed", "4", "--mc-dropout", "0.1",
                         "--gate-noise", "0.1"], capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr
    sd, sd_spacing, sd_origin, sd_direction = read_nrrd(outputs["uncertaintyVolume"])
    assert np.array_equal(sd.view(np.uint32), read_nrrd(want_sd)[0].view(np.uint32))
    assert np.array_equal(read_nrrd(outputs["outputVolume"])[0].view(np.uint32), read_nrrd(want_p)[0].view(np.uint32))
    assert sd.shape == signal.shape and sd.min() >= 0 and sd.max() > 0
    np.testing.assert_allclose(sd_spacing, spacing, rtol=1e-6)
    np.testing.assert_allclose(sd_origin, ORIGIN, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sd_direction, DIRECTION, atol=1e-6)


def test_real_ct_keeps_its_geometry(tmp_path, description):
    # A real head CT (64 x 64 x 93, int16) through a cells task: the check is geometry and plumbing, with the volume
    # streamed in pieces, and empty --threshold and --patch values (older Slicers pass them) meaning "not given".
    ct, spacing = read_nrrd_spacings(CT)
    run = run_as_slicer(tmp_path, description, CELLS, "membranes", ct, spacing, {"divisions": "3"},
                        extra=("--threshold", "", "--patch", ""))
    assert np.isfinite(run.prediction).all()
    assert set(np.unique(run.labels)) <= {0, 1}
    check_segmentation(run, ["membranes"], spacing, {})


def test_non_finite_voxels_are_refused_or_replaced_as_chosen(tmp_path, description, cells):
    voxels, spacing, _, _ = read_nrrd(str(cells / "signal.nrrd"))
    voxels = voxels.astype(np.float32)
    voxels[1, 2, 3] = np.nan
    (tmp_path / "mean").mkdir()
    run = run_as_slicer(tmp_path / "mean", description, CELLS, "nuclei", voxels, spacing, {"nonFinite": "mean"})
    assert np.isfinite(run.prediction).all()
    source = tmp_path / "input.nrrd"
    write_nrrd(str(source), voxels, spacing, ORIGIN, DIRECTION)
    outputs = {"outputVolume": str(tmp_path / "p.nrrd"), "labelMap": str(tmp_path / "l.nrrd"),
               "segmentation": str(tmp_path / "s.seg.nrrd")}
    command = command_line(MODULE, description, {"modelFile": CELLS, "task": "nuclei", "inputVolume": str(source),
                                                 **outputs})
    r = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    assert "1 of %d voxels are not finite" % voxels.size in r.stderr and "(x, y, z) = (3, 2, 1)" in r.stderr
    assert not any(os.path.exists(p) for p in outputs.values())


def read_nrrd_spacings(path):
    """The committed CT has `spacings` and no space (as VTK wrote it): its array and spacing."""
    fields, _, raw = nrrd_header(path)
    sizes = [int(v) for v in fields["sizes"].split()][::-1]
    array = np.frombuffer(raw, dtype="<i2", count=int(np.prod(sizes))).reshape(sizes).astype(np.int16)
    return array, np.array([float(v) for v in fields["spacings"].split()])


# --- Bad input.

def bad_run(tmp_path, description, **values):
    """Runs the module on a small input with `values` over good ones; returns the result."""
    source = tmp_path / "input.nrrd"
    write_nrrd(str(source), np.ones((16, 32, 32), np.float32), (1.0, 1.0, 1.0), ORIGIN, DIRECTION)
    chosen = {"modelFile": CELLS, "task": "nuclei", "inputVolume": str(source),
              "outputVolume": str(tmp_path / "prediction.nrrd"), "labelMap": str(tmp_path / "labels.nrrd"),
              "segmentation": str(tmp_path / "segmentation.seg.nrrd"), **values}
    command = command_line(MODULE, description, chosen, str(tmp_path / "returns.params"))
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_bad_model_path_fails_cleanly(tmp_path, description):
    r = bad_run(tmp_path, description, modelFile=str(tmp_path / "no-such-model.safetensors"))
    assert r.returncode == 1
    assert "no-such-model.safetensors" in r.stderr and "RepModeSegmentation" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["input.nrrd"]  # no output, no temporary file, no return file


def test_unknown_task_fails_cleanly(tmp_path, description):
    # The second of two tasks is unknown: refused before any output, the hidden file of components included.
    r = bad_run(tmp_path, description, task="nuclei,ink")
    assert r.returncode == 1 and "no task 'ink'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["input.nrrd"]


def test_segmentation_that_is_not_nrrd_fails_cleanly(tmp_path, description):
    r = bad_run(tmp_path, description, segmentation=str(tmp_path / "segmentation.nii"))
    assert r.returncode == 1
    assert "segmentation.nii" in r.stderr and ".seg.nrrd" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["input.nrrd"]


def test_predict_segmentation_that_is_not_nrrd_fails_cleanly(tmp_path):
    source = tmp_path / "input.nrrd"
    write_nrrd(str(source), np.ones((16, 32, 32), np.float32))
    r = subprocess.run([REPMODE, "predict", "--model", CELLS, "--task", "nuclei", "--input", str(source), "--output",
                        str(tmp_path / "p.nrrd"), "--segmentation", str(tmp_path / "s.mha")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith("repmode: --segmentation: ") and "s.mha" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["input.nrrd"]


def test_echo_prints_the_parameters(tmp_path, description):
    r = subprocess.run([MODULE, "--echo", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--returnparameterfile" in r.stdout and "--processinformationaddress" in r.stdout
    assert shutil.which("xmllint"), "libxml2-utils (make deps installs it)"
