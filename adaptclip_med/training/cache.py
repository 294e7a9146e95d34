"""On-disk, memory-mapped cache of frozen backbone features (and resized masks) for training.

The backbone is frozen and training uses no augmentation, so an image's features never change: they
are computed once and read back, memory-mapped, in later epochs. Layout under ``root``::

    <root>/<spec-id>/spec.json                 what the entries were computed with
    <root>/<spec-id>/features/<sha256>.npy     (1 + L·N, D): row 0 global, then L layers of N tokens
    <root>/<spec-id>/masks/<sha256>.npy        (S, S) uint8 0/1 mask at the model resolution

``spec-id`` hashes the backbone name, pretrained tag, image size, feature layers, a fingerprint of the
backbone weights and the storage dtype; ``<sha256>`` is the image (or mask) file's content hash. A
changed file therefore gets a new entry and is recomputed, never reused. Entries are written atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptclip_med.io import atomic_path, atomic_write_json

CACHE_FORMAT = 1
"""Bumped whenever the entry layout changes, so old caches are ignored rather than misread."""

DTYPES = {"float16": np.float16, "float32": np.float32}


def weights_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of every parameter and buffer of ``module``."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        data = tensor.detach().to("cpu").contiguous()
        if data.numel():
            digest.update(data.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


class FeatureCache:
    """Per-image frozen features and masks, stored as memory-mapped ``.npy`` files.

    Args:
        root: cache folder (created on demand).
        spec: what determines the features (backbone, tag, image size, layers, weights fingerprint).
        dtype: ``"float16"`` (half the disk, features rounded once) or ``"float32"`` (exact).
    """

    def __init__(self, root: str | Path, spec: Mapping[str, Any], dtype: str = "float16") -> None:
        if dtype not in DTYPES:
            msg = f"cache dtype: got {dtype!r}; expected one of {sorted(DTYPES)}."
            raise ValueError(msg)
        self.dtype = dtype
        self.spec = {**spec, "dtype": dtype, "format": CACHE_FORMAT}
        spec_id = hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()[:20]
        self.dir = Path(root) / spec_id
        (self.dir / "features").mkdir(parents=True, exist_ok=True)
        (self.dir / "masks").mkdir(parents=True, exist_ok=True)
        if not (self.dir / "spec.json").is_file():
            atomic_write_json(self.dir / "spec.json", self.spec)

    def _path(self, kind: str, sha: str) -> Path:
        return self.dir / kind / f"{sha}.npy"

    def _load(self, kind: str, sha: str) -> np.ndarray | None:
        path = self._path(kind, sha)
        if not path.is_file():
            return None
        return np.load(path, mmap_mode="r")

    def _store(self, kind: str, sha: str, array: np.ndarray) -> np.ndarray:
        path = self._path(kind, sha)
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.save(fh, np.ascontiguousarray(array))
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
        flat = torch.cat([global_[None], patches.reshape(-1, patches.shape[-1])], 0)
        return self._store("features", sha, flat.detach().cpu().numpy().astype(DTYPES[self.dtype]))

    def mask(self, sha: str) -> np.ndarray | None:
        """The stored ``(S, S)`` uint8 mask (memory-mapped), or ``None`` if absent."""
        return self._load("masks", sha)

    def store_mask(self, sha: str, mask: np.ndarray) -> np.ndarray:
        """Store one ``(S, S)`` 0/1 mask; returns it memory-mapped."""
        return self._store("masks", sha, mask.astype(np.uint8))

    def __len__(self) -> int:
        return sum(1 for _ in (self.dir / "features").glob("*.npy"))


def split_features(flat: np.ndarray | torch.Tensor, layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Undo the storage layout: ``(1 + L·N, D)`` → global ``(D,)`` float32 and patches ``(L, N, D)``."""
    t = torch.from_numpy(np.array(flat, dtype=np.float32))  # a copy: memmaps are read-only
    return t[0], t[1:].reshape(layers, -1, t.shape[-1])
