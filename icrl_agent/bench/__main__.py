"""Command line of the benchmarks: ``python -m icrl_agent.bench {online,offline,speed,sweep-optvi,paired,merge}``.

Each subcommand prints its markdown table, preceded by the exact command that reproduces it (every
option spelled out), and writes JSON + CSV + PNG under ``<out>/<kind>/`` and the table to ``<out>/<kind>.md``.
``paired`` only reads two online results and prints their seed-by-seed comparison; ``merge`` runs nothing
either, and writes one online report from agents of several runs (a new agent beside baselines run before).
Without ``--out`` every run gets a new folder under ``runs/bench/``; a folder that already holds files
(e.g. the committed ``benchmarks/results/``) is written into only with ``--force``. The pretraining
diagnostics (online return on prior MDPs, accuracy, pretraining throughput) are
``python -m icrl_agent.pretraining evaluate ...``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from icrl_agent.bench.agents import AGENTS, AgentUnavailable, parse_agents
from icrl_agent.bench.common import EPISODE_CAP, RUNS_DIR, all_env_ids, parse_envs
from icrl_agent.bench.results import OnlineResult

SWEEP_C = "0.001,0.003,0.01,0.03,0.1"
_NOT_IN_COMMAND = {"force", "no_progress"}  # flags that do not change the results


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except where the help already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False) or "default:" in text:
            return text
        if isinstance(action.default, list):  # as typed on the command line: 16,64,500
            return f"{text} (default: {','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in action.default)})"
        return super()._get_help_string(action) or text


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
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _agents(text: str) -> str:
    """``--agents``: every name checked at parse time (an unknown one is a usage error naming the valid ones)."""
    try:
        parse_agents(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _envs(text: str) -> str:
    """``--envs``: every id checked at parse time."""
    try:
        parse_envs(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _env_names() -> str:
    return ", ".join(e.removeprefix("icrl/").removesuffix("-v0") for e in all_env_ids())


def _common(parser: argparse.ArgumentParser, agents: str, seeds: int = 10) -> None:
    parser.add_argument(
        "--envs", type=_envs, default="all",
        help=f"'all' (the benchmark envs: {_env_names()}) or comma-separated env ids; any Gymnasium id with "
        "finite spaces works too (e.g. FrozenLake-v1, Taxi-v4, Blackjack-v1): its returns are normalized when it "
        "has an exact model (Gymnasium's toy-text envs: from their transition tables), raw otherwise; episodes "
        f"without a time limit are cut at {EPISODE_CAP} steps",
    )
    _agents_option(parser, agents)
    parser.add_argument("--seeds", type=_positive, default=seeds, help="seeds per setting (0 .. seeds-1)")
    parser.add_argument("--workers", type=_positive, default=2, help="parallel worker processes")
    _output_options(parser)


def _agents_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--agents", type=_agents, default=default,
        help=f"comma-separated agents among: {', '.join(AGENTS)}; name:key=value overrides a parameter",
    )


def _output_options(parser: argparse.ArgumentParser, progress: bool = True) -> None:
    parser.add_argument(
        "--out", default=None,
        help=f"results folder (default: a new {RUNS_DIR}/<benchmark>-<UTC time>); must be empty unless --force",
    )
    parser.add_argument(
        "--force", action="store_true", help="write into a non-empty --out (e.g. regenerate committed results)"
    )
    if progress:
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bar (default: one only when stderr is a terminal)"
        )


def build_parser() -> argparse.ArgumentParser:
    """The ``icrl-bench`` argument parser (one subparser per benchmark)."""
    from icrl_agent.bench import offline, online, speed

    formatter = DefaultsFormatter
    parser = argparse.ArgumentParser(
        prog="python -m icrl_agent.bench", description=(__doc__ or "").split("\n")[0], formatter_class=formatter,
        epilog="Pretraining diagnostics: python -m icrl_agent.pretraining evaluate --help",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("online", help="online learning from scratch: mean normalized online return",
                       formatter_class=formatter)
    _common(p, online.DEFAULT_AGENTS)
    p.add_argument("--episodes", type=_positive, default=None, help="episodes per run (default: per-env budget table)")

    p = sub.add_parser("sweep-optvi", help="online benchmark of OptimisticVI over its bonus constant",
                       formatter_class=formatter)
    _common(p, "optvi")
    p.add_argument("--c", type=_floats, default=_floats(SWEEP_C), help="bonus constants to try")
    p.add_argument("--param", default="c", help="name of OptimisticVI's bonus parameter")
    p.add_argument("--episodes", type=_positive, default=None, help="episodes per run (default: per-env budget table)")

    p = sub.add_parser("offline", help="fit on datasets, exact value of the greedy policy", formatter_class=formatter)
    _common(p, offline.DEFAULT_AGENTS)
    p.add_argument("--sizes", type=_ints, default=list(offline.DEFAULT_SIZES), help="dataset sizes (transitions)")
    p.add_argument(
        "--behaviours", default=",".join(offline.DEFAULT_BEHAVIOURS),
        help="behaviour policies: uniform, eps<e> (optimal with random actions with probability e)",
    )

    p = sub.add_parser("speed", help="microseconds per act+observe at several numbers of states",
                       formatter_class=formatter)
    _agents_option(p, speed.DEFAULT_AGENTS)
    p.add_argument("--sizes", type=_ints, default=list(speed.DEFAULT_SIZES), help="numbers of states")
    p.add_argument("--steps", type=_positive, default=5000, help="timed steps per agent and size")
    p.add_argument("--max-seconds", type=float, default=60.0, help="wall-time cap per agent, size and thread setting")
    p.add_argument(
        "--threads", type=_positive, default=None,
        help="torch intra-op threads of the main columns (default: torch's own setting, what users get); "
        "the 1-thread figures are always reported beside them",
    )
    _output_options(p, progress=False)

    p = sub.add_parser("paired", help="two agents' online runs compared seed by seed, with bootstrap CIs",
                       formatter_class=formatter)
    p.add_argument("a", help="A's online results: the --out folder of `bench online`, or its results.json")
    p.add_argument("b", nargs="?", default=None, help="B's online results (default: A's, for two agents of one run)")
    p.add_argument("--agent-a", default=None, help="A's agent as named in its results (default: the only one)")
    p.add_argument("--agent-b", default=None, help="B's agent as named in its results (default: the only one)")
    p.add_argument("--below", type=float, default=0.8, help="count the seeds scoring below this, per agent")

    p = sub.add_parser("merge", help="one online report from agents of several online runs (same envs, budgets, "
                       "seeds), with each agent's ratio to the best classical baseline", formatter_class=formatter)
    p.add_argument("--take", nargs=2, action="append", metavar=("RESULTS", "AGENTS"), required=True,
                   help="an online results folder (or its results.json) and the agents to take from it, "
                   "comma-separated or 'all'; repeat for each source")
    p.add_argument("--out", default=None, help="results folder of the merged report (default: a new "
                   f"{RUNS_DIR}/online-<UTC time>); must be empty unless --force")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    return parser


def canonical_command(
    parser: argparse.ArgumentParser, args: argparse.Namespace, prefix: str = "python -m icrl_agent.bench"
) -> str:
    """The command line with every option of the chosen subcommand spelled out, as parsed.

    :param parser: the parser with one subparser per command (``dest="command"``)
    :param args: the parsed arguments
    :param prefix: the program, as the user types it
    :return: the command (flags that do not change results, such as ``--force``, left out)
    """
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
    words = [args.command]
    for action in sub._actions:
        if not action.option_strings or action.dest == "help" or action.dest in _NOT_IN_COMMAND:
            continue
        value = getattr(args, action.dest)
        if value is None or isinstance(value, bool):
            continue
        text = (
            ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
            if isinstance(value, list)
            else str(value)
        )
        words += [action.option_strings[-1], text]
    return f"{prefix} {shlex.join(words)}"


def _sweep_agents(base: str, param: str, values: Sequence[float]) -> list[str]:
    if "," in base:
        raise ValueError(f"sweep-optvi sweeps one agent, got --agents {base!r}")
    return [f"{base}:{param}={value:g}" for value in values]


def _with_best(result: OnlineResult, markdown_path: str) -> OnlineResult:
    """Append which swept value has the highest mean normalized return over envs to the sweep's report."""
    means: dict[str, list[float]] = {}
    for row in result.rows:
        means.setdefault(row.agent, []).append(row.mean)
    if not means:
        return result
    n_envs = max(len(v) for v in means.values())
    complete = {agent: sum(v) / len(v) for agent, v in means.items() if len(v) == n_envs}
    best = max(complete, key=lambda agent: complete[agent])
    line = f"\n**Best over envs: `{best}`** (mean normalized return {complete[best]:.3f}).\n"
    with open(markdown_path, "a") as f:
        f.write(line)
    result.markdown += line
    result.best = best
    return result


