"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

``<dir>/last.safetensors`` holds the model weights (``model.*``), the optimizer's per-parameter tensors
(``optim.<index>.<name>``; a further named optimizer's as ``optim_<name>.<index>.<field>``, e.g. the scale
stage's ``optim_scale.*``) and the global torch RNG state (``rng.cpu``, uint8). ``<dir>/last.json`` holds
the step counters, the optimizers' hyper-parameters, the run config and the sha256 of the tensor file;
it is written last, so a run killed mid-write resumes from the previous complete checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE_NAME = "last"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _optimizer_tensors(
    optimizer: torch.optim.Optimizer, prefix: str = "optim"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_train_state(
    directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, meta: dict[str, Any],
    extra_optimizers: dict[str, torch.optim.Optimizer] | None = None,
) -> Path:
    """Write the resumable state atomically (tensor file first, then the JSON that commits it).

    :param directory: checkpoint directory (created if needed)
    :param model: the bare model (not the DDP wrapper)
    :param optimizer: the stage-1 optimizer, or ``None``
    :param meta: JSON-able counters and config
    :param extra_optimizers: further optimizers by name (e.g. ``{"scale": ...}``), saved beside it
    :return: the path of the JSON file
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors["rng.cpu"] = torch.get_rng_state()
    optim_meta = None
    if optimizer is not None:
        optim_tensors, optim_meta = _optimizer_tensors(optimizer)
        tensors.update(optim_tensors)
    extra_meta: dict[str, Any] = {}
    for name, extra in (extra_optimizers or {}).items():
        extra_tensors, extra_meta[name] = _optimizer_tensors(extra, f"optim_{name}")
        tensors.update(extra_tensors)
    tensor_path, json_path = directory / f"{STATE_NAME}.safetensors", directory / f"{STATE_NAME}.json"
    tmp = directory / f".{STATE_NAME}.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, tensor_path)
    payload = {**meta, "optimizer": optim_meta, "extra_optimizers": extra_meta, "sha256": _sha256(tensor_path)}
    tmp_json = directory / f".{STATE_NAME}.json.tmp"
    tmp_json.write_text(json.dumps(payload, indent=2, sort_keys=True))
    os.replace(tmp_json, json_path)
    return json_path


def has_train_state(directory: str | Path) -> bool:
    """True when ``directory`` holds a committed checkpoint."""
    return (Path(directory) / f"{STATE_NAME}.json").is_file()


def load_train_state(
    directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
    extra_optimizers: dict[str, torch.optim.Optimizer] | None = None,
) -> dict[str, Any]:
    """Restore model, optimizer and RNG state in place; return the JSON metadata.

    :param directory: checkpoint directory written by :func:`save_train_state`
    :param model: the bare model, already built with the same architecture
    :param optimizer: the stage-1 optimizer over the same parameters, or ``None``
    :param extra_optimizers: further optimizers by name, as saved (a name the checkpoint does not hold,
        e.g. in one written before that optimizer existed, keeps its fresh state)
    :return: the metadata (counters, config, ...)
    """
    directory = Path(directory)
    tensor_path, json_path = directory / f"{STATE_NAME}.safetensors", directory / f"{STATE_NAME}.json"
    meta = json.loads(json_path.read_text())
    if not tensor_path.is_file() or _sha256(tensor_path) != meta.get("sha256"):
        raise ValueError(
            f"checkpoint {tensor_path} is missing or does not match {json_path} (sha256 mismatch); "
            "delete the checkpoint directory to start over"
        )
    tensors = load_file(str(tensor_path))
    device = next(model.parameters()).device
    weights = {k[len("model."):]: v.to(device) for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(weights)
    torch.set_rng_state(tensors["rng.cpu"])
    if optimizer is not None and meta.get("optimizer") is not None:
        optimizer.load_state_dict(_rebuild_optimizer_state(tensors, meta["optimizer"], device))
    saved_extra = meta.get("extra_optimizers") or {}
    for name, extra in (extra_optimizers or {}).items():
        if name in saved_extra:
            extra.load_state_dict(_rebuild_optimizer_state(tensors, saved_extra[name], device, f"optim_{name}"))
    return meta


def _rebuild_optimizer_state(
    tensors: dict[str, torch.Tensor], optim_meta: dict[str, Any], device: torch.device, prefix: str = "optim"
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(f"{prefix}."):
            _, index, name = key.split(".", 2)
            # Adam keeps its step counter on the CPU unless capturable/fused
            state.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    for index, scalars in optim_meta["scalars"].items():
        state.setdefault(int(index), {}).update(scalars)
    return {"state": state, "param_groups": optim_meta["param_groups"]}
