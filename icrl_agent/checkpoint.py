"""Checkpoint I/O: safetensors weights plus a JSON model card. Nothing is ever unpickled.

A checkpoint is two files with one stem: ``<stem>.safetensors`` (the tensors) and ``<stem>.json`` (the
model card: format version, the :class:`~icrl_agent.model.ModelConfig`, the run config and training
information given by the caller, the tensor names and shapes, and the sha256 of the weights file).
Loading checks the file's header bytes before anything else, then the sha256, the config and every
tensor name and shape, and raises a :class:`ValueError` that says what is wrong and what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import safetensors.torch

from icrl_agent.model import IcrlModel, ModelConfig

FORMAT = "icrl_agent-checkpoint"
FORMAT_VERSION = 1
DEFAULT_STEM = "model"
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_REMEDY = "re-download the checkpoint or retrain with `python -m icrl_agent.pretraining --config FILE`"


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """The weights and card files a checkpoint path stands for.

    :param path: a directory (``model.safetensors`` / ``model.json`` inside, or the only weights + card
        pair there, e.g. a pretraining ``out_dir``), a stem, or either file
    :return: ``(weights_path, card_path)``
    """
    p = Path(path)
    if p.is_dir():
        stem = p / DEFAULT_STEM
        pairs = [w.with_suffix("") for w in sorted(p.glob("*.safetensors")) if w.with_suffix(".json").is_file()]
        if not stem.with_suffix(".safetensors").exists() and len(pairs) == 1:
            stem = pairs[0]
    elif p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    elif p.is_file():  # the weights file itself, whatever its suffix (a .pt or .pkl is refused later)
        return p, p.with_suffix(".json")
    elif p.suffix == ".safetensors":
        stem = p.with_suffix("")
    else:
        stem = p
    return Path(f"{stem}.safetensors"), Path(f"{stem}.json")


def _canonical_header(data: bytes) -> bytes:
    """The safetensors bytes with the metadata keys in sorted order.

    safetensors writes ``__metadata__`` from a Rust hash map, whose order changes from one process to the
    next: the same tensors then hash differently, and two runs of one training command could not be
    compared by the sha256 the model card records. Same keys and values in another order: same length.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    metadata = header.pop("__metadata__", None)
    ordered = ({"__metadata__": dict(sorted(metadata.items()))} if metadata else {}) | header
    text = json.dumps(ordered, separators=(",", ":")).encode()
    if len(text) > n:  # never expected; keep the writer's own header rather than break the file
        return data
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n :]


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a checkpoint's weights file.

    :param path: the checkpoint (directory, stem or file, see :func:`checkpoint_paths`)
    :return: the 64-character hex digest
    """
    weights, _ = checkpoint_paths(path)
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    path_dir_or_stem: str | os.PathLike, model: IcrlModel, config: dict[str, Any], card: dict[str, Any]
) -> Path:
    """Write ``<stem>.safetensors`` and the ``<stem>.json`` model card.

    :param path_dir_or_stem: a directory (``model.*`` inside), a stem, or the ``.safetensors``/``.json`` path
    :param model: the network to save
    :param config: the run configuration (JSON-able), stored as ``card["config"]``
    :param card: training information (seed, steps, wall time, device, metrics, ...), stored as
        ``card["training"]``
    :return: the path of the weights file
    """
    for name, value in (("config", config), ("card", card)):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"save_checkpoint: {name} must be plain JSON data (no NaN): {err}") from err
    p = Path(path_dir_or_stem)
    stem = (
        p / DEFAULT_STEM
        if p.is_dir()
        else (p.with_suffix("") if p.suffix in (".json", ".safetensors") else p)
    )
    weights, card_path = Path(f"{stem}.safetensors"), Path(f"{stem}.json")
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = weights.with_name(weights.name + ".tmp")
    data = safetensors.torch.save(tensors, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    tmp.write_bytes(_canonical_header(data))
    os.replace(tmp, weights)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights_file": weights.name,
        "sha256": checkpoint_sha256(weights),
        "model_config": asdict(model.config),
        "tensors": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in tensors.items()
        },
        "config": config,
        "training": card,
    }
    card_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return weights


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> tuple[IcrlModel, dict[str, Any]]:
    """Load and verify a checkpoint written by :func:`save_checkpoint`.

    :param path: a directory, a stem, or the ``.safetensors``/``.json`` file
    :param device: where to put the weights
    :return: ``(model in eval mode, the full model card)``
    """
    weights, card_path = checkpoint_paths(path)
    if not weights.is_file():
        raise FileNotFoundError(
            f"no checkpoint weights at {weights}: give a directory, a stem or the .safetensors file"
        )
    _check_safetensors_header(weights)
    card = _read_card(card_path, weights)
    sha = checkpoint_sha256(weights)
    if sha != card.get("sha256"):
        raise ValueError(
            f"checkpoint {weights} is corrupt: its sha256 {sha[:16]}... does not match the model card's "
            f"{str(card.get('sha256'))[:16]}...: {_REMEDY}"
        )
    try:
        config = ModelConfig.from_dict(card["model_config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {card_path} has an invalid model config ({err}): {_REMEDY}") from err
    model = IcrlModel(config)
    tensors = safetensors.torch.load_file(str(weights), device=device)
    _check_tensors(weights, card, tensors, {k: tuple(v.shape) for k, v in model.state_dict().items()})
    dtypes = {v.dtype for v in tensors.values() if v.is_floating_point()}
    model.to(device=device, dtype=dtypes.pop() if len(dtypes) == 1 else None)
    model.load_state_dict(tensors, strict=True)
    return model.eval(), card


def _check_safetensors_header(weights: Path) -> None:
    """Refuse anything that is not a safetensors file from its first bytes, before it is parsed.

    safetensors: an 8-byte little-endian header length, then that many bytes of a JSON object.
    """
    size = weights.stat().st_size
    with open(weights, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        header = f.read(n) if 2 <= n <= min(size - 8, _MAX_HEADER_BYTES) else b""
    if header.startswith(b"{"):
        try:
            if isinstance(json.loads(header), dict):
                return
        except ValueError:
            pass
        raise ValueError(f"checkpoint {weights} is corrupt (unreadable safetensors header): {_REMEDY}")
    raise ValueError(
        f"checkpoint {weights} is not a safetensors file ({_foreign_kind(head)}); pickled checkpoints are "
        "refused and never unpickled: save weights with icrl_agent.checkpoint.save_checkpoint, or "
        f"{_REMEDY}"
    )


def _foreign_kind(head: bytes) -> str:
    if head[:1] == b"\x80":
        return "it looks like a Python pickle"
    if head.startswith(b"PK\x03\x04"):
        return "it looks like a zip archive, e.g. torch.save output"
    return "unrecognized header"


def _read_card(card_path: Path, weights: Path) -> dict[str, Any]:
    if not card_path.is_file():
        raise ValueError(f"checkpoint {weights} has no model card {card_path.name} next to it: {_REMEDY}")
    try:
        card = json.loads(card_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"checkpoint card {card_path} is corrupt (not JSON: {err}): {_REMEDY}") from err
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ValueError(
            f"{card_path} is not an icrl_agent model card (format {FORMAT!r} expected): {_REMEDY}"
        )
    if not isinstance(card.get("format_version"), int) or card["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {card_path} has format version {card.get('format_version')!r}, this version reads "
            f"up to {FORMAT_VERSION}: upgrade icrl_agent or {_REMEDY}"
        )
    return card


def _check_tensors(weights: Path, card: dict, tensors: dict, expected: dict[str, tuple[int, ...]]) -> None:
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    listed = {k: tuple(v["shape"]) for k, v in card.get("tensors", {}).items()}
    problems = []
    if set(found) - set(expected):
        problems.append(f"unexpected tensors {sorted(set(found) - set(expected))}")
    if set(expected) - set(found):
        problems.append(f"missing tensors {sorted(set(expected) - set(found))}")
    problems += [
        f"{k} has shape {found[k]}, expected {s}" for k, s in expected.items() if k in found and found[k] != s
    ]
    if listed != found:
        problems.append("the tensors differ from those listed in the model card")
    if problems:
        raise ValueError(
            f"checkpoint {weights} does not match its ModelConfig {card.get('model_config')}: "
            f"{'; '.join(problems[:5])}: {_REMEDY}"
        )
