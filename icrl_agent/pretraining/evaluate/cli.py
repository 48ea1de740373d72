"""``python -m icrl_agent.pretraining evaluate {prior,accuracy,scale,speed}``: diagnostics of pretrained weights.

Each prints its table (or JSON) preceded by the command that reproduces it. Without ``--out`` every run
gets a new folder under ``runs/evaluate/``; a folder that already holds files (e.g. the committed
``benchmarks/results/prior``) is written into only with ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from icrl_agent.bench.__main__ import DefaultsFormatter, _ints, _output_options, _positive, canonical_command
from icrl_agent.bench.agents import AGENTS
from icrl_agent.pretraining.evaluate.prior import RUNS_DIR

PROG = "python -m icrl_agent.pretraining evaluate"


def _families(text: str) -> str:
    from icrl_agent.bench.common import did_you_mean
    from icrl_agent.pretraining.prior import FAMILIES

    for name in (f for f in text.split(",") if f):
        if name not in FAMILIES:
            raise argparse.ArgumentTypeError(
                f"unknown family {name!r}; valid families: {', '.join(FAMILIES)}.{did_you_mean(name, FAMILIES)}"
            )
    return text


def _prior_agents(text: str) -> str:
    """``--agents`` of ``prior``: bench agent names, each optionally ``-blind`` (told nothing)."""
    from icrl_agent.bench.agents import parse_agents
    from icrl_agent.pretraining.evaluate.prior import BLIND_SUFFIX

    try:
        parse_agents([name.removesuffix(BLIND_SUFFIX) for name in text.split(",")])
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err} (<name>{BLIND_SUFFIX} is the agent told nothing)") from None
    return text


def parse_key_value(text: str, usage: str) -> tuple[str, Any]:
    """``key=value`` with ``value`` read as JSON when it parses (``5``, ``0.01``, ``null``), else a string.

    :param usage: what the error says the flag takes, e.g. ``"--prior takes key=value"``
    """
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"{usage}, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_prior_overrides(text: str) -> dict[str, Any]:
    """``key=value,key=value`` for ``--prior`` (each read by :func:`parse_key_value`)."""
    usage = "--prior takes key=value[,key=value...] (e.g. arms_max_stay=5)"
    return dict(parse_key_value(item, usage) for item in text.split(","))


def _prior_overrides(text: str) -> str:
    try:
        parse_prior_overrides(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1) (a share of the optimum), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of the four diagnostics."""
    formatter = DefaultsFormatter
    parser = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").split("\n")[0], formatter_class=formatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prior", help="online return on MDPs of the pretraining prior (held-out families)",
                       formatter_class=formatter)
    p.add_argument("--families", type=_families, default="", help="prior families (default: those held out of training)")
    p.add_argument("--agents", type=_prior_agents, default="icrl,optvi-blind,optvi",
                   help=f"comma-separated agents among: {', '.join(AGENTS)}; <name>-blind is told nothing")
    p.add_argument("--mdps", type=_positive, default=16, help="MDPs per family")
    p.add_argument("--episodes", type=_positive, default=50, help="online episodes per MDP")
    p.add_argument("--seed", type=int, default=0, help="seed of the MDP draws and the agents")
    p.add_argument("--weights", default=None, help="checkpoint of the icrl agent (default: shipped)")
    p.add_argument("--workers", type=_positive, default=2, help="parallel worker processes")
    p.add_argument("--prior", type=_prior_overrides, default=None, metavar="KEY=VALUE[,KEY=VALUE...]",
                   help="prior keys replaced before drawing, e.g. arms_max_stay=5,max_actions=6 (default: the "
                        "weights' prior unchanged)")
    p.add_argument("--horizon", type=_positive, default=None,
                   help="episode length of every drawn MDP (default: each family's own)")
    p.add_argument("--min-gap", type=_share, default=0.0,
                   help="leave out of the means an MDP where random play comes within this share of the optimum "
                        "(its normalized score swings with return noise); 0 keeps every MDP")
    _output_options(p)

    p = sub.add_parser("accuracy", help="policy accuracy vs the Boltzmann target, by family and data amount",
                       formatter_class=formatter)
    p.add_argument("--weights", default="", help="comma-separated checkpoints (default: the shipped weights)")
    p.add_argument("--families", type=_families, default="", help="prior families (default: all)")
    p.add_argument("--episodes", type=_ints, default=[0, 1, 4, 16, 64], help="episodes of data per MDP")
    p.add_argument("--mdps", type=_positive, default=128, help="MDPs per family and amount")
    p.add_argument("--seed", type=int, default=0, help="seed of the MDP and data draws")
    _output_options(p, progress=False)

    p = sub.add_parser("scale", help="reward-scale estimate vs the true largest reward, random data and the agent's own",
                       formatter_class=formatter)
    p.add_argument("--weights", default="", help="comma-separated checkpoints (default: the shipped weights)")
    p.add_argument("--families", type=_families, default="", help="prior families (default: all)")
    p.add_argument("--mdps", type=_positive, default=64, help="MDPs per family and data kind")
    p.add_argument("--episodes", type=_positive, default=4, help="most episodes of the agent's own data per MDP")
    p.add_argument("--seed", type=int, default=0, help="seed of the MDP and data draws")
    _output_options(p, progress=False)

    p = sub.add_parser("speed", help="pretraining throughput (MDPs/s, steps/s)", formatter_class=formatter)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--config", default=os.path.join("configs", "default.yaml"), help="pretraining config file")
    _output_options(p, progress=False)
    return parser


