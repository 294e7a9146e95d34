"""Heat-map overlays: image | anomaly map | overlay, with colour bar and contours.

The map is resized (bilinear) to the image's original size. Colour limits are fixed across a run by
default (``vmin``/``vmax`` passed in); per-image normalisation only on request. The threshold contour is
the calibrated pixel threshold; the ground-truth contour is drawn when a mask exists; the colour bar is
labelled "anomaly score"; each panel has a thin frame and, when the orientation is known, the patient
directions at its edges (:func:`orientation_letters`). File names are an index plus a hash of the image
id, and the burned-in text carries no path or patient id (data set label, class, k, image number,
score). A run on an untrained model gets its notice burned in (:mod:`adaptclip_med.reporting.labels`).

Galleries (``overlays/index.csv`` column ``gallery``): ``top`` (highest-scored images), ``false_alarm``
(highest-scored *normal* images: what would be flagged first by mistake) and ``miss`` (lowest-scored
*abnormal* images: what would be missed first), each the ``--overlays`` first of its ranking among the
maps a part kept.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from adaptclip_med.reporting.labels import mark_figure, png_metadata
from adaptclip_med.runtime.io import atomic_path

THRESHOLD_COLOUR = "white"
GT_COLOUR = "lime"
FRAME_COLOUR = "0.35"
COLOURBAR_LABEL = "anomaly score"
#: Gallery tags of ``overlays/index.csv`` and what the report calls them.
GALLERIES: dict[str, str] = {
    "top": "Highest-scored images",
    "false_alarm": "Highest-scored normal images (false alarms first)",
    "miss": "Lowest-scored abnormal images (misses first)",
}


def resize_map(amap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a ``(h, w)`` float map to ``size = (H, W)``."""
    h, w = size
    img = Image.fromarray(np.asarray(amap, dtype=np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.float32)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a ``(h, w)`` binary mask to ``size = (H, W)``."""
    h, w = size
    img = Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255)
    return np.asarray(img.resize((w, h), Image.NEAREST)) > 0


def draw_overlay(axes: Any, image: np.ndarray, amap: np.ndarray, *, vmin: float, vmax: float,
                 threshold: float | None = None, gt_mask: np.ndarray | None = None, alpha: float = 0.45,
                 colorbar: bool = True, letters: tuple[str, str, str, str] | None = None) -> None:
    """Draw the three panels on three matplotlib axes, each in a thin frame (bright tissue at the edge
    stays apart from the page).

    Args:
        axes: three axes (image, map, overlay).
        image: ``(H, W, 3)`` or ``(H, W)`` uint8 original image.
        amap: ``(h, w)`` anomaly map (any size; resized to ``(H, W)``).
        vmin, vmax: colour limits of the map.
        threshold: map value drawn as a contour (skipped when outside the map's range).
        gt_mask: ``(h', w')`` ground truth, drawn as a contour.
        alpha: opacity of the map over the image.
        colorbar: add a colour bar to the map panel.
        letters: patient directions at the left, right, top and bottom edges (e.g. ``R L A P``), written
            on every panel (None: unknown, none written).
    """
    h, w = image.shape[:2]
    m = resize_map(amap, (h, w))
    grey = {"cmap": "gray", "vmin": 0, "vmax": 255} if image.ndim == 2 else {}  # uint8 as it is, not stretched
    for ax in axes:
        frame_panel(ax)
    axes[0].imshow(image, **grey)
    axes[0].set_title("input image")
    im = axes[1].imshow(m, cmap="jet", vmin=vmin, vmax=vmax)
    axes[1].set_title("anomaly map")
    axes[2].imshow(image, **grey)
    axes[2].imshow(m, cmap="jet", vmin=vmin, vmax=vmax, alpha=alpha)
    axes[2].set_title("map over the image")
    handles = []
    if threshold is not None and m.min() < threshold < m.max():
        axes[2].contour(m, levels=[threshold], colors=THRESHOLD_COLOUR, linewidths=1.0)
        handles.append(Line2D([], [], color=THRESHOLD_COLOUR, label=f"pixel threshold {threshold:.3g}"))
    if gt_mask is not None and np.any(gt_mask):
        axes[2].contour(resize_mask(gt_mask, (h, w)).astype(float), levels=[0.5], colors=GT_COLOUR,
                        linewidths=1.0, linestyles="dashed")
        handles.append(Line2D([], [], color=GT_COLOUR, linestyle="--", label="ground truth"))
    if handles:
        axes[2].legend(handles=handles, loc="lower right", fontsize=6, framealpha=0.6, facecolor="0.2",
                       labelcolor="white")
    if colorbar:
        bar = axes[1].figure.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
        bar.set_label(COLOURBAR_LABEL)
    if letters is not None:
        for ax in axes:
            orientation_letters(ax, letters)


def frame_panel(ax: Any, colour: str = FRAME_COLOUR) -> None:
    """No ticks or tick labels, but a thin frame around the picture."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color(colour)
        spine.set_linewidth(0.8)


def orientation_letters(ax: Any, letters: tuple[str, str, str, str]) -> None:
    """Write the patient directions ``(left, right, top, bottom)`` inside the edges of a picture panel."""
    style = {"fontsize": 7, "fontweight": "bold", "color": "yellow", "transform": ax.transAxes,
             "bbox": {"boxstyle": "square,pad=0.1", "facecolor": "black", "edgecolor": "none", "alpha": 0.6}}
    left, right, top, bottom = letters
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)


def overlay_figure(image: np.ndarray, amap: np.ndarray, *, vmin: float | None = None, vmax: float | None = None,
                   threshold: float | None = None, gt_mask: np.ndarray | None = None,
                   title: str = "", notice: str | None = None,
                   letters: tuple[str, str, str, str] | None = None) -> Figure:
    """A one-row figure image | map | overlay (per-image limits when ``vmin``/``vmax`` are None).

    ``title`` may hold several lines; ``notice`` (untrained model) is burned in under the panels;
    ``letters`` (patient directions at the left, right, top, bottom edges) are written on each panel.
    """
    lo = float(np.min(amap)) if vmin is None else vmin
    hi = float(np.max(amap)) if vmax is None else vmax
    fig = Figure(figsize=(9.0, 3.2), constrained_layout=True)
    axes = fig.subplots(1, 3)
    draw_overlay(axes, image, amap, vmin=lo, vmax=max(hi, lo + 1e-6), threshold=threshold, gt_mask=gt_mask,
                 letters=letters)
    if title:
        fig.suptitle(title, fontsize=9)
    return mark_figure(fig, notice)


def save_png(fig: Figure, path: Path, dpi: int = 150, notice: str | None = None) -> Path:
    """Save a figure as PNG atomically (tight box); ``notice`` burned in and in the ``Description`` chunk.

    A figure already marked (``overlay_figure(notice=...)``) is not marked twice.
    """
    if notice and not any(t.get_text() == notice for t in fig.texts):
        mark_figure(fig, notice)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.08, metadata=png_metadata(notice))
    return path


