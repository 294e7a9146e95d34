"""Self-contained HTML report of one evaluation run: ``<run_dir>/index.html``.

The page reads what the evaluation wrote into the run directory and needs nothing else to open
(figures and overlays are embedded as base64 PNG, the style sheet is inline, no script):

- ``run.json``: provenance (config, versions, checkpoint hashes); its ``notice`` (e.g.
  "untrained backbone — pipeline demo only") becomes a banner at the top of the page;
- ``tables/*.md`` (pipe tables, as written by pandas ``to_markdown``), else ``summary.csv``;
- ``figures/*.png`` (curves, bar charts) and ``overlays/**/*.png`` (heat-map gallery, downsized).

Usage::

    from adaptclip_med.reporting.html import write_html_report
    write_html_report("reports/demo")          # -> reports/demo/index.html
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from adaptclip_med.errors import DataValidationError
from adaptclip_med.io import atomic_write_text

UNTRAINED_NOTICE = "untrained backbone — pipeline demo only"

_CSS = """
body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:0 auto;max-width:1200px;
padding:1.5rem;color:#1d2733;background:#fbfcfd}
h1{font-size:1.6rem;margin:.2rem 0}h2{border-bottom:2px solid #dbe3ea;padding-bottom:.2rem;margin-top:2rem}
.notice{background:#fff3cd;border:2px solid #e0a800;padding:.7rem 1rem;font-weight:600;border-radius:6px}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.9rem}
th,td{border:1px solid #cfd8e0;padding:.25rem .55rem;text-align:right}
th{background:#eef3f7}td:first-child,th:first-child{text-align:left}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3rem 0;white-space:nowrap}
figure{display:inline-block;margin:.4rem;vertical-align:top;background:#fff;border:1px solid #e3e8ee;
padding:.4rem;border-radius:4px}figcaption{font-size:.8rem;color:#4a5866;max-width:460px;word-break:break-all}
.fig img{max-width:560px}.gallery img{max-width:440px}
.prov td{text-align:left;font-family:ui-monospace,monospace;font-size:.8rem;word-break:break-all}
"""


def _img_tag(path: Path, max_side: int | None, alt: str) -> str:
    """Return an ``<img>`` whose PNG bytes (optionally downsized to ``max_side`` px) are inlined."""
    try:
        with Image.open(path) as im:
            im.load()
            if max_side is not None and max(im.size) > max_side:
                im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
    except OSError as exc:
        raise DataValidationError(
            f"report image {path}: cannot be read as an image ({exc}); expected a PNG written by the "
            "evaluation. Delete the file or re-run the evaluation into this run directory."
        ) from exc
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def parse_markdown_tables(text: str) -> list[tuple[str, pd.DataFrame]]:
    """Parse the pipe tables of a Markdown text into ``(caption, DataFrame)`` pairs.

    The caption is the nearest non-empty non-table line above the table (leading ``#``/``:`` and
    ``*`` stripped), or ``""``. The header separator row (``|:---|--:|``) is dropped; cells stay strings.
    """
    tables: list[tuple[str, pd.DataFrame]] = []
    caption, rows = "", []

    def flush() -> None:
        if len(rows) >= 2:
            header, body = rows[0], [r for r in rows[1:] if not set("".join(r)) <= set(":- ")]
            width = len(header)
            body = [(r + [""] * width)[:width] for r in body]
            tables.append((caption, pd.DataFrame(body, columns=header)))
        rows.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
            continue
        flush()
        if line:
            caption = line.lstrip("#: ").strip("*_ ")
    flush()
    return tables


def _table_html(df: pd.DataFrame, caption: str) -> str:
    body = df.to_html(index=False, escape=True, border=0, na_rep="–")
    if caption:  # pandas writes '<table border="0" class="dataframe">' first: put the caption after it
        body = body.replace(">", f"><caption>{html.escape(caption)}</caption>", 1)
    return body


def _tables_section(run_dir: Path, notice: str | None) -> str:
    parts: list[str] = []
    for md in sorted((run_dir / "tables").glob("*.md")):
        for caption, df in parse_markdown_tables(md.read_text(encoding="utf-8")):
            cap = caption or md.stem.replace("_", " ")
            if notice and notice not in cap:
                cap = f"{cap} ({notice})"
            parts.append(_table_html(df, cap))
    summary = run_dir / "summary.csv"
    if not parts and summary.is_file():
        cap = "summary.csv" + (f" ({notice})" if notice else "")
        parts.append(_table_html(pd.read_csv(summary), cap))
    return "".join(parts) or "<p>No tables were written in this run.</p>"


def _images_section(paths: list[Path], root: Path, max_side: int | None, css: str) -> str:
    figs = [
        f"<figure>{_img_tag(p, max_side, p.stem)}<figcaption>{html.escape(str(p.relative_to(root)))}"
        "</figcaption></figure>"
        for p in paths
    ]
    return f'<div class="{css}">{"".join(figs)}</div>' if figs else "<p>None in this run.</p>"


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested dicts to ``("a.b", value)`` rows; lists and scalars are shown as JSON."""
    if isinstance(obj, dict) and obj:
        rows: list[tuple[str, str]] = []
        for key, val in obj.items():
            rows += _flatten(val, f"{prefix}.{key}" if prefix else str(key))
        return rows
    text = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    return [(prefix, text if len(text) <= 400 else text[:400] + " …")]


def _provenance_section(run: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _flatten(run)
    )
    return f'<table class="prov">{rows}</table>' if rows else "<p>No run.json in this run.</p>"


def write_html_report(
    run_dir: str | Path, *, title: str | None = None, max_overlays: int = 24, overlay_px: int = 640
) -> Path:
    """Write ``<run_dir>/index.html`` from the run's tables, figures, overlays and ``run.json``.

    Args:
        run_dir: a run directory written by ``python -m adaptclip_med.evaluate`` (or the demo).
        title: page title; defaults to ``run.json``'s ``title`` or the directory name.
        max_overlays: at most this many overlay PNGs go into the gallery (sorted by path).
        overlay_px: overlays are downsized so that their longer side is at most this many pixels.

    Returns:
        The path of the written ``index.html``.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise DataValidationError(
            f"run directory {root}: does not exist; expected the --out folder of an evaluation run. "
            "Run `python -m adaptclip_med.evaluate ... --out <dir>` first."
        )
    run_json = root / "run.json"
    run: dict[str, Any] = json.loads(run_json.read_text(encoding="utf-8")) if run_json.is_file() else {}
    notice = run.get("notice")
    page_title = title or run.get("title") or f"adaptclip_med report — {root.name}"
    figures = sorted((root / "figures").glob("*.png"))
    overlays = sorted((root / "overlays").rglob("*.png"))[:max_overlays]
    links = [n for n in ("summary.csv", "per_image.csv", "run.json") if (root / n).is_file()]
    sections = [
        f"<h1>{html.escape(page_title)}</h1>",
        f'<p class="notice" id="notice">{html.escape(notice)}</p>' if notice else "",
        "<p>Files: " + ", ".join(f'<a href="{n}">{n}</a>' for n in links) + "</p>" if links else "",
        '<h2 id="tables">Tables</h2>', _tables_section(root, notice),
        '<h2 id="figures">Figures</h2>', _images_section(figures, root, None, "fig"),
        '<h2 id="overlays">Overlay gallery</h2>', _images_section(overlays, root, overlay_px, "gallery"),
        '<h2 id="provenance">Provenance</h2>', _provenance_section(run),
    ]
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(page_title)}'
        f"</title><style>{_CSS}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    out = root / "index.html"
    atomic_write_text(out, page)
    return out
