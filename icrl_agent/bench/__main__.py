"""Command line of the benchmarks: ``python -m icrl_agent.bench {online,offline,speed,pretrain-speed,sweep-optvi}``.

Each subcommand prints its markdown table, preceded by the exact command that reproduces it (every
option spelled out), and writes JSON + CSV + PNG under ``<out>/<kind>/`` and the table to ``<out>/<kind>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence

from icrl_agent.bench.agents import AGENTS, AgentUnavailable
from icrl_agent.bench.common import DEFAULT_OUT

SWEEP_C = "0.001,0.003,0.01,0.03,0.1"


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _common(parser: argparse.ArgumentParser, agents: str, seeds: int = 10) -> None:
    parser.add_argument(
        "--envs", default="all", help="'all' or comma-separated env ids (e.g. RiverSwim,FrozenLake4x4)"
    )
    parser.add_argument(
        "--agents",
        default=agents,
        help=f"comma-separated agents among: {', '.join(AGENTS)}; name:key=value overrides a parameter",
    )
    parser.add_argument("--seeds", type=_positive, default=seeds, help="seeds per setting (0 .. seeds-1)")
    parser.add_argument("--workers", type=_positive, default=2, help="parallel worker processes")
    parser.add_argument("--out", default=DEFAULT_OUT, help="results folder")


def build_parser() -> argparse.ArgumentParser:
    """The ``icrl-bench`` argument parser (one subparser per benchmark)."""
    from icrl_agent.bench import offline, online, speed

    parser = argparse.ArgumentParser(prog="python -m icrl_agent.bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("online", help="online learning from scratch: mean normalized online return")
    _common(p, online.DEFAULT_AGENTS)
    p.add_argument(
        "--episodes", type=_positive, default=None, help="episodes per run (default: per-env budget table)"
    )

    p = sub.add_parser("sweep-optvi", help="online benchmark of OptimisticVI over its bonus constant")
    _common(p, "optvi")
    p.add_argument("--c", type=_floats, default=_floats(SWEEP_C), help="bonus constants to try")
    p.add_argument("--param", default="c", help="name of OptimisticVI's bonus parameter")
    p.add_argument(
        "--episodes", type=_positive, default=None, help="episodes per run (default: per-env budget table)"
    )

    p = sub.add_parser("offline", help="fit on datasets, exact value of the greedy policy")
    _common(p, offline.DEFAULT_AGENTS)
    p.add_argument(
        "--sizes", type=_ints, default=list(offline.DEFAULT_SIZES), help="dataset sizes (transitions)"
    )
    p.add_argument(
        "--behaviours",
        default=",".join(offline.DEFAULT_BEHAVIOURS),
        help="behaviour policies: uniform, eps<e> (optimal with random actions with probability e)",
    )

    p = sub.add_parser("speed", help="microseconds per act+observe at several numbers of states")
    p.add_argument(
        "--agents", default=speed.DEFAULT_AGENTS, help=f"comma-separated agents among: {', '.join(AGENTS)}"
    )
    p.add_argument("--sizes", type=_ints, default=list(speed.DEFAULT_SIZES), help="numbers of states")
    p.add_argument("--steps", type=_positive, default=5000, help="timed steps per agent and size")
    p.add_argument("--max-seconds", type=float, default=60.0, help="wall-time cap per agent and size")
    p.add_argument("--threads", type=_positive, default=1, help="torch intra-op threads (SB3 agents)")
    p.add_argument("--out", default=DEFAULT_OUT, help="results folder")

    p = sub.add_parser("prior", help="online return on MDPs of the pretraining prior (held-out families)")
    p.add_argument("--families", default="", help="prior families (default: those held out of training)")
    p.add_argument("--agents", default="icrl,optvi-blind,optvi", help="agents; <name>-blind is told nothing")
    p.add_argument("--mdps", type=_positive, default=16, help="MDPs per family")
    p.add_argument("--episodes", type=_positive, default=50, help="online episodes per MDP")
    p.add_argument("--seed", type=int, default=0, help="seed of the MDP draws and the agents")
    p.add_argument("--weights", default=None, help="checkpoint of the icrl agent (default: shipped)")
    p.add_argument("--workers", type=_positive, default=2, help="parallel worker processes")
    p.add_argument("--out", default=os.path.join(DEFAULT_OUT, "prior"), help="results folder")

    p = sub.add_parser("accuracy", help="policy accuracy vs the Boltzmann target, by family and data amount")
    p.add_argument("--weights", default="", help="comma-separated checkpoints (default: the shipped weights)")
    p.add_argument("--families", default="", help="prior families (default: all)")
    p.add_argument("--episodes", type=_ints, default=[0, 1, 4, 16, 64], help="episodes of data per MDP")
    p.add_argument("--mdps", type=_positive, default=128, help="MDPs per family and amount")
    p.add_argument("--seed", type=int, default=0, help="seed of the MDP and data draws")
    p.add_argument("--out", default=os.path.join(DEFAULT_OUT, "accuracy"), help="results folder")

    p = sub.add_parser("pretrain-speed", help="pretraining throughput (MDPs/s, steps/s)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--config", default=os.path.join("configs", "default.yaml"), help="pretraining config file"
    )
    p.add_argument("--out", default=DEFAULT_OUT, help="results folder")
    return parser


def canonical_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command line with every option of the chosen subcommand spelled out, as parsed."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    words = [args.command]
    for action in sub._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest)
        if value is None:
            continue
        text = (
            ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
            if isinstance(value, list)
            else str(value)
        )
        words += [action.option_strings[-1], text]
    return "python -m icrl_agent.bench " + shlex.join(words)


def _sweep_agents(base: str, param: str, values: Sequence[float]) -> list[str]:
    if "," in base:
        raise ValueError(f"sweep-optvi sweeps one agent, got --agents {base!r}")
    return [f"{base}:{param}={value:g}" for value in values]


def _with_best(result: dict, markdown_path: str) -> dict:
    """Append which swept value has the highest mean normalized return over envs to the sweep's report."""
    means: dict[str, list[float]] = {}
    for row in result["summary"]:
        means.setdefault(row["agent"], []).append(row["mean"])
    if not means:
        return result
    n_envs = max(len(v) for v in means.values())
    complete = {agent: sum(v) / len(v) for agent, v in means.items() if len(v) == n_envs}
    best = max(complete, key=complete.get)
    line = f"\n**Best over envs: `{best}`** (mean normalized return {complete[best]:.3f}).\n"
    with open(markdown_path, "a") as f:
        f.write(line)
    return {**result, "markdown": result["markdown"] + line, "best": best}


