"""``evaluate --methods adaptclip winclip``: both methods on the same parts, side-by-side tables, the
paired comparison, and the Friedman test with its critical-difference figure from 3 data sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adaptclip_med.reporting.comparison import dataset_metric_table, write_method_comparison


def _per_image(datasets: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for d in datasets:
        labels = np.array([0] * 6 + [1] * 6)
        for method, shift in (("adaptclip", 1.0), ("winclip", 0.3)):
            scores = rng.normal(size=12) + shift * labels
            rows += [{"dataset": d, "class": d, "shots": 0, "seed": 1, "method": method, "image_id": i,
                      "path": f"{i}.png", "group": "", "label": int(y), "score": float(s)}
                     for i, (y, s) in enumerate(zip(labels, scores, strict=True))]
    return pd.DataFrame(rows)


def test_friedman_and_figure_from_three_data_sets(tmp_path: Path) -> None:
    per_image = _per_image(["a", "b", "c"])
    table = dataset_metric_table(per_image)
    assert list(table.columns) == ["adaptclip", "winclip"] and list(table.index) == ["a", "b", "c"]
    out = write_method_comparison(tmp_path, per_image, "untrained backbone — pipeline demo only")
    assert out["friedman"] is not None and out["friedman"].n_datasets == 3
    rows = pd.read_csv(tmp_path / "comparison.csv")
    assert set(rows["metric"]) == {"I-AUROC", "I-AUPR"} and len(rows) == 6
    assert "Friedman test over 3 data sets" in (tmp_path / "tables" / "comparison.md").read_text()
    assert (tmp_path / "figures" / "critical_difference.png").stat().st_size > 0


def test_no_friedman_below_three_data_sets(tmp_path: Path) -> None:
    out = write_method_comparison(tmp_path, _per_image(["a", "b"]))
    assert out["friedman"] is None
    assert "No Friedman test: the Friedman test needs at least 3 data sets" in (
        tmp_path / "tables" / "comparison.md").read_text()
    assert not (tmp_path / "figures").exists()


@pytest.mark.slow
def test_evaluate_two_methods(synthetic_root: Path, tmp_path: Path, tiny_args: list[str],
                              capsys: pytest.CaptureFixture[str]) -> None:
    from adaptclip_med.evaluate import main

    out = tmp_path / "run"
    args = ["--datasets", "folder", "--root", str(synthetic_root), "--shots", "0", "2", "--seeds", "1",
            "--batch-size", "4", "--overlays", "0", "--no-figures", *tiny_args, "--methods", "adaptclip", "winclip",
            "--out", str(out)]
    assert main(args) == 0
    per_image = pd.read_csv(out / "per_image.csv")
    assert list(per_image.columns[:5]) == ["dataset", "class", "shots", "seed", "method"]
    counts = per_image.groupby(["method", "shots"]).size()
    assert counts["adaptclip"].equals(counts["winclip"])  # the same images for both
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["method"][:2]) == ["adaptclip", "winclip"]  # side by side
    assert "| WinCLIP" in (out / "tables" / "main.md").read_text()
    comparison = pd.read_csv(out / "comparison.csv")
    assert set(comparison["k"]) == {0, 2} and set(comparison["method_b"]) == {"winclip"}
    assert sorted(set(comparison["metric"])) == sorted(["I-AUROC", "I-AUPR", "P-AUROC", "P-AUPR", "AUPRO"])
    pixel = comparison[comparison["metric"] == "P-AUROC"].set_index("k")
    for k in (0, 2):  # the rows carry the parts' own P-AUROC; the CI and p from the per-image histograms
        own = summary[(summary["shots"] == k) & (summary["method"] == "adaptclip")]["P-AUROC"].iloc[0]
        assert pixel.loc[k, "value_a"] == pytest.approx(own)
        assert pixel.loc[k, "ci_low"] < pixel.loc[k, "ci_high"] and 0 < pixel.loc[k, "p_value"] <= 1
        assert pixel.loc[k, "test"] == "paired-bootstrap (image)" and pixel.loc[k, "n_abnormal"] == 4
    assert sorted(p.name for p in (out / "parts").glob("*.pixels.npz")) == [
        "folder__folder__k0__s1.pixels.npz", "folder__folder__k0__s1__winclip.pixels.npz",
        "folder__folder__k2__s1.pixels.npz", "folder__folder__k2__s1__winclip.pixels.npz"]
    # a second run reuses every part, pixel histograms included, and writes the same comparison
    before = (out / "comparison.csv").read_bytes()
    capsys.readouterr()
    assert main(args) == 0
    assert "0 part(s) computed, 4 reused" in capsys.readouterr().out
    assert (out / "comparison.csv").read_bytes() == before
    assert (out / "tables" / "comparison.md").is_file() and (out / "tables" / "comparison.tex").is_file()
    assert sorted(p.name for p in (out / "parts").glob("*winclip.json")) == [
        "folder__folder__k0__s1__winclip.json", "folder__folder__k2__s1__winclip.json"]
