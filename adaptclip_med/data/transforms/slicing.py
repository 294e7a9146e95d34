"""2-D slices out of volumes: NIfTI volumes, DICOM multi-frame files and DICOM series folders.

Conventions (documented in docs/data.md):

* NIfTI is read in canonical RAS orientation, so ``axis`` 0/1/2 = sagittal/coronal/axial. A slice is
  shown with ``np.rot90`` (anterior or superior at the top, patient left on the image left:
  neurological convention). 4-D volumes use time point ``frame`` (default 0). ``slice_index=None``
  takes the middle slice.
* DICOM multi-frame ``(F, H, W[, 3])``: ``slice_index`` is the frame; without one, the frame rule
  ``dicom_frame`` picks it: ``"middle"`` (default, ``F // 2``: a cine loop or a multi-frame volume
  is shown at its middle, like a series), ``"first"``, or a fixed frame number. Every frame as its own
  record: enumerate ``range(slice_count(...))`` as ``slice_index`` (the ``volume`` data set does).
  A series folder ``(H, W, N)`` (its files read one by one like a single file and stacked along the
  slice normal, :mod:`~adaptclip_med.data.readers.dicom_series`): ``slice_index`` is the position
  (default middle); the chosen slice's own header (window, VOI LUT, MONOCHROME1) replaces the first
  slice's in the metadata, so a slice is displayed exactly as its file given alone.
* A 2-D image smaller than :data:`MIN_SIDE` pixels on a side (e.g. 1×1), or longer than
  :data:`~adaptclip_med.data.readers.screen.MAX_ASPECT` times its width (e.g. 4000×8: meaningless once
  squashed to the model's square input), is unusable: :class:`~adaptclip_med.runtime.errors.ImageReadError`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from adaptclip_med.data.readers.screen import MAX_ASPECT, aspect_problem
from adaptclip_med.runtime.errors import ImageReadError

FRAME_RULES: tuple[str, ...] = ("middle", "first")
MIN_SIDE = 2


def frame_default(rule: str | int, n: int) -> int:
    """Frame of a multi-frame DICOM taken when no ``slice_index`` is given (see the module notes).

    Raises:
        ValueError: unknown rule.
    """
    if isinstance(rule, int) and not isinstance(rule, bool):
        return rule
    if rule == "middle":
        return n // 2
    if rule == "first":
        return 0
    msg = f"dicom_frame {rule!r} not understood; expected one of {', '.join(FRAME_RULES)} or a frame number"
    raise ValueError(msg)


def slice_count(shape: tuple[int, ...], fmt: str, info: Mapping[str, object], axis: int = 2) -> int:
    """How many 2-D images the loaded array holds (1 for plain images)."""
    if fmt == "nifti":
        return int(shape[axis]) if len(shape) >= 3 else 1
    if fmt == "dicom":
        if info.get("is_series"):
            return int(shape[-1])
        if float(info.get("NumberOfFrames", 1) or 1) > 1:
            return int(shape[0])
    return 1


def _pick(index: int | None, n: int, default: int, source: str) -> int:
    idx = default if index is None else int(index)
    if not 0 <= idx < n:
        msg = f"slice index {idx} out of range; the file holds {n} slice(s) (0..{n - 1})"
        raise ImageReadError(source, msg, "pass a valid slice_index")
    return idx


def select_slice(array: np.ndarray, fmt: str, info: Mapping[str, object], index: int | None, *,
                 axis: int = 2, frame: int = 0, dicom_frame: str | int = "middle",
                 source: str = "image") -> np.ndarray:
    """Return the 2-D image ``(H, W)`` or ``(H, W, 3)`` at ``index`` of a loaded array.

    Raises:
        ImageReadError: NIfTI that is not 3-D/4-D, index out of range, unexpected shape, an image
            smaller than 2×2.
    """
    image = _select(array, fmt, info, index, axis=axis, frame=frame, dicom_frame=dicom_frame, source=source)
    if min(image.shape[:2]) < MIN_SIDE:
        msg = f"image is {image.shape[0]}x{image.shape[1]} pixels (HxW); too small to score"
        raise ImageReadError(source, msg, f"remove it (images need at least {MIN_SIDE}x{MIN_SIDE} pixels)")
    if (why := aspect_problem(*image.shape[:2])) is not None:
        raise ImageReadError(source, why, f"crop or tile it to pieces of at most {MAX_ASPECT:g}:1")
    return image


def _select(array: np.ndarray, fmt: str, info: Mapping[str, object], index: int | None, *,
            axis: int, frame: int, dicom_frame: str | int, source: str) -> np.ndarray:
    if fmt == "nifti":
        if array.ndim == 4:
            array = array[..., _pick(frame, array.shape[3], 0, source)]
        if array.ndim != 3:
            msg = f"got a NIfTI array of shape {tuple(array.shape)}; expected a 3-D or 4-D volume"
            raise ImageReadError(source, msg, "save 2-D images as PNG/TIFF, or add a third axis of size 1")
        n = array.shape[axis]
        return np.rot90(np.take(array, _pick(index, n, n // 2, source), axis=axis))
    if fmt == "dicom":
        n = slice_count(array.shape, fmt, info)
        if info.get("is_series"):
            return array[..., _pick(index, n, n // 2, source)]
        if n > 1:
            return array[_pick(index, n, frame_default(dicom_frame, n), source)]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        msg = f"got an array of shape {tuple(array.shape)}; expected (H, W) or (H, W, 3)"
        raise ImageReadError(source, msg, "pass a 2-D grey or RGB image, or a volume with slice_index")
    return array


class SelectSliced(MapTransform):
    """Dictionary version of :func:`select_slice`; every key uses the sample's ``slice_index``.

    Input: arrays from :class:`~adaptclip_med.data.readers.load.LoadMedicald` (with ``{key}_meta``).
    Output: the same keys as ``(H, W)`` or ``(H, W, 3)`` arrays; for a DICOM series, ``{key}_meta``'s
    ``header``, ``dicom`` and ``bits`` are those of the chosen slice.
    """

    def __init__(self, keys: KeysCollection, *, axis: int = 2, frame: int = 0,
                 dicom_frame: str | int = "middle", allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        frame_default(dicom_frame, 1)  # validates the rule
        self.axis, self.frame, self.dicom_frame = axis, frame, dicom_frame

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            if out[key] is None:
                continue
            meta = out.get(f"{key}_meta", {})
            full = np.asarray(out[key])
            fmt = meta.get("format", "pil")
            if slice_count(full.shape, fmt, meta.get("dicom", {}), self.axis) > 1 or fmt == "nifti":
                meta["volume"] = full  # a reference, for volume-level percentiles; dropped at the end
            out[key] = select_slice(
                full, meta.get("format", "pil"), meta.get("dicom", {}),
                out.get("slice_index"), axis=self.axis, frame=self.frame, dicom_frame=self.dicom_frame,
                source=meta.get("path", str(key)),
            )
            if fmt == "dicom" and "series" in meta:
                _use_slice_header(meta, out.get("slice_index"))
        return out


def _use_slice_header(meta: dict[str, object], index: int | None) -> None:
    """Put the header of series slice ``index`` (default: the middle one) in ``meta`` (a per-sample dict)."""
    series = meta["series"]
    n = len(series["headers"])
    k = n // 2 if index is None else int(index)  # already checked by select_slice
    header = series["headers"][k]
    meta["header"], meta["dicom"] = header, series["display"][k]
    meta["bits"] = int(header.get("BitsStored", 8) or 8)
