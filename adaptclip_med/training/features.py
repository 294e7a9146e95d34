"""Frozen features and masks of training images: read from the cache, or computed once and stored.

Image features live in the training cache (:class:`~.cache.FeatureCache`, ``--cache-dir``) or, with
``--feature-cache DIR``, in the feature store shared with evaluation
(:class:`~adaptclip_med.features.store.FeatureStore`: an image an evaluation encoded is not encoded
again, and the other way round). Masks stay in the training cache.

Shapes: ``B`` images, ``L`` feature layers, ``N = 1 + G²`` tokens, ``D`` width, ``S`` image size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from adaptclip_med.data.transforms.pixels import load_mask  # the one mask rule (spec §5), shared with evaluation
from adaptclip_med.features.cache import DTYPES, FeatureCache, split_features, to_storage
from adaptclip_med.features.memory import encode_images_bounded
from adaptclip_med.runtime.io import sha256_file
from adaptclip_med.runtime.skips import READ_ERRORS, reason_of, strict_error

if TYPE_CHECKING:
    from adaptclip_med.features.store import FeatureStore


class FeatureSource:
    """Gives batches of frozen features and masks, computing each image at most once per cache.

    Args:
        model: an ``AdaptCLIP`` (its ``preprocess`` and ``encode_images`` are used; the device gets fewer
            than ``chunk`` images at a time when they do not fit, :mod:`adaptclip_med.features.memory`).
        cache: where features and masks live; ``None`` recomputes them on every request (no cache).
        device: where returned tensors go.
        chunk: images per backbone call.
        dtype: ``"float16"``/``"float32"``: without a cache, features are rounded exactly as the cache
            stores them (``cache.dtype`` or ``store.dtype`` wins when one is set), so a run gives the
            same adapters with or without the cache.
        store: where image features live instead of ``cache`` (the store shared with evaluation,
            keyed by the same content hashes); ``cache`` then holds the masks only (or is ``None``).

    Attributes:
        computed: images run through the backbone so far.
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
        self.computed = 0
        self.reused: set[Path] = set()
        self._looked: set[Path] = set()

    @property
    def _home(self) -> FeatureCache | FeatureStore | None:
        """Where image features are read and stored: the shared store, else the training cache."""
        return self.store if self.store is not None else self.cache

    def _stored(self, path: Path) -> np.ndarray | None:
        """The stored ``(1 + L·N, D)`` array of an image, or None (then it must be encoded)."""
        found = self._home.features(self.sha[path])
        if found is not None and path not in self._looked:
            self.reused.add(path)  # there before this process looked: not one it computed
        self._looked.add(path)
        return found

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

    def _encode_images(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen features of ``(3, S, S)`` images: global ``(B, D)``, patches ``(B, L, N, D)``, CPU."""
        with torch.no_grad():
            feats = encode_images_bounded(self.model, torch.stack(list(images)))  # sub-batches that fit
        self.computed += len(images)
        return feats.global_.float().cpu(), torch.stack([t.float().cpu() for t in feats.patches], 1)

    def _encode(self, paths: Sequence[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen features (``model.encode_images``): global ``(B, D)``, patches ``(B, L, N, D)``, CPU."""
        parts = [self._encode_images([self.model.preprocess(p) for p in paths[start:start + self.chunk]])
                 for start in range(0, len(paths), self.chunk)]
        return torch.cat([g for g, _ in parts]), torch.cat([p for _, p in parts])

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
            images = [p for p in images if self._stored(p) is None]
        if self.cache is not None:
            masks = [p for p in masks if self.cache.mask(self.sha[p]) is None]
        failed: dict[Path, str] = {}
        for path in masks:
            try:
                mask = load_mask(path, self.size)
            except READ_ERRORS as exc:
                failed[path] = self._failed(path, exc, strict)
                continue
            if self.cache is not None:
                self.cache.store_mask(self.sha[path], mask)
        steps = range(0, len(images), self.chunk)
        for start in tqdm(steps, desc="reading images", disable=not progress or not images, leave=False):
            read: dict[Path, torch.Tensor] = {}
            for path in images[start:start + self.chunk]:
                try:
                    read[path] = self.model.preprocess(path)
                except READ_ERRORS as exc:
                    failed[path] = self._failed(path, exc, strict)
            if read and self._home is not None:
                global_, patches = self._encode_images(list(read.values()))
                for i, path in enumerate(read):
                    self._home.store_features(self.sha[path], global_[i], patches[i])
        return failed

    def _cached(self, paths: Sequence[Path]) -> dict[Path, np.ndarray]:
        """Stored arrays of ``paths`` (memory-mapped); the missing ones are encoded and stored first."""
        unique = list(dict.fromkeys(Path(p) for p in paths))
        self.hash_files(unique)
        found = {p: self._stored(p) for p in unique}
        missing = [p for p, arr in found.items() if arr is None]
        if missing:
            global_, patches = self._encode(missing)
            for i, path in enumerate(missing):
                found[path] = self._home.store_features(self.sha[path], global_[i], patches[i])
        return found

    @staticmethod
    def _failed(path: Path, exc: BaseException, strict: bool) -> str:
        reason = reason_of(exc, path)
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
        """Features of ``paths`` in order: global ``(B, D)`` and ``L`` tensors ``(B, N, D)``, float32."""
        paths = [Path(p) for p in paths]
        if self._home is None:
            unique = list(dict.fromkeys(paths))
            encoded = self._encode(unique)
            rounded = [split_features(to_storage(g, p, self.dtype), self.layers) for g, p in zip(*encoded, strict=True)]
            where = [unique.index(p) for p in paths]
            global_ = torch.stack([rounded[i][0] for i in where])
            patches = torch.stack([rounded[i][1] for i in where])
        else:
            found = self._cached(paths)
            parts = [split_features(found[p], self.layers) for p in paths]
            global_ = torch.stack([g for g, _ in parts])
            patches = torch.stack([p for _, p in parts])
        return global_.to(self.device), [patches[:, i].to(self.device) for i in range(self.layers)]

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
