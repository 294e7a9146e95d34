"""DICOM objects a viewer lays over the source series, built with highdicom.

For one DICOM source (a series of single-frame files, or one multi-frame file) :func:`export_dicom`
writes, in a new series each and in the source's study:

* ``parametric_map.dcm``: a Parametric Map (float32 anomaly score per pixel, one frame per source
  frame, on the source grid: same Frame of Reference, per-frame ImagePositionPatient, orientation and
  PixelSpacing, each frame referencing its source SOPInstanceUID);
* ``segmentation.dcm``: a binary Segmentation (one segment, "anomaly score > threshold") when a pixel
  threshold is known;
* ``overlay/sc_<n>.dcm`` (``n``: position order): one RGB Secondary Capture per frame, the colour
  overlay (image blended with the jet-coloured map, fixed scale 0..1) with, to its right, the colour
  scale (1 at the top, 0 at the bottom, the pixel threshold as a white line with its value) and, for an
  untrained model, an ``UNTRAINED`` band under the image (:func:`sc_pixels`). Each references its
  source image (SourceImageSequence: SOP Class and Instance UID, the frame of a multi-frame source;
  purpose "source image for image processing operation") and carries the source's InstanceNumber (the
  frame number for a multi-frame source), PatientOrientation and PixelSpacing, so "image 4" of the
  overlay series is image 4 of the source. The Secondary Capture IOD has no Image Plane module:
  ImagePositionPatient, ImageOrientationPatient, SliceLocation and a Frame of Reference would make it a
  Standard Extended SOP Class (dciodvfy warns), so the position is given by the reference and the
  InstanceNumber instead. The burned-in text is the scale's numbers and ``UNTRAINED``, never patient
  data: BurnedInAnnotation (which says whether the pixels identify the patient) stays the source's
  (absent when the source does not say), and under ``--anonymize`` a source that declares burned-in
  annotation gets no Secondary Capture (its pixels are not cleaned).

Parametric Map and Segmentation need the source geometry (a Frame of Reference, ImagePositionPatient /
ImageOrientationPatient, PixelSpacing); without it only the Secondary Captures are written and the
returned notes say why. UIDs derive from ``key`` (content + settings), so a re-run rewrites the same
objects instead of adding new series. Without ``--anonymize`` the objects keep the source's patient and
study modules and UIDs; with a ``pseudonymiser`` (``--anonymize``) each is de-identified by PS3.15 Annex E
(:func:`adaptclip_med.runtime.deid.deidentify`: one pseudonym per patient, keyed UIDs, shifted dates).
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import highdicom as hd
import numpy as np
import pydicom
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import SegmentationStorage, generate_uid

from adaptclip_med.metrics.operating_point import is_anomalous
from adaptclip_med.reporting.overlays import resize_map
from adaptclip_med.runtime.deid import deidentify
from adaptclip_med.runtime.io import atomic_path
from adaptclip_med.runtime.privacy import Pseudonymiser
from adaptclip_med.runtime.version import __version__

MANUFACTURER = "adaptclip_med"
SERIES_NUMBERS = {"pm": 9001, "seg": 9002, "sc": 9003}
OVERLAY_ALPHA = 0.45
_LETTERS = (("R", "L"), ("A", "P"), ("F", "H"))  # patient axes x, y, z: (negative, positive)
T = TypeVar("T")
#: highdicom warns about single-component patient names; we copy the source's name as it is (or a pseudonym).
_NAME_WARNING = "The string .* is unlikely to represent the intended person name"


def _quiet_person_names(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` with highdicom's person-name warning silenced."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NAME_WARNING, category=UserWarning)
            return fn(*args, **kwargs)
    return wrapper


def ascii_text(text: str, limit: int = 64) -> str:
    """DICOM LO-safe text: ASCII (the em dash becomes ``-``), at most ``limit`` characters."""
    return text.replace("—", "-").encode("ascii", "replace").decode("ascii")[:limit]


def blend_overlay(image: np.ndarray, amap: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """``(H, W[, 3])`` uint8 image and ``(H, W)`` map (scale 0..1, clipped) → ``(H, W, 3)`` uint8 overlay."""
    rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
    colour = colormaps["jet"](np.clip(amap, 0.0, 1.0))[..., :3] * 255.0
    return np.clip(np.round((1 - alpha) * rgb + alpha * colour), 0, 255).astype(np.uint8)


def _font(size: int) -> Any:
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf", size)
    except OSError:
        return ImageFont.load_default(size)


def sc_pixels(image: np.ndarray, amap: np.ndarray, *, pixel_threshold: float | None = None,
              untrained: bool = False) -> np.ndarray:
    """The Secondary Capture's RGB pixels: the overlay, its colour scale to the right, the untrained mark.

    Args:
        image: ``(H, W[, 3])`` uint8 picture (the source's pixel grid).
        amap: ``(H, W)`` map on the same grid (scale 0..1, clipped).
        pixel_threshold: drawn on the scale as a white line with its value (None: not drawn).
        untrained: add a band under the image reading ``UNTRAINED``.

    Returns:
        ``(H', W', 3)`` uint8: the overlay at rows ``:H``, columns ``:W`` (the source's geometry, so
        PixelSpacing and PatientOrientation hold); black elsewhere but for the scale and the mark. The
        only text is ``1``, ``0``, the threshold's value and ``UNTRAINED``: nothing of the patient.
    """
    overlay = blend_overlay(image, amap)
    h, w = overlay.shape[:2]
    size = max(8, h // 24)
    font = _font(size)
    gap, bar_w = max(2, w // 64), max(3, w // 24)
    labels = ["1", "0"] + ([f"{pixel_threshold:.2f}"] if pixel_threshold is not None else [])
    text_w = max(int(font.getlength(t)) for t in labels) + 4
    band = size + 6 if untrained else 0
    width = w + gap + bar_w + 2 + text_w
    if untrained:
        width = max(width, int(font.getlength("UNTRAINED")) + 6)
    canvas = np.zeros((h + band, width, 3), dtype=np.uint8)
    canvas[:h, :w] = overlay
    x0 = w + gap
    scale = colormaps["jet"](np.linspace(1.0, 0.0, h))[:, :3] * 255.0  # row 0 = score 1
    canvas[:h, x0:x0 + bar_w] = np.round(scale)[:, None, :].astype(np.uint8)
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    tx = x0 + bar_w + 2
    draw.text((tx, 0), "1", fill="white", font=font, anchor="lt")
    draw.text((tx, h - 1), "0", fill="white", font=font, anchor="lb")
    if pixel_threshold is not None and 0.0 <= pixel_threshold <= 1.0:
        y = round((1.0 - pixel_threshold) * (h - 1))
        draw.line([(x0 - 1, y), (x0 + bar_w, y)], fill="white", width=max(1, h // 256))
        if size <= y <= h - 1 - size:  # clear of the 1 and 0
            draw.text((tx, y), labels[2], fill="white", font=font, anchor="lm")
    if untrained:
        draw.text((2, h + band // 2), "UNTRAINED", fill=(255, 214, 0), font=font, anchor="lm")
    return np.asarray(picture)


def source_reference(ds: pydicom.Dataset, frame: int | None = None) -> Dataset:
    """A SourceImageSequence item naming ``ds`` (and its ``frame``, 1-based, of a multi-frame source)."""
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    if frame is not None:
        item.ReferencedFrameNumber = frame
    purpose = Dataset()  # CID 7202: source image for image processing operation
    purpose.CodeValue, purpose.CodingSchemeDesignator = "121322", "DCM"
    purpose.CodeMeaning = "Source image for image processing operation"
    item.PurposeOfReferenceCodeSequence = [purpose]
    return item


def resample_to_sources(maps: list[np.ndarray], sources: list[pydicom.Dataset]) -> np.ndarray:
    """``F`` maps ``(S, S)`` → ``(F, Rows, Columns)`` float32 on the sources' pixel grids (bilinear).

    One source per map (a series), or one multi-frame source for all maps.
    """
    grids = sources if len(sources) == len(maps) else [sources[0]] * len(maps)
    return np.stack([resize_map(m, (int(ds.Rows), int(ds.Columns))) for m, ds in zip(maps, grids, strict=True)])


def has_geometry(sources: list[pydicom.Dataset]) -> str | None:
    """None when the sources carry what a Parametric Map / Segmentation needs, else the reason."""
    first = sources[0]
    if "FrameOfReferenceUID" not in first:
        return "source has no FrameOfReferenceUID"
    if len(sources) == 1 and int(first.get("NumberOfFrames", 1) or 1) > 1:
        return None if "PerFrameFunctionalGroupsSequence" in first else "multi-frame source without per-frame geometry"
    missing = [t for t in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
               if any(t not in ds for ds in sources)]
    return f"source lacks {', '.join(missing)}" if missing else None


def patient_orientation(ds: pydicom.Dataset) -> tuple[str, str] | None:
    """Secondary Capture ``PatientOrientation`` (row, column direction letters) from ImageOrientationPatient."""
    if "ImageOrientationPatient" not in ds:
        return None
    iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    letters = []
    for vec in (iop[:3], iop[3:]):
        axis = int(np.argmax(np.abs(vec)))
        letters.append(_LETTERS[axis][int(vec[axis] > 0)])
    return letters[0], letters[1]


def _save(ds: pydicom.Dataset, path: Path, deid: tuple[Pseudonymiser, str] | None, description: str,
          notice: str | None) -> Path:
    ds.SeriesDescription = ascii_text(f"[{notice.split(' — ')[0].upper()}] {description}" if notice else description)
    if "Laterality" not in ds and ds.SOPClassUID != SegmentationStorage:
        ds.Laterality = ""  # General Series 2C: unknown (the Segmentation IOD forbids it here)
    if deid is not None:  # a copy: highdicom shares elements with the sources, which later objects still read
        ds = deidentify(copy.deepcopy(ds), *deid)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def _equipment(model_name: str) -> dict[str, str]:
    return {"manufacturer": MANUFACTURER, "manufacturer_model_name": ascii_text(model_name),
            "software_versions": __version__, "device_serial_number": "0"}


@_quiet_person_names
def export_dicom(files: list[Path], maps: list[np.ndarray], images: list[np.ndarray], out_dir: Path, *,
                 key: str, model_name: str, pixel_threshold: float | None = None, notice: str | None = None,
                 pseudonymiser: Pseudonymiser | None = None, pseudonym: str = "") -> dict[str, object]:
    """Write the Parametric Map, Segmentation and Secondary Captures of one DICOM source.

    Args:
        files: the source series' files in position order (or one multi-frame file).
        maps: ``F`` anomaly maps ``(S, S)``, one per source frame, in the same order.
        images: ``F`` uint8 pictures ``(Rows, Columns[, 3])`` the model saw (for the overlays).
        out_dir: folder of this source's outputs.
        key: content + settings hash (seeds the UIDs).
        model_name: manufacturer model name of the outputs (the backbone).
        pixel_threshold: map value of the Segmentation (None: no Segmentation).
        notice: untrained-model marker (goes into descriptions and comments).
        pseudonymiser: ``--anonymize``: the run's key; the objects are de-identified with it.
        pseudonym: the patient key of a source without PatientID (e.g. the series' pseudonym).

    Returns:
        ``{"files": [paths relative to out_dir.parent], "notes": [why an object was not written]}``.
    """
    sources = [pydicom.dcmread(f) for f in files]
    values = resample_to_sources(maps, sources)
    uid = {name: generate_uid(entropy_srcs=[key, name]) for name in ("pm", "seg", "sc")}
    deid = None if pseudonymiser is None else (pseudonymiser, pseudonym)
    comment = ascii_text(notice or "AdaptCLIP anomaly score; research use only, not for diagnosis", 64)
    written: list[Path] = []
    notes: list[str] = []
    reason = has_geometry(sources)
    if reason is None:
        mapping = hd.pm.RealWorldValueMapping(
            lut_label="ANOMALY", lut_explanation="AdaptCLIP anomaly score (0 normal .. 1 anomalous)",
            unit=codes.UCUM.NoUnits, value_range=(float(values.min()), float(values.max())), slope=1, intercept=0)
        pm = hd.pm.ParametricMap(
            sources, values, uid["pm"], SERIES_NUMBERS["pm"], generate_uid(entropy_srcs=[key, "pm", "1"]), 1,
            **_equipment(model_name), contains_recognizable_visual_features=False,
            real_world_value_mappings=[mapping], content_label="ANOMALY", content_description=comment,
            voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)])
        written.append(_save(pm, out_dir / "parametric_map.dcm", deid, "AdaptCLIP anomaly map", notice))
        if pixel_threshold is not None:
            algorithm = hd.AlgorithmIdentificationSequence(
                name="AdaptCLIP", version=__version__, family=codes.cid7162.ArtificialIntelligence)
            segment = hd.seg.SegmentDescription(
                1, ascii_text(f"anomaly score > {pixel_threshold:.4g}"), codes.SCT.MorphologicallyAbnormalStructure,
                codes.SCT.MorphologicallyAbnormalStructure, hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm)
            seg = hd.seg.Segmentation(
                sources, is_anomalous(values, pixel_threshold), hd.seg.SegmentationTypeValues.BINARY, [segment],
                uid["seg"],
                SERIES_NUMBERS["seg"], generate_uid(entropy_srcs=[key, "seg", "1"]), 1, **_equipment(model_name),
                content_description=comment, omit_empty_frames=False)
            written.append(_save(seg, out_dir / "segmentation.dcm", deid,
                                 f"AdaptCLIP anomaly > {pixel_threshold:.4g}", notice))
        else:
            notes.append("no Segmentation: no pixel threshold (pass --threshold or --normals)")
    else:
        notes.append(f"no Parametric Map / Segmentation: {reason}")
    burned = {str(ds.get("BurnedInAnnotation", "")).upper() for ds in sources} - {""}
    if deid is not None and "YES" in burned:
        notes.append("no Secondary Captures: the source declares burned-in annotation (BurnedInAnnotation YES) "
                     "and --anonymize does not clean pixel data")
        return {"files": [str(p.relative_to(out_dir.parent)) for p in written], "notes": notes}
    series = len(sources) == len(values)
    for i, (amap, image) in enumerate(zip(values, images, strict=True)):
        ref = sources[i] if series else sources[0]
        orientation = patient_orientation(ref)
        spacing = tuple(float(v) for v in ref.PixelSpacing) if "PixelSpacing" in ref else None
        number = ref.get("InstanceNumber") if series else None  # as the viewer numbers the source image
        pixels = sc_pixels(np.asarray(image), amap, pixel_threshold=pixel_threshold, untrained=notice is not None)
        sc = hd.sc.SCImage.from_ref_dataset(
            ref, pixels, "RGB", 8, "PATIENT", uid["sc"], SERIES_NUMBERS["sc"],
            generate_uid(entropy_srcs=[key, "sc", str(i)]), int(number) if number not in (None, "") else i + 1,
            MANUFACTURER, pixel_spacing=spacing, patient_orientation=orientation or ("L", "P"))
        if orientation is None:  # no ImageOrientationPatient: the source's own value, or empty (unknown)
            sc.PatientOrientation = ref.get("PatientOrientation", "")
        sc.SourceImageSequence = [source_reference(ref, None if series else i + 1)]
        sc.ImageComments = comment
        if "BurnedInAnnotation" in ref:  # the overlay shows the source's pixels: its text, if it has any
            sc.BurnedInAnnotation = ref.BurnedInAnnotation
        written.append(_save(sc, out_dir / "overlay" / f"sc_{i + 1:04d}.dcm", deid,
                             "AdaptCLIP overlay (colour)", notice))
    return {"files": [str(p.relative_to(out_dir.parent)) for p in written], "notes": notes}
