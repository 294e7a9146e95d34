"""Fidelity: worst difference to the authors' computation, on the tiny fixture and on a ViT-L-14-336 at 518 px.

Usage (from any folder; put another tree first on PYTHONPATH, and run from outside the repository, to
measure that tree's code — how issue 16 was bisected)::

    OMP_NUM_THREADS=1 python benchmarks/fidelity.py [--conformance ../shared/conformance]
    OMP_NUM_THREADS=2 python benchmarks/fidelity.py --vitl-model /tmp/vitl_feats.pt /tmp/vitl_ours.pt
    python benchmarks/fidelity.py --vitl-compare /tmp/vitl_ours.pt /tmp/vitl_other.pt

Default (tiny fixture, ~25 s): per k the worst absolute difference of the sampled fused maps (before /
after the Gaussian), ``map_max`` and the image score from the stored uint8 inputs through our model,
the nearest-neighbour flips per layer (patches whose nearest prompt patch differs from the official
one), the same for ``predict_parts``; ``component_k*``: the PQA fed the official tokens (README §8.B).

``--vitl-model FEATURES OUT`` (~2 min of CPU, 5 min wall on the shared 2 cores): a random ViT-L-14-336
(seed 0) at 518 px, 2 queries (shifted noisy copies of prompt 0) and 2 smooth random prompts, encoded
once into FEATURES (the backbone is not what is compared); k = 0, 1, 2 scored with the code on the path
and saved to OUT with a float64 evaluation of README §4.5–§4.6 on the same features.
``--vitl-compare``: each saved run against its float64 reference (worst differences, flips, the smallest
float64 nearest-neighbour gap) and against the first run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from adaptclip_med.model.fusion import gaussian_kernel
from adaptclip_med.model.prompt_query import nearest_prompt_patch

LAYERS = (2, 4, 6, 8)


def absdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def tiny(conformance: Path) -> dict:
    from adaptclip_med import load_model
    try:
        from adaptclip_med.data.transforms.clip_input import ClipNormalize
    except ImportError:  # trees before the data/ split (bisecting older commits)
        from adaptclip_med.preprocess import ClipNormalize

    ref = load_file(str(conformance / "outputs.safetensors"))
    inputs = load_file(str(conformance / "inputs.safetensors"))
    model = load_model(backbone=str(conformance / "open_clip_config.json"),
                       pretrained=str(conformance / "clip_openai_format.safetensors"),
                       checkpoint=conformance / "adapters_official_format.pth", image_size=518)
    norm = ClipNormalize()
    queries = torch.stack([norm(x.numpy()) for x in inputs["query.resized_u8"]])
    prompts = torch.stack([norm(x.numpy()) for x in inputs["prompt.resized_u8"]])
    out: dict = {}
    with torch.no_grad():
        q = model.encode_images(queries)
        p = model.encode_images(prompts)
        for k in (0, 1, 2):
            bank = model.fit_prompts(prompts[:k]) if k else None
            res = model.predict(queries, prompts=bank)
            row = {
                "pre_blur": absdiff(res.maps["pre_blur"][:, ::9, ::9], ref[f"k{k}.fused.map_pre_gaussian"]),
                "anomaly_map": absdiff(res.anomaly_map[:, ::9, ::9], ref[f"k{k}.fused.map"]),
                "map_max": absdiff(res.scores["map_max"], ref[f"k{k}.fused.map_max"]),
                "pred_score": absdiff(res.pred_score, ref[f"k{k}.image_score"]),
            }
            if k:
                flips = []
                for layer, i in enumerate(LAYERS):
                    memory = p.patches[layer][:k, 1:].reshape(1, -1, p.patches[layer].shape[-1])
                    _, index, _ = nearest_prompt_patch(q.patches[layer][:, 1:], memory)
                    flips.append(int((index.int() != ref[f"k{k}.diag.nn_index.layer{i}"]).sum()))
                row["flips_per_layer"] = flips
            if k and hasattr(model, "predict_parts"):  # the evaluation's path (one PromptSet, every bank)
                from adaptclip_med.model.backbone import ImageFeatures

                pset = model.prompt_set([ImageFeatures(p.global_[i:i + 1], [x[i:i + 1] for x in p.patches])
                                         for i in range(2)], [tuple(range(k))])
                part = model.predict_parts(q, pset)[0]
                row["parts.anomaly_map"] = absdiff(part.anomaly_map[:, ::9, ::9], ref[f"k{k}.fused.map"])
                row["parts.equal_predict"] = bool(torch.equal(part.anomaly_map, res.anomaly_map))
            out[f"k{k}"] = row
        # component level: the official tokens into our PQA
        for k in (1, 2):
            flips, maps, logits = [], 0.0, 0.0
            for layer, i in enumerate(LAYERS):
                query = ref[f"query.patch_tokens.layer{i}"]
                memory = ref[f"prompt.patch_tokens.layer{i}"][:k, 1:].reshape(1, -1, query.shape[-1])
                _, index, _ = nearest_prompt_patch(query[:, 1:], memory)
                flips.append(int((index.int() != ref[f"k{k}.diag.nn_index.layer{i}"]).sum()))
                lg, mp, _ = model.prompt_query_adapter.forward_layer(layer, query, memory, 518)
                maps = max(maps, absdiff(mp[:, 1, ::9, ::9], ref[f"k{k}.pqa.map.layer{i}"]))
                lref = ref[f"k{k}.pqa.logits.layer{i}"]
                logits = max(logits, float((lg - lref).abs().max() / lref.abs().max()))
            out[f"component_k{k}"] = {"flips_per_layer": flips, "pqa_map": maps, "pqa_logits_rel": logits}
    return out


# --- ViT-L-14-336 model at 518 px: our code (or another tree on PYTHONPATH) vs float64 ------------------

def _vitl_model():
    from adaptclip_med import load_model

    model = load_model("ViT-L-14-336", None, image_size=518, allow_random_backbone=True, seed=0)
    torch.manual_seed(3)
    with torch.no_grad():  # BatchNorm statistics that are not an identity (fresh adapters have 0 / 1)
        for mod in model.prompt_query_adapter.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 2.0)
    return model.eval()


def vitl_images(n_queries: int = 2, n_prompts: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random ``(3, 518, 518)`` prompts; queries are shifted, noisy copies of prompt 0."""
    torch.manual_seed(1)
    base = F.interpolate(torch.randn(n_prompts, 3, 37, 37), size=(518, 518), mode="bicubic", align_corners=False)
    prompts = base + 0.1 * torch.randn_like(base)
    queries = torch.stack([torch.roll(base[0], shifts=(7 * (i + 1), 5 * (i + 1)), dims=(-2, -1))
                           for i in range(n_queries)])
    return queries + 0.1 * torch.randn_like(queries), prompts


