"""The applicability gate: is this image one the anomaly score can speak about? ``pass``, ``warn`` or ``reject``.

Three layers of named rules (docs/roi.md, "Applicability gate"); each finding is ``(level, rule, reason)``:

1. metadata (DICOM files): ``modality`` (``Modality`` against ``expect_modality``), ``body-part``
   (``BodyPartExamined`` against ``expect_body_part``; absent: a warning), ``localizer`` (ImageType
   LOCALIZER / SCOUT), ``derived`` (a Secondary Capture SOP class, or ImageType DERIVED\\SECONDARY),
   ``burned-in`` (BurnedInAnnotation YES);
2. pixels (the 8-bit display picture the model sees): ``blank`` (near-constant), ``saturated`` (a large
   share of pixels at the top value), ``roi-small`` (the anatomy ROI below ``roi_floor`` of the image),
   ``text`` (a screenshot or a scanned document: many small high-contrast glyph components in rows);
3. features: ``feature`` (the cosine distance of the image's global embedding to the nearest normal, as a
   conformal p-value among the normals' leave-one-out distances; below ``warn`` / ``reject``), or without
   normals ``prompts`` (zero-shot: the global embedding against CLIP text embeddings of the expected
   modality and of negatives such as a screenshot; meaningful only with real backbone weights).

Any rule can be switched off by name (``GateConfig.off``); ``GateConfig.enabled=False`` turns the gate off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops

from adaptclip_med.metrics.operating_point import conformal_p_value
from adaptclip_med.roi.morphology import grey, to_working_grid
from adaptclip_med.roi.options import RULES
from adaptclip_med.runtime.errors import AdaptCLIPError

LEVELS: tuple[str, ...] = ("pass", "warn", "reject")
#: Secondary Capture SOP classes (single-frame and the four multi-frame ones).
SECONDARY_CAPTURE = ("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.1", "1.2.840.10008.5.1.4.1.1.7.2",
                     "1.2.840.10008.5.1.4.1.1.7.3", "1.2.840.10008.5.1.4.1.1.7.4")
_MODALITY_ALIASES = {"MRI": "MR", "XRAY": "CR", "X-RAY": "CR", "DX": "CR", "ENDOSCOPY": "ES"}
#: pixel rules: grey-level standard deviation below which a picture is near-constant.
BLANK_STD = 2.0
#: share of pixels at the picture's top value (255): warn / reject.
SATURATED_WARN, SATURATED_REJECT = 0.15, 0.40
#: glyph-like components lying in rows: warn / reject at this many (on the anatomy region); a reject also
#: needs the text to spread: those glyphs lie in at least this share of the picture's 8 × 8 tiles (a page
#: or a screen, not the corner annotation of an endoscope or scanner).
TEXT_WARN, TEXT_REJECT = 15, 40
TEXT_SPREAD = 0.25
TEXT_SIDE = 1024
#: ``prompts`` rule: the zero-shot prompt of each modality (keys: :func:`modality_key`), the negatives, the
#: CLIP softmax temperature and the negative probability above which the rule rejects (else it warns when
#: a negative's probability exceeds the expected prompt's).
MODALITY_PROMPTS = {"mri": "an MRI scan", "ct": "a CT scan", "xray": "an X-ray image",
                    "endoscopy": "an endoscopy image", "us": "an ultrasound image", "mg": "a mammogram",
                    "pt": "a PET scan", "nm": "a nuclear medicine scan"}
NEGATIVE_PROMPTS = ("a screenshot of a computer screen", "a photo of a printed document", "a photograph of a scene")
PROMPT_TEMPERATURE = 100.0
PROMPT_REJECT = 0.8
_MODALITY_KEYS = {"MR": "mri", "CT": "ct", "CR": "xray", "ES": "endoscopy", "US": "us", "MG": "mg", "PT": "pt",
                  "NM": "nm"}


@dataclass(frozen=True)
class GateConfig:
    """The gate's settings (recorded in ``run.json``).

    Attributes:
        enabled: False: every image passes, no rule runs (``--gate off``).
        off: rule names switched off (``--gate-off burned-in,text``); see :data:`RULES`.
        expect_modality: DICOM ``Modality`` expected (``MR``, ``CT``, ...; ``MRI`` is taken for ``MR``).
        expect_body_part: DICOM ``BodyPartExamined`` expected (``HEAD``, ``CHEST``, ...).
        warn / reject: conformal p-value levels of the feature rule.
        roi_floor: smallest ROI share of the image that can be scored (``roi-small``; volumes: slices below
            it are skipped).
        force: score rejected images all the same (their rows are marked).
    """

    enabled: bool = True
    off: tuple[str, ...] = ()
    expect_modality: str | None = None
    expect_body_part: str | None = None
    warn: float = 0.05
    reject: float = 0.01
    roi_floor: float = 0.02
    force: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.off) - set(RULES))
        if unknown:
            msg = f"gate rule(s) {', '.join(unknown)} unknown; expected some of {', '.join(RULES)}"
            raise ValueError(msg)
        if not 0 <= self.reject <= self.warn <= 1:
            msg = f"gate levels: need 0 <= reject ({self.reject}) <= warn ({self.warn}) <= 1"
            raise ValueError(msg)

    def on(self, rule: str) -> bool:
        """True when ``rule`` runs."""
        return self.enabled and rule not in self.off

    def to_dict(self) -> dict[str, object]:
        """JSON-ready settings."""
        return {"enabled": self.enabled, "off": list(self.off), "expect_modality": self.expect_modality,
                "expect_body_part": self.expect_body_part, "warn": self.warn, "reject": self.reject,
                "roi_floor": self.roi_floor, "force": self.force, "rules": list(RULES)}


@dataclass
class Verdict:
    """One image's applicability: the worst level of its findings, and every finding's reason."""

    findings: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, level: str, rule: str, reason: str) -> None:
        """Record one finding (``level`` ``warn`` or ``reject``)."""
        self.findings.append((level, rule, reason))

    def extend(self, other: Verdict) -> None:
        """Add another verdict's findings."""
        self.findings += other.findings

    @property
    def status(self) -> str:
        """``pass``, ``warn`` or ``reject``."""
        return max((f[0] for f in self.findings), key=LEVELS.index, default="pass")

    @property
    def reasons(self) -> str:
        """``rule: reason`` of every finding, ``; ``-joined ("" when it passes)."""
        return "; ".join(f"{rule}: {reason}" for _, rule, reason in self.findings)

    @property
    def rejected(self) -> bool:
        return self.status == "reject"

    def cells(self, force: bool) -> dict[str, str]:
        """The ``applicability`` / ``applicability_reasons`` cells of a scored image (a rejected one is only
        scored under ``--force``, and its reasons say so)."""
        reasons = f"scored under --force; {self.reasons}" if self.rejected and force else self.reasons
        return {"applicability": self.status, "applicability_reasons": reasons}


