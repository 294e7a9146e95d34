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

from adaptclip_med.reporting.volumes import map_volume, save_nifti


def file_tag(*parts: object) -> str:
    """A 12-hex name for output files: a hash of ``parts`` (never a file name of the input)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:12]


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
