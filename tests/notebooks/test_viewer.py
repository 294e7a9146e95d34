"""The interactive viewer's frames, with numbers worked out by hand, and its ipywidgets wiring."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from adaptclip_med.reporting.viewer import MapViewer, outline

GREY = 100


def _viewer(notice: str | None = None) -> MapViewer:
    """Two 8 x 8 grey pictures; map 0 is 0 left of column 4 and 1 from it on, map 1 a column ramp 0..0.7."""
    step = np.zeros((8, 8), dtype=np.float32)
    step[:, 4:] = 1.0
    ramp = np.tile(np.linspace(0.0, 0.7, 8, dtype=np.float32), (8, 1))
    pictures = [np.full((8, 8), GREY, dtype=np.uint8), np.full((8, 8, 3), GREY, dtype=np.uint8)]
    return MapViewer(pictures, [step, ramp], names=["a", "b"], scores=[0.9, 0.2], vmin=0.0, vmax=1.0,
                     notice=notice)


def test_frame_blends_the_colour_over_the_region_above_threshold() -> None:
    frame = _viewer().render(0, threshold=0.5, alpha=0.25)
    assert frame.shape == (8, 8, 3) and frame.dtype == np.uint8
    assert (frame[:, :4] == GREY).all()  # below threshold: the picture unchanged
    # jet(1.0) = (0.5, 0, 0) -> (127.5, 0, 0); 0.75 * 100 + 0.25 * colour, rounded
    assert frame[3, 5].tolist() == [107, 75, 75]
    assert (frame[:, 4] == 255).all() and (frame[0, 4:] == 255).all()  # white outline of the region
    assert frame[3, 6].tolist() == [107, 75, 75]


def test_alpha_zero_keeps_the_picture_and_one_shows_the_colour() -> None:
    v = _viewer()
    inside = ~outline(v.mask(0, 0.5))
    assert (v.render(0, 0.5, 0.0)[inside] == GREY).all()
    assert (v.render(0, 0.5, 1.0)[inside & v.mask(0, 0.5)] == [128, 0, 0]).all()  # jet(1) = 127.5 -> 128


def test_threshold_moves_the_mask_and_its_outline() -> None:
    v = _viewer()
    counts = [int(v.mask(1, t).sum()) for t in (0.0, 0.3, 0.6, 0.71)]
    # ramp columns 0, .1, ..., .7: 7, 4, 1, 0 columns strictly above (the one rule: a tie is normal)
    assert counts == [56, 32, 8, 0]
    low, high = v.render(1, 0.3, 0.5), v.render(1, 0.6, 0.5)
    white = [(f == 255).all(axis=-1) for f in (low, high)]
    assert white[0][:, 4].all() and not white[1][:, 4].any() and white[1][:, 7].all()
    assert (v.render(1, 0.71, 0.5) == GREY).all()  # nothing above: the bare picture


def test_caption_says_score_share_and_notice() -> None:
    text = _viewer("untrained backbone — pipeline demo only").caption(0, 0.5)
    assert text == "a (1/2) · anomaly score 0.900 · 50.0 % of pixels > 0.500 (untrained backbone — pipeline demo only)"


def test_maps_are_resized_to_the_picture() -> None:
    v = MapViewer([np.zeros((40, 60), np.uint8)], [np.ones((4, 6), np.float32)], vmin=0.0, vmax=2.0)
    assert v.render(0, 0.5, 0.5).shape == (40, 60, 3)
    png = Image.open(io.BytesIO(v.png(0, 0.5, 0.5)))
    assert png.size == (60, 40)


def test_bad_input_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="2 pictures and 1 maps"):
        MapViewer([np.zeros((4, 4), np.uint8)] * 2, [np.zeros((4, 4))])
    with pytest.raises(IndexError, match="out of range 0..1"):
        _viewer().render(2, 0.5, 0.5)


def test_widget_sliders_redraw_the_frame() -> None:
    pytest.importorskip("ipywidgets")
    v = _viewer()
    box = v.widget(alpha=0.25)
    (pick, cut, opacity), label, image = box.children[0].children, box.children[1], box.children[2]
    assert pick.value == 0 and (cut.min, cut.max) == (0.0, 1.0)  # highest score first; the colour limits
    assert image.value == v.png(0, 0.5, 0.25) and label.value == v.caption(0, 0.5)
    pick.value, cut.value, opacity.value = 1, 0.3, 0.8
    assert image.value == v.png(1, 0.3, 0.8) and label.value.startswith("b (2/2) · anomaly score 0.200")
