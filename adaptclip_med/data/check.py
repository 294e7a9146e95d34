"""``check``: decode every file of a data set, count it, and report problems and duplicates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..errors import AdaptCLIPError
from .hashing import PerceptualHasher, duplicate_groups
from .records import DatasetIndex, Problem, Record
from .registry import load_dataset
from .transforms import build_transforms

CHECK_SIZE = 32


@dataclass
class CheckReport:
    """Result of :func:`check_dataset` (``as_dict`` is the CLI's ``--json`` object)."""

    index: DatasetIndex
    problems: list[Problem]
    identical: list[list[str]] = field(default_factory=list)
    near_duplicates: list[list[str]] = field(default_factory=list)
    against: dict[str, object] | None = None
    searched: bool = True

    @property
    def ok(self) -> bool:
        """True when no file is unreadable or inconsistent."""
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        """``{"dataset", "root", "counts", "splits", "prompt_pool", "problems", ...}`` (JSON-ready)."""
        ix = self.index
        return {
            "dataset": ix.name, "root": str(ix.root), "counts": ix.counts(), "splits": ix.split_counts(),
            "prompt_pool": {c: len(v) for c, v in ix.prompt_pool.items()}, "prompt_note": ix.prompt_note,
            "problems": [{"path": p, "problem": why} for p, why in self.problems],
            "identical_groups": self.identical, "near_duplicate_groups": self.near_duplicates,
            "against": self.against,
            "options": {k: v for k, v in ix.options.items() if not k.startswith("_")},
        }

    def text(self) -> str:
        """Human-readable report."""
        lines = [self.index.summary()]
        for cls, splits in self.index.split_counts().items():
            for split, row in splits.items():
                lines.append(f"  {cls}/{split}: normal {row['normal']}, abnormal {row['abnormal']}, "
                             f"masks {row['masks']}")
        if self.index.prompt_note:
            lines.append(f"  note: {self.index.prompt_note}")
        lines.append(f"problems: {len(self.problems)}")
        lines += [f"  {p}: {why}" for p, why in self.problems]
        if not self.searched:
            lines.append("duplicates: not searched (--no-duplicates)")
            return "\n".join(lines)
        lines.append(f"byte-identical groups: {len(self.identical)}")
        lines += [f"  {' = '.join(Path(x).name for x in g)}" for g in self.identical]
        lines.append(f"near-duplicate groups: {len(self.near_duplicates)}")
        lines += [f"  {' ~ '.join(Path(x).name for x in g)}" for g in self.near_duplicates]
        if self.against is not None:
            groups = self.against["near_duplicate_groups"]
            lines.append(f"near-duplicates with {self.against['dataset']}: {len(groups)} group(s), "
                         f"{self.against['records_with_match']} record(s) of {self.index.name} involved")
        return "\n".join(lines)


def decode_all(records: list[Record], *, progress: bool = False) -> list[Problem]:
    """Run the full loading pipeline (tiny output size) on every record; return the failures."""
    pipeline = build_transforms(CHECK_SIZE)
    problems: list[Problem] = []
    for rec in tqdm(records, desc="decode", disable=not progress, unit="img"):
        try:
            pipeline({"image": rec.image, "mask": rec.mask, "slice_index": rec.slice_index})
        except AdaptCLIPError as exc:
            problems.append((getattr(exc, "path", rec.image), getattr(exc, "problem", str(exc))))
    return problems


def _identical(records: list[Record]) -> list[list[str]]:
    from ..io import sha256_file

    by_sha: dict[str, list[str]] = {}
    for rec in records:
        if rec.slice_index is None and Path(rec.image).is_file():
            by_sha.setdefault(sha256_file(rec.image), []).append(rec.image)
    return sorted(sorted(g) for g in by_sha.values() if len(g) > 1)


def check_dataset(name: str, root: str | Path | None, *, against: tuple[str, str | Path] | None = None,
                  strict: bool = False, duplicates: bool = True, decode: bool = True, progress: bool = False,
                  load: Callable[..., DatasetIndex] = load_dataset, **options: object) -> CheckReport:
    """Load, decode and de-duplicate a data set (optionally against a second one).

    ``decode=False`` skips the full decode of every file (the duplicate search still reads them).

    Raises:
        DataValidationError: missing folder, or any loader problem when ``strict``.
    """
    index = load(name, root, strict=strict, **options)
    records = list(index.all_records())
    problems = list(index.problems) + (decode_all(records, progress=progress) if decode else [])
    report = CheckReport(index, problems, searched=duplicates)
    if duplicates:
        hasher = PerceptualHasher()
        readable = [r for r in records if r.image not in {p for p, _ in problems}]
        report.identical = _identical(readable)
        report.near_duplicates = duplicate_groups(readable, hasher)
        if against is not None:
            other = load(against[0], against[1])
            others = list(other.all_records())
            groups = duplicate_groups(readable, hasher, others)
            mine = {r.key for r in readable}
            report.against = {
                "dataset": other.name, "root": str(other.root), "near_duplicate_groups": groups,
                "records_with_match": len({k for g in groups for k in g if k in mine}),
            }
    return report
