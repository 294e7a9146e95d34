"""Endoscopy: the field of view inside the black border, and specular highlights to ignore.

Field of view: the brightest channel, smoothed, above the background's noise (the
:func:`~adaptclip_med.roi.morphology.background_threshold` rule, at least 16); an opening (5 × 5) cuts the
overlay text off; the largest component, its holes filled and its convex hull (the optics' circle or
octagon: a dark lumen at the rim stays in); then the near-black area (brightest channel ≤ 10) connected
to the image border is taken out again (black masking boxes over the scope-position inset). Crops without
a border (``endo_normal_prompts``) come out as the whole picture.

Specular highlights (``ignore``): bright and nearly colourless pixels (brightest channel ≥ 225,
saturation ≤ 0.25) in the field of view, dilated by 1 px of the working grid (their halo).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from adaptclip_med.roi.morphology import (
    background_threshold,
    border_connected,
    convex_hull,
    dilate,
    fill_holes,
    largest_component,
    opening,
)

WORK_SIDE = 256  #: long side of the working grid (px)
DARK_BORDER = 10  #: brightest-channel value of the black border removed after the hull
SPECULAR_VALUE, SPECULAR_SATURATION = 225, 0.25


def _brightest(picture: np.ndarray) -> np.ndarray:
    return picture.max(axis=-1) if picture.ndim == 3 else picture


def field_of_view(picture: np.ndarray) -> np.ndarray:
    """The endoscope's field of view (working grid in, same grid out)."""
    v = _brightest(picture)
    vs = ndi.uniform_filter(v, 3)
    fg = vs > max(16, background_threshold(vs))
    opened = opening(fg, 2)
    view = largest_component(opened if opened.any() else fg)
    if not view.any():
        return view
    view = convex_hull(fill_holes(view))
    view &= ~border_connected(v <= DARK_BORDER)
    return fill_holes(largest_component(view))


def specular(picture: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """Specular highlights inside ``roi`` (the module rule)."""
    v = _brightest(picture)
    if picture.ndim == 3:
        low = picture.min(axis=-1).astype(np.float32)
        sat = 1.0 - low / np.maximum(v.astype(np.float32), 1.0)
    else:
        sat = np.zeros(v.shape, dtype=np.float32)
    spots = (v >= SPECULAR_VALUE) & (sat <= SPECULAR_SATURATION)
    if not spots.any():
        return spots
    return dilate(spots, 1) & roi
