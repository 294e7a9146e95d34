"""Pillow image modes → the few modes that become plain arrays (shared by the PNG/JPEG and TIFF paths)."""

from __future__ import annotations

from PIL import Image


def pil_converter(image: Image.Image) -> Image.Image:
    """Bring a Pillow image to a mode that becomes a plain array, explicitly per mode.

    L, RGB, I, F: kept. ``1`` → L (0/255). LA → L and RGBA / PA → RGB (alpha dropped, not composited,
    as the authors' ``convert("RGB")``). P → RGB through its palette. CMYK, YCbCr, LAB, HSV → RGB.
    ``I;16*`` → I (values kept; windowed later).
    """
    mode = image.mode
    if mode in ("L", "RGB", "I", "F"):
        return image
    if mode.startswith("I;16") or mode == "I;32":
        return image.convert("I")
    if mode in ("1", "LA", "La"):
        return image.convert("L")
    return image.convert("RGB")
