"""An image (path or array) → the 8-bit display picture the model sees, on the source grid.

Paths go through the data package's one pixel path: the content-detected reader, the default slice /
frame rule and the 8-bit display mapping (VOI LUT / window tags / percentiles, MONOCHROME1 inverted) —
the same steps as :func:`adaptclip_med.data.build_transforms` before its resize. Arrays are taken as the
readers return one 2-D picture: ``(H, W)`` grey or ``(H, W, 3|4)`` colour, any dtype.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from adaptclip_med.data.readers.load import LoadMedicald
from adaptclip_med.data.transforms.display import ToUint8d
from adaptclip_med.data.transforms.pipeline import MedicalCompose
from adaptclip_med.data.transforms.slicing import SelectSliced
from adaptclip_med.runtime.errors import ImageReadError

ImageLike = str | os.PathLike[str] | np.ndarray


@lru_cache(maxsize=1)
def _reader() -> MedicalCompose:
    return MedicalCompose([LoadMedicald("image"), SelectSliced("image"), ToUint8d("image")])


def display_image(image: ImageLike, slice_index: int | None = None) -> tuple[np.ndarray, str | None, str]:
    """``(picture, dicom_modality, source)``: ``picture`` is ``(H, W)`` or ``(H, W, 3)`` uint8.

    ``dicom_modality`` is the DICOM ``Modality`` tag (``"MR"``, ``"CT"``, ``"CR"``, ...) of a DICOM path,
    else ``None``; ``source`` names the image in messages.

    Raises:
        ImageReadError: unreadable file, or an array that is not one 2-D picture.
    """
    if isinstance(image, (str, os.PathLike)):
        source = os.fspath(image)
        out = _reader()({"image": source, "slice_index": slice_index})
        meta = out.get("image_meta", {})
        modality = meta.get("dicom", {}).get("Modality") if meta.get("format") == "dicom" else None
        return _as_picture(np.asarray(out["image"]), source), (str(modality) if modality else None), source
    array = np.asarray(image)
    source = f"array {array.shape} {array.dtype}"
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3]
    elif array.ndim != 2:
        raise ImageReadError(source, "expected one 2-D picture, (H, W) or (H, W, 3)",
                             "pass a path, or select a slice / frame first")
    if array.dtype != np.uint8:
        array = ToUint8d("image").convert(array, {"path": source, "bits": 8})
    return _as_picture(array, source), None, source


def _as_picture(array: np.ndarray, source: str) -> np.ndarray:
    if array.ndim == 3:
        array = array[..., :3]
        if array.shape[-1] == 1:
            array = array[..., 0]
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 2:
        raise ImageReadError(source, f"not a 2-D picture (shape {array.shape})")
    return np.ascontiguousarray(array, dtype=np.uint8)


def mask_stem(path: str) -> str:
    """A file name without its image suffix (``.nii.gz``, ``.nii``, ``.dcm`` or the last one): masks match by it."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def user_mask(folder: str, path: str, slice_index: int | None, shape: tuple[int, int]) -> np.ndarray:
    """The user's ROI of ``path``: ``folder/<stem>.*`` (the same slice for a volume), non-zero = inside.

    Raises:
        ImageReadError: no mask of that stem, or one of another size.
    """
    stem = mask_stem(path)
    found = sorted(p for p in Path(folder).iterdir() if p.is_file() and mask_stem(str(p)) == stem)
    if not found:
        raise ImageReadError(path, f"no ROI mask named {stem}.* in the --roi folder")
    mask = display_image(found[0], slice_index)[0]
    mask = (mask.max(axis=-1) if mask.ndim == 3 else mask) > 0
    if mask.shape != tuple(shape):
        raise ImageReadError(path, f"ROI mask {found[0].name} is {mask.shape[1]}x{mask.shape[0]}, the image "
                                   f"{shape[1]}x{shape[0]}")
    return mask
