"""Inference API: outputs, batching, prompt banks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from adaptclip_med.runtime.errors import ImageReadError


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def prompts() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def test_zero_shot_outputs(tiny_model, images):
    out = tiny_model.predict(images)
    assert out.anomaly_map.shape == (3, 224, 224) and out.pred_score.shape == (3,)
    assert set(out.maps) == {"va", "ta", "pre_blur"} and set(out.scores) == {"va", "ta", "map_max"}
    assert bool(((out.pred_score > 0) & (out.pred_score < 1)).all())
    assert out.shots == 0 and len(out) == 3


def test_few_shot_outputs_and_bank_reuse(tiny_model, images, prompts):
    bank = tiny_model.fit_prompts(prompts)
    assert bank.shots == 2 and [tuple(p.shape) for p in bank.patches] == [(1, 2 * 256, 64)] * 4
    out = tiny_model.predict(images, prompts=bank)
    assert set(out.maps) == {"va", "ta", "pqa", "align", "pre_blur"}
    assert set(out.scores) == {"va", "ta", "pqa", "image_prob_mean", "map_max"}
    again = tiny_model.predict(images, prompts=prompts)
    assert torch.equal(out.anomaly_map, again.anomaly_map)
    zero = tiny_model.predict(images)
    assert torch.equal(zero.maps["va"], out.maps["va"])  # the VA/TA branches ignore prompts
    assert not torch.allclose(zero.anomaly_map, out.anomaly_map)


def test_text_adapter_edits_through_data_copy_change_the_ta_output(images):
    from adaptclip_med import load_model

    model = load_model(backbone="adaptclip-tiny", pretrained=None, image_size=224, allow_random_backbone=True)
    before = model.predict(images[:1]).scores["ta"]
    edited = torch.randn(model.text_adapter.ctx.shape, generator=torch.Generator().manual_seed(5))
    version = model.text_adapter.ctx._version
    model.text_adapter.ctx.data.copy_(edited)  # bypasses the parameter's version counter
    assert model.text_adapter.ctx._version == version
    after = model.predict(images[:1]).scores["ta"]
    fresh = load_model(backbone="adaptclip-tiny", pretrained=None, image_size=224, allow_random_backbone=True)
    fresh.load_state_dict({"text_adapter.ctx": edited}, strict=False)
    assert not torch.allclose(before, after)
    assert torch.equal(after, fresh.predict(images[:1]).scores["ta"])


def test_batching_does_not_change_results(tiny_model, images, prompts):
    bank = tiny_model.fit_prompts(prompts)
    whole = tiny_model.predict(images, prompts=bank, batch_size=8)
    single = tiny_model.predict(images, prompts=bank, batch_size=1)
    assert torch.allclose(whole.anomaly_map, single.anomaly_map, atol=1e-5)
    assert torch.allclose(whole.pred_score, single.pred_score, atol=1e-5)


def test_prediction_is_deterministic(tiny_model, images):
    assert torch.equal(tiny_model.predict(images).anomaly_map, tiny_model.predict(images).anomaly_map)


def test_single_image_without_batch_dim(tiny_model, images):
    assert tiny_model.predict(images[0]).anomaly_map.shape == (1, 224, 224)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.randn(1, 1, 224, 224), "expected 3"),
        (torch.randn(1, 3, 224, 196), "square"),
        (torch.randn(1, 3, 28, 28), "at least"),
        (torch.randn(1, 3, 230, 230), "multiple of the patch size"),
        (torch.full((1, 3, 224, 224), float("nan")), "NaN"),
        (torch.zeros(0, 3, 224, 224), "empty batch"),
        (torch.zeros(1, 3, 224, 224, dtype=torch.uint8), "float"),
    ],
)
def test_bad_images_raise_value_errors(tiny_model, bad, match):
    with pytest.raises(ValueError, match=match):
        tiny_model.predict(bad)


def test_bad_prompts(tiny_model, images):
    with pytest.raises(ValueError, match="0 prompt images"):
        tiny_model.predict(images, prompts=torch.zeros(0, 3, 224, 224))
    bank = tiny_model.fit_prompts(torch.randn(1, 3, 336, 336))
    with pytest.raises(ValueError, match="336 px but the queries are 224"):
        tiny_model.predict(images, prompts=bank)
    with pytest.raises(ValueError, match="inf"):
        tiny_model.predict(images, prompts=torch.full((1, 3, 224, 224), float("inf")))


def test_preprocess_accepts_pil_array_and_path(tiny_model, tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (300, 200), dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(grey).save(path)
    from_path = tiny_model.preprocess(path)
    from_array = tiny_model.preprocess(grey)
    from_pil = tiny_model.preprocess(Image.fromarray(grey).convert("RGB"))
    assert from_path.shape == (3, 224, 224)
    assert torch.equal(from_path, from_array) and torch.equal(from_array, from_pil)
    from adaptclip_med.data.transforms.clip_input import CLIP_MEAN, CLIP_STD

    pixels = from_path * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)
    assert torch.allclose(pixels[0], pixels[1], atol=1e-6)  # grey is repeated to 3 channels
    assert torch.allclose(pixels[1], pixels[2], atol=1e-6)


def test_preprocess_rejects_bad_files_and_arrays(tiny_model, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png: file is empty"):
        tiny_model.preprocess(empty)
    junk = tmp_path / "scan.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match=r"scan\.png: not a PNG/JPEG/BMP/TIFF file: its content is text"):
        tiny_model.preprocess(junk)
    with pytest.raises(ImageReadError, match="window it to 8 bit"):
        tiny_model.preprocess(Image.fromarray(np.full((32, 32), 4000, dtype=np.uint16)))
    with pytest.raises(ImageReadError, match="float32"):
        tiny_model.preprocess(np.random.default_rng(0).random((32, 32), dtype=np.float32))
    with pytest.raises(ImageReadError, match="shape"):
        tiny_model.preprocess(np.zeros((4, 32, 32, 3), dtype=np.uint8))


def test_preprocess_reads_dicom_and_16bit_through_monai(tiny_model, tmp_path):
    from pydicom.data import get_testdata_file

    ct = tiny_model.preprocess(get_testdata_file("CT_small.dcm"))
    assert ct.shape == (3, 224, 224) and torch.isfinite(ct).all() and ct.std() > 0.1
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    sixteen = tiny_model.preprocess(tmp_path / "ramp16.png")
    assert sixteen.shape == (3, 224, 224) and sixteen.std() > 0.1  # windowed, not clipped to white
