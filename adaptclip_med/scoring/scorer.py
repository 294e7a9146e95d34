"""The scoring step of ``score``: images through the model in batches, via a content-keyed result cache.

``cache/<key>.npz`` holds one image's score and ``(S, S)`` map; ``key`` hashes the settings fingerprint,
the SHA-256 of the file's bytes and the slice index, so a changed file or setting is scored again.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptclip_med.features.memory import predict_bounded
from adaptclip_med.runtime.errors import AdaptCLIPError, ImageReadError
from adaptclip_med.runtime.io import atomic_path, sha256_file
from adaptclip_med.runtime.skips import reason_of
from adaptclip_med.scoring.inputs import Unit

_ABSOLUTE_PATH = re.compile(r"(?<![\w.<>])(?:[A-Za-z]:)?[\\/][^\s,;:'\"()]+")  # "/a/b", not "PNG/JPEG"


def scrub(reason: str, path: str | None = None) -> str:
    """A skip reason without paths: ``path`` (and any other absolute path) becomes ``<file>`` / ``<path>``."""
    if path is not None:
        for form in {str(Path(path).resolve()), str(path)}:
            reason = reason.replace(form, "<file>")
        reason = reason.replace(Path(path).name, "<file>")
    return _ABSOLUTE_PATH.sub("<path>", reason)


class CachedScorer:
    """Scores units in batches, through the result cache (``cache/<key>.npz``)."""

    def __init__(self, model: Any, transform: Any, bank: Any, fingerprint: str, out: Path, batch_size: int) -> None:
        self.model, self.transform, self.bank = model, transform, bank
        self.fingerprint, self.cache, self.batch_size = fingerprint, out / "cache", batch_size
        self.file_sha: dict[str, str] = {}
        self.scored = self.reused = 0

    def key(self, unit: Unit) -> str:
        if unit.path not in self.file_sha:
            self.file_sha[unit.path] = sha256_file(unit.path)
        text = f"{self.fingerprint}|{self.file_sha[unit.path]}|{unit.slice_index}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def picture(self, unit: Unit) -> tuple[torch.Tensor, np.ndarray]:
        sample = self.transform(unit.as_sample())
        return torch.as_tensor(sample["image"]), np.asarray(sample["image_u8"])

    def score(self, units: list[Unit], keep_pictures: bool, bar: Any) -> list[dict[str, Any] | str]:
        """Per unit ``{"key", "score", "map" (S, S), "image" (H, W, 3) | None}``, or the read error."""
        results: list[dict[str, Any] | str] = []
        pending: list[tuple[int, torch.Tensor]] = []
        for unit in units:
            try:
                key = self.key(unit)
                cached = self.cache / f"{key}.npz"
                item: dict[str, Any] = {"key": key, "image": None}
                if cached.is_file():
                    with np.load(cached) as npz:
                        item.update(score=float(npz["score"]), map=npz["map"])
                    if keep_pictures:
                        item["image"] = self.picture(unit)[1]
                    self.reused += 1
                    bar.update(1)
                else:
                    tensor, item["image"] = self.picture(unit)
                    pending.append((len(results), tensor))
                results.append(item)
            except (ImageReadError, OSError) as err:
                results.append(scrub(reason_of(err, unit.path), unit.path))  # the row's id names the file
                bar.update(1)
            if len(pending) >= self.batch_size:
                self._flush(pending, results, bar)
        self._flush(pending, results, bar)
        if not keep_pictures:
            for item in results:
                if isinstance(item, dict):
                    item["image"] = None
        return results

    def _flush(self, pending: list[tuple[int, torch.Tensor]], results: list[Any], bar: Any) -> None:
        if not pending:
            return
        batch = torch.stack([t for _, t in pending]).to(self.model.device)
        try:
            out = predict_bounded(self.model, batch, self.bank, self.batch_size)
        except ValueError as err:  # the model's input checks (e.g. an --image-size it cannot take)
            msg = f"the model cannot score these images: {err}"
            raise AdaptCLIPError(msg) from err
        for (i, _), s, m in zip(pending, out.pred_score.numpy(), out.anomaly_map.numpy(), strict=True):
            results[i].update(score=float(s), map=m.astype(np.float32))
            with atomic_path(self.cache / f"{results[i]['key']}.npz") as tmp, tmp.open("wb") as fh:
                np.savez_compressed(fh, score=np.float64(s), map=m.astype(np.float32))
        self.scored += len(pending)
        bar.update(len(pending))
        pending.clear()
