"""Online evaluation on MDPs drawn from the pretraining prior, held-out families included.

    python -m icrl_agent.pretraining evaluate prior --families tree,loop --agents icrl,optvi-blind,optvi --mdps 16

Each drawn MDP becomes a :class:`~icrl_agent.envs.tabular.TabularEnv` (expected rewards, no noise) with
a time limit at its horizon, and every agent learns it online from scratch, exactly as in the online
benchmark (the bench's agents and episode loop). The prior (sizes, horizons, reward scales, held-out
families) is the one the evaluated weights were trained with, read from their model card, so
"held-out" means held-out families, not other sizes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from icrl_agent.bench.agents import AgentSpec, parse_agents
from icrl_agent.bench.common import prepare_out, run_episodes, run_tasks
from icrl_agent.bench.report import bootstrap_ci, normalize
from icrl_agent.pretraining.config import PretrainConfig
from icrl_agent.pretraining.prior import PriorSpec

BLIND_SUFFIX = "-blind"
# prior.json keeps every run's score with its MDP's optimum and random value: paired comparisons of two agents
# on the same MDPs, and the MDPs where random play is nearly optimal (their normalized score is noisy)
RUN_KEYS = ("family", "index", "seed", "agent", "score", "optimal", "random")
RUNS_DIR = "runs/evaluate"  # default home of new diagnostics runs (git-ignored)


def config_of(weights: str | Path | None) -> PretrainConfig:
    """The run configuration recorded in a checkpoint's model card (shipped weights by default).

    Cards written before the config had sections (icrl-v1's) are read through
    :func:`~icrl_agent.pretraining.config.nest_flat_config`.
    """
    from icrl_agent.agent import shipped_weights_path
    from icrl_agent.checkpoint import checkpoint_paths
    from icrl_agent.pretraining.config import config_from_dict, nest_flat_config

    _, card_path = checkpoint_paths(weights or shipped_weights_path())
    return config_from_dict(nest_flat_config(json.loads(Path(card_path).read_text())["config"]))


def prior_spec_of(weights: str | None) -> PriorSpec:
    """The prior the weights were trained with (shipped weights by default), from their model card."""
    return config_of(weights).prior


def prior_spec_with(weights: str | None, overrides: dict[str, Any]) -> PriorSpec:
    """The weights' prior with some of its keys replaced, validated as a run config's ``prior:`` section.

    :param weights: checkpoint whose prior is the base (shipped weights by default)
    :param overrides: ``PriorSpec`` keys and values (``{"arms_max_stay": 3}``); an unknown key or an
        out-of-range value raises ``ValueError`` naming it
    """
    from icrl_agent.pretraining.config import config_from_dict

    values = config_of(weights).to_dict()
    values["prior"] = {**values["prior"], **overrides}
    return config_from_dict(values).prior


def prior_env(
    family: str, index: int, seed: int, weights: str | None, *, prior: PriorSpec | None = None,
    horizon: int | None = None,
) -> gym.Env:
    """The ``index``-th MDP of ``family`` for ``seed``, as a time-limited Gymnasium env.

    :param prior: the prior to draw from (default: the one ``weights`` were trained with)
    :param horizon: episode length replacing the drawn MDP's (default: the drawn one)
    """
    from icrl_agent.envs.tabular import TabularEnv
    from icrl_agent.pretraining.prior import sample_mdps

    spec = prior if prior is not None else prior_spec_of(weights)
    generator = torch.Generator().manual_seed(seed * 100_003 + index)
    mdp = sample_mdps(1, {family: 1.0}, spec, generator)
    S, A = int(mdp.state_mask[0].sum()), int(mdp.action_mask[0].sum())
    P = mdp.P[0, :S, :A, :S].double().numpy()
    P = P / P.sum(-1, keepdims=True)
    initial = mdp.initial[0, :S].double().numpy()
    horizon = int(mdp.horizon[0]) if horizon is None else horizon
    env = TabularEnv(
        P, mdp.R[0, :S, :A].double().numpy(), mdp.terminal[0, :S].numpy(), initial / initial.sum(), horizon,
    )
    return gym.wrappers.TimeLimit(env, max_episode_steps=horizon)


def resolve_specs(names: str, weights: str | None) -> list[AgentSpec]:
    """Agents by name; ``<name>-blind`` is a classical agent told nothing (no horizon, no reward scale).

    ``weights`` (the checkpoint whose prior is sampled) goes to every ``icrl`` agent not given its own
    (``icrl:weights=PATH`` compares other weights on the same MDPs)."""
    specs = []
    for name in names.split(","):
        blind = name.endswith(BLIND_SUFFIX)
        spec = parse_agents(name.removesuffix(BLIND_SUFFIX))[0]
        if blind:
            spec = dataclasses.replace(spec, name=name, hints=False)
        if spec.target == "icrl_agent:Agent" and weights and "weights" not in spec.params:
            spec = dataclasses.replace(spec, params={**spec.params, "weights": weights})
        specs.append(spec)
    return specs


def prior_run(task: dict[str, Any]) -> dict[str, Any]:
    """One agent on one prior MDP (runs in a worker process)."""
    from icrl_agent.solvers import optimal_value, random_value

    env = prior_env(task["family"], task["index"], task["seed"], task["weights"], prior=task.get("prior"),
                    horizon=task.get("horizon"))
    model: Any = env.unwrapped
    optimal, random = optimal_value(model), random_value(model)
    identity = {k: task[k] for k in ("family", "index", "seed", "agent")}
    identity |= {"optimal": float(optimal), "random": float(random)}
    if not optimal - random > 1e-9 * max(1.0, abs(optimal)):
        return identity | {"score": float("nan")}  # every policy is as good as random: nothing to learn
    agent = task["spec"].build(env, task["seed"])
    returns = run_episodes(agent, env, task["episodes"], task["seed"], model.horizon)
    return identity | {"score": float(normalize(returns, optimal, random).mean())}


def run_prior(
    families: Sequence[str] | None,
    agents: str,
    n_mdps: int,
    episodes: int,
    seed: int = 0,
    workers: int = 2,
    weights: str | None = None,
    out_dir: str | Path | None = None,
    command: str = "",
    force: bool = False,
    progress: bool | None = None,
    prior_overrides: dict[str, Any] | None = None,
    horizon: int | None = None,
    min_gap: float = 0.0,
) -> dict[str, Any]:
    """Mean normalized online return of each agent on ``n_mdps`` MDPs of each family.

    :param families: prior families (default: the held-out ones of the weights)
    :param agents: comma-separated agent names; ``optvi-blind`` etc. are told nothing
    :param n_mdps: MDPs per family
    :param episodes: online episodes per MDP
    :param seed: seed of the MDP draws and the agents
    :param workers: worker processes
    :param weights: checkpoint of the ``icrl`` agent (default: the shipped weights)
    :param out_dir: where ``prior.json`` and ``prior.md`` go (``None``: a new ``runs/evaluate/prior-<time>``;
        a non-empty folder only with ``force``)
    :param command: the command line, written above the table
    :param force: write into a non-empty ``out_dir``
    :param progress: progress bar (``None``: only when stderr is a terminal)
    :param prior_overrides: prior keys replaced before drawing (see :func:`prior_spec_with`): the same
        families under other settings, e.g. ``{"arms_max_stay": 5}``
    :param horizon: episode length of every drawn MDP instead of its family's (``None``: the family's)
    :param min_gap: leave out of the means (and of the paired table) an MDP where random play comes within this
        share of the optimum (see :func:`ill_conditioned`): its normalized score swings with return noise. ``0``
        keeps every MDP; the runs are all kept in ``prior.json`` either way
    :return: ``{"rows": [...], "errors": [...], "runs": [...], "markdown": the table, "folder": out_dir}``; a row is
        a (family, agent) mean with its CI over ``n`` MDPs (``left_out`` more were ill-conditioned), a run one MDP's
        ``score`` with its ``optimal`` and ``random`` values
    """
    if isinstance(min_gap, bool) or not isinstance(min_gap, (int, float)) or not 0.0 <= min_gap < 1.0:
        raise ValueError(f"min_gap must be a number in [0, 1) (a share of the optimum), got {min_gap!r}")
    prior = prior_spec_with(weights, prior_overrides) if prior_overrides else None
    held_out = (prior if prior is not None else prior_spec_of(weights)).held_out
    if horizon is not None and not (isinstance(horizon, int) and horizon >= 1):
        raise ValueError(f"horizon must be a positive int or None, got {horizon!r}")
    families = list(families or held_out)
    specs = resolve_specs(agents, weights)
    tasks = [
        {"family": f, "index": i, "seed": seed, "agent": s.name, "spec": s, "episodes": episodes, "weights": weights,
         "prior": prior, "horizon": horizon}
        for f in families
        for i in range(n_mdps)
        for s in specs
    ]
    out = Path(prepare_out(None if out_dir is None else str(out_dir), "prior", force, base=RUNS_DIR))
    results = run_tasks(prior_run, tasks, workers, desc="prior", progress=progress)
    errors = [r for r in results if "error" in r]
    runs = [{k: r[k] for k in RUN_KEYS} for r in results if "error" not in r]
    rows = []
    for family in families:
        for spec in specs:
            mine = [r for r in runs if r["family"] == family and r["agent"] == spec.name and np.isfinite(r["score"])]
            scores = [r["score"] for r in mine if not ill_conditioned(r, min_gap)]
            low, high = bootstrap_ci(scores)
            rows.append({"family": family, "held_out": family in held_out, "agent": spec.name,
                         "mean": float(np.mean(scores)) if scores else float("nan"),
                         "ci_low": low, "ci_high": high, "n": len(scores), "left_out": len(mine) - len(scores)})
    markdown = _write(rows, errors, runs, [s.name for s in specs], families, out, command, min_gap)
    return {"rows": rows, "errors": errors, "runs": runs, "markdown": markdown, "folder": str(out)}


def ill_conditioned(run: dict[str, Any], min_gap: float) -> bool:
    """Random play comes within ``min_gap`` of the optimum: ``optimal - random < min_gap * max(|optimal|,
    |random|)``. The normalized score divides by that gap, so there a return's noise moves it by more than the
    agent's play does (a grid MDP where random play earns 87% of the optimum scored 1.50 and 0.36 for two agents)."""
    gap = run["optimal"] - run["random"]
    return bool(gap < min_gap * max(abs(run["optimal"]), abs(run["random"])))


