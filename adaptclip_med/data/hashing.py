"""Perceptual hashes that survive flips, 90° turns, small rotations and contrast changes.

Hash of one image: grey, 32×32 (box filter), **rank-equalised** (so any monotonic contrast or gamma
change gives the same input), 2-D DCT, the 8×8 lowest frequencies without DC → 63 bits (above their
median). Flips and transposes only permute / negate DCT coefficients, so the 8 dihedral variants of a
hash come from one DCT. Two images are near-duplicates when the Hamming distance between one's
variants and the other's hash is ``<= threshold`` (default 8 of 63 bits: on BrainMRI, 10 already
pairs images of different patients). Byte-identical files are found by SHA-256.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.fft import dctn
from scipy.stats import rankdata

from ..errors import ImageReadError
from .records import IMAGE_SUFFIXES, Record, has_suffix

HASH_SIDE = 32
LOW = 8
DEFAULT_THRESHOLD = 8


def _small_grey(record: Record) -> np.ndarray:
    """``(32, 32)`` float grey thumbnail of a record's image (JPEG decoded at reduced scale)."""
    if has_suffix(record.image, IMAGE_SUFFIXES) and record.slice_index is None:
        try:
            with Image.open(record.image) as img:
                img.draft("L", (HASH_SIDE * 2, HASH_SIDE * 2))
                grey = img.convert("L") if img.mode not in ("I", "I;16", "F") else img.convert("F")
                return np.asarray(grey.resize((HASH_SIDE, HASH_SIDE), Image.BOX), dtype=np.float64)
        except OSError as exc:
            raise ImageReadError(record.image, f"cannot be decoded ({exc})", "re-download it") from exc
    from .transforms import build_transforms

    u8 = build_transforms(HASH_SIDE, with_mask=False)(record.as_dict())["image_u8"]
    grey = Image.fromarray(np.asarray(u8)[..., 0])
    return np.asarray(grey.resize((HASH_SIDE, HASH_SIDE), Image.BOX), dtype=np.float64)


def dct_block(record: Record) -> np.ndarray:
    """The ``(8, 8)`` low-frequency DCT block of the rank-equalised thumbnail."""
    grey = _small_grey(record)
    ranks = rankdata(grey, method="average").reshape(grey.shape) / grey.size
    return dctn(ranks, norm="ortho")[:LOW, :LOW]


def _bits(block: np.ndarray) -> np.ndarray:
    coeffs = block.reshape(-1)[1:]
    return coeffs > np.median(coeffs)


def dihedral_bits(block: np.ndarray) -> np.ndarray:
    """``(8, 63)`` bool: the hash of the image under its 8 flips/transposes (identity first)."""
    u = (-1.0) ** np.arange(LOW)
    flip_rows = block * u[:, None]  # vertical flip negates odd row frequencies
    flip_cols = block * u[None, :]  # horizontal flip negates odd column frequencies
    both = block * u[:, None] * u[None, :]
    variants = [block, flip_rows, flip_cols, both]
    variants += [v.T for v in variants]
    return np.stack([_bits(v) for v in variants])


class PerceptualHasher:
    """Hashes records once and caches them by record key (an instance cache, no global state)."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.threshold = int(threshold)
        self._cache: dict[str, np.ndarray] = {}

    def variants(self, record: Record) -> np.ndarray:
        """``(8, 63)`` bool dihedral hashes of ``record`` (cached)."""
        key = record.key
        if key not in self._cache:
            self._cache[key] = dihedral_bits(dct_block(record))
        return self._cache[key]

    def matrix(self, records: Sequence[Record]) -> np.ndarray:
        """``(R, 8, 63)`` bool hashes of ``records``."""
        if not records:
            return np.zeros((0, 8, LOW * LOW - 1), dtype=bool)
        return np.stack([self.variants(r) for r in records])

    def distances(self, a: Sequence[Record], b: Sequence[Record]) -> np.ndarray:
        """``(len(a), len(b))`` minimum Hamming distance over the 8 variants of each ``a``."""
        ha = self.matrix(a)  # (A, 8, 63)
        hb = self.matrix(b)[:, 0]  # (B, 63)
        if len(ha) == 0 or len(hb) == 0:
            return np.zeros((len(ha), len(hb)), dtype=np.int64)
        fa = ha.reshape(-1, ha.shape[-1]).astype(np.int32)
        fb = hb.astype(np.int32)
        # Hamming = |a| + |b| − 2 a·b on 0/1 vectors
        d = fa.sum(1)[:, None] + fb.sum(1)[None, :] - 2 * fa @ fb.T  # (A·8, B)
        return d.reshape(len(ha), 8, len(hb)).min(axis=1)

    def near(self, a: Sequence[Record], b: Sequence[Record]) -> np.ndarray:
        """``(len(a), len(b))`` bool: near-duplicate pairs."""
        return self.distances(a, b) <= self.threshold


def duplicate_groups(records: Sequence[Record], hasher: PerceptualHasher,
                     others: Sequence[Record] = ()) -> list[list[str]]:
    """Connected groups (size ≥ 2) of near-duplicate images.

    With ``others``, only groups holding records of both lists are returned (cross-set duplicates).
    """
    allrec = list(records) + list(others)
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
    n = len(records)
    out = []
    for members in groups.values():
        if len(members) < 2 or (others and not (min(members) < n <= max(members))):
            continue
        out.append(sorted(allrec[i].key for i in members))
    return sorted(out)


def unique_keys(groups: Iterable[list[str]]) -> set[str]:
    """All keys that belong to some group."""
    return {k for g in groups for k in g}


def file_path(record: Record) -> Path:
    """The file behind a record (the volume for slices)."""
    return Path(record.image)
