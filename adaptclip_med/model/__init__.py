"""Torch modules of AdaptCLIP (no file I/O)."""

from adaptclip_med.model.adaptclip import AdaptCLIP, AdaptCLIPConfig
from adaptclip_med.model.backbone import FrozenCLIPVision, ImageFeatures
from adaptclip_med.model.outputs import AnomalyOutput, Branches
from adaptclip_med.model.prompt_bank import PromptBank, PromptSet

__all__ = [
    "AdaptCLIP", "AdaptCLIPConfig", "AnomalyOutput", "Branches", "FrozenCLIPVision", "ImageFeatures",
    "PromptBank", "PromptSet",
]