def _write(
    rows: list[dict[str, Any]], errors: list[dict[str, Any]], runs: list[dict[str, Any]], agents: list[str],
    families: list[str], out: Path, command: str, min_gap: float,
) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "prior.json").write_text(
        json.dumps({"command": command, "rows": rows, "errors": errors, "runs": runs}, indent=1)
    )
    lines = [f"`{command}`", "", "| family | " + " | ".join(agents) + " |", "|---" * (len(agents) + 1) + "|"]
    for family in families:
        cells = []
        for agent in agents:
            row = next(r for r in rows if r["family"] == family and r["agent"] == agent)
            cells.append(f"{row['mean']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]")
        tag = " (held out)" if rows and next(r for r in rows if r["family"] == family)["held_out"] else ""
        lines.append(f"| {family}{tag} | " + " | ".join(cells) + " |")
    if min_gap > 0:
        lines += ["", _left_out_line(runs, agents[0], families, min_gap)]
    if len(agents) > 1:
        lines += ["", *_paired_table(runs, agents, families, min_gap)]
    text = "\n".join(lines) + "\n"
    (out / "prior.md").write_text(text)
    return text


def _left_out_line(runs: list[dict[str, Any]], agent: str, families: list[str], min_gap: float) -> str:
    """Which MDPs the means leave out (every agent plays the same draws, so one agent's runs tell)."""
    left = [f"{r['family']} {r['index']}" for family in families for r in runs
            if r["family"] == family and r["agent"] == agent and ill_conditioned(r, min_gap)]
    which = ", ".join(left) if left else "none"
    return f"Left out of the means (`--min-gap {min_gap:g}`: random play within that share of the optimum): {which}."


