"""Online runs made separately, reported as one: ``python -m icrl_agent.bench merge --out OUT --take A icrl --take B ...``.

A new agent is usually benchmarked alone, against baselines that already ran on the same envs, budgets and
seeds. ``merge`` takes named agents' runs from several ``bench online`` results and writes one report, as if
they had run together: the tables, plots, and each agent's ratio to the best classical baseline on each env
(which needs the baselines in the same report). Nothing is run. The sources must agree on what makes runs
comparable: the same envs with the same exact reference values and budgets, and the same seeds for every
agent. Anything else is refused by name, and nothing is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from icrl_agent.bench.agents import parse_agents
from icrl_agent.bench.common import EnvReference, prepare_out, short_env_name, timestamp
from icrl_agent.bench.online import summarize, write_outputs
from icrl_agent.bench.paired import load_online
from icrl_agent.bench.results import OnlineResult, RunRecord


def _same_reference(a: EnvReference, b: EnvReference) -> bool:
    def close(x: float | None, y: float | None) -> bool:
        return (x is None and y is None) or (x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9))

    return (a.horizon == b.horizon and a.normalized == b.normalized and close(a.optimal, b.optimal)
            and close(a.random, b.random))


def _check_envs(first: OnlineResult, first_path: str, other: OnlineResult, other_path: str) -> None:
    if list(other.envs) != list(first.envs):
        missing = sorted(set(first.envs) ^ set(other.envs))
        raise ValueError(f"{other_path} ran other envs than {first_path} ({', '.join(missing) or 'another order'}): "
                         "merge only results of the same --envs")
    for env, ref in other.envs.items():
        if not _same_reference(ref, first.envs[env]):
            raise ValueError(f"{short_env_name(env)}: {other_path} and {first_path} hold different reference values "
                             "(optimal / random return or horizon): the env changed between the runs; rerun one")
        if other.budgets[env] != first.budgets[env]:
            raise ValueError(f"{short_env_name(env)}: {other.budgets[env]} episodes in {other_path}, "
                             f"{first.budgets[env]} in {first_path}: merge only runs of the same budget")


def _seeds(runs: Sequence[RunRecord], agent: str) -> dict[str, set[int]]:
    seeds: dict[str, set[int]] = {}
    for run in runs:
        if run.get("agent") == agent:
            seeds.setdefault(run["env"], set()).add(int(run["seed"]))
    return seeds


def _taken(result: OnlineResult, path: str, agents: str) -> list[str]:
    names = list(result.agents) if agents == "all" else [a.strip() for a in agents.split(",") if a.strip()]
    unknown = [a for a in names if a not in result.agents]
    if unknown or not names:
        raise ValueError(f"{path} has no agent {', '.join(map(repr, unknown)) or '(none named)'}; "
                         f"it holds: {', '.join(result.agents)} (or take 'all')")
    return names


def merge_online(takes: Sequence[tuple[str, str]], out: str, force: bool = False,
                 command: str | None = None) -> OnlineResult:
    """Write one online report from agents of several ``bench online`` results.

    :param takes: ``(results folder or results.json, agents)`` pairs; ``agents`` is comma-separated, or ``"all"``
    :param out: the results folder of the merged report (``out/online/`` and ``out/online.md``)
    :param force: write into ``out`` even if it already holds files
    :param command: the command line to record (default: the equivalent CLI call)
    :return: the merged result; its ``command`` names the merge and every source's own command
    :raises ValueError: sources that ran other envs, reference values, budgets or seeds, an agent taken twice or
        not in its source; nothing is written then
    """
    if not takes:
        raise ValueError("nothing to merge: give --take FOLDER AGENTS at least once")
    loaded = [(str(path), wanted, load_online(path)) for path, wanted in takes]
    first_path, _, first = loaded[0]
    agents: dict[str, dict] = {}
    runs: list[RunRecord] = []
    sources = []
    seeds_of_first: dict[str, set[int]] | None = None
    for path, wanted, result in loaded:
        _check_envs(first, first_path, result, path)
        for name in _taken(result, path, wanted):
            if name in agents:
                raise ValueError(f"agent {name!r} is taken twice: take it from one source only")
            seeds = _seeds(result.runs, name)
            if seeds_of_first is None:
                seeds_of_first = seeds
            elif seeds != seeds_of_first:
                raise ValueError(f"agent {name!r} of {path} ran other seeds than the first agent taken: "
                                 "merge only runs of the same --seeds")
            agents[name] = result.agents[name]
            runs += [r for r in result.runs if r.get("agent") == name]
        sources.append(f"{path}: {result.command}")
    specs = parse_agents(list(agents))
    out = prepare_out(out, "online", force)
    if command is None:
        command = "python -m icrl_agent.bench merge " + " ".join(f"--take {p} {a}" for p, a in takes) + f" --out {out}"
    command += "\n\nfrom:\n\n" + "\n".join(f"    {s}" for s in sources)
    rows, _ = summarize(runs, first.envs, specs)
    errors = [r for r in runs if "error" in r]
    merged = OnlineResult("online", command, timestamp(), first.envs, first.budgets, agents, rows, runs, errors)
    return write_outputs(merged, out, specs, "Online benchmark (merged runs)")
