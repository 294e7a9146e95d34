"""adaptclip_med: zero/few-shot medical anomaly detection with AdaptCLIP on open_clip and MONAI."""

from __future__ import annotations

__version__ = "0.1.0"

from .factory import load_model
from .model import AdaptCLIP, AnomalyOutput, PromptBank
from .registry import list_models

__all__ = ["AdaptCLIP", "AnomalyOutput", "PromptBank", "__version__", "list_models", "load_model"]
