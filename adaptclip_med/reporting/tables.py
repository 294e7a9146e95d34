"""Paper-style tables from the stored parts: tidy CSVs, then Markdown and LaTeX.

Files (under the run folder):

* ``per_image.csv``: one row per data set × class × shots × seed × image (path, group, label, score);
* ``metrics_long.csv``: one row per data set × class × shots × seed × metric (value, N/A reason, bound);
* ``summary.csv``: one row per data set × class × shots, each metric's mean, std and binned error bound (fractions
  in [0, 1]; NaN = not applicable, reasons in ``na_reasons``), plus ``Avg`` rows (class = ``Avg``: the
  unweighted mean over classes; data set = ``Avg``: the mean over data sets; both taken per seed, then
  mean ± std over seeds); std is the population std (``ddof=0``) as in the paper's scripts; the counts
  ``n_normal``, ``n_abnormal`` (images scored), ``n_skipped`` (files left out, ``skipped.csv``),
  ``n_pixel_skipped`` (abnormal images without a mask, left out of the pixel metrics) and ``notice``
  (e.g. "untrained backbone — pipeline demo only", else empty);
* ``clinical.csv``, ``operating_points.csv``: sens@95%spec / spec@95%sens with bootstrap CIs, and the
  calibrated thresholds with the decision metrics at them, per seed;
* every CSV above (and ``overlays/index.csv``) ends with the ``notice`` column: the run's notice on every
  row for an untrained model, empty for a trained one (:func:`with_notice_column`);
* ``tables/main.md``, ``tables/main.tex``, ``tables/clinical.md``, ``tables/operating_points.md``: percent,
  one decimal, ``mean ± std`` over seeds for k ≥ 1 (zero-shot rows are one run); every caption carries
  the run's notice (:mod:`adaptclip_med.reporting.labels`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adaptclip_med.metrics import ALL_METRICS, PAPER_METRICS, ROI_METRICS
from adaptclip_med.reporting.labels import notice_of, with_notice
from adaptclip_med.reporting.provenance import RunSettings
from adaptclip_med.runtime.io import atomic_path, atomic_write_text

KEYS = ["dataset", "class", "shots"]
COUNTS = ["n_normal", "n_abnormal", "n_skipped", "n_pixel_skipped"]
SKIPPED_NOTE = ("n skipped: input files left out of the run (unreadable or unusable), listed with the reason "
                "in skipped.csv; files not attributable to a class are counted on the data set's Avg row.")


#: The method of a part record without a ``method`` key (every part of a single-method run).
DEFAULT_METHOD = "adaptclip"
#: How the tables name each method.
METHOD_NAMES = {"adaptclip": "AdaptCLIP", "winclip": "WinCLIP"}


def methods_of(records: list[dict[str, Any]]) -> list[str]:
    """The methods of the part records, in first-seen order (``["adaptclip"]`` for a single-method run)."""
    return list(dict.fromkeys(r.get("method", DEFAULT_METHOD) for r in records)) or [DEFAULT_METHOD]


def by_method(frame: Any, records: list[dict[str, Any]], after: str, *args: Any) -> pd.DataFrame:
    """``frame(records, *args)``, or with several methods its frame per method joined, a ``method``
    column inserted after column ``after`` (a single-method run keeps its columns as they were)."""
    methods = methods_of(records)
    if methods == [DEFAULT_METHOD]:
        return frame(records, *args)
    parts = []
    for m in methods:
        df = frame([r for r in records if r.get("method", DEFAULT_METHOD) == m], *args)
        df = df.rename(columns={"method": "rule_method"})  # an operating point's older name of its rule
        df.insert(list(df.columns).index(after) + 1, "method", m)
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def per_image_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Every scored image of every part."""
    rows = [{"dataset": r["dataset"], "class": r["cls"], "shots": r["shots"], "seed": r["seed"], **row}
            for r in records for row in r["rows"]]
    gate = ["applicability", "applicability_reasons"] if any("applicability" in row for row in rows) else []
    return pd.DataFrame(rows, columns=["dataset", "class", "shots", "seed", "image_id", "path", "group",
                                       "label", "score", *gate])


