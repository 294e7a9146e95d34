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

A finished part (``parts/<stem>.json``, written atomically and last) is reused when its key — the one
reuse key (:func:`adaptclip_med.runtime.keys.reuse_key`): code, model bytes and architecture, device,
precision, batch size, result settings, image bytes, patient groups (:mod:`.keys`) — is unchanged;
an interrupted class resumes from its batch shards (:mod:`.shards`), losing at most one batch.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from adaptclip_med import data as D
from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.evaluation.keys import ContentHasher, groups_key, model_content
from adaptclip_med.evaluation.plan import DEFAULT_METHOD, ClassGroup, Part, Plan, Skip, plan_run
from adaptclip_med.evaluation.roi import batch_rois, confine
from adaptclip_med.evaluation.score import BatchResult, PartScorer, keeps_pixel_counts
from adaptclip_med.evaluation.shards import Shard, read_shard, remove_shards, shard_matches, shard_path, write_shard
from adaptclip_med.evaluation.write import write_outputs
from adaptclip_med.features.encode import EncodeStats, FeatureStore, batch_ranges, encode_batches, encode_prompts
from adaptclip_med.features.memory import device_batch
from adaptclip_med.features.store import FeatureStore as DiskStore
from adaptclip_med.features.store import open_feature_store, store_spec
from adaptclip_med.loading.factory import load_model_for, load_winclip
from adaptclip_med.metrics.binned import PER_IMAGE_BINS
from adaptclip_med.reporting import provenance as P
from adaptclip_med.runtime import privacy as PV
from adaptclip_med.runtime.audit import audit_run
from adaptclip_med.runtime.distributed import Dist, owner, together
from adaptclip_med.runtime.errors import AdaptCLIPError
from adaptclip_med.runtime.io import atomic_write_json
from adaptclip_med.runtime.keys import Key
from adaptclip_med.runtime.locks import hold


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
        warnings: files kept with a warning (all of ``warnings.csv``).
        store_note: what the ``--feature-cache`` store reused, stored and evicted ("" without one).
        share_batches: under torchrun, the query batches this rank encoded in its share.
        processes: torchrun ranks of the run (1 without torchrun); ``encodes`` then counts all of them.
        timings: wall seconds per stage on this process (``plan``, ``model``, ``share`` under torchrun,
            ``score`` — encode and score, or replay shards — and ``write``); also in run.json.
    """

    out: Path
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)
    batches_reused: int = 0
    encodes: EncodeStats = field(default_factory=EncodeStats)
    skipped: list[Skip] = field(default_factory=list)
    warnings: list[Skip] = field(default_factory=list)
    store_note: str = ""
    share_batches: int = 0
    processes: int = 1
    key_file: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _PartKey:
    """A part's reuse key (:meth:`EvalConfig.key` with its images and patient groups)."""

    key: Key

    @property
    def digest(self) -> str:
        return self.key.short

    def as_record(self) -> dict[str, Any]:
        return {"key": self.key.short, "key_parts": self.key.parts}


def _part_key(part: Part, config: EvalConfig, content: dict[str, Any], hasher: ContentHasher,
              queries_key: str, groups: str) -> _PartKey:
    prompts = hasher.records(part.prompts.records) if part.prompts is not None else "zero-shot"
    method = {} if part.method == DEFAULT_METHOD else {"method": part.method}
    pixels = {"pixel_counts": PER_IMAGE_BINS} if keeps_pixel_counts(part, config) else {}
    return _PartKey(config.key(part.dataset, content, images=f"{queries_key}+{prompts}", groups=groups, **method,
                               **pixels))


