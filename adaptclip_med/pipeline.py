"""``run_evaluation(config)``: data sets × classes × shots × seeds, resumable, written atomically.

One *part* is one (data set, class, shots, seed). A finished part is stored as
``parts/<stem>.json`` (per-image scores, metrics, operating point, prompt manifest), written
atomically and last, so it marks completion; the few maps kept for overlays go beside it in
``parts/<stem>.npz`` before that. A re-run with the same result settings skips finished parts; an
interrupted part is recomputed from the start. Tables, overlays and figures are rebuilt from the parts
at the end, so a resumed run yields the same tables as an uninterrupted one. Bad input (unknown set,
missing folder, no normal prompts) fails before anything is written.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from adaptclip_med import data as D
from adaptclip_med.config import EvalConfig
from adaptclip_med.errors import AdaptCLIPError, PromptError
from adaptclip_med.io import atomic_path, atomic_write_json
from adaptclip_med.metrics import (
    Evaluator,
    MetricUndefinedError,
    OperatingPoint,
    bootstrap_ci,
    calibrate_threshold,
    decision_metrics,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
)
from adaptclip_med.reporting import provenance as P
from adaptclip_med.reporting import volumes as V
from adaptclip_med.reporting.figures import render_run_figures
from adaptclip_med.reporting.overlays import render_run_overlays, run_colour_limits, save_png
from adaptclip_med.reporting.tables import per_image_frame, write_tables

#: Debug hook for the resume tests: SIGKILL this process after that many scored images.
KILL_ENV = "ADAPTCLIP_EVAL_KILL_AFTER"


@dataclass
class Part:
    """One unit of work: the queries of one class, with one prompt draw."""

    dataset: str
    cls: str
    shots: int
    seed: int
    queries: list[Any]
    has_masks: bool
    prompts: Any = None  # PromptDraw or None for zero-shot
    stem: str = ""

    def __post_init__(self) -> None:
        self.stem = f"{self.dataset}__{P.slug(self.cls)}__k{self.shots}__s{self.seed}"

    @property
    def queries_sha(self) -> str:
        """Hash of the query ids and the prompt ids: a stored part is reused only for the same images."""
        ids = [r.key for r in self.queries] + ["--prompts--"] + (self.prompts.paths if self.prompts else [])
        return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


@dataclass
class RunResult:
    """What :func:`run_evaluation` produced: the run folder and the parts it computed or reused."""

    out: Path
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


def select_queries(records: list[Any], limit: int | None) -> list[Any]:
    """At most ``limit`` records, alternating normal / abnormal (sorted by path) while both last."""
    ordered = sorted(records, key=lambda r: r.key)
    if limit is None or len(ordered) <= limit:
        return ordered
    normal = [r for r in ordered if r.label == 0]
    abnormal = [r for r in ordered if r.label == 1]
    picked: list[Any] = []
    while len(picked) < limit:
        for pool in (normal, abnormal):
            if pool and len(picked) < limit:
                picked.append(pool.pop(0))
    return sorted(picked, key=lambda r: r.key)


def plan_parts(config: EvalConfig) -> list[Part]:
    """Load every data set and draw every prompt set (all bad input surfaces here).

    Raises:
        AdaptCLIPError: unknown data set, a folder without the expected tree, no normal prompts, ...
    """
    parts: list[Part] = []
    for name in config.datasets:
        folder = config.prompt_folder_for(name)
        options = {"normal_prompts": folder} if folder else {}
        index = D.load_dataset(name, config.root_for(name), strict=config.strict, **options)
        for cls in index.classes:
            queries = select_queries([r for r in index.records if r.cls == cls], config.limit)
            if not queries:
                continue
            for k in sorted(set(config.shots)):
                for seed in (config.seeds[:1] if k == 0 else config.seeds):
                    draw = None
                    if k > 0:
                        try:
                            draw = D.draw_prompts(index, cls, k, seed, queries=queries)
                        except PromptError as err:
                            msg = f"data set {name!r}, class {cls!r}: --shots {k} is impossible: {err}"
                            raise PromptError(msg) from err
                    parts.append(Part(name, cls, k, seed, queries, index.has_masks, draw))
    return parts


def _collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    size = samples[0]["image"].shape[-1]
    masks = [s.get("mask") for s in samples]
    return {
        "image": torch.stack([torch.as_tensor(s["image"]) for s in samples]),
        "mask": [None if m is None else np.asarray(m, dtype=np.uint8) for m in masks],
        "size": size,
    }


class _Samples(torch.utils.data.Dataset):
    def __init__(self, records: list[Any], transform: Any) -> None:
        self.records, self.transform = records, transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.transform(self.records[i].as_dict())


def _prompt_tensor(draw: Any, transform: Any) -> torch.Tensor:
    return torch.stack([torch.as_tensor(transform(r.as_dict())["image"]) for r in draw.records])


def _operating_point(model: Any, prompts: torch.Tensor | None, config: EvalConfig) -> tuple[Any, str | None]:
    """Leave-one-out calibration over the k normal prompts (k >= 2)."""
    if prompts is None or prompts.shape[0] < 2:
        return None, "needs at least 2 normal prompts for leave-one-out calibration"
    scores, maps = [], []
    for i in range(prompts.shape[0]):
        rest = torch.cat([prompts[:i], prompts[i + 1:]])
        out = model.predict(prompts[i:i + 1], prompts=model.fit_prompts(rest))
        scores.append(float(out.pred_score[0]))
        maps.append(out.anomaly_map[0].numpy())
    op = OperatingPoint(
        image_threshold=calibrate_threshold(np.array(scores), config.target_specificity),
        pixel_threshold=calibrate_threshold(np.stack(maps), config.pixel_specificity),
        target_specificity=config.target_specificity, pixel_specificity=config.pixel_specificity,
        n_normals=int(prompts.shape[0]),
    )
    return op, None


def _clinical(scores: np.ndarray, labels: np.ndarray, groups: list[Any], config: EvalConfig) -> dict:
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


class _Counter:
    def __init__(self) -> None:
        self.n = 0
        self.kill_after = int(os.environ.get(KILL_ENV, "0") or 0)

    def add(self, n: int) -> None:
        self.n += n
        if self.kill_after and self.n >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class _Scored:
    """What scoring one part's queries accumulates."""

    evaluator: Evaluator
    rows: list[dict[str, Any]] = field(default_factory=list)
    keep: list[tuple] = field(default_factory=list)
    volumes: dict[str, dict[tuple[int, int], np.ndarray]] = field(default_factory=dict)
    low: float = np.inf
    high: float = -np.inf
    pixel_skipped: int = 0

    def add(self, recs: list[Any], masks: list[Any], scores: np.ndarray, maps: np.ndarray, n_keep: int,
            with_volumes: bool) -> None:
        """Add one batch: records, masks ``(S, S)`` or None, ``scores (B,)``, ``maps (B, S, S)``."""
        start = len(self.rows)
        self.evaluator.update(scores, np.array([r.label for r in recs]))
        pixel = self.evaluator.pixel
        for j, (rec, m) in enumerate(zip(recs, masks, strict=True)):
            if pixel is not None and (m is not None or rec.label == 0):
                pixel.update(maps[j:j + 1], np.zeros_like(maps[j:j + 1]) if m is None else m[None])
            elif pixel is not None:
                self.pixel_skipped += 1  # an abnormal image without its mask: left out of pixel metrics
            self.rows.append({"image_id": start + j, "path": rec.key, "group": rec.group or "",
                              "label": int(rec.label), "score": float(scores[j])})
            _keep_top(self.keep, n_keep, float(scores[j]), start + j, maps[j])
            if with_volumes and rec.slice_index is not None and V.is_nifti(rec.image):
                self.volumes.setdefault(rec.image, {})[(rec.slice_index, start + j)] = maps[j].astype(np.float16)
        self.low, self.high = min(self.low, float(maps.min())), max(self.high, float(maps.max()))


