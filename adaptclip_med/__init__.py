"""adaptclip_med: zero/few-shot medical anomaly detection with AdaptCLIP on open_clip and MONAI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .export import save_overlay
    from .factory import load_model
    from .model import AdaptCLIP, AnomalyOutput, PromptBank
    from .registry import list_models

__all__ = ["AdaptCLIP", "AnomalyOutput", "PromptBank", "__version__", "list_models", "load_model", "save_overlay"]

# torch, open_clip and MONAI load on first use of these names, not on `import adaptclip_med`
__getattr__, __dir__ = lazy_exports(__name__, {
    "load_model": ".factory", "AdaptCLIP": ".model", "AnomalyOutput": ".model", "PromptBank": ".model",
    "list_models": ".registry", "save_overlay": ".export",
})
