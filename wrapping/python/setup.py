"""Installs the repmode package with the shared library it was built with, copied next to the package's modules
(found there first: the installation keeps working when the build tree is removed or rebuilt).

The library copied is $REPMODE_LIBRARY, else build/lib/librepmode.so.0 of this checkout (the default build tree):

    cmake -S . -B build && cmake --build build --target repmode_shared
    python3 -m pip install --no-build-isolation ./wrapping/python
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY = "librepmode.so.0"


def built_library():
    path = os.environ.get("REPMODE_LIBRARY") or os.path.join(HERE, "..", "..", "build", "lib", LIBRARY)
    if not os.path.isfile(path):
        raise SystemExit("repmode: %s not found: build the library first (cmake --build build --target "
                         "repmode_shared) or set REPMODE_LIBRARY to it" % os.path.normpath(path))
    return path


class BuildWithLibrary(build_py):
    """Copies the shared library into the built package."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "repmode", LIBRARY)
        shutil.copyfile(built_library(), target)  # the file, not a symbolic link to the build tree


class BinaryDistribution(Distribution):
    """The wheel carries a native library: tag it for this platform, not as pure Python."""

    def has_ext_modules(self):
        return True


setup(
    name="repmode",
    version="0.1.0",
    description="RepMode networks on the CPU: Python bindings of the repmode C library",
    packages=["repmode"],
    python_requires=">=3.9",
    install_requires=["numpy"],
    # Optional: reading TIFF and NIfTI (repmode.read_image, repmode.train's CSV), and repmode.dask. Debian's packages
    # python3-tifffile python3-nibabel python3-dask python3-distributed python3-zarr provide them.
    extras_require={"io": ["tifffile", "nibabel"], "dask": ["dask[array]", "distributed", "zarr"]},
    cmdclass={"build_py": BuildWithLibrary},
    distclass=BinaryDistribution,
)
