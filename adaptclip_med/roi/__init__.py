"""The anatomy's own region (ROI) of one image, on its source pixel grid.

:func:`anatomy_mask` gives the ROI as a ``(H, W)`` bool array; :func:`anatomy_regions` adds an
``ignore`` mask (specular highlights of endoscopy frames). One method per modality: MRI/CT heads and
bodies (:mod:`.head`, MONAI ``ForegroundMask``), chest X-ray lung fields (:mod:`.chest`), the endoscopy
field of view (:mod:`.endoscopy`); ``modality="auto"`` by :mod:`.modality`. Paths are read through the
data package's one pixel path (:mod:`.source`). Figures and method: docs/roi.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adaptclip_med.runtime.lazy import lazy_exports

if TYPE_CHECKING:
    from adaptclip_med.roi.api import MODALITIES, anatomy_mask, anatomy_regions
    from adaptclip_med.roi.modality import detect_modality

__all__ = ["MODALITIES", "anatomy_mask", "anatomy_regions", "detect_modality"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "MODALITIES": ".api", "anatomy_mask": ".api", "anatomy_regions": ".api", "detect_modality": ".modality",
})
