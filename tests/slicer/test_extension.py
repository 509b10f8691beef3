"""The RepMode extension of 3D Slicer (plugin/slicer/extension/, docs/cli.md §5.2), as far as it can be checked
without Slicer's SDK: configured where Slicer is absent it stops with one clear message naming Slicer_DIR; its
catalog entry validates against Slicer's schema and agrees with the extension's CMakeLists and the module's
description; the module compiled as SlicerExecutionModel compiles it in the extension (main renamed
ModuleEntryPoint, behind SEM's wrapper) answers as the standalone one."""
import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
EXTENSION = os.path.join(ROOT, "plugin", "slicer", "extension")
ENTRY = os.path.join(EXTENSION, "RepMode.json")
SCHEMA = os.path.join(HERE, "slicer-extension-catalog-entry-schema-v1.0.2.json")
MODULE = os.environ.get("REPMODE_SLICER_MODULE", os.path.join(ROOT, "build", "bin", "RepModeSegmentation"))
SEM_MODULE = os.environ.get("REPMODE_SLICER_SEM_MODULE",
                            os.path.join(ROOT, "build", "bin", "repmode_slicer_sem_module"))


def read(path):
    with open(path) as f:
        return f.read()


def test_configuring_without_slicer_stops_naming_slicer_dir(tmp_path):
    build = tmp_path / "build"
    r = subprocess.run(["cmake", "-S", EXTENSION, "-B", str(build), "-DSlicer_DIR=" + str(tmp_path / "no-slicer")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "RepMode extension: 3D Slicer's SDK was not found; set Slicer_DIR" in r.stderr, r.stderr
    # It stops there: nothing of the repository was configured.
    assert not (build / "repmode").exists()
    assert "Configuring SEM CLI module" not in r.stdout


def test_catalog_entry_validates_against_slicer_schema():
    entry, schema = json.loads(read(ENTRY)), json.loads(read(SCHEMA))
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(entry, schema, cls=jsonschema.Draft7Validator)
    assert entry["$schema"] == schema["$id"]


def test_catalog_check_can_fail():
    # The validation above means something: an entry with a field the schema does not know, or without its
    # category, is refused.
    entry, schema = json.loads(read(ENTRY)), json.loads(read(SCHEMA))
    for bad in ({**entry, "module": "RepModeSegmentation"}, {k: v for k, v in entry.items() if k != "category"}):
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(bad))
        assert errors, bad


def test_catalog_entry_agrees_with_the_extension_and_the_module():
    entry = json.loads(read(ENTRY))
    cmake = read(os.path.join(EXTENSION, "CMakeLists.txt"))
    # The catalog names an extension by its entry's file name: the extension's project.
    assert re.search(r"^project\((\w+)\)", cmake, re.M).group(1) == os.path.splitext(os.path.basename(ENTRY))[0]
    # One category: the entry's, the extension's and the module's (where it shows in Slicer's Modules menu).
    xml = subprocess.run([MODULE, "--xml"], capture_output=True, text=True, timeout=60).stdout
    category = ET.fromstring(xml).findtext("category")
    assert entry["category"] == category
    assert re.search(r'set\(EXTENSION_CATEGORY "([^"]+)"\)', cmake).group(1) == category
    # Slicer's conventions, in order.
    steps = ["set(EXTENSION_HOMEPAGE", "set(EXTENSION_CONTRIBUTORS", "set(EXTENSION_DESCRIPTION", "find_package(Slicer",
             "include(${Slicer_USE_FILE})", "add_subdirectory(", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
             "include(${Slicer_EXTENSION_CPACK})"]
    at = [cmake.index(s) for s in steps]
    assert at == sorted(at)
    # A local entry names the folder to configure: this one; the module it builds is RepModeSegmentation.
    assert entry["scm_type"] == "local"
    assert os.path.samefile(os.path.join(ROOT, entry["scm_url"]), EXTENSION)
    module_cmake = read(os.path.join(ROOT, "plugin", "slicer", "CMakeLists.txt"))
    assert re.search(r"SEMMacroBuildCLI\(\s*NAME RepModeSegmentation\s", module_cmake)


def test_module_as_slicer_execution_model_builds_it():
    standalone = subprocess.run([MODULE, "--xml"], capture_output=True, text=True, timeout=60)
    sem = subprocess.run([SEM_MODULE, "--xml"], capture_output=True, text=True, timeout=60)
    assert sem.returncode == 0 and sem.stdout == standalone.stdout
    # Errors go through the same path: one line naming the module, exit code 1.
    r = subprocess.run([SEM_MODULE, "--overlap", "2", "m", "i", "o", "l", "s.seg.nrrd"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("RepModeSegmentation: ") and "--overlap" in r.stderr
