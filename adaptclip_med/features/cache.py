"""On-disk, memory-mapped cache of frozen backbone features (and resized masks) for training.

The backbone is frozen and training uses no augmentation, so an image's features never change: they
are computed once and read back, memory-mapped, in later epochs. Layout under ``root``::

    <root>/<spec-id>/spec.json                 what the entries were computed with
    <root>/<spec-id>/features/<sha256>.npy     (1 + L·N, D): row 0 global, then L layers of N tokens
    <root>/<spec-id>/masks/<sha256>.npy        (S, S) uint8 0/1 mask at the model resolution

``spec-id`` hashes :func:`feature_spec` (the parts of the one reuse key that features depend on: code
fingerprint, library versions, backbone name, tag, config content and architecture, image size,
feature layers, V-V start block, device type, precision, SHA-256 of the backbone weights' bytes,
preprocessing) and the storage dtype; ``<sha256>`` is the image (or mask) file's content hash. A
changed file or any changed setting therefore gets a new entry and is recomputed, never reused. Entries are written
atomically. :meth:`FeatureCache.note` says what was reused, or why nothing could be.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptclip_med.data.transforms.clip_input import CLIP_MEAN, CLIP_STD
from adaptclip_med.runtime.io import atomic_path, atomic_write_json, weights_fingerprint
from adaptclip_med.runtime.keys import backbone_parts, reuse_key

CACHE_FORMAT = 2
"""Bumped whenever the entry layout changes, so old caches are ignored rather than misread."""

DTYPES = {"float16": np.float16, "float32": np.float32}


def feature_spec(model: torch.nn.Module) -> dict[str, Any]:
    """Every setting that determines an image's frozen features (and its cached mask), JSON-ready.

    The parts of the one reuse key (:func:`adaptclip_med.runtime.keys.reuse_key`) that features depend
    on: the code fingerprint and library versions (``code``, ``versions``), backbone name and tag, image
    size, feature layers, V-V start block, the backbone config's content hash, the architecture
    (activation, module structure), the device type, the precision (``fp32``/``bf16``/``fp16``
    autocast), the SHA-256 of the frozen vision weights' bytes, and the preprocessing (8-bit Pillow
    bicubic squash to ``S×S``, CLIP mean/std; masks: Pillow bilinear, > 0.5), and the engine with its int8
    mode (:func:`engine_part`). Not the batch size: the stored features are shared by commands that batch
    differently (see docs/evaluation.md).
    """
    cfg = model.config
    return reuse_key(
        backbone=cfg.backbone, pretrained=cfg.pretrained, image_size=int(model.image_size),
        feature_layers=list(model.backbone.feature_layers), vv_start=int(model.backbone.vv_start),
        **backbone_parts(model), weights=weights_fingerprint(model.backbone),
        preprocess={"resize": "pillow-bicubic-squash-8bit", "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
                    "mask": "pillow-bilinear>0.5"},
        engine=engine_part(model),
    ).parts


def engine_part(model: torch.nn.Module) -> dict[str, Any]:
    """What computes the features: ``{"engine": "torch"}``, or the exported graph's engine, precision, int8
    mode and graph key (``load_model(engine=...)``, :meth:`adaptclip_med.engines.session.EngineEncoder.identity`)."""
    engine = getattr(model.backbone, "engine", None)
    return {"engine": "torch"} if engine is None else engine.identity()


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """``key (old → new)`` for every top-level key whose value differs between specs ``a`` and ``b``."""
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            old, new = a.get(key), b.get(key)
            short = all(isinstance(v, int | float | str | type(None)) and len(str(v)) <= 24 for v in (old, new))
            out.append(f"{key} ({old} → {new})" if short else key)
    return out


class FeatureCache:
    """Per-image frozen features and masks, stored as memory-mapped ``.npy`` files.

    Args:
        root: cache folder (created on demand).
        spec: what determines the features (:func:`feature_spec`).
        dtype: ``"float16"`` (half the disk, features rounded once) or ``"float32"`` (exact).

    Attributes:
        found: entries stored for these settings when the cache was opened.
        reused, stored: content hashes of the images read back / computed and written by this process.
    """

    def __init__(self, root: str | Path, spec: Mapping[str, Any], dtype: str = "float16") -> None:
        if dtype not in DTYPES:
            msg = f"cache dtype: got {dtype!r}; expected one of {sorted(DTYPES)}."
            raise ValueError(msg)
        self.dtype = dtype
        self.spec = {**spec, "dtype": dtype, "format": CACHE_FORMAT}
        spec_id = hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()[:20]
        self.dir = Path(root) / spec_id
        self.found = len(self) if (self.dir / "features").is_dir() else 0
        self.reused: set[str] = set()
        self.stored: set[str] = set()
        self._others = [] if self.found else self._other_specs()
        (self.dir / "features").mkdir(parents=True, exist_ok=True)
        (self.dir / "masks").mkdir(parents=True, exist_ok=True)
        if not (self.dir / "spec.json").is_file():
            atomic_write_json(self.dir / "spec.json", self.spec)

    def _other_specs(self) -> list[tuple[list[str], int]]:
        """(differing settings, entry count) of every other spec under the same root, closest first."""
        others = []
        for path in sorted(self.dir.parent.glob("*/spec.json")):
            if path.parent == self.dir:
                continue
            try:
                spec = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            count = sum(1 for _ in (path.parent / "features").glob("*.npy"))
            others.append((_differences(spec, self.spec), count))
        return sorted(others, key=lambda o: len(o[0]))

    def note(self) -> str:
        """One line for the screen/log: what this process reused from the cache and why it computed the rest."""
        head = f"feature cache {self.dir}: "
        if self.found:
            reason = "new or changed image content (keyed by SHA-256)"
            return head + (f"{self.found} entries for these settings; reused {len(self.reused)}, computed "
                           f"{len(self.stored)} ({reason})")
        if self._others:
            diffs, count = self._others[0]
            return head + (f"no entries for these settings; computed {len(self.stored)}. The cache holds "
                           f"{len(self._others)} other setting(s); the closest ({count} entries) differs in: "
                           f"{', '.join(diffs) or 'format'}")
        return head + f"empty; computed {len(self.stored)}"

    def _path(self, kind: str, sha: str) -> Path:
        return self.dir / kind / f"{sha}.npy"

    def _load(self, kind: str, sha: str) -> np.ndarray | None:
        path = self._path(kind, sha)
        if not path.is_file():
            return None
        if kind == "features":
            self.reused.add(sha)
        return np.load(path, mmap_mode="r")

    def _store(self, kind: str, sha: str, array: np.ndarray) -> np.ndarray:
        path = self._path(kind, sha)
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.save(fh, np.ascontiguousarray(array))
        if kind == "features":
            self.stored.add(sha)
        return np.load(path, mmap_mode="r")

    def features(self, sha: str) -> np.ndarray | None:
        """The stored ``(1 + L·N, D)`` array of an image (memory-mapped), or ``None`` if absent."""
        return self._load("features", sha)

    def store_features(self, sha: str, global_: torch.Tensor, patches: torch.Tensor) -> np.ndarray:
        """Store one image's features; returns the stored array as read back (rounded to ``dtype``).

        Args:
            global_: (D,) global feature.
            patches: (L, N, D) layer tokens, CLS at index 0 of each layer.
        """
        return self._store("features", sha, to_storage(global_, patches, self.dtype))

    def mask(self, sha: str) -> np.ndarray | None:
        """The stored ``(S, S)`` uint8 mask (memory-mapped), or ``None`` if absent."""
        return self._load("masks", sha)

    def store_mask(self, sha: str, mask: np.ndarray) -> np.ndarray:
        """Store one ``(S, S)`` 0/1 mask; returns it memory-mapped."""
        return self._store("masks", sha, mask.astype(np.uint8))

    def __len__(self) -> int:
        return sum(1 for _ in (self.dir / "features").glob("*.npy"))


def to_storage(global_: torch.Tensor, patches: torch.Tensor, dtype: str) -> np.ndarray:
    """The stored layout ``(1 + L·N, D)`` of ``global_`` ``(D,)`` and ``patches`` ``(L, N, D)``, in ``dtype``.

    The uncached training path rounds through this too, so its features equal the cache's bit for bit.
    """
    flat = torch.cat([global_[None], patches.reshape(-1, patches.shape[-1])], 0)
    return flat.detach().cpu().numpy().astype(DTYPES[dtype])


def split_features(flat: np.ndarray | torch.Tensor, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Undo the storage layout: ``(1 + L·N, D)`` → global ``(D,)`` float32 and patches ``(L, N, D)``."""
    t = torch.from_numpy(np.array(flat, dtype=np.float32))  # a copy: memmaps are read-only
    return t[0], t[1:].reshape(layers, -1, t.shape[-1])
