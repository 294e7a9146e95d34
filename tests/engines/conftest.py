"""Fixtures of the engine tests: the tiny backbone through torch and its exported graphs.

Built graphs go to the per-process test cache (``ADAPTCLIP_CACHE_DIR``, tests/conftest.py), so each
(engine, int8 mode) is exported once per test process.
"""

from __future__ import annotations

import pytest
import torch

TINY = {"backbone": "adaptclip-tiny", "pretrained": None, "allow_random_backbone": True, "image_size": 112,
        "seed": 0}


def _tiny(**kwargs: object):
    from adaptclip_med import load_model

    return load_model(**TINY, **kwargs)


@pytest.fixture(scope="session")
def tiny():
    """``tiny(**kwargs)``: the tiny AdaptCLIP (random weights, seed 0, 112 px) with more ``load_model`` kwargs."""
    return _tiny


@pytest.fixture(scope="session")
def images() -> torch.Tensor:
    """6 query images and 4 prompts, ``(10, 3, 112, 112)``: smooth random fields, CLIP-normalised scale."""
    gen = torch.Generator().manual_seed(0)
    low = torch.randn(10, 3, 14, 14, generator=gen)
    return torch.nn.functional.interpolate(low, size=112, mode="bilinear", align_corners=False)


@pytest.fixture(scope="session")
def torch_model():
    """The tiny AdaptCLIP through torch."""
    return _tiny()
