"""Stage 5, write: tables, prompt manifests, ``skipped.csv``, overlays, figures, ``run.json``, ``index.html``.

Everything here is rebuilt from the part records, so a resumed run writes the same files as an
uninterrupted one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.evaluation.plan import DEFAULT_METHOD, Plan, method_suffix
from adaptclip_med.evaluation.roi import roi_picture
from adaptclip_med.metrics import PerImagePixelCounts
from adaptclip_med.reporting import provenance as P
from adaptclip_med.reporting.comparison import PartPixels, write_method_comparison
from adaptclip_med.reporting.figures import render_run_figures
from adaptclip_med.reporting.labels import notice_of
from adaptclip_med.reporting.overlays import render_run_overlays, run_colour_limits
from adaptclip_med.reporting.tables import by_method, per_image_frame, write_tables
from adaptclip_med.runtime.skips import WARNINGS_CSV, Skip, skipped_summary, write_skipped


def all_skips(plan: Plan, records: list[dict[str, Any]]) -> list[Skip]:
    """Files the loaders skipped, then files that failed while scoring (each once, in order)."""
    seen: dict[tuple[str, str], Skip] = {}
    for s in plan.skipped:
        seen.setdefault((s.dataset, s.path), s)
    for r in records:
        for s in r.get("skipped", []):
            seen.setdefault((r["dataset"], s["path"]), Skip(r["dataset"], s["path"], s["reason"], r["cls"]))
    return list(seen.values())


def scored_parts(plan: Plan, records: list[dict[str, Any]]) -> list[Any]:
    """The parts with their skipped queries removed (so row ``i`` is query ``i`` for the overlays)."""
    by_stem = {f"{r['dataset']}__{P.slug(r['cls'])}__k{r['shots']}__s{r['seed']}"
               f"{method_suffix(r.get('method', DEFAULT_METHOD))}": r for r in records}
    parts = []
    for group in plan.groups:
        for part in group.parts:
            gone = {s["path"] for s in by_stem.get(part.stem, {}).get("skipped", [])}
            parts.append(replace(part, queries=[q for q in part.queries if group.relative_key(q) not in gone]))
    return parts


def part_pixels(out: Path, records: list[dict[str, Any]]) -> dict[tuple[Any, ...], PartPixels]:
    """``(dataset, class, k, seed, method)`` → the part's per-image pixel histograms and pixel metric values,
    for the parts that kept them (``parts/<stem>.pixels.npz``, runs with several methods)."""
    found = {}
    for r in records:
        if r.get("pixel_counts_file"):
            counts = PerImagePixelCounts.load(out / "parts" / r["pixel_counts_file"])
            values = {k: v.get("value") for k, v in r["metrics"].items()}
            key = (r["dataset"], r["cls"], r["shots"], r["seed"], r.get("method", DEFAULT_METHOD))
            found[key] = PartPixels(counts, values)
    return found


def write_outputs(out: Path, config: EvalConfig, model: Any, plan: Plan, records: list[dict[str, Any]],
                  run_info: dict[str, Any]) -> list[Skip]:
    """Every run-level output, from the part records; returns the skipped files."""
    skips = all_skips(plan, records)
    write_skipped(out, skips)
    write_skipped(out, plan.warnings, WARNINGS_CSV)
    summary = write_tables(out, records, config)
    notice = notice_of(config)
    P.write_prompt_manifests(out, records, notice)
    all_records, records = records, [r for r in records if "method" not in r]  # the rest: AdaptCLIP's
    if "method" in summary:
        summary = summary[summary["method"] == DEFAULT_METHOD].drop(columns="method")
    parts = [p for p in scored_parts(plan, all_records) if p.method == DEFAULT_METHOD]
    grid: dict[str, list] = {}
    if config.overlays != 0:
        grid = render_run_overlays(out, records, parts, model.image_size, per_image=config.overlay_norm == "image",
                                   top=config.overlays, notice=notice, picture=roi_picture(config))
    if config.figures:
        render_run_figures(out, per_image_frame(records), summary, grid, run_colour_limits(records), notice=notice)
    if len(config.methods) > 1:
        write_method_comparison(out, by_method(per_image_frame, all_records, "seed"), notice, figures=config.figures,
                                pixels=part_pixels(out, all_records), n_boot=config.n_boot or 2000)
    P.write_run_json(out, config, model, parts, status="complete",
                     extra={**run_info, "skipped": skipped_summary(skips),
                            "warnings": skipped_summary(plan.warnings, WARNINGS_CSV)})
    from adaptclip_med.reporting.html import write_html_report

    write_html_report(out)
    return skips
