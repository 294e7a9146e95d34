"""``build_transforms``: one MONAI ``Compose`` from a file path to a model-ready tensor (+ mask).

Pipeline (dictionary transforms; ``keys = ["image", "mask"]``)::

    LoadMedicald      one reader per format (MONAI PIL / Nibabel, tifffile, pydicom: files and series)
    SelectSliced      volume / multi-frame / series → one 2-D slice (``slice_index``)
    ToUint8d          VOI LUT, window tags or preset, percentiles → uint8; MONOCHROME1 inverted
    BinarizeMaskd     mask > 0 (> 127 for JPEG masks), size checked against the image (preprocess rule)
    CropBorderd       optional: black endoscopy frame cropped from image and mask (``crop_box``)
    ToRGBd            grey → 3 channels (repeated); keeps ``image_u8`` and ``original_size``
    PillowResized     the authors' 8-bit Pillow bicubic squash to S×S   (adaptclip_med.data.transforms.clip_input)
    ClipNormalized    (u8/255 − mean)/std → (3, S, S) float32             (adaptclip_med.data.transforms.clip_input)
    ResizeMaskd       Pillow bilinear on 0/255, > 0.5 → (S, S) uint8 tensor  (adaptclip_med.data.transforms.clip_input)
    Finalized         drops loader metadata (DICOM headers never leave the pipeline)

Any failure is re-raised as :class:`~adaptclip_med.runtime.errors.ImageReadError` naming the file.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Compose, MapTransform

from adaptclip_med.data.readers.load import LoadMedicald
from adaptclip_med.data.transforms.clip_input import (
    CLIP_MEAN,
    CLIP_STD,
    ClipNormalized,
    PillowResized,
    binarize_mask,
    mask_threshold,
    resize_mask,
)
from adaptclip_med.data.transforms.display import ToUint8d
from adaptclip_med.data.transforms.intensity import WindowSpec, resolve_window
from adaptclip_med.data.transforms.slicing import SelectSliced
from adaptclip_med.runtime.errors import ImageReadError

MODALITIES: tuple[str, ...] = ("auto", "ct", "mr", "xray", "endoscopy", "photo")


class ToRGBd(MapTransform):
    """``(H, W)`` / ``(H, W, 3)`` uint8 → ``(H, W, 3)`` uint8 (grey repeated on three channels).

    Also stores a copy as ``image_u8`` and ``original_size = (H, W)`` for overlays.
    """

    def __init__(self, keys: KeysCollection = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            array = np.asarray(out[key])
            if array.ndim == 2:
                array = np.repeat(array[..., None], 3, axis=-1)
            out[key] = np.ascontiguousarray(array)
            out[f"{key}_u8"] = out[key]
            out["original_size"] = (int(array.shape[0]), int(array.shape[1]))
        return out


class BinarizeMaskd(MapTransform):
    """Mask → ``(H, W)`` uint8 in {0, 1}: any value > 0 (> 127 for JPEG masks, lossy); RGB → any channel
    (:func:`adaptclip_med.data.transforms.clip_input.binarize_mask`).

    Raises:
        ImageReadError: the mask's size differs from the image's (``ref_key``; ``None``: not checked).
    """

    def __init__(self, keys: KeysCollection = "mask", ref_key: str | None = "image",
                 allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            if out[key] is None:
                continue
            path = str(out.get(f"{key}_meta", {}).get("path", key))
            mask = binarize_mask(np.asarray(out[key]), mask_threshold(path))
            ref = np.asarray(out[self.ref_key]).shape[:2] if self.ref_key is not None else mask.shape
            if mask.shape != ref:
                msg = f"mask is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image is {ref[0]}x{ref[1]}"
                raise ImageReadError(path, msg, "masks must have the size of their image")
            out[key] = mask
        return out


def border_box(image: np.ndarray, threshold: int = 10, min_fraction: float = 0.05) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` of the content inside a dark frame (rows/columns with > 5 % bright pixels)."""
    grey = image.max(axis=-1) if image.ndim == 3 else image
    bright = grey > threshold
    rows = np.nonzero(bright.mean(axis=1) > min_fraction)[0]
    cols = np.nonzero(bright.mean(axis=0) > min_fraction)[0]
    if len(rows) == 0 or len(cols) == 0:
        return 0, grey.shape[0], 0, grey.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


class CropBorderd(MapTransform):
    """Crop the black frame of endoscopy images (uint8) from the image and, identically, its mask.

    Stores ``crop_box = (y0, y1, x0, x1)`` in the original pixel grid; ``image_u8`` and
    ``original_size`` then describe the cropped image.
    """

    def __init__(self, keys: KeysCollection = ("image", "mask"), threshold: int = 10) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        y0, y1, x0, x1 = border_box(np.asarray(out["image"]), self.threshold)
        for key in self.key_iterator(out):
            if out[key] is not None:
                out[key] = np.ascontiguousarray(np.asarray(out[key])[y0:y1, x0:x1])
        out["crop_box"] = (y0, y1, x0, x1)
        return out


