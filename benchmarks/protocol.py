"""Cost of the paper's whole few-shot protocol versus one zero-shot pass, before and after one-encode-per-image.

For a backbone with random weights and N query images (a seeded synthetic ``folder`` set, half
abnormal, 16 normals held out as prompts) it prints:

* **before**: the old evaluation loop, one ``predict`` per (shots, seed) part plus the leave-one-out
  calibration re-encoding the prompts k times (reproduced here from the model API, as the pre-staged
  pipeline did it): image encodes per query image and wall time;
* **after**: ``run_evaluation`` (plan → encode once → score every part): encodes per query and wall time;
* the wall time of one zero-shot pass (``--shots 0``) and the ratios full protocol / zero-shot;
* with ``--torchrun 2``: ``python -m adaptclip_med.evaluate`` zero-shot in one process versus
  ``torchrun --standalone --nproc_per_node 2``, one thread each, throughput ratio and whether both
  wrote the same per_image.csv and summary.csv.

Examples::

    OMP_NUM_THREADS=1 python benchmarks/protocol.py --backbone adaptclip-tiny --n 40 --torchrun 2
    OMP_NUM_THREADS=1 python benchmarks/protocol.py --backbone ViT-B-16 --n 10 --torchrun 2
    OMP_NUM_THREADS=1 python benchmarks/protocol.py --backbone ViT-L-14-336 --image-size 518 --n 2 --skip-before

Wall times include loading the model and writing the outputs (tables, report); the encode count is
exact. Figures are printed, never asserted (docs/evaluation.md holds measured ones).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from adaptclip_med import data as D
from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.evaluation.plan import plan_run
from adaptclip_med.evaluation.run import run_evaluation
from adaptclip_med.features.store import entry_bytes
from adaptclip_med.loading.factory import load_model_for

SHOTS, SEEDS, HOLDOUT = (0, 1, 2, 4), (10, 20, 30), 16


def make_set(root: Path, n: int) -> Path:
    """A synthetic folder set with ``n`` queries (half abnormal) plus ``HOLDOUT`` held-out normals."""
    n_abnormal = n // 2
    n_normal = max(n - n_abnormal + HOLDOUT, 2 * HOLDOUT)
    return D.make_synthetic_folder(root, n_normal=n_normal, n_abnormal=n_abnormal, size=128, seed=0)


def config_for(args: argparse.Namespace, data: Path, out: Path, shots: tuple[int, ...]) -> EvalConfig:
    """Tiny outputs (no bootstrap, overlays or figures) so the backbone dominates the wall time."""
    return EvalConfig(datasets=("folder",), roots=(("folder", str(data)),), out=str(out), shots=shots,
                      seeds=SEEDS, backbone=args.backbone, pretrained=None, checkpoint=None,
                      image_size=args.image_size, allow_random_backbone=True, batch_size=args.batch_size,
                      limit=args.n, n_boot=0, overlays=0, figures=False)


class EncodeCounter:
    """Counts images through ``model.backbone.encode_image`` (the only way into the ViT)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.images = 0
        inner = model.backbone.encode_image

        def counted(images: torch.Tensor, *a: object, **k: object) -> object:
            self.images += int(images.shape[0])
            return inner(images, *a, **k)

        model.backbone.encode_image = counted


def before(config: EvalConfig) -> tuple[int, int, float]:
    """The pre-staged loop: per part ``fit_prompts`` + ``predict`` of every query, LOO re-encoding.

    Returns ``(encodes, queries, seconds)``.
    """
    start = time.perf_counter()
    plan = plan_run(config)
    model = load_model_for(config)
    counter = EncodeCounter(model)
    queries = 0
    for group in plan.groups:
        transform = D.build_transforms(model.image_size, with_mask=group.has_masks)
        queries += len(group.queries)
        for part in group.parts:
            bank, prompts = None, None
            if part.prompts is not None:
                prompts = torch.stack([torch.as_tensor(transform(r.as_dict())["image"]) for r in part.prompts.records])
                bank = model.fit_prompts(prompts)
            for i in range(0, len(part.queries), config.batch_size):
                images = torch.stack([torch.as_tensor(transform(r.as_dict())["image"])
                                      for r in part.queries[i:i + config.batch_size]])
                model.predict(images, prompts=bank, batch_size=config.batch_size)
            if prompts is not None and prompts.shape[0] >= 2:  # leave-one-out operating point
                for i in range(prompts.shape[0]):
                    rest = torch.cat([prompts[:i], prompts[i + 1:]])
                    model.predict(prompts[i:i + 1], prompts=model.fit_prompts(rest))
    return counter.images, queries, time.perf_counter() - start


def after(config: EvalConfig) -> tuple[int, float, str]:
    """``run_evaluation``: ``(encodes, seconds, stage seconds as text)``."""
    start = time.perf_counter()
    result = run_evaluation(config)
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    return result.encodes.encoded, time.perf_counter() - start, stages