def overlay_name(rank: int, image_key: str) -> str:
    """``<rank>_<hash>.png``: no patient id or file name leaks into the overlay's name."""
    return f"{rank:03d}_{hashlib.sha1(image_key.encode()).hexdigest()[:10]}.png"


def run_colour_limits(records: list[dict[str, Any]]) -> tuple[float, float]:
    """One colour scale for the whole run: the min and max over every scored map."""
    lo = min(float(r["map_stats"]["min"]) for r in records)
    hi = max(float(r["map_stats"]["max"]) for r in records)
    return lo, max(hi, lo + 1e-6)


def load_kept_maps(path: Path) -> dict[int, np.ndarray]:
    """``{image id: (S, S) float32 map}`` of a part's kept maps: ``ids``/``maps`` (highest-scored) and,
    when present, ``miss_ids``/``miss_maps`` (highest-scored normals, lowest-scored abnormals)."""
    kept: dict[int, np.ndarray] = {}
    with np.load(path) as npz:
        for ids, maps in (("ids", "maps"), ("miss_ids", "miss_maps")):
            if ids in npz.files and len(npz[ids]):
                kept.update({int(i): m.astype(np.float32) for i, m in zip(npz[ids], npz[maps], strict=True)})
    return kept


def gallery_tags(rows: list[dict[str, Any]], kept: list[int], n: int) -> dict[int, list[str]]:
    """Which galleries each kept image id belongs to (see :data:`GALLERIES`).

    Args:
        rows: every scored image of a part (``label``, ``score``), indexed by image id.
        kept: ids whose maps the part kept.
        n: images per gallery (-1: all kept).

    Returns:
        ``{image id: tags}`` for the kept ids in at least one gallery.
    """
    n = len(kept) if n < 0 else n
    score = {i: float(rows[i]["score"]) for i in kept}
    normals = sorted((i for i in kept if int(rows[i]["label"]) == 0), key=lambda i: (-score[i], i))
    abnormals = sorted((i for i in kept if int(rows[i]["label"]) == 1), key=lambda i: (score[i], i))
    ranked = {"top": sorted(kept, key=lambda i: (-score[i], i))[:n], "false_alarm": normals[:n],
              "miss": abnormals[:n]}
    tags: dict[int, list[str]] = {}
    for tag, ids in ranked.items():
        for i in ids:
            tags.setdefault(i, []).append(tag)
    return tags


