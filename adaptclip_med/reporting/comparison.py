"""Comparison of two methods on the same images: the paired-statistics table and the critical-difference figure.

* :func:`comparison_frame`: per-image scores of two methods (``dataset, class, k`` (or ``shots``),
  ``seed, method, image_id, label, score`` [, ``group``]) → one row per data set × class × shots ×
  seed × metric with :data:`COMPARISON_COLUMNS`: I-AUROC by DeLong's test
  (:func:`adaptclip_med.metrics.delong_test`), I-AUPR by a paired bootstrap
  (:func:`adaptclip_med.metrics.paired_bootstrap`, over patients when ``group`` ids are known) and, for
  parts whose per-image pixel histograms are given (:class:`PartPixels`), P-AUROC, P-AUPR and AUPRO by
  the paired bootstrap of :func:`adaptclip_med.metrics.paired_bootstrap_pixels`; the p-values
  Holm-adjusted across the data sets (and classes) of each shots × seed × metric;
* :func:`write_comparison`: ``comparison.csv`` (the rows, then ``notice`` as every CSV of a run) and
  ``tables/comparison.md`` / ``.tex`` (in %, Δ and its CI in percentage points);
* :func:`critical_difference_figure` / :func:`save_critical_difference`: Demšar's diagram of a
  :func:`adaptclip_med.metrics.friedman_nemenyi` result (``figures/<name>.png`` and ``.pdf``, the
  untrained-model notice burned in as in every other figure).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from adaptclip_med.metrics import (
    FriedmanNemenyi,
    MetricUndefinedError,
    PairedComparison,
    PerImagePixelCounts,
    aupr,
    auroc,
    delong_test,
    holm,
    paired_bootstrap,
    paired_bootstrap_pixels,
)
from adaptclip_med.metrics.compare import COMPARED_PIXEL_METRICS
from adaptclip_med.reporting.figures import paper_style, save_figure
from adaptclip_med.reporting.labels import with_notice
from adaptclip_med.reporting.tables import _latex, with_notice_column, write_csv
from adaptclip_med.runtime.io import atomic_write_text

#: The columns of :func:`comparison_frame`, in order.
COMPARISON_COLUMNS = ["dataset", "class", "k", "seed", "method_a", "method_b", "metric", "value_a", "value_b",
                      "delta", "ci_low", "ci_high", "p_value", "p_holm", "test", "n_normal", "n_abnormal"]
#: The metrics of each part's rows (I-AUROC: DeLong; the others: paired bootstrap; pixel metrics where
#: the part's per-image pixel histograms are given).
COMPARED_METRICS = ("I-AUROC", "I-AUPR", *COMPARED_PIXEL_METRICS)
#: Default Holm family: every data set and class of one shots × seed × metric.
HOLM_FAMILY = ("k", "seed", "metric")
_KEYS = ["dataset", "class", "k", "seed"]


@dataclass(frozen=True)
class PartPixels:
    """One method's pixel data of one part, for the pixel rows of :func:`comparison_frame`.

    Attributes:
        counts: per-image histograms of the images in the part's pixel metrics (ids: ``image_id``).
        values: the part's own pixel metric values by name (exact, or binned finer than ``counts``); the
            rows report these, the bootstrap gives the CI and p-value.
    """

    counts: PerImagePixelCounts
    values: Mapping[str, float | None]


#: ``(dataset, class, k, seed, method)`` → that part's :class:`PartPixels`.
PixelsByPart = Mapping[tuple[Any, ...], PartPixels]


def _normalise(per_image: pd.DataFrame) -> pd.DataFrame:
    df = per_image.rename(columns={"shots": "k"}) if "k" not in per_image and "shots" in per_image else per_image
    missing = [c for c in [*_KEYS, "method", "image_id", "label", "score"] if c not in df]
    if missing:
        msg = (f"comparison: per-image results lack column(s) {', '.join(missing)}; expected dataset, class, k "
               "(or shots), seed, method, image_id, label, score and optionally group")
        raise ValueError(msg)
    return df


def _methods(df: pd.DataFrame, method_a: str | None, method_b: str | None) -> tuple[str, str]:
    present = list(dict.fromkeys(df["method"].astype(str)))
    if method_a is None or method_b is None:
        if len(present) != 2:
            raise ValueError(f"comparison: name method_a and method_b; the results hold {len(present)} methods "
                             f"({', '.join(present)})")
        method_a = method_a or next(m for m in present if m != method_b)
        method_b = method_b or next(m for m in present if m != method_a)
    for m in (method_a, method_b):
        if m not in present:
            raise ValueError(f"comparison: method {m!r} is not in the results ({', '.join(present)})")
    if method_a == method_b:
        raise ValueError(f"comparison: method_a and method_b are both {method_a!r}")
    return method_a, method_b


def _paired_part(key: tuple[Any, ...], a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    where = ", ".join(f"{k}={v}" for k, v in zip(_KEYS, key, strict=True))
    for name, part in (("a", a), ("b", b)):
        if part["image_id"].duplicated().any():
            raise ValueError(f"comparison ({where}): method {name} lists an image twice")
    merged = a.merge(b, on="image_id", suffixes=("_a", "_b"), how="inner")
    if len(merged) != len(a) or len(merged) != len(b):
        msg = (f"comparison ({where}): the two methods scored different images ({len(a)} and {len(b)}, "
               f"{len(merged)} in common); a paired test needs the same images")
        raise ValueError(msg)
    if (merged["label_a"].astype(int) != merged["label_b"].astype(int)).any():
        raise ValueError(f"comparison ({where}): the two methods' labels of an image disagree")
    return merged


def _groups(merged: pd.DataFrame) -> list[str] | None:
    if "group_a" not in merged:
        return None
    ids = ["" if pd.isna(g) else str(g) for g in merged["group_a"]]
    return ids if any(ids) else None


def _row(metric: str, result: PairedComparison | None, values: tuple[float, float], test: str,
         n_normal: int, n_abnormal: int) -> dict[str, Any]:
    if result is None:
        nan = math.nan
        return {"metric": metric, "value_a": values[0], "value_b": values[1], "delta": values[0] - values[1],
                "ci_low": nan, "ci_high": nan, "p_value": nan, "test": test, "n_normal": n_normal,
                "n_abnormal": n_abnormal}
    return {"metric": metric, "value_a": result.value_a, "value_b": result.value_b, "delta": result.delta,
            "ci_low": result.ci_low, "ci_high": result.ci_high, "p_value": result.p_value, "test": test,
            "n_normal": n_normal, "n_abnormal": n_abnormal}


def _safe(fn: Any, s: np.ndarray, y: np.ndarray) -> float:
    try:
        return float(fn(s, y))
    except MetricUndefinedError:
        return math.nan


def comparison_frame(per_image: pd.DataFrame, method_a: str | None = None, method_b: str | None = None, *,
                     n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                     family: Sequence[str] = HOLM_FAMILY, pixels: PixelsByPart | None = None) -> pd.DataFrame:
    """Paired comparison of two methods per data set × class × shots × seed: :data:`COMPARISON_COLUMNS`.

    ``delta = value_a - value_b``. I-AUROC: DeLong's test (``test`` = ``"delong"``; images independent).
    I-AUPR: paired bootstrap with the percentile CI and its inverted p-value (``test`` =
    ``"paired-bootstrap (image)"``, or ``"(patient)"`` when the part has ``group`` ids). A part where a test
    is undefined (fewer than 2 images of a label for DeLong, one label only) keeps its row with the
    metric values that exist and NaN for the rest. ``p_holm``: Holm's adjustment within each ``family``
    (default: all data sets and classes of one shots × seed × metric). With ``pixels`` for both methods
    of a part, its P-AUROC, P-AUPR and AUPRO rows follow (:func:`_pixel_rows`).

    Args:
        per_image: one row per method × image: ``dataset, class, k`` (or ``shots``), ``seed, method,
            image_id, label, score`` and optionally ``group`` (patient ids).
        method_a / method_b: the two methods (default: the two the frame holds, in order of appearance).
        n_boot / seed: bootstrap replicates and RNG seed (the same seed for every part: deterministic).
        level: confidence level of the intervals.
        family: columns whose equal values form one Holm family.
        pixels: per part and method, the per-image pixel histograms and the part's pixel metrics.

    Raises:
        ValueError: a missing column, an unknown method, a part scored by one method only, or the two
            methods scoring different images of a part (or labelling one differently).
    """
    df = _normalise(per_image)
    method_a, method_b = _methods(df, method_a, method_b)
    df = df[df["method"].astype(str).isin([method_a, method_b])]
    rows: list[dict[str, Any]] = []
    for key, part in df.groupby(_KEYS, sort=True):
        a = part[part["method"].astype(str) == method_a]
        b = part[part["method"].astype(str) == method_b]
        if a.empty or b.empty:
            where = ", ".join(f"{k}={v}" for k, v in zip(_KEYS, key, strict=True))
            raise ValueError(f"comparison ({where}): only method {method_a if b.empty else method_b!r} has results")
        merged = _paired_part(key, a, b)
        y = merged["label_a"].astype(int).to_numpy()
        sa, sb = merged["score_a"].to_numpy(dtype=float), merged["score_b"].to_numpy(dtype=float)
        n_abn = int(y.sum())
        n_norm = int(y.size - n_abn)
        base = dict(zip(_KEYS, key, strict=True)) | {"method_a": method_a, "method_b": method_b}
        try:
            roc: PairedComparison | None = delong_test(sa, sb, y, level=level)
        except MetricUndefinedError:
            roc = None
        rows.append(base | _row("I-AUROC", roc, (_safe(auroc, sa, y), _safe(auroc, sb, y)), "delong", n_norm, n_abn))
        groups = _groups(merged)
        try:
            pr: PairedComparison | None = paired_bootstrap(aupr, sa, sb, y, groups=groups, n_boot=n_boot, seed=seed,
                                                           level=level)
        except MetricUndefinedError:
            pr = None
        test = f"paired-bootstrap ({'patient' if groups else 'image'})"
        rows.append(base | _row("I-AUPR", pr, (_safe(aupr, sa, y), _safe(aupr, sb, y)), test, n_norm, n_abn))
        pa, pb = (pixels or {}).get((*key, method_a)), (pixels or {}).get((*key, method_b))
        if pa is not None and pb is not None:
            rows += [base | r for r in _pixel_rows(key, merged, pa, pb, n_boot, seed, level)]
    out = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c != "p_holm"])
    out["p_holm"] = np.nan
    if not out.empty:
        for _, fam in out.groupby(list(family), sort=False):
            out.loc[fam.index, "p_holm"] = holm(fam["p_value"].to_numpy(dtype=float))
    return out[COMPARISON_COLUMNS].reset_index(drop=True)


def _pixel_rows(key: tuple[Any, ...], merged: pd.DataFrame, pa: PartPixels, pb: PartPixels, n_boot: int,
                seed: int, level: float) -> list[dict[str, Any]]:
    """P-AUROC, P-AUPR and AUPRO rows of one part: the paired bootstrap over the images in the part's pixel
    metrics (patients when known), values from the part records.

    Raises:
        ValueError: the two methods' pixel metrics cover different images.
    """
    if pa.counts.ids != pb.counts.ids:
        where = ", ".join(f"{k}={v}" for k, v in zip(_KEYS, key, strict=True))
        msg = f"comparison ({where}): the two methods' pixel metrics cover different images"
        raise ValueError(msg)
    by_id = merged.set_index("image_id")
    ids = pa.counts.ids
    groups = _groups(by_id.loc[ids].reset_index()) if ids else None
    labels = by_id.loc[ids, "label_a"].astype(int).to_numpy() if ids else np.zeros(0, dtype=int)
    n_abn = int(labels.sum())
    try:
        results = paired_bootstrap_pixels(pa.counts, pb.counts, groups, n_boot=n_boot, seed=seed, level=level)
    except MetricUndefinedError:
        results = dict.fromkeys(COMPARED_PIXEL_METRICS)
    test = f"paired-bootstrap ({'patient' if groups else 'image'})"
    rows = []
    for metric in COMPARED_PIXEL_METRICS:
        va, vb = (math.nan if p.values.get(metric) is None else float(p.values[metric]) for p in (pa, pb))
        res = results.get(metric)
        row = _row(metric, res, (va, vb), test, len(labels) - n_abn, n_abn)
        row |= {"value_a": va, "value_b": vb, "delta": va - vb}
        rows.append(row)
    return rows


def _pct(value: float) -> str:
    return "N/A" if pd.isna(value) else f"{100 * value:.1f}"


def _p(value: float) -> str:
    if pd.isna(value):
        return "N/A"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def comparison_display(rows: pd.DataFrame) -> pd.DataFrame:
    """The Markdown/LaTeX view of :func:`comparison_frame` rows: values in %, Δ and CI in percentage points."""
    pairs = rows[["method_a", "method_b"]].drop_duplicates()
    one_pair = len(pairs) == 1
    col_a, col_b = (str(pairs.iloc[0, 0]), str(pairs.iloc[0, 1])) if one_pair else ("A", "B")
    out = []
    for r in rows.to_dict("records"):
        row = {"Data set": r["dataset"], "Class": r["class"], "k": r["k"], "Seed": r["seed"], "Metric": r["metric"]}
        if not one_pair:
            row["A vs B"] = f"{r['method_a']} vs {r['method_b']}"
        ci = "N/A" if pd.isna(r["ci_low"]) else f"[{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"
        row |= {col_a: _pct(r["value_a"]), col_b: _pct(r["value_b"]),
                "Δ (pp)": "N/A" if pd.isna(r["delta"]) else f"{100 * r['delta']:+.1f}", "95 % CI (pp)": ci,
                "p": _p(r["p_value"]), "p (Holm)": _p(r["p_holm"]), "Test": r["test"],
                "n normal / abnormal": f"{r['n_normal']} / {r['n_abnormal']}"}
        out.append(row)
    return pd.DataFrame(out)


def comparison_caption(rows: pd.DataFrame, notice: str | None = None, level: float = 0.95) -> str:
    """The table caption: which methods, which tests, the Holm family."""
    pairs = rows[["method_a", "method_b"]].drop_duplicates()
    names = "; ".join(f"{a} vs {b}" for a, b in pairs.itertuples(index=False)) or "no methods"
    caption = (f"Paired comparison ({names}; Δ = A − B, in percentage points): I-AUROC by DeLong's test, "
               f"I-AUPR and the pixel metrics by a paired bootstrap (percentile {100 * level:g} % CI; patients "
               "resampled when known); p two-sided, Holm-adjusted across data sets and classes per shots × seed × "
               "metric.")
    return with_notice(caption, notice)


def write_comparison(out: str | Path, rows: pd.DataFrame, notice: str | None = None,
                     level: float = 0.95) -> list[Path]:
    """Write ``comparison.csv`` and ``tables/comparison.md`` / ``.tex`` under ``out`` (atomically).

    The CSV holds the rows as :func:`comparison_frame` returns them (fractions), then a ``notice``
    column (the untrained-model notice on every row, else empty), like every CSV of a run. ``level``:
    the confidence level the rows were computed at (for the caption).
    """
    root = Path(out)
    csv = root / "comparison.csv"
    write_csv(csv, with_notice_column(rows[COMPARISON_COLUMNS], notice))
    caption = comparison_caption(rows, notice, level)
    disp = comparison_display(rows)
    notes = ["- DeLong's test treats the images as independent; with several images per patient the paired "
             "bootstrap over patients (I-AUPR rows marked \"patient\") is the patient-level test.",
             "- Pixel rows (P-AUROC, P-AUPR, AUPRO): every replicate pools the drawn images' per-image histograms "
             "(4096 bins); the CI is widened each side by the largest binning bound of the two methods over the "
             "replicates, so it also holds for the exact values. n counts the images in the pixel metrics.",
             "- N/A: the test is undefined for the part (DeLong needs at least 2 normal and 2 abnormal images; "
             "a pixel metric needs anomalous and normal pixels)."]
    table = disp.to_markdown(index=False, disable_numparse=True) if not disp.empty else "(no parts)"
    md = root / "tables" / "comparison.md"
    tex = root / "tables" / "comparison.tex"
    atomic_write_text(md, f"**{caption}**\n\n{table}\n\n" + "\n".join(notes) + "\n")
    atomic_write_text(tex, _latex(disp, caption))
    return [csv, md, tex]


def _cliques(names: list[str], ranks: list[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs ``[i, j]`` (in rank order) whose rank span is below ``cd``: no significant difference."""
    spans = []
    for i in range(len(names)):
        j = i
        while j + 1 < len(names) and ranks[j + 1] - ranks[i] < cd:
            j += 1
        if j > i and not any(s <= i and j <= e for s, e in spans):
            spans.append((i, j))
    return spans


