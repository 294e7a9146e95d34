"""Benchmark: exact vs binned (streaming) pixel metrics on synthetic 518 × 518 maps.

Prints the time per map, the peak memory of the stored maps, the binned values' stated error bound and
the actual difference from the exact values. Usage: ``python benchmarks/pixel_metrics.py [--maps 40]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from adaptclip_med.metrics import PIXEL_METRICS, PixelAccumulator


def synthetic(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` maps ``(n, size, size)`` in [0, 1] with one square lesion in every other mask."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(0, n, 2):
        r, c = rng.integers(0, size - 80, 2)
        masks[i, r:r + rng.integers(10, 80), c:c + rng.integers(10, 80)] = 1
    maps = np.clip(rng.normal(0.3, 0.12, masks.shape) + 0.2 * masks, 0, 1).astype(np.float32)
    return maps, masks


def main() -> None:
    """Run the benchmark and print one line per mode plus the per-metric comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--maps", type=int, default=40)
    parser.add_argument("--size", type=int, default=518)
    args = parser.parse_args()
    maps, masks = synthetic(args.maps, args.size)
    results = {}
    for mode in ("exact", "binned"):
        acc = PixelAccumulator(mode=mode)
        t0 = time.perf_counter()
        for i in range(len(maps)):
            acc.update(maps[i:i + 1], masks[i:i + 1])
        t1 = time.perf_counter()
        results[mode] = acc.compute()
        t2 = time.perf_counter()
        stored = sum(m.nbytes + k.nbytes for m, k in zip(acc.maps, acc.masks, strict=True)) / 2**20
        print(f"{mode:6s}: update {1000 * (t1 - t0) / len(maps):6.1f} ms/map, compute {t2 - t1:5.2f} s, "
              f"stored maps {stored:7.1f} MiB ({len(maps)} maps of {args.size}²)")
    print(f"{'metric':8s} {'exact':>9s} {'binned':>9s} {'|diff|':>9s} {'bound':>9s}")
    for k in PIXEL_METRICS:
        e, b = results["exact"][k], results["binned"][k]
        print(f"{k:8s} {e.value:9.6f} {b.value:9.6f} {abs(e.value - b.value):9.2e} {b.bound:9.2e}")


if __name__ == "__main__":
    main()
