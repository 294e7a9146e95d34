"""Stage 3, score: every part of a class from the same features; metrics and the part record.

Per batch, :meth:`PartScorer.extract` turns the model's output for one part into a
:class:`BatchResult` (scores, the maps the pixel metrics need, the few maps the report keeps), which
is stored in the batch's shard and then :meth:`PartScorer.apply`-ed; a resumed run applies the stored
results in the same order, so it gives the same numbers as an uninterrupted one. The leave-one-out
operating point is computed from the prompt bank's features (:func:`leave_one_out`): a prompt's own
query-side features are its prompt features, nothing is encoded again.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adaptclip_med.data.records import Record
from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.evaluation.plan import DEFAULT_METHOD, ClassGroup, Part
from adaptclip_med.evaluation.volumes import VolumeSink
from adaptclip_med.metrics import (
    Evaluator,
    MetricUndefinedError,
    OperatingPoint,
    PerImagePixelCounts,
    bootstrap_ci,
    calibrate_threshold,
    conformal_threshold,
    decision_metrics,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
)
from adaptclip_med.model.backbone import ImageFeatures
from adaptclip_med.reporting.labels import notice_of
from adaptclip_med.runtime.io import atomic_path

#: Kept-map roles: the highest-scored images, the highest-scored normals (false-positive candidates)
#: and the lowest-scored abnormals (misses) — the report's overlay and miss galleries.
ROLES: tuple[str, ...] = ("top", "normal_high", "abnormal_low")


@dataclass
class BatchResult:
    """What one part keeps of one batch of ``B`` scored images.

    Attributes:
        scores: ``(B,)`` float64 image scores.
        lo / hi: min and max of the batch's maps.
        maps: ``(B, S, S)`` float32 maps when the part has pixel metrics, else None.
        candidates: ``(C,)`` batch positions whose maps may enter a gallery (the batch's own top per role).
        candidate_maps: ``(C, S, S)`` float16 maps of ``candidates``.
        roi: ``(B, S, S)`` bool ROIs with ``--roi`` (``maps`` stay the model's; ``scores``, ``lo`` / ``hi``
            and ``candidate_maps`` are the ROI-confined ones), else None.
    """

    scores: np.ndarray
    lo: float
    hi: float
    maps: np.ndarray | None
    candidates: np.ndarray
    candidate_maps: np.ndarray
    roi: np.ndarray | None = None


def _keys(role: str, score: float, image_id: int) -> tuple[float, int]:
    return (-score if role == "abnormal_low" else score), -image_id


def _eligible(role: str, label: int) -> bool:
    return role == "top" or (role == "normal_high" and label == 0) or (role == "abnormal_low" and label == 1)


def _keep(heap: list, n: int, key: tuple[float, int], amap: np.ndarray) -> None:
    """Keep the ``n`` largest keys (all when ``n < 0``) with their map."""
    if n == 0:
        return
    item = (*key, amap)
    if n < 0 or len(heap) < n:
        heapq.heappush(heap, item)
    elif item[:2] > heap[0][:2]:
        heapq.heapreplace(heap, item)


@dataclass
class PartScorer:
    """Accumulates one part's batches: metrics, per-image rows, kept maps, streamed volume maps."""

    part: Part
    group: ClassGroup
    config: EvalConfig
    evaluator: Evaluator
    sink: VolumeSink | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    heaps: dict[str, list] = field(default_factory=lambda: {r: [] for r in ROLES})
    skipped: list[tuple[str, str]] = field(default_factory=list)
    low: float = np.inf
    high: float = -np.inf
    pixel_skipped: int = 0
    #: with several methods: each image's pixel histograms, for the paired pixel comparison
    pixel_counts: PerImagePixelCounts | None = None

    @classmethod
    def create(cls, part: Part, group: ClassGroup, config: EvalConfig, out: Path) -> PartScorer:
        """A scorer for ``part``; NIfTI slice maps of the first seed stream to ``out/parts/<stem>.volumes``."""
        ev = Evaluator(part.has_masks, config.pixel_mode, config.n_bins, config.map_range,
                       roi=config.roi_for(part.dataset) != "none")
        first_seed = part.seed == config.seeds[0]
        sink = (VolumeSink.for_part(out / "parts" / f"{part.stem}.volumes", part.queries, group.pseudonymiser)
                if first_seed else None)
        counts = PerImagePixelCounts(value_range=config.map_range) if keeps_pixel_counts(part, config) else None
        return cls(part, group, config, ev, sink, pixel_counts=counts)

    @property
    def n_keep(self) -> int:
        """Maps kept per role (``--overlays``)."""
        return self.config.overlays

    def extract(self, recs: list[Record], scores: np.ndarray, maps: np.ndarray, roi: np.ndarray | None = None,
                shown: np.ndarray | None = None) -> BatchResult:
        """The part's :class:`BatchResult` of one batch: ``scores (B,)``, ``maps (B, S, S)``; with ``--roi``
        the ROIs and the ROI-confined maps ``shown`` (kept for the galleries)."""
        model_maps, maps = maps, maps if shown is None else shown
        labels = [int(r.label) for r in recs]
        picked: set[int] = set()
        for role in ROLES:
            pool = [j for j in range(len(recs)) if _eligible(role, labels[j])]
            pool.sort(key=lambda j, r=role: _keys(r, float(scores[j]), j), reverse=True)
            picked.update(pool if self.n_keep < 0 else pool[:self.n_keep])
        cand = np.array(sorted(picked), dtype=np.int64)
        side = maps.shape[-1]
        cand_maps = maps[cand].astype(np.float16) if cand.size else np.zeros((0, side, side), np.float16)
        full = model_maps.astype(np.float32) if self.evaluator.pixel is not None else None
        return BatchResult(scores.astype(np.float64), float(maps.min()), float(maps.max()), full, cand, cand_maps,
                           roi)

    def stream_volumes(self, recs: list[Record], maps: np.ndarray) -> None:
        """Write the batch's NIfTI slice maps to their volume files on disk (nothing stays in memory)."""
        if self.sink is not None:
            self.sink.write(recs, maps)

    def apply(self, recs: list[Record], masks: list[np.ndarray | None], res: BatchResult) -> None:
        """Add one batch (live or replayed from its shard)."""
        start = len(self.rows)
        labels = np.array([r.label for r in recs])
        self.evaluator.update(res.scores, labels)
        pixel, pixel_roi = self.evaluator.pixel, self.evaluator.pixel_roi
        for j, (rec, m) in enumerate(zip(recs, masks, strict=True)):
            if pixel is not None and (m is not None or rec.label == 0):
                amap = res.maps[j:j + 1]
                truth = np.zeros(amap.shape, dtype=bool) if m is None else m[None]
                pixel.update(amap, truth)
                if pixel_roi is not None:
                    pixel_roi.update(amap, truth, None if res.roi is None else res.roi[j:j + 1])
                if self.pixel_counts is not None:
                    self.pixel_counts.add(start + j, amap[0], truth[0])
            elif pixel is not None:
                self.pixel_skipped += 1  # an abnormal image without its mask: left out of pixel metrics
            self.rows.append({"image_id": start + j, "path": self.group.relative_key(rec),
                              "group": self.group.group_id(rec), "label": int(rec.label),
                              "score": float(res.scores[j]), **self.group.applicability.get(rec.key, {})})
        for pos, amap in zip(res.candidates.tolist(), res.candidate_maps, strict=True):
            for role in ROLES:
                if _eligible(role, int(labels[pos])):
                    _keep(self.heaps[role], self.n_keep, _keys(role, float(res.scores[pos]), start + pos), amap)
        self.low, self.high = min(self.low, res.lo), max(self.high, res.hi)

    def held_map_bytes(self) -> int:
        """Bytes of maps held in memory outside the metric accumulator (the galleries only)."""
        return sum(item[2].nbytes for heap in self.heaps.values() for item in heap)

    def finish(self, model: Any, prompt_feats: list[ImageFeatures] | None, out: Path, key: dict[str, Any],
               transform: Any) -> dict[str, Any]:
        """Metrics, operating point, kept maps (``parts/<stem>.npz``), volumes: the part record."""
        part, config = self.part, self.config
        s = np.array([r["score"] for r in self.rows])
        y = np.array([r["label"] for r in self.rows])
        op, op_reason = leave_one_out(model, prompt_feats, config)
        maps_file, gallery = self._save_maps(out / "parts" / f"{part.stem}.npz")
        skipped_keys = {k for k, _ in self.skipped}
        volumes = [] if self.sink is None else self.sink.finish(
            out, part, transform, config.map_range, op.pixel_threshold if op else None, skipped_keys,
            notice=notice_of(config))
        return {
            **key, "dataset": part.dataset, "cls": part.cls, "shots": part.shots, "seed": part.seed,
            **({} if part.method == DEFAULT_METHOD else {"method": part.method}),
            "n_images": len(self.rows), "n_skipped": len(self.skipped),
            "skipped": [{"path": p, "reason": why} for p, why in self.skipped],
            "pixel_skipped": self.pixel_skipped, "rows": self.rows,
            "metrics": {k: {"value": v.value, "reason": v.reason, "bound": v.bound}
                        for k, v in self.evaluator.compute().items()},
            "clinical": clinical(s, y, [r["group"] for r in self.rows], config),
            "operating_point": op.to_dict() if op else {"reason": op_reason},
            "decision": decision_metrics(s, y, op.image_threshold) if op else None,
            "prompts": self.group.relative_manifest(part.prompts) if part.prompts is not None else None,
            "map_stats": {"min": self.low, "max": self.high}, "maps_file": maps_file, "gallery": gallery,
            "volumes": volumes, **self._save_pixel_counts(out / "parts" / f"{part.stem}.pixels.npz"),
        }

    def _save_pixel_counts(self, path: Path) -> dict[str, str]:
        """``{"pixel_counts_file": name}`` after writing :attr:`pixel_counts` (nothing without them)."""
        if self.pixel_counts is None:
            return {}
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            self.pixel_counts.save(fh)
        return {"pixel_counts_file": path.name}

    def _save_maps(self, path: Path) -> tuple[str | None, list[dict[str, Any]]]:
        """``ids``/``maps``: every kept map (the union of the galleries), highest score first.

        Returns:
            the file name (None when nothing was kept) and the gallery: ``{image_id, role, score, label}``
            per kept map and role (roles :data:`ROLES`, each ranked as the report shows it).
        """
        kept: dict[int, np.ndarray] = {}
        gallery = []
        for role in ROLES:
            for t in sorted(self.heaps[role], key=lambda t: (-t[0], -t[1])):
                image_id = -t[1]
                kept.setdefault(image_id, t[2])
                row = self.rows[image_id]
                gallery.append({"image_id": image_id, "role": role, "score": row["score"], "label": row["label"]})
        if not kept:
            return None, []
        ids = sorted(kept, key=lambda i: (-self.rows[i]["score"], i))
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez_compressed(fh, ids=np.array(ids, dtype=np.int64), maps=np.stack([kept[i] for i in ids]))
        return path.name, gallery


def keeps_pixel_counts(part: Part, config: EvalConfig) -> bool:
    """A part keeps per-image pixel histograms (``parts/<stem>.pixels.npz``) when the run compares methods
    and the part has pixel metrics."""
    return len(config.methods) > 1 and part.has_masks


def leave_one_out(model: Any, feats: list[ImageFeatures] | None, config: EvalConfig
                  ) -> tuple[OperatingPoint | None, str | None]:
    """Operating point from the ``k`` prompts' features: each scored against a bank of the other ``k − 1``."""
    if feats is None or len(feats) < 2:
        return None, "needs at least 2 normal prompts for leave-one-out calibration"
    scores, maps = [], []
    for i, own in enumerate(feats):
        bank = model.bank_from_features(feats[:i] + feats[i + 1:])
        res = model.predict_features(own, prompts=bank)
        scores.append(float(res.pred_score[0]))
        maps.append(res.anomaly_map[0].numpy())
    rule = conformal_threshold(np.array(scores), config.target_specificity)
    op = OperatingPoint(
        image_threshold=rule.value, pixel_threshold=calibrate_threshold(np.stack(maps), config.pixel_specificity),
        target_specificity=config.target_specificity, pixel_specificity=config.pixel_specificity,
        n_normals=len(feats), alpha=rule.alpha, order_statistic=rule.order_statistic, rule=rule.rule,
    )
    return op, None


def clinical(scores: np.ndarray, labels: np.ndarray, groups: list[Any], config: EvalConfig) -> dict:
    """Sensitivity at 95 % specificity and the reverse, with bootstrap CIs (``config.n_boot``)."""
    out: dict[str, Any] = {}
    for name, fn in (("sens@95spec", sensitivity_at_specificity), ("spec@95sens", specificity_at_sensitivity)):
        try:
            if config.n_boot > 0:
                res = bootstrap_ci(fn, scores, labels, np.asarray(groups, dtype=object), config.n_boot, seed=0)
                out[name] = {"value": res.value, "low": res.low, "high": res.high, "n_boot": res.n_boot,
                             "unit": res.unit}
            else:
                out[name] = {"value": fn(scores, labels)}
        except MetricUndefinedError as err:
            out[name] = {"value": None, "reason": str(err).split(": ", 1)[-1]}
    return out
