"""Fixtures for the conformance tests: the authors' fixture loaded into our model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adaptclip_med import load_model
from adaptclip_med.data.transforms.clip_input import ClipNormalize

SAMPLE = (slice(None), slice(None, None, 9), slice(None, None, 9))  # full[..., ::9, ::9] → 58×58


@pytest.fixture(scope="session")
def ref(conformance_dir: Path) -> dict[str, torch.Tensor]:
    """The 83 reference outputs."""
    return load_file(str(conformance_dir / "outputs.safetensors"))


@pytest.fixture(scope="session")
def inputs(conformance_dir: Path) -> dict[str, torch.Tensor]:
    """Preprocessed uint8 images and token ids."""
    return load_file(str(conformance_dir / "inputs.safetensors"))


@pytest.fixture(scope="session")
def conf_model(conformance_dir: Path):
    """Our AdaptCLIP on the fixture's tiny CLIP (OpenAI format, fp16) and the authors' adapters."""
    return load_model(
        backbone=str(conformance_dir / "open_clip_config.json"),
        pretrained=str(conformance_dir / "clip_openai_format.safetensors"),
        checkpoint=conformance_dir / "adapters_official_format.pth",
        image_size=518,
    )


def to_float(u8: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 → ``(B, 3, H, W)`` CLIP-normalised, our transform."""
    norm = ClipNormalize()
    return torch.stack([norm(img.numpy()) for img in u8])


@pytest.fixture(scope="session")
def query_images(inputs) -> torch.Tensor:
    return to_float(inputs["query.resized_u8"])


@pytest.fixture(scope="session")
def prompt_images(inputs) -> torch.Tensor:
    return to_float(inputs["prompt.resized_u8"])
