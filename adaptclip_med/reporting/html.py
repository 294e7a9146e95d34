"""Self-contained HTML report of one evaluation run: ``<run_dir>/index.html``, readable without help.

The page reads the run folder through :func:`adaptclip_med.reporting.load_run` and needs nothing
else to open (figures and overlays are embedded as base64 PNG, the style sheet is inline, no script):

- a line "n images scored, m skipped — see skipped.csv" and, beside the tables, a glossary of every
  metric and word (:data:`adaptclip_med.reporting.glossary.GLOSSARY`);
- ``run.json``'s ``notice`` (e.g. "untrained backbone — pipeline demo only") as a banner, added to every
  caption;
- ``tables/*.md`` (pipe tables as written by pandas ``to_markdown``; the bold line above a table is
  its caption, the lines below it its notes), else ``summary.csv``; the tables carry n normal /
  abnormal / skipped per row and name the operating point's rule;
- ``figures/*.png`` (curves, qualitative grids; downsized to ``figure_px``) and ``overlays/**/*.png``
  in three galleries from ``overlays/index.csv``: highest-scored images, highest-scored normal images
  (false alarms first) and lowest-scored abnormal images (misses first);
- provenance folded in a ``<details>`` element: the command and settings with every path replaced by
  ``<path>`` (:mod:`adaptclip_med.runtime.privacy`), model, versions — never ``run.json`` in full.

Usage::

    from adaptclip_med.reporting.html import write_html_report
    write_html_report("reports/demo")          # -> reports/demo/index.html
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from adaptclip_med.reporting import RunFiles, load_run
from adaptclip_med.reporting.glossary import GLOSSARY
from adaptclip_med.reporting.labels import with_notice
from adaptclip_med.reporting.overlays import GALLERIES
from adaptclip_med.runtime.errors import DataValidationError
from adaptclip_med.runtime.io import atomic_write_text
from adaptclip_med.runtime.privacy import sanitize_settings
from adaptclip_med.runtime.version import __version__

_CSS = """
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:0 auto;max-width:1440px;
padding:1.5rem;color:#1d2733;background:#fbfcfd}
h1{font-size:1.6rem;margin:.2rem 0}h2{border-bottom:2px solid #dbe3ea;padding-bottom:.2rem;margin-top:2rem}
.notice{background:#fff3cd;border:2px solid #e0a800;padding:.7rem 1rem;font-weight:600;border-radius:6px}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.85rem}
.long{white-space:normal;min-width:16rem;max-width:26rem;text-align:left}
th,td{border:1px solid #cfd8e0;padding:.25rem .5rem;text-align:right;white-space:nowrap}
th{background:#eef3f7}td:first-child,th:first-child{text-align:left}
.cap{font-weight:600;margin:.8rem 0 .2rem;max-width:1000px}.tbl{overflow-x:auto}
figure{display:inline-block;margin:.4rem;vertical-align:top;background:#fff;border:1px solid #e3e8ee;
padding:.4rem;border-radius:4px}figcaption{font-size:.8rem;color:#4a5866;max-width:460px;word-break:break-all}
.fig img{max-width:900px;width:100%}.note{font-size:.8rem;color:#4a5866;margin:.2rem 0}.gallery img{max-width:440px}
.fig figure{max-width:920px}
.prov td{text-align:left;font-family:ui-monospace,monospace;font-size:.8rem;word-break:break-all}
.layout{display:flex;gap:1.2rem;align-items:flex-start;flex-wrap:wrap}.main{flex:1 1 640px;min-width:0}
aside{flex:0 1 270px;background:#f1f5f8;border:1px solid #dbe3ea;border-radius:6px;padding:.5rem .8rem;
font-size:.8rem;position:sticky;top:.5rem}aside h3{margin:.2rem 0 .4rem;font-size:.95rem}
dt{font-weight:700;margin-top:.45rem}dd{margin:0 0 0 .2rem;color:#34424f}
.counts{font-size:1.05rem;font-weight:600}details{margin:.6rem 0}summary{cursor:pointer;font-weight:600}
"""


def _img_tag(path: Path, max_side: int | None, alt: str) -> str:
    """Return an ``<img>`` with the picture inlined (downsized to ``max_side`` px when larger).

    Encoded as PNG or JPEG (quality 88), whichever is smaller: line plots stay crisp PNGs, heat-map
    overlays become JPEGs a fraction of the size.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if max_side is not None and max(im.size) > max_side:
                im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            encoded = {}
            for fmt, options in (("png", {"optimize": True}), ("jpeg", {"quality": 88})):
                buf = io.BytesIO()
                im.convert("RGB").save(buf, format=fmt.upper(), **options)
                encoded[fmt] = buf.getvalue()
    except OSError as exc:
        raise DataValidationError(
            f"report image {path}: cannot be read as an image ({exc}); expected a PNG written by the "
            "evaluation. Delete the file or re-run the evaluation into this run directory."
        ) from exc
    fmt = min(encoded, key=lambda k: len(encoded[k]))
    data = base64.b64encode(encoded[fmt]).decode("ascii")
    return f'<img src="data:image/{fmt};base64,{data}" alt="{html.escape(alt)}">'


@dataclass
class MarkdownTable:
    """One pipe table of a Markdown file: its caption (line above), cells, and notes (lines below)."""

    caption: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _clean(line: str) -> str:
    return line.strip().lstrip("#: ").strip("*_ ")


def parse_markdown_tables(text: str) -> list[MarkdownTable]:
    """Parse the pipe tables of a Markdown text (as pandas ``to_markdown`` writes them).

    The caption of a table is the last non-empty text line above it (``#``, ``:``, ``*``, ``_``
    stripped), or ``""``; other text lines become the notes of the table above them. The header
    separator row (``|:---|--:|``) is dropped; short rows are padded with ``""``; cells stay strings.
    """
    tables: list[MarkdownTable] = []
    pending: list[str] = []
    rows: list[list[str]] = []

    def close_table() -> None:
        if len(rows) >= 2:
            header = rows[0]
            body = [(r + [""] * len(header))[: len(header)] for r in rows[1:] if not set("".join(r)) <= set(":- ")]
            caption = pending.pop() if pending else ""
            if tables:
                tables[-1].notes += pending
            pending.clear()
            tables.append(MarkdownTable(caption, pd.DataFrame(body, columns=header)))
        rows.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        else:
            close_table()
            if line:
                pending.append(_clean(line))
    close_table()
    if tables:
        tables[-1].notes += pending
    return tables


def _table_html(df: pd.DataFrame, caption: str, notes: list[str] | None = None) -> str:
    """A ``<div class="tbl">``: caption paragraph, the table, its notes."""
    def cell(value: object) -> str:  # long prose (a threshold rule) wraps; numbers stay on one line
        text = html.escape("–" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value))
        return f'<div class="long">{text}</div>' if len(text) > 40 else text

    body = df.map(cell).to_html(index=False, escape=False, border=0, na_rep="–")
    cap = f'<p class="cap">{html.escape(caption)}</p>' if caption else ""
    notes_html = "".join(f'<p class="note">{html.escape(n.removeprefix("- "))}</p>' for n in notes or [])
    return f'<div class="tbl">{cap}{body}{notes_html}</div>'


def _tables_section(run: RunFiles, notice: str | None) -> str:
    parts: list[str] = []
    markdown = sorted((t for t in run.tables if t.suffix == ".md"), key=lambda t: (t.stem != "main", t.name))
    for md in markdown:
        for table in parse_markdown_tables(md.read_text(encoding="utf-8")):
            caption = with_notice(table.caption or md.stem.replace("_", " "), notice)
            parts.append(_table_html(table.frame, caption, table.notes))
    if not parts and not run.summary.empty:
        parts.append(_table_html(run.summary.round(4), with_notice("summary.csv", notice)))
    return "".join(parts) or "<p>No tables were written in this run.</p>"


def _gallery_caption(row: dict[str, Any]) -> str:
    """``Normal image · score 0.712 · false alarm`` + ``data set / class · k = 2 · image 5``."""
    label = int(row.get("label", -1)) if pd.notna(row.get("label")) else -1
    truth = {0: "Normal image", 1: "Abnormal image"}.get(label, "Image")
    score = float(row.get("score", float("nan")))
    thr = row.get("image_threshold")
    if thr is None or pd.isna(thr):
        call = ""
    elif score > float(thr):
        call = " · flagged" if label == 1 else " · false alarm"
    else:
        call = " · missed" if label == 1 else " · passed"
    return (f"{truth} · score {score:.3f}{call} · {row.get('dataset', '')} / {row.get('class', '')} · "
            f"k = {row.get('shots', '')} · image {row.get('image_id', '')}")


def _gallery_sections(run: RunFiles, max_per_gallery: int, overlay_px: int) -> str:
    """One block per gallery of ``overlays/index.csv`` (all overlays in the first when it has no tags)."""
    idx = run.overlay_index
    if idx.empty or "file" not in idx.columns:
        return _images_section(run.overlays[:max_per_gallery], run.root, overlay_px, "gallery", {})
    if "gallery" not in idx.columns:
        idx = idx.assign(gallery="top")
    out = []
    for tag, title in GALLERIES.items():
        rows = idx[idx["gallery"].fillna("").astype(str).str.split(";").map(lambda tags, t=tag: t in tags)]
        rows = rows.sort_values("score", ascending=tag == "miss").head(max_per_gallery)
        figs = "".join(
            f"<figure>{_img_tag(run.root / str(r['file']), overlay_px, _gallery_caption(r))}<figcaption>"
            f"{html.escape(_gallery_caption(r))}</figcaption></figure>" for r in rows.to_dict("records"))
        body = f'<div class="gallery">{figs}</div>' if figs else "<p>None among the kept maps of this run.</p>"
        out.append(f'<h3 id="gallery-{tag}">{html.escape(title)} ({len(rows)})</h3>{body}')
    return "".join(out)


def _images_section(paths: list[Path], root: Path, max_side: int, css: str, captions: dict[str, str]) -> str:
    figs = []
    for p in paths:
        rel = p.relative_to(root).as_posix()
        figs.append(f"<figure>{_img_tag(p, max_side, p.stem)}<figcaption>{html.escape(captions.get(rel, rel))}"
                    "</figcaption></figure>")
    return f'<div class="{css}">{"".join(figs)}</div>' if figs else "<p>None in this run.</p>"


def _figure_order(path: Path) -> tuple[int, str]:
    """Curves first, then the comparison with the paper, then the qualitative grids."""
    order = ("roc_pr_", "paper_comparison", "critical_difference", "qualitative_")
    rank = next((i for i, p in enumerate(order) if path.stem.startswith(p)), len(order))
    return rank, path.name


def _glossary() -> str:
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in GLOSSARY.items())
    return f'<aside id="glossary"><h3>What the columns mean</h3><dl>{items}</dl></aside>'


def counts_line(run: RunFiles) -> str:
    """``n images scored (a normal, b abnormal), m skipped — see skipped.csv``."""
    df = run.per_image
    if {"dataset", "path", "label"} <= set(df.columns) and len(df):
        images = df.drop_duplicates(["dataset", "path"])
        n, normal = len(images), int((images["label"] == 0).sum())
        scored = f"{n} images scored ({normal} normal, {n - normal} abnormal)"
    else:
        scored = "no images scored"
    m = len(run.skipped)
    skipped = f"{m} skipped — see skipped.csv" if (run.root / "skipped.csv").is_file() else f"{m} skipped"
    return f"{scored}, {skipped}"


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested dicts to ``("a.b", value)`` rows; lists and scalars are shown as JSON."""
    if isinstance(obj, dict) and obj:
        rows: list[tuple[str, str]] = []
        for key, val in obj.items():
            rows += _flatten(val, f"{prefix}.{key}" if prefix else str(key))
        return rows
    text = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    return [(prefix, text if len(text) <= 400 else text[:400] + " …")]


#: What the report shows of ``run.json`` (never the whole file: roots, fingerprints, ...).
PROVENANCE_KEYS = ("status", "command_line", "protocol", "model", "config", "versions")


def _provenance_section(run: dict[str, Any]) -> str:
    """A folded ``<details>`` table: the run's command, model, settings and versions, paths sanitised."""
    shown = sanitize_settings({k: run[k] for k in PROVENANCE_KEYS if k in run})
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _flatten(shown))
    table = f'<table class="prov">{rows}</table>' if rows else "<p>run.json records nothing to show.</p>"
    return (f'<details id="provenance-details"><summary>Command, settings, model and versions (paths shown as '
            f"&lt;path&gt;)</summary>{table}</details>")


def write_html_report(
    run_dir: str | Path, *, title: str | None = None, max_overlays: int = 12, overlay_px: int = 640,
    figure_px: int = 1400,
) -> Path:
    """Write ``<run_dir>/index.html`` from the run's tables, figures, overlays and ``run.json``.

    Args:
        run_dir: a run folder written by ``python -m adaptclip_med.evaluate`` (or the demo).
        title: page title; defaults to ``run.json``'s ``title`` or the folder name.
        max_overlays: at most this many overlay PNGs per gallery.
        overlay_px / figure_px: overlays / figures are downsized so that their longer side is at most
            this many pixels (the PNG files themselves stay at full resolution).

    Returns:
        The path of the written ``index.html``.

    Raises:
        DataValidationError: not a run folder (``run.json``, ``summary.csv`` or ``per_image.csv``
            missing), or an image in it cannot be read.
    """
    run = load_run(run_dir)
    root = run.root
    notice = run.run.get("notice")
    page_title = title or run.run.get("title") or "adaptclip_med report"
    links = [n for n in ("summary.csv", "per_image.csv", "skipped.csv") if (root / n).is_file()]
    status = run.run.get("status")
    sections = [
        f"<h1>{html.escape(page_title)}</h1>",
        f'<p class="notice" id="notice">{html.escape(notice)}</p>' if notice else "",
        f'<p class="note">Run status: {html.escape(str(status))}</p>' if status and status != "complete" else "",
        f'<p class="counts" id="counts">{html.escape(counts_line(run))}</p>',
        f"<p>{html.escape(str(run.run.get('protocol', '')))}</p>",
        "<p>Files: " + ", ".join(f'<a href="{n}">{n}</a>' for n in links) + "</p>",
        '<h2 id="tables">Tables</h2>',
        f'<div class="layout"><div class="main">{_tables_section(run, notice)}</div>{_glossary()}</div>',
        '<h2 id="figures">Figures</h2>', _images_section(sorted(run.figures, key=_figure_order), root, figure_px,
                                                         "fig", {}),
        '<h2 id="overlays">Overlay gallery</h2>',
        '<p class="note">Each panel: input image | anomaly map (colour bar: anomaly score, red = more anomalous) | '
        "map over the image (white contour: calibrated threshold; green dashed: ground truth).</p>",
        _gallery_sections(run, max_overlays, overlay_px),
        '<h2 id="provenance">Provenance</h2>', _provenance_section(run.run),
        f'<p class="note">Written by adaptclip_med {html.escape(__version__)} · research software, not for '
        "diagnostic use.</p>",
    ]
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(page_title)}'
        f"</title><style>{_CSS}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    out = root / "index.html"
    atomic_write_text(out, page)
    return out
