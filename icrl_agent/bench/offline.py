"""The offline benchmark: agents ``fit`` a fixed dataset; score = exact normalized value of their greedy policy.

Datasets are rolled out in the env by a behaviour policy: ``uniform`` (random actions) or ``eps<e>``
(the optimal policy of the true model, per elapsed step, taking a uniformly random action with
probability ``e``), with a given number of transitions (the last episode is cut and marked truncated).
After ``fit``, the agent's greedy policy ``act(obs, deterministic=True)`` is read for every state of the
env and, for agents that plan per elapsed step, at every step (an ``[H, S, A]`` policy); its exact value
from the initial distribution is normalized like the online returns: 0 = random policy, 1 = optimal.
"""

from __future__ import annotations

import math
import os
import traceback
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from icrl_agent.bench import report
from icrl_agent.bench.agents import AgentSpec, parse_agents
from icrl_agent.bench.common import (
    EnvReference,
    cached_env,
    env_reference,
    exact_model,
    make_env,
    parse_envs,
    prepare_out,
    report_errors,
    run_tasks,
    short_env_name,
    timestamp,
)
from icrl_agent.bench.results import OfflineResult, OfflineRow, RunRecord
from icrl_agent.protocols import TabularPolicy
from icrl_agent.solvers import to_go_index

DEFAULT_SIZES = (200, 1000, 5000)
DEFAULT_BEHAVIOURS = ("uniform", "eps0.5", "eps0.1")
DEFAULT_AGENTS = "vilcb,vi"


def _discrete(space: gym.Space) -> gym.spaces.Discrete:
    if not isinstance(space, gym.spaces.Discrete):
        raise TypeError(f"the offline benchmark needs a Discrete action space, got {space!r}")
    return space


def _check_discrete_states(env: gym.Env) -> tuple[int, int]:
    model: Any = exact_model(env)
    if model is None:
        raise ValueError(
            f"the offline benchmark scores the greedy policy exactly: it needs an env with an exact model "
            f"(as every icrl/ env and Gymnasium's toy-text envs), which {env.spec.id if env.spec else env} "
            "does not expose; use the online benchmark for it"
        )
    space = env.observation_space
    n_states = model.transition_matrix()[0].shape[0]
    if not isinstance(space, gym.spaces.Discrete) or int(space.n) != n_states:
        raise TypeError(
            f"the offline benchmark reads observations as the model's state ids: it needs a Discrete({n_states}) "
            f"observation space, got {space!r}"
        )
    return int(space.start), n_states


def behaviour_policy(env: gym.Env, behaviour: str) -> np.ndarray:
    """Action probabilities ``[H, S, A]`` of a behaviour policy over the env's model.

    :param env: a registered benchmark env
    :param behaviour: ``"uniform"`` or ``"eps<e>"`` (e.g. ``"eps0.1"``: optimal, random with probability e)
    :return: float64 ``[H, S, A]``
    :raises ValueError: for an unknown behaviour
    """
    from icrl_agent import solvers

    model: Any = exact_model(env)
    P, R, terminal = model.transition_matrix()
    horizon, n_actions = int(model.horizon), P.shape[1]
    uniform = np.full((horizon, P.shape[0], n_actions), 1.0 / n_actions)
    if behaviour == "uniform":
        return uniform
    if behaviour.startswith("eps"):
        try:
            eps = float(behaviour[3:])
        except ValueError:
            eps = math.nan
        if 0.0 <= eps <= 1.0:
            greedy = solvers.greedy_policy(solvers.finite_horizon_q(P, R, horizon, terminal)).numpy()
            return (1.0 - eps) * greedy + eps * uniform
    raise ValueError(
        f"unknown behaviour {behaviour!r}: use 'uniform' or 'eps<e>' with 0 <= e <= 1, e.g. 'eps0.1'"
    )


