"""Seconds per training epoch: first epoch (backbone features computed and cached) vs later epochs.

Random backbone weights on a handful of seeded synthetic images (no download needed); the figures
are what matters, not the losses. Target: later epochs >= 10x faster than the first.

    python benchmarks/training.py                                   # tiny at 224, ViT-L-14-336 at 518
    python benchmarks/training.py --backbones adaptclip-tiny:224 --images 8 --epochs 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from adaptclip_med import load_model
from adaptclip_med.data import make_synthetic_folder
from adaptclip_med.training.config import TrainConfig
from adaptclip_med.training.samples import make_samples
from adaptclip_med.training.trainer import train_adapters


def synthetic_samples(root: Path, images: int) -> tuple[list, dict]:
    """``images`` queries (half anomalous with masks) and 2 normal prompt images of one class."""
    n_abnormal = images // 2
    n_normal = images - n_abnormal
    make_synthetic_folder(root, n_normal=n_normal + 2, n_abnormal=n_abnormal, size=256, seed=0)
    normals = sorted((root / "normal").glob("*.png"))
    items = [(p, None, 0, "synthetic") for p in normals[:n_normal]]
    items += [(p, root / "masks" / p.name, 1, "synthetic") for p in sorted((root / "abnormal").glob("*.png"))]
    return make_samples(items, source=str(root)), {"synthetic": normals[n_normal:]}


def bench(backbone: str, size: int, images: int, epochs: int, batch: int, device: str) -> dict:
    """Train ``epochs`` epochs on a fresh random-weight model; return the timing row."""
    t0 = time.perf_counter()
    model = load_model(backbone=backbone, pretrained=None, image_size=size, device=device,
                       allow_random_backbone=True, seed=0)
    build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        samples, pool = synthetic_samples(Path(tmp) / "data", images)
        t0 = time.perf_counter()
        result = train_adapters(model, samples, pool, Path(tmp) / "run",
                                TrainConfig(epochs=epochs, batch_size=batch, device=device, progress=False),
                                export_authors=False)
        total = time.perf_counter() - t0
    seconds = [row["seconds"] for row in result.log]
    later = sum(seconds[1:]) / max(len(seconds) - 1, 1)
    return {"backbone": backbone, "size": size, "queries": len(samples), "prompts": 2,
            "model build s": round(build, 1), "epoch 1 s (features)": round(seconds[0], 2),
            "later epochs s (cache)": round(later, 3), "speed-up": round(seconds[0] / later, 1),
            "run total s (incl. checkpoints)": round(total, 1), "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print one table row per backbone."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["adaptclip-tiny:224", "ViT-L-14-336:518"],
                   help="NAME:SIZE pairs")
    p.add_argument("--images", type=int, default=8, help="query images (half anomalous)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8, help="the method's 8")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    rows = []
    for spec in args.backbones:
        name, size = spec.rsplit(":", 1)
        rows.append(bench(name, int(size), args.images, args.epochs, args.batch_size, args.device))
        print(tabulate([rows[-1]], headers="keys"), flush=True)
    print(f"\ndevice {args.device}; torch {torch.__version__}")
    print(tabulate(rows, headers="keys"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
