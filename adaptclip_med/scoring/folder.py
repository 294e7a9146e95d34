"""The ``--out`` folder of ``score``: checked before the model loads, owned through a manifest.

A run owns what it wrote and nothing else. ``.adaptclip-manifest.json`` (written atomically at the end of
every run) lists the files the run wrote and the inputs and settings it wrote them for (inputs as
hashes of their resolved paths: no path in the folder). The next run into the folder:

* refuses a folder holding the results of other inputs or settings unless ``replace`` (``--replace``);
* deletes only files the previous manifest lists that it did not write again (a user's own files, and
  files of a run that left no manifest, are never touched);
* holds the folder's lock (:func:`adaptclip_med.runtime.locks.hold`) for its whole length.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adaptclip_med.runtime.errors import AdaptCLIPError
from adaptclip_med.runtime.io import atomic_write_json

MANIFEST = ".adaptclip-manifest.json"
TOOL = "adaptclip_med score"


def check_out(out: Path) -> None:
    """Fail with one line when ``out`` cannot be a writable folder (a file, under a file, read-only)."""
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == out else f"lies under the file {parent}"
            msg = f"--out {out} {where}, not a folder; choose a folder path"
            raise AdaptCLIPError(msg)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".adaptclip-probe.", dir=out)
        os.close(fd)
        Path(probe).unlink()
    except OSError as err:
        msg = f"--out {out}: cannot write there ({err.strerror or type(err).__name__}); choose a writable folder"
        raise AdaptCLIPError(msg) from None


def _hashed(path: str) -> str:
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]


def signature(inputs: Iterable[str], normals: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    """What the folder's results depend on: the inputs and normals (hashed resolved paths) and ``settings``."""
    return {"inputs": sorted(_hashed(p) for p in inputs), "normals": _hashed(normals) if normals else None,
            **settings}


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The previous run's manifest, or None (no run of the toolkit recorded one, or it is unreadable)."""
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == TOOL else None


def claim(out: Path, sig: dict[str, Any], replace: bool) -> dict[str, Any] | None:
    """Check that ``out`` may take this run's results; the previous manifest (None if there is none).

    Raises:
        AdaptCLIPError: the folder holds another run's results (other inputs or settings) and not ``replace``.
    """
    old = read_manifest(out)
    if old is None or replace:
        return old
    was = old.get("signature", {})
    differ = [k for k in sorted({*sig, *was}) if sig.get(k) != was.get(k)]
    if differ:
        what = [k for k in ("inputs", "normals") if k in differ]
        changed = [f"{k} {was.get(k)} -> {sig.get(k)}" for k in differ if k not in what]
        what += [f"settings ({', '.join(changed)})"] if changed else []
        msg = (f"--out {out} holds the results of other {' and '.join(what)}; pass --replace to replace them, "
               "or choose another --out")
        raise AdaptCLIPError(msg)
    return old


def finish(out: Path, old: dict[str, Any] | None, sig: dict[str, Any], written: Iterable[str]) -> list[str]:
    """Delete what ``old`` recorded and this run did not write; record ``written``. Returns the deleted files."""
    keep = set(written)
    dropped = []
    for rel in (old or {}).get("files", []):
        path = out / rel
        if rel in keep or ".." in Path(rel).parts or Path(rel).is_absolute() or not path.is_file():
            continue
        path.unlink()
        dropped.append(rel)
        for parent in path.parents:  # a folder the old run made (dicom/<id>/overlay/) goes when emptied
            if parent == out or any(parent.iterdir()):
                break
            parent.rmdir()
    atomic_write_json(out / MANIFEST, {"tool": TOOL, "signature": sig, "files": sorted(keep)})
    return dropped


def inside(folder: Path, inputs: Iterable[str]) -> list[str]:
    """The inputs (folders) that contain ``folder``: it must not be read as their input."""
    target = folder.resolve()
    return [p for p in inputs if Path(p).is_dir() and target.is_relative_to(Path(p).resolve())]
