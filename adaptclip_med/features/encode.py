"""The one encode path: records → frozen backbone features, each image once, batch by batch.

Every consumer turns images into features here: ``evaluate`` (queries and prompts of a class),
``score`` (the images to score and the ``--normals``) and training (queries and prompts, ``--precompute``
under torchrun included). The backbone is frozen, so an image's features depend neither on the shots,
the seed, the prompts nor the adapters:

* :func:`encode_batches` reads ``records`` in fixed batches (:func:`batch_ranges`, the unit of
  resuming and sharding), encodes the ones a :class:`FeatureStore` lacks in device sub-batches that fit
  (:mod:`adaptclip_med.features.memory`), puts them in the store and yields each batch's ``(B, N, D)``
  features (:class:`EncodedBatch`);
* :func:`encode_records` gives ``{record.key: (1, N, D) features}`` of distinct records (training
  batches, ``--precompute`` shares) and the unreadable ones; :func:`encode_prompts` the same for
  prompt images, where an unreadable one is an error.

A :class:`FeatureStore` plugs in as the only cache: the persistent store
(:class:`adaptclip_med.features.store.FeatureStore`), training's content-keyed cache, or
:class:`adaptclip_med.features.store.Rounding` (keeps nothing, rounds as a store would). Shapes:
``B`` images, ``N = 1 + G²`` tokens per layer, ``D`` width; :class:`ImageFeatures` holds a global
``(B, D)`` and ``L`` patch tensors ``(B, N, D)``.

Files that cannot be read (``ImageReadError`` and other decode failures) are skipped with their reason,
not fatal, unless ``strict``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from adaptclip_med.data.records import Record
from adaptclip_med.features.memory import device_batch
from adaptclip_med.model.backbone import ImageFeatures
from adaptclip_med.runtime.errors import AdaptCLIPError
from adaptclip_med.runtime.skips import READ_ERRORS, reason_of


class FeatureStore(Protocol):
    """A place that already holds some records' features (e.g. a persistent on-disk cache)."""

    def get(self, record: Record) -> ImageFeatures | None:
        """The record's features ``(1, N, D)``, or None when not stored."""

    def put(self, record: Record, feats: ImageFeatures) -> ImageFeatures:
        """Keep the record's features ``(1, N, D)``; return them as kept (scored instead of ``feats``).

        A store that rounds (float16 on disk) returns the rounded features, so the run that fills it
        scores exactly what a later run reading it back will.
        """


@dataclass
class EncodeStats:
    """How many images went through the backbone, and how many came from a store."""

    encoded: int = 0
    from_store: int = 0


@dataclass
class EncodedBatch:
    """One batch of queries with their features.

    Attributes:
        index: the batch's number within its records (``batch_ranges``).
        records: the records that were read (unreadable ones removed), in order.
        masks: ``(S, S)`` uint8 mask or None per record.
        feats: ``(B, N, D)`` features of ``records`` (None when nothing in the batch was readable).
        skipped: ``(record, reason)`` of the unreadable ones.
        kept: per record, the sample entries named by ``encode_batches(keep=...)`` (e.g. ``image_u8``).
    """

    index: int
    records: list[Record]
    masks: list[np.ndarray | None]
    feats: ImageFeatures | None
    skipped: list[tuple[Record, str]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)

    def one(self, j: int) -> ImageFeatures:
        """The ``(1, N, D)`` features of ``records[j]``."""
        return self.feats.select(slice(j, j + 1))


