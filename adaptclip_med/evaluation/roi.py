"""``evaluate --roi`` and ``--gate``: the anatomy ROI and the applicability gate in an evaluation.

Two passes, both on the display picture the model sees (:func:`adaptclip_med.roi.source.display_image`):

* at plan time (:func:`screen_group`, only with ``--roi`` or ``--gate on``), before anything is
  encoded: each query's ROI is checked (a blank picture, a missing user mask, an empty ROI or a volume
  slice whose ROI is below ``--roi-floor`` leaves the image out, listed in ``skipped.csv`` with the
  reason) and the gate's metadata and pixel rules run (:mod:`adaptclip_med.roi.gate`); a rejected
  image is left out of the metrics and listed with its reasons unless ``--force``. Kept images carry
  their ``applicability`` cells into ``per_image.csv``.
* per scored batch (:func:`batch_rois`, :func:`confine`): the ROI on the map's ``S × S`` grid (nearest
  neighbour, the model's input being the picture squashed to ``S × S``), the image score taken inside it
  by the fusion's own rule (:func:`adaptclip_med.model.fusion.score_with_peak`) and the kept maps set to
  their minimum outside it. The whole-image pixel metrics keep the model's own maps; the ``@roi`` ones
  take only the ROI's pixels (:class:`adaptclip_med.metrics.PixelAccumulator` with ``roi``).

The gate's feature rule (embedding vs normals) is not run in an evaluation: its verdict would depend on
each part's prompt draw, not on the image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from adaptclip_med.data.records import Record
from adaptclip_med.model.fusion import score_with_peak
from adaptclip_med.roi import anatomy_mask, detect_modality
from adaptclip_med.roi.gate import GateConfig, below_floor, metadata_verdict, pixel_verdict
from adaptclip_med.roi.morphology import decorate, to_source_grid
from adaptclip_med.roi.source import display_image, user_mask
from adaptclip_med.runtime.errors import ImageReadError
from adaptclip_med.runtime.skips import Skip, one_line


def source_roi(rec: Record, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """``(picture, roi)`` of one query on its source grid; ``mode`` ``"auto"`` or a folder of masks.

    Raises:
        ImageReadError: unreadable image, blank picture (no anatomy), no user mask of its stem (or one of
            another size).
    """
    picture, dicom_modality, source = display_image(rec.image, rec.slice_index)
    if picture.max() == picture.min():
        raise ImageReadError(source, f"blank picture (every pixel is {int(picture.min())}): no ROI to score in")
    if mode == "auto":
        return picture, anatomy_mask(picture, detect_modality(picture, dicom_modality))
    return picture, user_mask(mode, rec.image, rec.slice_index, picture.shape[:2])


def _screen_one(rec: Record, mode: str, gate: GateConfig) -> tuple[str | None, dict[str, str]]:
    """``(skip reason or None, applicability cells)`` of one query."""
    verdict = metadata_verdict(rec.image, gate) if gate.enabled else None
    roi = None
    try:
        if mode != "none":
            picture, roi = source_roi(rec, mode)
        else:
            picture = display_image(rec.image, rec.slice_index)[0]
    except (ImageReadError, OSError) as err:
        if verdict is None or not isinstance(err, ImageReadError) or "blank picture" not in str(err):
            return str(err), {}
        picture = display_image(rec.image, rec.slice_index)[0]  # blank: the gate's own rule names it
    if verdict is not None:
        verdict.extend(pixel_verdict(picture, roi, gate))
    if roi is not None and not roi.any() and (verdict is None or not verdict.rejected):
        return "empty ROI: nothing to score", {}
    if roi is not None and rec.slice_index is not None and roi.mean() < gate.roi_floor:
        return below_floor(roi.mean(), gate.roi_floor), {}
    if verdict is None:
        return None, {}
    if verdict.rejected and not gate.force:
        return f"applicability reject: {verdict.reasons}", {}
    return None, verdict.cells(gate.force)


def screen_group(group: Any, mode: str, gate: GateConfig) -> list[Skip]:
    """Take the queries without a usable ROI, or rejected by the gate (without ``--force``), out of
    ``group`` (a :class:`~adaptclip_med.evaluation.plan.ClassGroup`) before any draw or encode; record the
    kept ones' ``applicability`` cells in ``group.applicability``. Returns the listed skips."""
    if mode == "none" and not gate.enabled:
        return []
    kept, skips = [], []
    for rec in group.queries:
        reason, cells = _screen_one(rec, mode, gate)
        if reason is None:
            kept.append(rec)
            if cells:
                group.applicability[rec.key] = cells
        else:
            skips.append(Skip(group.dataset, group.relative_key(rec), group.clean(one_line(reason)), group.cls))
    group.queries = kept
    return skips


def batch_rois(recs: list[Record], mode: str, side: int) -> np.ndarray | None:
    """``(B, side, side)`` bool ROIs of a batch on the map grid (None with ``mode`` ``"none"``).

    An image whose ROI cannot be found now (changed since the plan) gets the whole map as its ROI.
    """
    if mode == "none":
        return None
    out = np.ones((len(recs), side, side), dtype=bool)
    for j, rec in enumerate(recs):
        try:
            out[j] = to_source_grid(source_roi(rec, mode)[1], (side, side))
        except (ImageReadError, OSError):
            continue
        if not out[j].any():
            out[j] = True
    return out


def confine(scores: dict[str, torch.Tensor], fused: np.ndarray, maps: np.ndarray, rois: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(scores (B,), maps (B, S, S))`` inside ``rois``: each score by the fusion's rule with the map's
    peak inside its ROI (``fused`` kept where the output has no branch scores, e.g. WinCLIP), each map
    set to its minimum outside."""
    peak = np.where(rois, maps, -np.inf).reshape(len(maps), -1).max(axis=1)
    if "image_prob_mean" in scores or {"va", "ta"} <= set(scores):
        branch = {k: v.float() for k, v in scores.items()}
        fused = score_with_peak(branch, torch.as_tensor(peak, dtype=torch.float32)).numpy().astype(np.float64)
    low = maps.reshape(len(maps), -1).min(axis=1)[:, None, None]
    return fused, np.where(rois, maps, low).astype(np.float32)


def roi_picture(config: Any) -> Any:
    """The overlays' picture hook with ``--roi`` (None without): ``(dataset, record, image_u8)`` → the picture
    dimmed outside the record's ROI with its outline (:func:`adaptclip_med.roi.morphology.decorate`, as
    ``score`` draws it)."""
    if not config.roi:
        return None

    def draw(dataset: str, rec: Record, image: np.ndarray) -> np.ndarray:
        mode = config.roi_for(dataset)
        if mode == "none":
            return image
        rois = batch_rois([rec], mode, image.shape[0])
        return decorate(image, to_source_grid(rois[0], image.shape[:2]))

    return draw