def vitl_encode(path: Path) -> None:
    """Encode the ViT-L check's queries and prompts once (the backbone is not what is compared)."""
    model = _vitl_model()
    queries, prompts = vitl_images()
    q, p = model.encode(queries), model.encode(prompts)
    torch.save({"q_global": q.global_, "q_patches": q.patches, "p_global": p.global_, "p_patches": p.patches}, path)


def vitl_score(features: Path, out: Path) -> None:
    """Score the stored ViT-L features with the code on ``sys.path`` (k = 0, 1, 2); save every output."""
    from adaptclip_med.model.backbone import ImageFeatures

    model = _vitl_model()
    saved = torch.load(features)
    q = ImageFeatures(saved["q_global"], saved["q_patches"])
    result = {}
    for k in (0, 1, 2):
        bank = None
        if k:
            bank = model.bank_from_features([ImageFeatures(saved["p_global"][:k], [x[:k] for x in saved["p_patches"]])])
        res = model.predict_features(q, bank)
        result[f"k{k}"] = {"anomaly_map": res.anomaly_map, "pred_score": res.pred_score,
                           **{f"maps.{name}": v for name, v in res.maps.items()},
                           **{f"scores.{name}": v for name, v in res.scores.items()}}
        if k:
            result[f"k{k}"]["nn_index"] = torch.stack([
                nearest_prompt_patch(x[:, 1:], m)[1] for x, m in zip(q.patches, bank.patches, strict=True)])
            result[f"k{k}"]["float64"] = _float64_few_shot(model, q, bank, res)
    torch.save(result, out)


