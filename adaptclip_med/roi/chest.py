"""Chest X-ray: the lung fields, by a classical pipeline (no model weights).

On a 256-px working grid: global histogram equalisation (contrast), a 5-px mean filter, the lungs as
the dark part of the body (below the Otsu level of the equalised pixels inside the body), then, for
openings of growing size (5, 7, 11, 15 px squares) until one is found on each side of the picture, the
largest dark component per side (at least 2 % of the picture) that touches at most 3 % of the picture's
outer edge (border clearing: dark regions running along the film's edge are outside air or
collimation; a lung apex cut off by the film edge is kept). Each lung is filled and replaced by its
convex hull (opacities, consolidations and nodules inside a lung stay in), and dilated by 3 px.

When that gives no plausible lung fields (only one side found, or under 6 % or over 65 % of the
picture: white-out lungs, unusual crops, lateral views, tubes and wires) the ROI falls back to the
body: everything but the near-black background connected to the border, holes filled
(:func:`body_mask`) — larger than the lungs, never smaller.

``torchxrayvision``'s lung segmentation (PSPNet) would be the learned alternative; it needs its
weights file on the machine (it downloads them on first use) and is not used here: the package is not a
dependency and no weights are shipped.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.exposure import equalize_hist
from skimage.filters import threshold_otsu

from adaptclip_med.roi.morphology import (
    background_threshold,
    border_connected,
    components,
    convex_hull,
    dilate,
    erode,
    fill_holes,
    grey,
    largest_component,
    opening,
)

WORK_SIDE = 256  #: long side of the working grid (px)
MIN_LUNG, MIN_TOTAL, MAX_TOTAL = 0.02, 0.06, 0.65
MAX_EDGE_TOUCH = 0.03  #: share of the picture's outer edge a lung may touch (apices cut off by the film)
OPENING_RADII = (2, 3, 5, 7)


def body_mask(g: np.ndarray) -> np.ndarray:
    """Everything but the near-black background connected to the border, largest part, holes filled."""
    background = border_connected(g <= background_threshold(g))
    return fill_holes(largest_component(~background))


def _lungs_at(candidates: np.ndarray, radius: int, min_size: float) -> list[np.ndarray]:
    """The largest acceptable dark component on each side of the picture after an opening of ``radius``."""
    labels, sizes = components(opening(candidates, radius))
    h, w = candidates.shape
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    touch = np.bincount(edge, minlength=len(sizes))
    cols = np.bincount(labels.ravel(), weights=np.broadcast_to(np.arange(w), (h, w)).ravel(), minlength=len(sizes))
    best: dict[int, int] = {}
    for label in np.argsort(sizes)[::-1]:
        if sizes[label] < min_size:
            break
        if touch[label] > MAX_EDGE_TOUCH * edge.size:
            continue  # outside air or collimation running along the film's edge
        side = int(cols[label] / sizes[label] >= w / 2)
        best.setdefault(side, int(label))
    return [labels == label for label in best.values()]


def lung_fields(picture: np.ndarray) -> np.ndarray:
    """The lung-field ROI of a chest X-ray (working grid in, same grid out)."""
    g = grey(picture)
    body = body_mask(g)
    if not body.any():
        return body
    eq = ndi.uniform_filter(equalize_hist(g), 5)
    inside = eq[erode(body, 3)]
    level = threshold_otsu(inside) if inside.size and np.ptp(inside) > 0 else 0.0
    candidates = (eq < level) & body
    found: list[np.ndarray] = []
    for radius in OPENING_RADII:
        lungs_here = _lungs_at(candidates, radius, MIN_LUNG * g.size)
        if len(lungs_here) > len(found):
            found = lungs_here
        if len(found) == 2:
            break
    if len(found) < 2:  # one lung found: the other may hold the finding; the body is the safe ROI
        return body
    lungs = np.zeros_like(body)
    for lung in found:
        lungs |= convex_hull(fill_holes(lung))
    share = lungs.mean()
    if share < MIN_TOTAL or share > MAX_TOTAL:
        return body
    return fill_holes(dilate(lungs, 3) & body)