def critical_difference_figure(result: FriedmanNemenyi, title: str = "") -> Figure:
    """Demšar's critical-difference diagram: average ranks on an axis (1 = best, left), the Nemenyi CD
    as a bar, and a thick line joining each run of methods whose ranks differ by less than the CD."""
    order = sorted(range(len(result.methods)), key=lambda i: result.avg_ranks[i])
    names = [result.methods[i] for i in order]
    ranks = [result.avg_ranks[i] for i in order]
    k = len(names)
    half = (k + 1) // 2
    n_lines = max(half, k - half)
    with paper_style():
        fig = Figure(figsize=(6.0, 1.3 + 0.28 * n_lines), constrained_layout=True)
        ax = fig.subplots()
        top = 0.0
        ax.hlines(top, 1, k, color="black", linewidth=1.0)
        for r in range(1, k + 1):
            ax.vlines(r, top, top + 0.1, color="black", linewidth=0.8)
            ax.text(r, top + 0.15, str(r), ha="center", va="bottom")
        ax.hlines(top + 0.55, 1, 1 + result.cd, color="black", linewidth=1.2)
        for x in (1, 1 + result.cd):
            ax.vlines(x, top + 0.5, top + 0.6, color="black", linewidth=1.0)
        ax.text(1 + result.cd / 2, top + 0.65, f"CD = {result.cd:.2f}", ha="center", va="bottom")
        for i, (name, rank) in enumerate(zip(names, ranks, strict=True)):
            left = i < half
            depth = top - 0.35 - 0.28 * (i if left else k - 1 - i)
            x_end = 0.6 if left else k + 0.4
            ax.plot([rank, rank, x_end], [top, depth, depth], color="black", linewidth=0.8)
            ax.text(x_end + (-0.05 if left else 0.05), depth, f"{name} ({rank:.2f})",
                    ha="right" if left else "left", va="center")
        for j, (s, e) in enumerate(_cliques(names, ranks, result.cd)):
            y = top - 0.12 - 0.08 * j
            ax.hlines(y, ranks[s] - 0.03, ranks[e] + 0.03, color="black", linewidth=3.0)
        ax.set_xlim(0.6 - 0.3 * k, k + 0.4 + 0.3 * k)
        ax.set_ylim(top - 0.5 - 0.28 * n_lines, top + 1.0)
        ax.axis("off")
        sub = (f"Friedman χ² = {result.statistic:.2f}, p = {_p(result.p_value)}; Nemenyi α = {result.alpha:g}, "
               f"{result.n_datasets} data sets; joined: no significant difference")
        ax.set_title(f"{title}\n{sub}" if title else sub)
    return fig


