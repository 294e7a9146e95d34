"""Torch modules of AdaptCLIP (no file I/O)."""

from .adaptclip import AdaptCLIP, AdaptCLIPConfig
from .backbone import FrozenCLIPVision, ImageFeatures
from .outputs import AnomalyOutput, Branches
from .prompt_bank import PromptBank, PromptSet

__all__ = [
    "AdaptCLIP", "AdaptCLIPConfig", "AnomalyOutput", "Branches", "FrozenCLIPVision", "ImageFeatures",
    "PromptBank", "PromptSet",
]
