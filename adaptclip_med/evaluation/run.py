"""``run_evaluation(config)``: plan → encode (once) → score every part → metrics → write.

Read top to bottom, a run is::

    plan = plan_run(config)                       # data sets, classes, parts, prompt draws
    model = load_model_for(config)                # the model factory
    for group in plan.groups:                     # one (data set, class): its parts share the queries
        prompts = encode_prompts(...)             # each distinct prompt image once
        for batch in encode_batches(...):         # each query image once, for every part
            score each pending part from batch.feats, store the batch's shard
        finish each part: metrics, operating point (from the prompt features), parts/<stem>.json
    write_outputs(...)                            # tables, skipped.csv, overlays, figures, run.json, index.html

A finished part (``parts/<stem>.json``, written atomically and last) is reused when its key — result
settings, weights and checkpoint bytes, package version, image bytes (:mod:`.keys`) — is unchanged;
an interrupted class resumes from its batch shards (:mod:`.shards`), losing at most one batch.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from adaptclip_med import data as D
from adaptclip_med.config import EvalConfig
from adaptclip_med.evaluation.encode import EncodeStats, FeatureStore, batch_ranges, encode_batches, encode_prompts
from adaptclip_med.evaluation.keys import ContentHasher, explain_change, model_content
from adaptclip_med.evaluation.plan import ClassGroup, Part, Plan, Skip, plan_run
from adaptclip_med.evaluation.score import BatchResult, PartScorer
from adaptclip_med.evaluation.shards import Shard, read_shard, remove_shards, shard_matches, shard_path, write_shard
from adaptclip_med.evaluation.write import write_outputs
from adaptclip_med.factory import load_model_for
from adaptclip_med.io import atomic_write_json
from adaptclip_med.reporting import provenance as P


@dataclass
class RunResult:
    """What :func:`run_evaluation` did.

    Attributes:
        out: the run folder.
        computed / reused: part stems computed now / taken from an earlier run.
        why: ``{stem: reason}`` for parts that existed but were recomputed.
        batches_reused: batches replayed from shards of an interrupted run.
        encodes: images encoded by the backbone (and taken from a feature store).
        skipped: files left out (all of ``skipped.csv``).
    """

    out: Path
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)
    batches_reused: int = 0
    encodes: EncodeStats = field(default_factory=EncodeStats)
    skipped: list[Skip] = field(default_factory=list)


@dataclass
class _PartKey:
    """A part's reuse key: its fingerprint, the bytes of its images, and the named parts of both."""

    fingerprint: str
    images_key: str
    key_parts: dict[str, Any]

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.fingerprint}|{self.images_key}".encode()).hexdigest()[:16]

    def as_record(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "images_key": self.images_key, "key_parts": self.key_parts}


def _part_key(part: Part, config: EvalConfig, content: dict[str, Any], hasher: ContentHasher,
              queries_key: str) -> _PartKey:
    prompts = hasher.records(part.prompts.records) if part.prompts is not None else "zero-shot"
    images = f"{queries_key}+{prompts}"
    parts = {**config.key_parts(part.dataset, content), "images": images}
    return _PartKey(config.fingerprint(part.dataset, content), images, parts)