def save_critical_difference(out: str | Path, result: FriedmanNemenyi, notice: str | None = None,
                             name: str = "critical_difference", title: str = "") -> list[Path]:
    """Write ``<out>/figures/<name>.pdf`` and ``.png`` (300 dpi, ``notice`` burned in); returns the paths."""
    return save_figure(critical_difference_figure(result, title), Path(out) / "figures" / name, notice)


def dataset_metric_table(per_image: pd.DataFrame, metric: str = "I-AUROC") -> pd.DataFrame:
    """Data sets × methods: each method's ``metric`` (I-AUROC or I-AUPR) per part, averaged over the
    classes, shots and seeds of the data set (the input of :func:`adaptclip_med.metrics.friedman_nemenyi`)."""
    df = _normalise(per_image)
    fn = {"I-AUROC": auroc, "I-AUPR": aupr}[metric]
    parts = [{"dataset": key[0], "method": key[-1], "value": _safe(fn, g["score"].to_numpy(np.float64),
                                                                      g["label"].to_numpy(np.int64))}
             for key, g in df.groupby([*_KEYS, "method"], sort=False)]
    table = pd.DataFrame(parts).groupby(["dataset", "method"], sort=False)["value"].mean().unstack("method")
    return table[list(dict.fromkeys(df["method"].astype(str)))]


