"""Paper-style tables from the stored parts: tidy CSVs, then Markdown and LaTeX.

Files (under the run folder):

* ``per_image.csv``: one row per data set × class × shots × seed × image (path, group, label, score);
* ``metrics_long.csv``: one row per data set × class × shots × seed × metric (value, N/A reason, bound);
* ``summary.csv``: one row per data set × class × shots, each metric's mean and std over seeds (fractions
  in [0, 1]; NaN = not applicable, reasons in ``na_reasons``), plus ``Avg`` rows (class = ``Avg``: the
  unweighted mean over classes; data set = ``Avg``: the mean over data sets; both taken per seed, then
  mean ± std over seeds); std is the population std (``ddof=0``) as in the paper's scripts;
* ``clinical.csv``, ``operating_points.csv``: sens@95%spec / spec@95%sens with bootstrap CIs, and the
  calibrated thresholds with the decision metrics at them, per seed;
* ``tables/main.md``, ``tables/main.tex``, ``tables/clinical.md``: percent, one decimal, ``mean ± std``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adaptclip_med.config import EvalConfig
from adaptclip_med.io import atomic_path, atomic_write_text
from adaptclip_med.metrics import ALL_METRICS, PAPER_METRICS

KEYS = ["dataset", "class", "shots"]


def per_image_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Every scored image of every part."""
    rows = [{"dataset": r["dataset"], "class": r["cls"], "shots": r["shots"], "seed": r["seed"], **row}
            for r in records for row in r["rows"]]
    return pd.DataFrame(rows, columns=["dataset", "class", "shots", "seed", "image_id", "path", "group",
                                       "label", "score"])


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
    base = long[["dataset", "class", "shots", "seed", "metric", "value"]]
    cls_avg = base.groupby(["dataset", "shots", "seed", "metric"], as_index=False)["value"].mean()
    n_cls = base.groupby("dataset")["class"].nunique()
    cls_avg["class"] = "Avg"
    multi = cls_avg[cls_avg["dataset"].map(n_cls) > 1]
    ds_avg = cls_avg.groupby(["shots", "seed", "metric"], as_index=False)["value"].mean()
    ds_avg["dataset"], ds_avg["class"] = "Avg", "Avg"
    return pd.concat([base, multi, ds_avg], ignore_index=True)


def summary_frame(long: pd.DataFrame) -> pd.DataFrame:
    """Wide table: one row per data set × class × shots; ``<metric>`` mean and ``<metric>_std``."""
    full = _with_averages(long)
    grouped = full.groupby([*KEYS, "metric"], sort=False)["value"]
    stats = grouped.agg(mean="mean", std=lambda v: float(np.std(v.dropna())) if v.notna().any() else np.nan,
                        n_seeds="size")
    mean, std = stats["mean"].unstack("metric"), stats["std"].unstack("metric")
    out = pd.DataFrame(index=mean.index)
    for m in ALL_METRICS:
        out[m] = mean[m] if m in mean else np.nan
        out[f"{m}_std"] = std[m] if m in std else np.nan
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


def _cell(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return "N/A"
    return f"{100 * mean:.1f}" if n <= 1 or pd.isna(std) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def display_frame(summary: pd.DataFrame, metrics: tuple[str, ...] = PAPER_METRICS) -> pd.DataFrame:
    """Strings for the Markdown/LaTeX tables: percent, one decimal, ``mean ± std`` over seeds."""
    rows = []
    for _, r in summary.iterrows():
        row = {"Dataset": r["dataset"], "Class": r["class"], "k": int(r["shots"])}
        row.update({m: _cell(r[m], r[f"{m}_std"], int(r["n_seeds"])) for m in metrics})
        rows.append(row)
    return pd.DataFrame(rows, columns=["Dataset", "Class", "k", *metrics])


def _latex(df: pd.DataFrame, caption: str) -> str:
    def esc(text: object) -> str:
        s = str(text)
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
            s = s.replace(a, b)
        return s.replace("±", r"$\pm$")

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


def _clinical_md(clin: pd.DataFrame) -> str:
    def fmt(r: pd.Series, name: str) -> str:
        if pd.isna(r.get(name)):
            return f"N/A ({r.get(f'{name}_reason', '')})"
        ci = "" if pd.isna(r.get(f"{name}_low")) else f" ({100 * r[f'{name}_low']:.1f}–{100 * r[f'{name}_high']:.1f})"
        return f"{100 * r[name]:.1f}{ci}"

    disp = pd.DataFrame([{"Dataset": r["dataset"], "Class": r["class"], "k": r["shots"], "seed": r["seed"],
                          "Sens @ 95 % spec": fmt(r, "sens@95spec"), "Spec @ 95 % sens": fmt(r, "spec@95sens"),
                          "CI unit": r.get("ci_unit", "")} for _, r in clin.iterrows()])
    return disp.to_markdown(index=False) if len(disp) else "(no parts)"


def write_csv(path: Path, df: pd.DataFrame) -> None:
    """Write a CSV atomically (no index)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_tables(out: Path, records: list[dict[str, Any]], config: EvalConfig) -> pd.DataFrame:
    """Write every CSV and table of the run; returns the summary frame."""
    write_csv(out / "per_image.csv", per_image_frame(records))
    long = metrics_long_frame(records)
    write_csv(out / "metrics_long.csv", long)
    summary = summary_frame(long)
    write_csv(out / "summary.csv", summary)
    clin, ops = clinical_frames(records)
    write_csv(out / "clinical.csv", clin)
    write_csv(out / "operating_points.csv", ops)
    disp = display_frame(summary)
    reasons = sorted({x for s in summary["na_reasons"] if s for x in s.split("; ")})
    notes = "\n".join(f"- N/A {x}" for x in reasons)
    caption = (f"AdaptCLIP results (%), mean ± std over prompt seeds {list(config.seeds)}. "
               f"Protocol: {config.protocol_string()}.")
    md = f"**{caption}**\n\n{disp.to_markdown(index=False)}\n\n{notes}\n"
    atomic_write_text(out / "tables" / "main.md", md)
    atomic_write_text(out / "tables" / "main.tex", _latex(disp, caption))
    clin_caption = ("Clinical operating points (%), bootstrap 95 % CI (patient-level when patient ids are "
                    "known) per prompt seed.")
    atomic_write_text(out / "tables" / "clinical.md", f"**{clin_caption}**\n\n{_clinical_md(clin)}\n")
    return summary
