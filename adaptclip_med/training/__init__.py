"""Adapter training on industrial data with a frozen-feature cache (method spec §5). Usage: docs/training.md.

Public names: :class:`TrainConfig`, :func:`train` (from a data set folder), :func:`train_adapters`
(model + samples), :func:`make_samples`, :func:`precompute_features`, :class:`TrainResult`. They are
imported on first use, so ``python -m adaptclip_med.train --help`` needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adaptclip_med.runtime.lazy import lazy_exports

if TYPE_CHECKING:
    from adaptclip_med.training.api import precompute_features, samples_from_index, train
    from adaptclip_med.training.config import BRANCHES, SCHEDULES, TrainConfig
    from adaptclip_med.training.samples import TrainSample, make_samples
    from adaptclip_med.training.trainer import TrainResult, train_adapters

__all__ = [
    "BRANCHES", "SCHEDULES", "TrainConfig", "TrainResult", "TrainSample", "make_samples",
    "precompute_features", "samples_from_index", "train", "train_adapters",
]

_API, _CONFIG = "adaptclip_med.training.api", "adaptclip_med.training.config"
_SAMPLES, _TRAINER = "adaptclip_med.training.samples", "adaptclip_med.training.trainer"
__getattr__, __dir__ = lazy_exports(__name__, {
    "precompute_features": _API, "samples_from_index": _API, "train": _API,
    "BRANCHES": _CONFIG, "SCHEDULES": _CONFIG, "TrainConfig": _CONFIG,
    "TrainSample": _SAMPLES, "make_samples": _SAMPLES, "TrainResult": _TRAINER, "train_adapters": _TRAINER,
})
