"""Anatomy ROI (``adaptclip_med.roi``) on the shared data sets: coverage, exclusion, holes, time.

Per data set (read in place from ``../shared/datasets``, never copied), on the source pixel grid, with
the set's own modality (Br35H / BrainMRI: ``mri``; COVID-19: ``xray``; Kvasir-SEG and the normal crops:
``endoscopy``; the DICOM / NIfTI files: ``auto``, i.e. their Modality tag or the picture):

- ``auto modality``: what ``modality="auto"`` would choose (counts; how often the heuristic is right);
- ``lesion coverage``: ground-truth lesion pixels inside the ROI / all lesion pixels (pooled; sets with
  masks: BrainMRI with the derived masks, Kvasir-SEG), and the images under 99.9 %;
- ``background exclusion``: near-black pixels (display value ≤ 5; colour: brightest channel ≤ 5)
  8-connected to the image border that lie outside the ROI / all such pixels (pooled);
- ``holes``: pixels outside the ROI enclosed by it / ROI pixels (pooled), and the worst image;
- ``ms @518``: ``anatomy_regions`` on the display picture squashed to 518 × 518 (median and 95th
  percentile over the images; one thread, after one warm-up call): the CPU time of the calling thread
  (what the method costs, whatever else runs on the machine) and the wall time (what a caller waits for
  on this machine at the time of the run);
- ``gate``: the applicability gate's metadata and pixel rules at their defaults (``--gate on``, no expected
  modality; the ROI above) — images that pass / warn / are rejected, and the rules that fired with their
  counts (no image of these medical sets should be rejected).

Usage::

    python benchmarks/roi.py [--shared ../shared/datasets] [--limit 100] [--figures docs/roi]

``--limit`` draws that many images per data set (``random.Random(0)``, sorted paths; 0 = all).
``--figures`` writes example PNGs (picture with the ROI outline, ignore mask in cyan).
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from adaptclip_med.roi import anatomy_regions, detect_modality
from adaptclip_med.roi.gate import gate_config, metadata_verdict, pixel_verdict
from adaptclip_med.roi.morphology import border_connected
from adaptclip_med.roi.source import display_image
from adaptclip_med.runtime.errors import ImageReadError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".nii", ".gz"}
MaskFor = Callable[[Path], "Path | None"]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def sets(root: Path) -> dict[str, tuple[list[Path], MaskFor | None, str]]:
    """Data set name → (image paths, path → its lesion mask or None, the set's modality)."""
    derived = root / "brain_mri_masks_derived" / "yes"
    kvasir = root / "kvasir_seg" / "Kvasir-SEG"

    def brain_mask(p: Path) -> Path | None:
        m = derived / f"{p.name}.png"
        return m if p.parent.name == "yes" and m.exists() else None

    def kvasir_mask(p: Path) -> Path | None:
        m = kvasir / "masks" / p.name
        return m if m.exists() else None

    dicom_nifti = [p for p in _images(root / "dicom_nifti") if p.suffix.lower() in {".dcm", ".nii", ".gz"}]
    return {
        "br35h": (_images(root / "br35h"), None, "mri"),
        "brain_mri (+ derived masks)": (_images(root / "brain_mri"), brain_mask, "mri"),
        "covid19": (_images(root / "covid19"), None, "xray"),
        "kvasir_seg": (_images(kvasir / "images"), kvasir_mask, "endoscopy"),
        "endo_normal_prompts": (_images(root / "endo_normal_prompts"), None, "endoscopy"),
        "dicom_nifti": (dicom_nifti, None, "auto"),
    }


def background(picture: np.ndarray) -> np.ndarray:
    """Near-black pixels (≤ 5) connected to the image border."""
    v = picture.max(axis=-1) if picture.ndim == 3 else picture
    return border_connected(v <= 5)


def enclosed(roi: np.ndarray) -> np.ndarray:
    """Pixels outside ``roi`` that it encloses."""
    return ndi.binary_fill_holes(roi) & ~roi


def squash(picture: np.ndarray, side: int = 518) -> np.ndarray:
    return np.asarray(Image.fromarray(picture).resize((side, side), Image.Resampling.BICUBIC))


def measure(name: str, paths: list[Path], mask_for: MaskFor | None, known: str, figures: Path | None,
            n_figures: int) -> dict[str, object]:
    """One data set's row (see the module docstring)."""
    modalities: Counter[str] = Counter()
    lesion = inside = bg = bg_out = roi_px = holes = 0
    worst_holes, under, times, skipped, shown = 0.0, 0, [], [], 0
    gate = gate_config(True, None)
    verdicts: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    rejected: list[str] = []
    for path in paths:
        try:
            picture, dicom_modality, _ = display_image(path)
            roi, ignore = anatomy_regions(picture if dicom_modality is None else path, known)
        except ImageReadError as exc:
            skipped.append(f"{path.name}: {exc.problem}")
            continue
        modality = detect_modality(picture, dicom_modality)
        modalities[modality] += 1
        verdict = metadata_verdict(path, gate)
        verdict.extend(pixel_verdict(picture, roi, gate))
        verdicts[verdict.status] += 1
        fired.update(f"{level} {rule}" for level, rule, _ in verdict.findings)
        if verdict.rejected:
            rejected.append(f"{path.name}: {verdict.reasons}")
        used = modality if known == "auto" else known
        assert roi.shape == picture.shape[:2] and roi.dtype == bool
        back = background(picture)
        bg += int(back.sum())
        bg_out += int((back & ~roi).sum())
        hole = int(enclosed(roi).sum())
        roi_px += int(roi.sum())
        holes += hole
        worst_holes = max(worst_holes, hole / max(1, int(roi.sum())))
        mask_path = mask_for(path) if mask_for else None
        if mask_path is not None:
            gt = np.asarray(Image.open(mask_path).convert("L")) > 127
            if gt.shape == roi.shape and gt.any():
                lesion += int(gt.sum())
                got = int((gt & roi).sum())
                inside += got
                under += got < 0.999 * gt.sum()
        small = squash(picture)
        anatomy_regions(small, used)  # warm-up (caches, first-call imports)
        start, cpu = time.perf_counter(), time.thread_time()
        anatomy_regions(small, used)
        times.append((1000 * (time.thread_time() - cpu), 1000 * (time.perf_counter() - start)))
        if figures is not None and shown < n_figures:
            _figure(figures / f"{_slug(name)}_{shown}.png", picture, roi, ignore, f"{name}: {path.name} ({used})")
            shown += 1
    return {"set": name, "n": len(paths) - len(skipped), "modality": dict(modalities),
            "coverage": inside / lesion if lesion else None, "under": under if lesion else None,
            "exclusion": bg_out / bg if bg else None, "holes": holes / roi_px if roi_px else None,
            "worst_holes": worst_holes, "ms": np.percentile(np.array(times), [50, 95], axis=0) if times else None,
            "skipped": skipped, "gate": dict(verdicts), "fired": dict(fired), "rejected": rejected}


def _slug(name: str) -> str:
    return name.split(" ")[0].replace("/", "_")


def _figure(path: Path, picture: np.ndarray, roi: np.ndarray, ignore: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = roi.shape
    scale = 200 / max(h, w)
    fig, ax = plt.subplots(figsize=(max(1.0, w * scale / 80), max(1.0, h * scale / 80) + 0.25), dpi=80)
    ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=255, interpolation="bilinear")
    ax.contour(roi, levels=[0.5], colors=["#ffd400"], linewidths=1.2)
    if ignore.any():
        ax.contour(ignore, levels=[0.5], colors=["#00e5ff"], linewidths=0.6)
    ax.set_title(title[:48], fontsize=6)
    ax.set_axis_off()
    fig.tight_layout(pad=0.1)
    fig.savefig(path)
    plt.close(fig)


def _pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def table(rows: list[dict[str, object]]) -> str:
    """The Markdown table of :func:`measure` rows."""
    head = ("| data set | images | auto would choose | lesion coverage (images < 99.9 %) | background exclusion "
            "| enclosed holes (worst image) | CPU ms @518 median / p95 | wall ms @518 median / p95 "
            "| gate pass / warn / reject | gate rules fired |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mods = ", ".join(f"{k} {v}" for k, v in sorted(r["modality"].items()))
        cov = "–" if r["coverage"] is None else f"{_pct(r['coverage'], 3)} ({r['under']})"
        ms = "– | –" if r["ms"] is None else " | ".join(f"{r['ms'][0][k]:.1f} / {r['ms'][1][k]:.1f}" for k in (0, 1))
        gate = " / ".join(str(r["gate"].get(k, 0)) for k in ("pass", "warn", "reject"))
        fired = ", ".join(f"{k} {v}" for k, v in sorted(r["fired"].items())) or "–"
        lines.append(f"| {r['set']} | {r['n']} | {mods} | {cov} | {_pct(r['exclusion'])} "
                     f"| {_pct(r['holes'], 3)} ({_pct(r['worst_holes'], 3)}) | {ms} | {gate} | {fired} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
    parser.add_argument("--shared", type=Path, default=shared)
    parser.add_argument("--limit", type=int, default=100, help="images per data set (0: all)")
    parser.add_argument("--figures", type=Path, default=None, help="folder for example PNGs")
    parser.add_argument("--per-set", type=int, default=2, help="example PNGs per data set")
    parser.add_argument("--only", nargs="*", default=None, help="data set names (prefixes) to run")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = []
    for name, (paths, mask_for, known) in sets(args.shared).items():
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        if args.limit and len(paths) > args.limit:
            paths = sorted(random.Random(0).sample(paths, args.limit))
        rows.append(measure(name, paths, mask_for, known, args.figures, args.per_set))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    for r in rows:
        for line in r["skipped"]:
            print(f"skipped ({r['set']}): {line}")
        for line in r["rejected"]:
            print(f"gate rejected ({r['set']}): {line}")


if __name__ == "__main__":
    main()
