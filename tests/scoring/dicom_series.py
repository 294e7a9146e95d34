"""Write a small, real CT series with pydicom: 32×32 slices with geometry and a Frame of Reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

PATIENT_NAME = "DOE^JANE"
PATIENT_ID = "PID20931"
ACCESSION = "ACC77812"
INSTITUTION = "St Elsewhere Hospital"


def ct_series(folder: Path, n_slices: int = 4, size: int = 32, *, seed: int = 0, spacing: float = 0.8,
              thickness: float = 2.5, file_prefix: str = "slice") -> list[Path]:
    """Write ``n_slices`` CT slices (HU ramp + noise) of one series, shuffled file order vs position.

    Geometry: axial, ImageOrientationPatient (1,0,0,0,1,0), PixelSpacing ``spacing`` mm, slices
    ``thickness`` mm apart along +z; the files' InstanceNumber runs opposite to their position, so
    sorting by position (not by number or name) is tested. Carries patient identifiers in its tags.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for i in range(n_slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = PATIENT_NAME, PATIENT_ID, "19700101", "F"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ACCESSION
        ds.ReferringPhysicianName, ds.InstitutionName = "HOUSE^GREGORY", INSTITUTION
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, n_slices - i
        ds.Manufacturer, ds.PositionReferenceIndicator = "test", ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [-12.4, -12.4, 10.0 + i * thickness]
        ds.SliceLocation = 10.0 + i * thickness
        ds.PixelSpacing = [spacing, spacing]
        ds.SliceThickness = thickness
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.KVP, ds.AcquisitionNumber = 120, 1
        yy, xx = np.mgrid[0:size, 0:size]
        hu = 40 + 8 * xx - 4 * yy + 30 * i + rng.normal(0, 10, (size, size))
        ds.PixelData = np.clip(hu + 1024, 0, 4095).astype(np.uint16).tobytes()
        path = folder / f"{file_prefix}{i:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _base(modality: str, sop_class: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = PATIENT_NAME, PATIENT_ID, "19700101", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ACCESSION
    ds.ReferringPhysicianName, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "", modality, 1, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    return ds


def multiframe_without_geometry(path: Path, n_frames: int = 3, size: int = 32) -> Path:
    """A multi-frame 8-bit Secondary Capture (no Frame of Reference, no plane geometry), ``n_frames`` frames."""
    from pydicom.uid import MultiFrameGrayscaleByteSecondaryCaptureImageStorage

    ds = _base("OT", MultiFrameGrayscaleByteSecondaryCaptureImageStorage)
    ds.NumberOfFrames, ds.Rows, ds.Columns = n_frames, size, size
    ds.FrameIncrementPointer = (0x0018, 0x2002)  # FrameLabelVector
    ds.FrameLabelVector = [f"f{i}" for i in range(n_frames)]
    ds.ConversionType = "WSD"
    frames = np.stack([np.tile(np.arange(size, dtype=np.uint8) * 7 + 20 * i, (size, 1)) for i in range(n_frames)])
    ds.PixelData = frames.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
