"""Training samples: queries with their labels and masks, prompt pools, and the seeded epoch plans.

Queries are the test split of an industrial set (normal and anomalous, anomalous ones with masks);
each query is paired, anew every epoch, with one random normal train image of its class as prompt.
All randomness here is a pure function of ``(seed, epoch)``, so a resumed run replays it exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adaptclip_med.runtime.errors import DataValidationError, PromptError


@dataclass(frozen=True)
class TrainSample:
    """One query image: ``label`` 0 normal / 1 anomalous; ``mask`` required when anomalous."""

    image: Path
    mask: Path | None
    label: int
    cls: str


def make_samples(
    items: Iterable[tuple[str | Path, str | Path | None, int, str]], source: str = "the sample list"
) -> list[TrainSample]:
    """Build validated samples from plain ``(image_path, mask_path | None, label, cls)`` tuples.

    Raises:
        DataValidationError: empty input, a label outside {0, 1}, an anomalous image without a mask,
            or a missing file. ``source`` (e.g. the data root) is named in the message.
    """
    samples = []
    for image, mask, label, cls in items:
        image = Path(image)
        mask = None if mask is None else Path(mask)
        if int(label) not in (0, 1):
            msg = f"{image}: got label {label!r}; expected 0 (normal) or 1 (anomalous). Fix the labels."
            raise DataValidationError(msg)
        if int(label) == 1 and mask is None:
            msg = (f"{image}: anomalous training image without a mask in {source}; expected a mask for "
                   "every anomalous query (the method's pixel losses need one). Add the mask or drop "
                   "the image.")
            raise DataValidationError(msg)
        for path in (image, mask):
            if path is not None and not path.is_file():
                msg = f"{path}: file not found (listed in {source}); expected a readable image file."
                raise DataValidationError(msg)
        samples.append(TrainSample(image, mask, int(label), str(cls)))
    if not samples:
        msg = (f"{source}: no query images found; expected the test split (normal and anomalous images "
               "with masks). Check the data root and that it holds a test split.")
        raise DataValidationError(msg)
    return samples


def check_prompt_pool(
    samples: Sequence[TrainSample], pool: Mapping[str, Sequence[str | Path]], source: str = "the prompt pool"
) -> dict[str, list[Path]]:
    """Return ``{cls: [normal train image paths]}`` for every query class, queries themselves removed.

    Raises:
        PromptError: a class of the queries has no normal train image to use as a prompt.
    """
    query_paths = {s.image.resolve() for s in samples}
    checked: dict[str, list[Path]] = {}
    for cls in sorted({s.cls for s in samples}):
        paths = [Path(p) for p in pool.get(cls, ())]
        paths = sorted(p for p in paths if p.resolve() not in query_paths)
        if not paths:
            msg = (f"class {cls!r} in {source}: got no normal train image to use as a prompt; expected "
                   "at least one (the method pairs every query with a normal image of its class). "
                   "Add normal train images for this class or leave the class out.")
            raise PromptError(msg)
        for path in paths:
            if not path.is_file():
                msg = f"{path}: prompt image not found (class {cls!r}); expected a readable image file."
                raise PromptError(msg)
        checked[cls] = paths
    return checked


def draw_prompts(
    samples: Sequence[TrainSample], pool: Mapping[str, Sequence[Path]], seed: int, epoch: int
) -> list[Path]:
    """One random normal prompt of the same class per query, drawn from ``(seed, epoch)`` alone.

    Returns:
        A list of ``len(samples)`` prompt paths.
    """
    rng = np.random.default_rng([seed, epoch, 1])
    return [pool[s.cls][int(rng.integers(len(pool[s.cls])))] for s in samples]


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of sample indices for one epoch, drawn from ``(seed, epoch)`` alone.

    Batch-norm edge case: a final batch of one sample cannot be normalised with batch statistics
    (train-mode BatchNorm1d needs two values per channel), so it is merged into the batch before it
    (that batch has ``batch_size + 1`` samples). No sample is dropped.

    Raises:
        DataValidationError: fewer than two samples (no batch can be normalised).
    """
    if n < 2:
        msg = (f"got {n} training query image(s); expected at least 2 (batch normalisation in the "
               "adapters needs two samples per batch). Add images.")
        raise DataValidationError(msg)
    if batch_size < 2:
        msg = f"got batch size {batch_size}; expected at least 2 (train-mode batch normalisation)."
        raise ValueError(msg)
    order = np.random.default_rng([seed, epoch, 0]).permutation(n).tolist()
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    return batches