def below_floor(share: float, floor: float) -> str:
    """The skip reason of a volume slice whose ROI covers ``share`` of it, below ``floor``."""
    return f"ROI below the floor: anatomy {share:.1%} of the slice < {floor:.0%}"


def _read_header(path: str | Path) -> object | None:
    """The DICOM data set without pixels, or None for another format."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError):
        return None


def _modality(value: str) -> str:
    v = value.strip().upper()
    return _MODALITY_ALIASES.get(v, v)


def metadata_verdict(path: str | Path, config: GateConfig) -> Verdict:
    """Layer 1, the DICOM header rules; nothing for a file that is not DICOM (no metadata to judge)."""
    verdict = Verdict()
    if not config.enabled or Path(path).is_dir() or str(path).lower().endswith((".nii", ".nii.gz")):
        return verdict
    ds = _read_header(path)
    if ds is None:
        return verdict
    modality = str(ds.get("Modality", "") or "")
    if config.on("modality") and config.expect_modality and _modality(modality) != _modality(config.expect_modality):
        verdict.add("reject", "modality", f"DICOM Modality {modality or 'absent'}, expected {config.expect_modality}")
    if config.on("body-part") and config.expect_body_part:
        part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
        if not part:
            verdict.add("warn", "body-part", f"BodyPartExamined absent, expected {config.expect_body_part}")
        elif part != config.expect_body_part.strip().upper():
            verdict.add("reject", "body-part", f"BodyPartExamined {part}, expected {config.expect_body_part}")
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    scout = sorted({"LOCALIZER", "SCOUT"} & set(image_type))
    if config.on("localizer") and scout:
        verdict.add("reject", "localizer", f"ImageType {'/'.join(scout)} (a planning image)")
    sop = str(ds.get("SOPClassUID", "") or "")
    if config.on("derived") and sop in SECONDARY_CAPTURE:
        verdict.add("reject", "derived", f"Secondary Capture SOP class {sop} (a screen capture, not an acquisition)")
    elif config.on("derived") and image_type[:2] == ["DERIVED", "SECONDARY"]:
        verdict.add("reject", "derived", "ImageType DERIVED\\SECONDARY (a derived secondary image)")
    if config.on("burned-in") and str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        verdict.add("reject", "burned-in", "BurnedInAnnotation YES (text burned into the pixels)")
    return verdict


def text_glyphs(picture: np.ndarray) -> int:
    """How many glyph-like components of ``picture`` lie in rows of text (:func:`text_glyph_centres`)."""
    return len(text_glyph_centres(picture))


def text_glyph_centres(picture: np.ndarray) -> np.ndarray:
    """``(N, 2)`` (row, column) centres, on ``picture``'s grid, of its glyph-like components in rows of text.

    The grey picture (long side at most :data:`TEXT_SIDE`) is split at its Otsu level, both polarities
    (dark ink on paper, light text on a screen); a glyph is a component 4–40 px high, at most 40 px wide,
    at least 6 px, filling 15–95 % of its box, on a flat ground (:func:`_on_flat`). It counts when two
    more glyphs of similar height (within 1.5×) sit on the same line (centre rows within half a glyph
    height) within three glyph heights sideways.
    """
    none = np.zeros((0, 2), dtype=np.float32)
    g = grey(to_working_grid(picture, TEXT_SIDE)) if max(picture.shape[:2]) > TEXT_SIDE else grey(picture)
    if g.max() == g.min():
        return none
    level = threshold_otsu(g)
    if abs(float(g[g > level].mean()) - float(g[g <= level].mean())) < 60:  # low contrast: no ink on paper
        return none
    boxes = []
    for ink in (g <= level, g > level):
        for r in regionprops(label(ink, connectivity=2)):
            y0, x0, y1, x1 = r.bbox
            h, w = y1 - y0, x1 - x0
            if 4 <= h <= 40 and w <= 40 and r.area >= 6 and 0.15 <= r.extent <= 0.95 and _on_flat(g, r):
                boxes.append(((y0 + y1) / 2, (x0 + x1) / 2, h))
    if len(boxes) < 3:
        return none
    b = np.asarray(boxes[:20000], dtype=np.float32)
    cy, cx, h = b[:, 0], b[:, 1], b[:, 2]
    counted = []
    for start in range(0, len(b), 2048):  # bounded memory: 2048 × n comparisons at a time
        sl = slice(start, start + 2048)
        same_line = np.abs(cy[sl, None] - cy[None]) <= h[sl, None] / 2
        similar = (h[None] <= 1.5 * h[sl, None]) & (h[sl, None] <= 1.5 * h[None])
        near = np.abs(cx[sl, None] - cx[None]) <= 3 * h[sl, None]
        counted.append((same_line & similar & near).sum(axis=1) >= 3)  # itself and two neighbours
    keep = np.concatenate(counted)
    scale = np.array([picture.shape[0] / g.shape[0], picture.shape[1] / g.shape[1]], dtype=np.float32)
    return b[keep, :2] * scale


def _inside(region: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The ``(N, 2)`` centres that fall on True pixels of ``region`` ``(H, W)``."""
    if not len(centres):
        return centres
    rows = np.clip(centres[:, 0].astype(np.int64), 0, region.shape[0] - 1)
    cols = np.clip(centres[:, 1].astype(np.int64), 0, region.shape[1] - 1)
    return centres[region[rows, cols]]


