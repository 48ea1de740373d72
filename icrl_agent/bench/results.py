"""What the benchmarks return and write: typed rows and results, read back from their ``results.json``.

The JSON layout is the one the committed files under ``benchmarks/results/`` have (``command``, ``date``,
``envs``, ``agents``, ``summary``, ``runs``...); :meth:`OnlineResult.load` and friends read those files, so
tables and plots can be redrawn without rerunning anything. Raw runs stay plain dicts: one per run, either
a success (``returns`` or ``value``) or a failure (``error``: the traceback), as the worker produced it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from icrl_agent.bench.common import EnvReference

RunRecord = dict[str, Any]  # one run as a worker returned it: its identity + returns/value, or error
THRESHOLD_KEY, REACHING_KEY = "episodes_to_0.9", "seeds_reaching_0.9"  # JSON names of the online row fields


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _env_refs(envs: dict[str, dict[str, Any]]) -> tuple[dict[str, EnvReference], dict[str, int]]:
    names = {f.name for f in fields(EnvReference)}
    refs = {e: EnvReference(**{k: v for k, v in d.items() if k in names}) for e, d in envs.items()}
    budgets = {e: int(d["episodes"]) for e, d in envs.items() if "episodes" in d}
    return refs, budgets


@dataclass
class OnlineRow:
    """One (env, agent) of the online benchmark.

    :param env: env id
    :param agent: agent name
    :param seeds: runs that finished
    :param episodes: episodes per run
    :param mean: mean over episodes, then over seeds, of the normalized (or raw) return
    :param ci_low: 95% bootstrap CI over seeds, low end
    :param ci_high: high end
    :param episodes_to_threshold: median over seeds of the episode the moving average reaches 0.9
        (``None``: the median seed never did; raw-return envs: never computed)
    :param seeds_reaching: seeds that reached 0.9
    :param ratio_to_best_classical: ``mean`` over the best classical agent's (NaN when undefined)
    :param normalized: ``mean`` is a normalized return (0 random, 1 optimal); false: raw return
    """

    env: str
    agent: str
    seeds: int
    episodes: int
    mean: float
    ci_low: float
    ci_high: float
    episodes_to_threshold: float | None
    seeds_reaching: int
    ratio_to_best_classical: float
    normalized: bool = True

    def to_json(self) -> dict[str, Any]:
        """The row as written in ``results.json`` and ``summary.csv``."""
        data = asdict(self)
        data[THRESHOLD_KEY] = data.pop("episodes_to_threshold")
        data[REACHING_KEY] = data.pop("seeds_reaching")
        order = ["env", "agent", "seeds", "episodes", "mean", "ci_low", "ci_high", THRESHOLD_KEY, REACHING_KEY,
                 "ratio_to_best_classical", "normalized"]
        return {key: data[key] for key in order}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OnlineRow:
        """A row from ``results.json`` (rows written before ``normalized`` existed are normalized)."""
        return cls(
            data["env"], data["agent"], int(data["seeds"]), int(data["episodes"]), _nan(data["mean"]),
            _nan(data["ci_low"]), _nan(data["ci_high"]), data.get(THRESHOLD_KEY), int(data.get(REACHING_KEY, 0)),
            _nan(data.get("ratio_to_best_classical")), bool(data.get("normalized", True)),
        )


@dataclass
class OnlineResult:
    """Everything an online benchmark run produced.

    :param kind: results name (``online``, ``sweep_optvi``): ``<folder>`` is ``<out>/<kind>``
    :param command: the command that reproduces it
    :param date: UTC time of the run
    :param envs: reference values per env
    :param budgets: episodes per run, per env
    :param agents: per agent: ``target``, ``kind``, ``hints``, ``params``
    :param rows: the summary
    :param runs: every run, successes and failures
    :param errors: the failed runs
    :param markdown: the report
    :param folder: where the files were written
    :param threshold: the level of the episodes-to-reach column
    :param window: its moving-average window
    :param best: the best swept agent (``sweep-optvi`` only)
    """

    kind: str
    command: str
    date: str
    envs: dict[str, EnvReference]
    budgets: dict[str, int]
    agents: dict[str, dict[str, Any]]
    rows: list[OnlineRow]
    runs: list[RunRecord]
    errors: list[RunRecord] = field(default_factory=list)
    markdown: str = ""
    folder: str = ""
    threshold: float = 0.9
    window: int = 10
    best: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The content of ``results.json``."""
        return {
            "command": self.command,
            "date": self.date,
            "threshold": self.threshold,
            "window": self.window,
            "envs": {e: {**asdict(r), "normalized": r.normalized, "episodes": self.budgets[e]}
                     for e, r in self.envs.items()},
            "agents": self.agents,
            "summary": [row.to_json() for row in self.rows],
            "runs": self.runs,
        }

    @classmethod
    def load(cls, path: str | Path) -> OnlineResult:
        """Read a ``results.json`` written by ``bench online`` or ``bench sweep-optvi`` (committed ones included).

        :param path: the file
        :return: the result (``markdown`` empty: :func:`icrl_agent.bench.online.render_markdown` redraws it)
        """
        path = Path(path)
        data = json.loads(path.read_text())
        refs, budgets = _env_refs(data["envs"])
        runs = data["runs"]
        return cls(
            path.parent.name, data["command"], data.get("date", ""), refs, budgets, data["agents"],
            [OnlineRow.from_json(r) for r in data["summary"]], runs, [r for r in runs if "error" in r],
            folder=str(path.parent), threshold=data.get("threshold", 0.9), window=data.get("window", 10),
        )


