"""The one reuse key: what every stored result of the package is keyed by, built here and nowhere else.

Each reuse — an evaluation part and its batch shards, the persistent feature store, training's
feature cache and resume, the text-feature cache, ``score``'s result record — calls :func:`reuse_key`
with the named parts it depends on. :func:`reuse_key` always adds

* ``code``: SHA-256 over the bytes of the package's own source files (:func:`code_fingerprint`,
  computed once per process), so an edited copy of the package never reuses another copy's results;
* ``versions``: the versions of the libraries that compute the numbers (:func:`library_versions`).

The callers' parts use these names (:data:`PART_WORDS` says each in words when a result is recomputed):
``backbone_config`` (SHA-256 of the backbone config's content, not its path), ``architecture``
(activation and the module structure), ``weights`` / ``checkpoint`` (SHA-256 of the files' bytes),
``adapter_config``, ``device`` (type: ``cpu`` / ``cuda`` / ``mps``), ``precision``, ``batch_size``,
``images`` (image, mask and prompt bytes), ``groups`` (patient group of every image) and ``settings``
(every other setting that changes a number, by name). :func:`model_parts` and :func:`backbone_parts`
read the model parts from a loaded model (its ``provenance`` record, written by ``load_model``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptclip_med.runtime.io import sha256_file

#: What a changed part means, in the words a recomputed result is explained with.
PART_WORDS: dict[str, str] = {
    "code": "the package's source code changed",
    "versions": "a library version changed (torch, open_clip, numpy, Pillow, MONAI, pydicom, nibabel)",
    "backbone_config": "backbone config content changed",
    "architecture": "backbone architecture changed (activation or modules)",
    "weights": "backbone weights bytes changed",
    "checkpoint": "checkpoint bytes changed",
    "adapter_config": "adapter config changed",
    "device": "device type changed",
    "precision": "precision changed",
    "batch_size": "batch size changed",
    "images": "image, mask or prompt bytes changed (or other images)",
    "groups": "patient groups changed",
    "tokens": "prompt tokens changed",
}

#: Distributions whose versions are part of every key.
LIBRARIES: tuple[str, ...] = ("torch", "open_clip_torch", "numpy", "pillow", "monai", "pydicom", "nibabel")

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""The ``adaptclip_med`` folder whose sources :func:`code_fingerprint` hashes."""


def source_files(root: Path | None = None) -> list[tuple[str, Path]]:
    """``(name relative to the package, path)`` of the package's own source files (``*.py`` and the
    packaged ``*.json`` configs), in a fixed order: the input of :func:`code_fingerprint`."""
    root = PACKAGE_ROOT if root is None else root
    files = [p for p in root.rglob("*") if p.suffix in (".py", ".json") and "__pycache__" not in p.parts]
    return sorted((p.relative_to(root).as_posix(), p) for p in files if p.is_file())