def _load_part(path: Path, key: _PartKey) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` for a reusable finished part; ``(None, why)`` when one exists but is stale."""
    if not path.is_file():
        return None, None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, "unreadable part file"
    if record.get("key") == key.digest:
        return record, None
    return None, key.key.why(record.get("key_parts"))


def _group_parts(group: ClassGroup, config: EvalConfig, out: Path, content: dict[str, Any],
                 hasher: ContentHasher, result: RunResult) -> tuple[dict[str, dict], dict[str, _PartKey]]:
    """Split a class's parts into finished ``{stem: record}`` and pending ``{stem: key}``."""
    queries_key, groups = hasher.records(group.queries), groups_key(group.queries)
    done: dict[str, dict] = {}
    pending: dict[str, _PartKey] = {}
    for part in group.parts:
        key = _part_key(part, config, content, hasher, queries_key, groups)
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


def _score_batch(recs: list[Any], feats: Any, scorers: dict[str, PartScorer], prompts: Any,
                 model: Any, roi: str = "none") -> dict[str, BatchResult]:
    """Every pending part's :class:`BatchResult` of one encoded batch (volume maps streamed to disk).

    ``prompts`` is the class's :class:`~adaptclip_med.model.PromptSet`, one bank per scorer in order:
    the VA/TA branches and the distances to each distinct prompt image are computed once per batch.
    With ``--roi`` (``roi`` not ``"none"``) the batch's ROIs are found once and every part's scores and
    shown maps confined to them (:mod:`.roi`).
    """
    results = {}
    rois = None
    for (stem, scorer), res in zip(scorers.items(), model.predict_parts(feats, prompts), strict=True):
        scores, maps = res.pred_score.numpy().astype(np.float64), res.anomaly_map.numpy()
        shown = maps
        if roi != "none":
            rois = batch_rois(recs, roi, maps.shape[-1]) if rois is None else rois
            scores, shown = confine(res.scores, scores, maps, rois)
        scorer.stream_volumes(recs, shown)
        results[stem] = scorer.extract(recs, scores, maps, rois, None if rois is None else shown)
    return results


def _apply(group: ClassGroup, shard: Shard, scorers: dict[str, PartScorer]) -> None:
    recs = [group.queries[i] for i in shard.scored]
    for stem, scorer in scorers.items():
        scorer.skipped += [(group.relative_key(group.queries[i]), group.clean(why)) for i, why in shard.skipped]
        if recs:
            scorer.apply(recs, shard.masks, shard.results[stem])


@dataclass
class _GroupWork:
    """A class with pending parts, ready to score: its prompt set (one bank per scorer), scorers, shard keys."""

    parts: list[Part]
    pending: dict[str, _PartKey]
    transform: Any
    own: dict[str, list[Any]]
    prompts: Any
    scorers: dict[str, PartScorer]
    part_keys: dict[str, str]
    ranges: list[range]
    batch_keys: list[str]
    paths: list[Path]

    def stored(self) -> set[int]:
        """Batches whose shard is already on disk under the current keys."""
        return {i for i in range(len(self.ranges)) if shard_matches(self.paths[i], self.batch_keys[i],
                                                                      self.part_keys)}


def _prepare(group: ClassGroup, model: Any, config: EvalConfig, out: Path, pending: dict[str, _PartKey],
             hasher: ContentHasher, result: RunResult, store: FeatureStore | None) -> _GroupWork:
    """Encode the prompts of a class's pending parts (each distinct image once) and set up their scorers.

    Without a ``--feature-cache`` store the prompt features are kept, float32, next to the class's
    shards (``shards/<class>/prompts/``): the rank that merges a torchrun job, or a resumed run, reads
    them instead of encoding the prompts again.
    """
    parts = [p for p in group.parts if p.stem in pending]
    transform = D.build_transforms(model.image_size, with_mask=group.has_masks)
    prompt_recs = list({r.key: r for p in parts if p.prompts is not None for r in p.prompts.records}.values())
    stats = result.encodes if store is not None else EncodeStats()
    # another method's features are not backbone features: no store, encoded where needed
    kept = store if store is not None or not prompt_recs or group.method != DEFAULT_METHOD else DiskStore(
        out / "shards" / group.stem / "prompts", store_spec(model, dtype="float32"), content_hash=hasher.path)
    prompt_feats = encode_prompts(prompt_recs, model, transform, batch_size=config.batch_size, store=kept,
                                  stats=stats)
    if store is None:  # read back from the run's own copy: not "from the feature store"
        result.encodes.encoded += stats.encoded
    own = {p.stem: [prompt_feats[r.key] for r in p.prompts.records] for p in parts if p.prompts is not None}
    order = {key: i for i, key in enumerate(prompt_feats)}
    banks = [() if p.prompts is None else tuple(order[r.key] for r in p.prompts.records) for p in parts]
    ranges = batch_ranges(len(group.queries), config.batch_size)
    return _GroupWork(
        parts, pending, transform, own, model.prompt_set(list(prompt_feats.values()), banks),
        {p.stem: PartScorer.create(p, group, config, out) for p in parts},
        {stem: k.digest for stem, k in pending.items()}, ranges,
        [hasher.records(group.queries[r.start:r.stop]) for r in ranges],
        [shard_path(out, group.stem, i) for i in range(len(ranges))])


def _live_shards(group: ClassGroup, work: _GroupWork, model: Any, config: EvalConfig, batches: list[int],
                 result: RunResult, store: FeatureStore | None) -> Iterator[Shard]:
    """Encode and score ``batches`` of a class, write each one's shard, and yield it (in order)."""
    position = {r.key: i for i, r in enumerate(group.queries)}
    live = encode_batches(group.queries, model, work.transform, batch_size=config.batch_size, batches=batches,
                          workers=config.loader_workers(), store=store, stats=result.encodes, strict=config.strict)
    for i, batch in zip(batches, live, strict=True):
        results = {} if batch.feats is None else _score_batch(batch.records, batch.feats, work.scorers,
                                                              work.prompts, model, config.roi_for(group.dataset))
        shard = Shard(work.batch_keys[i], work.part_keys, [position[r.key] for r in batch.records],
                      [(position[r.key], why) for r, why in batch.skipped], batch.masks, results)
        write_shard(work.paths[i], shard)
        yield shard


def score_group(group: ClassGroup, model: Any, config: EvalConfig, out: Path, content: dict[str, Any],
                hasher: ContentHasher, result: RunResult, store: FeatureStore | None = None) -> list[dict]:
    """Encode a class's queries and prompts once, score all its pending parts, write their part files.

    Batches whose shard is on disk (an interrupted run, or other torchrun ranks) are replayed, not encoded.

    Returns:
        the class's part records, in the order of ``group.parts``.
    """
    done, pending = _group_parts(group, config, out, content, hasher, result)
    if pending:
        work = _prepare(group, model, config, out, pending, hasher, result, store)
        stored = work.stored()
        live = _live_shards(group, work, model, config, [i for i in range(len(work.ranges)) if i not in stored],
                            result, store)
        with tqdm(total=len(group.queries), desc=group.stem, unit="img", leave=False, disable=None,
                  file=sys.stderr) as bar:
            for i, rng in enumerate(work.ranges):
                shard = read_shard(work.paths[i], work.batch_keys[i], work.part_keys) if i in stored else None
                if shard is not None:
                    result.batches_reused += 1
                else:
                    shard = next(live)
                _apply(group, shard, work.scorers)
                bar.update(len(rng))
        for p in work.parts:
            record = work.scorers[p.stem].finish(model, work.own.get(p.stem), out, pending[p.stem].as_record(),
                                                 work.transform)
            atomic_write_json(out / "parts" / f"{p.stem}.json", record)
            done[p.stem] = record
        remove_shards(out, group.stem)
    return [done[p.stem] for p in group.parts]


def encode_share(plan: Plan, model: Any, config: EvalConfig, out: Path, content: dict[str, Any],
                 hasher: ContentHasher, result: RunResult, store: FeatureStore | None, ctx: Dist) -> int:
    """This torchrun rank's share: every ``world_size``-th query batch of the run, encoded, scored, sharded.

    Batches are numbered across all classes in plan order, so the split depends only on the plan and
    the world size (a re-run gives every rank the same batches); finished parts and stored shards are
    skipped. Rank 0 then scores the whole run from the shards (:func:`score_group`). Returns the
    number of batches this rank computed.
    """
    scratch = RunResult(out)  # this rank's reuse bookkeeping; rank 0 reports the run's
    offset, computed = 0, 0
    for group in plan.groups:
        n_batches = len(batch_ranges(len(group.queries), config.batch_size))
        mine = [i for i in range(n_batches) if owner(offset + i, ctx) == ctx.rank]
        offset += n_batches
        _, pending = _group_parts(group, config, out, content, hasher, scratch)
        if not pending or not mine:
            continue
        part_keys = {stem: k.digest for stem, k in pending.items()}
        ranges = batch_ranges(len(group.queries), config.batch_size)
        todo = [i for i in mine if not shard_matches(shard_path(out, group.stem, i),
                                                     hasher.records(group.queries[ranges[i].start:ranges[i].stop]),
                                                     part_keys)]
        if not todo:  # finished before this rank (or its job) was killed: not even the prompts again
            continue
        work = _prepare(group, model, config, out, pending, hasher, result, store)
        for _ in _live_shards(group, work, model, config, todo, result, store):
            computed += 1
    return computed


def open_store(config: EvalConfig, model: Any, hasher: ContentHasher) -> FeatureStore | None:
    """The persistent feature store of ``--feature-cache`` (None without it), keyed for this model."""
    if not config.feature_cache:
        return None
    return open_feature_store(config.feature_cache, model, "float16", config.feature_cache_max_gb, hasher.path)


def run_evaluation(config: EvalConfig, store: FeatureStore | None = None, ctx: Dist | None = None) -> RunResult:
    """Run (or resume) an evaluation and write every output under ``config.out``.

    Args:
        config: the run's settings.
        store: optional feature store consulted before the backbone (see :class:`FeatureStore`);
            default: the one of ``config.feature_cache``, if set.
        ctx: this process's place in a ``torchrun`` job (default: a single process). Every rank
            encodes and scores its share of the query batches into shards (:func:`encode_share`);
            after a barrier rank 0 scores the run from them and writes every output, the others return.

    Returns:
        :class:`RunResult`: parts computed now and reused, why stale parts were recomputed, encodes,
        skipped files.

    Raises:
        AdaptCLIPError: bad data set, folder, prompts or weights (before anything is written); with
            ``strict``, the first unreadable file (under torchrun, on every rank).
    """
    ctx = ctx or Dist()
    out = Path(config.out)
    with ExitStack() as locks:
        clock = _Clock()
        pseud = _pseudonymiser(config, ctx)
        plan: Plan = plan_run(config, pseud)
        clock.lap("plan")
        model = load_model_for(config)
        if ctx.is_main:  # one writer per folder: a second run into it (or into its store) stops with one line
            locks.enter_context(hold(out))
            if config.feature_cache and Path(config.feature_cache).resolve() != out.resolve():
                locks.enter_context(hold(config.feature_cache))
        result = RunResult(out, timings=clock.laps)
        hasher = ContentHasher()
        content = model_content(model, hasher)
        store = store if store is not None else open_store(config, model, hasher)
        clock.lap("model")
        if pseud is not None:  # parts named with another salt (or none) are never reused
            content["pseudonym_salt_id"] = pseud.salt_id
        fingerprints = {d: config.fingerprint(d, content) for d in config.datasets}
        if ctx.is_main:
            P.write_run_json(out, config, model, plan.parts, status="incomplete", extra={"fingerprints": fingerprints})
        if ctx.active:
            result.share_batches = together(ctx, lambda: encode_share(plan, model, config, out, content, hasher,
                                                                      result, store, ctx))
            clock.lap("share")
            shared = ctx.total([result.encodes.encoded, result.encodes.from_store])  # rank 0 reports the job's
            result.encodes = EncodeStats(*shared)
            result.processes = ctx.world_size
            if not ctx.is_main:
                result.store_note = store.note() if isinstance(store, DiskStore) else ""
                return result
        records: list[dict] = []
        methods = {DEFAULT_METHOD: model, **({"winclip": load_winclip(model)} if "winclip" in config.methods else {})}
        for group in tqdm(plan.groups, desc="classes", unit="class", disable=None, file=sys.stderr):
            own = group.method == DEFAULT_METHOD
            records += score_group(group, methods[group.method], config, out, content, hasher, result,
                                   store if own else None)
        clock.lap("score")
        info = {"fingerprints": fingerprints, "key": content,
                "encodes": {"images_encoded": result.encodes.encoded, "from_store": result.encodes.from_store,
                            "batches_resumed": result.batches_reused, "processes": ctx.world_size,
                            "device_batch": device_batch(model).effective(config.batch_size)},
                "timings_s": {**clock.laps, "note": "wall seconds of rank 0 before writing the outputs"}}
        result.store_note = store.note() if isinstance(store, DiskStore) else ""
        result.skipped = write_outputs(out, config, model, plan, records, info)
        result.warnings = plan.warnings
        clock.lap("write")
        if pseud is not None:
            result.key_file = _write_key(config, pseud)
            _audit(out, plan, config)
        return result


class _Clock:
    """Wall seconds between successive :meth:`lap` calls, by stage name."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


def _pseudonymiser(config: EvalConfig, ctx: Dist) -> PV.Pseudonymiser | None:
    """``--anonymize``: the salt of ``--key-file`` (or a new one, written there at once, so that an
    interrupted run resumes with it and every ``torchrun`` rank uses the same); None otherwise.

    Raises:
        AdaptCLIPError: ``--anonymize`` under torchrun without ``--key-file`` (no shared place for the salt).
    """
    if not config.anonymize:
        return None
    if ctx.active and not config.key_file:
        msg = "--anonymize under torchrun needs --key-file (every process must name the images with the same salt)"
        raise AdaptCLIPError(msg)
    if ctx.is_main:
        pseud = PV.Pseudonymiser.from_key_file(config.key_file)
        _write_key(config, pseud)
    if ctx.active:
        ctx.barrier()
    return pseud if ctx.is_main else PV.Pseudonymiser.from_key_file(config.key_file)


def _write_key(config: EvalConfig, pseud: PV.Pseudonymiser) -> Path | None:
    """The pseudonym key, where ``--key-file`` says (none without it: the pseudonyms cannot be reversed)."""
    return PV.write_key_file(config.key_file, pseud, config.out) if config.key_file else None


def _audit(out: Path, plan: Plan, config: EvalConfig) -> None:
    """``--anonymize``: scan every output byte for the inputs' paths, names and DICOM identifiers.

    Raises:
        AdaptCLIPError: an output still holds one (names the file and the kind, never the value).
    """
    inputs = [r.image for g in plan.groups for r in [*g.queries, *g.prompt_records()]]
    inputs += [r.mask for g in plan.groups for r in g.queries if r.mask]
    roots = {**{f"{d}": config.root_for(d) for d in config.datasets},
             **{f"{d} prompts": f for d, f in config.normal_prompts}}
    allowed = [*config.datasets, *(g.cls for g in plan.groups)]
    audit_run(out, inputs, roots, allowed)
