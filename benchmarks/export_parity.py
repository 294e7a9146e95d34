"""Parity of the exported engines with torch: fp32 to the float, int8 by ranking and decisions.

For each engine (ONNX Runtime, OpenVINO) and precision (fp32, int8 ``weights``, int8 ``full``) the same
images go through ``load_model(engine=...)`` and through torch, zero-shot and 4-shot, and the script
prints, per row: feature max-abs, anomaly-map max-abs and Pearson r, image-score max-abs and Spearman
rho, and the share of decisions that agree at the threshold calibrated on the normal images (the
conformal threshold of torch's scores of them at ``--target-specificity``, as the operating point's;
the decision rule is the package's, ``score > threshold``). Tolerance tiers (docs/core.md, "Inference engines"): fp32
features and maps <= 1e-4, image scores <= 1e-5; int8 maps r >= 0.99, scores rho >= 0.99, decisions
>= 99 %. Examples::

    python benchmarks/export_parity.py                                   # tiny random backbone, random images
    python benchmarks/export_parity.py --conformance ../shared/conformance --image-size 224
    python benchmarks/export_parity.py --conformance ../shared/conformance --image-size 224 \
        --images ../shared/datasets/covid19 --normals "../shared/datasets/covid19/COVID-19 Radiography Database/NORMAL"
    python benchmarks/export_parity.py --backbone ViT-L-14-336 --pretrained openai --checkpoint adaptclip-mvtec \\
        --images ../shared/datasets/br35h --normals ../shared/datasets/br35h/no --limit 64

``--dataset NAME --images ROOT`` reads a registered data set in its publisher's layout instead of a bare
folder: the queries are its test records with their labels and masks, and each row also prints the
I-AUROC and P-AUROC change of the engine against torch (with real weights, the change a user would see
in the evaluation's tables; "-" where the queries cannot give it: no masks, or one label only)::

    python benchmarks/export_parity.py --conformance ../shared/conformance --dataset brain_mri \\
        --images ../shared/datasets/brain_mri --masks ../shared/datasets/brain_mri_masks_derived --limit 100

``--normals`` are the 4-shot prompts (the first 4), the int8 ``full`` calibration images and the
threshold's normals (held out from ``--images``: no query is a prompt or a calibration image); without
them random images stand in (tiny fixture only).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from adaptclip_med.metrics import auroc, conformal_threshold, is_anomalous

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _files(folder: str, limit: int) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in SUFFIXES and "mask" not in p.name)
    step = max(1, len(files) // limit) if limit else 1
    return files[::step][:limit] if limit else files


def _images(model, files: list[Path]) -> torch.Tensor:
    return torch.stack([model.preprocessor(str(f)) for f in files])


class _Run:
    """One model's features of the queries, and its outputs zero-shot and with the 4-shot bank (encoded once)."""

    def __init__(self, model, queries: torch.Tensor, prompts: torch.Tensor) -> None:
        self.feats = model.encode(queries)
        self.outputs = {0: model.predict_features(self.feats), 4: model.predict_features(self.feats,
                                                                                         model.fit_prompts(prompts))}


class _Truth:
    """Labels ``(B,)`` and masks ``(B, S, S)`` of the queries; ``known`` ``(B,)``: the images whose mask is known
    (normal ones, all zeros, and anomalous ones with a mask file): P-AUROC pools their pixels only."""

    def __init__(self, labels: np.ndarray, masks: np.ndarray, known: np.ndarray) -> None:
        self.labels, self.masks, self.known = labels, masks, known

    def metrics(self, out) -> tuple[float, float]:
        """(I-AUROC, P-AUROC) of one model's outputs; NaN where the queries cannot give it."""
        both = len(set(self.labels.tolist())) == 2
        image = auroc(out.pred_score.numpy(), self.labels) if both else float("nan")
        masks = self.masks[self.known]
        pixel = (auroc(out.anomaly_map.numpy()[self.known].ravel(), masks.ravel())
                 if 0 < masks.sum() < masks.size else float("nan"))
        return image, pixel


