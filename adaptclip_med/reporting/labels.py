"""Labels that say what a result is: the untrained-model notice, burned into figures and captions.

A run on random backbone weights (``--pretrained none``) or on untrained adapters (``--checkpoint none``
on real weights) shows the pipeline, not AdaptCLIP's performance. Every output of such a run carries
its :func:`run_notice`: table captions (Markdown and LaTeX), a ``notice`` column of ``summary.csv``, the
page banner, and a caption burned into every figure and overlay PNG (:func:`mark_figure`, also written to
the PNG's ``Description`` text chunk by :func:`png_metadata`).

Notebooks use the same helpers for their own figures::

    from adaptclip_med.reporting.labels import mark_figure, run_notice
    notice = run_notice(pretrained=None, checkpoint=None)   # "untrained backbone — pipeline demo only"
    mark_figure(fig, notice)                                # a matplotlib Figure; no-op when notice is None
"""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageDraw, ImageFont

#: Random backbone weights: the numbers only show that the pipeline runs.
UNTRAINED_BACKBONE = "untrained backbone — pipeline demo only"
#: Real backbone weights with fresh (untrained) adapters: not the trained AdaptCLIP model.
UNTRAINED_ADAPTERS = "untrained adapters — not the trained AdaptCLIP model"
#: Colours of the burned-in caption (the page banner's).
BAND_FACE, BAND_EDGE, BAND_TEXT = "#fff3cd", "#e0a800", "#5c3d00"


def run_notice(pretrained: str | None, checkpoint: str | None) -> str | None:
    """The notice every output of a run with these weights carries, or ``None`` for a trained model.

    Args:
        pretrained: backbone weights (``None`` = random).
        checkpoint: adapter checkpoint (``None`` = fresh, untrained adapters).
    """
    if pretrained is None:
        return UNTRAINED_BACKBONE
    if checkpoint is None:
        return UNTRAINED_ADAPTERS
    return None


def notice_of(settings: Any) -> str | None:
    """:func:`run_notice` of anything with ``pretrained`` and ``checkpoint`` attributes (``EvalConfig``)."""
    return run_notice(getattr(settings, "pretrained", None), getattr(settings, "checkpoint", None))


def with_notice(caption: str, notice: str | None) -> str:
    """``caption (notice)``; unchanged when there is no notice or it is already there."""
    if not notice or notice in caption:
        return caption
    return f"{caption} ({notice})" if caption else notice


def mark_figure(fig: Any, notice: str | None) -> Any:
    """Burn ``notice`` into a matplotlib ``Figure`` as a banner under the axes; returns the figure.

    The banner sits just below the figure's bottom edge, so ``savefig(..., bbox_inches="tight")`` grows
    the picture to include it rather than covering a panel. No-op when ``notice`` is None.
    """
    if not notice:
        return fig
    fig.text(0.5, 0.0, notice, ha="center", va="top", fontsize=8, fontweight="bold", color=BAND_TEXT,
             bbox={"boxstyle": "round,pad=0.35", "facecolor": BAND_FACE, "edgecolor": BAND_EDGE})
    return fig


def png_metadata(notice: str | None) -> dict[str, str]:
    """``savefig(metadata=...)`` for PNGs: the notice as the ``Description`` text chunk (machine-readable)."""
    return {"Description": notice} if notice else {}


def mark_image(image: Image.Image, notice: str | None) -> Image.Image:
    """A copy of a Pillow picture with ``notice`` in a banner added below it (for non-matplotlib PNGs)."""
    if not notice:
        return image
    rgb = image.convert("RGB")
    size = max(12, rgb.width // 40)
    try:
        font: Any = ImageFont.truetype("DejaVuSans-Bold.ttf", size)
    except OSError:
        font = ImageFont.load_default()
    band = int(size * 1.9)
    out = Image.new("RGB", (rgb.width, rgb.height + band), BAND_FACE)
    out.paste(rgb, (0, 0))
    draw = ImageDraw.Draw(out)
    draw.rectangle([0, rgb.height, rgb.width - 1, rgb.height + band - 1], outline=BAND_EDGE, width=2)
    draw.text((rgb.width // 2, rgb.height + band // 2), notice, fill=BAND_TEXT, font=font, anchor="mm")
    return out


__all__ = ["UNTRAINED_ADAPTERS", "UNTRAINED_BACKBONE", "mark_figure", "mark_image", "notice_of", "png_metadata",
           "run_notice", "with_notice"]