def _spread(centres: np.ndarray, shape: tuple[int, ...], cells: int = 8) -> float:
    """The share of the ``cells × cells`` tiles of a picture of ``shape`` holding one of the ``(N, 2)``
    centres: text over a page or a screen fills many tiles, a corner annotation a few."""
    if not len(centres):
        return 0.0
    rows = np.clip((centres[:, 0] * cells / shape[0]).astype(np.int64), 0, cells - 1)
    cols = np.clip((centres[:, 1] * cells / shape[1]).astype(np.int64), 0, cells - 1)
    return len(set(zip(rows.tolist(), cols.tolist(), strict=True))) / cells**2


def anatomy_region(picture: np.ndarray) -> np.ndarray | None:
    """The anatomy the pixel rules judge when no ROI is given: :func:`adaptclip_med.roi.anatomy_mask` with
    ``modality="auto"``; None when it finds nothing (the whole picture is judged)."""
    from adaptclip_med.roi.api import anatomy_mask

    try:
        region = anatomy_mask(picture, "auto")
    except (AdaptCLIPError, ValueError):
        return None
    return region if region.any() else None


def _on_flat(g: np.ndarray, region: object) -> bool:
    """A glyph on a flat ground: at least 70 % of the 2-px frame around its box lies within 25 grey levels
    of the frame's median (neighbouring glyphs may touch it), > 60 levels from the glyph's mean (text on
    paper or a screen; tissue texture is neither)."""
    y0, x0, y1, x1 = region.bbox
    Y0, X0 = max(y0 - 2, 0), max(x0 - 2, 0)
    box = g[Y0:y1 + 2, X0:x1 + 2].astype(np.float32)
    ring = np.ones(box.shape, dtype=bool)
    ring[y0 - Y0:y0 - Y0 + (y1 - y0), x0 - X0:x0 - X0 + (x1 - x0)] = False
    if not ring.any():
        return False
    ground = box[ring]
    ink = g[region.coords[:, 0], region.coords[:, 1]].astype(np.float32)
    level = float(np.median(ground))
    flat = float(np.mean(np.abs(ground - level) <= 25))
    return flat >= 0.7 and abs(level - float(ink.mean())) > 60


