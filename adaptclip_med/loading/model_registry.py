"""Registries of backbones and adapter checkpoints: literal tables, nothing discovered at import.

A backbone is an open_clip architecture (by name, or a model-config JSON shipped here) plus the
pretrained tags we know how to find. An adapter checkpoint is a released AdaptCLIP file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

DEFAULT_BACKBONE = "ViT-L-14-336"
DEFAULT_PRETRAINED = "openai"
DEFAULT_IMAGE_SIZE = 518


@dataclass(frozen=True)
class BackboneSpec:
    """A CLIP backbone AdaptCLIP can run on.

    Attributes:
        name: the name users pass (``load_model(backbone=name)``).
        open_clip_name: open_clip model-config name, or ``None`` when ``config_file`` is used.
        config_file: a model-config JSON inside ``adaptclip_med/loading/model_configs`` (tiny test backbones).
        quick_gelu: force QuickGELU (OpenAI weights were trained with it; a mismatch loads silently).
        image_size: default run-time resolution.
        tags: known pretrained tags → the file name we look for locally (``ADAPTCLIP_WEIGHTS_DIR``).
        aliases: other spellings (the authors' ``ViT-L/14@336px``).
    """

    name: str
    open_clip_name: str | None = None
    config_file: str | None = None
    quick_gelu: bool = True
    image_size: int = DEFAULT_IMAGE_SIZE
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    note: str = ""

    def config_text(self) -> str | None:
        """Return the packaged model-config JSON text, if this spec ships one."""
        if self.config_file is None:
            return None
        return resources.files("adaptclip_med.loading.model_configs").joinpath(self.config_file).read_text()


@dataclass(frozen=True)
class CheckpointSpec:
    """A released adapter checkpoint (the authors' format, spec §8)."""

    name: str
    hf_repo: str
    hf_filename: str
    backbone: str
    trained_on: str
    licence: str = "GPL-2.0 (the authors' weights)"


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="ViT-L-14-336",
            open_clip_name="ViT-L-14-336",
            tags={"openai": "ViT-L-14-336px.pt"},
            aliases=("ViT-L/14@336px", "ViT-L-14-336-quickgelu"),
            note="OpenAI CLIP ViT-L/14@336px, run at 518 px (37×37 patches); the paper's default.",
        ),
        BackboneSpec(
            name="ViT-B-16-plus-240",
            open_clip_name="ViT-B-16-plus-240",
            quick_gelu=False,
            image_size=512,
            tags={
                "laion400m_e31": "vit_b_16_plus_240-laion400m_e31-8fb26589.pt",
                "laion400m_e32": "vit_b_16_plus_240-laion400m_e32-699c4b84.pt",
            },
            aliases=("VITB16_PLUS_240",),
            note="The paper's lighter option (LAION-400M), run at 512 px.",
        ),
        BackboneSpec(
            name="adaptclip-tiny",
            config_file="adaptclip-tiny.json",
            image_size=224,
            note="Tiny random-weight ViT (8 blocks, width 128, embed 64) for tests and offline demos.",
        ),
    )
}

CHECKPOINTS: dict[str, CheckpointSpec] = {
    spec.name: spec
    for spec in (
        CheckpointSpec(
            name="adaptclip-mvtec",
            hf_repo="csgaobb/AdaptCLIP",
            hf_filename="adaptclip_checkpoints/12_4_128_train_on_mvtec_3adapters_batch8/epoch_15.pth",
            backbone="ViT-L-14-336",
            trained_on="MVTec AD test split (used for VisA and the medical sets)",
        ),
        CheckpointSpec(
            name="adaptclip-visa",
            hf_repo="csgaobb/AdaptCLIP",
            hf_filename="adaptclip_checkpoints/12_4_128_train_on_visa_3adapters_batch8/epoch_15.pth",
            backbone="ViT-L-14-336",
            trained_on="VisA test split (used for MVTec AD)",
        ),
    )
}


def canonical_backbone(name: str) -> BackboneSpec | None:
    """Return the spec registered under ``name`` or one of its aliases, else ``None``."""
    if name in BACKBONES:
        return BACKBONES[name]
    for spec in BACKBONES.values():
        if name in spec.aliases:
            return spec
    return None


def list_models() -> dict[str, list[str]]:
    """List the registered backbones (with their tags) and adapter checkpoints.

    Returns:
        ``{"backbones": ["ViT-L-14-336:openai", ...], "checkpoints": ["adaptclip-mvtec", ...]}``.
        Any other open_clip model name works too (``open_clip.list_models()``).
    """
    backbones = []
    for spec in BACKBONES.values():
        backbones.extend([f"{spec.name}:{tag}" for tag in spec.tags] or [spec.name])
    return {"backbones": backbones, "checkpoints": list(CHECKPOINTS)}