def metrics_long_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Tidy ``dataset, class, shots, seed, metric, value, reason, bound``."""
    rows = [{"dataset": r["dataset"], "class": r["cls"], "shots": r["shots"], "seed": r["seed"],
             "metric": m, "value": v["value"], "reason": v["reason"] or "", "bound": v["bound"]}
            for r in records for m, v in r["metrics"].items()]
    df = pd.DataFrame(rows, columns=["dataset", "class", "shots", "seed", "metric", "value", "reason", "bound"])
    df["value"] = pd.to_numeric(df["value"])
    return df


def _with_averages(long: pd.DataFrame) -> pd.DataFrame:
    """Add per-seed class averages (class ``Avg``) and data-set averages (data set ``Avg``)."""
    base = long[["dataset", "class", "shots", "seed", "metric", "value", "bound"]].copy()
    base["bound"] = pd.to_numeric(base["bound"]).where(base["value"].notna())  # a mean's error ≤ the mean bound
    cls_avg = base.groupby(["dataset", "shots", "seed", "metric"], as_index=False)[["value", "bound"]].mean()
    n_cls = base.groupby("dataset")["class"].nunique()
    cls_avg["class"] = "Avg"
    multi = cls_avg[cls_avg["dataset"].map(n_cls) > 1]
    ds_avg = cls_avg.groupby(["shots", "seed", "metric"], as_index=False)[["value", "bound"]].mean()
    ds_avg["dataset"], ds_avg["class"] = "Avg", "Avg"
    return pd.concat([base, multi, ds_avg], ignore_index=True)


def summary_frame(long: pd.DataFrame) -> pd.DataFrame:
    """Wide table: one row per data set × class × shots; ``<metric>`` mean, ``<metric>_std`` and
    ``<metric>_bound`` (the largest possible error of the mean from binned pixel metrics: the mean of the
    per-part bounds; 0 when every part was exact, NaN when not applicable)."""
    full = _with_averages(long)
    grouped = full.groupby([*KEYS, "metric"], sort=False)["value"]
    stats = grouped.agg(mean="mean", std=lambda v: float(np.std(v.dropna())) if v.notna().any() else np.nan,
                        n_seeds="size")
    mean, std = stats["mean"].unstack("metric"), stats["std"].unstack("metric")
    bound = full.groupby([*KEYS, "metric"], sort=False)["bound"].mean().unstack("metric")
    out = pd.DataFrame(index=mean.index)
    for m in ALL_METRICS + tuple(m for m in ROI_METRICS if m in mean):  # @roi: only with --roi
        out[m] = mean[m] if m in mean else np.nan
        out[f"{m}_std"] = std[m] if m in std else np.nan
        out[f"{m}_bound"] = bound[m] if m in bound else np.nan
    out["n_seeds"] = stats["n_seeds"].groupby(level=list(range(len(KEYS)))).max()
    reasons: dict[tuple, set[str]] = {}
    na = long[long["reason"] != ""]
    for d, c, k, m, why in zip(na["dataset"], na["class"], na["shots"], na["metric"], na["reason"], strict=True):
        reasons.setdefault((d, c, k), set()).add(f"{m}: {why}")
    out["na_reasons"] = ["; ".join(sorted(reasons.get(tuple(key), set()))) for key in out.index]
    out = out.reset_index()
    order = {"Avg": 1}
    out["_d"] = out["dataset"].map(lambda d: order.get(d, 0))
    out["_c"] = out["class"].map(lambda c: order.get(c, 0))
    return out.sort_values(["_d", "dataset", "shots", "_c", "class"]).drop(columns=["_d", "_c"]).reset_index(drop=True)


def _first_seed_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    first: dict[tuple, dict[str, Any]] = {}
    for r in records:
        key = (r["dataset"], r["cls"], r["shots"])
        if key not in first or r["seed"] < first[key]["seed"]:
            first[key] = r
    return list(first.values())


def counts_frame(records: list[dict[str, Any]], skipped: pd.DataFrame | None = None) -> pd.DataFrame:
    """Images behind each summary row: ``dataset, class, shots`` + :data:`COUNTS`, with ``Avg`` rows.

    ``n_normal`` / ``n_abnormal`` / ``n_pixel_skipped`` and ``n_skipped`` (the part's ``skipped`` queries:
    unreadable when scored) come from each part (first seed: every seed scores the same queries); ``Avg``
    rows sum them. ``skipped`` (``skipped.csv``: ``dataset``, optional ``class``, ``path``, ``reason``;
    it also lists the files the loaders skipped, whose class is unknown) sets the data set's ``Avg`` row
    (or its only row) to all of the set's skipped files, the overall ``Avg`` row to all, and class rows
    to their own when it has a ``class`` column.
    """
    rows = []
    for r in _first_seed_records(records):
        labels = [int(row["label"]) for row in r["rows"]]
        rows.append({"dataset": r["dataset"], "class": r["cls"], "shots": r["shots"],
                     "n_normal": labels.count(0), "n_abnormal": labels.count(1),
                     "n_skipped": len(r.get("skipped") or []),
                     "n_pixel_skipped": int(r.get("pixel_skipped") or 0)})
    base = pd.DataFrame(rows, columns=[*KEYS, *COUNTS])
    if base.empty:
        return base
    n_cls = base.groupby("dataset")["class"].nunique()
    cls_avg = base.groupby(["dataset", "shots"], as_index=False)[COUNTS].sum()
    cls_avg["class"] = "Avg"
    ds_avg = cls_avg.groupby("shots", as_index=False)[COUNTS].sum()
    ds_avg["dataset"], ds_avg["class"] = "Avg", "Avg"
    out = pd.concat([base, cls_avg[cls_avg["dataset"].map(n_cls) > 1], ds_avg], ignore_index=True)
    if skipped is not None and len(skipped):
        cls_col = skipped["class"].fillna("").astype(str) if "class" in skipped else pd.Series("", index=skipped.index)
        ds_col = skipped["dataset"].astype(str) if "dataset" in skipped else pd.Series("", index=skipped.index)
        for i, row in out.iterrows():
            d, c = row["dataset"], row["class"]
            if d == "Avg":
                out.loc[i, "n_skipped"] = len(skipped)
            elif c == "Avg" or n_cls.get(d, 0) == 1:
                out.loc[i, "n_skipped"] = max(int((ds_col == d).sum()), int(row["n_skipped"]))
            elif "class" in skipped:
                out.loc[i, "n_skipped"] = int(((ds_col == d) & (cls_col == c)).sum())
    return out


def with_counts(summary: pd.DataFrame, counts: pd.DataFrame, notice: str | None = None) -> pd.DataFrame:
    """``summary`` with the :data:`COUNTS` columns (0 where a row has no count) and the ``notice`` column."""
    out = summary.drop(columns=[c for c in [*COUNTS, "notice"] if c in summary]).merge(counts, on=KEYS, how="left")
    out[COUNTS] = out[COUNTS].fillna(0).astype(int)
    out["notice"] = notice or ""
    return out


def _cell(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return "N/A"
    return f"{100 * mean:.1f}" if n <= 1 or pd.isna(std) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def display_frame(summary: pd.DataFrame, metrics: tuple[str, ...] = PAPER_METRICS) -> pd.DataFrame:
    """Strings for the Markdown/LaTeX tables: percent, one decimal, ``mean ± std`` over seeds."""
    counts = [c for c in COUNTS[:3] if c in summary]
    names = {"n_normal": "n normal", "n_abnormal": "n abnormal", "n_skipped": "n skipped"}
    method = ["Method"] if "method" in summary else []
    rows = []
    for _, r in summary.iterrows():
        row = {"Dataset": r["dataset"], "Class": r["class"], "k": int(r["shots"])}
        if method:
            row["Method"] = METHOD_NAMES.get(r["method"], r["method"])
        row.update({names[c]: int(r[c]) for c in counts})
        row.update({m: _cell(r[m], r[f"{m}_std"], int(r["n_seeds"])) for m in metrics})
        rows.append(row)
    return pd.DataFrame(rows, columns=["Dataset", "Class", "k", *method, *(names[c] for c in counts), *metrics])


def seeds_caption(shots: list[int], seeds: list[int]) -> str:
    """What a cell is: ``mean ± std`` over the prompt seeds for k ≥ 1; zero-shot rows are one run."""
    parts = []
    if any(k > 0 for k in shots):
        parts.append(f"k ≥ 1: mean ± std over prompt seeds {list(seeds)}" if len(seeds) > 1
                     else f"k ≥ 1: one prompt seed ({seeds[0]})")
    if any(k == 0 for k in shots):
        parts.append("k = 0 (zero-shot): one run, no prompts to draw")
    return "; ".join(parts)


def describe_operating_point(op: dict[str, Any]) -> str:
    """The calibrated threshold named for what it is, from an ``operating_point`` record.

    Uses the record's ``name`` (e.g. "max leave-one-out normal score, k = 4 (α = 0.2)"), the number of
    normals it rests on and the false-positive rate ``alpha`` it bounds, saying when that misses the
    target (too few normals for the conformal rule); older records fall back to ``method``.
    """
    if op.get("image_threshold") is None:
        return f"none: {op.get('reason', 'not calibrated')}"
    text = str(op.get("name") or op.get("rule") or op.get("method") or "calibrated on normal images")
    n, alpha = op.get("n_normals"), op.get("alpha")
    has_alpha = alpha is not None and not pd.isna(alpha)
    if has_alpha and "α" not in text:
        text += f"; α = {float(alpha):.3g}"
    if n:
        text += f"; rests on {int(n)} normal image{'s' * (int(n) != 1)}"
    target = op.get("target_specificity")
    if has_alpha and target is not None and float(alpha) > 1 - float(target) + 1e-9:
        text += f" (too few for α = {1 - float(target):.3g}: bounds false alarms at {float(alpha):.3g} only)"
    return text


def _latex(df: pd.DataFrame, caption: str) -> str:
    def esc(text: object) -> str:
        s = str(text)
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
            s = s.replace(a, b)
        for a, b in (("±", r"$\pm$"), ("≥", r"$\geq$"), ("≤", r"$\leq$"), ("α", r"$\alpha$"), ("—", "---"),
                     ("–", "--")):
            s = s.replace(a, b)
        return s

    cols = "ll" + "r" * (df.shape[1] - 2)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(caption)}}}", rf"\begin{{tabular}}{{{cols}}}",
             r"\toprule", " & ".join(esc(c) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def clinical_frames(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(clinical, operating_points)`` tidy frames, one row per part."""
    clin, ops = [], []
    for r in records:
        base = {"dataset": r["dataset"], "class": r["cls"], "shots": r["shots"], "seed": r["seed"]}
        row = dict(base)
        for name, v in r["clinical"].items():
            row[name] = v.get("value")
            row[f"{name}_low"], row[f"{name}_high"] = v.get("low"), v.get("high")
            row["ci_unit"] = v.get("unit", row.get("ci_unit", ""))
            row[f"{name}_reason"] = v.get("reason", "")
        clin.append(row)
        op = dict(base, **{k: v for k, v in r["operating_point"].items()})
        op.update({f"at_threshold_{k}": v for k, v in (r.get("decision") or {}).items()})
        ops.append(op)
    return pd.DataFrame(clin), pd.DataFrame(ops)


