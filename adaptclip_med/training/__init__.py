"""Adapter training on industrial data with a frozen-feature cache (method spec §5). Usage: docs/training.md.

Public names: :class:`TrainConfig`, :func:`train` (from a data set folder), :func:`train_adapters`
(model + samples), :func:`make_samples`, :func:`precompute_features`, :class:`TrainResult`. They are
imported on first use, so ``python -m adaptclip_med.train --help`` needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .api import precompute_features, samples_from_index, train
    from .config import BRANCHES, SCHEDULES, TrainConfig
    from .samples import TrainSample, make_samples
    from .trainer import TrainResult, train_adapters

__all__ = [
    "BRANCHES", "SCHEDULES", "TrainConfig", "TrainResult", "TrainSample", "make_samples",
    "precompute_features", "samples_from_index", "train", "train_adapters",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "precompute_features": ".api", "samples_from_index": ".api", "train": ".api", "BRANCHES": ".config",
    "SCHEDULES": ".config", "TrainConfig": ".config", "TrainSample": ".samples", "make_samples": ".samples",
    "TrainResult": ".trainer", "train_adapters": ".trainer",
})
