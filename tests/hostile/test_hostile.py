"""The hostile-input matrix (docs/cli.md §1.5): malformed models, images and paths, output folders that do not exist,
are read-only or full, and signals mid-run, each given to `repmode` and, where the Python package has the same
operation, to the package. Every case must end with exit 1 (143 for SIGTERM) and one line naming the file and the
problem, in the user's words (no ITK object address, no C function), or repmode.Error with the same; and must leave
the folder exactly as it was: no output, no temporary file.

The corrupted model files are made here from a fixture by editing its safetensors header directly (the format is
8 bytes of little-endian length, a JSON header, the data), not with repmode's own writer."""
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "wrapping", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "cli"))
import repmode  # noqa: E402
from images import write_mha, write_nrrd  # noqa: E402

REPMODE = os.environ.get("REPMODE", os.path.join(ROOT, "build", "bin", "repmode"))
SMALL = os.path.join(ROOT, "tests", "fixtures", "parity_small.model.safetensors")  # tasks dna, membrane, ink
TASK = "dna"


# ---- helpers ------------------------------------------------------------------------------------------------------

def listing(folder):
    """Every file and folder under `folder`, hidden ones included, with sizes and times of the files."""
    out = {}
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = os.path.join(base, name)
            st = os.lstat(p)
            out[os.path.relpath(p, folder)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
    return out


def refused(r, *words):
    """Exit 1 and one message line naming every word; progress lines may precede it."""
    assert r.returncode == 1, (r.returncode, r.stderr)
    message = r.stderr.strip().splitlines()[-1]
    assert message.startswith("repmode: "), r.stderr
    for w in words:
        assert w in message, (w, message)
    for bad in ("internal error", "0x", "ITK ERROR", "itk::", "Traceback"):
        assert bad not in message, (bad, message)
    assert not re.search(r"\brm_[a-z_]+", message), message  # a C function's name
    return message


def cli(*args, timeout=120, **kwargs):
    return subprocess.run([REPMODE, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs)


def predict_cli(model, source, output, *more, **kwargs):
    return cli("predict", "--model", model, "--task", TASK, "--input", source, "--output", output, *more, **kwargs)


@pytest.fixture
def volume(tmp_path):
    """A small good input next to the case's files."""
    path = tmp_path / "in.mha"
    write_mha(str(path), np.random.default_rng(0).normal(size=(8, 12, 16)).astype(np.float32))
    return path


def check_untouched(tmp_path, action):
    """Runs action() and checks that the folder is exactly as it was."""
    before = listing(tmp_path)
    result = action()
    assert listing(tmp_path) == before, sorted(set(listing(tmp_path)) ^ set(before))
    return result


# ---- model files ------------------------------------------------------------------------------------------------

def split(data):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def join(header, body):
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def edited(change):
    """The fixture with its header edited by change(header) (which may return new body bytes)."""
    header, body = split(open(SMALL, "rb").read())
    new_body = change(header)
    return join(header, body if new_body is None else new_body)


def edit_config(**fields):
    def change(header):
        config = json.loads(header["__metadata__"]["repmode.config"])
        config.update(fields)
        header["__metadata__"]["repmode.config"] = json.dumps(config)
    return change


def first_tensor(header, suffix):
    return next(k for k in header if k != "__metadata__" and k.endswith(suffix))


def set_value(suffix, value):
    """Sets the first float of the first tensor whose name ends with suffix."""
    def change(header):
        body = bytearray(split(open(SMALL, "rb").read())[1])
        begin = header[first_tensor(header, suffix)]["data_offsets"][0]
        body[begin:begin + 4] = struct.pack("<f", value)
        return bytes(body)
    return change


def tensor_field(field, value, suffix="conv5x5_conv"):
    def change(header):
        header[first_tensor(header, suffix)][field] = value
    return change


def rename_tensor(header):
    name = first_tensor(header, "conv5x5_conv")
    header[name + "_renamed"] = header.pop(name)


def drop_metadata(key):
    def change(header):
        del header["__metadata__"][key]
    return change


def set_metadata(key, value):
    def change(header):
        header["__metadata__"][key] = value
    return change


GOOD = open(SMALL, "rb").read()
HEADER_LENGTH = struct.unpack("<Q", GOOD[:8])[0]

# name -> (the file's bytes, words the message must hold besides the file's name)
MODELS = {
    "empty": (b"", ["truncated"]),
    "four-bytes": (GOOD[:4], ["truncated"]),
    "header-cut": (GOOD[:8 + HEADER_LENGTH // 2], ["truncated"]),
    "data-cut": (GOOD[:len(GOOD) - 100], []),
    "length-huge": (struct.pack("<Q", 1 << 62) + GOOD[8:], ["truncated"]),
    "header-not-json": (struct.pack("<Q", 16) + b"not json at all!" + GOOD[24:], []),
    "dtype-unknown": (edited(tensor_field("dtype", "Q32")), ["Q32"]),
    "shape-negative": (edited(tensor_field("shape", [-4, 1, 5, 5, 5])), []),
    "shape-vs-offsets": (edited(tensor_field("shape", [4, 1, 5, 5, 6])), []),
    "offsets-outside": (edited(tensor_field("data_offsets", [0, 1 << 40])), []),
    "no-format": (edited(drop_metadata("repmode.format")), ["repmode.format"]),
    "config-not-json": (edited(set_metadata("repmode.config", "{base_channels: 4")), ["repmode.config"]),
    "tasks-not-json": (edited(set_metadata("repmode.tasks", "[")), ["repmode.tasks"]),
    "no-tasks": (edited(set_metadata("repmode.tasks", "[]")), ["task"]),
    "100000-tasks": (edited(set_metadata("repmode.tasks", json.dumps(
        [{"name": "t%d" % i, "kind": "regression"} for i in range(100000)]))), ["1024"]),
    "too-wide": (edited(edit_config(base_channels=4096, levels=4, patch=[16, 16, 16])), ["4096"]),
    "other-configuration": (edited(edit_config(base_channels=8)), ["shape"]),
    "tensor-missing": (edited(rename_tensor), ["missing"]),
    "nan-weight": (edited(set_value("conv5x5_conv", float("nan"))), ["non-finite", "conv5x5_conv"]),
    "inf-weight": (edited(set_value("conv5x5_conv", float("inf"))), ["conv5x5_conv"]),
    "huge-weight": (edited(set_value("conv5x5_conv", 3e30)), ["conv5x5_conv"]),
    "negative-variance": (edited(set_value("running_var", -1.0)), ["running_var"]),
}


@pytest.mark.parametrize("case", sorted(MODELS))
def test_hostile_model_files(tmp_path, volume, case):
    data, words = MODELS[case]
    model = tmp_path / (case + ".safetensors")
    model.write_bytes(data)
    refused(check_untouched(tmp_path, lambda: predict_cli(model, volume, tmp_path / "out.mha")), model.name, *words)
    refused(check_untouched(tmp_path, lambda: cli("reparam", "--model", model, "--task", "all",
                                                  "--out", tmp_path / "deploy.safetensors")), model.name)

    def load_and_predict():
        with pytest.raises(repmode.Error) as e:
            repmode.Model(str(model)).predict(np.zeros((8, 12, 16), np.float32), TASK)
        return str(e.value)
    message = check_untouched(tmp_path, load_and_predict)
    assert model.name in message and all(w in message for w in words), message


def test_a_model_without_the_task(tmp_path, volume):
    refused(check_untouched(tmp_path, lambda: cli("predict", "--model", SMALL, "--task", "golgi", "--input", volume,
                                                  "--output", tmp_path / "out.mha")),
            "no task 'golgi'", "dna, membrane, ink")
    with pytest.raises(repmode.Error, match="no task 'golgi'"):
        repmode.Model(SMALL).predict(np.zeros((8, 12, 16), np.float32), "golgi")


def test_a_deploy_form_model_given_to_reparam(tmp_path):
    deploy = tmp_path / "deploy.safetensors"
    assert cli("reparam", "--model", SMALL, "--task", TASK, "--out", deploy).returncode == 0
    refused(check_untouched(tmp_path, lambda: cli("reparam", "--model", deploy, "--task", TASK,
                                                  "--out", tmp_path / "again.safetensors")),
            "deploy-form model already")
    with pytest.raises(repmode.Error, match="deploy"):
        repmode.Model(str(deploy)).reparam(TASK, str(tmp_path / "again.safetensors"))
    assert not (tmp_path / "again.safetensors").exists()


# ---- images -----------------------------------------------------------------------------------------------------

def nifti(path, shape, datatype, bitpix, data=b""):
    """A NIfTI-1 file written from the standard's field offsets: dim at 40, datatype at 70, bitpix at 72, pixdim at
    76, vox_offset at 108, magic at 344."""
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    dims = [len(shape)] + list(shape) + [1] * (7 - len(shape))
    struct.pack_into("<8h", header, 40, *dims)
    struct.pack_into("<hh", header, 70, datatype, bitpix)
    struct.pack_into("<8f", header, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352.0)
    header[344:348] = b"n+1\0"
    with open(path, "wb") as f:
        f.write(bytes(header) + data)


def zero_sized(path):
    with open(path, "w") as f:
        f.write("ObjectType = Image\nNDims = 3\nDimSize = 0 12 16\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n")


def huge_header(path):
    with open(path, "w") as f:
        f.write("NRRD0004\ntype: float\ndimension: 3\nsizes: 100000 100000 1000\nencoding: raw\nendian: little\n\n")


def corrupt_compressed(path):
    with open(path, "wb") as f:
        f.write(b"ObjectType = Image\nNDims = 3\nDimSize = 16 12 8\nElementType = MET_FLOAT\nCompressedData = True\n"
                b"ElementDataFile = LOCAL\n" + b"\x78\x9c" + b"not a deflate stream" * 10)


def truncated(path):
    write_mha(str(path), np.ones((8, 12, 16), np.float32))
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) - 100])


def non_finite(path):
    a = np.ones((8, 12, 16), np.float32)
    a[2, 3, 4] = np.nan
    a[5, 6, 7] = np.inf
    write_mha(str(path), a)


# name -> (file name, writer, words of the CLI's message, words of read_image's message or None when the package
# reads it and refuses it at predict instead)
IMAGES = {
    "4d": ("four.nii", lambda p: nifti(p, (16, 12, 8, 2), 16, 32, b"\0" * (16 * 12 * 8 * 2 * 4)), ["4 dimensions"],
           ["2D and 3D"]),
    "vector": ("rgb.mha", lambda p: write_mha(str(p), np.ones((8, 12, 16, 3), np.float32), components=3),
               ["3-component", "scalar"], ["component"]),
    "complex": ("complex.nii", lambda p: nifti(p, (16, 12, 8), 32, 64, b"\0" * (16 * 12 * 8 * 8)), ["complex"],
                ["complex"]),
    "empty-file": ("empty.nrrd", lambda p: open(p, "wb").close(), ["not an image file"], [""]),
    "zero-size": ("zero.mha", zero_sized, ["no voxels"], ["no voxels"]),
    "truncated": ("cut.mha", truncated, ["truncated"], ["truncated"]),
    "corrupt-compressed": ("zlib.mha", corrupt_compressed, ["corrupt"], [""]),
    "huge-header": ("huge.nrrd", huge_header, ["100000", "memory available"], [""]),
    "non-finite": ("nan.mha", non_finite, ["2 of 1536 voxels are not finite", "(4, 3, 2)"], None),
}


@pytest.mark.parametrize("case", sorted(IMAGES))
def test_hostile_images(tmp_path, case):
    name, write, words, package_words = IMAGES[case]
    image = tmp_path / name
    write(image)
    refused(check_untouched(tmp_path, lambda: predict_cli(SMALL, image, tmp_path / "out.mha",
                                                          "--labels", tmp_path / "labels.nrrd")), name, *words)
    refused(check_untouched(tmp_path, lambda: cli("eval", "--model", SMALL, "--task", TASK, "--input", image,
                                                  "--target", image)), name)

    def read_and_predict():
        with pytest.raises(repmode.Error) as e:
            repmode.Model(SMALL).predict(repmode.read_image(str(image))[0].astype(np.float32), TASK)
        return str(e.value)
    message = check_untouched(tmp_path, read_and_predict)
    if package_words is not None:
        assert name in message and all(w in message for w in package_words), message
    else:
        assert "not finite" in message, message


def test_a_2d_image_is_a_volume_of_one_layer(tmp_path):
    """Not hostile: documented (docs/cli.md §1.4). The prediction is one layer of the input's size."""
    image = tmp_path / "two.mha"
    write_mha(str(image), np.random.default_rng(1).normal(size=(12, 16)).astype(np.float32))
    assert predict_cli(SMALL, image, tmp_path / "out.nrrd").returncode == 0
    assert repmode.read_image(str(tmp_path / "out.nrrd"))[0].shape == (1, 12, 16)


# ---- paths ------------------------------------------------------------------------------------------------------

def as_nobody():
    """Runs the child as an unprivileged user when the tests run as root (CI), for whom no file is unreadable."""
    if os.geteuid() != 0:
        return {}
    return {"preexec_fn": lambda: (os.setgroups([]), os.setgid(65534), os.setuid(65534))}


@pytest.fixture
def open_folder():
    """A folder every user may enter and write (pytest's own are the owner's only), for the cases run as nobody."""
    folder = tempfile.mkdtemp(prefix="repmode-hostile-")
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder)


