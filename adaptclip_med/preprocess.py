"""The authors' test-time preprocessing, as MONAI-shaped array and dictionary transforms.

AdaptCLIP resizes the **8-bit** image with Pillow's bicubic filter (which antialiases when it shrinks)
straight to ``S×S`` (aspect ratio not kept), then applies the CLIP mean/std. Tensor bicubic (torch,
MONAI ``Resize``) gives slightly different pixels, so this one step is ours (spec §1). Medical pipelines
window/normalise to 8 bit *before* this step (see :mod:`adaptclip_med.data`).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from PIL import Image, UnidentifiedImageError

from .errors import ImageReadError

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
PICTURE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


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


def read_image_u8(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an 8-bit PNG/JPEG/BMP/TIFF into an ``(H, W, 3)`` uint8 array (grey repeated to 3 channels).

    Raises:
        ImageReadError: missing, empty or unreadable file, or a 16-bit/float image (window it first
            with :func:`adaptclip_med.data.build_transforms`, which also reads DICOM and NIfTI).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "file does not exist", "check the path")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)", "re-export or remove it")
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb_uint8(img, source=str(path))
    except UnidentifiedImageError as exc:
        fix = "for DICOM/NIfTI use adaptclip_med.data.build_transforms; otherwise convert to PNG"
        raise ImageReadError(path, "not an image Pillow can read", fix) from exc
    except OSError as exc:
        raise ImageReadError(path, f"unreadable ({exc})", "re-export the file") from exc


def preprocess_image(
    image: Image.Image | np.ndarray | str | os.PathLike[str],
    size: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> torch.Tensor:
    """PIL image, 8-bit array or path → ``(3, size, size)`` CLIP-normalised float32 tensor.

    8-bit PNG/JPEG files are read here; DICOM, NIfTI (middle slice), 16-bit and float images go
    through :func:`adaptclip_med.data.build_transforms` (MONAI readers and intensity windowing).
    """
    if isinstance(image, (str, os.PathLike)):
        if not _is_8bit_picture(Path(image)):
            from .data import build_transforms

            pipeline = build_transforms(size, with_mask=False, mean=mean, std=std)
            return pipeline({"image": str(image)})["image"]
        rgb = read_image_u8(image)
    else:
        rgb = to_rgb_uint8(image)
    return ClipNormalize(mean, std)(PillowResize(size)(rgb))


def _is_8bit_picture(path: Path) -> bool:
    """True for files Pillow reads as 8-bit L/RGB/RGBA/P pictures (missing/empty files: True, to report them)."""
    if not path.is_file() or path.stat().st_size == 0:
        return True
    try:
        with Image.open(path) as img:
            return img.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr")
    except (UnidentifiedImageError, OSError):
        return path.suffix.lower() in PICTURE_SUFFIXES  # a broken PNG is reported by read_image_u8
