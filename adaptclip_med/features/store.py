"""Persistent store of frozen image features, shared by evaluation and training (``--feature-cache DIR``).

The backbone is frozen, so an image's features depend only on its bytes, the backbone and the
preprocessing: re-running with other seeds, shots or adapter checkpoints needs no backbone pass for an
image the store holds. Layout under ``root`` (the entry format of the training cache,
:mod:`adaptclip_med.features.cache`)::

    <root>/<spec-id>/spec.json               what the entries were computed with
    <root>/<spec-id>/<key[:2]>/<key>.npy     (1 + L·N, D) float16 (or float32): row 0 global, then L layers of N tokens

``spec-id`` hashes :func:`store_spec`: the training cache's :func:`~adaptclip_med.features.cache.feature_spec`
(the parts of the one reuse key, :func:`adaptclip_med.runtime.keys.reuse_key`, that features depend on:
code fingerprint, library versions, backbone, tag, config content, architecture, image size, feature
layers, V-V start block, device type, precision, SHA-256 of the backbone weights' bytes) with the
``build_transforms`` settings (DICOM window, modality,
border crop, normalisation: :func:`default_preprocess`) as its preprocessing, and the storage dtype.
``<key>`` hashes the image file's bytes (a DICOM series: every file's) and the slice index. A
changed image or setting is therefore never served stale features.

Disk per image (float16): ``(1 + L·N) · D · 2`` bytes, see :func:`entry_bytes` and docs/evaluation.md.
The store is bounded: past ``max_bytes`` the least recently used entries (by mtime, refreshed on every
read) are deleted. Entries are written to a temporary file, fsynced and renamed, so a reader — another
rank of a torchrun job included — sees a complete entry or none.

Every consumer fills it through the one encode path (:func:`adaptclip_med.features.encode.encode_batches`):
evaluation and ``score`` per record (:meth:`FeatureStore.get` / :meth:`FeatureStore.put`), training per
image content hash (:meth:`FeatureStore.features` / :meth:`FeatureStore.store_features`, ``train
--feature-cache DIR``). All go to the same entry: training reads its images through
``model.preprocess(path)``, which is ``build_transforms`` with its defaults, the evaluation's and
``score``'s preprocessing, so an image's frozen features are the same in all three (masks are not
stored here). :class:`Rounding` is the store that keeps nothing (training without a cache): it rounds
features exactly as a store of its dtype would, so results do not depend on whether a store is used.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptclip_med.data.records import Record
from adaptclip_med.features.cache import DTYPES, feature_spec, split_features, to_storage
from adaptclip_med.model.backbone import ImageFeatures
from adaptclip_med.runtime.io import atomic_path, atomic_write_json, sha256_file

STORE_FORMAT = 1
"""Bumped whenever the entry layout changes, so an old store is ignored rather than misread."""


def default_preprocess() -> dict[str, Any]:
    """The ``build_transforms`` defaults besides the size and the mask handling: the preprocessing of
    evaluation (transforms built with their defaults) and of training (``model.preprocess(path)``)."""
    from adaptclip_med.data.transforms.pipeline import build_transforms

    skip = {"image_size", "with_mask", "keep_original"}
    return {k: v.default for k, v in inspect.signature(build_transforms).parameters.items() if k not in skip}


def store_spec(model: torch.nn.Module, preprocess: Mapping[str, Any] | None = None,
               dtype: str = "float16") -> dict[str, Any]:
    """Every setting that determines a stored entry, JSON-ready.

    Args:
        model: the ``AdaptCLIP`` whose frozen backbone computes the features.
        preprocess: the ``build_transforms`` settings besides the size (window, modality, crop, mean,
            std, axis, frame), as given to it; default :func:`default_preprocess`.
        dtype: storage dtype, ``"float16"`` or ``"float32"``.
    """
    preprocess = default_preprocess() if preprocess is None else preprocess
    spec = feature_spec(model)
    spec["preprocess"] = {"pipeline": "adaptclip_med.data.build_transforms",
                          **{k: preprocess[k] for k in sorted(preprocess)}}
    return {**spec, "dtype": dtype, "store_format": STORE_FORMAT}


def entry_key(content: str, slice_index: int | None = None) -> str:
    """Entry key of an image: SHA-256 of its content hash (:func:`content_sha256`) and slice index."""
    return hashlib.sha256(f"{content}|{slice_index}".encode()).hexdigest()


def entry_bytes(layers: int, tokens: int, width: int, dtype: str = "float16") -> int:
    """Bytes of one stored image: ``(1 + L·N) · D`` values (plus the 128-byte ``.npy`` header)."""
    return (1 + layers * tokens) * width * np.dtype(DTYPES[dtype]).itemsize + 128


def content_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes; of a folder (DICOM series), over its files' relative names and bytes."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    digest = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        digest.update(f"{f.relative_to(p).as_posix()}\0{sha256_file(f)}\n".encode())
    return digest.hexdigest()


@dataclass
class StoreStats:
    """What one process did with the store: entries read back, written, evicted."""

    reused: int = 0
    stored: int = 0
    evicted: int = 0
    evicted_bytes: int = 0
    unreadable: list[str] = field(default_factory=list)


class FeatureStore:
    """Frozen features of evaluation images, on disk, keyed by content and settings, size-bounded.

    Implements the evaluation encode stage's store protocol: :meth:`get` / :meth:`put` per record.

    Args:
        root: store folder (created on demand; may be shared by runs and by the ranks of one job).
        spec: :func:`store_spec` of the model and preprocessing.
        max_bytes: size limit of ``root`` (all specs together); ``None`` = unbounded.
        content_hash: ``path -> hex digest`` of an image file or series folder (default
            :func:`content_sha256`; pass the run's memoising hasher to read each file once).
    """

    def __init__(self, root: str | os.PathLike[str], spec: Mapping[str, Any], *, max_bytes: int | None = None,
                 content_hash: Callable[[str], str] | None = None) -> None:
        if spec.get("dtype") not in DTYPES:
            msg = f"feature store dtype: got {spec.get('dtype')!r}; expected one of {sorted(DTYPES)}"
            raise ValueError(msg)
        if max_bytes is not None and max_bytes <= 0:
            msg = f"feature store size limit: got {max_bytes} bytes; expected > 0"
            raise ValueError(msg)
        self.root = Path(root)
        self.spec = dict(spec)
        self.dtype = str(spec["dtype"])
        self.layers = len(spec["feature_layers"])
        self.max_bytes = max_bytes
        spec_id = hashlib.sha256(json.dumps(self.spec, sort_keys=True, default=str).encode()).hexdigest()[:20]
        self.dir = self.root / spec_id
        self.stats = StoreStats()
        self._hash = content_hash or content_sha256
        self._keys: dict[str, str] = {}
        if not (self.dir / "spec.json").is_file():
            atomic_write_json(self.dir / "spec.json", self.spec)
        self._sizes = {p: p.stat().st_size for p in self._entries()} if max_bytes is not None else {}

    # ------------------------------------------------------------------ keys
    def key(self, record: Record) -> str:
        """Entry key of a record (:func:`entry_key` of its image content hash and slice index)."""
        if record.key not in self._keys:
            self._keys[record.key] = entry_key(self._hash(record.image), record.slice_index)
        return self._keys[record.key]

    def path(self, record: Record) -> Path:
        """Where a record's entry lives (whether or not it exists yet)."""
        return self._path(self.key(record))

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    # ------------------------------------------------------------------ evaluation: per record
    def get(self, record: Record) -> ImageFeatures | None:
        """The record's stored features (global ``(1, D)``, patches ``L × (1, N, D)``, float32), or None.

        A damaged entry (truncated by a full disk, ...) is deleted and reported as absent.
        """
        flat = self._load(self.key(record))
        return None if flat is None else from_storage(flat, self.layers)

    def put(self, record: Record, feats: ImageFeatures) -> ImageFeatures:
        """Store one record's features (batch of one) and return them as stored (rounded to ``dtype``).

        Score from the returned features, so a run that computes an entry gives exactly the numbers of
        a later run that reads it back.

        Args:
            feats: global ``(1, D)``, patches ``L × (1, N, D)``.
        """
        flat = self._save(self.key(record), feats.global_[0], torch.stack([p[0] for p in feats.patches]))
        return from_storage(flat, self.layers)

    # ------------------------------------------------------------------ training: per content hash
    def features(self, content: str) -> np.ndarray | None:
        """The stored ``(1 + L·N, D)`` array of a 2-D image file with SHA-256 ``content``, or None.

        The interface of :meth:`adaptclip_med.features.cache.FeatureCache.features`, on this store's
        entries (the entry of the same file's evaluation record).
        """
        return self._load(entry_key(content))

    def store_features(self, content: str, global_: torch.Tensor, patches: torch.Tensor) -> np.ndarray:
        """Store one image's features; return the stored ``(1 + L·N, D)`` array (rounded to ``dtype``).

        Args:
            content: SHA-256 of the image file's bytes.
            global_: ``(D,)`` global feature.
            patches: ``(L, N, D)`` layer tokens, CLS at index 0 of each layer.
        """
        return self._save(entry_key(content), global_, patches)

    # ------------------------------------------------------------------ entries
    def _load(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        try:
            flat = np.load(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            self.stats.unreadable.append(path.name)
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # least-recently-used order: reading an entry makes it recent
        except FileNotFoundError:
            pass  # evicted by another process since: the array is already in memory
        self.stats.reused += 1
        return flat

    def _save(self, key: str, global_: torch.Tensor, patches: torch.Tensor) -> np.ndarray:
        flat = to_storage(global_, patches, self.dtype)
        path = self._path(key)
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.save(fh, flat)  # atomic_path fsyncs the file and its folder before the rename
        self.stats.stored += 1
        if self.max_bytes is not None:
            self._sizes[path] = path.stat().st_size
            self._evict()
        return flat

    # ------------------------------------------------------------------ size limit
    def _entries(self) -> list[Path]:
        return [p for p in self.root.glob("*/??/*.npy") if p.is_file()]

    def size_bytes(self) -> int:
        """Bytes held under ``root`` (all specs), as last counted by this process."""
        return sum(self._sizes.values()) if self.max_bytes is not None else sum(p.stat().st_size
                                                                                 for p in self._entries())

    def _evict(self) -> None:
        """Delete least recently used entries (oldest mtime first) until ``root`` fits ``max_bytes``."""
        if self.max_bytes is None or sum(self._sizes.values()) <= self.max_bytes:
            return
        self._sizes = {}
        for p in self._entries():
            try:
                self._sizes[p] = p.stat().st_size
            except FileNotFoundError:
                continue  # removed by another process meanwhile
        total = sum(self._sizes.values())
        by_age = sorted(self._sizes, key=lambda p: (_mtime(p), p.name))
        for p in by_age:
            if total <= self.max_bytes:
                break
            size = self._sizes.pop(p)
            p.unlink(missing_ok=True)
            total -= size
            self.stats.evicted += 1
            self.stats.evicted_bytes += size

    # ------------------------------------------------------------------ reporting
    def note(self, reused: int | None = None) -> str:
        """One line for the screen: images read from the store, computed and stored, evicted.

        Args:
            reused: the count of images read back to report (training: distinct images, each read once
                per epoch); default every read (``stats.reused``).
        """
        s = self.stats
        reused = s.reused if reused is None else reused
        line = (f"feature store {self.root}: {reused} image(s) reused, {s.stored} computed and stored "
                f"(keys: image bytes + backbone weights + settings)")
        if s.evicted:
            line += f"; {s.evicted} least recently used entr{'y' if s.evicted == 1 else 'ies'} evicted " \
                    f"({s.evicted_bytes / 2**20:.1f} MiB) to stay under {self.max_bytes / 2**30:.2f} GiB"
        if s.unreadable:
            line += f"; {len(s.unreadable)} damaged entr{'y' if len(s.unreadable) == 1 else 'ies'} recomputed"
        return line


def open_feature_store(root: str | os.PathLike[str], model: torch.nn.Module, dtype: str = "float16",
                       max_gb: float | None = None, content_hash: Callable[[str], str] | None = None
                       ) -> FeatureStore:
    """The store at ``root`` keyed for ``model`` with the default preprocessing (``--feature-cache``).

    Args:
        max_gb: size limit of ``root`` in GiB (``--feature-cache-max-gb``); ``None`` = unbounded.
        dtype, content_hash: as :class:`FeatureStore`.
    """
    limit = None if max_gb is None else int(max_gb * 2**30)
    return FeatureStore(root, store_spec(model, dtype=dtype), max_bytes=limit, content_hash=content_hash)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("-inf")


def from_storage(flat: np.ndarray, layers: int) -> ImageFeatures:
    """``(1 + L·N, D)`` stored rows → :class:`ImageFeatures` of one image: ``(1, D)``, ``L × (1, N, D)``, float32."""
    global_, patches = split_features(flat, layers)
    return ImageFeatures(global_[None], [patches[i][None] for i in range(layers)])


def as_storage(feats: ImageFeatures, dtype: str) -> np.ndarray:
    """The stored rows ``(1 + L·N, D)`` of one image's features (global ``(1, D)``, ``L × (1, N, D)``)."""
    return to_storage(feats.global_[0], torch.stack([p[0] for p in feats.patches]), dtype)


class Rounding:
    """The store that keeps nothing: :meth:`get` finds nothing, :meth:`put` rounds to ``dtype``.

    Used where no cache is wanted (training ``--no-cache``): features are rounded exactly as a store of
    that dtype rounds them, so a run with or without a store gives the same numbers.
    """

    def __init__(self, dtype: str = "float32") -> None:
        if dtype not in DTYPES:
            msg = f"feature dtype: got {dtype!r}; expected one of {sorted(DTYPES)}."
            raise ValueError(msg)
        self.dtype = dtype

    def get(self, record: Record) -> ImageFeatures | None:
        """Nothing is kept: always None."""
        return None

    def put(self, record: Record, feats: ImageFeatures) -> ImageFeatures:
        """``feats`` ``(1, N, D)`` rounded to ``dtype`` and back to float32 (nothing is written)."""
        return from_storage(as_storage(feats, self.dtype), len(feats.patches))