@functools.cache
def code_fingerprint() -> str:
    """SHA-256 over the names and bytes of :func:`source_files` (computed once per process)."""
    digest = hashlib.sha256()
    for name, path in source_files():
        digest.update(f"{name}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def installed_versions(names: Iterable[str]) -> dict[str, str]:
    """``{distribution: version}`` of ``names`` (``"not installed"`` for a missing one)."""
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


@functools.cache
def library_versions() -> dict[str, str]:
    """``{distribution: version}`` of :data:`LIBRARIES` and ``adaptclip_med``'s ``__version__``."""
    from adaptclip_med.runtime.version import __version__

    return {"adaptclip_med": __version__, **installed_versions(LIBRARIES)}


def _plain(value: object) -> Any:
    """``value`` as plain JSON (tuples → lists, paths and other objects → strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@dataclass(frozen=True)
class Key:
    """A reuse key: its named parts and their digest.

    Attributes:
        parts: ``{name: plain JSON value}``; store them next to the result so that a later run can say
            why it recomputes (:meth:`why`).
    """

    parts: dict[str, Any]

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the parts (canonical JSON)."""
        return hashlib.sha256(json.dumps(self.parts, sort_keys=True).encode()).hexdigest()

    @property
    def short(self) -> str:
        """The first 16 hex digits of :attr:`digest` (file names, part records)."""
        return self.digest[:16]

    def why(self, old: Mapping[str, Any] | None) -> str:
        """Why a result stored under the parts ``old`` does not apply under this key (:func:`explain_change`)."""
        return explain_change(old, self.parts)


def reuse_key(**parts: object) -> Key:
    """The one reuse key: ``code`` and ``versions`` plus the caller's named parts (see the module docstring).

    Args:
        parts: what the stored result depends on, by name: use the names of :data:`PART_WORDS`, and
            ``settings`` (a dict) for the other settings.
    """
    return Key(_plain({"code": code_fingerprint(), "versions": library_versions(), **parts}))


def explain_change(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """Why a stored result no longer applies, in words: each changed part (and each changed setting)."""
    if not old or "code" not in old:
        return "made by an older version of adaptclip_med (its key holds no code fingerprint)"
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping) and name not in PART_WORDS:
            out += [f"setting {k!r} changed" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            out.append(PART_WORDS.get(name, f"setting {name!r} changed"))
    return "; ".join(out) or "unchanged"


def device_type(device: object) -> str:
    """``"cpu"``, ``"cuda"``, ``"mps"``: the kind of device, without its index (``cuda:1`` → ``cuda``)."""
    return str(getattr(device, "type", device)).split(":", 1)[0]


def module_structure(module: Any) -> str:
    """SHA-256 over a torch module's tree: every sub-module's name, class and ``extra_repr``.

    Two modules with the same weights but another activation (GELU vs QuickGELU), norm or layer
    layout get different values.
    """
    digest = hashlib.sha256()
    for name, sub in module.named_modules():
        digest.update(f"{name}:{type(sub).__module__}.{type(sub).__qualname__}({sub.extra_repr()})\n".encode())
    return digest.hexdigest()


def backbone_parts(model: Any) -> dict[str, object]:
    """The parts of a loaded model that determine its frozen features, except the weights' bytes.

    ``backbone_config`` (content hash recorded by ``load_model``), ``architecture`` (activation,
    :func:`module_structure` of the backbone, the engine that runs it when not torch), ``device`` type
    and ``precision``.
    """
    prov = getattr(model, "provenance", {})
    return {
        "backbone_config": prov.get("backbone_config_sha256"),
        "architecture": {"activation": prov.get("activation"), "modules": module_structure(model.backbone),
                         "engine": prov.get("engine")},
        "device": device_type(model.device),
        "precision": str(getattr(model, "precision", "fp32")),
    }


def model_parts(model: Any, hasher: ContentHasher) -> dict[str, object]:
    """Every part of a loaded model that determines a result: :func:`backbone_parts`, the SHA-256 of the
    backbone weights file (random weights: their seed) and of the checkpoint, the adapter config."""
    prov = getattr(model, "provenance", {})
    config = model.config.to_dict() if hasattr(model, "config") else {}
    return {
        **backbone_parts(model),
        "weights": hasher.path(prov.get("pretrained_file")) or f"random (seed {prov.get('seed', 0)})",
        "checkpoint": hasher.path(prov.get("checkpoint_file")),
        "adapter_config": config,
    }


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

    def records(self, records: Iterable[Any]) -> str:
        """Short hash of the records' image and mask bytes, slice indices and labels (order matters)."""
        digest = hashlib.sha256()
        for r in records:
            digest.update(f"{self.path(r.image)}|{r.slice_index}|{self.path(r.mask)}|{r.label}\n".encode())
        return digest.hexdigest()[:16]


def groups_key(records: Iterable[Any]) -> str:
    """Short hash of the records' patient groups, in order (``None`` where a record has none)."""
    digest = hashlib.sha256()
    for r in records:
        digest.update(f"{r.group}\n".encode())
    return digest.hexdigest()[:16]
