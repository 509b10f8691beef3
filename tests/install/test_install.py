"""An installation is something to build on: `cmake --install` into a prefix, then the examples built against it as
a user would, from C with pkg-config and as a standalone CMake project with find_package(repmode), with the shared
and with the static library. The programs run: the worked example and the ITK pipeline write what `repmode predict`
writes, and the operators demo prints the losses of the in-tree build."""
import glob
import os
import shlex
import shutil
import subprocess

import numpy as np
import pytest

from predictions import MODELS, ROOT, check_predict_volume, read_mha, reference, run

BUILD = os.environ["REPMODE_BUILD_DIR"]
WORK = os.environ["REPMODE_WORK_DIR"]  # fixed, so that a compiler cache recognizes the builds from run to run
CC = os.environ.get("CC", "cc")
CMAKE = os.environ.get("CMAKE", "cmake")
LAUNCHER = os.environ.get("REPMODE_COMPILER_LAUNCHER", "")
EXAMPLES = os.path.join(ROOT, "examples")
DEMO_ARGS = ["12", "2"]  # steps, threads
VERSION = os.environ["REPMODE_VERSION"]
SONAME = "librepmode.so." + VERSION.split(".")[0]


@pytest.fixture(scope="module")
def prefix():
    shutil.rmtree(WORK, ignore_errors=True)
    path = os.path.join(WORK, "prefix")
    run([CMAKE, "--install", BUILD, "--prefix", path])
    return path


@pytest.fixture(scope="module")
def libdir(prefix):
    (lib,) = glob.glob(os.path.join(prefix, "lib*", "**", "librepmode.so"), recursive=True)
    return os.path.dirname(lib)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return reference(tmp_path_factory.mktemp("reference"))


def demo_losses(program, env=None):
    out = run([program, *DEMO_ARGS], env=env).stdout.splitlines()
    return [line for line in out if line.lstrip().startswith("step")] + out[-1:]


@pytest.fixture(scope="module")
def in_tree_losses():
    return demo_losses(os.environ["REPMODE_OPS_DEMO"])


def pkg_config(libdir, *args):
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))
    return shlex.split(run(["pkg-config", *args, "repmode"], env=env).stdout)


def needed(program):
    out = run(["readelf", "-d", program]).stdout
    return [line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def cmake_project(source, build, prefix):
    launch = ["-DCMAKE_%s_COMPILER_LAUNCHER=%s" % (lang, LAUNCHER) for lang in ("C", "CXX") if LAUNCHER]
    run([CMAKE, "-S", source, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_C_COMPILER=" + CC,
         "-DCMAKE_PREFIX_PATH=" + prefix, *launch])
    run([CMAKE, "--build", build, "-j", "2"])


def test_installs_headers_libraries_and_packages(prefix, libdir):
    sources = {os.path.relpath(p, os.path.join(ROOT, "include"))
               for p in glob.glob(os.path.join(ROOT, "include", "**", "*.h*"), recursive=True)}
    installed = {os.path.relpath(p, os.path.join(prefix, "include"))
                 for p in glob.glob(os.path.join(prefix, "include", "**", "*.h*"), recursive=True)}
    assert installed == sources and "itkRepModeImageFilter.hxx" in installed
    for name in ["librepmode.a", SONAME, "librepmode.so." + VERSION, "pkgconfig/repmode.pc",
                 "cmake/repmode/repmodeConfig.cmake", "cmake/repmode/repmodeConfigVersion.cmake",
                 "cmake/repmode/repmodeTargets.cmake"]:
        assert os.path.exists(os.path.join(libdir, name)), name
    assert pkg_config(libdir, "--modversion") == [VERSION]


def test_c_examples_with_pkg_config(prefix, libdir, cases, in_tree_losses, tmp_path):
    flags = pkg_config(libdir, "--cflags", "--libs")
    env = dict(os.environ, LD_LIBRARY_PATH=libdir)
    for name in ["predict_volume", "ops_demo"]:
        run([CC, "-std=c11", "-O2", "-Wall", "-Werror", os.path.join(EXAMPLES, name + ".c"), "-o", tmp_path / name,
             *flags, "-lm"])
    assert SONAME in needed(tmp_path / "ops_demo")
    assert os.path.join(libdir, SONAME) in run(["ldd", tmp_path / "ops_demo"], env=env).stdout
    check_predict_volume(tmp_path / "predict_volume", cases, tmp_path, env=env)
    assert demo_losses(tmp_path / "ops_demo", env) == in_tree_losses


def test_static_library_with_pkg_config(prefix, libdir, in_tree_losses, tmp_path):
    # pkg-config --static adds what librepmode.a needs; -lrepmode would pick the shared library: name the archive.
    flags = [os.path.join(libdir, "librepmode.a") if f == "-lrepmode" else f
             for f in pkg_config(libdir, "--static", "--cflags", "--libs")]
    program = tmp_path / "ops_demo"
    run([CC, "-std=c11", "-O2", os.path.join(EXAMPLES, "ops_demo.c"), "-o", program, *flags])
    assert not any(n.startswith("librepmode") for n in needed(program))
    assert demo_losses(program) == in_tree_losses


def test_examples_as_a_cmake_project(prefix, cases, in_tree_losses, tmp_path):
    build = os.path.join(WORK, "examples")
    cmake_project(EXAMPLES, build, prefix)
    built = lambda name: os.path.join(build, name)  # noqa: E731
    assert os.path.join(prefix, "lib") in run(["ldd", built("repmode-predict-volume")]).stdout
    check_predict_volume(built("repmode-predict-volume"), cases, tmp_path)
    assert demo_losses(built("repmode-ops-demo")) == in_tree_losses
    # The ITK pipeline, streamed in 3 pieces (it reads the formats ITK writes, so the cells' NRRD only).
    model, task, path, _, expected = cases[0]
    out = tmp_path / "itk.mha"
    run([built("repmode-itk-predict"), os.path.join(MODELS, model), task, path, out, "3"])
    assert np.array_equal(read_mha(str(out))[0], expected)


def test_static_target_of_the_cmake_package(prefix, in_tree_losses, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.25)\n"
        "project(static_consumer C)\n"
        "find_package(repmode %s REQUIRED)\n"
        "add_executable(ops_demo %s/ops_demo.c)\n"
        "target_link_libraries(ops_demo PRIVATE repmode::repmode_static)\n" % (VERSION, EXAMPLES))
    build = os.path.join(WORK, "static")
    cmake_project(source, build, prefix)
    program = os.path.join(build, "ops_demo")
    assert not any(n.startswith("librepmode") for n in needed(program))
    assert demo_losses(program) == in_tree_losses
