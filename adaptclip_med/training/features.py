"""Training's side of the one encode path: content hashes, the mask cache, unreadable files.

Images become frozen features only through :func:`adaptclip_med.features.encode.encode_records` (the
loop of ``evaluate`` and ``score``: memory-bounded device batches, a feature store consulted first).
What is training's own lives here: the SHA-256 of every file (the cache keys and the run's data
identity), the cache of resized masks, and the screening that lists unreadable images and masks.

Image features live in the training cache (:class:`~adaptclip_med.features.cache.FeatureCache`,
``--cache-dir``) or, with ``--feature-cache DIR``, in the feature store shared with evaluation and
``score`` (:class:`~adaptclip_med.features.store.FeatureStore`: an image one of them encoded is not
encoded again). Both are keyed by content and seen through :class:`ByContent`; without either,
:class:`~adaptclip_med.features.store.Rounding` rounds as the cache would. Masks stay in the training cache.

Shapes: ``B`` images, ``L`` feature layers, ``N = 1 + G²`` tokens, ``D`` width, ``S`` image size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from adaptclip_med.data.records import Record
from adaptclip_med.data.transforms.pixels import load_mask  # the one mask rule (spec §5), shared with evaluation
from adaptclip_med.features.cache import DTYPES, FeatureCache
from adaptclip_med.features.encode import EncodeStats, encode_records
from adaptclip_med.features.store import Rounding, from_storage
from adaptclip_med.model.backbone import ImageFeatures
from adaptclip_med.runtime.io import sha256_file
from adaptclip_med.runtime.skips import READ_ERRORS, reason_of, strict_error

if TYPE_CHECKING:
    from adaptclip_med.features.store import FeatureStore


def _record(path: Path) -> Record:
    """A training image as a record of the encode path (2-D file: no slice)."""
    return Record(image=str(path), mask=None, label=0, cls="", split="train", group=None, dataset="")


def _preprocess(model: torch.nn.Module) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The encode path's transform for training: ``{"image": model.preprocess(path)}`` ``(3, S, S)``."""
    return lambda sample: {"image": model.preprocess(sample["image"])}


class ByContent:
    """A content-keyed home (the training cache or the shared store) as the encode path's store.

    Entries are the ``(1 + L·N, D)`` arrays of :meth:`FeatureCache.features` / ``store_features``,
    keyed by the image file's SHA-256; :meth:`get` and :meth:`put` speak ``(1, N, D)`` features.
    """

    def __init__(self, source: FeatureSource, home: FeatureCache | FeatureStore) -> None:
        self.source, self.home = source, home

    def get(self, record: Record) -> ImageFeatures | None:
        """The stored ``(1, N, D)`` features of the record's image (float32), or None."""
        found = self.source.stored(Path(record.image))
        return None if found is None else from_storage(found, self.source.layers)

    def put(self, record: Record, feats: ImageFeatures) -> ImageFeatures:
        """Store one image's ``(1, N, D)`` features; return them as stored (rounded to the home's dtype)."""
        flat = self.home.store_features(self.source.sha[Path(record.image)], feats.global_[0],
                                        torch.stack([p[0] for p in feats.patches]))
        return from_storage(flat, self.source.layers)


