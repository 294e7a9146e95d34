"""The authors' pixel rules, as MONAI-shaped array and dictionary transforms: a leaf module.

Images: AdaptCLIP resizes the **8-bit** image with Pillow's bicubic filter (which antialiases when it
shrinks) straight to ``S×S`` (aspect ratio not kept), then applies the CLIP mean/std. Tensor bicubic
(torch, MONAI ``Resize``) gives slightly different pixels, so this one step is ours (spec §1).

Masks (:func:`binarize_mask`, :func:`resize_mask`; the one mask rule of prediction, evaluation and
training): foreground is any value > 0 (> 127 for JPEG masks, lossy); the 0/255 mask is resized with
Pillow's bilinear filter (antialiased when it shrinks) and thresholded at > 0.5 of 255 (spec §5: "resized
to 518, > 0.5").

This module reads no files and imports nothing of :mod:`adaptclip_med.data`; ``data`` builds its
readers and transforms on it, and ``model.preprocess(path)`` reads paths through ``data``.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from PIL import Image

from adaptclip_med.runtime.errors import ImageReadError

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def to_rgb_uint8(image: Image.Image | np.ndarray, *, source: str = "image") -> np.ndarray:
    """Return an ``(H, W, 3)`` uint8 array from a PIL image or an 8-bit array.

    Grey ``(H, W)`` or ``(H, W, 1)`` is copied to three channels; RGBA drops alpha. Channel-first
    ``(3, H, W)``/``(1, H, W)`` arrays are accepted too.

    Raises:
        ImageReadError: wrong channel count, a non-8-bit dtype, or NaN/inf values.
    """
    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB"):
            if image.mode in ("I", "I;16", "I;16B", "F"):
                msg = f"{image.mode}-mode (16-bit/float) image"
                raise ImageReadError(source, msg, "window it to 8 bit first (adaptclip_med.data transforms)")
            image = image.convert("RGB")
        array = np.asarray(image)
    else:
        array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        msg = f"got an array of shape {tuple(array.shape)}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
        raise ImageReadError(source, msg, "pass a 2-D grey or an RGB image")
    if array.dtype != np.uint8:
        if not np.all(np.isfinite(array)):
            raise ImageReadError(source, "contains NaN or inf pixels", "clean or window the image first")
        if array.min() < 0 or array.max() > 255 or np.issubdtype(array.dtype, np.floating):
            msg = f"got dtype {array.dtype} with range [{array.min()}, {array.max()}]; expected uint8"
            raise ImageReadError(source, msg, "window/normalise to 8 bit first (adaptclip_med.data)")
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


class PillowResize(Transform):
    """Squash an 8-bit RGB image to ``size×size`` with Pillow bicubic, as the authors do.

    Input: ``(H, W, 3)`` / ``(H, W)`` uint8 array or PIL image. Output: ``(size, size, 3)`` uint8.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, image: Image.Image | np.ndarray) -> np.ndarray:
        rgb = to_rgb_uint8(image)
        if rgb.shape[:2] == (self.size, self.size):
            return rgb
        resized = Image.fromarray(rgb, mode="RGB").resize((self.size, self.size), Image.BICUBIC)
        return np.asarray(resized.convert("RGB"))


class ClipNormalize(Transform):
    """``(H, W, 3)`` uint8 → ``(3, H, W)`` float32 tensor: ``(u8 / 255 − mean) / std``.

    The float32 order of operations matches torchvision's ``ToTensor`` + ``Normalize``, so the result
    is bit-identical to the authors' tensors.
    """

    def __init__(self, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        array = np.asarray(image)
        array = array if array.flags.writeable and array.flags.c_contiguous else array.copy()
        tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous().float()
        return tensor.div_(255.0).sub_(self.mean).div_(self.std)


class PillowResized(MapTransform):
    """Dictionary version of :class:`PillowResize`."""

    def __init__(self, keys: KeysCollection, size: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.resizer = PillowResize(size)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = self.resizer(out[key])
        return out


class ClipNormalized(MapTransform):
    """Dictionary version of :class:`ClipNormalize`."""

    def __init__(
        self,
        keys: KeysCollection,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = ClipNormalize(mean, std)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        out = dict(data)
        for key in self.key_iterator(out):
            out[key] = self.normalizer(out[key])
        return out


def preprocess_image(
    image: Image.Image | np.ndarray,
    size: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> torch.Tensor:
    """PIL image or 8-bit array → ``(3, size, size)`` CLIP-normalised float32 tensor.

    Files are read by :func:`adaptclip_med.data.image_tensor` (or ``model.preprocess(path)``), which
    ends in this same resize and normalisation.

    Raises:
        TypeError: a path was given.
        ImageReadError: wrong shape, dtype or NaN/inf (see :func:`to_rgb_uint8`).
    """
    if isinstance(image, (str, os.PathLike)):
        msg = (f"got the path {os.fspath(image)!r}; preprocess_image takes a PIL image or an 8-bit array. "
               "Read files with model.preprocess(path) or adaptclip_med.data.image_tensor(path, size)")
        raise TypeError(msg)
    return ClipNormalize(mean, std)(PillowResize(size)(to_rgb_uint8(image)))


#: Mask files whose compression is lossy: their foreground is taken above 127, not above 0.
LOSSY_MASK_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg")
#: The mask resize rule, as recorded in caches and run settings.
MASK_RULE = "pillow-bilinear>0.5"


def mask_threshold(path: str | os.PathLike[str]) -> int:
    """Foreground threshold of a mask file: 127 for JPEG (lossy edges), else 0."""
    return 127 if os.fspath(path).lower().endswith(LOSSY_MASK_SUFFIXES) else 0


def binarize_mask(mask: np.ndarray, threshold: int = 0) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` mask → ``(H, W)`` uint8 {0, 1}: any channel's value > ``threshold``."""
    array = np.asarray(mask)
    array = array.max(axis=-1) if array.ndim == 3 else array
    return (array > threshold).astype(np.uint8)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """``(H, W)`` {0, 1} mask → ``(size, size)`` uint8 {0, 1}: Pillow bilinear on 0/255, then > 0.5.

    Shrinking, Pillow's bilinear filter averages over the footprint of each output pixel, so a pixel is
    foreground when more than half of what it covers is; enlarging, the boundary is interpolated.
    """
    binary = Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255)
    resized = np.asarray(binary.resize((int(size), int(size)), Image.Resampling.BILINEAR), dtype=np.float32)
    return (resized / 255.0 > 0.5).astype(np.uint8)