def test_missing_unreadable_folder_and_device_inputs(open_folder):
    tmp_path = __import__("pathlib").Path(open_folder)
    model_copy = tmp_path / "model.safetensors"
    model_copy.write_bytes(GOOD)  # the checkout may be out of nobody's reach
    volume = tmp_path / "in.mha"
    write_mha(str(volume), np.random.default_rng(0).normal(size=(8, 12, 16)).astype(np.float32))
    secret = tmp_path / "secret.mha"
    write_mha(str(secret), np.ones((8, 12, 16), np.float32))
    secret_model = tmp_path / "secret.safetensors"
    secret_model.write_bytes(GOOD)
    for p in (model_copy, volume):
        os.chmod(p, 0o644)
    for p in (secret, secret_model):
        os.chmod(p, 0)
    (tmp_path / "folder.safetensors").mkdir()
    (tmp_path / "no-layers").mkdir()
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    out = tmp_path / "out.mha"
    for model, source, words, extra in [
            (tmp_path / "absent.safetensors", volume, ["absent.safetensors"], {}),
            (tmp_path / "folder.safetensors", volume, ["folder.safetensors", "not a regular file"], {}),
            (fifo, volume, ["fifo.safetensors", "not a regular file"], {}),
            ("/dev/zero", volume, ["/dev/zero", "not a regular file"], {}),
            (secret_model, volume, ["secret.safetensors", "Permission denied"], as_nobody()),
            (model_copy, tmp_path / "absent.mha", ["absent.mha", "no such file"], {}),
            (model_copy, tmp_path / "no-layers", ["no-layers", "no .tif layers"], {}),
            (model_copy, "/dev/null", ["/dev/null"], {}),
            (model_copy, secret, ["secret.mha"], as_nobody())]:
        refused(check_untouched(tmp_path, lambda: predict_cli(model, source, out, timeout=30, **extra)), *words)
    for model, words in [(tmp_path / "absent.safetensors", ["absent.safetensors"]),
                         (tmp_path / "folder.safetensors", ["not a regular file"]),
                         (fifo, ["not a regular file"]), ("/dev/zero", ["not a regular file"])]:
        with pytest.raises(repmode.Error) as e:
            repmode.Model(str(model))
        assert all(w in str(e.value) for w in words), str(e.value)