class ResizeMaskd(MapTransform):
    """``(H, W)`` {0,1} uint8 → ``(S, S)`` uint8 tensor by :func:`adaptclip_med.data.transforms.clip_input.resize_mask`
    (Pillow bilinear on 0/255, > 0.5: the authors' rule, also used by training)."""

    def __init__(self, keys: KeysCollection, size: int, allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.size = int(size)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            if out[key] is not None:
                out[key] = torch.from_numpy(np.ascontiguousarray(resize_mask(np.asarray(out[key]), self.size)))
        return out


class Finalized(MapTransform):
    """Drop ``*_meta`` entries and ``None`` values (so samples collate in a ``DataLoader``).

    With ``keep_original=False`` also drops ``image_u8`` / ``original_size`` (needed to batch images
    of different original sizes with the default collate).
    """

    def __init__(self, keys: KeysCollection = ("image", "mask"), keep_original: bool = True) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.keep_original = keep_original

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        drop = () if self.keep_original else ("image_u8", "original_size")
        return {k: v for k, v in data.items()
                if v is not None and not str(k).endswith("_meta") and k not in drop}


class MedicalCompose(Compose):
    """``Compose`` whose failures lead with the sample's file (MONAI's wrapper hides it)."""

    def __call__(self, data, *args, **kwargs):
        try:
            return super().__call__(data, *args, **kwargs)
        except Exception as exc:
            cause: BaseException | None = exc
            while cause is not None:
                if isinstance(cause, ImageReadError):
                    raise cause from exc
                cause = cause.__cause__ or cause.__context__
            source = (data.get("image") or data.get("mask") or "sample") if isinstance(data, Mapping) else "sample"
            root = exc
            while root.__cause__ is not None:
                root = root.__cause__
            raise ImageReadError(source, f"{type(root).__name__}: {root}") from exc


def build_transforms(image_size: int, *, modality: str = "auto", window: WindowSpec = None,
                     with_mask: bool = True, mean: Sequence[float] = CLIP_MEAN,
                     std: Sequence[float] = CLIP_STD, axis: int = 2, frame: int = 0,
                     keep_original: bool = True, crop_border: bool | None = None,
                     dicom_frame: str | int = "middle") -> Compose:
    """Build the dictionary pipeline from ``{"image": path, "mask": path|None, "slice_index": int|None}``.

    Args:
        image_size: model input side ``S``.
        modality: ``"auto"`` or one of :data:`MODALITIES`; ``"endoscopy"`` turns ``crop_border`` on
            (the window rules are per format, see :mod:`~adaptclip_med.data.transforms.intensity`).
        window: ``None`` (DICOM tags / 8-bit kept / percentiles), a preset name, ``(center, width)``,
            ``"percentile"``, ``("percentile", low, high)`` or ``"minmax"``.
        with_mask: load and resize ``"mask"`` when given.
        mean, std: normalisation (CLIP's by default).
        axis: NIfTI slicing axis (0 sagittal, 1 coronal, 2 axial in RAS).
        frame: time point of 4-D NIfTI volumes.
        dicom_frame: frame of a multi-frame DICOM read without ``slice_index``: ``"middle"``
            (default), ``"first"`` or a frame number (:mod:`~adaptclip_med.data.transforms.slicing`).
        keep_original: keep ``image_u8`` and ``original_size`` (set False to batch mixed sizes).
        crop_border: crop the black frame of endoscopy images (and masks); adds ``crop_box``.
            Default: on for ``modality="endoscopy"``, off otherwise.

    Returns:
        ``Compose`` giving ``{"image": (3, S, S) float32, "mask": (S, S) uint8 {0,1} (if given),
        "image_u8": (H0, W0, 3) uint8, "original_size": (H0, W0)}`` plus the input's other keys
        whose value is not ``None``.

    Raises:
        ValueError: unknown modality, window or frame rule.
    """
    if modality not in MODALITIES:
        msg = f"modality {modality!r} unknown; expected one of {', '.join(MODALITIES)}"
        raise ValueError(msg)
    resolve_window(window)
    keys = ["image", "mask"] if with_mask else ["image"]
    steps = [LoadMedicald(keys), SelectSliced(keys, axis=axis, frame=frame, dicom_frame=dicom_frame),
             ToUint8d("image", window=window)]
    if with_mask:
        steps.append(BinarizeMaskd("mask", ref_key="image"))
    if crop_border if crop_border is not None else modality == "endoscopy":
        steps.append(CropBorderd(keys))
    steps += [ToRGBd("image"), PillowResized("image", image_size), ClipNormalized("image", mean=mean, std=std)]
    if with_mask:
        steps.append(ResizeMaskd("mask", image_size))
    steps.append(Finalized(keep_original=keep_original))
    pipeline = MedicalCompose(steps)
    pipeline.modality = modality
    return pipeline
