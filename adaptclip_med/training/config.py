"""Training configuration: the single home of the training defaults (method spec §5)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

BRANCHES = ("va", "ta", "pqa")
"""Trainable branches: visual adapter, text adapter, prompt-query adapter."""

SCHEDULES = ("simultaneous", "alternate-epoch", "joint")
"""How the branches are trained (see :mod:`adaptclip_med.training.schedules`)."""

RESULT_KEYS = ("schedule", "branches", "batch_size", "lr", "betas", "seed")
"""Config fields a resumed run must share with the checkpoint (``epochs`` may grow, ``device`` change)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run, with the method's defaults.

    Attributes:
        epochs: number of epochs (15). A resumed run may raise it to continue further.
        batch_size: queries per step (8); a trailing batch of one is merged into the previous one.
        lr: Adam learning rate (1e-3).
        betas: Adam betas ((0.5, 0.999)); no weight decay.
        seed: seeds the shuffling, the prompt draws and torch's generator (10).
        schedule: ``"simultaneous"`` (default, the released one), ``"alternate-epoch"`` or ``"joint"``.
        branches: which adapters to train; ``("va", "ta")`` is zero-shot only.
        cache_dtype: ``"float16"`` or ``"float32"``: precision of the frozen features (cache storage;
            the uncached path rounds the same way, so ``use_cache`` does not change the result).
        use_cache: ``False`` recomputes the backbone every epoch (slow; for checks).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        progress: show tqdm progress bars.
    """

    epochs: int = 15
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 10
    schedule: str = "simultaneous"
    branches: tuple[str, ...] = field(default=BRANCHES)
    cache_dtype: str = "float16"
    use_cache: bool = True
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            msg = f"schedule: got {self.schedule!r}; expected one of {list(SCHEDULES)}."
            raise ValueError(msg)
        unknown = [b for b in self.branches if b not in BRANCHES]
        if unknown or not self.branches:
            msg = (f"branches: got {list(self.branches)}; expected a non-empty subset of {list(BRANCHES)} "
                   "(zero-shot only: va,ta).")
            raise ValueError(msg)
        object.__setattr__(self, "branches", tuple(b for b in BRANCHES if b in self.branches))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.schedule != "simultaneous" and not {"va", "ta"} <= set(self.branches):
            msg = (f"schedule {self.schedule!r} couples the visual and text adapters; got branches "
                   f"{list(self.branches)}. Train both va and ta, or use schedule 'simultaneous'.")
            raise ValueError(msg)
        if self.epochs < 1:
            msg = f"epochs: got {self.epochs}; expected at least 1."
            raise ValueError(msg)
        if self.batch_size < 2:
            msg = f"batch_size: got {self.batch_size}; expected at least 2 (train-mode batch normalisation)."
            raise ValueError(msg)
        if self.cache_dtype not in ("float16", "float32"):
            msg = f"cache_dtype: got {self.cache_dtype!r}; expected 'float16' or 'float32'."
            raise ValueError(msg)

    def result_fields(self) -> dict[str, Any]:
        """The fields a resumed run must match (JSON-ready)."""
        d = asdict(self)
        d["branches"] = list(self.branches)
        d["betas"] = list(self.betas)
        fields = {k: d[k] for k in RESULT_KEYS}
        fields["feature_dtype"] = self.cache_dtype
        return fields