def _run(args: argparse.Namespace, command: str) -> dict:
    from icrl_agent.bench import offline, online, speed

    if args.command == "online":
        return online.run_online(
            args.envs, args.agents, args.seeds, args.episodes, args.workers, args.out, command
        )
    if args.command == "sweep-optvi":
        result = online.run_online(
            args.envs,
            _sweep_agents(args.agents, args.param, args.c),
            args.seeds,
            args.episodes,
            args.workers,
            args.out,
            command,
            kind="sweep_optvi",
            title=f"OptimisticVI bonus sweep ({args.param})",
        )
        return _with_best(result, os.path.join(args.out, "sweep_optvi.md"))
    if args.command == "offline":
        return offline.run_offline(
            args.envs,
            args.agents,
            args.seeds,
            args.sizes,
            args.behaviours.split(","),
            args.workers,
            args.out,
            command,
        )
    if args.command == "speed":
        import torch

        torch.set_num_threads(args.threads)  # the online workers use 1 thread each too
        return speed.run_speed(args.agents, args.sizes, args.steps, args.max_seconds, args.out, command)
    if args.command == "prior":
        from icrl_agent.bench.prior_eval import run_prior

        families = [f for f in args.families.split(",") if f]
        return run_prior(
            families, args.agents, args.mdps, args.episodes, args.seed, args.workers, args.weights, args.out, command
        )
    if args.command == "accuracy":
        from icrl_agent.bench.accuracy import run_accuracy

        weights = [w for w in args.weights.split(",") if w] or [None]
        families = [f for f in args.families.split(",") if f]
        return run_accuracy(weights, families, args.episodes, args.mdps, args.seed, args.out, command)
    from icrl_agent.bench.pretrain_speed import run_pretrain_speed

    result = run_pretrain_speed(args.device, args.config)
    path = os.path.join(args.out, "pretrain_speed", "results.json")
    from icrl_agent.bench.report import write_json

    write_json(path, {"command": command, **result})
    return {
        "markdown": f"# Pretraining speed\n\nReproduce with:\n\n    {command}\n\n```\n{json.dumps(result, indent=1)}\n```\n"
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m icrl_agent.bench`` and the ``icrl-bench`` console script.

    :param argv: arguments (default: ``sys.argv[1:]``)
    :return: exit status: 0, 1 if some runs failed, 2 for bad arguments
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    command = canonical_command(parser, args)
    try:
        result = _run(args, command)
    except (ValueError, AgentUnavailable) as err:  # unknown names, bad arguments: no traceback needed
        parser.error(str(err))
    print(result["markdown"])
    return 1 if result.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
