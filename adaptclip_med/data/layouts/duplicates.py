"""Near-duplicate detection that survives flips, 90° turns, small rotations, rescaling and contrast.

Every image becomes a 48×48 grey thumbnail, **rank-equalised** (any monotonic contrast or gamma
change gives the same input). Its 16×16 lowest DCT frequencies (DC dropped, unit length) form a
255-value signature; the cosine of two signatures is the correlation of the two low-passed
thumbnails. The query side is tried under the 8 flips/transposes (sign and transpose patterns of
the DCT) × rotations of −6, −3, 0, 3, 6 degrees, and the best cosine is kept: near-duplicates at
≥ ``threshold`` (default 0.967).

Calibration on ../shared/datasets/brain_mri (150 images, all pairs, the closest case: brain MRI
slices all look alike at low resolution): edited copies score mirror ≥ 0.999, gamma 0.6 ≥ 0.996,
half size ≥ 0.993, vertical flip + 4° ≥ 0.969 (6° rotations drop to 0.935, so "small" means ≤ 4°);
the closest pairs of different images score ≤ 0.966, and the set's known duplicates ≥ 0.981.
Byte-identical files are found by SHA-256 (:mod:`adaptclip_med.data.check`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from scipy.fft import dctn
from scipy.ndimage import rotate
from scipy.stats import rankdata

from adaptclip_med.data.readers.formats import image_format
from adaptclip_med.data.readers.screen import screen_error
from adaptclip_med.data.records import Record
from adaptclip_med.runtime.errors import ImageReadError

SIDE = 48
LOW = 16
ANGLES: tuple[float, ...] = (-6.0, -3.0, 3.0, 6.0)
DEFAULT_THRESHOLD = 0.967


def _grey(record: Record, pipeline: Callable[[dict], dict] | None = None) -> Image.Image:
    """Grey Pillow image of a record (JPEG decoded at reduced scale; DICOM/NIfTI via ``pipeline``)."""
    if record.slice_index is None and image_format(record.image) == "pil":  # TIFF/DICOM by content: pipeline
        try:
            with Image.open(record.image) as img:
                img.draft("L", (SIDE * 2, SIDE * 2))
                if img.mode in ("I", "I;16", "I;16B", "F"):
                    a = np.asarray(img, dtype=np.float64)
                    return Image.fromarray(np.uint8(255 * (a - a.min()) / (np.ptp(a) + 1e-9)))
                return img.convert("L")
        except Exception:  # Pillow cannot read it (e.g. planar TIFF): the full pipeline decides
            pass
    if pipeline is None:
        from adaptclip_med.data.transforms.pipeline import build_transforms

        pipeline = build_transforms(SIDE, with_mask=False)
    try:
        u8 = pipeline(record.as_dict())["image_u8"]
    except Exception as exc:  # one line naming the file, whatever the reader raised
        raise ImageReadError(record.image, screen_error(exc)) from exc
    return Image.fromarray(np.asarray(u8)[..., 0])


def thumbnail(record: Record, pipeline: Callable[[dict], dict] | None = None) -> np.ndarray:
    """``(48, 48)`` float: rank-equalised grey thumbnail in ``(0, 1]``."""
    a = np.asarray(_grey(record, pipeline).resize((SIDE, SIDE), Image.BOX), dtype=np.float64)
    return rankdata(a, method="average").reshape(a.shape) / a.size


def _dct(thumb: np.ndarray) -> np.ndarray:
    block = dctn(thumb, norm="ortho")[:LOW, :LOW].copy()
    block[0, 0] = 0.0
    return block


def _dihedral(block: np.ndarray) -> np.ndarray:
    """``(8, 255)`` unit signatures of the 8 flips/transposes (identity first)."""
    u = (-1.0) ** np.arange(LOW)
    variants = [block, block * u[:, None], block * u[None, :], block * u[:, None] * u[None, :]]
    variants += [v.T for v in variants]
    flat = np.stack([v.reshape(-1)[1:] for v in variants])
    return flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-12)


class PerceptualHasher:
    """Caches per-record signatures (an instance cache keyed by :attr:`Record.key`, no global state)."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.threshold = float(threshold)
        self._thumb: dict[str, np.ndarray] = {}
        self._sig: dict[str, np.ndarray] = {}
        self._var: dict[str, np.ndarray] = {}
        self._pipeline: Callable[[dict], dict] | None = None  # DICOM/NIfTI reader, built on first use

    def signature(self, record: Record) -> np.ndarray:
        """``(255,)`` float32 unit signature of ``record`` (cached)."""
        if record.key not in self._sig:
            if self._pipeline is None:
                from adaptclip_med.data.transforms.pipeline import build_transforms

                self._pipeline = build_transforms(SIDE, with_mask=False)  # keeps decoded volumes
            thumb = thumbnail(record, self._pipeline)
            self._thumb[record.key] = thumb
            self._sig[record.key] = _dihedral(_dct(thumb))[0].astype(np.float32)
        return self._sig[record.key]

    def unreadable(self, records: Sequence[Record]) -> dict[str, str]:
        """``{record.key: reason}`` of the records whose signature cannot be computed (undecodable)."""
        failed: dict[str, str] = {}
        for rec in records:
            try:
                self.signature(rec)
            except ImageReadError as exc:
                failed[rec.key] = exc.problem
        return failed

    def variants(self, record: Record) -> np.ndarray:
        """``(40, 255)`` float32: signatures under 8 flips/transposes × 5 rotations (cached)."""
        if record.key not in self._var:
            self.signature(record)
            thumb = self._thumb[record.key]
            turned = [thumb] + [rotate(thumb, a, reshape=False, order=1, mode="nearest") for a in ANGLES]
            self._var[record.key] = np.concatenate([_dihedral(_dct(t)) for t in turned]).astype(np.float32)
        return self._var[record.key]

    def similarity(self, a: Sequence[Record], b: Sequence[Record], chunk: int = 64) -> np.ndarray:
        """``(len(a), len(b))`` best cosine over the variants of each ``a`` against each ``b``."""
        if not a or not b:
            return np.zeros((len(a), len(b)), dtype=np.float32)
        base = np.stack([self.signature(r) for r in b])  # (B, 255)
        rows = []
        for start in range(0, len(a), chunk):
            part = np.stack([self.variants(r) for r in a[start:start + chunk]])  # (C, 40, 255)
            rows.append((part.reshape(-1, part.shape[-1]) @ base.T).reshape(len(part), -1, len(b)).max(1))
        return np.concatenate(rows)

    def near(self, a: Sequence[Record], b: Sequence[Record]) -> np.ndarray:
        """``(len(a), len(b))`` bool: near-duplicate pairs."""
        return self.similarity(a, b) >= self.threshold


def duplicate_groups(records: Sequence[Record], hasher: PerceptualHasher,
                     others: Sequence[Record] = ()) -> list[list[str]]:
    """Connected groups (size ≥ 2) of near-duplicate images, as sorted record keys.

    With ``others``, only groups holding records of both lists are returned (cross-set duplicates).
    """
    allrec = list(records) + list(others)
    n = len(records)
    if others:  # cross links only: records × others
        near = np.zeros((len(allrec), len(allrec)), dtype=bool)
        near[:n, n:] = hasher.near(records, others)
    else:
        near = hasher.near(allrec, allrec)
    near = near | near.T
    parent = list(range(len(allrec)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(near, 1)), strict=True):
        parent[find(int(i))] = find(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(len(allrec)):
        groups.setdefault(find(i), []).append(i)
    out = []
    for members in groups.values():
        if len(members) < 2 or (others and not (min(members) < n <= max(members))):
            continue
        out.append(sorted(allrec[i].key for i in members))
    return sorted(out)
