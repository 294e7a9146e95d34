"""``modality="auto"``: from the DICOM ``Modality`` tag, else from the picture.

1. DICOM ``Modality``: ``MR`` → mri, ``CT`` → ct, ``CR``/``DX``/``DR``/``RG`` → xray, ``ES`` → endoscopy;
   any other tag (US, NM, OT, SC, ...) falls through to the picture.
2. Colour: an RGB picture whose channels differ (median channel spread over the non-dark pixels
   ≥ :data:`COLOUR_SPREAD`) is endoscopy. Grey pictures saved as RGB (most Br35H JPEGs) are grey.
3. Grey: the largest component above half the Otsu level touching ≥ :data:`XRAY_EDGE_TOUCH` of the image's
   outer edge is a chest X-ray (the thorax runs off
   the film at the top, bottom and sides); a head or body on a dark surround touches less and is MRI
   (MRI and CT take the same method, so a grey picture is never called CT without its tag). A component
   covering the whole edge is a head on a light surround (some Br35H/BrainMRI figures), not an X-ray.

A heuristic: pass ``modality`` when it is known. On the shared sets (docs/roi.md) it calls about 1 in 100
Br35H/BrainMRI heads cut off by the picture's edge an X-ray, and 1 in 15 adult COVID X-rays MRI.
"""

from __future__ import annotations

import numpy as np
from skimage.filters import threshold_otsu

from adaptclip_med.roi.morphology import grey, largest_component, to_working_grid

COLOUR_SPREAD = 24
XRAY_EDGE_TOUCH = 0.30
_DICOM = {"MR": "mri", "CT": "ct", "CR": "xray", "DX": "xray", "DR": "xray", "RG": "xray", "ES": "endoscopy"}


def colour_spread(picture: np.ndarray) -> float:
    """Median channel spread (max − min) over the pixels brighter than 20; 0 for grey pictures."""
    if picture.ndim == 2:
        return 0.0
    hi, lo = picture.max(axis=-1), picture.min(axis=-1)
    lit = hi > 20
    return float(np.median(hi[lit].astype(np.int16) - lo[lit])) if lit.any() else 0.0


def edge_touch(g: np.ndarray) -> float:
    """Share of the outer 1-px edge covered by the largest component of ``g`` above half its Otsu level."""
    level = threshold_otsu(g) / 2 if g.max() > g.min() else float(g.max())
    body = largest_component(g > level)
    edge = np.concatenate([body[0], body[-1], body[:, 0], body[:, -1]])
    return float(edge.mean())


def detect_modality(picture: np.ndarray, dicom_modality: str | None = None) -> str:
    """``"mri"``, ``"ct"``, ``"xray"`` or ``"endoscopy"`` for a uint8 display picture (the module rule)."""
    if dicom_modality and dicom_modality.upper() in _DICOM:
        return _DICOM[dicom_modality.upper()]
    small = to_working_grid(picture, 256)
    if colour_spread(small) >= COLOUR_SPREAD:
        return "endoscopy"
    touch = edge_touch(grey(small))
    return "xray" if XRAY_EDGE_TOUCH <= touch < 1.0 else "mri"