def test_output_paths_that_cannot_be_written(tmp_path, volume):
    (tmp_path / "folder.mha").mkdir()
    for output, words in [(tmp_path / "missing" / "out.mha", ["missing", "does not exist"]),
                          (tmp_path / "folder.mha", ["is a folder"]),
                          ("/dev/null", ["/dev/null", "regular file"]),
                          (tmp_path / "out.xyz", ["no image format"])]:
        refused(check_untouched(tmp_path, lambda: predict_cli(SMALL, volume, output)), *words)
    assert os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(repmode.Error, match="missing"):
        repmode.Model(SMALL).reparam(TASK, str(tmp_path / "missing" / "deploy.safetensors"))


def in_small_tmpfs(tmp_path, script, size="128k", options=""):
    """Runs a shell script with $MNT a fresh tmpfs of `size` (read-only with options="ro"), in a private mount
    namespace so nothing outlives the test; root needs no user namespace, anyone else maps to root in one. Returns
    the completed process; the script prints what the test checks."""
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    flags = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    mount = "mount -t tmpfs -o size=%s%s tmpfs \"$MNT\"" % (size, ("," + options) if options else "")
    return subprocess.run(["unshare", *flags, "sh", "-c", mount + " && " + script],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MNT=str(mnt), REPMODE=REPMODE, SMALL=SMALL, PYTHONPATH=os.pathsep.join(
                              [os.path.join(ROOT, "wrapping", "python"), os.environ.get("PYTHONPATH", "")])))


