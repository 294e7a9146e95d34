"""Frozen-feature cache: storage round trip, keys, recomputation of changed files, masks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adaptclip_med.features.cache import FeatureCache, split_features
from adaptclip_med.runtime.errors import ImageReadError
from adaptclip_med.training.features import FeatureSource, load_mask
from adaptclip_med.training.trainer import model_identity


def test_round_trip_float32_exact_and_float16_rounded(tmp_path: Path) -> None:
    g, p = torch.randn(8), torch.randn(4, 5, 8)
    for dtype, tol in (("float32", 0.0), ("float16", 1e-3)):
        cache = FeatureCache(tmp_path, {"backbone": "x"}, dtype)
        stored = cache.store_features("ab" * 32, g, p)
        assert isinstance(cache.features("ab" * 32), np.memmap)
        g2, p2 = split_features(stored, layers=4)
        assert p2.shape == (4, 5, 8) and g2.dtype == torch.float32
        torch.testing.assert_close(g2, g, atol=tol, rtol=tol)
        torch.testing.assert_close(p2, p, atol=tol, rtol=tol)
    # Each spec (here: the dtype) has its own folder, so entries never mix.
    assert len(list(tmp_path.glob("*/spec.json"))) == 2


def test_a_changed_image_is_recomputed_and_an_unchanged_one_reused(make_model, synthetic_set,
                                                                    tmp_path: Path) -> None:
    samples, _ = synthetic_set
    model = make_model()
    copies = []
    for s in samples[:3]:
        copies.append(tmp_path / s.image.name)
        shutil.copy(s.image, copies[-1])
    cache = FeatureCache(tmp_path / "cache", model_identity(model), "float16")
    assert FeatureSource(model, cache, "cpu").fill(copies) == 3
    before = FeatureSource(model, cache, "cpu").features(copies)[0]
    arr = np.asarray(Image.open(copies[0]))
    Image.fromarray(255 - arr).save(copies[0])  # same path, new content
    source = FeatureSource(model, cache, "cpu")
    assert source.fill(copies) == 1
    after = source.features(copies)[0]
    assert not torch.allclose(before[0], after[0])
    torch.testing.assert_close(before[1:], after[1:], rtol=0, atol=0)


def test_cache_spec_depends_on_backbone_weights(make_model, tmp_path: Path) -> None:
    a = FeatureCache(tmp_path, model_identity(make_model(seed=0)))
    b = FeatureCache(tmp_path, model_identity(make_model(seed=1)))
    assert a.dir != b.dir


def test_cache_spec_depends_on_vv_start_and_precision_and_the_note_says_why(make_model, synthetic_set,
                                                                          tmp_path: Path) -> None:
    from adaptclip_med import load_model

    paths = [s.image for s in synthetic_set[0][:2]]
    base = make_model()
    first = FeatureCache(tmp_path, model_identity(base))
    assert FeatureSource(base, first, "cpu").fill(paths) == 2
    assert first.note().endswith("empty; computed 2")
    vv = load_model(backbone="adaptclip-tiny", pretrained=None, image_size=224, allow_random_backbone=True,
                    vv_start=1)
    bf16 = make_model()
    bf16.precision = "bf16"
    for other, why in ((vv, "vv_start (2 → 1)"), (bf16, "precision (fp32 → bf16)")):
        cache = FeatureCache(tmp_path, model_identity(other))
        assert cache.dir != first.dir
        assert FeatureSource(other, cache, "cpu").fill(paths) == 2
        assert "no entries for these settings; computed 2" in cache.note() and why in cache.note()
        assert not np.allclose(cache.features(next(iter(cache.stored))), first.features(next(iter(cache.stored))))
    again = FeatureCache(tmp_path, model_identity(base))
    source = FeatureSource(base, again, "cpu")
    assert source.fill(paths) == 0 and source.fill(paths[:1]) == 0
    assert again.note().endswith("2 entries for these settings; reused 2, computed 0 "
                                 "(new or changed image content (keyed by SHA-256))")


def test_spec_names_everything_that_determines_the_features(make_model) -> None:
    spec = model_identity(make_model())
    assert {"backbone", "pretrained", "image_size", "feature_layers", "vv_start", "precision", "weights",
            "preprocess", "versions"} <= set(spec)
    assert len(spec["weights"]) == 64 and spec["versions"]["adaptclip_med"]


def test_mask_is_binarised_and_resized_to_the_model_resolution(tmp_path: Path) -> None:
    mask = np.zeros((10, 20), np.uint8)
    mask[:, 10:] = 253  # a grey class value, as in MVTec 3D-AD: foreground is any value > 0
    Image.fromarray(mask).save(tmp_path / "m.png")
    out = load_mask(tmp_path / "m.png", 8)
    assert out.shape == (8, 8) and out.dtype == np.uint8
    assert out[:, :4].sum() == 0 and out[:, 4:].all()


def test_unreadable_mask_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match=r"broken\.png: cannot be read as a mask"):
        load_mask(bad, 8)