def _float64_few_shot(model, q, bank, res) -> dict:
    """README §4.5–§4.6 in float64 on the same features (our float32 VA/TA maps and probabilities)."""
    import copy

    pqa = copy.deepcopy(model.prompt_query_adapter).double()
    maps, aligns, probs, gaps, idxs = [], [], [], [], []
    with torch.no_grad():
        for layer, (query, memory) in enumerate(zip(q.patches, bank.patches, strict=True)):
            qn = F.normalize(query[:, 1:].double(), dim=-1)
            mn = F.normalize(memory.double(), dim=-1).expand(qn.shape[0], -1, -1)
            dist = 1.0 - torch.bmm(qn, mn.transpose(1, 2))
            two = dist.topk(2, dim=-1, largest=False)
            gaps.append(two.values[..., 1] - two.values[..., 0])
            idxs.append(two.indices[..., 0])
            d, idx = dist.min(dim=-1)
            matched = torch.gather(mn, 1, idx.unsqueeze(-1).expand(-1, -1, mn.shape[-1]))
            joint = qn + (qn - matched).abs()
            b, n, dim = joint.shape
            g = round(n ** 0.5)
            fused = pqa.layer_norms[layer](joint.transpose(1, 2).reshape(b, dim, g, g))
            maps.append(F.interpolate(pqa.map_head(fused).softmax(dim=1), size=(518, 518), mode="bilinear",
                                      align_corners=False)[:, 1])
            flat = fused.flatten(2)
            pooled = 0.5 * (flat.mean(-1) + flat.topk(10, dim=-1).values.mean(-1))
            probs.append(pqa.score_head(pooled).softmax(-1)[:, 1])
            aligns.append(F.interpolate(d.reshape(b, 1, g, g), size=(518, 518), mode="bilinear",
                                        align_corners=False)[:, 0])
    va, ta = res.maps["va"].double(), res.maps["ta"].double()
    pqa_map = torch.stack(maps).mean(0)
    align = len(aligns) / sum(1.0 / a for a in aligns)
    pre = 2 / (1 / ((va + ta + pqa_map) / 3) + 1 / align)
    kernel = gaussian_kernel(4.0)
    r = (kernel.numel() - 1) // 2
    x = pre.unsqueeze(1)
    x = F.conv2d(torch.cat([x[..., :r, :].flip(-2), x, x[..., -r:, :].flip(-2)], dim=-2), kernel.view(1, 1, -1, 1))
    x = F.conv2d(torch.cat([x[..., :r].flip(-1), x, x[..., -r:].flip(-1)], dim=-1), kernel.view(1, 1, 1, -1))
    post = x[:, 0]
    peak = post.flatten(1).amax(1)
    prob = (res.scores["va"].double() + res.scores["ta"].double() + torch.stack(probs).mean(0)) / 3
    return {"pre_blur": pre, "anomaly_map": post, "pred_score": 2 / (1 / prob + 1 / peak),
            "nn_gap": torch.stack(gaps), "nn_index": torch.stack(idxs)}


def vitl_compare(paths: list[Path]) -> dict:
    """Worst differences of each saved run to float64 and to the first run; flips against float64."""
    runs = [torch.load(p) for p in paths]
    out = {}
    for path, run in zip(paths, runs, strict=True):
        row = {}
        for k in ("k0", "k1", "k2"):
            first = runs[0][k]
            row[k] = {"vs_first.anomaly_map": absdiff(run[k]["anomaly_map"], first["anomaly_map"]),
                      "vs_first.pred_score": absdiff(run[k]["pred_score"], first["pred_score"])}
            if "float64" in run[k]:
                ref = run[k]["float64"]
                flip = run[k]["nn_index"] != ref["nn_index"]
                row[k].update({
                    "vs_f64.pre_blur": absdiff(run[k]["maps.pre_blur"].double(), ref["pre_blur"]),
                    "vs_f64.anomaly_map": absdiff(run[k]["anomaly_map"].double(), ref["anomaly_map"]),
                    "vs_f64.pred_score": absdiff(run[k]["pred_score"].double(), ref["pred_score"]),
                    "flips_vs_f64": int(flip.sum()),
                    "smallest_f64_gap": float(ref["nn_gap"].min()),
                    "flip_gaps": [float(g) for g in ref["nn_gap"][flip]],
                    "vs_first.nn_index_changed": int((run[k]["nn_index"] != first["nn_index"]).sum()),
                })
        out[str(path)] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conformance", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared"
                        / "conformance")
    parser.add_argument("--vitl-model", nargs=2, metavar=("FEATURES", "OUT"), type=Path,
                        help="score a random ViT-L-14-336 at 518 px on FEATURES (encoded if missing); save to OUT")
    parser.add_argument("--vitl-compare", nargs="+", type=Path, metavar="OUT",
                        help="compare --vitl-model outputs (each to float64 and to the first)")
    args = parser.parse_args()
    result = {}
    if args.vitl_model:
        if not args.vitl_model[0].exists():
            vitl_encode(args.vitl_model[0])
        vitl_score(*args.vitl_model)
        return
    if args.vitl_compare:
        print(json.dumps(_short(vitl_compare(args.vitl_compare)), indent=1))
        return
    result["tiny"] = tiny(args.conformance.resolve())
    print(json.dumps(_short(result), indent=1))


def _short(value):
    """Floats as 3-digit strings for printing."""
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    return f"{value:.2e}" if isinstance(value, float) else value


if __name__ == "__main__":
    main()
