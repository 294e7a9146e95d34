"""Per-epoch training checkpoints (safetensors + JSON) and exact resumption.

One folder per finished epoch, written under a temporary name and renamed when complete, so a folder
that exists is whole::

    <out>/checkpoints/epoch_003/adapters.safetensors, config.json   adapters in our format (BN stats too)
    <out>/checkpoints/epoch_003/trainer_state.safetensors           optimiser tensors, torch RNG states
    <out>/checkpoints/epoch_003/trainer_state.json                  epoch, run identity, optimiser
                                                                    groups, numpy/python RNG, loss log
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from adaptclip_med.loading.checkpoint import load_adapter_state, read_checkpoint, save_adapters
from adaptclip_med.runtime.errors import CheckpointMismatchError
from adaptclip_med.runtime.io import atomic_dir, atomic_write_json

STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"


def epoch_dir(out: Path, epoch: int) -> Path:
    """``<out>/checkpoints/epoch_NNN``."""
    return Path(out) / "checkpoints" / f"epoch_{epoch:03d}"


def latest_epoch(out: Path) -> int:
    """The last finished epoch checkpointed under ``out`` (0 if none)."""
    folder = Path(out) / "checkpoints"
    done = [int(p.name[6:]) for p in folder.glob("epoch_[0-9][0-9][0-9]") if (p / STATE_JSON).is_file()]
    return max(done, default=0)


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (global state, saved as is)
    py_version, py_state, py_gauss = random.getstate()
    return tensors, {
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "python": [py_version, list(py_state), py_gauss],
    }


def _restore_rng(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    py_version, py_state, py_gauss = meta["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))


def _optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                       meta: Mapping[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_epoch(out: Path, epoch: int, model: torch.nn.Module, opt: torch.optim.Optimizer,
               identity: Mapping[str, Any], log: list[dict[str, Any]]) -> Path:
    """Write the checkpoint of a finished ``epoch`` atomically and durably (fsynced); return its folder."""
    final = epoch_dir(out, epoch)
    with atomic_dir(final) as tmp:
        save_adapters(model, tmp, extra={"epoch": epoch})
        opt_tensors, opt_meta = _optimizer_state(opt)
        rng_tensors, rng_meta = _rng_state()
        save_file({**opt_tensors, **rng_tensors}, str(tmp / STATE_TENSORS))
        atomic_write_json(tmp / STATE_JSON, {"epoch": epoch, "identity": dict(identity),
                                             "optimizer": opt_meta, "rng": rng_meta, "log": log})
    return final


def check_identity(saved: Mapping[str, Any], current: Mapping[str, Any], where: Path) -> None:
    """Raise if a checkpoint was made with another configuration than the current run.

    Raises:
        CheckpointMismatchError: naming every differing field, saved vs now.
    """
    current = json.loads(json.dumps(dict(current), default=str))
    diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}"
             for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if diffs:
        msg = (f"{where}: cannot resume, the checkpoint was made with another configuration ("
               + "; ".join(diffs) + "). Resume with the original settings, or train into a new --out "
               "folder (nothing was changed).")
        raise CheckpointMismatchError(msg)


def load_epoch(out: Path, epoch: int, model: torch.nn.Module, opt: torch.optim.Optimizer,
               identity: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Restore adapters, optimiser and RNG states from epoch ``epoch``; return the loss log so far.

    Raises:
        CheckpointMismatchError: the checkpoint's run identity differs from ``identity``.
    """
    folder = epoch_dir(out, epoch)
    meta = json.loads((folder / STATE_JSON).read_text(encoding="utf-8"))
    check_identity(meta["identity"], identity, folder)
    adapters, _ = read_checkpoint(folder)
    load_adapter_state(model, adapters, str(folder))
    model.load_state_dict(adapters, strict=False)  # again, with the BatchNorm batch counters
    tensors = load_file(str(folder / STATE_TENSORS))
    _restore_optimizer(opt, tensors, meta["optimizer"])
    _restore_rng(tensors, meta["rng"])
    return list(meta["log"])
