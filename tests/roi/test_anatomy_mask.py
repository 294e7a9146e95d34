"""``adaptclip_med.roi``: the anatomy ROI on synthetic pictures and on real shared images.

Targets (issue 20, measured over all shared sets by benchmarks/roi.py, docs/roi.md): lesion coverage
≥ 99.9 %, background exclusion ≥ 95 %, enclosed holes ≤ 0.5 % of the ROI; here on a handful per modality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from adaptclip_med.roi import MODALITIES, anatomy_mask, anatomy_regions, detect_modality
from adaptclip_med.roi.morphology import border_connected, convex_hull
from adaptclip_med.roi.source import display_image
from adaptclip_med.runtime.errors import ImageReadError


def _background(picture: np.ndarray) -> np.ndarray:
    v = picture.max(axis=-1) if picture.ndim == 3 else picture
    return border_connected(v <= 5)


def _exclusion(picture: np.ndarray, roi: np.ndarray) -> tuple[int, int]:
    back = _background(picture)
    return int((back & ~roi).sum()), int(back.sum())


def _holes(roi: np.ndarray) -> int:
    return int((ndi.binary_fill_holes(roi) & ~roi).sum())


def _head(h: int = 300, w: int = 260, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grey head on a noisy black surround: skull ring, brain, a black ventricle; (picture, head, ventricle)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    r = ((y - h / 2) / (0.4 * h)) ** 2 + ((x - w / 2) / (0.38 * w)) ** 2
    head = r <= 1.0
    picture = np.clip(rng.normal(3, 1.5, (h, w)), 0, 255)
    picture[head] = 110 + rng.normal(0, 8, int(head.sum()))
    picture[(r > 0.8) & head] = 200  # skull
    ventricle = ((y - h / 2) / 22) ** 2 + ((x - w / 2) / 12) ** 2 <= 1.0
    picture[ventricle] = 0  # as dark as the background: a plain threshold leaves it out
    return np.clip(picture, 0, 255).astype(np.uint8), head, ventricle


def _endoscope(h: int = 360, w: int = 420, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A reddish octagonal field of view in a black frame with three specular spots; (picture, view, spots)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    cy, cx, half = h / 2, w / 2, 0.45 * min(h, w)
    view = (np.abs(y - cy) <= half) & (np.abs(x - cx) <= half * 1.1) & (np.abs(y - cy) + np.abs(x - cx) <= 1.4 * half)
    picture = np.zeros((h, w, 3), dtype=np.float64)
    shade = 150 + 40 * np.sin(x / 17.0) + rng.normal(0, 6, (h, w))
    picture[view] = np.stack([shade, 0.55 * shade, 0.45 * shade], -1)[view]
    lumen = ((y - cy) / 30) ** 2 + ((x - cx - 20) / 40) ** 2 <= 1.0
    picture[lumen] = (12, 6, 5)  # dark lumen, inside the view
    spots = np.zeros((h, w), dtype=bool)
    for sy, sx in ((cy - 60, cx - 50), (cy + 40, cx + 70), (cy - 20, cx + 90)):
        spot = ((y - sy) ** 2 + (x - sx) ** 2) <= 16
        picture[spot] = 250
        spots |= spot
    return np.clip(picture, 0, 255).astype(np.uint8), view, spots


# --------------------------------------------------------------------------------------------- synthetic


def test_head_keeps_its_dark_ventricle_and_drops_the_background() -> None:
    picture, head, ventricle = _head()
    roi = anatomy_mask(picture, "mri")
    assert roi.shape == picture.shape and roi.dtype == np.bool_
    assert roi[ventricle].all()  # enclosed dark tissue belongs to the anatomy
    assert roi[head].mean() >= 0.999
    out, total = _exclusion(picture, roi)
    assert out / total >= 0.95
    assert _holes(roi) <= 0.005 * roi.sum()
    assert detect_modality(picture) == "mri"
    assert anatomy_mask(picture).sum() == roi.sum()  # auto → mri


@pytest.mark.parametrize("shape", [(517, 389), (1201, 903), (64, 80)])
def test_mask_is_on_the_source_grid(shape: tuple[int, int]) -> None:
    picture, head, _ = _head(*shape)
    roi = anatomy_mask(picture, "ct")
    assert roi.shape == shape and roi.dtype == np.bool_
    assert roi[head].mean() >= 0.999


def test_non_uint8_arrays_get_the_display_mapping() -> None:
    picture, head, ventricle = _head()
    hu = picture.astype(np.int16) * 8 - 1000  # CT-like stored values
    roi = anatomy_mask(hu, "ct")
    assert roi[head].mean() >= 0.999 and roi[ventricle].all()


def test_endoscopy_field_of_view_and_specular_highlights() -> None:
    picture, view, spots = _endoscope()
    roi, ignore = anatomy_regions(picture, "endoscopy")
    assert roi.shape == ignore.shape == view.shape and roi.dtype == ignore.dtype == np.bool_
    assert roi[view].mean() >= 0.999  # the dark lumen included
    out, total = _exclusion(picture, roi)
    assert out / total >= 0.95
    assert _holes(roi) == 0
    assert ignore[spots].mean() >= 0.95 and not (ignore & ~roi).any()
    assert detect_modality(picture) == "endoscopy"


def test_blank_picture_is_a_one_line_error() -> None:
    with pytest.raises(ImageReadError, match="blank picture") as info:
        anatomy_mask(np.zeros((64, 64), dtype=np.uint8))
    assert "\n" not in str(info.value)


def test_unknown_modality_and_non_picture_arrays() -> None:
    picture, _, _ = _head()
    with pytest.raises(ValueError, match="modality 'pet' unknown"):
        anatomy_mask(picture, "pet")
    with pytest.raises(ImageReadError, match="2-D picture"):
        anatomy_mask(np.zeros((4, 32, 32), dtype=np.uint8))
    assert set(MODALITIES) == {"auto", "mri", "ct", "xray", "endoscopy"}


def test_convex_hull_contains_the_mask() -> None:
    mask = np.zeros((50, 60), dtype=bool)
    mask[5:15, 5:20] = mask[30:45, 35:55] = True
    hull = convex_hull(mask)
    assert (hull >= mask).all() and hull[20, 30]  # the gap between the two blocks is in the hull


# ----------------------------------------------------------------------------------------- real images


def _pooled(items: list[tuple[Path, Path | None]], modality: str = "auto") -> dict[str, float]:
    lesion = inside = bg = bg_out = holes = roi_px = 0
    for image, mask in items:
        picture, _, _ = display_image(image)
        roi = anatomy_mask(image, modality)
        assert roi.shape == picture.shape[:2] and roi.dtype == np.bool_
        out, total = _exclusion(picture, roi)
        bg_out, bg = bg_out + out, bg + total
        holes, roi_px = holes + _holes(roi), roi_px + int(roi.sum())
        if mask is not None:
            gt = np.asarray(Image.open(mask).convert("L")) > 127
            lesion, inside = lesion + int(gt.sum()), inside + int((gt & roi).sum())
    return {"coverage": inside / lesion if lesion else 1.0, "exclusion": bg_out / bg if bg else 1.0,
            "holes": holes / roi_px}


def _assert_targets(figures: dict[str, float]) -> None:
    assert figures["coverage"] >= 0.999, figures
    assert figures["exclusion"] >= 0.95, figures
    assert figures["holes"] <= 0.005, figures


@pytest.mark.shared
def test_brain_mri_with_derived_masks(shared_datasets: Path) -> None:
    masks = sorted((shared_datasets / "brain_mri_masks_derived" / "yes").glob("*.png"))[:8]
    items = [(shared_datasets / "brain_mri" / "yes" / m.name.removesuffix(".png"), m) for m in masks]
    items += [(p, None) for p in sorted((shared_datasets / "br35h" / "no").iterdir())[:4]]
    _assert_targets(_pooled(items))


@pytest.mark.shared
def test_kvasir_polyps_inside_the_field_of_view(shared_datasets: Path) -> None:
    root = shared_datasets / "kvasir_seg" / "Kvasir-SEG"
    items = [(p, root / "masks" / p.name) for p in sorted((root / "images").glob("*.jpg"))[:8]]
    _assert_targets(_pooled(items))
    crops = sorted((shared_datasets / "endo_normal_prompts" / "images").glob("*.jpg"))[:3]
    for crop in crops:  # crops without a border: the whole picture
        assert anatomy_mask(crop).mean() >= 0.99


@pytest.mark.shared
def test_chest_xray_lung_fields(shared_datasets: Path) -> None:
    root = shared_datasets / "covid19" / "COVID-19 Radiography Database"
    paths = sorted((root / "NORMAL").iterdir())[:3] + sorted((root / "COVID-19").iterdir())[:3]
    _assert_targets(_pooled([(p, None) for p in paths], "xray"))
    picture, _, _ = display_image(paths[0])
    assert detect_modality(picture) == "xray"
    share = anatomy_mask(paths[0]).mean()
    assert 0.06 <= share <= 0.9


@pytest.mark.shared
def test_dicom_and_nifti_in_place(shared_datasets: Path) -> None:
    dicom = shared_datasets / "dicom_nifti" / "dicom"
    for name, expected in (("MR_small.dcm", "mri"), ("CT_small.dcm", "ct")):
        picture, tag, _ = display_image(dicom / name)
        assert detect_modality(picture, tag) == expected
        roi = anatomy_mask(dicom / name)
        assert roi.shape == picture.shape[:2] and 0.05 < roi.mean() <= 1.0
    nifti = shared_datasets / "dicom_nifti" / "nifti" / "anatomical.nii"
    picture, tag, _ = display_image(nifti)
    assert tag is None
    _assert_targets(_pooled([(nifti, None)]))