def batch_ranges(n: int, batch_size: int) -> list[range]:
    """The fixed partition of ``n`` records into batches (the unit of encoding and of resuming)."""
    return [range(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def _reason(err: BaseException, record: Record) -> str:
    """One line, without an absolute path (:func:`adaptclip_med.runtime.skips.reason_of` for the record's image)."""
    return reason_of(err, record.image)


class _BatchReader(torch.utils.data.Dataset):
    """Item ``i`` = batch ``batches[i]``, read through ``transform``: ``(index, [(pos, sample | reason)])``."""

    def __init__(self, records: Sequence[Record], batches: list[tuple[int, range]], transform: Callable) -> None:
        self.records, self.batches, self.transform = records, batches, transform

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[int, list[tuple[int, Any]]]:
        index, positions = self.batches[i]
        items: list[tuple[int, Any]] = []
        for pos in positions:
            try:
                items.append((pos, self.transform(self.records[pos].as_dict())))
            except READ_ERRORS as err:
                items.append((pos, _reason(err, self.records[pos])))
        return index, items


def _as_is(item: Any) -> Any:
    """DataLoader collate: a batch is already one item of :class:`_BatchReader`."""
    return item


def _encode_checked(model: Any, images: torch.Tensor, batch_size: int) -> tuple[ImageFeatures | None, list[int]]:
    """Encode a batch in device sub-batches that fit (:func:`adaptclip_med.features.memory.device_batch`); a
    sub-batch the model refuses (NaN pixels, ...) is encoded one by one and the bad images dropped.

    Returns:
        ``(B', N, D)`` features of the accepted images in order (None if none), and the refused indices.

    Raises:
        AdaptCLIPError: out of device memory even one image at a time.
    """
    def step(start: int, stop: int) -> tuple[list[ImageFeatures], list[int]]:
        try:
            return [model.encode(images[start:stop], stop - start)], []
        except ValueError:
            good, bad = [], []
            for i in range(start, stop):
                try:
                    good.append(model.encode(images[i:i + 1], 1))
                except ValueError:
                    bad.append(i)
            return good, bad

    parts = device_batch(model).run(images.shape[0], batch_size, step)
    good = [f for feats, _ in parts for f in feats]
    bad = [i for _, refused in parts for i in refused]
    if not good:
        return None, bad
    return (good[0] if len(good) == 1 else type(good[0]).concatenate(good)), bad


def encode_batches(records: Sequence[Record], model: Any, transform: Callable, *, batch_size: int,
                   batches: Sequence[int] | None = None, workers: int = 0, store: FeatureStore | None = None,
                   stats: EncodeStats | None = None, strict: bool = False,
                   keep: Sequence[str] = ()) -> Iterator[EncodedBatch]:
    """Read and encode ``records`` batch by batch (each record once).

    Args:
        records: the queries of one class, in scoring order.
        model: an :class:`~adaptclip_med.model.AdaptCLIP` (``encode``, ``device``).
        transform: ``build_transforms(model.image_size, with_mask=...)``.
        batch_size: records per batch (:func:`batch_ranges`); the device gets fewer at a time when
            they do not fit in its memory (:mod:`adaptclip_med.features.memory`; same features).
        batches: which batch numbers to do (default all; resuming skips finished ones).
        workers: DataLoader processes; on CUDA the batches are pinned in page-locked memory.
        store: features already computed elsewhere (not encoded again); new ones are put in it.
        stats: counts of encoded / stored images, incremented here.
        strict: raise at the first unreadable file instead of skipping it.
        keep: sample entries to hand back per record (:attr:`EncodedBatch.kept`, e.g. ``"image_u8"``
            for overlays); the rest of each sample is dropped once encoded.

    Yields:
        :class:`EncodedBatch` per batch, in order.

    Raises:
        AdaptCLIPError: with ``strict``, one line naming the first unreadable file.
    """
    ranges = batch_ranges(len(records), batch_size)
    wanted = [(i, ranges[i]) for i in (range(len(ranges)) if batches is None else batches)]
    stats = stats if stats is not None else EncodeStats()
    pin = model.device.type == "cuda"
    loader = torch.utils.data.DataLoader(_BatchReader(records, wanted, transform), batch_size=None,
                                         num_workers=workers, collate_fn=_as_is)
    for index, items in loader:
        ok = [(pos, s) for pos, s in items if not isinstance(s, str)]
        skipped = [(records[pos], s) for pos, s in items if isinstance(s, str)]
        if strict and skipped:
            rec, why = skipped[0]
            raise AdaptCLIPError(f"{rec.key}: cannot be read ({why}); remove it or run without --strict")
        recs = [records[pos] for pos, _ in ok]
        masks = [None if s.get("mask") is None else np.asarray(s["mask"], dtype=np.uint8) for _, s in ok]
        kept = [{k: s.get(k) for k in keep} for _, s in ok]
        feats = None
        if ok:
            feats, bad = _encode(recs, [torch.as_tensor(s["image"]) for _, s in ok], model, batch_size, store,
                                 stats, pin)
            if bad:
                if strict:
                    raise AdaptCLIPError(f"{recs[bad[0]].key}: unusable pixels (NaN, inf or wrong size); "
                                         "remove it or run without --strict")
                skipped += [(recs[i], "unusable pixels (NaN, inf or wrong size)") for i in bad]
                good = [i for i in range(len(recs)) if i not in bad]
                recs, masks, kept = [recs[i] for i in good], [masks[i] for i in good], [kept[i] for i in good]
        yield EncodedBatch(index, recs, masks, feats, skipped, kept)


def _encode(recs: list[Record], images: list[torch.Tensor], model: Any, batch_size: int,
            store: FeatureStore | None, stats: EncodeStats, pin: bool) -> tuple[ImageFeatures | None, list[int]]:
    """Features of ``recs`` in order (from the store where it has them); indices the model refused."""
    stored = [store.get(r) if store is not None else None for r in recs]
    todo = [i for i, f in enumerate(stored) if f is None]
    bad: list[int] = []
    if todo:
        batch = torch.stack([images[i] for i in todo])
        if pin:
            batch = batch.pin_memory()
        fresh, bad_local = _encode_checked(model, batch.to(model.device, non_blocking=pin), batch_size)
        bad = [todo[i] for i in bad_local]
        good = [i for i in todo if i not in bad]
        stats.encoded += len(good)
        for j, i in enumerate(good):
            stored[i] = fresh.select(slice(j, j + 1))
            if store is not None:
                stored[i] = store.put(recs[i], stored[i])
    stats.from_store += len(recs) - len(todo)
    feats = [f for i, f in enumerate(stored) if i not in bad]
    return (type(feats[0]).concatenate(feats) if feats else None), bad


def encode_records(records: Sequence[Record], model: Any, transform: Callable, *, batch_size: int,
                   store: FeatureStore | None = None, stats: EncodeStats | None = None, workers: int = 0,
                   desc: str | None = None) -> tuple[dict[str, ImageFeatures], list[tuple[Record, str]]]:
    """Features of distinct ``records``: ``{record.key: (1, N, D)}`` in order, and ``(record, reason)``
    of those that cannot be used (unreadable file, pixels the model refuses).

    The records are encoded in ``batch_size`` batches (:func:`encode_batches`); a record the store holds
    is read from it. A record listed twice is encoded once. ``desc``: show a progress bar (per batch).
    """
    from tqdm.auto import tqdm

    distinct = list({r.key: r for r in records}.values())
    out: dict[str, ImageFeatures] = {}
    skipped: list[tuple[Record, str]] = []
    batches = encode_batches(distinct, model, transform, batch_size=batch_size, store=store, stats=stats,
                             workers=workers)
    for batch in tqdm(batches, total=len(batch_ranges(len(distinct), batch_size)), desc=desc,
                      disable=desc is None, leave=False):
        skipped += batch.skipped
        out.update((rec.key, batch.one(j)) for j, rec in enumerate(batch.records))
    return out, skipped


def encode_prompts(records: Sequence[Record], model: Any, transform: Callable, *, batch_size: int = 8,
                   store: FeatureStore | None = None, stats: EncodeStats | None = None) -> dict[str, ImageFeatures]:
    """``{record.key: (1, N, D) features}`` of each distinct prompt image, each encoded once.

    Raises:
        AdaptCLIPError: a prompt image cannot be read (prompts are never silently dropped: the draw
            would change).
    """
    out, skipped = encode_records(records, model, transform, batch_size=batch_size, store=store, stats=stats)
    if skipped:
        rec, why = skipped[0]
        msg = f"prompt image {rec.key} cannot be used ({why}); remove it from the prompt pool"
        raise AdaptCLIPError(msg)
    return out