def pixel_verdict(picture: np.ndarray, roi: np.ndarray | None, config: GateConfig) -> Verdict:
    """Layer 2, pixel sanity of the uint8 display ``picture``.

    Clipping and text are judged on the anatomy: ``roi`` when given, else :func:`anatomy_region`. Pixels
    at 255 or rows of text *outside* it — white padding, the burned-in annotations of scanners and
    endoscopes — only warn; inside it (a document, a screenshot, a blown-out image: the anatomy region is
    then the whole picture) they warn and reject at the levels of :data:`SATURATED_WARN` / ``_REJECT``; text
    warns from :data:`TEXT_WARN` glyphs anywhere and rejects from :data:`TEXT_REJECT` glyphs on the anatomy
    spread over :data:`TEXT_SPREAD` of the picture. The ``roi-small`` rule takes the given ``roi`` only.
    """
    verdict = Verdict()
    if not config.enabled:
        return verdict
    g = grey(picture)
    std = float(g.std())
    if config.on("blank") and std < BLANK_STD:
        verdict.add("reject", "blank", f"near-constant picture (grey-level std {std:.2f} < {BLANK_STD})")
        return verdict  # nothing else to judge
    anatomy = None
    if config.on("saturated") or config.on("text"):
        anatomy = roi if roi is not None and roi.any() else anatomy_region(picture)
    if anatomy is None:
        anatomy = np.ones(g.shape, dtype=bool)
    if config.on("saturated"):
        _saturated(g, anatomy, verdict)
    if config.on("roi-small") and roi is not None and roi.mean() < config.roi_floor:
        verdict.add("reject", "roi-small", f"anatomy ROI {roi.mean():.1%} of the image, below {config.roi_floor:.0%}")
    if config.on("text"):
        centres = text_glyph_centres(picture)
        inside = _inside(anatomy, centres)
        spread = _spread(inside, g.shape)
        if len(inside) >= TEXT_REJECT and spread >= TEXT_SPREAD:
            verdict.add("reject", "text", f"{len(inside)} glyph-like components in rows of text on the anatomy "
                                          f"region, in {spread:.0%} of the picture's tiles (a screenshot or document?)")
        elif len(centres) >= TEXT_WARN:
            verdict.add("warn", "text", f"{len(centres)} glyph-like components in rows of text, {len(inside)} on the "
                                        f"anatomy region, in {spread:.0%} of the picture's tiles (burned-in "
                                        "annotation?)")
    return verdict


def _saturated(g: np.ndarray, anatomy: np.ndarray, verdict: Verdict) -> None:
    """The ``saturated`` rule: the share of the anatomy region at 255 decides; 255 outside it only warns."""
    top = g >= 255
    share = float(np.count_nonzero(top & anatomy)) / max(1, int(anatomy.sum()))
    whole = float(np.count_nonzero(top)) / g.size
    if share >= SATURATED_WARN:
        level = "reject" if share >= SATURATED_REJECT else "warn"
        verdict.add(level, "saturated", f"{share:.0%} of the anatomy region at the top value 255 (clipped / saturated)")
    elif whole >= SATURATED_WARN:
        verdict.add("warn", "saturated", f"{whole:.0%} of the picture at the top value 255, {share:.0%} of the "
                                         "anatomy region (white padding?)")


