"""The persistent evaluation feature store: content keys, every setting in the key, size bound, damage."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from adaptclip_med.data import build_transforms, make_synthetic_folder
from adaptclip_med.data.records import Record
from adaptclip_med.features.cache import to_storage
from adaptclip_med.features.store import FeatureStore, entry_bytes, store_spec

PRE = {"modality": "auto", "window": None}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = make_synthetic_folder(tmp_path_factory.mktemp("store_syn"), n_normal=3, n_abnormal=0, size=64, seed=3)
    return sorted((root / "normal").glob("*.png"))


def _rec(path: Path, slice_index: int | None = None) -> Record:
    return Record(str(path), None, 0, "syn", "test", None, "folder", slice_index)


def _encode(model, path: Path):
    image = torch.as_tensor(build_transforms(model.image_size, with_mask=False)({"image": str(path)})["image"])
    with torch.inference_mode():
        return model.encode_images(image[None])


def test_round_trip_is_the_float16_rounding_of_the_encode(tiny_model, images, tmp_path):
    store = FeatureStore(tmp_path, store_spec(tiny_model, PRE))
    fresh = _encode(tiny_model, images[0])
    assert store.get(_rec(images[0])) is None
    put = store.put(_rec(images[0]), fresh)
    got = FeatureStore(tmp_path, store_spec(tiny_model, PRE)).get(_rec(images[0]))
    expected = to_storage(fresh.global_[0], torch.stack([p[0] for p in fresh.patches]), "float16")
    for feats in (put, got):
        assert feats.global_.shape == fresh.global_.shape and feats.global_.dtype == torch.float32
        flat = to_storage(feats.global_[0], torch.stack([p[0] for p in feats.patches]), "float32")
        np.testing.assert_array_equal(flat, expected.astype(np.float32))
    assert np.abs(expected.astype(np.float32)[0] - fresh.global_[0].numpy()).max() > 0  # really rounded
    # the disk cost stated in the docs is the file size
    n, d = fresh.patches[0].shape[1:]
    assert store.path(_rec(images[0])).stat().st_size == entry_bytes(len(fresh.patches), n, d)


def test_keyed_by_content_not_path(tiny_model, images, tmp_path):
    store = FeatureStore(tmp_path / "s", store_spec(tiny_model, PRE))
    store.put(_rec(images[0]), _encode(tiny_model, images[0]))
    copy = tmp_path / "elsewhere" / "renamed.png"
    copy.parent.mkdir()
    shutil.copy(images[0], copy)
    assert store.get(_rec(copy)) is not None  # same bytes elsewhere: reused
    assert store.get(_rec(images[0], slice_index=1)) is None  # another slice of the "same" file
    shutil.copy(images[1], copy)  # same path, new bytes
    fresh_store = FeatureStore(tmp_path / "s", store_spec(tiny_model, PRE))
    assert fresh_store.get(_rec(copy)) is None
    assert "1 image(s) reused" in store.note() and "1 computed" in store.note()


@pytest.mark.parametrize("change", ["vv_start", "precision", "window", "dtype", "weights"])
def test_every_feature_setting_is_in_the_key(tiny_model, change, tmp_path):
    base = store_spec(tiny_model, PRE)
    pre, dtype = dict(PRE), "float16"
    saved = (tiny_model.backbone.vv_start, tiny_model.precision)
    param = next(tiny_model.backbone.parameters())
    first = param.data.view(-1)[0].clone()  # restored exactly: the model is shared by later tests
    try:
        if change == "vv_start":
            tiny_model.backbone.vv_start = 1
        elif change == "precision":
            tiny_model.precision = "bf16"
        elif change == "window":
            pre["window"] = "brain"
        elif change == "dtype":
            dtype = "float32"
        else:
            param.data.view(-1)[0] += 1.0
        other = store_spec(tiny_model, pre, dtype)
    finally:
        tiny_model.backbone.vv_start, tiny_model.precision = saved
        if change == "weights":
            param.data.view(-1)[0] = first
    assert other != base
    assert FeatureStore(tmp_path, other).dir != FeatureStore(tmp_path, base).dir


def test_size_limit_evicts_least_recently_used(tiny_model, images, tmp_path):
    feats = [_encode(tiny_model, p) for p in images]
    size = entry_bytes(len(feats[0].patches), *feats[0].patches[0].shape[1:])
    store = FeatureStore(tmp_path, store_spec(tiny_model, PRE), max_bytes=int(2.5 * size))
    store.put(_rec(images[0]), feats[0])
    store.put(_rec(images[1]), feats[1])
    os.utime(store.path(_rec(images[0])), (1_000, 1_000))
    os.utime(store.path(_rec(images[1])), (2_000, 2_000))
    assert store.get(_rec(images[0])) is not None  # read: now the most recent
    store.put(_rec(images[2]), feats[2])  # over the limit: the least recently used (images[1]) goes
    assert store.get(_rec(images[1])) is None
    assert store.get(_rec(images[0])) is not None and store.get(_rec(images[2])) is not None
    assert store.stats.evicted == 1 and store.size_bytes() <= 2.5 * size
    assert "1 least recently used entry evicted" in store.note()


def test_damaged_entry_is_recomputed_not_trusted(tiny_model, images, tmp_path):
    store = FeatureStore(tmp_path, store_spec(tiny_model, PRE))
    store.put(_rec(images[0]), _encode(tiny_model, images[0]))
    path = store.path(_rec(images[0]))
    path.write_bytes(path.read_bytes()[:200])  # truncated (disk full, killed copy)
    assert store.get(_rec(images[0])) is None and not path.exists()
    assert "1 damaged entry recomputed" in store.note()


def test_bad_settings_are_refused(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="size limit"):
        FeatureStore(tmp_path, store_spec(tiny_model, PRE), max_bytes=0)
    with pytest.raises(ValueError, match="dtype"):
        FeatureStore(tmp_path, store_spec(tiny_model, PRE, dtype="int8"))
