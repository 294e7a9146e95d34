"""Small mask tools shared by the modality methods: a working grid, square morphology, components, holes,
the background threshold."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError
from skimage.filters import threshold_otsu

_EIGHT = np.ones((3, 3), dtype=bool)
#: ROI outline colour on an overlay's picture, and the brightness kept outside the ROI.
OUTLINE, DIM = (255, 220, 0), 0.35


def to_working_grid(picture: np.ndarray, long_side: int) -> np.ndarray:
    """``picture`` shrunk (Pillow box filter) so its long side is at most ``long_side``; else unchanged."""
    h, w = picture.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1:
        return picture
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    return np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BOX))


def to_source_grid(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A working-grid bool mask → ``shape`` (nearest neighbour; unchanged when already that size)."""
    if mask.shape == tuple(shape):
        return mask
    rows = np.minimum((np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0], mask.shape[0] - 1).astype(np.intp)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1], mask.shape[1] - 1).astype(np.intp)
    return mask[rows[:, None], cols[None, :]]


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a ``(2 radius + 1)²`` square (a separable maximum filter: fast)."""
    return ndi.maximum_filter(mask.view(np.uint8), size=2 * int(radius) + 1, mode="constant", cval=0).view(bool)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a ``(2 radius + 1)²`` square; the image border does not erode."""
    return ndi.minimum_filter(mask.view(np.uint8), size=2 * int(radius) + 1, mode="nearest").view(bool)


def opening(mask: np.ndarray, radius: int) -> np.ndarray:
    """Erosion then dilation (square): removes parts thinner than ``2 radius + 1``."""
    return dilate(erode(mask, radius), radius)


def closing(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation then erosion (square): bridges gaps up to ``2 radius`` wide; the border does not erode."""
    grown = ndi.maximum_filter(mask.view(np.uint8), size=2 * int(radius) + 1, mode="nearest")
    return erode(grown.view(bool), radius)


def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, sizes)`` of the 8-connected components (``sizes[0]`` is the background, set to 0)."""
    labels, n = ndi.label(mask, structure=_EIGHT)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    return labels, sizes


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``mask`` (all False when ``mask`` is empty)."""
    labels, sizes = components(mask)
    if sizes.max(initial=0) == 0:
        return np.zeros_like(mask, dtype=bool)
    return labels == int(sizes.argmax())


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every region it encloses (not 4-connected to the image border) filled."""
    return ndi.binary_fill_holes(mask)


def border_connected(mask: np.ndarray) -> np.ndarray:
    """The parts of ``mask`` 8-connected to the image border."""
    labels, _ = components(mask)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    return np.isin(labels, edge) if edge.size else np.zeros_like(mask, dtype=bool)


def grey(picture: np.ndarray) -> np.ndarray:
    """uint8 grey of a grey or RGB picture (channel mean)."""
    if picture.ndim == 2:
        return picture
    return (picture.astype(np.uint16).sum(axis=-1) // 3).astype(np.uint8)


def background_threshold(g: np.ndarray) -> int:
    """``T`` for a uint8 grey picture: pixels ``> T`` are anatomy candidates.

    The 95th percentile of the border-ring pixels darker than a third of the Otsu level (the surround,
    not tissue of a head cut off by the edge), + 4; at least 8, at most a third of the Otsu level.
    """
    otsu = float(threshold_otsu(g)) if g.max() > g.min() else float(g.max())
    k = max(2, min(g.shape) // 32)
    ring = np.concatenate([g[:k].ravel(), g[-k:].ravel(), g[:, :k].ravel(), g[:, -k:].ravel()])
    dark = ring[ring < otsu / 3]
    noise = float(np.percentile(dark, 95)) if dark.size else 0.0
    return int(np.clip(noise + 4, 8, max(8.0, otsu / 3)))


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """The filled convex hull of ``mask`` (every pixel whose centre lies in the hull of its pixel squares).

    Same result as ``skimage.morphology.convex_hull_image`` up to boundary pixels, an order of magnitude
    faster: the hull of the outline pixels' corners (scipy's Qhull), filled row by row (a convex polygon
    meets each row in one interval).
    """
    outline = np.argwhere(mask & ~erode(mask, 1)).astype(np.float64)
    if len(outline) < 3:
        return mask.copy()
    corners = (outline[:, None, :] + np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])).reshape(-1, 2)
    try:
        polygon = corners[ConvexHull(corners).vertices]
    except QhullError:  # all points on one line
        return mask.copy()
    h, w = mask.shape
    rows = np.arange(h, dtype=np.float64)
    lo, hi = np.full(h, np.inf), np.full(h, -np.inf)
    for (y0, x0), (y1, x1) in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        if y0 == y1:
            continue
        sel = (rows >= min(y0, y1)) & (rows <= max(y0, y1))
        xs = x0 + (rows[sel] - y0) * (x1 - x0) / (y1 - y0)
        lo[sel], hi[sel] = np.minimum(lo[sel], xs), np.maximum(hi[sel], xs)
    cols = np.arange(w)
    out = np.zeros((h, w), dtype=bool)
    ok = hi >= lo
    first = np.clip(np.ceil(lo[ok]), 0, w)
    last = np.clip(np.floor(hi[ok]), -1, w - 1)
    out[ok] = (cols[None, :] >= first[:, None]) & (cols[None, :] <= last[:, None])
    return out | mask


def decorate(image: np.ndarray, roi: np.ndarray | None) -> np.ndarray:
    """The overlay's picture with the outside of ``roi`` dimmed and its outline drawn (source grid)."""
    if roi is None:
        return image
    from skimage.segmentation import find_boundaries

    pic = np.asarray(image)
    pic = np.repeat(pic[..., None], 3, axis=-1) if pic.ndim == 2 else pic[..., :3].copy()
    if roi.shape != pic.shape[:2]:
        roi = to_source_grid(roi, pic.shape[:2])
    pic[~roi] = (pic[~roi] * DIM).astype(np.uint8)
    edge = find_boundaries(roi, mode="inner")
    pic[edge] = OUTLINE
    return pic
