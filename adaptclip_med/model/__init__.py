"""Torch modules of AdaptCLIP (no file I/O)."""

from .adaptclip import AdaptCLIP, AdaptCLIPConfig, PromptBank
from .backbone import FrozenCLIPVision, ImageFeatures
from .outputs import AnomalyOutput, Branches

__all__ = [
    "AdaptCLIP", "AdaptCLIPConfig", "AnomalyOutput", "Branches", "FrozenCLIPVision", "ImageFeatures",
    "PromptBank",
]
