"""Write a copy of a checkpoint with its optimism constants or planning options replaced.

    python tools/override_constants.py icrl_agent/weights/icrl-v2.1 runs/override/h20k10 \\
        --kappa 10 --model optimism_horizon=20

A diagnostic, not a way to make shipped weights: it answers "what would the pretrained network do online
with kappa at 10" or "with the unknown successor's worth scaled by the horizon", for the tables in
docs/pretraining.md. The network is loaded, the named constants (``IcrlModel.optimism_parameters``, given
in their natural units) and ``model.*`` config keys are replaced, and the copy is saved with its card's
``training.override`` recording the source, its sha256 and every replaced value. The source is not touched.
``--pair-outputs-from ABLATION`` also gives every pair the per-pair head outputs of a constants ablation
(``encoder: none``), so the copy reads the context everywhere but there; ``--missing-mass-from ABLATION`` its
missing-mass head, which reads only counts and impurity.
Evaluate the copy like any checkpoint: ``python -m icrl_agent.bench online --agents icrl:weights=OUT ...``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from icrl_agent.checkpoint import checkpoint_paths, checkpoint_sha256, load_checkpoint, save_checkpoint
from icrl_agent.model import OPTIMISM_CONSTANTS, IcrlModel, ModelConfig
from icrl_agent.pretraining.evaluate.cli import parse_key_value


def parse_model_option(text: str) -> tuple[str, Any]:
    """``key=value`` with ``value`` read as JSON when it parses (``20``, ``null``), else as a string."""
    return parse_key_value(text, "--model takes key=value (e.g. optimism_horizon=20)")


def constant_pair_outputs(model: IcrlModel, constants_model: str | Path) -> list[float]:
    """Make ``model``'s per-pair head output, for every pair, what the constants ablation's does.

    An ``encoder: none`` model's embeddings are zero, so its per-pair head (``sa_head``: reward pseudo-count, prior
    reward, bonus factor, unknown mass) gives every pair the same four raw outputs. They become ``model``'s last
    layer's bias, with its weight zeroed; everything else of ``model`` (scale, missing mass, temperature) still reads
    the context.

    :param constants_model: a checkpoint with ``encoder: none`` and the same ``d_model``
    :return: the four raw outputs
    :raises ValueError: see :func:`_constants_ablation`
    """
    constants = _constants_ablation(constants_model, model, "per-pair outputs depend")
    with torch.no_grad():
        outputs = constants.sa_head(torch.zeros(1, cast(nn.Linear, constants.sa_head[0]).in_features))[0]
        last = cast(nn.Linear, model.sa_head[-1])
        last.weight.zero_()
        last.bias.copy_(outputs)
    return cast(list[float], outputs.tolist())


def count_only_missing_mass(model: IcrlModel, constants_model: str | Path) -> None:
    """Make ``model``'s missing-mass head the constants ablation's: ``M̂`` from a pair's count and the MDP's impurity
    alone (the head's weights on the embeddings zeroed, its weights on the other inputs and its bias copied).

    :raises ValueError: see :func:`_constants_ablation`, or either model without the head
    """
    constants = _constants_ablation(constants_model, model, "missing mass depends")
    if not (hasattr(model, "missing_mass_head") and hasattr(constants, "missing_mass_head")):
        raise ValueError("both checkpoints need a missing-mass head (explore_unknown: learned_missing_mass)")
    source, target = constants.missing_mass_head, model.missing_mass_head
    embedding = 3 * model.config.d_model  # the pair context the head reads first (model._pair_context)
    with torch.no_grad():
        target.weight.zero_()
        target.weight[:, embedding:] = source.weight[:, embedding:]
        target.bias.copy_(source.bias)


def _constants_ablation(path: str | Path, model: IcrlModel, what: str) -> IcrlModel:
    """The constants ablation at ``path``, refused unless its encoder is ``none`` and its ``d_model`` is ``model``'s.

    :param what: what the caller takes from it, for the error
    """
    constants, _ = load_checkpoint(path)
    if constants.config.encoder != "none":
        raise ValueError(f"{path} has encoder {constants.config.encoder!r}: its {what} on the context; give a "
                         "constants ablation (encoder: none)")
    if constants.config.d_model != model.config.d_model:
        raise ValueError(f"{path} has d_model {constants.config.d_model}, this model {model.config.d_model}: give a "
                         "constants ablation of the same d_model")
    return constants


def override(
    source: str | Path, out: str | Path, constants: dict[str, float], options: dict[str, Any],
    pair_outputs_from: str | Path | None = None, missing_mass_from: str | Path | None = None,
) -> Path:
    """Save a copy of ``source`` at ``out`` with ``constants`` and config ``options`` replaced.

    :param source: a checkpoint (directory, stem or ``.safetensors`` path)
    :param out: where to write the copy (a stem); refused if it is the source
    :param constants: natural-unit values keyed by :data:`icrl_agent.model.OPTIMISM_CONSTANTS`
    :param options: ``ModelConfig`` fields to replace (validated by ``ModelConfig``)
    :param pair_outputs_from: a constants ablation whose per-pair outputs the copy takes
        (:func:`constant_pair_outputs`)
    :param missing_mass_from: a constants ablation whose count-only missing-mass head the copy takes
        (:func:`count_only_missing_mass`)
    :return: the path of the written weights file
    """
    if checkpoint_paths(out)[0].resolve() == checkpoint_paths(source)[0].resolve():
        raise ValueError(f"out {out} is the source checkpoint; give another path so the source is kept")
    loaded, card = load_checkpoint(source)
    model = IcrlModel(ModelConfig.from_dict(dict(card["model_config"], **options)))
    model.load_state_dict(loaded.state_dict())
    model.set_optimism_constants(constants)
    training = dict(card.get("training", {}))
    flags = [f"--{k.replace('_', '-')} {v:g}" for k, v in constants.items()]
    flags += [f"--model {k}={json.dumps(v)}" for k, v in options.items()]
    training["override"] = {
        "source": str(source), "source_sha256": checkpoint_sha256(source),
        "source_command": training.get("command"),  # what made the source; this copy had no training step
        "constants": constants, "model": options, "constants_after": model.optimism_constants(),
    }
    if pair_outputs_from is not None:
        outputs = constant_pair_outputs(model, pair_outputs_from)
        training["override"]["pair_outputs_from"] = {
            "checkpoint": str(pair_outputs_from), "sha256": checkpoint_sha256(pair_outputs_from), "outputs": outputs}
        flags.append(f"--pair-outputs-from {pair_outputs_from}")
    if missing_mass_from is not None:
        count_only_missing_mass(model, missing_mass_from)
        training["override"]["missing_mass_from"] = {
            "checkpoint": str(missing_mass_from), "sha256": checkpoint_sha256(missing_mass_from)}
        flags.append(f"--missing-mass-from {missing_mass_from}")
    training["command"] = " ".join(["python tools/override_constants.py", str(source), str(out), *flags])
    run_config = dict(card["config"])
    if isinstance(run_config.get("model"), dict):  # a pretraining run's config: keep it in step
        run_config["model"] = dict(run_config["model"], **options)
    return save_checkpoint(out, model, run_config, training)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="checkpoint to copy (directory, stem or .safetensors)")
    parser.add_argument("out", help="stem of the copy to write")
    for name in OPTIMISM_CONSTANTS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None, help=f"new {name} (> 0)")
    parser.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                        help="a ModelConfig field to replace, e.g. optimism_horizon=20 (repeatable)")
    parser.add_argument("--pair-outputs-from", default=None, metavar="CHECKPOINT",
                        help="a constants ablation (encoder: none) whose per-pair head outputs every pair gets")
    parser.add_argument("--missing-mass-from", default=None, metavar="CHECKPOINT",
                        help="a constants ablation whose missing-mass head (counts and impurity only) the copy takes")
    args = parser.parse_args()
    constants = {n: getattr(args, n) for n in OPTIMISM_CONSTANTS if getattr(args, n) is not None}
    options = dict(parse_model_option(text) for text in args.model)
    try:
        path = override(args.source, args.out, constants, options, args.pair_outputs_from, args.missing_mass_from)
    except ValueError as err:
        parser.error(str(err))
    after = load_checkpoint(path)[0].optimism_constants()
    described = ", ".join(f"{k} {v:.4g}" for k, v in after.items())
    print(f"wrote {path}: {described}" + (f"; model {options}" if options else ""))


if __name__ == "__main__":
    main()
