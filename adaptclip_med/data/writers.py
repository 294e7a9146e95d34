"""Small, real DICOM and NIfTI writers (pydicom / nibabel) for synthetic cases and tests.

Written files carry no patient identifiers: only the tags a viewer needs to display them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from adaptclip_med.runtime.io import atomic_path


def write_dicom(path: str | Path, pixels: np.ndarray, *, modality: str = "CT", slope: float = 1.0,
                intercept: float = 0.0, window: tuple[float, float] | None = None,
                photometric: str = "MONOCHROME2", position: float | None = None,
                series_uid: str | None = None, instance: int = 1) -> Path:
    """Write stored values ``pixels`` as an uncompressed DICOM file and return its path.

    Args:
        pixels: ``(H, W)`` or multi-frame ``(F, H, W)`` integer array (uint8/uint16/int16) or
            ``(H, W, 3)`` uint8 (RGB).
        slope, intercept: modality LUT (stored value × slope + intercept, e.g. HU for CT).
        window: WindowCenter/WindowWidth tags, or ``None`` to omit them.
        photometric: ``MONOCHROME1``/``MONOCHROME2`` (grey) — RGB is chosen by the array's shape.
        position: z of ImagePositionPatient (series files are sorted by it).
        series_uid: SeriesInstanceUID shared by the files of one series.
    """
    arr = np.asarray(pixels)
    rgb = arr.ndim == 3 and arr.shape[-1] == 3 and arr.dtype == np.uint8
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = (arr.shape[0], arr.shape[1]) if rgb or arr.ndim == 2 else arr.shape[1:3]
    if arr.ndim == 3 and not rgb:
        ds.NumberOfFrames = arr.shape[0]
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else photometric
    if rgb:
        ds.PlanarConfiguration = 0
    bits = arr.dtype.itemsize * 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(np.issubdtype(arr.dtype, np.signedinteger))
    ds.PixelSpacing = [1.0, 1.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0.0, 0.0, float(position if position is not None else instance)]
    if not rgb:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes()
    target = Path(path)
    with atomic_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return target


def write_dicom_series(folder: str | Path, volume: np.ndarray, **kwargs: object) -> Path:
    """Write ``volume`` ``(N, H, W)`` as ``N`` files of one series in ``folder`` (slice i at z = i)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    for i, plane in enumerate(np.asarray(volume)):
        write_dicom(out / f"slice_{i:03d}.dcm", plane, position=float(i), series_uid=uid,
                    instance=i + 1, **kwargs)
    return out


def write_nifti(path: str | Path, volume: np.ndarray, affine: Sequence[Sequence[float]] | None = None
                ) -> Path:
    """Write ``volume`` ``(X, Y, Z[, T])`` as NIfTI-1 (``.nii`` or ``.nii.gz``) with ``affine`` (RAS)."""
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if target.name.endswith(".nii.gz") else ".nii"
    with atomic_path(target) as tmp:
        final = tmp.with_name(tmp.name + suffix)
        nib.save(nib.Nifti1Image(np.asarray(volume), aff), str(final))
        final.replace(tmp)
    return target