def test_a_full_disk_leaves_nothing(tmp_path):
    """A 128 kB tmpfs holds the input (6 kB) but not a 512 kB prediction: the write fails (MetaImage's writer itself
    ignores it; the file is read back), and the tmpfs holds the input alone afterwards. The same for the Python
    package's reparam."""
    source = tmp_path / "in.mha"
    write_mha(str(source), np.random.default_rng(0).normal(size=(64, 48, 16)).astype(np.float32)[:8])
    big = tmp_path / "big.mha"
    write_mha(str(big), np.random.default_rng(0).normal(size=(32, 64, 64)).astype(np.float32))
    r = in_small_tmpfs(tmp_path, 'cp "%s" "$MNT/in.mha" && "$REPMODE" predict --model "$SMALL" --task dna '
                       '--input "%s" --output "$MNT/out.mha"; echo "exit=$?"; '
                       'ls -A "$MNT"' % (source, big))
    lines = r.stdout.split()
    assert "exit=1" in lines and lines[lines.index("exit=1") + 1:] == ["in.mha"], (r.stdout, r.stderr)
    message = r.stderr.strip().splitlines()[-1]
    assert "cannot write" in message and "out.mha" in message, r.stderr
    r = in_small_tmpfs(tmp_path, '/usr/bin/python3 -c "import repmode, sys\ntry:\n    repmode.Model(\'$SMALL\')'
                       '.reparam(\'all\', \'$MNT/deploy.safetensors\')\nexcept repmode.Error as e:\n    print(\'error:\', e)'
                       '"; ls -A "$MNT"; echo end', size="64k")
    assert "error:" in r.stdout and "deploy.safetensors" in r.stdout.split("error:")[1], (r.stdout, r.stderr)
    assert r.stdout.strip().splitlines()[-1] == "end" and r.stdout.strip().splitlines()[-2].startswith("error:"), \
        r.stdout