def na_notes(items: list[tuple[str, str, str]]) -> list[str]:
    """Notes under a table for its ``N/A`` cells: one line per reason and set of metrics, naming the rows.

    Args:
        items: ``(row, metric, reason)`` for every N/A cell (``row`` e.g. ``"kvasir / colon"``).

    Returns:
        Lines like ``"- N/A I-AUROC, I-AUPR for kvasir / colon, endo / colon: no normal images in this set"``
        (metrics in first-seen order, rows in first-seen order).
    """
    per_row: dict[tuple[str, str], list[str]] = {}
    for row, metric, why in items:
        names = per_row.setdefault((row, why), [])
        if metric not in names:
            names.append(metric)
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (row, why), names in per_row.items():
        grouped.setdefault((why, tuple(names)), []).append(row)
    return [f"- N/A {', '.join(names)} for {', '.join(rows)}: {why}" for (why, names), rows in grouped.items()]


def _summary_na(summary: pd.DataFrame, metrics: tuple[str, ...] = PAPER_METRICS) -> list[tuple[str, str, str]]:
    """``(row, metric, reason)`` of the N/A cells of the main table (data-set rows; ``Avg`` rows skip them)."""
    items = []
    for _, r in summary[summary["class"] != "Avg"].iterrows():
        found = dict(x.split(": ", 1) for x in str(r.get("na_reasons") or "").split("; ") if ": " in x)
        items += [(f"{r['dataset']} / {r['class']}", m, found[m]) for m in metrics if m in found]
    return items