def applicability_note(cells: dict[str, Any] | None) -> str:
    """``"[applicability warn: reasons]"`` from a row's gate cells (``applicability``,
    ``applicability_reasons``; reasons cut at 90 characters); ``""`` without a verdict (gate off)."""
    if not cells or not cells.get("applicability"):
        return ""
    reasons = str(cells.get("applicability_reasons") or "")
    if reasons in ("nan", "None"):
        reasons = ""
    short = reasons if len(reasons) <= 90 else reasons[:87] + "..."
    return f"[applicability {cells['applicability']}{': ' + short if short else ''}]"


def panel_title(dataset: str, cls: str, shots: int, image_id: int, label: int, score: float,
                threshold: float | None, applicability: dict[str, Any] | None = None) -> str:
    """Two readable lines: truth, score and the decision at the threshold; then where the image is from,
    with the gate's verdict (:func:`applicability_note`) when the run had ``--gate on``."""
    truth = "Abnormal image" if label else "Normal image"
    if threshold is None:
        decision = "no calibrated threshold"
    elif score > threshold:
        decision = f"above the threshold {threshold:.3g}: " + ("flagged (true positive)" if label else "false alarm")
    else:
        decision = f"below the threshold {threshold:.3g}: " + ("missed (false negative)" if label else "passed")
    where = f"{dataset} / {cls} · k = {shots} · image {image_id}"
    note = applicability_note(applicability)
    return f"{truth} (ground truth) · score {score:.3f} · {decision}\n{where}{' ' + note if note else ''}"


