"""``check``: decode every file of a data set, count it, and report problems and duplicates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from adaptclip_med.data.layouts.dataset_registry import load_dataset, strict_message
from adaptclip_med.data.layouts.duplicates import PerceptualHasher, duplicate_groups
from adaptclip_med.data.layouts.groups import group_summary
from adaptclip_med.data.readers.screen import screen_error
from adaptclip_med.data.records import DatasetIndex, Problem, Record
from adaptclip_med.data.transforms.pipeline import build_transforms
from adaptclip_med.runtime.errors import DataValidationError

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
            "warnings": [{"path": p, "warning": why} for p, why in ix.warnings],
            "groups": group_summary(list(ix.all_records())),
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
        g = group_summary(list(self.index.all_records()))
        lines.append(f"groups: {g['groups']} patient/study group(s), {g['without_group']} of {g['records']} "
                     f"record(s) without one" + (" (image-level)" if g["unit"] == "image-level" else ""))
        lines += problems_text(self.problems)
        if self.index.warnings:
            lines.append(f"warnings: {len(self.index.warnings)} file(s) kept")
            lines += [f"  {p}: {why}" for p, why in self.index.warnings]
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


def decode_record(pipeline: Callable[[dict], dict], record: Record) -> tuple[dict | None, Problem | None]:
    """Run ``pipeline`` on one record: ``(sample, None)``, or ``(None, (image path, one-line reason))``.

    Never raises for a bad file: every failure (a reader's, MONAI's, NumPy's) becomes one line; a
    failure of the mask is reported under the image (the unit that is skipped) and names the mask.
    ``evaluate`` and ``datasets check`` share this rule.
    """
    try:
        return pipeline(record.as_dict()), None
    except Exception as exc:  # the skip policy: one line per file, never a traceback
        why = screen_error(exc)
        where = getattr(exc, "path", None)
        if record.mask is not None and where == record.mask:
            why = f"mask {Path(record.mask).name}: {why}"
        if record.slice_index is not None:
            why = f"slice {record.slice_index}: {why}"
        return None, (record.image, why)


def decode_all(records: list[Record], *, progress: bool = False) -> list[Problem]:
    """Run the full loading pipeline (tiny output size) on every record; return the failures.

    Every record is tried (a bad file never stops the scan); a volume with several failing slices is
    listed once, with its first reason and the count.
    """
    pipeline = build_transforms(CHECK_SIZE)
    failed: dict[str, list[str]] = {}
    for rec in tqdm(records, desc="decode", disable=not progress, unit="img"):
        _, problem = decode_record(pipeline, rec)
        if problem is not None:
            failed.setdefault(problem[0], []).append(problem[1])
    return [(path, whys[0] if len(whys) == 1 else f"{whys[0]} (and {len(whys) - 1} more slice(s))")
            for path, whys in failed.items()]


def problems_text(problems: list[Problem], first: int = 10) -> list[str]:
    """Screen lines: the count, then the first ``first`` problems (``--json`` has them all)."""
    lines = [f"problems: {len(problems)} file(s) skipped or inconsistent"]
    lines += [f"  {p}: {why}" for p, why in problems[:first]]
    if len(problems) > first:
        lines.append(f"  ... and {len(problems) - first} more (--json lists every one)")
    return lines


def _without(index: DatasetIndex, paths: set[str]) -> DatasetIndex:
    """A copy of ``index`` without the records (test and prompt pool) of ``paths``."""
    if not paths:
        return index
    keep = [r for r in index.records if r.image not in paths]
    pools = {c: [r for r in pool if r.image not in paths] for c, pool in index.prompt_pool.items()}
    return replace(index, records=keep, prompt_pool=pools)


def _identical(records: list[Record]) -> list[list[str]]:
    from adaptclip_med.runtime.io import sha256_file

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
        DataValidationError: missing folder, or (``strict``) the first problem, in one line naming the file.
    """
    index = load(name, root, strict=strict, **options)
    records = list(index.all_records())
    problems = list(index.problems)
    if decode:
        listed = {p for p, _ in problems}
        failed = [p for p in decode_all(records, progress=progress) if p[0] not in listed]
        problems += failed
        if strict and problems:
            raise DataValidationError(strict_message(problems))
        index = _without(index, {p for p, _ in failed})  # the counts are of usable files
    report = CheckReport(index, problems, searched=duplicates)
    if duplicates:
        hasher = PerceptualHasher()
        skipped = {p for p, _ in problems}
        readable = [r for r in records if r.image not in skipped]
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
