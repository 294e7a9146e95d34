"""Few-shot normal prompts: seeded draws from a data set's prompt pool, with exclusions and manifests.

A draw for class ``cls`` takes ``k`` records from ``index.prompt_pool[cls]`` (normal images only:
the publisher's train split, a seeded hold-out, or a user folder) after removing every candidate that

* is labelled abnormal (refused: the pool is corrupt),
* is one of the queries, or byte-identical to one (SHA-256), or a near-duplicate of one
  (:mod:`~adaptclip_med.data.layouts.duplicates`: flips, 90° turns, small rotations, contrast changes),
* shares a patient / volume ``group`` with a query,

then samples with ``random.Random(seed)``, skipping near-duplicates of prompts already chosen while
enough candidates remain. The manifest records paths, SHA-256, seed, k, class and the exclusions.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adaptclip_med.data.layouts.duplicates import PerceptualHasher
from adaptclip_med.data.records import DatasetIndex, Record
from adaptclip_med.runtime.errors import PromptError
from adaptclip_med.runtime.io import atomic_write_json, sha256_file


@dataclass
class PromptDraw:
    """``k`` normal prompt records of one class and how they were chosen."""

    records: list[Record]
    dataset: str
    cls: str
    k: int
    seed: int
    excluded: dict[str, int] = field(default_factory=dict)
    pool_size: int = 0

    @property
    def paths(self) -> list[str]:
        """Image paths of the prompts (``path#slice`` for volume slices)."""
        return [r.key for r in self.records]

    def manifest(self, notice: str | None = None) -> dict[str, object]:
        """JSON-ready provenance: data set, class, k, seed, pool size, exclusions, paths + SHA-256.

        ``notice``: the untrained-model notice of the run that uses the draw
        (:func:`adaptclip_med.reporting.labels.run_notice`), added as the ``notice`` key; none for a trained model.
        """
        manifest: dict[str, object] = {
            "dataset": self.dataset, "cls": self.cls, "k": self.k, "seed": self.seed,
            "pool_size": self.pool_size, "excluded": dict(self.excluded),
            "prompts": [{"path": r.image, "slice_index": r.slice_index, "group": r.group,
                         "split": r.split, "sha256": sha256_file(r.image) if Path(r.image).is_file() else None}
                        for r in self.records],
        }
        if notice:
            manifest["notice"] = notice
        return manifest

    def save(self, path: str | Path, notice: str | None = None) -> Path:
        """Write :meth:`manifest` (with ``notice`` when given) atomically as JSON and return the path."""
        atomic_write_json(path, self.manifest(notice))
        return Path(path)


def _sha(record: Record, cache: dict[str, str]) -> str | None:
    if record.slice_index is not None or not Path(record.image).is_file():
        return None
    if record.image not in cache:
        cache[record.image] = sha256_file(record.image)
    return cache[record.image]


def _hasher(index: DatasetIndex, hasher: PerceptualHasher | None) -> PerceptualHasher:
    if hasher is not None:
        return hasher
    cached = index.options.get("_hasher")
    if not isinstance(cached, PerceptualHasher):
        cached = PerceptualHasher()
        index.options["_hasher"] = cached
    return cached


def draw_prompts(index: DatasetIndex, cls: str, k: int, seed: int, *, queries: Sequence[Record] = (),
                 hasher: PerceptualHasher | None = None, manifest_path: str | Path | None = None,
                 notice: str | None = None) -> PromptDraw:
    """Draw ``k`` normal prompts of class ``cls`` from ``index.prompt_pool`` (see module docstring).

    Args:
        queries: the records the prompts will be compared with (default: the class's test records).
        hasher: a shared :class:`PerceptualHasher` (default: one cached on ``index``).
        manifest_path: also write the manifest there.
        notice: the untrained-model notice the written manifest carries (none for a trained model).

    Raises:
        PromptError: no pool for ``cls`` (e.g. polyp sets), an abnormal record in the pool, or fewer
            than ``k`` candidates left after the exclusions (the message gives the counts).
    """
    if k < 1:
        msg = f"k={k}; expected at least 1 prompt (k=0 is zero-shot: do not draw)"
        raise PromptError(msg)
    pool = list(index.prompt_pool.get(cls, []))
    if not pool:
        why = index.prompt_note or f"the prompt pool of class {cls!r} is empty"
        msg = f"{index.name} ({index.root}): no normal prompts for class {cls!r}. {why}"
        raise PromptError(msg)
    bad = [r.key for r in pool if r.label != 0]
    if bad:
        msg = f"{index.name}: abnormal record(s) in the prompt pool of {cls!r}: {bad[:3]}; prompts must be normal"
        raise PromptError(msg)
    queries = list(queries) if queries else [r for r in index.records if r.cls == cls]
    h = _hasher(index, hasher)
    sha_cache: dict[str, str] = {}
    excluded = {"query": 0, "same_group": 0, "identical": 0, "near_duplicate": 0}
    query_keys = {q.key for q in queries}
    query_groups = {q.group for q in queries if q.group}
    query_sha = {s for q in queries if (s := _sha(q, sha_cache))}
    left = []
    for r in pool:
        if r.key in query_keys:
            excluded["query"] += 1
        elif r.group and r.group in query_groups:
            excluded["same_group"] += 1
        elif (s := _sha(r, sha_cache)) and s in query_sha:
            excluded["identical"] += 1
        else:
            left.append(r)
    unreadable = h.unreadable(left)
    if unreadable:  # undecodable candidates are never prompts (datasets check lists them)
        excluded["unreadable"] = len(unreadable)
        left = [r for r in left if r.key not in unreadable]
    bad_queries = h.unreadable(queries)
    queries = [q for q in queries if q.key not in bad_queries]  # skipped by the caller when decoded
    if left and queries:
        near = h.near(left, queries).any(axis=1)
        excluded["near_duplicate"] = int(near.sum())
        left = [r for r, n in zip(left, near, strict=True) if not n]
    if len(left) < k:
        msg = (f"{index.name}/{cls}: {len(left)} normal prompt candidate(s) left of {len(pool)} after "
               f"excluding {excluded}; need k={k}. Lower k, or supply more normals (normal_prompts=...)")
        raise PromptError(msg)
    order = sorted(left, key=lambda r: r.key)
    random.Random(seed).shuffle(order)
    chosen: list[Record] = []
    for r in order:  # prefer prompts that are not near-duplicates of each other
        if len(chosen) == k:
            break
        if not chosen or not h.near([r], chosen).any():
            chosen.append(r)
    if len(chosen) < k:
        warnings.warn(f"{index.name}/{cls}: only {len(chosen)} mutually distinct prompt(s) in the pool; "
                      f"the other {k - len(chosen)} are near-duplicates of chosen ones", stacklevel=2)
        chosen += [r for r in order if r not in chosen][: k - len(chosen)]
    draw = PromptDraw(chosen, index.name, cls, k, seed, excluded, len(pool))
    if manifest_path is not None:
        draw.save(manifest_path, notice)
    return draw
