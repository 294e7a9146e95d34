"""The scoring step of ``score``: units → features (the one encode path) → scores and maps, once each.

Features come from :func:`adaptclip_med.features.encode.encode_batches`, the loop of ``evaluate`` and
training (memory-bounded device batches; a ``--feature-cache`` store consulted first and filled). The
scores and ``(S, S)`` maps go to the run's result record (:class:`ResultRecord`): ``cache/<key>.npz``
per image, where ``key`` hashes the run's fingerprint — the one reuse key
(:func:`adaptclip_med.runtime.keys.reuse_key`, as an evaluation part's: code, backbone config and
architecture, weights and checkpoint bytes, adapter config, device type, precision, batch size,
settings, the normals' bytes) — the image's content hash and its slice index. A changed file or setting is scored
again; an unchanged one is read back without reading or encoding the image (unless its picture is
needed for an overlay or a DICOM Secondary Capture).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptclip_med.data.records import Record
from adaptclip_med.evaluation.keys import ContentHasher
from adaptclip_med.features.encode import EncodedBatch, EncodeStats, FeatureStore, encode_batches
from adaptclip_med.features.memory import device_batch
from adaptclip_med.model.outputs import AnomalyOutput
from adaptclip_med.runtime.errors import AdaptCLIPError, ImageReadError
from adaptclip_med.runtime.io import atomic_path, atomic_write_json
from adaptclip_med.runtime.keys import Key
from adaptclip_med.runtime.privacy import scrub
from adaptclip_med.runtime.skips import reason_of
from adaptclip_med.scoring.inputs import Unit

#: The branch scores a result keeps for ``--roi`` (:func:`adaptclip_med.model.fusion.score_with_peak`).
PARTS = ("va", "ta", "image_prob_mean")


def unit_record(unit: Unit) -> Record:
    """A unit to score as a record of the encode path (and of the feature store's keys)."""
    return Record(image=unit.path, mask=None, label=0, cls="", split="test", group=None, dataset="score",
                  slice_index=unit.slice_index)


class ResultRecord:
    """The run's scores and maps: one ``<folder>/<key>.npz`` per image (``score`` float64, ``map`` ``(S, S)``).

    ``<folder>/key.json`` keeps the named parts of the last run's key, so that a run under another key
    says why it scores again (:attr:`why`).

    Args:
        folder: where the entries live (``--out``/``cache``).
        key: the run's reuse key (:func:`adaptclip_med.runtime.keys.reuse_key`) of everything but the image.
        hasher: the run's content hasher (each file read once per run).

    Attributes:
        fingerprint: ``key.digest``.
        why: what changed since the run that wrote ``key.json`` ("" when nothing did, or for a new folder).
    """

    def __init__(self, folder: Path, key: Key, hasher: ContentHasher) -> None:
        self.folder, self.fingerprint, self.hasher = folder, key.digest, hasher
        stored = folder / "key.json"
        try:
            old = json.loads(stored.read_text(encoding="utf-8")) if stored.is_file() else None
        except (OSError, ValueError):
            old = {}
        self.why = "" if old is None or old == key.parts else key.why(old)
        if old != key.parts:
            atomic_write_json(stored, key.parts)

    def key(self, unit: Unit) -> str:
        """The unit's entry key: fingerprint, content hash of its file, slice index.

        Raises:
            OSError: the file cannot be read.
        """
        text = f"{self.fingerprint}|{self.hasher.file(unit.path)}|{unit.slice_index}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def load(self, key: str) -> dict[str, Any] | None:
        """``{"score", "map" (S, S)}`` of an entry, or None when absent."""
        path = self.folder / f"{key}.npz"
        if not path.is_file():
            return None
        with np.load(path) as npz:
            found: dict[str, Any] = {"score": float(npz["score"]), "map": npz["map"]}
            if "parts" in npz:  # the branch scores (--roi) and the global embedding (the gate's feature rule)
                found["parts"] = dict(zip(PARTS, (float(v) for v in npz["parts"]), strict=False))
                found["parts"] = {k: v for k, v in found["parts"].items() if np.isfinite(v)}
                found["global"] = npz["global"]
            return found

    def save(self, key: str, score: float, anomaly_map: np.ndarray, parts: dict[str, float] | None = None,
             global_: np.ndarray | None = None) -> None:
        """Write one entry atomically (``parts`` / ``global_``: kept for ``--roi`` and the gate, when given)."""
        extra = {} if parts is None or global_ is None else {
            "parts": np.array([parts.get(k, np.nan) for k in PARTS], dtype=np.float64),
            "global": np.asarray(global_, dtype=np.float32)}
        with atomic_path(self.folder / f"{key}.npz") as tmp, tmp.open("wb") as fh:
            np.savez_compressed(fh, score=np.float64(score), map=anomaly_map.astype(np.float32), **extra)


class Scorer:
    """Scores units in batches: result record first, then the encode path, then the model's heads.

    Args:
        model: an ``AdaptCLIP``; transform: ``build_transforms(model.image_size, with_mask=False)``.
        bank: the normals' :class:`~adaptclip_med.model.PromptBank` (None: zero-shot).
        record: the run's :class:`ResultRecord`.
        batch_size: images per batch (the device gets fewer when they do not fit).
        store: a feature store consulted before the backbone (``--feature-cache``), filled on the way.
        stats: counts of images encoded / read from the store, incremented here.

    Attributes:
        scored / reused: images scored now / read back from the result record.
    """

    def __init__(self, model: Any, transform: Any, bank: Any, record: ResultRecord, batch_size: int,
                 store: FeatureStore | None = None, stats: EncodeStats | None = None) -> None:
        self.model, self.transform, self.bank, self.record = model, transform, bank, record
        self.batch_size, self.store = batch_size, store
        self.stats = stats if stats is not None else EncodeStats()
        self.scored = self.reused = 0
        self.details = False  # keep the branch scores and global embedding (--roi, the gate): set by the run

    def picture(self, unit: Unit) -> np.ndarray:
        """The unit's ``(H, W, 3)`` uint8 picture, as the overlays draw it."""
        return np.asarray(self.transform(unit.as_sample())["image_u8"])

    def score(self, units: list[Unit], keep_pictures: bool, bar: Any) -> list[dict[str, Any] | str]:
        """Per unit ``{"key", "score", "map" (S, S), "image" (H, W, 3) | None}``, or the read error."""
        results: list[dict[str, Any] | str] = []
        pending: list[int] = []
        for unit in units:
            try:
                key = self.record.key(unit)
                item: dict[str, Any] = {"key": key, "image": None}
                found = self.record.load(key)
                if found is not None and (not self.details or "parts" in found):
                    item.update(found)
                    if keep_pictures:
                        item["image"] = self.picture(unit)
                    self.reused += 1
                    bar.update(1)
                else:
                    pending.append(len(results))
                results.append(item)
            except (ImageReadError, OSError) as err:
                results.append(scrub(reason_of(err, unit.path), unit.path))  # the row's id names the file
                bar.update(1)
        records = [unit_record(units[i]) for i in pending]
        batches = encode_batches(records, self.model, self.transform, batch_size=self.batch_size, store=self.store,
                                 stats=self.stats, keep=("image_u8",) if keep_pictures else ())
        at = {r.key: i for r, i in zip(records, pending, strict=True)}
        for batch in batches:
            self._finish(batch, at, results)
            bar.update(len(batch.records) + len(batch.skipped))
        return results

    def _finish(self, batch: EncodedBatch, at: dict[str, int], results: list[Any]) -> None:
        """Score one encoded batch into ``results`` (and the result record); its unreadable units become reasons."""
        for rec, why in batch.skipped:
            results[at[rec.key]] = scrub(why, rec.image)
        if batch.feats is None:
            return
        out = self._predict(batch)
        for j, (rec, s, m) in enumerate(zip(batch.records, out.pred_score.numpy(), out.anomaly_map.numpy(),
                                            strict=True)):
            item = results[at[rec.key]]
            item.update(score=float(s), map=m.astype(np.float32))
            picture = batch.kept[j].get("image_u8")
            item["image"] = None if picture is None else np.asarray(picture)
            if self.details:
                item["parts"] = {k: float(out.scores[k][j]) for k in PARTS if k in out.scores}
                item["global"] = batch.feats.global_[j].float().cpu().numpy().reshape(-1)
                self.record.save(item["key"], s, m, item["parts"], item["global"])
            else:
                self.record.save(item["key"], s, m)
        self.scored += len(batch.records)

    def _predict(self, batch: EncodedBatch) -> AnomalyOutput:
        """The model's heads on ``(B, N, D)`` features, in device sub-batches that fit.

        Raises:
            AdaptCLIPError: the model refuses them (e.g. normals encoded at another size).
        """
        def step(start: int, stop: int) -> AnomalyOutput:
            return self.model.predict_features(batch.feats.select(slice(start, stop)), self.bank)

        try:
            with torch.inference_mode():
                parts = device_batch(self.model).run(len(batch.records), self.batch_size, step)
        except ValueError as err:  # the model's input checks
            msg = f"the model cannot score these images: {err}"
            raise AdaptCLIPError(msg) from err
        return parts[0] if len(parts) == 1 else AnomalyOutput.concatenate(parts)
