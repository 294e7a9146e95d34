"""Tables from hand-made parts: Avg rows, mean ± std over seeds, N/A cells with reasons, LaTeX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adaptclip_med.evaluation.config import EvalConfig, resolve_roots
from adaptclip_med.metrics import ALL_METRICS
from adaptclip_med.reporting.tables import display_frame, metrics_long_frame, summary_frame, write_tables
from adaptclip_med.runtime.errors import DataValidationError


def _part(dataset: str, cls: str, seed: int, auroc: float, paupr: float | None) -> dict:
    metrics = {m: {"value": 0.5, "reason": None, "bound": 0.0} for m in ALL_METRICS}
    metrics["I-AUROC"]["value"] = auroc
    metrics["P-AUPR"] = ({"value": paupr, "reason": None, "bound": 0.0} if paupr is not None
                         else {"value": None, "reason": "no ground-truth masks", "bound": 0.0})
    return {"dataset": dataset, "cls": cls, "shots": 1, "seed": seed, "metrics": metrics,
            "rows": [{"image_id": 0, "path": "x.png", "group": "", "label": 1, "score": 0.9}],
            "clinical": {"sens@95spec": {"value": None, "reason": "no normal images"}},
            "operating_point": {"reason": "needs at least 2 normal prompts"}, "decision": None}


@pytest.fixture
def records() -> list[dict]:
    return [
        _part("a", "c1", 10, 0.8, 0.4), _part("a", "c2", 10, 0.6, 0.2),
        _part("a", "c1", 20, 0.9, 0.5), _part("a", "c2", 20, 0.7, 0.3),
        _part("b", "only", 10, 0.5, None), _part("b", "only", 20, 0.7, None),
    ]


def test_avg_rows_and_std(records: list[dict]) -> None:
    s = summary_frame(metrics_long_frame(records)).set_index(["dataset", "class", "shots"])
    assert s.loc[("a", "c1", 1), "I-AUROC"] == pytest.approx(0.85)
    assert s.loc[("a", "c1", 1), "I-AUROC_std"] == pytest.approx(0.05)  # population std over 2 seeds
    # class average per seed: 0.7, 0.8 -> 0.75 ± 0.05
    assert s.loc[("a", "Avg", 1), "I-AUROC"] == pytest.approx(0.75)
    assert s.loc[("a", "Avg", 1), "I-AUROC_std"] == pytest.approx(0.05)
    # data-set average per seed: (0.7 + 0.5) / 2 = 0.6, (0.8 + 0.7) / 2 = 0.75 -> 0.675 ± 0.075
    assert s.loc[("Avg", "Avg", 1), "I-AUROC"] == pytest.approx(0.675)
    assert s.loc[("Avg", "Avg", 1), "I-AUROC_std"] == pytest.approx(0.075)
    # N/A metric of b is left out of the data-set average (mean of a's class averages only)
    assert np.isnan(s.loc[("b", "only", 1), "P-AUPR"])
    assert s.loc[("Avg", "Avg", 1), "P-AUPR"] == pytest.approx(0.35)
    assert "P-AUPR: no ground-truth masks" in s.loc[("b", "only", 1), "na_reasons"]
    assert ("b", "Avg", 1) not in s.index  # a single-class set has no class-average row
    assert list(s.index.get_level_values(0)) == ["a", "a", "a", "b", "Avg"]


def test_summary_reports_the_binned_bound_of_every_mean(records: list[dict]) -> None:
    # a/c1 and a/c2: P-AUROC binned with bounds 2e-5 / 4e-5 (seed 10) and 6e-5 / 0 (seed 20, c2 exact).
    for r, b in zip(records[:4], (2e-5, 4e-5, 6e-5, 0.0), strict=True):
        r["metrics"]["P-AUROC"]["bound"] = b
    s = summary_frame(metrics_long_frame(records)).set_index(["dataset", "class", "shots"])
    assert s.loc[("a", "c1", 1), "P-AUROC_bound"] == pytest.approx(4e-5)  # mean over seeds (2e-5, 6e-5)
    assert s.loc[("a", "c2", 1), "P-AUROC_bound"] == pytest.approx(2e-5)
    assert s.loc[("a", "Avg", 1), "P-AUROC_bound"] == pytest.approx(3e-5)  # per seed 3e-5, 3e-5
    assert s.loc[("b", "only", 1), "P-AUROC_bound"] == 0.0  # exact
    assert np.isnan(s.loc[("b", "only", 1), "P-AUPR_bound"])  # not applicable
    assert s.loc[("Avg", "Avg", 1), "P-AUPR_bound"] == 0.0


def test_display_and_files(records: list[dict], tmp_path: Path) -> None:
    disp = display_frame(summary_frame(metrics_long_frame(records)))
    row = disp[(disp["Dataset"] == "b")].iloc[0]
    assert row["I-AUROC"] == "60.0 ± 10.0" and row["P-AUPR"] == "N/A"
    config = EvalConfig(datasets=("a", "b"), roots=(("a", "."), ("b", ".")), seeds=(10, 20))
    write_tables(tmp_path, records, config)
    md = (tmp_path / "tables" / "main.md").read_text()
    notes = [line for line in md.splitlines() if line.startswith("- N/A")]
    assert notes == ["- N/A P-AUPR for b / only: no ground-truth masks"]  # by metric and the rows it concerns
    tex = (tmp_path / "tables" / "main.tex").read_text()
    assert r"60.0 $\pm$ 10.0" in tex and r"(\%)" in tex
    clinical = (tmp_path / "tables" / "clinical.md").read_text()
    assert "N/A (" not in clinical  # reasons once under the table, by metric and rows, not in every cell
    assert "- N/A Sens @ 95 % spec for a / c1, a / c2, b / only: no normal images\n" in clinical


def test_resolve_roots(tmp_path: Path) -> None:
    (tmp_path / "br35h").mkdir()
    (tmp_path / "kv").mkdir()
    assert resolve_roots(["br35h"], [str(tmp_path / "br35h")]) == (("br35h", str(tmp_path / "br35h")),)
    both = resolve_roots(["br35h", "kvasir"], [str(tmp_path), f"kvasir={tmp_path / 'kv'}"])
    assert both == (("br35h", str(tmp_path / "br35h")), ("kvasir", str(tmp_path / "kv")))
    with pytest.raises(DataValidationError, match="sub-folder named 'covid19'"):
        resolve_roots(["br35h", "covid19"], [str(tmp_path)])
    with pytest.raises(DataValidationError, match="not among --datasets"):
        resolve_roots(["br35h"], [f"endo={tmp_path}"])
    with pytest.raises(DataValidationError, match="no folder given"):
        resolve_roots(["br35h"], [])


def test_na_notes_group_rows_by_reason_and_metrics() -> None:
    from adaptclip_med.reporting.tables import na_notes

    items = [("br35h / brain", "P-AUROC", "no masks"), ("br35h / brain", "AUPRO", "no masks"),
             ("kvasir / colon", "I-AUROC", "no normals"), ("covid19 / chest", "P-AUROC", "no masks"),
             ("covid19 / chest", "AUPRO", "no masks"), ("br35h / brain", "P-AUROC", "no masks")]
    assert na_notes(items) == ["- N/A P-AUROC, AUPRO for br35h / brain, covid19 / chest: no masks",
                               "- N/A I-AUROC for kvasir / colon: no normals"]
    assert na_notes([]) == []
