"""The paired comparison table (reporting.comparison): rows, Holm across data sets, files, CD figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from adaptclip_med.metrics import aupr, auroc, delong_test, friedman_nemenyi, holm, paired_bootstrap
from adaptclip_med.reporting.comparison import (
    COMPARISON_COLUMNS,
    comparison_frame,
    critical_difference_figure,
    save_critical_difference,
    write_comparison,
)
from adaptclip_med.reporting.labels import UNTRAINED_BACKBONE


def _per_image(seed: int = 0, n: int = 200, groups: bool = False) -> pd.DataFrame:
    """Two data sets; on "strong" method A is clearly better, on "same" the two methods are identical."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, gap in (("strong", 2.0), ("same", None)):
        y = np.repeat([0, 1], n // 2)
        noise = rng.normal(size=n)
        a = noise + (gap if gap is not None else 1.0) * y
        b = a.copy() if gap is None else noise + 0.3 * y + rng.normal(size=n)
        for method, s in (("adaptclip", a), ("winclip", b)):
            for i in range(n):
                row = {"dataset": dataset, "class": "brain", "shots": 0, "seed": 10, "method": method,
                       "image_id": f"{dataset}-{i}", "label": int(y[i]), "score": float(s[i])}
                if groups:
                    row["group"] = f"p{i // 4}"
                rows.append(row)
    return pd.DataFrame(rows)


def test_rows_columns_and_values() -> None:
    per_image = _per_image()
    rows = comparison_frame(per_image, "adaptclip", "winclip", n_boot=300, seed=1)
    assert list(rows.columns) == COMPARISON_COLUMNS
    assert len(rows) == 4
    assert set(rows["metric"]) == {"I-AUROC", "I-AUPR"}
    assert set(rows["k"]) == {0} and set(rows["seed"]) == {10}

    strong = per_image[per_image["dataset"] == "strong"]
    a = strong[strong["method"] == "adaptclip"]
    b = strong[strong["method"] == "winclip"]
    y = a["label"].to_numpy()
    ref = delong_test(a["score"].to_numpy(), b["score"].to_numpy(), y)
    roc = rows[(rows["dataset"] == "strong") & (rows["metric"] == "I-AUROC")].iloc[0]
    assert roc["value_a"] == pytest.approx(auroc(a["score"].to_numpy(), y))
    assert (roc["delta"], roc["ci_low"], roc["ci_high"], roc["p_value"]) == pytest.approx(
        (ref.delta, ref.ci_low, ref.ci_high, ref.p_value))
    assert roc["test"] == "delong" and (roc["n_normal"], roc["n_abnormal"]) == (100, 100)
    assert roc["p_value"] < 0.01 and roc["ci_low"] > 0

    pr = rows[(rows["dataset"] == "strong") & (rows["metric"] == "I-AUPR")].iloc[0]
    ref = paired_bootstrap(aupr, a["score"].to_numpy(), b["score"].to_numpy(), y, n_boot=300, seed=1)
    assert pr["value_b"] == pytest.approx(aupr(b["score"].to_numpy(), y))
    assert (pr["delta"], pr["ci_low"], pr["ci_high"], pr["p_value"]) == pytest.approx(
        (ref.delta, ref.ci_low, ref.ci_high, ref.p_value))
    assert pr["test"] == "paired-bootstrap (image)" and pr["p_value"] < 0.01

    same = rows[rows["dataset"] == "same"]
    assert (same["delta"] == 0).all() and (same["p_value"] == 1).all() and (same["p_holm"] == 1).all()

    # Holm across the two data sets of each metric
    for metric in ("I-AUROC", "I-AUPR"):
        fam = rows[rows["metric"] == metric]
        np.testing.assert_allclose(fam["p_holm"], holm(fam["p_value"]))
    assert roc["p_holm"] == pytest.approx(min(1.0, 2 * roc["p_value"]))

    # deterministic
    again = comparison_frame(per_image, "adaptclip", "winclip", n_boot=300, seed=1)
    pd.testing.assert_frame_equal(rows, again)


def test_groups_are_resampled_and_methods_inferred() -> None:
    rows = comparison_frame(_per_image(groups=True), n_boot=100)
    assert set(rows["method_a"]) == {"adaptclip"} and set(rows["method_b"]) == {"winclip"}
    assert set(rows.loc[rows["metric"] == "I-AUPR", "test"]) == {"paired-bootstrap (patient)"}


def test_undefined_part_keeps_its_row() -> None:
    df = _per_image(n=20)
    # one abnormal image only in "same": DeLong undefined, AUROC defined
    df = df[~((df["dataset"] == "same") & (df["label"] == 1) & (df["image_id"] != "same-19"))]
    rows = comparison_frame(df, "adaptclip", "winclip", n_boot=50)
    row = rows[(rows["dataset"] == "same") & (rows["metric"] == "I-AUROC")].iloc[0]
    assert not np.isnan(row["value_a"]) and np.isnan(row["p_value"]) and np.isnan(row["p_holm"])
    # the Holm family of I-AUROC holds one finite p-value: unadjusted
    strong = rows[(rows["dataset"] == "strong") & (rows["metric"] == "I-AUROC")].iloc[0]
    assert strong["p_holm"] == strong["p_value"]


def test_mismatched_images_are_refused() -> None:
    df = _per_image(n=20)
    drop = (df["method"] == "winclip") & (df["image_id"] == "strong-3")
    with pytest.raises(ValueError, match="different images"):
        comparison_frame(df[~drop], "adaptclip", "winclip")
    with pytest.raises(ValueError, match="not in the results"):
        comparison_frame(df, "adaptclip", "patchcore")
    with pytest.raises(ValueError, match="lack column"):
        comparison_frame(df.drop(columns=["score"]), "adaptclip", "winclip")


def test_write_comparison(tmp_path) -> None:
    rows = comparison_frame(_per_image(), "adaptclip", "winclip", n_boot=200)
    paths = write_comparison(tmp_path, rows, notice=UNTRAINED_BACKBONE)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "comparison.csv", "tables/comparison.md", "tables/comparison.tex"]
    back = pd.read_csv(tmp_path / "comparison.csv", keep_default_na=False)
    assert list(back.columns) == [*COMPARISON_COLUMNS, "notice"]
    assert set(back["notice"]) == {UNTRAINED_BACKBONE}
    np.testing.assert_allclose(back["delta"].astype(float), rows["delta"])
    md = (tmp_path / "tables" / "comparison.md").read_text()
    assert "adaptclip vs winclip" in md and UNTRAINED_BACKBONE in md and "DeLong" in md
    header = md.splitlines()[2]
    assert "adaptclip" in header and "winclip" in header and "p (Holm)" in header
    tex = (tmp_path / "tables" / "comparison.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\%" in tex
    # a trained model: the notice column is there, empty
    write_comparison(tmp_path, rows)
    back = pd.read_csv(tmp_path / "comparison.csv", keep_default_na=False)
    assert set(back["notice"]) == {""}


def test_critical_difference_figure(tmp_path) -> None:
    table = pd.DataFrame({"AdaptCLIP": [0.90, 0.85, 0.95, 0.70, 0.88, 0.99],
                          "WinCLIP": [0.80, 0.80, 0.90, 0.75, 0.86, 0.97],
                          "random": [0.70, 0.60, 0.50, 0.60, 0.80, 0.90]})
    result = friedman_nemenyi(table)
    assert result.differ == (("AdaptCLIP", "random"),)
    fig = critical_difference_figure(result, title="I-AUROC")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.startswith("AdaptCLIP (1.17)") for t in texts) and any("CD = 1.35" in t for t in texts)
    paths = save_critical_difference(tmp_path, result, notice=UNTRAINED_BACKBONE, title="I-AUROC")
    assert sorted(p.name for p in paths) == ["critical_difference.pdf", "critical_difference.png"]
    with Image.open(tmp_path / "figures" / "critical_difference.png") as im:
        assert im.info["Description"] == UNTRAINED_BACKBONE
        assert im.width > 1000
