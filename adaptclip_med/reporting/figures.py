"""Paper-ready figures (matplotlib Agg, PDF + PNG at 300 dpi, one style).

* ``figures/roc_pr_<dataset>``: image-level ROC and PR curves (step-wise), one colour per shot count and
  one curve per prompt seed (classes pooled); the legend gives the mean over seeds of the drawn curves'
  AUROC / AUPR, and the figure says so (the tables average per class instead, which equals the pooled
  value only for a single class);
* ``figures/qualitative_<dataset>``: a grid of image | map | overlay rows (the top-scored kept maps);
* ``figures/paper_comparison``: our I-AUROC / P-AUPR next to the paper's reference numbers
  (``../shared/docs/adaptclip-method.md`` §7) where the run covers the same data sets and setting.

Every figure of a run on an untrained model carries the run's notice burned in
(:func:`adaptclip_med.reporting.labels.mark_figure`) and in its PNG ``Description`` / PDF ``Subject``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from adaptclip_med.metrics import aupr, auroc
from adaptclip_med.reporting.labels import mark_figure, png_metadata
from adaptclip_med.reporting.overlays import draw_overlay
from adaptclip_med.runtime.io import atomic_path

STYLE = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
         "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100}
DPI = 300

#: Paper reference numbers (%): (data sets averaged, shots, metric) -> value (spec §7).
PAPER_REFERENCE: dict[tuple[tuple[str, ...], int, str], float] = {
    (("mvtec",), 0, "I-AUROC"): 93.5, (("mvtec",), 0, "P-AUPR"): 38.3,
    (("mvtec",), 1, "I-AUROC"): 94.2, (("mvtec",), 1, "P-AUPR"): 52.5,
    (("visa",), 0, "I-AUROC"): 84.8, (("visa",), 0, "P-AUPR"): 26.1,
    (("visa",), 1, "I-AUROC"): 92.0, (("visa",), 1, "P-AUPR"): 38.8,
    (("br35h", "covid19"), 0, "I-AUROC"): 90.7,
    (("kvasir", "endo"), 0, "P-AUPR"): 48.7,
}


@contextmanager
def paper_style() -> Any:
    """The shared rc style of every figure."""
    with matplotlib.rc_context(STYLE):
        yield


def save_figure(fig: Figure, stem: Path, notice: str | None = None) -> list[Path]:
    """Write ``<stem>.pdf`` and ``<stem>.png`` (300 dpi) atomically, ``notice`` burned in when given."""
    mark_figure(fig, notice)
    paths = []
    for fmt in ("pdf", "png"):
        path = stem.with_suffix(f".{fmt}")
        meta = png_metadata(notice) if fmt == "png" else ({"Subject": notice} if notice else {})
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight", metadata=meta)
        paths.append(path)
    return paths


def roc_pr_figure(per_image: pd.DataFrame, dataset: str) -> Figure | None:
    """ROC and PR panels of one data set (``None`` when no shot setting has both labels).

    One colour per shot count, one curve per prompt seed (classes pooled); legend: the mean over the
    seeds of the drawn curves' AUROC / AUPR, and how many seeds they are.
    """
    df = per_image[per_image["dataset"] == dataset]
    with paper_style():
        fig = Figure(figsize=(6.4, 3.3), constrained_layout=True)
        ax_roc, ax_pr = fig.subplots(1, 2)
        drawn, n_classes = 0, df["class"].nunique() if "class" in df else 1
        for i, (shots, by_k) in enumerate(df.groupby("shots")):
            colour, aurocs, auprs = f"C{i}", [], []
            for _, g in by_k.groupby("seed"):
                if g["label"].nunique() < 2:
                    continue
                s, y = g["score"].to_numpy(), g["label"].to_numpy()
                fpr, tpr, _ = roc_curve(y, s)
                prec, rec, _ = precision_recall_curve(y, s)
                ax_roc.plot(fpr, tpr, color=colour, linewidth=1.0, alpha=0.8)
                ax_pr.plot(rec, prec, color=colour, linewidth=1.0, alpha=0.8, drawstyle="steps-post")
                aurocs.append(auroc(s, y))
                auprs.append(aupr(s, y))
            if not aurocs:
                continue
            seeds = "zero-shot" if shots == 0 else f"{len(aurocs)} seed{'s' * (len(aurocs) > 1)}"
            ax_roc.plot([], [], color=colour, label=f"k = {shots}, {seeds}: AUROC {100 * np.mean(aurocs):.1f}")
            ax_pr.plot([], [], color=colour, label=f"k = {shots}, {seeds}: AUPR {100 * np.mean(auprs):.1f}")
            drawn += 1
        if not drawn:
            return None
        ax_roc.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=0.8)
        ax_roc.set(xlabel="false-positive rate (1 − specificity)", ylabel="true-positive rate (sensitivity)",
                   title=f"{dataset}: ROC")
        ax_pr.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title=f"{dataset}: precision-recall")
        for ax in (ax_roc, ax_pr):
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.legend(loc="lower right" if ax is ax_roc else "lower left")
        pooled = "one class" if n_classes == 1 else f"{n_classes} classes pooled"
        fig.suptitle(f"Image level, {pooled}; one curve per prompt seed; legend: mean over the seeds"
                     + ("" if n_classes == 1 else " (the tables average per class instead)"), fontsize=7)
    return fig


def qualitative_grid(rows: list[dict[str, Any]], vmin: float, vmax: float, title: str = "") -> Figure:
    """Grid of image | map | overlay rows; each row dict has ``image``, ``map``, optional ``mask``,
    ``threshold`` and ``label`` (short text, no identifiers)."""
    with paper_style():
        fig = Figure(figsize=(6.6, 2.2 * len(rows)), constrained_layout=True)
        axes = fig.subplots(len(rows), 3, squeeze=False)
        for ax_row, row in zip(axes, rows, strict=True):
            draw_overlay(ax_row, row["image"], row["map"], vmin=vmin, vmax=vmax, threshold=row.get("threshold"),
                         gt_mask=row.get("mask"), colorbar=True)
            ax_row[0].set_title(row.get("label", "image"))
        if title:
            fig.suptitle(title)
    return fig


def paper_comparison(summary: pd.DataFrame) -> tuple[Figure | None, pd.DataFrame]:
    """Bar chart of our numbers next to the paper's; also returns the matched pairs as a frame."""
    avg = summary[summary["class"].isin(["Avg"]) | ~summary["dataset"].isin(
        summary.loc[summary["class"] == "Avg", "dataset"])]
    pairs = []
    for (sets, shots, metric), ref in PAPER_REFERENCE.items():
        sub = avg[(avg["dataset"].isin(sets)) & (avg["shots"] == shots) & (avg["dataset"] != "Avg")]
        sub = sub.drop_duplicates("dataset")
        if set(sub["dataset"]) != set(sets) or sub[metric].isna().any():
            continue
        pairs.append({"setting": f"{'+'.join(sets)}, k={shots}", "metric": metric,
                      "ours": 100 * float(sub[metric].mean()), "paper": ref})
    table = pd.DataFrame(pairs, columns=["setting", "metric", "ours", "paper"])
    if table.empty:
        return None, table
    with paper_style():
        fig = Figure(figsize=(max(3.2, 1.2 * len(table)), 2.8), constrained_layout=True)
        ax = fig.subplots()
        x = np.arange(len(table))
        ax.bar(x - 0.18, table["ours"], width=0.36, label="ours (this run)")
        ax.bar(x + 0.18, table["paper"], width=0.36, label="paper (reference)", color="0.6")
        ax.set_xticks(x, [f"{s}\n{m}" for s, m in zip(table["setting"], table["metric"], strict=True)])
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        ax.legend()
    return fig, table


def render_run_figures(out: Path, per_image: pd.DataFrame, summary: pd.DataFrame,
                       grid: dict[str, list[dict[str, Any]]], limits: tuple[float, float],
                       notice: str | None = None) -> list[Path]:
    """Every figure of a run under ``figures/`` (``notice`` burned into each); returns the written paths."""
    from adaptclip_med.reporting.provenance import slug

    written: list[Path] = []
    for dataset in sorted(per_image["dataset"].unique()):
        fig = roc_pr_figure(per_image, dataset)
        if fig is not None:
            written += save_figure(fig, out / "figures" / f"roc_pr_{slug(str(dataset))}", notice)
        if grid.get(dataset):
            fig = qualitative_grid(grid[dataset], *limits, title=f"{dataset}: highest-scored images")
            written += save_figure(fig, out / "figures" / f"qualitative_{slug(str(dataset))}", notice)
    fig, table = paper_comparison(summary)
    if fig is not None:
        written += save_figure(fig, out / "figures" / "paper_comparison", notice)
        from adaptclip_med.reporting.tables import write_csv

        write_csv(out / "figures" / "paper_comparison.csv", table)
    return written
