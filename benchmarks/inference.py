"""Inference speed and memory of AdaptCLIP vs a plain open_clip image forward (random weights).

Prints ms/image and peak RSS for each (mode, batch, shots) configuration; each configuration runs in
a fresh subprocess so its peak RSS is its own. Examples::

    python benchmarks/inference.py --backbone adaptclip-tiny --image-size 518
    python benchmarks/inference.py --backbone ViT-L-14-336 --image-size 518 --batch 1 8 --shots 0 1 4
    python benchmarks/inference.py --backbone ViT-L-14-336 --precision bf16 --device cuda
    python benchmarks/inference.py --backbone ViT-L-14-336 --image-size 518 --batch 1 8 --shots 0 \
        --engine torch onnxruntime openvino --int8 weights full

``--engine``: torch and/or the exported graph run by ONNX Runtime / OpenVINO (CPU; built and cached on
first use, outside the timing), each fp32 and, with ``--int8``, in each int8 mode (``full`` is calibrated
on 4 random images here: the speed does not depend on them, the accuracy does; see
benchmarks/export_parity.py for that).

Prompt images are encoded once per prompt set (``fit_prompts``), as in a real evaluation; their cost
is printed separately as ``fit ms/prompt``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plain_forward(model, images: torch.Tensor) -> object:
    """open_clip's own image forward on the same weights at the same resolution."""
    from adaptclip_med.loading.factory import _build_clip, _model_config

    grid = images.shape[-1] // model.backbone.patch_size
    cfg, _ = _model_config(model.config.backbone)
    cfg["vision_cfg"]["image_size"] = images.shape[-1]
    plain = _build_clip(cfg, quick_gelu=True, seed=0).visual
    state = dict(model.backbone.visual.state_dict())
    state["positional_embedding"] = model.backbone.positional_embedding(grid)
    plain.load_state_dict(state)
    plain = plain.to(images.device).eval()
    return lambda: plain(images)


def run_one(args: argparse.Namespace) -> dict:
    from adaptclip_med import load_model

    torch.manual_seed(0)
    int8 = args.int8[0] if args.int8 else None
    size = args.image_size
    calibration = torch.randn(4, 3, size, size) if int8 == "full" else None
    model = load_model(args.backbone, None, image_size=args.image_size, device=args.device,
                       allow_random_backbone=True, precision="int8" if int8 else args.precision,
                       engine=args.engine[0], int8=int8, calibration=calibration)
    images = torch.randn(args.batch, 3, size, size, device=args.device)
    fit_ms = 0.0
    bank = None
    if args.shots:
        start = time.perf_counter()
        bank = model.fit_prompts(torch.randn(args.shots, 3, size, size, device=args.device))
        fit_ms = (time.perf_counter() - start) * 1000 / args.shots
    if args.mode == "plain":
        step = plain_forward(model, images)
    else:
        def step() -> None:
            model.predict(images, prompts=bank, batch_size=args.batch)
    times = []
    with torch.inference_mode():
        for _ in range(args.repeats):
            _sync(args.device)
            start = time.perf_counter()
            step()
            _sync(args.device)
            times.append(time.perf_counter() - start)
    return {"mode": args.mode, "engine": args.engine[0], "precision": f"int8-{int8}" if int8 else args.precision,
            "batch": args.batch, "shots": args.shots,
            "ms_per_image": min(times) * 1000 / args.batch, "fit_ms_per_prompt": fit_ms,
            "peak_rss_mib": _peak_rss_mib(),
            "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="adaptclip-tiny")
    parser.add_argument("--image-size", type=int, default=518)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--shots", type=int, nargs="+", default=[0, 1, 4])
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per configuration (min is reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="of the torch engine")
    parser.add_argument("--engine", nargs="+", default=["torch"], choices=["torch", "onnxruntime", "openvino"])
    parser.add_argument("--int8", nargs="*", default=[], choices=["weights", "full"],
                        help="also time each exported engine's int8 graph in these modes")
    parser.add_argument("--mode", choices=["adaptclip", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # child process: one configuration
        args.batch, args.shots = args.batch[0], args.shots[0]
        print(json.dumps(run_one(args)))
        return
    print(f"backbone={args.backbone} image_size={args.image_size} device={args.device} precision={args.precision} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    print(f"{'mode':<10}{'engine':<12}{'precision':<13}{'batch':>6}{'shots':>6}{'ms/image':>12}"
          f"{'fit ms/prompt':>15}{'peak RSS MiB':>14}")
    variants = [(e, None) for e in args.engine] + [(e, m) for e in args.engine if e != "torch" for m in args.int8]
    configs = [("plain", "torch", None, b, 0) for b in args.batch if "torch" in args.engine]
    configs += [("adaptclip", e, m, b, k) for e, m in variants for b in args.batch for k in args.shots]
    for mode, engine, int8, batch, shots in configs:
        cmd = [sys.executable, __file__, "--mode", mode, "--backbone", args.backbone, "--image-size",
               str(args.image_size), "--batch", str(batch), "--shots", str(shots), "--repeats", str(args.repeats),
               "--device", args.device, "--precision", args.precision, "--engine", engine,
               *(["--int8", int8] if int8 else [])]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:  # one configuration failed (e.g. killed for memory): say so, go on
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            killed = " (killed: out of memory?)" if done.returncode in (-9, 137) else ""
            label = f"int8-{int8}" if int8 else args.precision
            print(f"{mode:<10}{engine:<12}{label:<13}{batch:>6}{shots:>6}  failed, exit status "
                  f"{done.returncode}{killed}: {why[:160]}", flush=True)
            continue
        r = json.loads(lines[-1])
        print(f"{r['mode']:<10}{r['engine']:<12}{r['precision']:<13}{r['batch']:>6}{r['shots']:>6}"
              f"{r['ms_per_image']:>12.1f}{r['fit_ms_per_prompt']:>15.1f}{r['peak_rss_mib']:>14.0f}", flush=True)


if __name__ == "__main__":
    main()
