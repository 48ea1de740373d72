"""The online benchmark: agents learn each env from scratch; score = their mean normalized online return.

Per env, agent and seed, the agent plays ``E`` episodes while learning (SB3 agents: ``E`` training
episodes). Every episode's return ``R`` is normalized as ``(R - R_random) / (R_opt - R_random)`` with the
exact optimal and random expected returns of the env's model over its horizon, so 0 is the random
policy and 1 the optimum; on an env without an exact model (a plain Gymnasium id such as FrozenLake-v1)
the raw return is reported instead, and the tables and plots say so. Reported per env and agent: the mean over episodes, averaged over seeds with a
95% bootstrap CI; the median over seeds of the episode at which the 10-episode moving average first
reaches 0.9; the ratio to the best classical baseline (Q-learning, UCB-VI, optimistic VI, PSRL) on that
env; learning curves.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from icrl_agent.bench import report
from icrl_agent.bench.agents import AgentSpec, parse_agents
from icrl_agent.bench.common import (
    EnvReference,
    cached_env,
    env_reference,
    parse_envs,
    prepare_out,
    report_errors,
    run_episodes,
    run_tasks,
    short_env_name,
    timestamp,
)
from icrl_agent.bench.results import OnlineResult, OnlineRow, RunRecord

# Episodes per env when --episodes is not given. Enough for the best classical agents to get near the
# optimum on most envs, small enough that 8 agents x 13 envs x 10 seeds run in ~30 min with 2 workers
# on 2 shared cores. The SB3 agents take ~2/3 of that time (a training step costs ~0.5 ms against ~30 us
# for a tabular act+observe), so the long-horizon envs (Taxi, CliffWalking, the two FourRooms, 100-200
# steps an episode early on) get the smallest budgets.
DEFAULT_EPISODES: dict[str, int] = {
    "icrl/RiverSwim-v0": 200,
    "icrl/SixArms-v0": 200,
    "icrl/Chain-v0": 100,
    "icrl/DeepSea-v0": 200,
    "icrl/GridWorld-Open-v0": 100,
    "icrl/GridWorld-FourRooms-v0": 80,
    "icrl/FrozenLake4x4-v0": 300,
    "icrl/FrozenLake8x8-v0": 150,
    "icrl/CliffWalking-v0": 50,
    "icrl/Taxi-v0": 60,
    "icrl/MiniGrid-Empty-6x6-v0": 100,
    "icrl/MiniGrid-DoorKey-5x5-v0": 100,
    "icrl/MiniGrid-FourRooms-v0": 60,
}
FALLBACK_EPISODES = 100
DEFAULT_AGENTS = "random,qlearning,ucbvi,optvi,psrl,ppo,dqn,a2c"
THRESHOLD = 0.9
WINDOW = 10


def episode_budget(env_id: str, episodes: int | None = None) -> int:
    """Episodes of the online benchmark on ``env_id``: ``episodes`` if given, else the per-env default."""
    return int(episodes) if episodes is not None else DEFAULT_EPISODES.get(env_id, FALLBACK_EPISODES)


def online_run(task: dict[str, Any]) -> RunRecord:
    """One agent on one env for one seed (runs in a worker process).

    :param task: ``env``, ``agent``, ``seed``, ``episodes``, ``horizon`` and the agent's ``spec``
    :return: the task's identity plus ``returns``, one per episode
    """
    spec: AgentSpec = task["spec"]
    env = cached_env(task["env"])
    agent = spec.build(env, task["seed"])
    if spec.kind == "sb3":
        returns = agent.learn(total_episodes=task["episodes"])  # type: ignore[union-attr]
    else:
        returns = run_episodes(agent, env, task["episodes"], task["seed"], task["horizon"])  # type: ignore[arg-type]
    if len(returns) != task["episodes"]:
        raise RuntimeError(
            f"{spec.name} returned {len(returns)} episode returns, expected {task['episodes']}"
        )
    return {
        "env": task["env"],
        "agent": spec.name,
        "seed": task["seed"],
        "returns": [float(r) for r in returns],
    }


def _tasks(
    refs: dict[str, EnvReference], specs: list[AgentSpec], seeds: int, budgets: dict[str, int]
) -> list[dict]:
    tasks = [
        {
            "env": env_id,
            "agent": spec.name,
            "seed": seed,
            "episodes": budgets[env_id],
            "horizon": ref.horizon,
            "spec": spec,
        }
        for env_id, ref in refs.items()
        for spec in specs
        for seed in range(seeds)
    ]
    # Dearest first, so that no long run starts last while the other worker idles.
    return sorted(tasks, key=lambda t: -t["episodes"] * t["horizon"] * (30 if t["spec"].kind == "sb3" else 1))


Curves = dict[str, dict[str, np.ndarray]]  # env -> agent -> scores [n_seeds, n_episodes]


def learning_curves(runs: Sequence[RunRecord], refs: dict[str, EnvReference], agents: Sequence[str]) -> Curves:
    """Per env and agent, each finished run's per-episode score (normalized where the env has a model).

    :param runs: results of :func:`online_run` (failed runs, with ``error``, are skipped)
    :param refs: reference values per env
    :param agents: agent names, in order
    :return: ``curves[env][agent]`` = ``[n_seeds, n_episodes]``, seeds in order
    """
    curves: Curves = {}
    for env_id, ref in refs.items():
        for name in agents:
            done = sorted(
                (r for r in runs if r.get("env") == env_id and r.get("agent") == name and "returns" in r),
                key=lambda r: r["seed"],
            )
            if done:
                curves.setdefault(env_id, {})[name] = np.stack([ref.score(r["returns"]) for r in done])
    return curves


def summarize(
    runs: Sequence[RunRecord], refs: dict[str, EnvReference], specs: Sequence[AgentSpec]
) -> tuple[list[OnlineRow], Curves]:
    """Per (env, agent) statistics and learning curves from raw runs.

    :param runs: results of :func:`online_run` (failed runs, with ``error``, are skipped)
    :param refs: reference values per env
    :param specs: the agents, for the classical flag
    :return: ``(rows, curves)``: one summary row per (env, agent) with at least one run, and
        ``curves[env][agent]`` = normalized (or raw) returns ``[n_seeds, n_episodes]``
    """
    curves = learning_curves(runs, refs, [s.name for s in specs])
    classical_names = {s.name for s in specs if s.classical}
    rows = []
    for env_id, by_agent in curves.items():
        normalized = refs[env_id].normalized
        classical = [curve.mean() for name, curve in by_agent.items() if name in classical_names]
        best = max(classical) if classical else math.nan
        for name, curve in by_agent.items():
            per_seed = curve.mean(axis=1)
            low, high = report.bootstrap_ci(per_seed)
            reach = [report.episodes_to_reach(c, THRESHOLD, WINDOW) for c in curve] if normalized else []
            rows.append(
                OnlineRow(
                    env=env_id,
                    agent=name,
                    seeds=int(curve.shape[0]),
                    episodes=int(curve.shape[1]),
                    mean=float(per_seed.mean()),
                    ci_low=low,
                    ci_high=high,
                    episodes_to_threshold=report.median_episodes(reach),
                    seeds_reaching=sum(r is not None for r in reach),
                    ratio_to_best_classical=float(per_seed.mean() / best) if best > 0.05 else math.nan,
                    normalized=normalized,
                )
            )
    return rows, curves


def _file_safe(label: str) -> str:
    """A label as a portable file name part (``DeepSea:size=20`` -> ``DeepSea_size-20``; no ``:`` on Windows)."""
    return label.replace(":", "_").replace("=", "-")


def _short(env_id: str) -> str:
    return short_env_name(env_id)


def _label(ref: EnvReference) -> str:
    return _short(ref.env_id) if ref.normalized else f"{_short(ref.env_id)} (raw return)"


def _cell(rows: dict[tuple[str, str], OnlineRow], env_id: str, agent: str, fmt: str) -> str:
    row = rows.get((env_id, agent))
    if row is None:
        return "failed"
    if fmt == "mean":
        return report.format_ci(row.mean, row.ci_low, row.ci_high)
    if fmt == "reach":
        if not row.normalized:
            return "n/a"
        value = row.episodes_to_threshold
        return report.NOT_REACHED if value is None else f"{value:g} ({row.seeds_reaching}/{row.seeds})"
    ratio = row.ratio_to_best_classical
    return "n/a" if not math.isfinite(ratio) else f"{ratio:.2f}"


def _mean_over_envs(curves: Curves, refs: dict[str, EnvReference], agent: str) -> str:
    normalized = {e: by_agent for e, by_agent in curves.items() if refs[e].normalized}
    per_env = [by_agent[agent].mean(axis=1) for by_agent in normalized.values() if agent in by_agent]
    if not per_env or len(per_env) != len(normalized) or len({len(p) for p in per_env}) != 1:
        return "n/a"
    per_seed = np.mean(per_env, axis=0)  # seed i's average over envs
    return report.format_ci(float(per_seed.mean()), *report.bootstrap_ci(per_seed))


def render_markdown(result: OnlineResult, specs: Sequence[AgentSpec] | None = None, title: str = "") -> str:
    """The markdown report: the command, the env table, then the three result tables and any failures.

    :param result: the run (fresh, or read back with :meth:`OnlineResult.load`)
    :param specs: the agents (default: those named in ``result.agents``, hints as recorded)
    :param title: the report's title (default: from ``result.kind``)
    :return: the report
    """
    refs = result.envs
    agents = list(result.agents)
    by_key = {(r.env, r.agent): r for r in result.rows}
    curves = learning_curves(result.runs, refs, agents)
    hints = {name: bool(info.get("hints")) for name, info in result.agents.items()}
    if specs is not None:
        hints = {s.name: s.hints for s in specs}
    raw = [e for e, r in refs.items() if not r.normalized]
    scale = (
        "Normalized return: (R - R_random) / (R_opt - R_random), exact values from each env's model over its "
        "horizon"
        + (f"; raw episode return on {', '.join(map(_short, raw))} (no exact model)" if raw else "")
    )
    mean_label = "**mean over envs**" if not raw else "**mean over envs with an exact model**"
    parts = [
        f"# {title or _TITLES.get(result.kind, result.kind)}",
        f"Reproduce with:\n\n    {result.command}\n",
        f"Run {result.date or timestamp()}. {scale}; mean over all episodes of a run, then over seeds, with a 95% "
        "bootstrap CI over seeds. Hints: "
        + "; ".join(f"{name}: {'horizon + reward_max' if told else 'none'}" for name, told in hints.items())
        + ".",
        "\n## Envs and budgets\n",
        report.markdown_table(
            ["env", "S", "A", "horizon", "episodes", "R_opt", "R_random"],
            [
                [_short(e), "?" if r.n_states is None else r.n_states, r.n_actions, r.horizon, result.budgets[e],
                 "n/a" if r.optimal is None else f"{r.optimal:.4g}", "n/a" if r.random is None else f"{r.random:.4g}"]
                for e, r in refs.items()
            ],
        ),
        "\n## Mean normalized online return [95% CI]\n",
        report.markdown_table(
            ["env", *agents],
            [[_label(r), *(_cell(by_key, e, a, "mean") for a in agents)] for e, r in refs.items()]
            + [[mean_label, *(_mean_over_envs(curves, refs, a) for a in agents)]],
        ),
        f"\n## Episodes until the {WINDOW}-episode moving average reaches {THRESHOLD} (median over seeds; seeds reaching)\n",
        report.markdown_table(
            ["env", *agents], [[_label(r), *(_cell(by_key, e, a, "reach") for a in agents)] for e, r in refs.items()]
        ),
        "\n## Ratio to the best classical baseline on each env (Q-learning, UCB-VI, optimistic VI, PSRL)\n",
        report.markdown_table(
            ["env", *agents],
            [[_label(r), *(_cell(by_key, e, a, "ratio") for a in agents)] for e, r in refs.items()]
            + [["**median**", *(_median_ratio(result.rows, a) for a in agents)]],
        ),
    ]
    if result.errors:
        parts.append("\n## Failed runs\n")
        parts += [
            f"- {e.get('agent')} on {e.get('env')}, seed {e.get('seed')}: "
            f"{e['error'].strip().splitlines()[-1]}"
            for e in result.errors
        ]
    return "\n".join(parts) + "\n"


_TITLES = {"online": "Online benchmark", "sweep_optvi": "OptimisticVI bonus sweep (c)"}


def _median_ratio(rows: Sequence[OnlineRow], agent: str) -> str:
    ratios = [r.ratio_to_best_classical for r in rows if r.agent == agent]
    ratios = [r for r in ratios if math.isfinite(r)]
    return f"{float(np.median(ratios)):.2f}" if ratios else "n/a"


def write_outputs(result: OnlineResult, out: str, specs: Sequence[AgentSpec], title: str) -> OnlineResult:
    """JSON, CSV, PNG plots under ``out/<kind>/`` and the markdown report at ``out/<kind>.md``.

    :param result: the run, without its markdown yet
    :param out: the results folder
    :param specs: the agents
    :param title: the report's title
    :return: the result with ``markdown`` and ``folder`` filled in
    """
    folder = os.path.join(out, result.kind)
    result.markdown = render_markdown(result, specs, title)
    result.folder = folder
    report.write_json(os.path.join(folder, "results.json"), result.to_json())
    report.write_csv(os.path.join(folder, "summary.csv"), [row.to_json() for row in result.rows])
    if result.errors:
        report.write_csv(os.path.join(folder, "errors.csv"), result.errors)
    curves = learning_curves(result.runs, result.envs, [s.name for s in specs])
    for env_id, by_agent in curves.items():
        report.plot_curves(
            os.path.join(folder, f"curves_{_file_safe(_short(env_id))}.png"), _short(env_id), by_agent, window=WINDOW,
            ylabel="normalized return (1 = optimal, 0 = random)" if result.envs[env_id].normalized
            else "raw episode return (no exact model)",
        )
    _plot_means(result, specs, folder, title)
    with open(os.path.join(out, f"{result.kind}.md"), "w") as f:
        f.write(result.markdown)
    return result


def _plot_means(result: OnlineResult, specs: Sequence[AgentSpec], folder: str, title: str) -> None:
    by_key = {(r.env, r.agent): r for r in result.rows}
    envs = [e for e, ref in result.envs.items() if ref.normalized]  # raw returns do not share a scale
    if not envs:
        return
    series = {
        s.name: [
            (by_key[(e, s.name)].mean, by_key[(e, s.name)].ci_low, by_key[(e, s.name)].ci_high)
            if (e, s.name) in by_key
            else (math.nan,) * 3
            for e in envs
        ]
        for s in specs
    }
    report.plot_bars(os.path.join(folder, "mean_normalized_return.png"), title, [_short(e) for e in envs], series)


def run_online(
    envs: str | Sequence[str] = "all",
    agents: str | Sequence[str] = DEFAULT_AGENTS,
    seeds: int = 10,
    episodes: int | None = None,
    workers: int = 2,
    out: str | None = None,
    command: str | None = None,
    kind: str = "online",
    title: str = "Online benchmark",
    force: bool = False,
    progress: bool | None = None,
) -> OnlineResult:
    """Run the online benchmark and write its results; print nothing but the progress bar and failures.

    :param envs: ``"all"`` or comma-separated env ids (short names like ``RiverSwim``, or any Gymnasium id
        with finite spaces such as ``FrozenLake-v1``)
    :param agents: comma-separated agent names (see :mod:`icrl_agent.bench.agents`)
    :param seeds: seeds per (env, agent): 0 .. seeds - 1
    :param episodes: episodes per run for every env; ``None`` uses the per-env budget table
    :param workers: parallel processes
    :param out: results folder (``out/<kind>/`` and ``out/<kind>.md``); ``None``: a new ``runs/bench/<kind>-<time>``
    :param command: the command line to print above the table (default: the equivalent CLI call)
    :param kind: name of the results subfolder and markdown file
    :param title: title of the report
    :param force: write into ``out`` even if it already holds files (committed results are regenerated only so)
    :param progress: progress bar (``None``: only when stderr is a terminal)
    :return: the result: summary ``rows``, ``errors``, the ``markdown`` text and the results ``folder``
    """
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if episodes is not None and episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    specs = parse_agents(agents)
    env_ids = parse_envs(envs)
    for spec in specs:
        spec.resolve()  # fail before any work if an agent is not installed
    refs = {env_id: env_reference(env_id) for env_id in env_ids}
    out = prepare_out(out, kind, force)
    budgets = {env_id: episode_budget(env_id, episodes) for env_id in env_ids}
    if command is None:
        command = (
            f"python -m icrl_agent.bench online --envs {','.join(env_ids)} --agents {','.join(s.name for s in specs)} "
            f"--seeds {seeds}"
            + (f" --episodes {episodes}" if episodes else "")
            + f" --workers {workers} --out {out}"
        )
    runs = run_tasks(online_run, _tasks(refs, specs, seeds, budgets), workers, desc=kind, progress=progress)
    rows, _ = summarize(runs, refs, specs)
    agents_info = {s.name: {"target": s.target, "kind": s.kind, "hints": s.hints, "params": s.params} for s in specs}
    result = OnlineResult(kind, command, timestamp(), refs, budgets, agents_info, rows, runs, report_errors(runs))
    return write_outputs(result, out, specs, title)