def _dataset(name: str, root: str, size: int, limit: int, normals_folder: str | None, masks: str | None
             ) -> tuple[torch.Tensor, torch.Tensor | None, _Truth]:
    """Queries, normals (the set's prompt pool unless ``--normals``) and their truth, from a registered set."""
    from adaptclip_med.data import build_transforms, load_dataset

    index = load_dataset(name, root, **({"masks": Path(masks)} if masks else {}))
    pipe = build_transforms(size, keep_original=False)
    if normals_folder is None:
        pool = [r for cls in sorted(index.prompt_pool) for r in index.prompt_pool[cls]][:max(4, limit)]
        normal_files = [Path(r.image) for r in pool]
    else:
        normal_files = _files(normals_folder, max(4, limit))
    taken = {f.resolve() for f in normal_files}  # no query is a prompt or a calibration normal
    records = [r for r in index.records if Path(r.image).resolve() not in taken]
    step = max(1, len(records) // limit) if limit else 1
    records = records[::step][:limit] if limit else records
    samples = [pipe(r.as_dict()) for r in records]
    queries = torch.stack([torch.as_tensor(s["image"]) for s in samples])
    labels = np.array([r.label for r in records])
    known = np.array([r.label == 0 or r.mask is not None for r in records])
    masks = np.stack([np.asarray(s["mask"]) if "mask" in s else np.zeros((size, size), np.uint8) for s in samples])
    normals = (torch.stack([torch.as_tensor(pipe({"image": str(f), "mask": None})["image"]) for f in normal_files])
               if normal_files else None)
    return queries, normals, _Truth(labels, masks, known)


def _row(name: str, ref: _Run, got: _Run, shots: int, normals_ref: np.ndarray, target: float,
         truth: _Truth | None = None) -> str:
    fw, fg = ref.feats, got.feats
    feat = max(float((a - b).abs().max()) for a, b in zip([fw.global_, *fw.patches], [fg.global_, *fg.patches],
                                                          strict=True))
    w, g = ref.outputs[shots], got.outputs[shots]
    map_abs = float((w.anomaly_map - g.anomaly_map).abs().max())
    score_abs = float((w.pred_score - g.pred_score).abs().max())
    r = pearsonr(w.anomaly_map.flatten().numpy(), g.anomaly_map.flatten().numpy())[0]
    rho = spearmanr(w.pred_score.numpy(), g.pred_score.numpy())[0] if len(w.pred_score) > 2 else float("nan")
    threshold = (conformal_threshold(normals_ref, target).value if len(normals_ref)
                 else float(w.pred_score.median()))
    same = is_anomalous(w.pred_score.numpy(), threshold) == is_anomalous(g.pred_score.numpy(), threshold)
    agree = float(np.mean(same))
    line = (f"{name:<34}{feat:>10.2e}{map_abs:>10.2e}{r:>9.5f}{score_abs:>10.2e}{rho:>9.5f}{agree * 100:>8.1f}%"
            f"{threshold:>10.4f}{int(same.sum()):>6}/{same.size}")
    if truth is not None:
        (i_ref, p_ref), (i_got, p_got) = truth.metrics(w), truth.metrics(g)
        for label, a, b in (("I-AUROC", i_ref, i_got), ("P-AUROC", p_ref, p_got)):
            line += f"  {label} {a:.4f}→{b:.4f} ({b - a:+.4f})" if np.isfinite(a) else f"  {label} -"
    return line


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="adaptclip-tiny")
    p.add_argument("--pretrained", default=None)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--conformance", default=None, metavar="DIR",
                   help="use the conformance fixture's CLIP and adapters (../shared/conformance) and, without "
                        "--images, its images")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--images", default=None, metavar="DIR", help="query images (default: random)")
    p.add_argument("--dataset", default=None, metavar="NAME",
                   help="--images is this registered data set's folder: labelled queries, I-AUROC / P-AUROC change")
    p.add_argument("--masks", default=None, metavar="DIR", help="with --dataset: its loader's masks folder "
                   "(e.g. brain_mri_masks_derived for brain_mri)")
    p.add_argument("--normals", default=None, metavar="DIR", help="normal images: prompts, calibration, threshold")
    p.add_argument("--limit", type=int, default=16, help="at most this many queries (and normals)")
    p.add_argument("--engine", nargs="+", default=["onnxruntime", "openvino"])
    p.add_argument("--int8", nargs="*", default=["weights", "full"])
    p.add_argument("--target-specificity", type=float, default=0.95)
    args = p.parse_args()
    os.environ.setdefault("ADAPTCLIP_CACHE_DIR", tempfile.mkdtemp(prefix="adaptclip-parity-"))
    from adaptclip_med import load_model

    kwargs = {"backbone": args.backbone, "pretrained": args.pretrained, "checkpoint": args.checkpoint,
              "image_size": args.image_size, "allow_random_backbone": args.pretrained is None}
    if args.conformance:
        c = Path(args.conformance)
        kwargs.update(backbone=str(c / "open_clip_config.json"), pretrained=str(c / "clip_openai_format.safetensors"),
                      checkpoint=c / "adapters_official_format.pth", allow_random_backbone=False)
    ref = load_model(**kwargs)
    size = ref.image_size
    gen = torch.Generator().manual_seed(0)
    truth: _Truth | None = None
    if args.conformance and not args.images:
        from safetensors.torch import load_file

        from adaptclip_med.data.transforms.clip_input import ClipNormalize

        inputs = load_file(str(Path(args.conformance) / "inputs.safetensors"))
        norm = ClipNormalize()
        full = torch.stack([norm(i.numpy()) for i in torch.cat([inputs["query.resized_u8"],
                                                                 inputs["prompt.resized_u8"]])])
        pics = torch.nn.functional.interpolate(full, size=size, mode="bilinear", antialias=True)
        pics = torch.cat([pics, pics.flip(-1), pics.flip(-2)])
        queries, normals = pics[:-4], pics[-4:]
    elif args.dataset:
        if not args.images:
            p.error("--dataset needs --images (the data set's folder)")
        queries, normals, truth = _dataset(args.dataset, args.images, size, args.limit, args.normals, args.masks)
        if normals is None:
            p.error(f"{args.dataset} has no prompt pool of normal images: pass --normals DIR")
    else:
        normal_files = _files(args.normals, max(4, args.limit)) if args.normals else []
        taken = {f.resolve() for f in normal_files}  # a query that is also a prompt or a calibration normal
        query_files = [f for f in _files(args.images, 0) if f.resolve() not in taken] if args.images else []
        step = max(1, len(query_files) // args.limit) if args.limit else 1
        query_files = query_files[::step][:args.limit] if args.limit else query_files
        queries = (_images(ref, query_files) if args.images else
                   torch.nn.functional.interpolate(torch.randn(args.limit, 3, size // 8, size // 8, generator=gen),
                                                   size=size, mode="bilinear"))
        normals = (_images(ref, normal_files) if args.normals else
                   torch.nn.functional.interpolate(torch.randn(8, 3, size // 8, size // 8, generator=gen),
                                                   size=size, mode="bilinear"))
    prompts = normals[:4]
    print(f"backbone={kwargs['backbone']} size={size} queries={len(queries)} normals={len(normals)}")
    print(f"{'engine / precision / shots':<34}{'feat|d|':>10}{'map|d|':>10}{'map r':>9}{'score|d|':>10}"
          f"{'rho':>9}{'agree':>9}{'thresh':>10}{'agree/n':>10}")
    reference = _Run(ref, queries, prompts)
    held_out = normals[4:] if len(normals) > 4 else normals  # the 4-shot threshold's normals: not the bank itself
    normal_scores = {0: ref.predict(normals).pred_score.numpy(), 4: ref.predict(held_out, prompts).pred_score.numpy()}
    variants = [(e, None) for e in args.engine] + [(e, m) for e in args.engine for m in args.int8]
    for engine, int8 in variants:
        model = load_model(**kwargs, engine=engine, precision="int8" if int8 else "fp32", int8=int8,
                           calibration=normals if int8 == "full" else None)
        run = _Run(model, queries, prompts)
        for shots in (0, 4):
            print(_row(f"{engine} {('int8-' + int8) if int8 else 'fp32'} {shots}-shot", reference, run, shots,
                       normal_scores[shots], args.target_specificity, truth), flush=True)


if __name__ == "__main__":
    main()