def run_part(part: Part, model: Any, config: EvalConfig, counter: _Counter, out: Path) -> dict[str, Any]:
    """Score one part's queries and write ``parts/<stem>.npz`` (and volumes), then ``parts/<stem>.json``."""
    transform = D.build_transforms(model.image_size, with_mask=part.has_masks)
    prompts = _prompt_tensor(part.prompts, transform) if part.prompts is not None else None
    bank = model.fit_prompts(prompts) if prompts is not None else None
    acc = _Scored(Evaluator(part.has_masks, config.pixel_mode, config.n_bins, config.map_range))
    loader = torch.utils.data.DataLoader(_Samples(part.queries, transform), batch_size=config.batch_size,
                                         num_workers=config.workers, collate_fn=_collate)
    with tqdm(total=len(part.queries), desc=part.stem, unit="img", leave=False, disable=None) as bar:
        for batch in loader:
            res = model.predict(batch["image"].to(model.device), prompts=bank, batch_size=config.batch_size)
            scores = res.pred_score.numpy().astype(np.float64)
            recs = part.queries[len(acc.rows):len(acc.rows) + len(scores)]
            acc.add(recs, batch["mask"], scores, res.anomaly_map.numpy(), config.overlays,
                    with_volumes=part.seed == config.seeds[0])
            bar.update(len(scores))
            counter.add(len(scores))
    s = np.array([r["score"] for r in acc.rows])
    y = np.array([r["label"] for r in acc.rows])
    op, op_reason = _operating_point(model, prompts, config)
    maps_file = _save_maps(out / "parts" / f"{part.stem}.npz", acc.keep)
    pixel_thr = op.pixel_threshold if op else None
    written = [_write_volume(out, part, src, by_slice, transform, config, pixel_thr)
               for src, by_slice in acc.volumes.items()]
    record = {
        "fingerprint": config.fingerprint(part.dataset), "queries_sha": part.queries_sha,
        "dataset": part.dataset, "cls": part.cls, "shots": part.shots, "seed": part.seed,
        "n_images": len(acc.rows), "pixel_skipped": acc.pixel_skipped, "rows": acc.rows,
        "metrics": {k: {"value": v.value, "reason": v.reason, "bound": v.bound}
                    for k, v in acc.evaluator.compute().items()},
        "clinical": _clinical(s, y, [r["group"] for r in acc.rows], config),
        "operating_point": op.to_dict() if op else {"reason": op_reason},
        "decision": decision_metrics(s, y, op.image_threshold) if op else None,
        "prompts": part.prompts.manifest() if part.prompts is not None else None,
        "map_stats": {"min": acc.low, "max": acc.high}, "maps_file": maps_file, "volumes": written,
    }
    atomic_write_json(out / "parts" / f"{part.stem}.json", record)
    return record


