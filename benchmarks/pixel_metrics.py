"""Benchmark: exact vs binned (streaming) pixel metrics on synthetic 518 × 518 maps.

Prints, per mode, the time per map, the compute time, the peak memory (numpy allocations, tracemalloc)
and the histogram range the binned mode grew to; then each metric's exact value, binned value, actual
difference and stated bound. ``--above-one`` scales the later maps up to 2.5 (few-shot fused maps exceed
1), which the binned histogram must cover without clipping.
``--before-after 128x224 32x518`` instead times ``PixelAccumulator.compute()`` in exact mode against
the former path (a stable float64 argsort of every pixel in ``cumulative_at_distinct``, full-size
weights) on each set of ``N`` maps of ``S``² (best of ``--repeat`` runs), and checks that both give the same
metric values.
Usage: ``python benchmarks/pixel_metrics.py [--maps 149] [--above-one] [--before-after NxS ... [--repeat 3]]``.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from adaptclip_med.metrics import PIXEL_METRICS, MetricValue, PixelAccumulator, region_weights
from adaptclip_med.metrics.accumulators import exact_pixel_metrics
from adaptclip_med.metrics.curves import cumulative_at_distinct


def synthetic(n: int, size: int, seed: int = 0, above_one: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n`` maps ``(n, size, size)`` float32 with one square lesion in every other mask.

    In [0, 1]; with ``above_one`` map ``i`` is scaled by ``1 + 1.5 i / n`` (up to 2.5).
    """
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(0, n, 2):
        r, c = rng.integers(0, size - 80, 2)
        masks[i, r:r + rng.integers(10, 80), c:c + rng.integers(10, 80)] = 1
    maps = np.empty(masks.shape, dtype=np.float32)
    for i in range(n):
        maps[i] = np.clip(rng.normal(0.3, 0.12, masks.shape[1:]) + 0.2 * masks[i], 0, 1)
        if above_one:
            maps[i] *= 1.0 + 1.5 * i / n
    return maps, masks


def former_exact(acc: PixelAccumulator) -> dict[str, MetricValue]:
    """The exact pixel metrics as computed before ``pixel_counts``: every pixel argsorted in float64."""
    a = np.concatenate(acc.maps)
    m = np.concatenate(acc.masks)
    weights, n_regions = region_weights(m)
    y = m.ravel()
    _, tps, fps, pro = cumulative_at_distinct(a.ravel().astype(np.float64), y.astype(np.float64),
                                              (~y).astype(np.float64), weights.ravel())
    return exact_pixel_metrics(tps, fps, pro, n_regions, acc.fpr_limit)


def _best_of(repeat: int, fn: object, *args: object) -> tuple[float, dict[str, MetricValue]]:
    """Shortest wall time of ``repeat`` calls of ``fn(*args)`` (a shared CPU only adds time) and its result."""
    best, out = float("inf"), {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best, out


def before_after(sets: list[str], repeat: int) -> None:
    """Print the former and the current exact compute time (best of ``repeat``) of each ``NxS`` set."""
    print(f"{'maps':>4s} {'size':>4s} {'M pixels':>8s} {'before':>8s} {'after':>8s} {'speed-up':>8s}  same values")
    for spec in sets:
        n, size = (int(x) for x in spec.lower().split("x"))
        maps, masks = synthetic(n, size)
        acc = PixelAccumulator(mode="exact")
        acc.update(maps, masks)
        t_before, before = _best_of(repeat, former_exact, acc)
        t_after, after = _best_of(repeat, acc.compute)
        same = all(before[k].value == after[k].value for k in PIXEL_METRICS)
        print(f"{n:4d} {size:4d} {maps.size / 1e6:8.1f} {t_before:7.2f}s {t_after:7.2f}s "
              f"{t_before / t_after:7.1f}x  {same}")


def main() -> None:
    """Run the benchmark and print one line per mode plus the per-metric comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--maps", type=int, default=149)
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--above-one", action="store_true")
    parser.add_argument("--before-after", nargs="+", metavar="NxS",
                        help="time the exact compute before/after pixel_counts on N maps of S² (e.g. 128x224)")
    parser.add_argument("--repeat", type=int, default=3, help="--before-after: best of this many runs")
    args = parser.parse_args()
    if args.before_after:
        before_after(args.before_after, args.repeat)
        return
    maps, masks = synthetic(args.maps, args.size, above_one=args.above_one)
    print(f"{args.maps} maps of {args.size}² ({maps.size / 1e6:.1f} M pixels), scores in "
          f"[{maps.min():.3f}, {maps.max():.3f}]")
    results = {}
    for mode in ("exact", "binned"):
        acc = PixelAccumulator(mode=mode)
        tracemalloc.start()
        t0 = time.perf_counter()
        for i in range(len(maps)):
            acc.update(maps[i:i + 1], masks[i:i + 1])
        t1 = time.perf_counter()
        results[mode] = acc.compute()
        t2 = time.perf_counter()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        extra = f", histogram range [{acc.hist.low:g}, {acc.hist.high:g}]" if acc.hist is not None else ""
        print(f"{mode:6s}: update {1000 * (t1 - t0) / len(maps):6.1f} ms/map, compute {t2 - t1:6.2f} s, "
              f"peak memory {peak:7.1f} MiB{extra}")
    print(f"{'metric':8s} {'exact':>9s} {'binned':>9s} {'|diff|':>9s} {'bound':>9s}")
    for k in PIXEL_METRICS:
        e, b = results["exact"][k], results["binned"][k]
        print(f"{k:8s} {e.value:9.6f} {b.value:9.6f} {abs(e.value - b.value):9.2e} {b.bound:9.2e}")


if __name__ == "__main__":
    main()
