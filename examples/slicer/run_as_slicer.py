#!/usr/bin/env python3
"""Runs a 3D Slicer command-line module as Slicer runs it, without Slicer: asks the module for its description
(`--xml`), builds the command line from it and from the values given, runs it, and shows its progress lines as a
percentage and its return parameters.

    examples/slicer/run_as_slicer.py build/bin/RepModeSegmentation \\
        modelFile=examples/models/cells.safetensors inputVolume=cells/signal.nrrd task=nuclei,membranes \\
        outputVolume=prediction.nrrd labelMap=labels.nrrd segmentation=cells.seg.nrrd

Each value is NAME=VALUE for a parameter of the description; the others keep their defaults. The command line
follows Slicer's vtkSlicerCLIModuleLogic: flagged parameters first, in the description's order (a string, file,
directory or vector parameter with an empty value is left out, a boolean is its bare flag when true), then the
parameters with an <index>, in index order, each of which must have a value (Slicer passes images as files), but
an output image with no volume chosen, which is an empty argument."""
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

# Parameters whose flag Slicer leaves out when their value is empty.
_OMITTED_WHEN_EMPTY = {"file", "directory", "string", "integer-vector", "float-vector", "double-vector",
                       "string-vector"}


def description(module):
    """The module's description: the XML it prints for --xml."""
    r = subprocess.run([module, "--xml"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{module} --xml failed: {r.stderr.strip()}")
    return r.stdout


def parameters(xml):
    """The parameter elements of a description, in order."""
    root = ET.fromstring(xml)
    return [p for group in root.findall("parameters") for p in group if p.tag not in ("label", "description")]


def command_line(module, xml, values, return_file=None):
    """The command line Slicer builds for `values` (name -> value; others take their <default>)."""
    names = {p.findtext("name") for p in parameters(xml)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"the module has no parameter {', '.join(unknown)} (its parameters: {', '.join(sorted(names))})")
    command = [module] + (["--returnparameterfile", return_file] if return_file else [])
    indexed = []
    for p in parameters(xml):
        name = p.findtext("name")
        value = str(values.get(name, p.findtext("default") or ""))
        if p.find("index") is not None:
            optional = p.tag == "image" and p.findtext("channel") == "output"  # no node chosen: an empty argument
            if not value and not optional:
                raise ValueError(f"no value for {name} (parameter {p.findtext('index')} of the command line)")
            indexed.append((int(p.findtext("index")), value))
            continue
        flag = "--" + p.findtext("longflag") if p.find("longflag") is not None else "-" + p.findtext("flag")
        if p.tag == "boolean":
            command += [flag] if value == "true" else []
        elif value or p.tag not in _OMITTED_WHEN_EMPTY:
            command += [flag, value]
    return command + [v for _, v in sorted(indexed)]


def read_return_parameters(path):
    """Slicer's return-parameter file: one "name = value" line per output parameter."""
    with open(path) as f:
        return dict(line.rstrip("\n").split(" = ", 1) for line in f if line.strip())


def run(module, values, on_progress=None):
    """Runs the module as Slicer does; returns (exit code, stdout, stderr, return parameters). `on_progress` is
    called with each <filter-progress> fraction as the line arrives."""
    xml = description(module)
    with tempfile.TemporaryDirectory() as folder:
        returns = os.path.join(folder, "returns.params")
        command = command_line(module, xml, values, returns)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out = []
        for line in process.stdout:
            out.append(line)
            m = re.match(r"<filter-progress>([^<]+)</filter-progress>", line.strip())
            if m and on_progress:
                on_progress(float(m.group(1)))
        err = process.stderr.read()
        code = process.wait()
        returned = read_return_parameters(returns) if code == 0 and os.path.exists(returns) else {}
    return code, "".join(out), err, returned


def main(argv):
    if len(argv) < 2 or any("=" not in a for a in argv[2:]):
        print(__doc__.strip(), file=sys.stderr)
        return 1
    module, values = argv[1], dict(a.split("=", 1) for a in argv[2:])
    try:
        print("$ " + " ".join(command_line(module, description(module), values)))
        code, _, err, returned = run(module, values,
                                     lambda f: print(f"\r{100 * f:5.1f}%", end="\n" if f >= 1 else "", flush=True))
    except (RuntimeError, ValueError) as e:
        print(f"run_as_slicer: {e}", file=sys.stderr)
        return 1
    sys.stderr.write(err)
    for name, value in returned.items():
        print(f"{name} = {value}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
