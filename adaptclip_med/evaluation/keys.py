"""What a stored result is keyed by: file bytes, weights bytes, settings, package version.

A finished part or a shard of one is reused only when everything that determines it is the same:
the run's result settings, the SHA-256 of the backbone weights and checkpoint bytes, the adapter
config and the package version (:meth:`EvalConfig.key_parts`), and the bytes of every query, mask and
prompt image (:meth:`ContentHasher.records`). Paths are not keys: a copied data set resumes, a
replaced image is recomputed. Hashes are cached by (path, size, mtime) for the length of a run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adaptclip_med.data.records import Record
from adaptclip_med.runtime.io import sha256_file


class ContentHasher:
    """SHA-256 of file and folder bytes, each file read once per run (cached by path, size, mtime)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int, int], str] = {}

    def file(self, path: str | os.PathLike[str]) -> str:
        """Hex SHA-256 of one file's bytes."""
        p = Path(path)
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        if key not in self._cache:
            self._cache[key] = sha256_file(p)
        return self._cache[key]

    def path(self, path: str | os.PathLike[str] | None) -> str | None:
        """A file's SHA-256; for a folder, one hash over its files' relative names and bytes."""
        if path is None:
            return None
        p = Path(path)
        if p.is_file():
            return self.file(p)
        if p.is_dir():
            digest = hashlib.sha256()
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                digest.update(f"{f.relative_to(p).as_posix()}\0{self.file(f)}\n".encode())
            return digest.hexdigest()
        return "missing"

    def records(self, records: Iterable[Record]) -> str:
        """Short hash of the records' image and mask bytes, slice indices and labels (order matters)."""
        digest = hashlib.sha256()
        for r in records:
            digest.update(f"{self.path(r.image)}|{r.slice_index}|{self.path(r.mask)}|{r.label}\n".encode())
        return digest.hexdigest()[:16]


def package_version() -> str:
    """The installed adaptclip_med version (the source tree's ``__version__`` when not installed)."""
    try:
        return md.version("adaptclip_med")
    except md.PackageNotFoundError:
        from adaptclip_med.runtime.version import __version__

        return __version__


def model_content(model: Any, hasher: ContentHasher) -> dict[str, object]:
    """What the settings cannot say about a loaded model: weights and checkpoint bytes, adapter config.

    Random weights are keyed by their seed-determined construction (``"random"``); fresh adapters by
    ``None``.
    """
    prov = getattr(model, "provenance", {})
    config = model.config.to_dict() if hasattr(model, "config") else {}
    return {
        "backbone_weights_sha256": hasher.path(prov.get("pretrained_file")) or "random",
        "checkpoint_sha256": hasher.path(prov.get("checkpoint_file")),
        "adapter_config": config,
        "package_version": package_version(),
    }


def explain_change(old: dict[str, object] | None, new: dict[str, object]) -> str:
    """Why a stored result no longer applies, in words: the names of the keys that changed."""
    if not old:
        return "made by an older version without a content key"
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    words = {"backbone_weights_sha256": "backbone weights bytes changed",
             "checkpoint_sha256": "checkpoint bytes changed", "package_version": "package version changed",
             "images": "image, mask or prompt bytes changed (or other images)"}
    return "; ".join(words.get(k, f"setting {k!r} changed") for k in changed) or "unchanged"