def _run(args: argparse.Namespace, command: str) -> tuple[str, list]:
    """Run the chosen benchmark; return its markdown and its failed runs."""
    from icrl_agent.bench import offline, online, speed

    progress = False if getattr(args, "no_progress", False) else None
    if args.command == "online":
        result = online.run_online(args.envs, args.agents, args.seeds, args.episodes, args.workers, args.out,
                                   command, force=args.force, progress=progress)
        return result.markdown, result.errors
    if args.command == "sweep-optvi":
        result = online.run_online(
            args.envs, _sweep_agents(args.agents, args.param, args.c), args.seeds, args.episodes, args.workers,
            args.out, command, kind="sweep_optvi", title=f"OptimisticVI bonus sweep ({args.param})",
            force=args.force, progress=progress,
        )
        result = _with_best(result, result.folder + ".md")
        return result.markdown, result.errors
    if args.command == "offline":
        off = offline.run_offline(args.envs, args.agents, args.seeds, args.sizes, args.behaviours.split(","),
                                  args.workers, args.out, command, force=args.force, progress=progress)
        return off.markdown, off.errors
    timed = speed.run_speed(args.agents, args.sizes, args.steps, args.max_seconds, args.out, command,
                            threads=args.threads, force=args.force)
    return timed.markdown, timed.errors


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m icrl_agent.bench`` and the ``icrl-bench`` console script.

    :param argv: arguments (default: ``sys.argv[1:]``)
    :return: exit status: 0, 1 if some runs failed, 2 for bad arguments
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "paired":  # reads results, runs nothing: no results folder, no command to record
        from icrl_agent.bench.paired import compare

        try:
            _, markdown = compare(args.a, args.b, args.agent_a, args.agent_b, args.below)
        except ValueError as err:
            parser.error(str(err))
        print(markdown)
        return 0
    if args.command == "merge":  # runs nothing; its command names the sources
        from icrl_agent.bench.merge import merge_online

        try:
            merged = merge_online([tuple(t) for t in args.take], args.out, args.force)
        except ValueError as err:
            parser.error(str(err))
        print(merged.markdown)
        return 0
    command = canonical_command(parser, args)
    try:
        markdown, errors = _run(args, command)
    except (ValueError, AgentUnavailable) as err:  # a non-empty --out, a bad behaviour: no traceback needed
        parser.error(str(err))
    print(markdown)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
