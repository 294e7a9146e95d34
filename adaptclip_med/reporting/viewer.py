"""Interactive heat-map viewer for a scored volume or folder: slice, threshold and opacity sliders.

:class:`MapViewer` holds the 8-bit pictures and anomaly maps of a scored volume (one entry per slice)
or folder (one per image) and renders one RGB frame for a ``(index, threshold, alpha)`` choice; the
notebook widget (:meth:`MapViewer.widget`, ipywidgets) only wires three sliders to :meth:`render`.

A frame is the picture with the anomaly map blended over it **where the map is above the
threshold**: ``frame = (1 − alpha) · picture + alpha · colour(map)`` on those pixels, the picture
unchanged elsewhere, and the outline of the above-threshold region drawn in white. Colours use the
``jet`` map with limits fixed over all entries (``vmin``/``vmax``), so frames compare with each other.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image

from adaptclip_med.metrics.operating_point import is_anomalous
from adaptclip_med.reporting.overlays import resize_map

OUTLINE = (255, 255, 255)


def _rgb(picture: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3)`` uint8 -> ``(H, W, 3)`` float32 in 0..255."""
    arr = np.asarray(picture)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        msg = f"picture of shape {arr.shape}; expected (H, W) or (H, W, 3)"
        raise ValueError(msg)
    return arr.astype(np.float32)


def outline(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels of ``mask`` with a 4-neighbour outside it (or on the image border)."""
    m = np.asarray(mask, dtype=bool)
    padded = np.pad(m, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return m & ~interior


class MapViewer:
    """Pictures and anomaly maps of a scored volume or folder, rendered frame by frame.

    Args:
        pictures: ``N`` uint8 images ``(H_i, W_i)`` or ``(H_i, W_i, 3)`` (sizes may differ).
        maps: ``N`` float anomaly maps ``(h_i, w_i)`` at any size (resized bilinearly to the picture).
        names: a label per entry (default ``"slice i"``).
        scores: the image / slice anomaly scores, shown in the caption.
        vmin, vmax: colour limits (default: min and max over all maps).
        notice: text every caption carries (e.g. the untrained-backbone marker).
        kind: what an entry is, for the slider and default names (``"slice"`` or ``"image"``).
    """

    def __init__(self, pictures: Sequence[np.ndarray], maps: Sequence[np.ndarray], *,
                 names: Sequence[str] | None = None, scores: Sequence[float] | None = None,
                 vmin: float | None = None, vmax: float | None = None, notice: str | None = None,
                 kind: str = "slice") -> None:
        if len(pictures) != len(maps) or not len(maps):
            msg = f"{len(pictures)} pictures and {len(maps)} maps; expected the same number, at least one"
            raise ValueError(msg)
        self.pictures = [np.asarray(p) for p in pictures]
        self.maps = [np.asarray(m, dtype=np.float32) for m in maps]
        self.kind = kind
        self.names = list(names) if names is not None else [f"{kind} {i}" for i in range(len(maps))]
        self.scores = None if scores is None else [float(s) for s in scores]
        self.vmin = float(min(m.min() for m in self.maps)) if vmin is None else float(vmin)
        self.vmax = float(max(m.max() for m in self.maps)) if vmax is None else float(vmax)
        if not self.vmax > self.vmin:
            self.vmax = self.vmin + 1e-6
        self.notice = notice

    def __len__(self) -> int:
        return len(self.maps)

    def resized_map(self, index: int) -> np.ndarray:
        """``(H, W)`` float32: entry ``index``'s map at its picture's size."""
        return resize_map(self.maps[index], self.pictures[index].shape[:2])

    def mask(self, index: int, threshold: float) -> np.ndarray:
        """``(H, W)`` bool: pixels whose map value is above ``threshold`` (the toolkit's one decision rule)."""
        return is_anomalous(self.resized_map(index), threshold)

    def render(self, index: int, threshold: float, alpha: float) -> np.ndarray:
        """The frame ``(H, W, 3)`` uint8 of entry ``index`` (see the module docstring for the rule)."""
        if not 0 <= index < len(self):
            msg = f"index {index} out of range 0..{len(self) - 1}"
            raise IndexError(msg)
        alpha = float(np.clip(alpha, 0.0, 1.0))
        picture = _rgb(self.pictures[index])
        amap = self.resized_map(index)
        colour = colormaps["jet"](np.clip((amap - self.vmin) / (self.vmax - self.vmin), 0.0, 1.0))[..., :3] * 255.0
        above = is_anomalous(amap, threshold)
        frame = picture.copy()
        frame[above] = (1.0 - alpha) * picture[above] + alpha * colour[above]
        frame[outline(above)] = OUTLINE
        return np.clip(np.rint(frame), 0, 255).astype(np.uint8)

    def caption(self, index: int, threshold: float) -> str:
        """One line: entry name, score, share of pixels above the threshold, the notice."""
        parts = [f"{self.names[index]} ({index + 1}/{len(self)})"]
        if self.scores is not None:
            parts.append(f"anomaly score {self.scores[index]:.3f}")
        parts.append(f"{100 * float(self.mask(index, threshold).mean()):.1f} % of pixels > {threshold:.3f}")
        text = " · ".join(parts)
        return f"{text} ({self.notice})" if self.notice else text

    def png(self, index: int, threshold: float, alpha: float) -> bytes:
        """The frame as PNG bytes."""
        buf = io.BytesIO()
        Image.fromarray(self.render(index, threshold, alpha)).save(buf, format="PNG")
        return buf.getvalue()

    def widget(self, index: int | None = None, threshold: float | None = None, alpha: float = 0.5,
               width: int = 512) -> Any:
        """An ipywidgets box: slice (or image) / threshold / opacity sliders over the frame and its caption.

        Defaults: the highest-scored entry (or the first), the threshold halfway between the colour limits.
        """
        import ipywidgets as w

        start = index if index is not None else (int(np.argmax(self.scores)) if self.scores else 0)
        level = threshold if threshold is not None else (self.vmin + self.vmax) / 2
        step = (self.vmax - self.vmin) / 200
        pick = w.IntSlider(value=start, min=0, max=len(self) - 1, description=self.kind, continuous_update=True)
        cut = w.FloatSlider(value=level, min=self.vmin, max=self.vmax, step=step, readout_format=".3f",
                            description="threshold")
        opacity = w.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="opacity")
        image = w.Image(format="png", width=width)
        label = w.Label()

        def update(_: object = None) -> None:
            image.value = self.png(pick.value, cut.value, opacity.value)
            label.value = self.caption(pick.value, cut.value)

        for slider in (pick, cut, opacity):
            slider.observe(update, names="value")
        update()
        return w.VBox([w.HBox([pick, cut, opacity]), label, image])