def nearest_distances(query: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Cosine distance of each ``(B, D)`` query embedding to its nearest ``(n, D)`` normal embedding."""
    q = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    n = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return 1.0 - (q @ n.T).max(axis=1)


def leave_one_out_distances(normals: np.ndarray) -> np.ndarray:
    """Each normal's cosine distance to its nearest *other* normal (``n >= 2``)."""
    n = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    sim = n @ n.T
    np.fill_diagonal(sim, -np.inf)
    return 1.0 - sim.max(axis=1)


def feature_verdict(distance: float, normal_distances: np.ndarray, config: GateConfig) -> Verdict:
    """Layer 3: the conformal p-value of ``distance`` among the normals' leave-one-out distances."""
    verdict = Verdict()
    if not config.on("feature") or len(normal_distances) == 0:
        return verdict
    p = conformal_p_value(normal_distances, distance)
    if p < config.warn:
        level = "reject" if p < config.reject else "warn"
        verdict.add(level, "feature", f"embedding unlike the normals: cosine distance {distance:.3f} to the nearest, "
                                      f"conformal p = {p:.3f} over {len(normal_distances)} normals")
    return verdict


def modality_key(modality: str) -> str:
    """A :data:`MODALITY_PROMPTS` key from ``--expect-modality`` (``MR``, ``MRI``, ``CT``, ``CR``, ...) or a
    detected modality (``mri``, ``ct``, ``xray``, ``endoscopy``); an unknown one is kept in lower case."""
    v = modality.strip()
    if v.lower() in MODALITY_PROMPTS:
        return v.lower()
    return _MODALITY_KEYS.get(_modality(v), v.lower())


def modality_prompt(modality: str) -> str:
    """The zero-shot prompt of ``modality`` (:func:`modality_key`); unknown: ``"a <modality> medical image"``."""
    key = modality_key(modality)
    return MODALITY_PROMPTS.get(key, f"a {modality.strip()} medical image")


def prompt_verdict(embedding: np.ndarray, expected: np.ndarray, negatives: np.ndarray, expected_prompt: str,
                   negative_prompts: tuple[str, ...] | list[str], config: GateConfig, random_weights: bool = False,
                   ) -> Verdict:
    """Layer 3 without normals, the ``prompts`` rule: CLIP zero-shot of the ``(D,)`` global ``embedding``
    over the ``(D,)`` text embedding of the ``expected_prompt`` and the ``(N, D)`` ``negatives``.

    Cosine similarities × :data:`PROMPT_TEMPERATURE`, softmax over the ``1 + N`` prompts: ``warn`` when the
    most probable negative is more probable than the expected prompt, ``reject`` when its probability also
    exceeds :data:`PROMPT_REJECT`. The reason names the winning prompt. ``random_weights``: the backbone is
    random, the verdict is noise: the reason says so and the rule only warns (it never drops an image).
    """
    verdict = Verdict()
    if not config.on("prompts") or len(negatives) == 0:
        return verdict
    texts = np.vstack([np.asarray(expected, dtype=np.float64).reshape(1, -1),
                       np.asarray(negatives, dtype=np.float64)])
    texts = texts / np.maximum(np.linalg.norm(texts, axis=1, keepdims=True), 1e-12)
    q = np.asarray(embedding, dtype=np.float64).reshape(-1)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    logits = PROMPT_TEMPERATURE * (texts @ q)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    best = int(np.argmax(p[1:]))
    p_neg, p_exp = float(p[1 + best]), float(p[0])
    if p_neg <= p_exp:
        return verdict
    level = "reject" if p_neg > PROMPT_REJECT and not random_weights else "warn"
    note = " (random backbone weights: meaningless, never rejects)" if random_weights else ""
    verdict.add(level, "prompts", f"zero-shot prefers {negative_prompts[best]!r} (p = {p_neg:.2f}) over "
                                  f"{expected_prompt!r} (p = {p_exp:.2f}){note}")
    return verdict


class GateSettingError(AdaptCLIPError, ValueError):
    """A gate rule name or level the command line got wrong."""


def gate_config(enabled: bool, off: str | None, **kwargs: Any) -> GateConfig:
    """A :class:`GateConfig` from the command line's ``--gate`` / ``--gate-off`` (comma-separated names).

    Raises:
        ValueError: unknown rule names or levels out of order (an ``AdaptCLIPError``).
    """
    names = tuple(sorted({n.strip() for n in (off or "").split(",") if n.strip()}))
    try:
        return GateConfig(enabled=enabled, off=names, **kwargs)
    except ValueError as err:
        raise GateSettingError(str(err)) from err
