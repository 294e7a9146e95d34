"""Files a run left out, and why: one record type and one way to list them, for ``evaluate`` and ``train``.

Every run that reads a data set follows the same policy (docs/data.md, "Unreadable and unusable files"):
a file that cannot be read or used is skipped, and each skipped file is listed with its reason

* on screen: the count and the first :data:`SHOWN_SKIPS` (:func:`screen_lines`);
* in ``skipped.csv`` in the run folder: ``path,reason,dataset,class``, paths relative to the data
  set's folder (:func:`write_skipped`, written atomically);
* in the run's ``run.json`` under ``"skipped"``: count, file and the first few (:func:`skipped_summary`).

Files that are kept but worth a word (an abnormal image whose mask is empty, a distorted aspect ratio)
are listed the same way, in ``warnings.csv`` and under ``"warnings"`` (``evaluate``).

``--strict`` stops at the first such file instead, with one line naming it (:func:`strict_error`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptclip_med.runtime.errors import AdaptCLIPError, DataValidationError, ImageReadError
from adaptclip_med.runtime.io import atomic_write_text

#: Skipped files named on screen and in ``run.json`` (all of them are in ``skipped.csv``).
SHOWN_SKIPS = 5

SKIPPED_CSV = "skipped.csv"
#: Files kept with a warning (same columns as ``skipped.csv``).
WARNINGS_CSV = "warnings.csv"

#: Exceptions a reader or transform raises for a file it cannot use: the file is skipped with the reason.
READ_ERRORS: tuple[type[BaseException], ...] = (ImageReadError, AdaptCLIPError, OSError, ValueError, RuntimeError,
                                                IndexError, KeyError)


@dataclass(frozen=True)
class Skip:
    """One input file left out of the run, and why (a row of ``skipped.csv``).

    Attributes:
        dataset: the data set's label.
        path: the file, relative to the data set's folder (``normal-prompts/...`` for a prompt folder).
        reason: one line.
        cls: the class, when known (files that failed while reading pixels); "" for loader problems.
    """

    dataset: str
    path: str
    reason: str
    cls: str = ""


def one_line(text: object) -> str:
    """The first non-blank line of ``text`` (a reason is always one line; ``"unreadable"`` when blank)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "unreadable"


def reason_of(err: BaseException, image: str | Path) -> str:
    """One line, without an absolute path: the reader's problem (naming the mask when the mask failed)."""
    if isinstance(err, ImageReadError):
        return err.problem if err.path == str(image) else f"mask {Path(err.path).name}: {err.problem}"
    text = str(err)
    return one_line(text).replace(str(image), Path(image).name) if text.strip() else type(err).__name__


def strict_error(path: str | Path, reason: str) -> DataValidationError:
    """The one-line ``--strict`` error for the first unusable file."""
    reason = one_line(reason).removesuffix("; skipped")
    return DataValidationError(f"{path}: {reason} (--strict stops at the first unusable file)")


def write_skipped(out: Path, skips: Sequence[Skip], name: str = SKIPPED_CSV) -> Path:
    """``skipped.csv`` (or ``name``, e.g. :data:`WARNINGS_CSV`): ``path,reason,dataset,class`` (root-relative
    paths; header only when the list is empty)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "reason", "dataset", "class"])
    writer.writerows([s.path, s.reason, s.dataset, s.cls] for s in skips)
    atomic_write_text(Path(out) / name, buf.getvalue())
    return Path(out) / name


def skipped_summary(skips: Sequence[Skip], name: str = SKIPPED_CSV) -> dict[str, Any]:
    """What ``run.json`` says about skipped files (or those of ``name``): count, file, the first few."""
    return {"count": len(skips), "file": name,
            "first": [{"dataset": s.dataset, "class": s.cls, "path": s.path, "reason": s.reason}
                      for s in skips[:SHOWN_SKIPS]]}


def screen_lines(skips: Sequence[Skip], csv_path: Path, what: str = "skipped") -> list[str]:
    """What a CLI prints about skipped files (``what``: "kept with a warning" for warnings): the count, the
    first few, how many more (none: no line)."""
    if not skips:
        return []
    lines = [f"{len(skips)} file(s) {what} — see {csv_path}:"]
    lines += [f"  {s.dataset}: {s.path}: {s.reason}" for s in skips[:SHOWN_SKIPS]]
    if len(skips) > SHOWN_SKIPS:
        lines.append(f"  ... and {len(skips) - SHOWN_SKIPS} more")
    return lines