def collect_dataset(env: gym.Env, policy: np.ndarray, n_transitions: int, seed: int) -> dict[str, np.ndarray]:
    """Roll out ``policy`` in ``env`` for exactly ``n_transitions`` transitions.

    :param env: the env (Discrete observations = state ids, shifted by the space's ``start``)
    :param policy: ``[H, S, A]`` action probabilities indexed by steps to go (``policy[H - 1 - t]`` at step ``t``)
    :param n_transitions: dataset size
    :param seed: seeds the env's first reset and the action sampling
    :return: a dataset dict (``observations, actions, rewards, next_observations, terminations, truncations``)
    """
    start, _ = _check_discrete_states(env)
    action_start = int(_discrete(env.action_space).start)
    horizon, n_actions = policy.shape[0], policy.shape[-1]
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {
        k: []
        for k in ("observations", "actions", "rewards", "next_observations", "terminations", "truncations")
    }
    obs, _ = env.reset(seed=seed)
    step = 0
    for _ in range(n_transitions):
        action = action_start + int(rng.choice(n_actions, p=policy[to_go_index(horizon, step), int(obs) - start]))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        step += 1
        truncated = bool(truncated) or (step >= horizon and not terminated)
        for key, value in zip(
            rows, (obs, action, float(reward), next_obs, bool(terminated), truncated), strict=True
        ):
            rows[key].append(value)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
            step = 0
    rows["truncations"][-1] = not rows["terminations"][-1]
    return {key: np.asarray(values) for key, values in rows.items()}


def greedy_policy_table(agent: TabularPolicy, env: gym.Env, horizon: int) -> np.ndarray:
    """The agent's deterministic policy over every state of the env: ``[H, S, A]`` one-hot, by steps to go.

    Agents with ``policy(step=..., deterministic=True)`` (every :class:`~icrl_agent.base.TabularAgent`) are
    read at each step; others through ``act(obs, deterministic=True)``, taken as stationary.

    :param agent: a fitted agent
    :param env: the env whose states to cover
    :param horizon: steps per episode
    :return: float64 ``[H, S, A]``
    """
    start, n_states = _check_discrete_states(env)
    actions = _discrete(env.action_space)
    n_actions, action_start = int(actions.n), int(actions.start)
    table = np.zeros((horizon, n_states, n_actions))
    stats = getattr(agent, "stats", None)
    if stats is not None and hasattr(agent, "policy"):
        ids = [stats.state_id(start + s) for s in range(n_states)]
        for t in range(horizon):
            known = agent.policy(step=t, deterministic=True)
            k = to_go_index(horizon, t)
            for s, sid in enumerate(ids):
                table[k, s, 0 if sid is None else int(np.argmax(known[sid]))] = 1.0
        return table
    for s in range(n_states):
        table[:, s, int(agent.act(start + s, deterministic=True)) - action_start] = 1.0
    return table


def offline_run(task: dict[str, Any]) -> dict[str, Any]:
    """Fit each agent on one dataset and score its greedy policy exactly (runs in a worker process).

    The dataset is rolled out once and shared by the agents (a paired comparison, and rolling out is
    the dear part for envs that step a real simulator). An agent that raises is reported with the
    setting and does not stop the others.

    :param task: ``env``, ``seed``, ``size``, ``behaviour`` and the agents' ``specs``
    :return: ``{"results": [...]}``: per agent, the setting plus ``value`` (expected return of its greedy
        policy) or ``error`` (the traceback)
    """
    env = cached_env(task["env"])
    dataset = collect_dataset(env, behaviour_policy(env, task["behaviour"]), task["size"], task["seed"])
    setting = {key: task[key] for key in ("env", "seed", "size", "behaviour")}
    results = []
    for spec in task["specs"]:
        try:
            results.append(
                {**setting, "agent": spec.name, "value": _fit_and_score(spec, env, dataset, task["seed"])}
            )
        except Exception:
            results.append({**setting, "agent": spec.name, "error": traceback.format_exc()})
    return {"results": results}


def _fit_and_score(spec: AgentSpec, env: gym.Env, dataset: dict[str, np.ndarray], seed: int) -> float:
    from icrl_agent import solvers

    model: Any = exact_model(env)
    agent: Any = spec.build(env, seed)  # an SB3 agent has no fit: the run fails, named
    agent.fit(dataset)
    return solvers.policy_value(model, greedy_policy_table(agent, env, int(model.horizon)))


