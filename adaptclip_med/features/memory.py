"""Memory-bounded device batches: split a batch into sub-batches that fit, halving on out-of-memory.

A ``--batch-size`` too large for the accelerator must not end a run in a CUDA traceback. Every call
that sends images to the model goes through :meth:`DeviceBatch.run`: it covers ``range(n)`` with
consecutive sub-batches of at most the current size; when one raises ``torch.OutOfMemoryError``
(``torch.cuda.OutOfMemoryError`` is the same class), it frees the CUDA cache, halves the size (rounded
up) and retries that sub-batch, down to 1, then stops with one :class:`~adaptclip_med.runtime.errors.AdaptCLIPError`
line. Sub-batches already computed are kept, and the images and their order never change, only how
they are split, so the results are those of an uninterrupted run (bit for bit on the CPU, where the
backbone runs image by image anyway). The size found is kept for the model's later batches (one
:class:`DeviceBatch` per model object, :func:`device_batch`) and never grows back within a run.
"""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from adaptclip_med.runtime.errors import AdaptCLIPError

T = TypeVar("T")


def _stderr(line: str) -> None:
    """Print ``line`` on stderr without breaking a tqdm progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)


def _free_cuda_cache() -> None:
    """Release what the failed sub-batch held (its frames are gone once the ``except`` block is left)."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class DeviceBatch:
    """The largest sub-batch that has fitted on one device so far, and the loop that finds it.

    Args:
        device: where the model runs, named in the messages (``"cuda"`` → "GPU").
        what: the model, for the final error (e.g. ``"ViT-L-14-336 at 518 px"``).
        hint: what to try, for the final error (e.g. ``"try --precision bf16 or a smaller --image-size"``).
        notify: receives the one line printed the first time the size is lowered (default: stderr).

    Attributes:
        size: the bound on sub-batches (None until an out-of-memory error set one).
    """

    def __init__(self, device: str, what: str, hint: str, notify: Callable[[str], None] = _stderr) -> None:
        self.memory = "GPU" if device.startswith("cuda") else device.split(":")[0].upper()
        self.what, self.hint, self.notify = what, hint, notify
        self.size: int | None = None
        self._announced = False

    def effective(self, requested: int) -> int:
        """Images per device call for a request of ``requested``: the request, or the bound found if smaller."""
        return requested if self.size is None else min(requested, self.size)

    def run(self, n: int, requested: int, step: Callable[[int, int], T]) -> list[T]:
        """``[step(start, stop), ...]`` over consecutive sub-batches that cover ``range(n)`` in order.

        Args:
            n: items in the batch.
            requested: the sub-batch the caller asks for (``--batch-size``); :attr:`size` may lower it.
            step: computes items ``start:stop`` on the device; it may raise ``torch.OutOfMemoryError``
                (then it is called again on a smaller sub-batch from the same ``start``).

        Returns:
            the results of the successful calls, in order (their ``stop - start`` sum to ``n``).

        Raises:
            AdaptCLIPError: out of memory on a sub-batch of one.
        """
        results: list[T] = []
        start, first_try = 0, None
        while start < n:
            stop = min(n, start + self.effective(max(1, requested)))
            try:
                results.append(step(start, stop))
            except torch.OutOfMemoryError:
                failed = stop - start
            else:
                start = stop
                if first_try is not None:
                    self._announce(first_try)
                    first_try = None
                continue
            _free_cuda_cache()
            if failed == 1:
                msg = f"out of {self.memory} memory even at batch 1 with {self.what}; {self.hint}"
                raise AdaptCLIPError(msg)
            first_try = failed if first_try is None else first_try
            self.size = (failed + 1) // 2  # half, rounded up (3 → 2)
        return results

    def _announce(self, tried: int) -> None:
        """The one line of the first back-off: what did not fit and what is used instead."""
        if not self._announced:
            self._announced = True
            self.notify(f"{self.memory} memory: encoding {tried} images at a time did not fit; using {self.size}")


_BATCHES: weakref.WeakKeyDictionary[Any, DeviceBatch] = weakref.WeakKeyDictionary()


def device_batch(model: Any) -> DeviceBatch:
    """The :class:`DeviceBatch` of ``model`` (an :class:`~adaptclip_med.model.AdaptCLIP`), created on first use.

    It lives as long as the model object, so every stage that encodes with the model (prompts, queries)
    shares the bound found, and a new model starts unbounded.
    """
    batch = _BATCHES.get(model)
    if batch is None:
        config = getattr(model, "config", None)
        what = f"{getattr(config, 'backbone', 'the backbone')} at {getattr(model, 'image_size', '?')} px"
        hint = ("try --precision bf16 or a smaller --image-size" if getattr(model, "precision", "fp32") == "fp32"
                else "try a smaller --image-size")
        batch = _BATCHES[model] = DeviceBatch(str(model.device), what, hint)
    return batch


def encode_bounded(model: Any, images: torch.Tensor, batch_size: int) -> Any:
    """``model.encode(images, batch_size)`` in device sub-batches that fit: ``(B, N, D)`` features of ``(B, 3, S, S)``.

    Raises:
        ValueError: the model's input checks (as ``model.encode``).
        AdaptCLIPError: out of memory at batch 1.
    """
    from adaptclip_med.model.backbone import ImageFeatures

    parts = device_batch(model).run(images.shape[0], batch_size,
                                    lambda start, stop: model.encode(images[start:stop], stop - start))
    return parts[0] if len(parts) == 1 else ImageFeatures.concatenate(parts)


def predict_bounded(model: Any, images: torch.Tensor, prompts: Any, batch_size: int) -> Any:
    """``model.predict(images, prompts, batch_size)`` in device sub-batches that fit (an ``AnomalyOutput``, ``B`` rows).

    Raises:
        ValueError: the model's input checks (as ``model.predict``).
        AdaptCLIPError: out of memory at batch 1.
    """
    from adaptclip_med.model.outputs import AnomalyOutput

    parts = device_batch(model).run(
        images.shape[0], batch_size,
        lambda start, stop: model.predict(images[start:stop], prompts=prompts, batch_size=stop - start))
    return parts[0] if len(parts) == 1 else AnomalyOutput.concatenate(parts)