def _load_part(path: Path, key: _PartKey) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` for a reusable finished part; ``(None, why)`` when one exists but is stale."""
    if not path.is_file():
        return None, None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, "unreadable part file"
    if record.get("fingerprint") == key.fingerprint and record.get("images_key") == key.images_key:
        return record, None
    return None, explain_change(record.get("key_parts"), key.key_parts)


def _group_parts(group: ClassGroup, config: EvalConfig, out: Path, content: dict[str, Any],
                 hasher: ContentHasher, result: RunResult) -> tuple[dict[str, dict], dict[str, _PartKey]]:
    """Split a class's parts into finished ``{stem: record}`` and pending ``{stem: key}``."""
    queries_key = hasher.records(group.queries)
    done: dict[str, dict] = {}
    pending: dict[str, _PartKey] = {}
    for part in group.parts:
        key = _part_key(part, config, content, hasher, queries_key)
        record, why = _load_part(out / "parts" / f"{part.stem}.json", key)
        if record is not None:
            done[part.stem] = record
            result.reused.append(part.stem)
        else:
            pending[part.stem] = key
            result.computed.append(part.stem)
            if why:
                result.why[part.stem] = why
    return done, pending


def _score_batch(recs: list[Any], feats: Any, scorers: dict[str, PartScorer], banks: dict[str, Any],
                 model: Any) -> dict[str, BatchResult]:
    """Every pending part's :class:`BatchResult` of one encoded batch (volume maps streamed to disk)."""
    results = {}
    for stem, scorer in scorers.items():
        res = model.predict_features(feats, prompts=banks.get(stem))
        scores, maps = res.pred_score.numpy().astype(np.float64), res.anomaly_map.numpy()
        scorer.stream_volumes(recs, maps)
        results[stem] = scorer.extract(recs, scores, maps)
    return results


def _apply(group: ClassGroup, shard: Shard, scorers: dict[str, PartScorer]) -> None:
    recs = [group.queries[i] for i in shard.scored]
    for stem, scorer in scorers.items():
        scorer.skipped += [(group.relative_key(group.queries[i]), why) for i, why in shard.skipped]
        if recs:
            scorer.apply(recs, shard.masks, shard.results[stem])


def score_group(group: ClassGroup, model: Any, config: EvalConfig, out: Path, content: dict[str, Any],
                hasher: ContentHasher, result: RunResult, store: FeatureStore | None = None) -> list[dict]:
    """Encode a class's queries and prompts once, score all its pending parts, write their part files.

    Returns:
        the class's part records, in the order of ``group.parts``.
    """
    done, pending = _group_parts(group, config, out, content, hasher, result)
    if pending:
        parts = [p for p in group.parts if p.stem in pending]
        transform = D.build_transforms(model.image_size, with_mask=group.has_masks)
        prompt_recs = [r for p in parts if p.prompts is not None for r in p.prompts.records]
        prompt_feats = encode_prompts(list({r.key: r for r in prompt_recs}.values()), model, transform,
                                      batch_size=config.batch_size, store=store, stats=result.encodes)
        own = {p.stem: [prompt_feats[r.key] for r in p.prompts.records] for p in parts if p.prompts is not None}
        banks = {stem: model.bank_from_features(f) for stem, f in own.items()}
        scorers = {p.stem: PartScorer.create(p, group, config, out) for p in parts}
        part_keys = {stem: k.digest for stem, k in pending.items()}
        ranges = batch_ranges(len(group.queries), config.batch_size)
        batch_keys = [hasher.records(group.queries[r.start:r.stop]) for r in ranges]
        paths = [shard_path(out, group.stem, i) for i in range(len(ranges))]
        stored = {i for i in range(len(ranges)) if shard_matches(paths[i], batch_keys[i], part_keys)}
        live = encode_batches(group.queries, model, transform, batch_size=config.batch_size,
                              batches=[i for i in range(len(ranges)) if i not in stored],
                              workers=config.loader_workers(), store=store, stats=result.encodes,
                              strict=config.strict)
        position = {r.key: i for i, r in enumerate(group.queries)}
        with tqdm(total=len(group.queries), desc=group.stem, unit="img", leave=False, disable=None,
                  file=sys.stderr) as bar:
            for i, rng in enumerate(ranges):
                shard = read_shard(paths[i], batch_keys[i], part_keys) if i in stored else None
                if shard is not None:
                    result.batches_reused += 1
                else:
                    batch = next(live)
                    results = {} if batch.feats is None else _score_batch(batch.records, batch.feats, scorers,
                                                                          banks, model)
                    shard = Shard(batch_keys[i], part_keys, [position[r.key] for r in batch.records],
                                  [(position[r.key], why) for r, why in batch.skipped], batch.masks, results)
                    write_shard(paths[i], shard)
                _apply(group, shard, scorers)
                bar.update(len(rng))
        for p in parts:
            record = scorers[p.stem].finish(model, own.get(p.stem), out, pending[p.stem].as_record(), transform)
            atomic_write_json(out / "parts" / f"{p.stem}.json", record)
            done[p.stem] = record
        remove_shards(out, group.stem)
    return [done[p.stem] for p in group.parts]


def run_evaluation(config: EvalConfig, store: FeatureStore | None = None) -> RunResult:
    """Run (or resume) an evaluation and write every output under ``config.out``.

    Args:
        config: the run's settings.
        store: optional feature store consulted before the backbone (see :class:`FeatureStore`).

    Returns:
        :class:`RunResult`: parts computed now and reused, why stale parts were recomputed, encodes,
        skipped files.

    Raises:
        AdaptCLIPError: bad data set, folder, prompts or weights (before anything is written); with
            ``strict``, the first unreadable file.
    """
    plan: Plan = plan_run(config)
    model = load_model_for(config)
    out = Path(config.out)
    result = RunResult(out)
    hasher = ContentHasher()
    content = model_content(model, hasher)
    fingerprints = {d: config.fingerprint(d, content) for d in config.datasets}
    P.write_run_json(out, config, model, plan.parts, status="incomplete", extra={"fingerprints": fingerprints})
    records: list[dict] = []
    for group in tqdm(plan.groups, desc="classes", unit="class", disable=None, file=sys.stderr):
        records += score_group(group, model, config, out, content, hasher, result, store)
    info = {"fingerprints": fingerprints, "key": content,
            "encodes": {"images_encoded": result.encodes.encoded, "from_store": result.encodes.from_store,
                        "batches_resumed": result.batches_reused}}
    result.skipped = write_outputs(out, config, model, plan, records, info)
    return result
