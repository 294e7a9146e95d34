"""Fixtures of the data tests: synthetic folders written once per session (real PNG/DICOM/NIfTI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adaptclip_med.data import make_synthetic_folder


@pytest.fixture(scope="session")
def synth_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generic folder layout, 6 normal + 6 abnormal 96 px PNG cases with masks (seed 0)."""
    return make_synthetic_folder(tmp_path_factory.mktemp("png"), n_normal=6, n_abnormal=6, size=96)


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8/uint16 grey or uint8 RGB) as PNG and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def png_writer():
    """The :func:`write_png` helper."""
    return write_png
