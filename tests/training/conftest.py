"""Training fixtures: generated industrial-like PNGs with known masks, and fresh tiny models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adaptclip_med.training.samples import TrainSample, make_samples


def _texture(rng: np.random.Generator, size: int, tint: int) -> np.ndarray:
    base = rng.normal(120 + tint, 12, (size, size, 1)) + np.linspace(0, 30, size)[None, :, None]
    return np.clip(np.repeat(base, 3, axis=2), 0, 255).astype(np.uint8)


def write_synthetic_set(root: Path, per_class: int = 3, size: int = 64, seed: int = 0) -> tuple[
        list[TrainSample], dict[str, list[Path]]]:
    """Two classes; per class ``per_class`` normal + ``per_class`` anomalous test images, 2 train normals.

    Anomalies are bright squares at seeded positions; their masks are 0/255 PNGs of the same size.
    """
    rng = np.random.default_rng(seed)
    items, pool = [], {}
    for tint, cls in ((0, "plate"), (40, "tile")):
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        pool[cls] = []
        for i in range(2):
            path = folder / f"train_{i}.png"
            Image.fromarray(_texture(rng, size, tint)).save(path)
            pool[cls].append(path)
        for i in range(per_class):
            path = folder / f"good_{i}.png"
            Image.fromarray(_texture(rng, size, tint)).save(path)
            items.append((path, None, 0, cls))
        for i in range(per_class):
            img = _texture(rng, size, tint)
            mask = np.zeros((size, size), np.uint8)
            y, x = rng.integers(4, size - 24, 2)
            img[y:y + 18, x:x + 18] = 250
            mask[y:y + 18, x:x + 18] = 255
            path, mpath = folder / f"bad_{i}.png", folder / f"bad_{i}_mask.png"
            Image.fromarray(img).save(path)
            Image.fromarray(mask).save(mpath)
            items.append((path, mpath, 1, cls))
    return make_samples(items, source=str(root)), pool


def write_mvtec_tree(root: Path, *, masks: bool = True, train: bool = True) -> Path:
    """A one-class MVTec AD tree: 2 train/good, 2 test/good, 2 test/crack (+ ground_truth masks)."""
    rng = np.random.default_rng(0)
    cls = root / "widget"
    folders = [cls / "test" / "good", cls / "test" / "crack"] + ([cls / "train" / "good"] if train else [])
    for folder in folders:
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    if masks:
        (cls / "ground_truth" / "crack").mkdir(parents=True)
        for i in range(2):
            mask = np.zeros((32, 32), np.uint8)
            mask[8:16, 8:16] = 255
            Image.fromarray(mask).save(cls / "ground_truth" / "crack" / f"{i:03d}_mask.png")
    return root


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[TrainSample], dict[str, list[Path]]]:
    """12 queries (2 classes × 3 normal + 3 anomalous) and a 2-image prompt pool per class (read-only)."""
    return write_synthetic_set(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def make_model() -> Callable[..., object]:
    """Factory of fresh tiny AdaptCLIP models at 224 px (training mutates a model, so never share one)."""
    from adaptclip_med import load_model

    def build(seed: int = 0) -> object:
        return load_model(backbone="adaptclip-tiny", pretrained=None, image_size=224, device="cpu",
                          allow_random_backbone=True, seed=seed)

    return build