def paired_differences(
    runs: list[dict[str, Any]], agent: str, baseline: str, family: str, min_gap: float = 0.0
) -> np.ndarray:
    """``agent``'s score minus ``baseline``'s on each MDP of ``family`` that both scored (the same draws), the
    ill-conditioned ones (:func:`ill_conditioned`) left out."""
    def scores(name: str) -> dict[int, float]:
        return {r["index"]: r["score"] for r in runs
                if r["family"] == family and r["agent"] == name and np.isfinite(r["score"])
                and not ill_conditioned(r, min_gap)}

    mine, theirs = scores(agent), scores(baseline)
    return np.array([mine[i] - theirs[i] for i in sorted(mine.keys() & theirs.keys())])


def _paired_table(runs: list[dict[str, Any]], agents: list[str], families: list[str], min_gap: float) -> list[str]:
    """Each agent against the first, MDP by MDP: less noisy than two family means, as both play the same draws."""
    base, others = agents[0], agents[1:]
    lines = [f"Paired difference from {base} (mean over the MDPs both scored, 95% bootstrap CI over MDPs):", "",
             "| family | " + " | ".join(others) + " |", "|---" * (len(others) + 1) + "|"]
    for family in families:
        cells = []
        for agent in others:
            diff = paired_differences(runs, agent, base, family, min_gap)
            low, high = bootstrap_ci(diff)
            cells.append(f"{diff.mean():+.3f} [{low:+.3f}, {high:+.3f}]" if diff.size else "n/a")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return lines
