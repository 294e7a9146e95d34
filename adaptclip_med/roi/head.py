"""MRI / CT heads and bodies: MONAI ``ForegroundMask``, the largest component, holes filled.

MONAI's ``ForegroundMask`` takes *dark* pixels as foreground (``value <= threshold``, for stained
slides on white); with ``invert=True`` it thresholds ``255 - value`` instead, so a numeric threshold
``254 - T`` keeps the pixels brighter than ``T``: the anatomy on its dark background.

``T`` sits just above the background's noise
(:func:`~adaptclip_med.roi.morphology.background_threshold`: JPEG ringing and scanner noise stay out, dim
tissue stays in). Then: an opening (3 × 3) cuts text and markers that touch the head,
the largest 8-connected component, a closing (5 × 5) bridges gaps in a thin skull or body outline,
holes are filled (dark ventricles, sinuses, lumen, lesions belong to the anatomy). No margin is added:
the 3 × 3 smoothing already widens the outline by a pixel, and a further 1-px dilation (about 2 px at
source size) costs more background exclusion (98.1 → 94.5 % on BrainMRI) than it gains lesion coverage
(99.988 → 99.996 %).
"""

from __future__ import annotations

import numpy as np
from monai.transforms import ForegroundMask
from scipy import ndimage as ndi

from adaptclip_med.roi.morphology import (
    background_threshold,
    closing,
    fill_holes,
    grey,
    largest_component,
    opening,
)

WORK_SIDE = 256  #: long side of the working grid (px)


def foreground(g: np.ndarray, threshold: int) -> np.ndarray:
    """``g > threshold`` through MONAI's ``ForegroundMask`` (inverted: see the module docstring)."""
    t = int(np.clip(threshold, 0, 253))
    mask = ForegroundMask(threshold={"R": 254 - t}, invert=True)(g[None])
    return np.asarray(mask)[0].astype(bool)


def head_mask(picture: np.ndarray) -> np.ndarray:
    """The anatomy ROI of an MRI / CT picture (working grid in, same grid out)."""
    g = ndi.uniform_filter(grey(picture), 3)
    fg = foreground(g, background_threshold(g))
    opened = opening(fg, 1)
    body = largest_component(opened if opened.any() else fg)
    return fill_holes(closing(body, 2))