def _flatten(outcomes: Sequence[RunRecord], specs: Sequence[AgentSpec]) -> list[RunRecord]:
    """Per-agent records from per-dataset outcomes (a failed dataset fails every agent on it)."""
    runs: list[RunRecord] = []
    for outcome in outcomes:
        if "results" in outcome:
            runs += outcome["results"]
        else:
            runs += [{**outcome, "agent": spec.name} for spec in specs]
    return runs


def summarize(runs: Sequence[RunRecord], refs: dict[str, EnvReference]) -> list[OfflineRow]:
    """Mean normalized greedy value with a 95% bootstrap CI over seeds, per (env, behaviour, size, agent)."""
    groups: dict[tuple[str, str, int, str], list[float]] = {}
    for run in runs:
        if "value" in run:
            ref = refs[run["env"]]
            key = (run["env"], run["behaviour"], run["size"], run["agent"])
            groups.setdefault(key, []).append(float(ref.score([run["value"]])[0]))
    rows = []
    for (env_id, behaviour, size, agent), values in groups.items():
        low, high = report.bootstrap_ci(values)
        rows.append(OfflineRow(env_id, behaviour, size, agent, len(values), float(np.mean(values)), low, high))
    return rows


def _short(env_id: str) -> str:
    return short_env_name(env_id)


def _averages_table(rows: Sequence[OfflineRow], agents: Sequence[str]) -> str:
    """Mean over envs per (behaviour, size), then the grand mean, per agent."""
    settings: list[tuple[str, Any]] = sorted({(r.behaviour, r.size) for r in rows})
    table = []
    for behaviour, size in [*settings, ("all", "all")]:
        cells = []
        for agent in agents:
            means = [
                r.mean
                for r in rows
                if r.agent == agent and behaviour in ("all", r.behaviour) and size in ("all", r.size)
            ]
            cells.append(f"{np.mean(means):.3f}" if means else "n/a")
        table.append([behaviour, size, *cells])
    return report.markdown_table(["behaviour", "transitions", *agents], table)


def render_markdown(result: OfflineResult) -> str:
    """The markdown report: the command, the averages over envs, then one row per (env, behaviour, size)."""
    agents = list(result.agents)
    by_key = {(r.env, r.behaviour, r.size, r.agent): r for r in result.rows}
    settings = sorted({k[:3] for k in by_key}, key=lambda k: (k[0], k[1], k[2]))
    table_rows = []
    for env_id, behaviour, size in settings:
        cells = []
        for agent in agents:
            row = by_key.get((env_id, behaviour, size, agent))
            cells.append("failed" if row is None else report.format_ci(row.mean, row.ci_low, row.ci_high))
        table_rows.append([_short(env_id), behaviour, size, *cells])
    parts = [
        "# Offline benchmark",
        f"Reproduce with:\n\n    {result.command}\n",
        f"Run {result.date or timestamp()}. Normalized exact value (V - V_random) / (V_opt - V_random) of the greedy "
        "policy after `fit` on a dataset rolled out by the behaviour policy (the agents fit the same datasets); "
        "mean over seeds with a 95% bootstrap CI.\n",
        "## Mean over envs\n",
        _averages_table(result.rows, agents),
        "\n## Per env\n",
        report.markdown_table(["env", "behaviour", "transitions", *agents], table_rows),
    ]
    if result.errors:
        parts.append("\n## Failed runs\n")
        parts += [
            f"- {e.get('agent')} on {e.get('env')} ({e.get('behaviour')}, {e.get('size')}), seed "
            f"{e.get('seed')}: {e['error'].strip().splitlines()[-1]}"
            for e in result.errors
        ]
    return "\n".join(parts) + "\n"