def write_method_comparison(out: str | Path, per_image: pd.DataFrame, notice: str | None = None, *,
                            figures: bool = True, metric: str = "I-AUROC", pixels: PixelsByPart | None = None,
                            n_boot: int = 2000) -> dict[str, Any]:
    """The comparison outputs of a run that scored several methods on the same images.

    Writes :func:`write_comparison` (the first method against each other one) and, with at least 3 data
    sets, the Friedman test over the data sets' ``metric`` (:func:`dataset_metric_table`) under the
    Markdown table and its critical-difference figure (``figures/critical_difference.png`` / ``.pdf``).
    ``pixels`` / ``n_boot``: as :func:`comparison_frame`'s.

    Returns:
        ``{"rows": the comparison rows, "friedman": the FriedmanNemenyi result or None, "why": reason if None}``.
    """
    from adaptclip_med.metrics import friedman_nemenyi

    methods = list(dict.fromkeys(_normalise(per_image)["method"].astype(str)))
    rows = pd.concat([comparison_frame(per_image, methods[0], other, n_boot=n_boot, pixels=pixels)
                      for other in methods[1:]], ignore_index=True)
    write_comparison(out, rows, notice)
    table = dataset_metric_table(per_image, metric)
    result, why = None, f"the Friedman test needs at least 3 data sets; this run has {len(table)}"
    if len(table) >= 3 and table.notna().all(axis=None):
        result, why = friedman_nemenyi(table), None
    elif len(table) >= 3:
        why = f"{metric} is undefined on some data set (a class without normal or abnormal images)"
    md = Path(out) / "tables" / "comparison.md"
    if result is not None:
        ranks = ", ".join(f"{m} {r:.2f}" for m, r in zip(result.methods, result.avg_ranks, strict=True))
        line = (f"- Friedman test over {result.n_datasets} data sets ({metric}, mean over classes, shots and seeds): "
                f"χ²_F = {result.statistic:.3g}, p = {result.p_value:.3g}; average ranks {ranks}; Nemenyi CD = "
                f"{result.cd:.3g} at α = {result.alpha:g} (figures/critical_difference.png).")
        if figures:
            save_critical_difference(out, result, notice, title=f"{metric}: average rank over data sets")
    else:
        line = f"- No Friedman test: {why}."
    atomic_write_text(md, md.read_text(encoding="utf-8") + line + "\n")
    return {"rows": rows, "friedman": result, "why": why}


__all__ = ["COMPARED_METRICS", "COMPARISON_COLUMNS", "HOLM_FAMILY", "PartPixels", "PixelsByPart",
           "comparison_caption", "comparison_display", "comparison_frame", "critical_difference_figure",
           "dataset_metric_table", "save_critical_difference", "write_comparison", "write_method_comparison"]