def test_a_read_only_folder_is_refused_before_any_work(tmp_path, volume):
    r = in_small_tmpfs(tmp_path, '"$REPMODE" predict --model "$SMALL" --task dna --input "%s" --output "$MNT/out.mha"; '
                       'echo "exit=$?"; ls -A "$MNT"' % volume, options="ro")
    assert r.stdout.split() == ["exit=1"], (r.stdout, r.stderr)
    assert "not writable" in r.stderr and "normalizing" not in r.stderr, r.stderr


# ---- signals ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_leaves_nothing(tmp_path, signo):
    source = tmp_path / "in.mha"
    write_mha(str(source), np.random.default_rng(0).normal(size=(64, 96, 96)).astype(np.float32))
    before = listing(tmp_path)
    p = subprocess.Popen([REPMODE, "predict", "--model", SMALL, "--task", "dna,membrane", "--input", str(source),
                          "--output", str(tmp_path / "out.mha"), "--labels", str(tmp_path / "labels.nrrd"),
                          "--divisions", "8", "--threads", "1"], stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "predicting" in line:
            break
    time.sleep(0.3)
    p.send_signal(signo)
    rest = p.stderr.read()
    assert p.wait(timeout=60) == 128 + signo, rest
    assert "interrupted by " + signal.Signals(signo).name in rest, rest
    assert listing(tmp_path) == before
