"""build_transforms on 2-D images: shapes, exactness, grey → RGB, masks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adaptclip_med.data import build_transforms
from adaptclip_med.data.transforms.clip_input import ClipNormalize, PillowResize
from adaptclip_med.runtime.errors import ImageReadError


def test_rgb_png_matches_the_authors_preprocessing_bit_exactly(tmp_path, png_writer):
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    path = png_writer(tmp_path / "a.png", rgb)
    out = build_transforms(64)({"image": str(path)})
    expected = ClipNormalize()(PillowResize(64)(rgb))
    assert out["image"].shape == (3, 64, 64) and out["image"].dtype == torch.float32
    assert torch.equal(out["image"], expected)
    assert out["original_size"] == (50, 70)
    assert np.array_equal(out["image_u8"], rgb)
    assert "mask" not in out


def test_non_square_png_is_not_transposed(tmp_path, png_writer):
    grey = np.zeros((40, 100), dtype=np.uint8)
    grey[:10, :] = 255  # a bright band at the top
    out = build_transforms(32)({"image": str(png_writer(tmp_path / "g.png", grey))})
    u8 = out["image_u8"]
    assert u8.shape == (40, 100, 3)
    assert u8[0, 50].tolist() == [255, 255, 255] and u8[39, 50].tolist() == [0, 0, 0]


def test_grey_is_repeated_on_three_channels(tmp_path, png_writer):
    grey = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)
    out = build_transforms(64)({"image": str(png_writer(tmp_path / "g.png", grey))})
    assert np.array_equal(out["image_u8"][..., 0], grey)
    assert np.array_equal(out["image_u8"][..., 1], grey) and np.array_equal(out["image_u8"][..., 2], grey)


def test_16bit_png_is_windowed_with_percentiles(tmp_path, png_writer):
    ramp = np.tile(np.linspace(0, 60000, 200).astype(np.uint16), (40, 1))  # 5:1, under the 8:1 limit
    out = build_transforms(32)({"image": str(png_writer(tmp_path / "r.png", ramp))})
    row = out["image_u8"][0, :, 0]
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row.astype(int)) >= 0)
    explicit = build_transforms(32, window="minmax")({"image": str(tmp_path / "r.png")})
    assert explicit["image_u8"][0, 100, 0] == pytest.approx(128, abs=1)


def test_mask_is_binarised_and_resized_by_the_one_mask_rule(tmp_path, png_writer):
    img = png_writer(tmp_path / "i.png", np.full((40, 60), 100, np.uint8))
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 20:40] = 1  # value 1: any value > 0 is foreground
    out = build_transforms(20)({"image": str(img), "mask": str(png_writer(tmp_path / "m.png", mask))})
    assert out["mask"].dtype == torch.uint8 and out["mask"].shape == (20, 20)
    assert set(out["mask"].unique().tolist()) == {0, 1}
    assert out["mask"].sum().item() == pytest.approx(20 * 20 * (20 * 20) / (40 * 60), rel=0.15)
    # the authors' rule (spec §5), the same in training: Pillow bilinear on 0/255, then > 0.5
    from PIL import Image

    from adaptclip_med.data import load_mask
    from adaptclip_med.training.features import load_mask as training_mask

    ref = np.asarray(Image.fromarray(mask * 255).resize((20, 20), Image.Resampling.BILINEAR)) / 255 > 0.5
    assert np.array_equal(out["mask"].numpy(), ref.astype(np.uint8))
    assert np.array_equal(load_mask(tmp_path / "m.png", 20), ref) and training_mask is load_mask
    # a one-pixel-wide line survives only where it covers more than half of an output pixel
    thin = np.zeros((40, 60), np.uint8)
    thin[:, 30] = 1
    assert load_mask(png_writer(tmp_path / "thin.png", thin), 20).sum() == 0


def test_jpeg_masks_use_a_127_threshold(tmp_path):
    from PIL import Image

    img = tmp_path / "i.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(img)
    mask = np.full((32, 32), 40, np.uint8)  # JPEG noise level, not foreground
    mask[:, 16:] = 250
    Image.fromarray(mask).save(tmp_path / "m.jpg", quality=95)
    out = build_transforms(32)({"image": str(img), "mask": str(tmp_path / "m.jpg")})
    assert out["mask"][:, :14].sum() == 0 and out["mask"][:, 18:].all()


def test_mask_of_another_size_names_the_mask(tmp_path, png_writer):
    img = png_writer(tmp_path / "i.png", np.zeros((40, 60), np.uint8))
    mask = png_writer(tmp_path / "m.png", np.zeros((41, 60), np.uint8))
    with pytest.raises(ImageReadError, match=r"m\.png.*41x60.*40x60"):
        build_transforms(32)({"image": str(img), "mask": str(mask)})


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n garbage"])
def test_empty_or_corrupt_png_names_the_file(tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(ImageReadError, match=r"bad\.png"):
        build_transforms(32)({"image": str(bad)})


def test_unsupported_suffix_and_bad_window(tmp_path):
    odd = tmp_path / "x.xyz"
    odd.write_bytes(b"hello")
    with pytest.raises(ImageReadError, match=r"x\.xyz.*unsupported"):
        build_transforms(32)({"image": str(odd)})
    with pytest.raises(ValueError, match="brain"):
        build_transforms(32, window="kidney")
    with pytest.raises(ValueError, match="modality"):
        build_transforms(32, modality="pet")


def test_dataloader_collates_samples(synth_png):
    from monai.data import DataLoader, Dataset

    from adaptclip_med.data import load_dataset

    index = load_dataset("folder", synth_png, holdout=0)
    abnormal = [r.as_dict() for r in index.records if r.label == 1]
    loader = DataLoader(Dataset(abnormal, build_transforms(48)), batch_size=3, num_workers=0)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 3, 48, 48) and batch["mask"].shape == (3, 48, 48)


def test_16bit_tiff_and_float_tiff(tmp_path):
    from PIL import Image

    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (16, 1))  # 12-bit data in 16-bit
    Image.fromarray(ramp).save(tmp_path / "x.tif")
    out = build_transforms(32, window="minmax")({"image": str(tmp_path / "x.tif")})
    assert out["image_u8"][0, 0, 0] == 0 and out["image_u8"][0, -1, 0] == 255
    Image.fromarray(ramp.astype(np.float32) / 10).save(tmp_path / "f.tif")
    out = build_transforms(32, window=(204.75, 409.5))({"image": str(tmp_path / "f.tif")})
    assert out["image_u8"][0, 32, 0] == pytest.approx(130, abs=2)


def test_endoscopy_black_border_is_cropped_from_image_and_mask(tmp_path, png_writer):
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[5:55, 12:70] = (180, 90, 80)  # content inside a black frame
    mask = np.zeros((60, 80), np.uint8)
    mask[20:30, 30:40] = 255
    sample = {"image": str(png_writer(tmp_path / "e.png", frame)), "mask": str(png_writer(tmp_path / "m.png", mask))}
    out = build_transforms(50, modality="endoscopy")(sample)
    assert out["crop_box"] == (5, 55, 12, 70) and out["original_size"] == (50, 58)
    assert out["image_u8"].min() == 80
    assert out["mask"].sum().item() == pytest.approx(50 * 50 * 100 / (50 * 58), rel=0.1)
    assert "crop_box" not in build_transforms(50)(sample)


def test_model_preprocess_path_equals_the_evaluation_pipeline(tmp_path, png_writer):
    """Prediction reads a path through the evaluation transforms; arrays take the same last steps."""
    import ast
    from pathlib import Path

    import adaptclip_med.data.transforms.clip_input as pre
    from adaptclip_med.data import image_tensor

    rgb = np.random.default_rng(3).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    path = png_writer(tmp_path / "p.png", rgb)
    via_pipeline = build_transforms(32)({"image": str(path)})["image"]
    assert torch.equal(image_tensor(path, 32), via_pipeline)
    assert torch.equal(pre.preprocess_image(rgb, 32), via_pipeline)
    with pytest.raises(TypeError, match=r"model\.preprocess"):
        pre.preprocess_image(str(path), 32)
    tree = ast.parse(Path(pre.__file__).read_text())  # preprocess is a leaf: it never imports data
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.startswith(("data", "adaptclip_med.data"))]
