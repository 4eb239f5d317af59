"""File checksums, for the parts that pin or key on a file's bytes (model weights and the text
tower in the ONNX runtime and its export, enrolment audio in the route index, the Whisper
conversion script) without importing each other."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
