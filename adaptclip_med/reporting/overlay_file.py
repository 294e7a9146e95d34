"""``save_overlay``: from a prediction to a saved image | map | overlay PNG in one call.

The picture drawn under the map is the same 8-bit image the model saw: a path is read through
:func:`adaptclip_med.data.build_transforms` (DICOM windowing, NIfTI slices, 16-bit scaling), an 8-bit
array or PIL image is used as it is, and a preprocessed ``(3, S, S)`` tensor is un-normalised.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from adaptclip_med.data.transforms.clip_input import CLIP_MEAN, CLIP_STD, to_rgb_uint8
from adaptclip_med.metrics.operating_point import is_anomalous
from adaptclip_med.reporting.labels import run_notice
from adaptclip_med.reporting.overlays import overlay_figure, save_png

#: The colour scale of single-image overlays: the score's range (higher values saturate).
COLOUR_RANGE = (0.0, 1.0)


def picture_u8(image: Any, size: int, slice_index: int | None = None) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 picture behind a model input.

    Args:
        image: a file path (PNG/JPEG/TIFF/DICOM/NIfTI), an 8-bit ``(H, W)`` / ``(H, W, 3)`` array or
            PIL image, or a preprocessed ``(3, S, S)`` float tensor / array (CLIP-normalised).
        size: the model's input size ``S`` (the path pipeline needs it).
        slice_index: the slice of a volume / frame of a multi-frame DICOM (default: as preprocessing).
    """
    if isinstance(image, (str, os.PathLike)):
        from adaptclip_med.data import build_transforms

        sample = build_transforms(size, with_mask=False)({"image": str(image), "slice_index": slice_index})
        return np.asarray(sample["image_u8"])
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else image
    if isinstance(array, np.ndarray) and array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if isinstance(array, np.ndarray) and array.ndim == 3 and array.shape[0] == 3 and array.dtype != np.uint8:
        rgb = array.transpose(1, 2, 0) * np.asarray(CLIP_STD) + np.asarray(CLIP_MEAN)
        return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    return to_rgb_uint8(array)


def save_overlay(image: Any, out: Any, path: str | os.PathLike[str], *, index: int = 0,
                 threshold: float | None = None, model: Any = None, slice_index: int | None = None,
                 image_threshold: float | None = None) -> Path:
    """Save the image | anomaly map | overlay PNG of one prediction.

    Args:
        image: what was scored: a file path, an 8-bit array / PIL image, or the ``(3, S, S)``
            (or ``(1, 3, S, S)``) tensor given to ``predict``.
        out: the :class:`~adaptclip_med.AnomalyOutput` of ``model.predict`` (its ``index``-th image),
            or a map ``(S, S)`` / ``(B, S, S)`` as tensor or array.
        path: PNG file to write (folders are created; written atomically).
        index: which image of the batch.
        threshold: map value drawn as a white contour (and named in the title), e.g. a calibrated
            pixel threshold.
        model: the model that predicted; marks the figure with its :func:`~adaptclip_med.reporting.labels.run_notice`
            ("untrained backbone ..." for random backbone weights, "untrained adapters ..." for fresh adapters).
        slice_index: slice / frame of a volume path.
        image_threshold: threshold of the verdict on the score, named in the title ("ABOVE the image
            threshold 0.42: flagged"); None: the title says none is set.

    Returns:
        The PNG's path.
    """
    amap = out.anomaly_map if hasattr(out, "anomaly_map") else out
    amap = amap.detach().cpu().numpy() if hasattr(amap, "detach") else np.asarray(amap)
    amap = np.asarray(amap[index] if amap.ndim == 3 else amap, dtype=np.float32)
    score = float(out.pred_score[index]) if hasattr(out, "pred_score") else float(amap.max())
    prov = getattr(model, "provenance", {}) if model is not None else {}
    notice = run_notice(prov.get("pretrained"), prov.get("checkpoint")) if model is not None else None
    picture = picture_u8(image, int(amap.shape[-1]), slice_index)
    label = "image" if hasattr(out, "pred_score") else "image (score: map maximum)"
    return write_overlay(Path(path), picture, amap, score=score, threshold=threshold, label=label,
                         notice=notice, image_threshold=image_threshold)


def write_overlay(path: Path, image: np.ndarray, amap: np.ndarray, *, score: float,
                  threshold: float | None, label: str, notice: str | None = None,
                  image_threshold: float | None = None, letters: tuple[str, str, str, str] | None = None) -> Path:
    """Save the three-panel overlay PNG of one image.

    The title names both thresholds, each for what it decides: the image threshold gives the verdict
    on the score (``score > threshold``: above, flagged; equal is normal), the pixel threshold the
    white contour.

    Args:
        path: PNG to write (atomically).
        image: ``(H, W[, 3])`` uint8 picture the model saw (turned to the display convention by the caller).
        amap: ``(S, S)`` anomaly map (resized to ``(H, W)`` for drawing).
        score: the image's anomaly score.
        threshold: pixel threshold drawn as a contour (None: not drawn, the title says so).
        label: what the image is, without identifiers (``"InstanceNumber 4"``, ``"image"``).
        notice: untrained-model marker, burned into the title.
        image_threshold: the threshold of the verdict on ``score`` (None: no verdict).
        letters: patient directions at the left, right, top and bottom edges, on every panel.
    """
    if image_threshold is None:
        verdict = "no image threshold set"
    elif is_anomalous(score, image_threshold):
        verdict = f"ABOVE the image threshold {image_threshold:.3g}: flagged"
    else:
        verdict = f"not above the image threshold {image_threshold:.3g}: not flagged"
    contour = f"pixel threshold {threshold:.3g} (white contour)" if threshold is not None else "no pixel threshold"
    title = f"{label}: anomaly score {score:.3f}, {verdict}\n{contour}"
    if notice:
        title = f"{title}\n{notice.upper()}"
    fig = overlay_figure(image, amap, vmin=COLOUR_RANGE[0], vmax=COLOUR_RANGE[1], threshold=threshold, title=title,
                         letters=letters)
    panels = fig.axes[:3]
    for ax in fig.axes:
        if ax not in panels:  # the colour bar
            ax.set_ylabel("anomaly score")
    return save_png(fig, path, dpi=110)
