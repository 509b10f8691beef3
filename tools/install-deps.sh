#!/usr/bin/env bash
# Installs the Debian 12 packages repmode needs, and only those that are missing.
# Quiet when everything is present; safe to run again (make deps calls it before every build).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libopenblas-openmp-dev   # BLAS: the OpenMP build runs single-threaded inside our own parallel regions
  libcjson-dev             # JSON headers of safetensors model files
  libtclap-dev             # command-line parsing, as Slicer's generated CLIs do
  libgtest-dev libgmock-dev
  libinsighttoolkit5-dev libfftw3-dev libgdcm-tools   # ITK image IO of the repmode tool; its CMake package wants FFTW and GDCM's tools
  python3-torch python3-numpy python3-pytest   # PyTorch reference, fixtures, repmode-convert
  python3-tifffile         # the CLI tests write folders of 2D TIFF layers; the Python package reads TIFF
  python3-nibabel          # the Python package reads NIfTI (repmode.read_image, repmode.train's data CSV)
  python3-dask python3-distributed python3-zarr   # repmode.dask: chunked volumes on a dask.distributed cluster, Zarr
  python3-venv python3-setuptools   # the Python bindings' test installs them with pip into a virtual environment
  libxml2-utils            # xmllint: the Slicer module's --xml checked against the Slicer schema
  python3-jsonschema       # the Slicer extension's catalog entry checked against Slicer's JSON schema
  libvtk9-dev              # surface meshes (predict --surfaces, surfaces) and render's 3D view
  xvfb                     # render's 3D view without a display: Debian's VTK draws through X11 (GLX) only
  python3-vtk9             # the surface tests read the .vtp meshes with VTK's own reader
  valgrind                 # tests/sanitize: the tool's training step and prediction under memcheck
  libdnnl-dev              # oneDNN: the yardstick of the layer benchmark (make bench), not an engine
  libssl-dev               # libcrypto: SHA-256 of the provenance records, base64 of the batch report
  chromium chromium-driver python3-selenium   # the batch report's test opens it in headless Chromium
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
