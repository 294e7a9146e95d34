"""Fixtures of the data tests: synthetic folders written once per session (real PNG/DICOM/NIfTI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
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


def add_modality_lut(path: Path, **tags: object) -> Path:
    """Give the DICOM file ``path`` a Modality LUT Sequence instead of its rescale tags, then ``tags``.

    The LUT maps 12-bit stored values (BitsStored 12) by a gamma-0.5 curve onto 16 bit (XA/CR-like);
    ``tags`` (e.g. ``WindowCenter=40000``) are set on the data set before it is saved in place.
    """
    ds = pydicom.dcmread(path)
    del ds.RescaleSlope, ds.RescaleIntercept
    item = pydicom.Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    lut = np.round((np.arange(4096) / 4095.0) ** 0.5 * 65535).astype(np.uint16)
    item.add_new(0x00283006, "US", lut.tolist())  # LUTData
    ds.ModalityLUTSequence = [item]
    ds.BitsStored, ds.HighBit = 12, 11
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


@pytest.fixture
def modality_lut():
    """The :func:`add_modality_lut` helper."""
    return add_modality_lut
