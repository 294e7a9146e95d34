"""``adaptclip_med.save_overlay``: one call from a prediction to a PNG, from paths, arrays and tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from adaptclip_med import save_overlay
from adaptclip_med.data import build_transforms
from adaptclip_med.data.transforms.clip_input import PillowResize
from adaptclip_med.reporting.overlay_file import picture_u8


def test_from_a_dicom_path_draws_the_windowed_picture(tiny_model, tmp_path: Path) -> None:
    path = get_testdata_file("CT_small.dcm")
    out = tiny_model.predict(tiny_model.preprocess(path)[None])
    png = save_overlay(path, out, tmp_path / "a" / "overlay.png", model=tiny_model, threshold=0.5)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 600
    expected = build_transforms(tiny_model.image_size, with_mask=False)({"image": path})["image_u8"]
    np.testing.assert_array_equal(picture_u8(path, tiny_model.image_size), expected)


def test_from_tensors_and_arrays(tiny_model, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    x = torch.stack([tiny_model.preprocess(picture), tiny_model.preprocess(picture[::-1].copy())])
    out = tiny_model.predict(x)
    assert save_overlay(x[1], out, tmp_path / "t.png", index=1).is_file()  # the tensor given to predict
    assert save_overlay(picture, out.anomaly_map[0].numpy(), tmp_path / "n.png").is_file()  # array + map array
    resized = PillowResize(tiny_model.image_size)(picture)
    assert np.abs(picture_u8(x[0], tiny_model.image_size).astype(int) - resized.astype(int)).max() <= 1
