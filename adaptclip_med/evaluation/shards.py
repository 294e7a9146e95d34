"""Resume at batch granularity: one atomic shard file per (class, batch) while a class is scored.

``shards/<dataset>__<class>/b<batch>.npz`` holds, for every part being computed, the
:class:`~.score.BatchResult` of that batch, the batch's masks (for pixel metrics) and the files it
skipped, under a JSON header with the batch's content key and each part's key. A killed run loses at
most the batch in flight: on resume every shard whose keys still match is replayed instead of encoded.
Once the class's part files are written, its shard folder is removed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adaptclip_med.evaluation.score import BatchResult
from adaptclip_med.runtime.io import atomic_path


@dataclass
class Shard:
    """One stored batch.

    Attributes:
        batch_key: content key of the batch's records.
        part_keys: ``{part stem: part key}`` of the parts it holds.
        scored: positions (in the class's queries) of the images scored, in order.
        skipped: ``(position, reason)`` of the images that could not be read.
        masks: ``(S, S)`` uint8 mask or None per scored image.
        results: ``{part stem: BatchResult}``.
    """

    batch_key: str
    part_keys: dict[str, str]
    scored: list[int]
    skipped: list[tuple[int, str]]
    masks: list[np.ndarray | None]
    results: dict[str, BatchResult]


def shard_path(out: Path, group_stem: str, index: int) -> Path:
    """``out/shards/<group>/b<index>.npz``."""
    return out / "shards" / group_stem / f"b{index:06d}.npz"


def write_shard(path: Path, shard: Shard) -> None:
    """Write ``shard`` atomically (the file appears complete or not at all)."""
    stems = list(shard.results)
    header = {"batch_key": shard.batch_key, "part_keys": shard.part_keys, "stems": stems,
              "scored": shard.scored, "skipped": shard.skipped,
              "has_mask": [m is not None for m in shard.masks]}
    arrays: dict[str, np.ndarray] = {"header": np.array(json.dumps(header))}
    present = [m for m in shard.masks if m is not None]
    if present:
        arrays["masks"] = np.stack(present).astype(np.uint8)
    for i, stem in enumerate(stems):
        r = shard.results[stem]
        arrays[f"p{i}_scores"] = r.scores
        arrays[f"p{i}_range"] = np.array([r.lo, r.hi], dtype=np.float64)
        arrays[f"p{i}_cand"] = r.candidates
        arrays[f"p{i}_cand_maps"] = r.candidate_maps
        if r.maps is not None:
            arrays[f"p{i}_maps"] = r.maps
        if r.roi is not None:
            arrays[f"p{i}_roi"] = r.roi.astype(np.uint8)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, **arrays)


def _header_matches(header: dict, batch_key: str, part_keys: dict[str, str]) -> bool:
    stored = header.get("part_keys", {})
    return header.get("batch_key") == batch_key and all(stored.get(s) == k for s, k in part_keys.items())


def shard_matches(path: Path, batch_key: str, part_keys: dict[str, str]) -> bool:
    """True when a readable shard at ``path`` holds every part of ``part_keys`` under the same keys."""
    if not path.is_file():
        return False
    try:
        with np.load(path) as npz:
            return _header_matches(json.loads(str(npz["header"])), batch_key, part_keys)
    except (OSError, ValueError, KeyError):
        return False


def read_shard(path: Path, batch_key: str, part_keys: dict[str, str]) -> Shard | None:
    """The stored batch when it holds every part of ``part_keys`` under the same keys, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as npz:
            header = json.loads(str(npz["header"]))
            if not _header_matches(header, batch_key, part_keys):
                return None
            it = iter(npz["masks"]) if "masks" in npz.files else iter(())
            masks = [np.array(next(it)) if has else None for has in header["has_mask"]]
            results = {}
            for i, stem in enumerate(header["stems"]):
                if stem not in part_keys:
                    continue
                lo, hi = (float(v) for v in npz[f"p{i}_range"])
                maps = np.array(npz[f"p{i}_maps"]) if f"p{i}_maps" in npz.files else None
                roi = np.array(npz[f"p{i}_roi"]).astype(bool) if f"p{i}_roi" in npz.files else None
                results[stem] = BatchResult(np.array(npz[f"p{i}_scores"]), lo, hi, maps,
                                            np.array(npz[f"p{i}_cand"]), np.array(npz[f"p{i}_cand_maps"]), roi)
    except (OSError, ValueError, KeyError, StopIteration):  # a damaged shard is recomputed, not trusted
        return None
    return Shard(batch_key, dict(part_keys), list(header["scored"]),
                 [(int(p), str(w)) for p, w in header["skipped"]], masks, results)


def remove_shards(out: Path, group_stem: str) -> None:
    """Drop a finished class's shards."""
    shutil.rmtree(out / "shards" / group_stem, ignore_errors=True)
