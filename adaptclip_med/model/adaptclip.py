"""``AdaptCLIP``: frozen CLIP + text, visual and prompt-query adapters, zero/few-shot inference.

No file I/O here: :func:`adaptclip_med.load_model` builds it. Shapes: ``B`` queries, ``K`` prompt
shots, ``S`` image side, ``G`` grid side, ``N = 1 + G²``, ``D`` joint width, ``L`` feature layers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adaptclip_med.model.backbone import FrozenCLIPVision, ImageFeatures
from adaptclip_med.model.fusion import fuse_few_shot, fuse_zero_shot
from adaptclip_med.model.heads import text_similarity
from adaptclip_med.model.outputs import AnomalyOutput, Branches
from adaptclip_med.model.prompt_bank import PromptBank, PromptSet
from adaptclip_med.model.prompt_query import PromptQueryAdapter
from adaptclip_med.model.text_adapter import TextAdapter
from adaptclip_med.model.text_encoder import FrozenTextEncoder
from adaptclip_med.model.validation import check_images, check_prompts
from adaptclip_med.model.visual_adapter import VisualAdapter

MIN_GRID = 4
#: Autocast dtype of each reduced precision (``"fp32"`` runs without autocast).
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _check_prompt_size(prompt_size: int, query_size: int) -> None:
    """Raise ValueError when prompts and queries were preprocessed at different sizes ``S``."""
    if prompt_size != query_size:
        msg = (f"prompts were encoded at {prompt_size} px but the queries are "
               f"{query_size} px; preprocess both with the same model")
        raise ValueError(msg)


@dataclass(frozen=True)
class AdaptCLIPConfig:
    """Everything needed to rebuild the adapters (saved with every checkpoint)."""

    backbone: str
    pretrained: str | None
    image_size: int
    embed_dim: int
    feature_layers: tuple[int, ...]
    vv_start: int
    n_ctx: int = 12
    reduction: int = 4
    pqa_width: int = 128
    pqa_context: bool = True

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        out = asdict(self)
        out["feature_layers"] = list(self.feature_layers)
        return out


class AdaptCLIP(nn.Module):
    """AdaptCLIP on a frozen open_clip backbone.

    Args:
        backbone: the frozen vision tower with its V-V path.
        text_encoder: the frozen text tower.
        static_tokens: ``(T, C)`` token ids of the static prompt ensemble.
        n_static_normal: how many of ``static_tokens`` are normal prompts (the rest anomalous).
        template_tokens: ``(C,)`` token ids of the learned-prompt template ``"X … X."``.
        config: sizes of the adapters and the run-time resolution.
        static_features: ``(T, D)`` = ``text_encoder.encode_tokens(static_tokens)`` when already known
            (the factory's on-disk cache); computed here otherwise.
    """

    def __init__(
        self,
        backbone: FrozenCLIPVision,
        text_encoder: FrozenTextEncoder,
        static_tokens: torch.Tensor,
        n_static_normal: int,
        template_tokens: torch.Tensor,
        config: AdaptCLIPConfig,
        static_features: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.config = config
        self.image_size = config.image_size
        self.precision = "fp32"
        #: image → ``(3, S, S)`` tensor; set by the loader (the model itself does no I/O)
        self.preprocessor: Callable[[object], torch.Tensor] | None = None
        dim = backbone.embed_dim
        self.text_adapter = TextAdapter(template_tokens, text_encoder.width, config.n_ctx)
        self.visual_adapter = VisualAdapter(dim, config.reduction)
        self.prompt_query_adapter = PromptQueryAdapter(
            dim, len(config.feature_layers), config.pqa_width, config.pqa_context
        )
        feats = static_features
        if feats is None:
            with torch.no_grad():
                feats = text_encoder.encode_tokens(static_tokens.long())
        static = torch.stack([feats[:n_static_normal].mean(0), feats[n_static_normal:].mean(0)])
        self.register_buffer("static_text_features", static, persistent=False)
        self._text_cache: tuple[tuple[str, str], torch.Tensor] | None = None
        self.eval()

    # ----------------------------------------------------------------- features
    @property
    def device(self) -> torch.device:
        """Device of the model's tensors."""
        return self.static_text_features.device

    def _autocast(self) -> object:
        dtype = AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def encode_images(self, images: torch.Tensor) -> ImageFeatures:
        """Frozen features of ``(B, 3, S, S)`` images, float32 (bf16 inside when enabled).

        On the CPU the backbone runs one image at a time: its matrix products are already large
        (``N`` tokens × width), and smaller activations stay in cache, so a batch of 8 costs no
        more per image than a batch of 1 (``benchmarks/inference.py``). Accelerators get the batch, and so
        does an exported engine (``backbone.engine``, attached by ``load_model(engine=...)``).
        """
        images = images.to(self.device)
        engine = getattr(self.backbone, "engine", None)
        if engine is not None:  # the exported graph of this backbone (load_model(engine=...)): the batch at once
            return engine(images)
        step = 1 if self.device.type == "cpu" else images.shape[0]
        chunks = []
        with self._autocast():
            for start in range(0, images.shape[0], step):
                chunks.append(self.backbone.encode_image(images[start:start + step]))
        feats = chunks[0] if len(chunks) == 1 else ImageFeatures.concatenate(chunks)
        return ImageFeatures(feats.global_.float(), [p.float() for p in feats.patches])

    def learned_text_features(self) -> torch.Tensor:
        """``(2, D)`` text features from the learned contexts (differentiable w.r.t. the TA)."""
        return self.text_adapter(self.text_encoder)

    def _text_adapter_key(self) -> tuple[str, str]:
        """Content key of the TA: a hash of every TA parameter's bytes (+ its dtype/shape), and the device.

        Hashing the bytes (a few hundred KB, well under a millisecond) catches every edit, including
        ``.data.copy_`` and ``load_state_dict``, which pointer/version counters can miss.
        """
        digest = hashlib.blake2b(digest_size=16)
        for name, tensor in self.text_adapter.state_dict().items():
            data = tensor.detach().to("cpu").contiguous()
            digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
            if data.numel():
                digest.update(data.reshape(-1).view(torch.uint8).numpy())
        return digest.hexdigest(), str(self.device)

    def _cached_learned_text(self) -> torch.Tensor:
        """The ``(2, D)`` learned text features, recomputed whenever the TA's content changes."""
        key = self._text_adapter_key()
        if self._text_cache is None or self._text_cache[0] != key:
            with torch.no_grad():
                self._text_cache = (key, self.learned_text_features())
        return self._text_cache[1]

    def encode(self, images: torch.Tensor, batch_size: int = 8) -> ImageFeatures:
        """Frozen features of ``(B, 3, S, S)`` preprocessed images (validated; no gradients).

        The first half of :meth:`predict`: score the result with :meth:`predict_features` (as queries)
        or turn it into a :class:`PromptBank` with :meth:`bank_from_features` (as prompts). The backbone
        is frozen, so one encode serves every shot count, seed and prompt set.

        Raises:
            ValueError: wrong channels, non-square/tiny sizes, NaN/inf pixels.
        """
        if images.ndim == 3:
            images = images.unsqueeze(0)
        check_images(images, "images", self.backbone.patch_size, MIN_GRID)
        chunks = []
        with torch.inference_mode():
            for start in range(0, images.shape[0], batch_size):
                chunks.append(self.encode_images(images[start:start + batch_size]))
        return chunks[0] if len(chunks) == 1 else ImageFeatures.concatenate(chunks)

    def bank_from_features(self, feats: list[ImageFeatures]) -> PromptBank:
        """A :class:`PromptBank` from the features of ``K`` prompt images (each ``(1 or more, N, D)``).

        Raises:
            ValueError: no features.
        """
        if not feats:
            msg = "prompt bank: got no prompt features; expected at least one normal prompt image"
            raise ValueError(msg)
        joined = feats[0] if len(feats) == 1 else ImageFeatures.concatenate(feats)
        patches = [layer[:, 1:].reshape(1, -1, layer.shape[-1]) for layer in joined.patches]
        size = joined.grid * self.backbone.patch_size
        return PromptBank(patches=patches, shots=int(joined.global_.shape[0]), image_size=int(size))

    def fit_prompts(self, prompts: torch.Tensor, batch_size: int = 8) -> PromptBank:
        """Encode ``(K, 3, S, S)`` normal prompt images once into a reusable :class:`PromptBank`.

        Raises:
            ValueError: ``K = 0``, wrong channels/size, or NaN/inf pixels.
        """
        check_prompts(prompts, self.backbone.patch_size, MIN_GRID)
        bank = self.bank_from_features([self.encode(prompts, batch_size)])
        return PromptBank(bank.patches, bank.shots, int(prompts.shape[-1]))

    def prompt_set(self, feats: Sequence[ImageFeatures], banks: Sequence[Sequence[int]]) -> PromptSet:
        """A :class:`PromptSet`: ``P`` distinct prompt images and the banks drawn from them.

        Args:
            feats: the ``P`` images' features, each ``(1, N, D)`` (from :meth:`encode`; may be empty).
            banks: per bank, its images as indices into ``feats`` in shot order; ``()`` = zero-shot.

        Raises:
            ValueError: a bank names an image that is not in ``feats``.
        """
        if feats:
            joined = feats[0] if len(feats) == 1 else ImageFeatures.concatenate(list(feats))
            patches = [F.normalize(layer[:, 1:].to(self.device), dim=-1).reshape(1, -1, layer.shape[-1])
                       for layer in joined.patches]
            block, size = joined.grid ** 2, joined.grid * self.backbone.patch_size
        else:
            patches, block, size = [], 0, self.image_size
        return PromptSet(patches, [tuple(int(i) for i in b) for b in banks], block, int(size))

    # ----------------------------------------------------------------- branches
    def branch_outputs(
        self,
        feats: ImageFeatures,
        prompt_patches: list[torch.Tensor] | None = None,
        learned_text: torch.Tensor | None = None,
    ) -> Branches:
        """Per-branch logits and maps (differentiable; used by training and by :meth:`predict`).

        Args:
            feats: frozen features of the queries.
            prompt_patches: ``L`` tensors ``(B or 1, M, D)`` of prompt patches without CLS, or None.
            learned_text: ``(2, D)`` precomputed TA text features (default: computed here).

        Returns:
            :class:`Branches`; the VA scores adapted features against the static text, the TA scores
            the frozen features against the learned text (the branches share no gradients).
        """
        size = feats.grid * self.backbone.patch_size
        last = feats.patches[-1]
        g_adapted, p_adapted = self.visual_adapter(feats.global_, last)
        va_logits, va_map = text_similarity(g_adapted, p_adapted, self.static_text_features, size)
        text = self.learned_text_features() if learned_text is None else learned_text
        ta_logits, ta_map = text_similarity(feats.global_, last, text, size)
        out = Branches(va_logits=va_logits, va_map=va_map, ta_logits=ta_logits, ta_map=ta_map)
        if prompt_patches is not None:
            for layer, (query, memory) in enumerate(zip(feats.patches, prompt_patches, strict=True)):
                logits, maps, align = self.prompt_query_adapter.forward_layer(layer, query, memory, size)
                out.pqa_logits.append(logits)
                out.pqa_map.append(maps)
                out.align.append(align)
        return out

    # ----------------------------------------------------------------- conveniences
    def preprocess(self, image: object) -> torch.Tensor:
        """PIL image, 8-bit array or image path → ``(3, S, S)`` tensor, resized as the authors did.

        The model reads no files itself: :func:`adaptclip_med.load_model` gives it the data package's
        one pixel path (:class:`adaptclip_med.data.ModelInput`, the evaluation and training path).

        Raises:
            RuntimeError: the model was built without a preprocessor (not through ``load_model``).
        """
        if self.preprocessor is None:
            msg = ("this AdaptCLIP has no preprocessor: build it with adaptclip_med.load_model, or set "
                   "model.preprocessor = adaptclip_med.data.ModelInput(model.image_size)")
            raise RuntimeError(msg)
        return self.preprocessor(image)

    def describe(self) -> dict:
        """Provenance: backbone, tag, weight files and checkpoint SHA-256, adapter config, precision."""
        return {**getattr(self, "provenance", {}), **self.config.to_dict(), "precision": self.precision}

    # ----------------------------------------------------------------- inference
    def _predict_batch(self, images: torch.Tensor, bank: PromptBank | None) -> AnomalyOutput:
        return self._score_features(self.encode_images(images), bank)

    def _score_features(self, feats: ImageFeatures, bank: PromptBank | None) -> AnomalyOutput:
        branches = self.branch_outputs(
            feats, None if bank is None else bank.patches, learned_text=self._cached_learned_text()
        )
        pqa = list(zip(branches.pqa_logits, branches.pqa_map, branches.align, strict=True))
        return self._fuse(branches, pqa if bank is not None else None, 0 if bank is None else bank.shots)

    def _fuse(self, branches: Branches, pqa: list[tuple[torch.Tensor, ...]] | None, shots: int,
              details: bool = True) -> AnomalyOutput:
        """The fused output from the VA/TA ``branches`` and, few-shot, ``L`` PQA ``(logits, map, align)``."""
        va_map, ta_map = branches.va_map[:, 1], branches.ta_map[:, 1]
        va_prob, ta_prob = branches.va_logits.softmax(-1)[:, 1], branches.ta_logits.softmax(-1)[:, 1]
        scores = {"va": va_prob, "ta": ta_prob}
        maps = {"va": va_map, "ta": ta_map}
        if pqa is None:
            fused = fuse_zero_shot(va_map, ta_map, va_prob, ta_prob)
        else:
            pqa_prob = torch.stack([logits.softmax(-1)[:, 1] for logits, _, _ in pqa]).mean(0)
            fused = fuse_few_shot(va_map, ta_map, [m[:, 1] for _, m, _ in pqa], [a for _, _, a in pqa],
                                  va_prob, ta_prob, pqa_prob)
            scores["pqa"] = pqa_prob
            scores["image_prob_mean"] = fused["image_prob_mean"]
            maps["pqa"], maps["align"] = fused["pqa"], fused["align"]
        maps["pre_blur"] = fused["pre_blur"]
        scores["map_max"] = fused["map_max"]
        return AnomalyOutput(
            anomaly_map=fused["anomaly_map"].cpu(), pred_score=fused["pred_score"].cpu(),
            maps={k: v.float().cpu() for k, v in maps.items()} if details else {},
            scores={k: v.float().cpu() for k, v in scores.items()} if details else {},
            shots=shots,
        )

    def predict(
        self,
        images: torch.Tensor,
        prompts: torch.Tensor | PromptBank | None = None,
        batch_size: int = 8,
    ) -> AnomalyOutput:
        """Score preprocessed images, zero-shot or few-shot.

        Args:
            images: ``(B, 3, S, S)`` from :meth:`preprocess` (or ``(3, S, S)`` for one image).
            prompts: None (zero-shot), ``(K, 3, S, S)`` normal images, or a :class:`PromptBank`
                from :meth:`fit_prompts` (reuse it across batches: prompts are encoded once).
            batch_size: queries per forward pass.

        Returns:
            :class:`AnomalyOutput` with ``anomaly_map`` ``(B, S, S)`` and ``pred_score`` ``(B,)``.

        Raises:
            ValueError: wrong channels, non-square/tiny/mismatched sizes, NaN/inf, empty prompts.
        """
        if images.ndim == 3:
            images = images.unsqueeze(0)
        check_images(images, "images", self.backbone.patch_size, MIN_GRID)
        if isinstance(prompts, torch.Tensor):
            prompts = self.fit_prompts(prompts, batch_size)
        if prompts is not None:
            _check_prompt_size(prompts.image_size, int(images.shape[-1]))
        if prompts is not None:
            prompts = PromptBank([p.to(self.device) for p in prompts.patches], prompts.shots, prompts.image_size)
        parts = []
        with torch.inference_mode():
            for start in range(0, images.shape[0], batch_size):
                parts.append(self._predict_batch(images[start:start + batch_size], prompts))
        return AnomalyOutput.concatenate(parts)

    def predict_features(self, feats: ImageFeatures, prompts: PromptBank | None = None) -> AnomalyOutput:
        """Score query features from :meth:`encode`: the second half of :meth:`predict`, same numbers.

        Args:
            feats: ``(B, N, D)`` query features (one batch; all of it is scored in one pass).
            prompts: None (zero-shot) or a :class:`PromptBank` encoded at the same size.

        Returns:
            :class:`AnomalyOutput` with ``anomaly_map`` ``(B, S, S)`` and ``pred_score`` ``(B,)``.

        Raises:
            ValueError: the prompts were encoded at another size than the queries.
        """
        size = feats.grid * self.backbone.patch_size
        if prompts is not None:
            _check_prompt_size(prompts.image_size, size)
        if prompts is not None:
            prompts = PromptBank([p.to(self.device) for p in prompts.patches], prompts.shots, prompts.image_size)
        with torch.inference_mode():
            return self._score_features(feats.to(self.device), prompts)

    def predict_parts(self, feats: ImageFeatures, prompts: PromptSet, details: bool = False) -> list[AnomalyOutput]:
        """Score query features against every bank of ``prompts`` (zero-shot for a ``()`` bank).

        The VA/TA branches run once and each query's distances to each prompt image are computed once
        for all banks; the PQA heads and the fusion then run per bank (one bank's maps held at a time).
        Bank ``i``'s output equals :meth:`predict_features` with that bank alone, bit for bit.

        Args:
            feats: ``(B, N, D)`` query features from :meth:`encode`.
            prompts: the banks, from :meth:`prompt_set`, encoded at the queries' size.
            details: also return the per-branch maps and scores (``AnomalyOutput.maps``/``scores``).

        Returns:
            one :class:`AnomalyOutput` per bank, in order.

        Raises:
            ValueError: the prompts were encoded at another size than the queries.
        """
        size = feats.grid * self.backbone.patch_size
        if any(prompts.banks):
            _check_prompt_size(prompts.image_size, size)
        pqa = self.prompt_query_adapter
        with torch.inference_mode():
            feats = feats.to(self.device)
            branches = self.branch_outputs(feats, None, learned_text=self._cached_learned_text())
            distances = [pqa.prompt_distances(query, memory, prompts.block)
                         for query, memory in zip(feats.patches, prompts.patches, strict=True)
                         ] if any(prompts.banks) else []
            outputs = []
            for bank in prompts.banks:  # one bank at a time: only its L layers of maps are held
                layers = [pqa.forward_bank(i, d, prompts.patches[i], prompts.block, bank, size)
                          for i, d in enumerate(distances)] if bank else None
                outputs.append(self._fuse(branches, layers, len(bank), details))
            return outputs