def _write_volume(out: Path, part: Part, source: str, by_slice: dict[tuple[int, int], np.ndarray],
                  transform: Any, config: EvalConfig, threshold: float | None, max_panels: int = 12) -> str:
    """NIfTI map volume on the source grid plus a montage of up to ``max_panels`` evenly spaced slices."""
    folder = out / "volumes" / part.dataset / P.slug(part.cls) / f"k{part.shots}"
    stem = V.volume_file_stem(source)
    maps = {k: m.astype(np.float32) for (k, _), m in by_slice.items()}
    V.save_nifti(V.map_volume(source, maps), folder / f"{stem}.nii.gz")
    items = sorted(by_slice.items())
    picks = sorted({round(float(x)) for x in np.linspace(0, len(items) - 1, min(max_panels, len(items)))})
    panels = [(k, np.asarray(transform(part.queries[i].as_dict())["image_u8"]), m.astype(np.float32))
              for (k, i), m in (items[p] for p in picks)]
    save_png(V.montage_figure(panels, *config.map_range, threshold=threshold), folder / f"{stem}_montage.png")
    return str((folder / f"{stem}.nii.gz").relative_to(out))


def _keep_top(heap: list, n: int, score: float, image_id: int, amap: np.ndarray) -> None:
    if n == 0:
        return
    item = (score, -image_id, amap.astype(np.float16))
    if n < 0 or len(heap) < n:
        heapq.heappush(heap, item)
    elif item[:2] > heap[0][:2]:
        heapq.heapreplace(heap, item)


def _save_maps(path: Path, keep: list) -> str | None:
    if not keep:
        return None
    ordered = sorted(keep, key=lambda t: (-t[0], -t[1]))
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez_compressed(fh, ids=np.array([-t[1] for t in ordered]), maps=np.stack([t[2] for t in ordered]))
    return path.name


def load_part(path: Path, fingerprint: str, queries_sha: str) -> dict[str, Any] | None:
    """A finished part, or ``None`` when absent or made with other settings, queries or prompts."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    same = record.get("fingerprint") == fingerprint and record.get("queries_sha") == queries_sha
    return record if same else None


def run_evaluation(config: EvalConfig) -> RunResult:
    """Run (or resume) an evaluation and write every output under ``config.out``.

    Returns:
        :class:`RunResult` listing the parts computed now and those reused from an earlier run.

    Raises:
        AdaptCLIPError: bad data set, folder, prompts or weights (before anything is written).
    """
    parts = plan_parts(config)
    if not parts:
        msg = f"data sets {list(config.datasets)}: no test images found; check --root and --limit"
        raise AdaptCLIPError(msg)
    model = P.load_model_for(config)
    out = Path(config.out)
    result = RunResult(out)
    P.write_run_json(out, config, model, parts, status="incomplete")
    counter, records = _Counter(), []
    for part in tqdm(parts, desc="parts", unit="part", disable=None, file=sys.stderr):
        done = load_part(out / "parts" / f"{part.stem}.json", config.fingerprint(part.dataset), part.queries_sha)
        if done is None:
            done = run_part(part, model, config, counter, out)
            result.computed.append(part.stem)
        else:
            result.reused.append(part.stem)
        records.append(done)
    summary = write_tables(out, records, config)
    P.write_prompt_manifests(out, records)
    grid: dict[str, list] = {}
    if config.overlays != 0:
        grid = render_run_overlays(out, records, parts, model.image_size, per_image=config.overlay_norm == "image",
                                   top=config.overlays)
    if config.figures:
        render_run_figures(out, per_image_frame(records), summary, grid, run_colour_limits(records))
    P.write_run_json(out, config, model, parts, status="complete")
    from .reporting.html import write_html_report

    write_html_report(out)
    return result
