"""Reporting of evaluation runs: tables, overlays, figures, HTML.

:func:`load_run` reads a finished run folder back (for the HTML report, notebooks, or comparisons).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from adaptclip_med.runtime.errors import DataValidationError


@dataclass
class RunFiles:
    """What one run folder holds.

    Attributes:
        root: the run folder.
        run: ``run.json`` (provenance; ``status`` is ``"complete"`` once every output is written).
        summary: ``summary.csv`` (metric means/stds per data set × class × shots, ``Avg`` rows).
        per_image: ``per_image.csv``.
        tables: Markdown / LaTeX table paths (``tables/*.md``, ``tables/*.tex``).
        figures: figure PNG paths (a PDF sits beside each).
        overlays: overlay PNG paths.
        overlay_index: ``overlays/index.csv`` (file → data set, class, shots, image id, score), or empty.
        skipped: ``skipped.csv`` (input files left out, with the reason), or empty.
    """

    root: Path
    run: dict[str, Any]
    summary: pd.DataFrame
    per_image: pd.DataFrame
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)
    overlay_index: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def complete(self) -> bool:
        """True when the run finished writing every output."""
        return self.run.get("status") == "complete"


def load_run(run_dir: str | Path) -> RunFiles:
    """Read a run folder written by ``python -m adaptclip_med.evaluate``.

    Raises:
        DataValidationError: the folder or its ``run.json`` / ``summary.csv`` is missing.
    """
    root = Path(run_dir)
    for name in ("run.json", "summary.csv", "per_image.csv"):
        if not (root / name).is_file():
            msg = (f"run folder {root}: {name} is missing; expected the --out folder of a finished "
                   "evaluation. Run (or resume) `python -m adaptclip_med.evaluate ... --out` with it")
            raise DataValidationError(msg)
    index = root / "overlays" / "index.csv"
    return RunFiles(
        root=root,
        run=json.loads((root / "run.json").read_text(encoding="utf-8")),
        summary=pd.read_csv(root / "summary.csv"),
        per_image=pd.read_csv(root / "per_image.csv"),
        tables=sorted([*(root / "tables").glob("*.md"), *(root / "tables").glob("*.tex")]),
        figures=sorted((root / "figures").glob("*.png")),
        overlays=sorted((root / "overlays").rglob("*.png")),
        overlay_index=pd.read_csv(index) if index.is_file() else pd.DataFrame(),
        skipped=(pd.read_csv(root / "skipped.csv", dtype=str, keep_default_na=False)
                 if (root / "skipped.csv").is_file() else pd.DataFrame()),
    )


__all__ = ["RunFiles", "load_run"]
