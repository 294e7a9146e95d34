"""One file through the one pixel path: an image to the model tensor, a mask to the model resolution.

``model.preprocess(path)`` (prediction), training's feature and mask readers and evaluation all end
in :func:`~adaptclip_med.data.build_transforms`' steps: the content-detected reader, the slice / frame
rule, the 8-bit display mapping, the authors' Pillow squash and CLIP normalisation for images, and
:func:`adaptclip_med.data.transforms.clip_input.binarize_mask` +
:func:`~adaptclip_med.data.transforms.clip_input.resize_mask` for masks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from monai.transforms import Compose

from adaptclip_med.data.readers.load import LoadMedicald
from adaptclip_med.data.transforms.clip_input import CLIP_MEAN, CLIP_STD, preprocess_image
from adaptclip_med.data.transforms.pipeline import BinarizeMaskd, MedicalCompose, ResizeMaskd, build_transforms
from adaptclip_med.data.transforms.slicing import SelectSliced
from adaptclip_med.runtime.errors import ImageReadError


@lru_cache(maxsize=4)
def _image_pipeline(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Compose:
    return build_transforms(size, with_mask=False, mean=mean, std=std, keep_original=False)


@lru_cache(maxsize=4)
def _mask_pipeline(size: int) -> Compose:
    return MedicalCompose([LoadMedicald("mask"), SelectSliced("mask"), BinarizeMaskd("mask", ref_key=None),
                           ResizeMaskd("mask", size)])


def image_tensor(path: str | os.PathLike[str], size: int, mean: Sequence[float] = CLIP_MEAN,
                 std: Sequence[float] = CLIP_STD, slice_index: int | None = None) -> torch.Tensor:
    """Any supported image file (PNG/JPEG/TIFF/DICOM/NIfTI, default slice or ``slice_index``) →
    ``(3, size, size)`` float32, exactly as :func:`build_transforms` gives it (default window).

    Raises:
        ImageReadError: unreadable or unusable file (one line naming it).
    """
    pipeline = _image_pipeline(int(size), tuple(float(m) for m in mean), tuple(float(s) for s in std))
    return pipeline({"image": os.fspath(path), "slice_index": slice_index})["image"]


def load_mask(path: str | os.PathLike[str], size: int, slice_index: int | None = None) -> np.ndarray:
    """A mask file → ``(size, size)`` uint8 {0, 1} by the one mask rule (any value > 0, > 127 for JPEG;
    Pillow bilinear on 0/255, > 0.5); RGB masks: any channel.

    Raises:
        ImageReadError: "cannot be read as a mask: <problem>", naming the file.
    """
    try:
        out = _mask_pipeline(int(size))({"mask": os.fspath(path), "slice_index": slice_index})
    except ImageReadError as exc:
        raise ImageReadError(exc.path, f"cannot be read as a mask: {exc.problem}", exc.fix) from exc
    return np.asarray(out["mask"], dtype=np.uint8)


class ModelInput:
    """The model's preprocessing: an image path, PIL image or 8-bit array → ``(3, S, S)`` float32.

    Paths go through :func:`image_tensor` (the evaluation and training path); in-memory pictures through
    :func:`~adaptclip_med.data.transforms.clip_input.preprocess_image` (the same squash and normalisation).
    :func:`adaptclip_med.load_model` sets one as ``model.preprocessor``.
    """

    def __init__(self, size: int, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> None:
        self.size, self.mean, self.std = int(size), tuple(mean), tuple(std)

    def __call__(self, image: object) -> torch.Tensor:
        if isinstance(image, (str, os.PathLike)):
            return image_tensor(image, self.size, self.mean, self.std)
        return preprocess_image(image, self.size, self.mean, self.std)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"ModelInput(size={self.size})"
