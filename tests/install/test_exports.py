"""librepmode.so exports exactly the public API: every function that include/repmode/*.h declares RM_API, and
nothing else (no private rm_* helper, nothing of cJSON or OpenBLAS, no C++ symbol); its soname carries the ABI's
major version."""
import glob
import os
import re
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
HEADERS = os.path.join(HERE, "..", "..", "include", "repmode")
LIB = os.environ["REPMODE_SHARED_LIB"]


def declared():
    names = set()
    for path in glob.glob(os.path.join(HEADERS, "*.h")):
        with open(path) as f:
            text = re.sub(r"/\*.*?\*/|//[^\n]*", "", f.read(), flags=re.S)  # the worked example calls functions
        for decl in re.findall(r"^\s*RM_API\b([^;{]*)", text, flags=re.M):
            names.add(re.search(r"(\w+)\s*\(", decl).group(1))
    return names


def exported():
    out = subprocess.run(["nm", "-D", "--defined-only", LIB], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def test_headers_are_parsed():
    names = declared()
    assert {"rm_ctx_create", "rm_deploy_load", "rm_predict_region", "rm_normalize"} <= names
    assert "rm_norm_value" not in names  # static inline in normalize.h: not a symbol


def test_exports_exactly_the_public_api():
    public, symbols = declared(), exported()
    assert sorted(symbols - public) == [], "exported but not declared RM_API"
    assert sorted(public - symbols) == [], "declared RM_API but not exported"


def test_soname_is_the_abi_major():
    out = subprocess.run(["objdump", "-p", LIB], capture_output=True, text=True, check=True).stdout
    assert re.search(r"SONAME\s+librepmode\.so\.%s\n" % os.environ["REPMODE_SOVERSION"], out), out
