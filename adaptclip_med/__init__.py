"""adaptclip_med: zero/few-shot medical anomaly detection with AdaptCLIP on open_clip and MONAI.

The public API; the layers behind it are described in docs/architecture.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adaptclip_med.runtime.lazy import lazy_exports
from adaptclip_med.runtime.version import __version__

if TYPE_CHECKING:
    from adaptclip_med.loading.checkpoint import save_adapters
    from adaptclip_med.loading.factory import load_model
    from adaptclip_med.loading.model_registry import list_models
    from adaptclip_med.model import AdaptCLIP, AnomalyOutput, PromptBank
    from adaptclip_med.reporting.overlay_file import save_overlay

__all__ = ["AdaptCLIP", "AnomalyOutput", "PromptBank", "__version__", "list_models", "load_model", "save_adapters",
           "save_overlay"]

# torch, open_clip and MONAI load on first use of these names, not on `import adaptclip_med`
__getattr__, __dir__ = lazy_exports(__name__, {
    "load_model": "adaptclip_med.loading.factory",
    "list_models": "adaptclip_med.loading.model_registry",
    "save_adapters": "adaptclip_med.loading.checkpoint",
    "AdaptCLIP": "adaptclip_med.model",
    "AnomalyOutput": "adaptclip_med.model",
    "PromptBank": "adaptclip_med.model",
    "save_overlay": "adaptclip_med.reporting.overlay_file",
})