class FeatureSource:
    """Gives batches of frozen features and masks, computing each image at most once per cache.

    Args:
        model: an ``AdaptCLIP`` (its ``preprocess`` reads the images; the encode path
            :func:`~adaptclip_med.features.encode.encode_records` runs the backbone, ``chunk`` images
            per batch, fewer at a time when they do not fit, :mod:`adaptclip_med.features.memory`).
        cache: where features and masks live; ``None`` recomputes them on every request (no cache).
        device: where returned tensors go.
        chunk: images per backbone call.
        dtype: ``"float16"``/``"float32"``: without a cache, features are rounded exactly as the cache
            stores them (``cache.dtype`` or ``store.dtype`` wins when one is set), so a run gives the
            same adapters with or without the cache.
        store: where image features live instead of ``cache`` (the store shared with evaluation,
            keyed by the same content hashes); ``cache`` then holds the masks only (or is ``None``).

    Attributes:
        stats: images run through the backbone (``encoded``) and read from the home (``from_store``).
        reused: images whose features were already stored when first looked up.
    """

    def __init__(self, model: torch.nn.Module, cache: FeatureCache | None, device: torch.device | str,
                 chunk: int = 8, dtype: str = "float32", store: FeatureStore | None = None) -> None:
        if dtype not in DTYPES:
            msg = f"feature dtype: got {dtype!r}; expected one of {sorted(DTYPES)}."
            raise ValueError(msg)
        self.model = model
        self.cache = cache
        self.store = store
        self.dtype = dtype
        self.device = torch.device(device)
        self.chunk = chunk
        self.layers = len(model.backbone.feature_layers)
        self.size = int(model.image_size)
        self.sha: dict[Path, str] = {}
        self.stats = EncodeStats()
        self.reused: set[Path] = set()
        self._looked: set[Path] = set()
        self._transform = _preprocess(model)

    @property
    def computed(self) -> int:
        """Images run through the backbone so far."""
        return self.stats.encoded

    @property
    def _home(self) -> FeatureCache | FeatureStore | None:
        """Where image features are read and stored: the shared store, else the training cache."""
        return self.store if self.store is not None else self.cache

    def _encoder_store(self) -> ByContent | Rounding:
        """The encode path's store: the home seen by content, or rounding only (no cache)."""
        home = self._home
        return Rounding(self.dtype) if home is None else ByContent(self, home)

    def stored(self, path: Path) -> np.ndarray | None:
        """The stored ``(1 + L·N, D)`` array of an image, or None (then it must be encoded)."""
        found = self._home.features(self.sha[path])
        if found is not None and path not in self._looked:
            self.reused.add(path)  # there before this process looked: not one it computed
        self._looked.add(path)
        return found

    def _encode(self, paths: Sequence[Path], desc: str | None = None) -> tuple[dict[str, ImageFeatures],
                                                                             list[tuple[Record, str]]]:
        """``{str(path): (1, N, D)}`` of distinct ``paths`` through the encode path (stored on the way)."""
        return encode_records([_record(p) for p in paths], self.model, self._transform, batch_size=self.chunk,
                              store=self._encoder_store(), stats=self.stats, desc=desc)

    def note(self) -> str | None:
        """What the feature cache (or shared store) reused and computed; None without either."""
        if self.store is not None:
            return self.store.note(reused=len(self.reused))
        return self.cache.note() if self.cache is not None else None

    def hash_files(self, paths: Iterable[Path], progress: bool = False) -> None:
        """Hash (SHA-256 of the content) every file not hashed yet: the cache keys."""
        todo = sorted({Path(p) for p in paths} - set(self.sha))
        for path in tqdm(todo, desc="hashing files", disable=not progress or not todo, leave=False):
            self.sha[path] = sha256_file(path)

    def screen(self, paths: Iterable[Path], masks: Iterable[Path] = (), progress: bool = False,
               strict: bool = False) -> dict[Path, str]:
        """Read every image and mask once; return ``{path: reason}`` of those that cannot be used.

        With a cache or store, the readable images (and masks) not stored yet are encoded and stored on the way
        (a stored entry was read before: it is not read again); without one, pixels are only decoded.
        Reasons are one line, without the file's folder (:func:`adaptclip_med.runtime.skips.reason_of`).

        Raises:
            DataValidationError: ``strict`` and a file cannot be used (one line naming it).
        """
        images = list(dict.fromkeys(Path(p) for p in paths))
        masks = list(dict.fromkeys(Path(p) for p in masks))
        self.hash_files(images + masks)
        if self._home is not None:
            images = [p for p in images if self.stored(p) is None]
        if self.cache is not None:
            masks = [p for p in masks if self.cache.mask(self.sha[p]) is None]
        failed: dict[Path, str] = {}
        for path in masks:
            try:
                mask = load_mask(path, self.size)
            except READ_ERRORS as exc:
                failed[path] = self._failed(path, reason_of(exc, path), strict)
                continue
            if self.cache is not None:
                self.cache.store_mask(self.sha[path], mask)
        if self._home is None:  # nowhere to keep features: only decode the pixels
            for path in tqdm(images, desc="reading images", disable=not progress or not images, leave=False):
                try:
                    self._transform({"image": path})
                except READ_ERRORS as exc:
                    failed[path] = self._failed(path, reason_of(exc, path), strict)
            return failed
        _, skipped = self._encode(images, desc="reading images" if progress and images else None)
        for rec, why in skipped:
            failed[Path(rec.image)] = self._failed(Path(rec.image), why, strict)
        return failed

    @staticmethod
    def _failed(path: Path, reason: str, strict: bool) -> str:
        """``reason``, or with ``strict`` the one-line error naming ``path``."""
        if strict:
            raise strict_error(path, reason) from None
        return reason

    def fill(self, paths: Iterable[Path]) -> int:
        """Compute and store every readable image of ``paths`` that the cache lacks; return how many.

        Unreadable images are left out here (training lists them: :meth:`screen`).
        """
        if self._home is None:
            return 0
        before = self.computed
        self.screen(paths)
        return self.computed - before

    def features(self, paths: Sequence[Path]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Features of ``paths`` in order: global ``(B, D)`` and ``L`` tensors ``(B, N, D)``, float32.

        Stored images are read back; the others go through the encode path (and into the home).

        Raises:
            DataValidationError: an image cannot be read (:meth:`screen` leaves such images out first).
        """
        paths = [Path(p) for p in paths]
        unique = list(dict.fromkeys(paths))
        if self._home is not None:
            self.hash_files(unique)
        store = self._encoder_store()
        found = {str(p): store.get(_record(p)) for p in unique}
        missing = [p for p in unique if found[str(p)] is None]
        if missing:
            fresh, skipped = self._encode(missing)
            if skipped:
                rec, why = skipped[0]
                raise strict_error(Path(rec.image), why)
            found.update(fresh)
        feats = ImageFeatures.concatenate([found[str(p)] for p in paths])
        return feats.global_.to(self.device), [t.to(self.device) for t in feats.patches]

    def masks(self, masks: Sequence[Path | None]) -> torch.Tensor:
        """``(B, S, S)`` float32 0/1 masks at the model resolution; ``None`` → all normal."""
        out = np.zeros((len(masks), self.size, self.size), dtype=np.float32)
        for i, path in enumerate(masks):
            if path is None:
                continue
            if self.cache is None:
                out[i] = load_mask(path, self.size)
                continue
            self.hash_files([path])
            stored = self.cache.mask(self.sha[path])
            out[i] = stored if stored is not None else self.cache.store_mask(
                self.sha[path], load_mask(path, self.size))
        return torch.from_numpy(out).to(self.device)
