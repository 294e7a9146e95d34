"""Common records of every data set: :class:`Record` (one image or slice) and :class:`DatasetIndex`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: File suffixes read as 2-D images (Pillow through MONAI ``PILReader``).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Suffixes read as DICOM (pydicom through ``data.readers.dicom_pixels``, a folder slice by slice: ``dicom_series``).
DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
#: Suffixes read as NIfTI volumes (``NibabelReader``).
NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
SUPPORTED_SUFFIXES: tuple[str, ...] = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES

SPLITS: tuple[str, ...] = ("train", "test", "prompt_pool")

Problem = tuple[str, str]
"""``(path, problem)``: one file that was skipped and why."""


@dataclass(frozen=True)
class Record:
    """One test image, prompt candidate or volume slice.

    Attributes:
        image: path of the image file (for a slice: the volume file or DICOM series folder).
        mask: path of the pixel mask (any value > 0 is foreground; JPEG masks > 127), or ``None``.
        label: 0 normal, 1 abnormal.
        cls: class / category name (``"brain"``, ``"bottle"``, ...).
        split: ``"train"`` (publisher's normal train split), ``"test"`` or ``"prompt_pool"``
            (held-out or user-supplied normal prompts).
        group: patient / volume / tile id when known, else ``None``.
        dataset: registered data set name.
        slice_index: index of the 2-D slice (or frame) in ``image`` for volumes, else ``None``.
    """

    image: str
    mask: str | None
    label: int
    cls: str
    split: str
    group: str | None
    dataset: str
    slice_index: int | None = None

    def as_dict(self) -> dict[str, object]:
        """Return the record as the sample dictionary :func:`build_transforms` consumes."""
        return {
            "image": self.image, "mask": self.mask, "label": self.label, "cls": self.cls,
            "split": self.split, "group": self.group, "dataset": self.dataset,
            "slice_index": self.slice_index,
        }

    @property
    def key(self) -> str:
        """A unique id: the image path, plus ``#slice`` for volume slices."""
        return self.image if self.slice_index is None else f"{self.image}#{self.slice_index}"


@dataclass
class DatasetIndex:
    """Everything :func:`load_dataset` found in one data set folder.

    Attributes:
        name: registered data set name.
        root: the folder that was read.
        records: test (query) records; held-out prompt images are *not* among them.
        prompt_pool: ``{cls: [normal Record, ...]}``: the only records prompts may be drawn from.
        problems: files skipped, with the reason (never silently dropped).
        warnings: files kept but worth a word, with the reason: an abnormal image whose mask is empty
            (kept, as the publisher labelled it), a DICOM series with a missing slice or a duplicate.
        prompt_note: why a class has no prompt pool (e.g. polyp sets), shown by :func:`draw_prompts`.
        options: the loader options used (hold-out size, prompt folder, ...), for provenance.
    """

    name: str
    root: Path
    records: list[Record]
    prompt_pool: dict[str, list[Record]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    prompt_note: str = ""
    warnings: list[Problem] = field(default_factory=list)
    options: dict[str, object] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        """Sorted class names of the test records and the prompt pools."""
        return sorted({r.cls for r in self.records} | set(self.prompt_pool))

    @property
    def has_masks(self) -> bool:
        """True when at least one abnormal test record has a pixel mask."""
        return any(r.mask is not None and r.label == 1 for r in self.records)

    @property
    def has_normals(self) -> bool:
        """True when the test records contain normal images (image-level AUROC is defined)."""
        return any(r.label == 0 for r in self.records)

    def all_records(self) -> Iterator[Record]:
        """Test records, then the prompt-pool records that belong to this set (not user folders)."""
        yield from self.records
        for pool in self.prompt_pool.values():
            yield from (r for r in pool if r.dataset == self.name)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{cls: {"normal", "abnormal", "masks"}}`` over test + own prompt-pool records.

        ``masks`` counts abnormal records with a mask (publishers' all-zero masks of normal images
        are not counted).
        """
        return {cls: _tally(recs) for cls, recs in self._by(lambda r: r.cls).items()}

    def split_counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{cls: {split: {"normal", "abnormal", "masks"}}}`` over test + own prompt-pool records."""
        return {cls: {split: _tally(part) for split, part in _group(recs, lambda r: r.split).items()}
                for cls, recs in self._by(lambda r: r.cls).items()}

    def _by(self, key: Callable[[Record], str]) -> dict[str, list[Record]]:
        return _group(self.all_records(), key)

    def summary(self) -> str:
        """One line per class: normal / abnormal / masks / prompt pool size."""
        lines = [f"{self.name} ({self.root}): {len(self.records)} test records"]
        for cls, row in self.counts().items():
            pool = len(self.prompt_pool.get(cls, []))
            lines.append(f"  {cls}: normal {row['normal']}, abnormal {row['abnormal']}, "
                         f"masks {row['masks']}, prompt pool {pool}")
        if self.problems:
            lines.append(f"  {len(self.problems)} problem(s)")
        if self.warnings:
            lines.append(f"  {len(self.warnings)} warning(s)")
        return "\n".join(lines)


def _group(records: Iterable[Record], key: Callable[[Record], str]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for rec in records:
        out.setdefault(key(rec), []).append(rec)
    return dict(sorted(out.items()))


def _tally(records: Iterable[Record]) -> dict[str, int]:
    row = {"normal": 0, "abnormal": 0, "masks": 0}
    for rec in records:
        row["abnormal" if rec.label else "normal"] += 1
        row["masks"] += int(rec.label == 1 and rec.mask is not None)
    return row


def has_suffix(path: str | Path, suffixes: Iterable[str]) -> bool:
    """Case-insensitive suffix test that understands ``.nii.gz``."""
    name = str(path).lower()
    return any(name.endswith(s) for s in suffixes)


def strip_suffix(name: str) -> str:
    """File stem without its (possibly double, ``.nii.gz``) suffix."""
    lower = name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def list_files(folder: Path, suffixes: Iterable[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Sorted files of ``folder`` (not recursive) with one of ``suffixes``; hidden files ignored."""
    suffixes = tuple(suffixes)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and has_suffix(p, suffixes))
