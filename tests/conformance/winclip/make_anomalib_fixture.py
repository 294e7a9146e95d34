"""Reference outputs of anomalib 2.7.0's ``WinClipModel`` for tests/conformance/winclip/test_winclip_anomalib.py.

anomalib is not a dependency of the toolkit (``pip install .[test]`` lists it) and its WinCLIP needs
open_clip < 2.26.1 (its ``clip`` extra: later open_clip transformers are batch-first, while
``WinClipModel._get_window_embeddings`` hands them sequence-first tokens), so CI compares against the
outputs this script wrote once (``anomalib_outputs.safetensors``, beside it). It imports nothing of
``adaptclip_med``: the test rebuilds the same weights and images from the functions below.

Weights: a small open_clip ViT (:data:`MODEL_CFG`, 84 px, 6×6 patches) whose every tensor is drawn
from one seeded generator in sorted key order (:func:`seeded_state_dict`), so they do not depend on
open_clip's own initialisation (which changed between versions). anomalib's fixed
``ViT-B-16-plus-240`` / ``laion400m_e31`` load is replaced by this model (no download).

Regenerate (any machine, a few seconds on a CPU)::

    pip install --target /tmp/anomlib --no-deps anomalib==2.7.0 open_clip_torch==2.24.0 lightning \\
        lightning-utilities torchmetrics kornia kornia_rs einops freia omegaconf antlr4-python3-runtime \\
        jsonargparse docstring-parser rich-argparse opencv-python-headless imagecodecs timm ftfy wcwidth regex
    PYTHONPATH=/tmp/anomlib .venv/bin/python tests/conformance/winclip/make_anomalib_fixture.py

(``ADAPTCLIP_ANOMALIB_PATH=/tmp/anomlib`` makes the test run it live too, into a temporary file.)
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "anomalib_outputs.safetensors"
#: The seed of the weights and of the images.
SEED = 2107
#: A small open_clip CLIP: 84 px, 14 px patches (6×6 grid), 4 blocks of width 64; QuickGELU.
MODEL_CFG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 84, "layers": 4, "width": 64, "head_width": 32, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 2},
}
#: Queries and normal prompts; the shots compared (0 = zero-shot WinCLIP, else WinCLIP+ with the first k prompts).
N_QUERIES, N_PROMPTS, SHOTS = 3, 2, (0, 1, 2)


def seeded_state_dict(template: dict[str, torch.Tensor], seed: int = SEED) -> dict[str, torch.Tensor]:
    """Every floating tensor of ``template`` (a CLIP state dict) drawn anew, key by key in sorted order.

    Norm weights ``1 + 0.1·N``, biases ``0.02·N``, ``logit_scale`` ``log(1/0.07)``, the rest ``N / √fan_in``
    (positional and class embeddings: ``0.5·N``): activations keep their scale through the blocks, so
    windows and images get distinct, non-degenerate embeddings.
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(template):
        t = template[key]
        if not t.is_floating_point():
            out[key] = t.clone()
            continue
        noise = torch.randn(t.shape, generator=gen, dtype=torch.float64)
        name = key.rsplit(".", 1)[-1]
        if key.endswith("logit_scale"):
            value = torch.full(t.shape, math.log(1 / 0.07), dtype=torch.float64)
        elif name == "weight" and key.split(".")[-2].startswith("ln"):
            value = 1 + 0.1 * noise
        elif name == "bias" or name.endswith("_bias"):
            value = 0.02 * noise
        elif name in ("positional_embedding", "class_embedding"):
            value = 0.5 * noise
        else:
            fan_in = t.shape[1] if t.ndim == 2 and name.endswith("weight") else t.shape[0] if t.ndim >= 1 else 1
            if t.ndim == 4:
                fan_in = t.shape[1] * t.shape[2] * t.shape[3]
            value = noise / math.sqrt(max(fan_in, 1))
        out[key] = value.to(t.dtype)
    return out


def images(seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N_QUERIES, 3, 84, 84)`` queries and ``(N_PROMPTS, 3, 84, 84)`` normal prompts, CLIP-normalised-like.

    The prompts are smooth noise; each query is a prompt-like image, the later ones with a bright square.
    """
    gen = torch.Generator().manual_seed(seed + 1)
    size = MODEL_CFG["vision_cfg"]["image_size"]

    def smooth(n: int) -> torch.Tensor:
        coarse = torch.randn(n, 3, 7, 7, generator=gen)
        return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    prompts = smooth(N_PROMPTS)
    queries = smooth(N_QUERIES) * 0.8 + prompts[:1] * 0.2
    for i in range(1, N_QUERIES):
        top = 10 + 20 * i
        queries[i, :, top:top + 16, 20:36] += 2.0
    return queries.contiguous(), prompts.contiguous()


def main(target: Path = FIXTURE) -> None:
    """Run anomalib's ``WinClipModel`` (zero-shot, k = 1, 2) and save its scores and maps to ``target``."""
    import open_clip
    from anomalib.models.image.winclip import torch_model
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    def own_clip(*_args: object, **_kwargs: object) -> tuple[torch.nn.Module, None, object]:
        clip = CLIP(**MODEL_CFG)
        clip.load_state_dict(seeded_state_dict(clip.state_dict()), strict=True)
        return clip.eval(), None, None

    torch_model.open_clip.create_model_and_transforms = own_clip  # instead of the ViT-B-16-plus-240 download
    queries, prompts = images()
    out: dict[str, torch.Tensor] = {}
    for k in SHOTS:
        model = torch_model.WinClipModel(class_name="object", reference_images=prompts[:k] if k else None).eval()
        result = model(queries)
        out[f"k{k}_pred_score"] = result.pred_score.float().contiguous()
        out[f"k{k}_anomaly_map"] = result.anomaly_map.float().contiguous()
    meta = {"anomalib": "2.7.0", "open_clip": str(getattr(open_clip, "__version__", "2.24.0")),
            "torch": torch.__version__, "seed": str(SEED)}
    save_file(out, str(target), metadata=meta)
    print(f"wrote {target} ({target.stat().st_size} bytes): {meta}")


if __name__ == "__main__":
    import sys

    main(Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURE)
