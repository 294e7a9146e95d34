"""Per-image and per-volume files of ``score``: overlay PNGs, NIfTI maps on the source grid, table rows.

Overlay PNGs are image | anomaly map | overlay on a fixed colour scale 0..1 (the score's range; higher
values saturate), with a colour bar labelled "anomaly score", the threshold (white contour) in the
legend line, and the untrained-model notice burned into the title when it applies. They carry no file
name, path or patient identifier: names are hashes, titles say only score and slice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from adaptclip_med.reporting.overlays import overlay_figure, save_png
from adaptclip_med.reporting.volumes import map_volume, save_nifti

COLOUR_RANGE = (0.0, 1.0)


def file_tag(*parts: object) -> str:
    """A 12-hex name for output files: a hash of ``parts`` (never a file name of the input)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:12]


def write_overlay(path: Path, image: np.ndarray, amap: np.ndarray, *, score: float,
                  threshold: float | None, label: str, notice: str | None = None) -> Path:
    """Save the three-panel overlay PNG of one image.

    Args:
        path: PNG to write (atomically).
        image: ``(H, W[, 3])`` uint8 picture the model saw.
        amap: ``(S, S)`` anomaly map (resized to ``(H, W)`` for drawing).
        score: the image's anomaly score.
        threshold: pixel threshold drawn as a contour (None: not drawn, legend says so).
        label: what the image is, without identifiers (``"slice 12"``, ``"image"``).
        notice: untrained-model marker, burned into the title.
    """
    legend = f"threshold {threshold:.3g} (white contour)" if threshold is not None else "no threshold set"
    title = f"{label}: anomaly score {score:.3f}; {legend}"
    if notice:
        title = f"{title}\n{notice.upper()}"
    fig = overlay_figure(image, amap, vmin=COLOUR_RANGE[0], vmax=COLOUR_RANGE[1], threshold=threshold, title=title)
    panels = fig.axes[:3]
    for ax in fig.axes:
        if ax not in panels:  # the colour bar
            ax.set_ylabel("anomaly score")
    return save_png(fig, path, dpi=110)


def write_nifti_map(source: str, slice_maps: dict[int, np.ndarray], path: Path, axis: int = 2,
                    notice: str | None = None) -> Path:
    """NIfTI map of one volume on the source's own grid: same shape, voxel order and affine.

    ``slice_maps`` ``{slice index: (S, S) map}`` index slices of the closest-canonical volume (as the
    data pipeline reads them); :func:`~adaptclip_med.reporting.volumes.map_volume` turns the assembled map
    back into the source's axis order with its affine and qform/sform codes.
    """
    img = map_volume(source, slice_maps, axis=axis)
    img.header["descrip"] = (notice or "AdaptCLIP anomaly score").replace("—", "-").encode("ascii", "replace")[:79]
    return save_nifti(img, path)


def volume_summary(scores: list[float], topk: int) -> dict[str, float | int]:
    """Volume score of slice scores: ``max``, the mean of the ``topk`` highest, and the peak slice index."""
    arr = np.asarray(scores, dtype=np.float64)
    k = max(1, min(int(topk), len(arr)))
    return {"score": float(arr.max()), "topk_mean": float(np.sort(arr)[-k:].mean()), "peak_slice": int(arr.argmax()),
            "k": k}