def _run(args: argparse.Namespace, command: str) -> tuple[str, list[Any]]:
    """Run the chosen diagnostic; return its markdown and its failed runs."""
    if args.command == "prior":
        from icrl_agent.pretraining.evaluate.prior import run_prior

        families = [f for f in args.families.split(",") if f]
        progress = False if args.no_progress else None
        result = run_prior(families, args.agents, args.mdps, args.episodes, args.seed, args.workers, args.weights,
                           args.out, command, force=args.force, progress=progress,
                           prior_overrides=parse_prior_overrides(args.prior) if args.prior else None,
                           horizon=args.horizon, min_gap=args.min_gap)
        return result["markdown"], result["errors"]
    if args.command == "accuracy":
        from icrl_agent.pretraining.evaluate.accuracy import run_accuracy

        weights = [w for w in args.weights.split(",") if w] or [None]
        families = [f for f in args.families.split(",") if f]
        result = run_accuracy(weights, families, args.episodes, args.mdps, args.seed, args.out, command,
                              force=args.force)
        return result["markdown"], []
    if args.command == "scale":
        from icrl_agent.pretraining.evaluate.scale import run_scale

        families = [f for f in args.families.split(",") if f]
        result = run_scale(args.weights.split(","), families, args.mdps, args.episodes, args.seed, args.out,
                           command, force=args.force)
        return result["markdown"], []
    from icrl_agent.bench.common import prepare_out
    from icrl_agent.bench.report import write_json
    from icrl_agent.pretraining.evaluate.speed import run_pretrain_speed

    out = prepare_out(args.out, "pretrain_speed", args.force, base=RUNS_DIR)
    result = run_pretrain_speed(args.device, args.config)
    write_json(os.path.join(out, "pretrain_speed", "results.json"), {"command": command, **result})
    text = json.dumps(result, indent=1)
    return f"# Pretraining speed\n\nReproduce with:\n\n    {command}\n\n```\n{text}\n```\n", []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m icrl_agent.pretraining evaluate``.

    :param argv: the arguments after ``evaluate`` (default: ``sys.argv[2:]``)
    :return: exit status: 0, 1 if some runs failed, 2 for bad arguments
    """
    parser = build_parser()
    args = parser.parse_args(sys.argv[2:] if argv is None else argv)
    command = canonical_command(parser, args, prefix=PROG)
    try:
        markdown, errors = _run(args, command)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        parser.error(str(err))
    print(markdown)
    return 1 if errors else 0
