"""plugin/itk as an ITK user adds it: the external module configured against the installed ITK in an empty folder,
built (the core with it), and its own tests, ITK test functions in its test driver, run by its ctest."""
import os
import shutil
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.environ["REPMODE_ITK_MODULE_WORK"]
CMAKE = os.environ.get("CMAKE", "cmake")
CTEST = os.environ.get("CTEST", "ctest")
LAUNCHER = os.environ.get("REPMODE_COMPILER_LAUNCHER", "")
MODULE_TESTS = ["itkRepModeImageFilterTest", "itkRepModeLabelMapFilterTest"]


def run(args):
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, "%s\n%s%s" % (" ".join(args), r.stdout, r.stderr)
    return r.stdout


def test_module_builds_against_itk_and_its_tests_pass():
    shutil.rmtree(WORK, ignore_errors=True)
    launch = ["-DCMAKE_%s_COMPILER_LAUNCHER=%s" % (lang, LAUNCHER) for lang in ("C", "CXX") if LAUNCHER]
    run([CMAKE, "-S", os.path.join(ROOT, "plugin", "itk"), "-B", WORK, "-DITK_DIR=" + os.environ["ITK_DIR"],
         "-DBUILD_TESTING=ON", "-DCMAKE_BUILD_TYPE=Release", *launch])
    run([CMAKE, "--build", WORK, "-j", "2"])
    # The module built its own core and test driver: nothing comes from the main build.
    assert os.path.isfile(os.path.join(WORK, "src", "core", "librepmode.so"))
    assert os.path.isfile(os.path.join(WORK, "test", "RepModeTestDriver"))
    out = run([CTEST, "--test-dir", WORK, "--output-on-failure"])
    for name in MODULE_TESTS:
        assert any(name in line and "Passed" in line for line in out.splitlines()), out
    assert "100%% tests passed, 0 tests failed out of %d" % len(MODULE_TESTS) in out, out