def _clinical_md(clin: pd.DataFrame) -> str:
    def fmt(r: pd.Series, name: str) -> str:
        if pd.isna(r.get(name)):
            return "N/A"
        ci = "" if pd.isna(r.get(f"{name}_low")) else f" ({100 * r[f'{name}_low']:.1f}–{100 * r[f'{name}_high']:.1f})"
        return f"{100 * r[name]:.1f}{ci}"

    disp = pd.DataFrame([{"Dataset": r["dataset"], "Class": r["class"], "k": r["shots"], "seed": r["seed"],
                          "Sens @ 95 % spec": fmt(r, "sens@95spec"), "Spec @ 95 % sens": fmt(r, "spec@95sens"),
                          "CI unit": r.get("ci_unit", "")} for _, r in clin.iterrows()])
    if not len(disp):
        return "(no parts)"
    names = {"sens@95spec": "Sens @ 95 % spec", "spec@95sens": "Spec @ 95 % sens"}
    missing = [(f"{r['dataset']} / {r['class']}", shown, str(r.get(f"{name}_reason", "") or "not applicable"))
               for _, r in clin.iterrows() for name, shown in names.items() if pd.isna(r.get(name))]
    return "\n\n".join([disp.to_markdown(index=False), *(["\n".join(na_notes(missing))] if missing else [])])