def render_run_overlays(out: Path, records: list[dict[str, Any]], parts: list[Any], image_size: int,
                        per_image: bool = False, grid_rows: int = 4, top: int = -1, notice: str | None = None,
                        picture: Any = None) -> dict[str, list[dict[str, Any]]]:
    """Overlays of the maps kept in ``parts/*.npz`` (first seed of each shot count).

    Writes ``overlays/<dataset>/<class>/k<shots>/<rank>_<hash>.png`` and ``overlays/index.csv`` (file →
    data set, class, shots, seed, image id, path as in ``per_image.csv``, label, score, ``gallery`` tags,
    with ``--gate on`` the verdict and its reasons, which the title also shows),
    for the ``top`` first of each gallery (:func:`gallery_tags`; -1: every kept map). ``notice`` is burned
    into every PNG and fills the index's last column, ``notice`` (empty for a trained model).
    ``picture(dataset, record, image_u8)``, when given, returns the picture drawn under the map (``--roi``:
    dimmed outside the ROI, its outline drawn).

    Returns:
        ``{dataset: rows}``: the top ``grid_rows`` overlays of the highest shot count per data set, each a
        dict with ``image``, ``map``, ``mask``, ``threshold``, ``label`` for the qualitative grid.
    """
    import pandas as pd

    from adaptclip_med.data import build_transforms
    from adaptclip_med.reporting.provenance import slug
    from adaptclip_med.reporting.tables import with_notice_column, write_csv

    vmin, vmax = run_colour_limits(records)
    old_index = out / "overlays" / "index.csv"
    if old_index.is_file():  # overlays of an earlier rendering of this run folder: replaced, not mixed in
        for rel in pd.read_csv(old_index)["file"]:
            (out / str(rel)).unlink(missing_ok=True)
        old_index.unlink()
    by_stem = {p.stem: p for p in parts}
    first_seed: dict[tuple[str, str, int], int] = {}
    for r in records:
        key = (r["dataset"], r["cls"], r["shots"])
        first_seed[key] = min(first_seed.get(key, r["seed"]), r["seed"])
    index: list[dict[str, Any]] = []
    grid: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda rec: -rec["shots"]):
        part = by_stem.get(f"{r['dataset']}__{slug(r['cls'])}__k{r['shots']}__s{r['seed']}")
        if not r.get("maps_file") or part is None or first_seed[(r["dataset"], r["cls"], r["shots"])] != r["seed"]:
            continue
        kept = load_kept_maps(out / "parts" / r["maps_file"])
        tags = gallery_tags(r["rows"], list(kept), top)
        transform = build_transforms(image_size, with_mask=part.has_masks)
        threshold = r["operating_point"].get("pixel_threshold")
        image_threshold = r["operating_point"].get("image_threshold")
        ordered = sorted(tags, key=lambda i: (-float(r["rows"][i]["score"]), i))
        for rank, image_id in enumerate(ordered):
            amap, row = kept[image_id], r["rows"][image_id]
            sample = transform(part.queries[image_id].as_dict())
            mask = sample.get("mask")
            title = panel_title(r["dataset"], r["cls"], r["shots"], image_id, int(row["label"]), float(row["score"]),
                                image_threshold, row)
            shown = np.asarray(sample["image_u8"])
            if picture is not None:
                shown = picture(r["dataset"], part.queries[image_id], shown)
            fig = overlay_figure(shown, amap, vmin=None if per_image else vmin,
                                 vmax=None if per_image else vmax, threshold=threshold,
                                 gt_mask=None if mask is None else np.asarray(mask), title=title)
            rel = Path("overlays") / slug(r["dataset"]) / slug(r["cls"]) / f"k{r['shots']}" / overlay_name(
                rank, str(row["path"]))
            save_png(fig, out / rel, notice=notice)
            rows = grid.setdefault(r["dataset"], [])
            if "top" in tags[image_id] and len(rows) < grid_rows and (not rows or rows[0]["shots"] == r["shots"]):
                rows.append({"image": np.asarray(sample["image_u8"]), "map": amap, "shots": r["shots"],
                             "mask": None if mask is None else np.asarray(mask), "threshold": threshold,
                             "label": f"k={r['shots']}, {'abnormal' if row['label'] else 'normal'}, "
                                      f"score {row['score']:.2f}"})
            index.append({"file": rel.as_posix(), "dataset": r["dataset"], "class": r["cls"], "shots": r["shots"],
                          "seed": r["seed"], "image_id": image_id, "path": row["path"], "label": row["label"],
                          "score": row["score"], "gallery": ";".join(tags[image_id]), "vmin": vmin, "vmax": vmax,
                          "threshold": threshold, "image_threshold": image_threshold,
                          **{k: row[k] for k in ("applicability", "applicability_reasons") if k in row}})
    if index:
        frame = pd.DataFrame(index).sort_values(["dataset", "class", "shots", "file"])
        write_csv(out / "overlays" / "index.csv", with_notice_column(frame, notice))
    return grid