def _plot(result: OfflineResult, env_ids: Sequence[str], sizes: Sequence[int], behaviours: Sequence[str]) -> None:
    for behaviour in behaviours:
        groups = [f"{_short(e)}/{n}" for e in env_ids for n in sizes]
        by_key = {(r.env, r.size, r.agent): r for r in result.rows if r.behaviour == behaviour}
        series = {
            a: [
                (by_key[(e, n, a)].mean, by_key[(e, n, a)].ci_low, by_key[(e, n, a)].ci_high)
                if (e, n, a) in by_key
                else (math.nan,) * 3
                for e in env_ids
                for n in sizes
            ]
            for a in result.agents
        }
        report.plot_bars(
            os.path.join(result.folder, f"offline_{behaviour}.png"),
            f"offline, behaviour {behaviour}: normalized value (1 = optimal, 0 = random)",
            groups,
            series,
        )


def _check_settings(env_ids: Sequence[str], sizes: Sequence[int], behaviours: Sequence[str]) -> None:
    """Reject bad sizes, behaviours and model-less envs before any work."""
    if any(int(size) < 1 for size in sizes):
        raise ValueError(f"dataset sizes must be >= 1, got {list(sizes)}")
    for i, env_id in enumerate(env_ids):
        env = make_env(env_id)
        try:
            _check_discrete_states(env)
            for behaviour in behaviours if i == 0 else ():
                behaviour_policy(env, behaviour)
        finally:
            env.close()


def run_offline(
    envs: str | Sequence[str] = "all",
    agents: str | Sequence[str] = DEFAULT_AGENTS,
    seeds: int = 10,
    sizes: Sequence[int] = DEFAULT_SIZES,
    behaviours: Sequence[str] = DEFAULT_BEHAVIOURS,
    workers: int = 2,
    out: str | None = None,
    command: str | None = None,
    force: bool = False,
    progress: bool | None = None,
) -> OfflineResult:
    """Run the offline benchmark; write ``out/offline/{results.json, summary.csv, *.png}`` and ``out/offline.md``.

    :param envs: ``"all"`` or comma-separated env ids (envs with an exact model: the value is computed exactly)
    :param agents: comma-separated agent names (they must implement ``fit``)
    :param seeds: datasets per setting (seed ``i`` draws dataset ``i``)
    :param sizes: dataset sizes in transitions
    :param behaviours: behaviour policies (``uniform``, ``eps<e>``)
    :param workers: parallel processes
    :param out: results folder; ``None``: a new ``runs/bench/offline-<time>``
    :param command: the command line to print above the table
    :param force: write into ``out`` even if it already holds files
    :param progress: progress bar (``None``: only when stderr is a terminal)
    :return: the result: summary ``rows``, ``errors``, the ``markdown`` text and the results ``folder``
    """
    specs = parse_agents(agents)
    env_ids = parse_envs(envs)
    for spec in specs:
        spec.resolve()
    _check_settings(env_ids, sizes, behaviours)
    refs = {env_id: env_reference(env_id) for env_id in env_ids}
    out = prepare_out(out, "offline", force)
    tasks: list[dict[str, Any]] = [
        {"env": e, "seed": seed, "size": int(size), "behaviour": b, "specs": specs}
        for e in env_ids
        for b in behaviours
        for size in sizes
        for seed in range(seeds)
    ]
    tasks.sort(key=lambda t: -t["size"] * (refs[t["env"]].n_states or 1))
    if command is None:
        command = (
            f"python -m icrl_agent.bench offline --envs {','.join(env_ids)} --agents "
            f"{','.join(s.name for s in specs)} --seeds {seeds} --sizes {','.join(map(str, sizes))} "
            f"--behaviours {','.join(behaviours)} --workers {workers} --out {out}"
        )
    runs = _flatten(run_tasks(offline_run, tasks, workers, desc="offline", progress=progress), specs)
    agents_info = {s.name: {"target": s.target, "params": s.params, "hints": s.hints} for s in specs}
    result = OfflineResult(command, timestamp(), refs, agents_info, summarize(runs, refs), runs, report_errors(runs),
                           folder=os.path.join(out, "offline"))
    result.markdown = render_markdown(result)
    report.write_json(os.path.join(result.folder, "results.json"), result.to_json())
    report.write_csv(os.path.join(result.folder, "summary.csv"), [row.to_json() for row in result.rows])
    _plot(result, env_ids, sizes, behaviours)
    with open(os.path.join(out, "offline.md"), "w") as f:
        f.write(result.markdown)
    return result