@dataclass
class OfflineRow:
    """One (env, behaviour, dataset size, agent) of the offline benchmark.

    :param env: env id
    :param behaviour: the behaviour policy of the datasets
    :param size: transitions per dataset
    :param agent: agent name
    :param seeds: datasets fitted
    :param mean: mean normalized exact value of the greedy policy after ``fit``
    :param ci_low: 95% bootstrap CI over seeds, low end
    :param ci_high: high end
    """

    env: str
    behaviour: str
    size: int
    agent: str
    seeds: int
    mean: float
    ci_low: float
    ci_high: float

    def to_json(self) -> dict[str, Any]:
        """The row as written in ``results.json`` and ``summary.csv``."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OfflineRow:
        """A row from ``results.json``."""
        return cls(data["env"], data["behaviour"], int(data["size"]), data["agent"], int(data["seeds"]),
                   _nan(data["mean"]), _nan(data["ci_low"]), _nan(data["ci_high"]))


@dataclass
class OfflineResult:
    """Everything an offline benchmark run produced (fields as in :class:`OnlineResult`)."""

    command: str
    date: str
    envs: dict[str, EnvReference]
    agents: dict[str, dict[str, Any]]
    rows: list[OfflineRow]
    runs: list[RunRecord]
    errors: list[RunRecord] = field(default_factory=list)
    markdown: str = ""
    folder: str = ""

    def to_json(self) -> dict[str, Any]:
        """The content of ``results.json``."""
        return {
            "command": self.command,
            "date": self.date,
            "envs": {e: asdict(r) for e, r in self.envs.items()},
            "agents": self.agents,
            "summary": [row.to_json() for row in self.rows],
            "runs": self.runs,
        }

    @classmethod
    def load(cls, path: str | Path) -> OfflineResult:
        """Read a ``results.json`` written by ``bench offline`` (committed ones included)."""
        path = Path(path)
        data = json.loads(path.read_text())
        refs, _ = _env_refs(data["envs"])
        runs = data["runs"]
        return cls(data["command"], data.get("date", ""), refs, data["agents"],
                   [OfflineRow.from_json(r) for r in data["summary"]], runs, [r for r in runs if "error" in r],
                   folder=str(path.parent))


@dataclass
class SpeedRow:
    """One (agent, number of states) of the speed benchmark, in microseconds per step.

    :param agent: agent name
    :param n_states: states of the Garnet MDP
    :param steps: steps timed (with the default threads)
    :param median_us: median with torch's default intra-op threads (what a user gets)
    :param mean_us: mean, same setting (episode-start replanning included)
    :param p99_us: 99th percentile, same setting
    :param what: what one timed step is
    :param threads: the torch intra-op threads of the default columns
    :param median_us_1thread: median with one torch thread (``None`` in files written before it was measured)
    :param mean_us_1thread: mean with one torch thread
    :param p99_us_1thread: 99th percentile with one torch thread
    """

    agent: str
    n_states: int
    steps: int
    median_us: float
    mean_us: float
    p99_us: float
    what: str
    threads: int | None = None
    median_us_1thread: float | None = None
    mean_us_1thread: float | None = None
    p99_us_1thread: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as written in ``results.json`` and ``summary.csv``."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SpeedRow:
        """A row from ``results.json``."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class SpeedResult:
    """Everything a speed benchmark run produced.

    :param command: the command that reproduces it
    :param date: UTC time of the run
    :param torch_threads: torch's intra-op threads of the default columns
    :param rows: the timings
    :param errors: per failed (agent, size): ``agent``, ``n_states``, ``error``
    :param markdown: the report
    :param folder: where the files were written
    """

    command: str
    date: str
    torch_threads: int
    rows: list[SpeedRow]
    errors: list[RunRecord] = field(default_factory=list)
    markdown: str = ""
    folder: str = ""

    def to_json(self) -> dict[str, Any]:
        """The content of ``results.json``."""
        return {"command": self.command, "date": self.date, "torch_threads": self.torch_threads,
                "summary": [row.to_json() for row in self.rows], "errors": self.errors}

    @classmethod
    def load(cls, path: str | Path) -> SpeedResult:
        """Read a ``results.json`` written by ``bench speed`` (committed ones included)."""
        path = Path(path)
        data = json.loads(path.read_text())
        return cls(data["command"], data.get("date", ""), int(data["torch_threads"]),
                   [SpeedRow.from_json(r) for r in data["summary"]], data.get("errors", []), folder=str(path.parent))
