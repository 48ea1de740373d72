"""Two agents' online runs compared seed by seed: ``python -m icrl_agent.bench paired A B``.

Two online results that ran the same envs and seeds (two folders, or two agents of one) are compared run by run:
on each env, the mean over the shared seeds of ``B - A`` (each run's mean normalized return; raw return where
the env has no exact model), with a 95% bootstrap CI over those seeds. Pairing removes what the seed does to
both agents alike (an env draw, an early lucky goal), so it separates agents that the two means' own CIs
cannot. It matters most where seeds are bimodal, each run either trapped or solved (Chain, RiverSwim): the
table also counts, per agent, the seeds whose score falls below ``--below``. Nothing is run and nothing is
written; the table is printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from icrl_agent.bench import report
from icrl_agent.bench.common import short_env_name
from icrl_agent.bench.results import OnlineResult

Scores = dict[str, dict[int, float]]  # env -> seed -> the run's mean normalized (or raw) return


@dataclass(frozen=True)
class PairedRow:
    """One env of a paired comparison.

    :param env: the env id
    :param seeds: seeds both agents finished
    :param mean_a: A's mean over those seeds
    :param mean_b: B's mean over those seeds
    :param difference: the mean of ``B - A`` over those seeds
    :param ci_low: 95% bootstrap CI of ``difference``, low end
    :param ci_high: its high end
    :param below_a: A's seeds scoring below the threshold (``None`` where returns are raw)
    :param below_b: B's seeds scoring below the threshold (``None`` where returns are raw)
    :param normalized: the scores are normalized returns (the env has an exact model), not raw ones
    """

    env: str
    seeds: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    below_a: int | None
    below_b: int | None
    normalized: bool = True


def load_online(path: str | Path) -> OnlineResult:
    """An online result from its folder (``--out`` of ``bench online``), its ``online/`` folder or its
    ``results.json``."""
    path = Path(path)
    for candidate in (path, path / "results.json", path / "online" / "results.json"):
        if candidate.is_file():
            return OnlineResult.load(candidate)
    raise ValueError(f"no online results at {path}: give the --out folder of `bench online` or its results.json")


def pick_agent(result: OnlineResult, agent: str | None, which: str) -> str:
    """``agent``, checked to be in ``result``; or the result's only agent when ``agent`` is ``None``."""
    names = list(result.agents)
    if agent is None:
        if len(names) != 1:
            raise ValueError(f"{which} holds {len(names)} agents ({', '.join(names)}): name one with --agent-{which}")
        return names[0]
    if agent not in names:
        raise ValueError(f"{which} has no agent {agent!r}; it holds: {', '.join(names)}")
    return agent


def run_scores(result: OnlineResult, agent: str) -> Scores:
    """Each finished run's mean score, normalized where the env has an exact model: ``env -> seed -> score``."""
    scores: Scores = {}
    for run in result.runs:
        if run.get("agent") == agent and "returns" in run:
            ref = result.envs[run["env"]]
            scores.setdefault(run["env"], {})[int(run["seed"])] = float(ref.score(run["returns"]).mean())
    return scores


def paired_rows(a: Scores, b: Scores, below: float, raw: frozenset[str] = frozenset()) -> list[PairedRow]:
    """One row per env both hold, over the seeds both finished there (envs in A's order); ``raw``: the envs whose
    scores are raw returns, where no seed is counted below ``below``."""
    rows = []
    for env, a_by_seed in a.items():
        seeds = sorted(set(a_by_seed) & set(b.get(env, {})))
        if not seeds:
            continue
        x = np.array([a_by_seed[s] for s in seeds])
        y = np.array([b[env][s] for s in seeds])
        low, high = report.bootstrap_ci(y - x)
        normalized = env not in raw
        below_a, below_b = (int((x < below).sum()), int((y < below).sum())) if normalized else (None, None)
        rows.append(PairedRow(env, len(seeds), float(x.mean()), float(y.mean()), float((y - x).mean()), low, high,
                              below_a, below_b, normalized))
    return rows


def render_paired(rows: list[PairedRow], label_a: str, label_b: str, below: float) -> str:
    """The comparison as a markdown table, with the mean over the envs with normalized returns (raw returns of
    different envs do not average)."""
    header = ["env", "seeds", f"A: {label_a}", f"B: {label_b}", "B - A [95% CI]", f"seeds below {below:g} (A / B)"]
    body: list[list[object]] = [
        [short_env_name(r.env) if r.normalized else f"{short_env_name(r.env)} (raw return)", r.seeds,
         f"{r.mean_a:.3f}", f"{r.mean_b:.3f}", f"{r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]",
         f"{r.below_a} / {r.below_b}" if r.normalized else "n/a"]
        for r in rows
    ]
    normalized = [r for r in rows if r.normalized]
    if normalized:
        body.append(["**mean over envs with an exact model**", "", f"{np.mean([r.mean_a for r in normalized]):.3f}",
                     f"{np.mean([r.mean_b for r in normalized]):.3f}",
                     f"{np.mean([r.difference for r in normalized]):+.3f}",
                     f"{sum(r.below_a or 0 for r in normalized)} / {sum(r.below_b or 0 for r in normalized)}"])
    return report.markdown_table(header, body)


def compare(path_a: str, path_b: str | None = None, agent_a: str | None = None, agent_b: str | None = None,
            below: float = 0.8) -> tuple[list[PairedRow], str]:
    """Compare two agents' online runs seed by seed.

    :param path_a: A's results (folder or ``results.json``)
    :param path_b: B's results (default: ``path_a``, two agents of one run)
    :param agent_a: A's agent name (default: the file's only agent)
    :param agent_b: B's agent name (default: the file's only agent)
    :param below: the score under which a seed is counted as stuck
    :return: ``(rows, markdown)``
    """
    result_a = load_online(path_a)
    result_b = result_a if path_b is None else load_online(path_b)
    name_a, name_b = pick_agent(result_a, agent_a, "a"), pick_agent(result_b, agent_b, "b")
    if name_a == name_b and (path_b is None or Path(path_a).resolve() == Path(path_b).resolve()):
        raise ValueError(f"A and B are the same runs ({name_a}): give a second folder or --agent-b")
    raw = frozenset(env for env, ref in {**result_a.envs, **result_b.envs}.items() if not ref.normalized)
    rows = paired_rows(run_scores(result_a, name_a), run_scores(result_b, name_b), below, raw)
    if not rows:
        raise ValueError("A and B share no (env, seed) run: they must have run the same envs with the same seeds")
    intro = f"Paired by seed: A = `{name_a}` ({path_a}), B = `{name_b}` ({path_b or path_a}).\n\n"
    return rows, intro + render_paired(rows, name_a, name_b, below)
