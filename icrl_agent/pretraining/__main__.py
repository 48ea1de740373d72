"""``python -m icrl_agent.pretraining --config FILE [--device cpu|cuda] [--steps N] [--resume] [--out DIR]``.

Under ``torchrun --nproc_per_node=N -m icrl_agent.pretraining ...`` the same command trains with DDP.
``python -m icrl_agent.pretraining evaluate {prior,accuracy,speed} ...`` runs the pretraining diagnostics
(:mod:`icrl_agent.pretraining.evaluate`), and ``python -m icrl_agent.pretraining missing-mass SOURCE OUT ...`` adds
a trained missing-mass head to a checkpoint (:mod:`icrl_agent.pretraining.missing_mass`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from icrl_agent.pretraining.config import PretrainConfig, load_config
from icrl_agent.pretraining.distributed import resolve_device

EVALUATE = "evaluate"
MISSING_MASS = "missing-mass"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line flags (each overrides the config file's key of the same meaning)."""
    parser = argparse.ArgumentParser(
        prog="python -m icrl_agent.pretraining",
        description=(__doc__ or "").split("\n")[0],
        epilog=(f"Diagnostics of pretrained weights:\n  python -m icrl_agent.pretraining {EVALUATE} --help\n"
                f"A missing-mass head on a checkpoint:\n  python -m icrl_agent.pretraining {MISSING_MASS} --help"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="YAML or JSON run config (see configs/default.yaml)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="override the config's device")
    parser.add_argument("--steps", type=int, help="override stage1.steps (stage-1 optimizer steps)")
    parser.add_argument("--scale-steps", type=int, help="override scale.steps (scale-stage steps; 0 skips it)")
    parser.add_argument("--es-generations", type=int, help="override es.generations (0 skips stage 2)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint directory if it holds one")
    parser.add_argument("--out", help="run directory: final weights here, TensorBoard in OUT/tb, checkpoints in OUT/checkpoints")
    parser.add_argument("--stop-after", type=int, help="stop after N steps/generations of this call, leaving a resumable checkpoint")
    parser.add_argument("--seed", type=int, help="override the config's seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    """The config file with the command-line overrides applied (validated again)."""
    cfg = load_config(args.config)
    overrides: dict[str, Any] = {}
    if args.device is not None:
        overrides["device"] = args.device
    if args.steps is not None:
        overrides["stage1"] = replace(cfg.stage1, steps=args.steps)
    if args.scale_steps is not None:
        overrides["scale"] = replace(cfg.scale, steps=args.scale_steps)
    if args.es_generations is not None:
        overrides["es"] = replace(cfg.es, generations=args.es_generations)
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.no_progress:
        overrides["progress"] = False
    if args.out is not None:
        out = Path(args.out)
        overrides.update(out_dir=str(out), log_dir=str(out / "tb"), checkpoint_dir=str(out / "checkpoints"))
    return replace(cfg, **overrides)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    words = sys.argv[1:] if argv is None else list(argv)
    if words[:1] == [EVALUATE]:
        from icrl_agent.pretraining.evaluate.cli import main as evaluate_main

        return evaluate_main(words[1:])
    if words[:1] == [MISSING_MASS]:
        from icrl_agent.pretraining.missing_mass import main as missing_mass_main

        return missing_mass_main(words[1:])
    args = parse_args(words)
    try:
        cfg = config_from_args(args)
        resolve_device(cfg.device)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from icrl_agent.pretraining.train import train

    command = " ".join(["python -m icrl_agent.pretraining", *words])
    result = train(cfg, resume=args.resume, stop_after=args.stop_after, command=command)
    print(json.dumps({k: result[k] for k in ("finished", "step", "scale_step", "generation", "weights")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
