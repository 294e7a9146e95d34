"""WinCLIP and WinCLIP+ (Jeong et al., CVPR 2023) on the frozen open_clip backbone AdaptCLIP uses.

The second method of the comparison (docs/evaluation.md, "WinCLIP"); torch only, no I/O. It shares the
:class:`FrozenCLIPVision` module (same weights in memory) and the static text features of AdaptCLIP (the
same compositional prompt ensemble: 7 normal and 4 anomalous state words × 21 templates, averaged per
state), and scores every image from one :class:`WinFeatures`:

* ``image``: the full image's CLS token after ``ln_post`` and the projection (standard CLIP);
* ``patches``: the last block's patch tokens after ``ln_post``, *not* projected (width ``W``), the
  patch-level reference memory of WinCLIP+;
* ``windows``: per window scale ``s`` (default 2 and 3 patches), the embedding of every ``s×s`` window
  (stride 1): the window's tokens (positions already added) and the CLS token run through the whole
  transformer on their own, pooled at CLS, ``ln_post``, projected.

Zero-shot: each window (and the image) is scored ``softmax(cos(x, text) / 0.07)[anomalous]``; window
scores go to the patches they cover by their harmonic mean; the scales and the image score (constant
over the grid) are joined by a harmonic mean. Few-shot (WinCLIP+): per scale, ``(1 − max cos)/2`` to
the ``K`` normal prompts' windows (and patches), averaged over the scales and the patch level; map and
score are the means of the zero-shot and few-shot ones (score: few-shot map max). The grid map is
upsampled bilinearly to ``S×S``, without smoothing. Numbers match anomalib 2.7.0's ``WinClipModel``
(tests/conformance/test_winclip_anomalib.py).

Shapes: ``B`` queries, ``G`` grid side, ``W`` vision width, ``D`` joint width, ``n_s = (G − s + 1)²``
windows of scale ``s``, ``P`` distinct prompt images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adaptclip_med.model.backbone import FrozenCLIPVision
from adaptclip_med.model.outputs import AnomalyOutput
from adaptclip_med.model.validation import check_images

#: CLIP's softmax temperature, as in the paper.
TEMPERATURE = 0.07
#: Window sides in patches (the paper's small and mid windows; the image is the large scale).
SCALES: tuple[int, ...] = (2, 3)


@dataclass
class WinFeatures:
    """What WinCLIP keeps of ``B`` images (float32).

    Attributes:
        image: ``(B, D)`` full-image embedding.
        patches: ``(B, G², W)`` last-block patch tokens after ``ln_post`` (not projected).
        windows: per scale, ``(B, n_s, D)`` window embeddings, windows in row-major order of their corner.
    """

    image: torch.Tensor
    patches: torch.Tensor
    windows: list[torch.Tensor]

    @property
    def grid(self) -> int:
        """Patch grid side ``G``."""
        return round(self.patches.shape[1] ** 0.5)

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def select(self, index: slice | list[int]) -> WinFeatures:
        """The features of some images: ``index`` along ``B``."""
        return WinFeatures(self.image[index], self.patches[index], [w[index] for w in self.windows])

    def to(self, device: torch.device | str) -> WinFeatures:
        """The same features on another device."""
        return WinFeatures(self.image.to(device), self.patches.to(device), [w.to(device) for w in self.windows])

    @staticmethod
    def concatenate(parts: list[WinFeatures]) -> WinFeatures:
        """Join features of consecutive batches along ``B``."""
        return WinFeatures(torch.cat([p.image for p in parts]), torch.cat([p.patches for p in parts]),
                           [torch.cat(w) for w in zip(*(p.windows for p in parts), strict=True)])


@dataclass
class WinPromptSet:
    """Several banks over ``P`` distinct normal prompt images (WinCLIP+'s reference memory).

    Attributes:
        feats: the ``P`` images' features (``(P, …)``; None when ``P = 0``).
        banks: per bank, its images as indices into ``P``; ``()`` = zero-shot.
        image_size: ``S`` the prompts were encoded at.
    """

    feats: WinFeatures | None
    banks: list[tuple[int, ...]]
    image_size: int

    def __post_init__(self) -> None:
        n_images = 0 if self.feats is None else len(self.feats)
        for bank in self.banks:
            if any(not 0 <= i < n_images for i in bank):
                msg = f"prompt set: a bank refers to image(s) {list(bank)} but the set holds {n_images}"
                raise ValueError(msg)


def window_indices(grid: int, scale: int) -> torch.Tensor:
    """``(n_s, s²)`` patch indices (row-major in a ``G×G`` grid) of every ``s×s`` window, stride 1.

    Windows are ordered row-major by their top-left patch, the patches of a window row-major.

    Raises:
        ValueError: the window is larger than the grid.
    """
    if not 1 <= scale <= grid:
        msg = f"window of {scale}×{scale} patches does not fit a {grid}×{grid} patch grid"
        raise ValueError(msg)
    corners = torch.arange(grid - scale + 1)
    offsets = torch.arange(scale)
    rows = (corners[:, None, None, None] + offsets[None, None, :, None]).expand(-1, len(corners), -1, scale)
    cols = (corners[None, :, None, None] + offsets[None, None, None, :]).expand(len(corners), -1, scale, -1)
    return (rows * grid + cols).reshape(-1, scale * scale)


def harmonic_to_patches(window_scores: torch.Tensor, windows: torch.Tensor, grid: int) -> torch.Tensor:
    """Each patch's harmonic mean of the scores of the windows covering it.

    Args:
        window_scores: ``(B, n)`` one score per window.
        windows: ``(n, s²)`` from :func:`window_indices`.
        grid: ``G``.

    Returns:
        ``(B, G, G)``; a patch whose windows include a score of 0 gets 0.
    """
    b = window_scores.shape[0]
    flat = windows.reshape(-1).to(window_scores.device)
    inverse = (1 / window_scores).repeat_interleave(windows.shape[1], dim=1)
    total = torch.zeros(b, grid * grid, dtype=window_scores.dtype, device=window_scores.device)
    total.index_add_(1, flat, inverse)
    count = torch.bincount(flat, minlength=grid * grid).to(window_scores.dtype)
    return (count / total).nan_to_num(posinf=0.0).reshape(b, grid, grid)


def text_probability(embeddings: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """``softmax(cos(x, text) / T)`` of the anomalous prompt: ``(…, D)`` × ``(2, D)`` → ``(…)``."""
    logits = F.normalize(embeddings, dim=-1) @ F.normalize(text, dim=-1).T
    return (logits / TEMPERATURE).softmax(dim=-1)[..., 1]


def nearest_distance(queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """``(1 − max cos) / 2`` of each query vector to a memory: ``(B, n, C)`` × ``(M, C)`` → ``(B, n)``."""
    cos = F.normalize(queries, dim=-1) @ F.normalize(memory, dim=-1).T
    return (1 - cos.amax(dim=-1)) / 2


class WinCLIP(nn.Module):
    """WinCLIP (zero-shot) and WinCLIP+ (few-shot) on a frozen open_clip vision tower.

    Args:
        backbone: the frozen vision tower (shared with an :class:`~adaptclip_med.model.AdaptCLIP`).
        text_features: ``(2, D)`` mean (normal, anomalous) features of the compositional prompt ensemble.
        image_size: run-time side ``S``.
        scales: window sides in patches.
    """

    def __init__(self, backbone: FrozenCLIPVision, text_features: torch.Tensor, image_size: int,
                 scales: Sequence[int] = SCALES) -> None:
        super().__init__()
        self.backbone = backbone
        self.image_size = int(image_size)
        self.scales = tuple(int(s) for s in scales)
        self.register_buffer("text_features", text_features.detach().float().clone(), persistent=False)
        self.eval()

    @property
    def device(self) -> torch.device:
        """Device of the model's tensors."""
        return self.text_features.device

    def train(self, mode: bool = True) -> WinCLIP:
        """WinCLIP has nothing to train: always eval mode."""
        return super().train(False)

    # ----------------------------------------------------------------- features
    def _transformer(self, x: torch.Tensor) -> torch.Tensor:
        """The original (CLIP) path of every block on ``(B, n, W)`` tokens."""
        for block in self.backbone.visual.transformer.resblocks:
            x, _ = self.backbone._block(block, x, None)
        return x

    def _project(self, cls: torch.Tensor) -> torch.Tensor:
        visual = self.backbone.visual
        return visual.ln_post(cls) @ visual.proj

    def encode_images(self, images: torch.Tensor, window_chunk: int = 4096) -> WinFeatures:
        """:class:`WinFeatures` of ``(B, 3, S, S)`` images (no checks, no ``inference_mode``).

        The full image runs once through the tower; each window runs through it again with its own
        ``1 + s²`` tokens (windows of all images in chunks of ``window_chunk`` sequences).
        """
        visual = self.backbone.visual
        embedded = self.backbone._embed(images.to(self.device))  # (B, N, W), ln_pre is per token
        b, _, width = embedded.shape
        grid = round((embedded.shape[1] - 1) ** 0.5)
        full = visual.ln_post(self._transformer(embedded))
        windows = []
        for scale in self.scales:
            index = window_indices(grid, scale).to(embedded.device) + 1
            n = index.shape[0]
            tokens = torch.cat([embedded[:, :1].expand(b, n, width).reshape(b, n, 1, width),
                                embedded[:, index]], dim=2).reshape(b * n, 1 + scale * scale, width)
            pooled = torch.cat([self._transformer(tokens[i:i + window_chunk])[:, 0]
                                for i in range(0, tokens.shape[0], window_chunk)])
            windows.append(self._project(pooled).reshape(b, n, -1))
        return WinFeatures(full[:, 0] @ visual.proj, full[:, 1:], windows)

    def encode(self, images: torch.Tensor, batch_size: int = 8) -> WinFeatures:
        """Features of ``(B, 3, S, S)`` preprocessed images (validated; no gradients).

        Raises:
            ValueError: wrong channels, non-square/tiny sizes, NaN/inf pixels, a window larger than the grid.
        """
        if images.ndim == 3:
            images = images.unsqueeze(0)
        check_images(images, "images", self.backbone.patch_size, max(self.scales, default=1))
        with torch.inference_mode():
            chunks = [self.encode_images(images[s:s + batch_size]) for s in range(0, images.shape[0], batch_size)]
        return chunks[0] if len(chunks) == 1 else WinFeatures.concatenate(chunks)

    def prompt_set(self, feats: Sequence[WinFeatures], banks: Sequence[Sequence[int]]) -> WinPromptSet:
        """A :class:`WinPromptSet` of ``P`` prompt images' features (each ``(1, …)``) and the banks drawn from them."""
        joined = None if not feats else WinFeatures.concatenate([f.to(self.device) for f in feats])
        size = self.image_size if joined is None else joined.grid * self.backbone.patch_size
        return WinPromptSet(joined, [tuple(int(i) for i in b) for b in banks], int(size))

    # ----------------------------------------------------------------- scoring
    def _zero_shot(self, feats: WinFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B,)`` image scores and ``(B, G, G)`` zero-shot maps."""
        grid = feats.grid
        image = text_probability(feats.image, self.text_features)
        levels = [image[:, None, None].expand(-1, grid, grid)]
        for scale, emb in zip(self.scales, feats.windows, strict=True):
            levels.append(harmonic_to_patches(text_probability(emb, self.text_features),
                                              window_indices(grid, scale), grid))
        return image, len(levels) / (1 / torch.stack(levels)).sum(dim=0)

    def _distances(self, feats: WinFeatures, prompts: WinFeatures) -> list[torch.Tensor]:
        """Per level (patches, then each scale): ``(P, B, n)`` distances of each query to each prompt image."""
        pairs = [(feats.patches, prompts.patches), *zip(feats.windows, prompts.windows, strict=True)]
        return [torch.stack([nearest_distance(q, m) for m in memory]) for q, memory in pairs]

    def _few_shot(self, distances: list[torch.Tensor], bank: tuple[int, ...], grid: int) -> torch.Tensor:
        """``(B, G, G)`` WinCLIP+ map of one bank from :meth:`_distances` (min over the bank's images)."""
        rows = list(bank)
        levels = [distances[0][rows].amin(0).reshape(-1, grid, grid)]
        for scale, d in zip(self.scales, distances[1:], strict=True):
            levels.append(harmonic_to_patches(d[rows].amin(0), window_indices(grid, scale), grid))
        return torch.stack(levels).mean(dim=0)

    def _output(self, image: torch.Tensor, grid_map: torch.Tensor, size: int, shots: int) -> AnomalyOutput:
        full = F.interpolate(grid_map[:, None], size=(size, size), mode="bilinear")[:, 0]
        return AnomalyOutput(anomaly_map=full.float().cpu(), pred_score=image.float().cpu(),
                             maps={"grid": grid_map.float().cpu()}, scores={}, shots=shots)

    def predict_parts(self, feats: WinFeatures, prompts: WinPromptSet, details: bool = False) -> list[AnomalyOutput]:
        """Score query features against every bank of ``prompts`` (zero-shot for a ``()`` bank).

        The zero-shot scores and each query's distances to each prompt image are computed once for all
        banks; bank ``i``'s output equals :meth:`predict_features` with that bank alone.

        Args:
            feats: query features from :meth:`encode`.
            prompts: from :meth:`prompt_set`, encoded at the queries' size.
            details: keep the ``(B, G, G)`` grid map in ``AnomalyOutput.maps["grid"]``.

        Raises:
            ValueError: the prompts were encoded at another size than the queries.
        """
        size = feats.grid * self.backbone.patch_size
        if any(prompts.banks) and prompts.image_size != size:
            msg = (f"prompts were encoded at {prompts.image_size} px but the queries are {size} px; "
                   "preprocess both with the same model")
            raise ValueError(msg)
        with torch.inference_mode():
            feats = feats.to(self.device)
            image, zero = self._zero_shot(feats)
            distances = self._distances(feats, prompts.feats) if any(prompts.banks) else []
            outputs = []
            for bank in prompts.banks:
                if not bank:
                    out = self._output(image, zero, size, 0)
                else:
                    few = self._few_shot(distances, bank, feats.grid)
                    out = self._output((image + few.amax(dim=(-2, -1))) / 2, (zero + few) / 2, size, len(bank))
                outputs.append(out if details else AnomalyOutput(out.anomaly_map, out.pred_score, shots=out.shots))
            return outputs

    def bank_from_features(self, feats: list[WinFeatures]) -> WinPromptSet:
        """One bank of ``K`` prompt images' features (the leave-one-out calibration's unit)."""
        if not feats:
            msg = "prompt bank: got no prompt features; expected at least one normal prompt image"
            raise ValueError(msg)
        joined = WinFeatures.concatenate(list(feats))
        return self.prompt_set([joined], [tuple(range(len(joined)))])

    def predict_features(self, feats: WinFeatures, prompts: WinPromptSet | None = None) -> AnomalyOutput:
        """Score query features zero-shot (``prompts`` None) or against a one-bank :class:`WinPromptSet`."""
        bank = prompts if prompts is not None else self.prompt_set([], [()])
        return self.predict_parts(feats, bank, details=True)[0]

    def predict(self, images: torch.Tensor, prompts: torch.Tensor | None = None,
                batch_size: int = 8) -> AnomalyOutput:
        """Score ``(B, 3, S, S)`` preprocessed images zero-shot, or few-shot with ``(K, 3, S, S)`` normal prompts.

        Raises:
            ValueError: wrong channels, non-square/tiny/mismatched sizes, NaN/inf.
        """
        feats = self.encode(images, batch_size)
        bank = None
        if prompts is not None:
            bank = self.bank_from_features([self.encode(prompts, batch_size)])
        return self.predict_features(feats, bank)