def cli_run(args: argparse.Namespace, data: Path, out: Path, nproc: int, n: int) -> float:
    """Zero-shot ``python -m adaptclip_med.evaluate`` (``nproc`` > 1: under torchrun); wall seconds."""
    cli = ["-m", "adaptclip_med.evaluate", "--datasets", "folder", "--root", str(data), "--shots", "0",
           "--backbone", args.backbone, "--pretrained", "none", "--checkpoint", "none", "--allow-random-backbone",
           "--bootstrap", "0", "--overlays", "0", "--no-figures", "--limit", str(n),
           "--batch-size", str(args.batch_size), "--out", str(out)]
    if args.image_size:
        cli += ["--image-size", str(args.image_size)]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, *launcher, *cli], env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def run_stages(out: Path) -> str:
    """The stage seconds a run recorded in its run.json (rank 0's under torchrun)."""
    laps = json.loads((out / "run.json").read_text(encoding="utf-8")).get("timings_s", {})
    return ", ".join(f"{k} {v:.1f} s" for k, v in laps.items() if k != "note")


def same_outputs(a: Path, b: Path) -> bool:
    """per_image.csv and summary.csv of two runs are equal."""
    return all(pd.read_csv(a / f).equals(pd.read_csv(b / f)) for f in ("per_image.csv", "summary.csv"))


def main() -> None:
    """Parse the arguments, run the measurements, print one block of figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="adaptclip-tiny")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--n", type=int, default=20, help="query images")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--skip-before", action="store_true", help="skip the old loop (slow on large backbones)")
    p.add_argument("--torchrun", type=int, default=0, metavar="N", help="also compare N torchrun processes")
    p.add_argument("--torchrun-n", type=int, default=None, metavar="Q",
                   help="query images of the torchrun comparison (default --n; larger amortises start-up)")
    p.add_argument("--skip-protocol", action="store_true", help="only the torchrun comparison")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with tempfile.TemporaryDirectory(prefix="protocol-bench-") as tmp:
        base = Path(tmp)
        data = make_set(base / "data", args.n)
        full = config_for(args, data, base / "full", SHOTS)
        zero = config_for(args, data, base / "zero", (0,))
        model = load_model_for(zero)
        layers, (tokens, width) = len(model.backbone.feature_layers), model.encode(
            torch.zeros(1, 3, model.image_size, model.image_size)).patches[0].shape[1:]
        print(f"backbone {args.backbone} at {model.image_size} px (random weights), {args.n} query images, "
              f"shots {list(SHOTS)} x seeds {list(SEEDS)}, {torch.get_num_threads()} thread(s), "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"feature store: {entry_bytes(layers, tokens, width) / 2**20:.3f} MiB per image (float16)")
        del model
        if not args.skip_protocol:
            protocol(args, full, zero)
        if args.torchrun > 1:
            n = args.torchrun_n or args.n
            data = data if n == args.n else make_set(base / f"data{n}", n)
            t1 = cli_run(args, data, base / "one", 1, n)
            tn = cli_run(args, data, base / "many", args.torchrun, n)
            same = same_outputs(base / "one", base / "many")
            print(f"torchrun ({n} queries, zero-shot): 1 process {t1:.1f} s, {args.torchrun} processes {tn:.1f} s "
                  f"(1 thread each): throughput {t1 / tn:.2f}x; identical per_image.csv + summary.csv: {same}")
            print(f"        rank 0 stages, 1 process: {run_stages(base / 'one')}; "
                  f"{args.torchrun} processes: {run_stages(base / 'many')}")


def protocol(args: argparse.Namespace, full: EvalConfig, zero: EvalConfig) -> None:
    """The full protocol versus one zero-shot pass (and, unless skipped, the old loop)."""
    enc_after, t_after, stages = after(full)
    _, t_zero, zero_stages = after(zero)
    plan = plan_run(full)
    n_queries = sum(len(g.queries) for g in plan.groups)
    prompts = len({r.key for part in plan.parts if part.prompts for r in part.prompts.records})
    print(f"after : {enc_after / n_queries:.2f} encodes/query ({enc_after} = {n_queries} queries + "
          f"{prompts} distinct prompts), full protocol {t_after:.1f} s = {t_after / t_zero:.2f}x "
          f"one zero-shot pass ({t_zero:.1f} s)")
    print(f"        stages, full protocol: {stages}; zero-shot: {zero_stages}")
    if not args.skip_before:
        enc_before, nq, t_before = before(full)
        print(f"before: {enc_before / nq:.2f} encodes/query ({enc_before}), full protocol {t_before:.1f} s "
              f"= {t_before / t_zero:.2f}x one zero-shot pass; after/before wall {t_after / t_before:.2f}")


if __name__ == "__main__":
    main()
