"""The provenance record of an image that repmode wrote (docs/cli.md section 1.6), as a dict."""

import json
import os

from ._model import Error

_KEY = "repmode.provenance"


def provenance(path):
    """How the image at ``path`` was made: its provenance record as a dict (software and engine, model and its
    SHA-256, tasks, every prediction parameter, input and its SHA-256, date), as ``repmode info --json`` prints it;
    None when the image has none. The record is the ``repmode.provenance`` field of a NRRD or MetaImage header, else
    the sidecar ``<path>.json`` that formats without header fields (NIfTI, TIFF) get.

    >>> repmode.provenance("prediction.nrrd")["model"]["sha256"]
    '23310c60...'
    """
    path = os.fspath(path)
    name = path.lower()
    if name.endswith((".nrrd", ".nhdr")):
        text = _header_value(path, b"NRRD", _KEY + ":=", b"\n\n")
        text = _nrrd_unescape(text) if text is not None else None
    elif name.endswith((".mha", ".mhd")):
        text = _header_value(path, b"", _KEY + " = ", b"ElementDataFile")
    else:
        sidecar = path + ".json"
        if not os.path.exists(path):
            raise Error("cannot read %s: no such file" % path)
        if not os.path.exists(sidecar):
            return None
        with open(sidecar, encoding="utf-8") as f:
            text = f.read()
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError as e:
        raise Error("%s: the provenance is not JSON (%s)" % (path, e)) from None
    if not isinstance(record, dict):
        raise Error("%s: the provenance is not a JSON object" % path)
    return record


def _header_value(path, magic, prefix, end):
    """The value of the header line starting with ``prefix``, read up to ``end`` (the header's end), or None."""
    try:
        with open(path, "rb") as f:
            header = b""
            while end not in header:
                chunk = f.read(1 << 16)
                if not chunk:
                    break
                header += chunk
    except OSError as e:
        raise Error("cannot read %s: %s" % (path, e.strerror)) from None
    if not header.startswith(magic):
        raise Error("%s is not the image its name says (no %s header)" % (path, magic.decode() or "MetaImage"))
    for line in header[:header.find(end) if end in header else len(header)].split(b"\n"):
        text = line.decode("utf-8", errors="replace")
        if text.startswith(prefix):
            return text[len(prefix):].rstrip("\r")
    return None


def _nrrd_unescape(value):
    """NRRD key/value pairs escape a backslash as two and a line break as backslash-n (the NRRD format, 'Key/value
    pairs')."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in "\\n":
            out.append("\n" if value[i + 1] == "n" else "\\")
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)