def _operating_points_md(records: list[dict[str, Any]]) -> str:
    def pct(value: object) -> str:
        return "–" if value is None or pd.isna(value) else f"{100 * float(value):.1f}"

    rows = []
    for r in sorted(records, key=lambda r: (r["dataset"], r["cls"], r["shots"], r["seed"])):
        op, dec = r.get("operating_point") or {}, r.get("decision") or {}
        thr = op.get("image_threshold")
        rows.append({"Dataset": r["dataset"], "Class": r["cls"], "k": r["shots"], "seed": r["seed"],
                     "Threshold rule": describe_operating_point(op),
                     "Threshold": "–" if thr is None else f"{float(thr):.4g}",
                     "Sensitivity": pct(dec.get("sensitivity")), "Specificity": pct(dec.get("specificity"))})
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "(no parts)"


def with_notice_column(frame: pd.DataFrame, notice: str | None) -> pd.DataFrame:
    """A copy of ``frame`` with the ``notice`` column last: the run's notice on every row, else empty."""
    return frame.drop(columns=["notice"], errors="ignore").assign(notice=notice or "")


def write_csv(path: Path, df: pd.DataFrame) -> None:
    """Write a CSV atomically (no index)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def _pixel_skipped_note(counts: pd.DataFrame) -> str:
    rows = counts[(counts["class"] != "Avg") & (counts["n_pixel_skipped"] > 0)].drop_duplicates(["dataset", "class"])
    if rows.empty:
        return ""
    each = ", ".join(f"{r['dataset']} / {r['class']}: {int(r['n_pixel_skipped'])}" for _, r in rows.iterrows())
    return (f"Pixel metrics leave out {int(rows['n_pixel_skipped'].sum())} abnormal image(s) without a "
            f"ground-truth mask ({each}).")


def read_skipped(out: Path) -> pd.DataFrame | None:
    """``<out>/skipped.csv`` (files left out of the run), or None when the run wrote none."""
    path = out / "skipped.csv"
    return pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else None


def write_tables(out: Path, records: list[dict[str, Any]], config: RunSettings,
                 skipped: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write every CSV and table of the run; returns the summary frame (with counts and ``notice``).

    Args:
        skipped: the run's skipped files (``dataset``, optional ``class``, ``path``, ``reason``);
            None reads ``<out>/skipped.csv`` when present.
    """
    notice = notice_of(config)
    write_csv(out / "per_image.csv", with_notice_column(by_method(per_image_frame, records, "seed"), notice))
    long = by_method(metrics_long_frame, records, "seed")
    write_csv(out / "metrics_long.csv", with_notice_column(long, notice))
    skipped = read_skipped(out) if skipped is None else skipped
    counts = counts_frame(records, skipped)
    summary = by_method(lambda recs: with_counts(summary_frame(metrics_long_frame(recs)), counts_frame(recs, skipped),
                                                 notice), records, "shots")
    if "method" in summary:  # the methods side by side: each row's methods next to each other
        order = {m: i for i, m in enumerate(methods_of(records))}
        keys = summary[["dataset", "shots", "class"]].apply(tuple, axis=1)
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        summary = summary.assign(_row=keys.map(first), _m=summary["method"].map(order)).sort_values(
            ["_row", "_m"], kind="stable").drop(columns=["_row", "_m"]).reset_index(drop=True)
    write_csv(out / "summary.csv", summary)
    clin, ops = (by_method(lambda recs, i=i: clinical_frames(recs)[i], records, "seed") for i in (0, 1))
    write_csv(out / "clinical.csv", with_notice_column(clin, notice))
    write_csv(out / "operating_points.csv", with_notice_column(ops, notice))
    disp = display_frame(summary, PAPER_METRICS + tuple(m for m in ROI_METRICS if m in summary
                                                        and m.split("@")[0] in PAPER_METRICS))
    notes = na_notes(_summary_na(summary)) + [f"- {n}" for n in (_pixel_skipped_note(counts), SKIPPED_NOTE) if n]
    notes.append(f"- Protocol: {config.protocol_string()}.")
    shown = " and ".join(METHOD_NAMES.get(m, m) for m in methods_of(records))
    caption = with_notice(f"{shown} results (%); {seeds_caption(sorted(set(summary['shots'])), list(config.seeds))}.",
                          notice)
    md = f"**{caption}**\n\n{disp.to_markdown(index=False)}\n\n" + "\n".join(notes) + "\n"
    atomic_write_text(out / "tables" / "main.md", md)
    atomic_write_text(out / "tables" / "main.tex", _latex(disp, caption))
    clin_caption = with_notice("Clinical operating points (%), bootstrap 95 % CI (patient-level when patient ids "
                               "are known) per prompt seed.", notice)
    atomic_write_text(out / "tables" / "clinical.md", f"**{clin_caption}**\n\n{_clinical_md(clin)}\n")
    op_caption = with_notice("Calibrated operating point per part: the threshold, the rule it comes from (on "
                             "the k normal prompts only, never the test images), and the sensitivity and "
                             "specificity (%) on the test images at it.", notice)
    atomic_write_text(out / "tables" / "operating_points.md", f"**{op_caption}**\n\n{_operating_points_md(records)}\n")
    return summary
