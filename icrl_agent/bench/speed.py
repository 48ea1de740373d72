"""The speed benchmark: microseconds per ``act`` + ``observe`` in a realistic online loop, at S = 16, 64, 500.

Measured twice per agent and size: in the configuration a user gets (torch's default intra-op threads,
or ``--threads N``), and with one torch thread, side by side; the caller's thread setting is restored.

Each agent learns a random *Garnet* MDP (:class:`GarnetEnv`: ``S`` states, 4 actions, 5 successors per
state-action, sparse rewards, horizon 50) from scratch for a number of steps; every ``act`` and
``observe`` call is timed together, so episode-start replanning (done inside one of them) is in the
mean. SB3 agents have no ``act``/``observe``: for them the time of one training step (env step, rollout
bookkeeping and gradient updates, as SB3 interleaves them) is reported instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from icrl_agent.bench import report
from icrl_agent.bench.agents import AgentSpec, parse_agents
from icrl_agent.bench.common import prepare_out, timestamp
from icrl_agent.bench.results import SpeedResult, SpeedRow
from icrl_agent.protocols import TabularPolicy

DEFAULT_SIZES = (16, 64, 500)
DEFAULT_AGENTS = "random,qlearning,ucbvi,optvi,psrl,vilcb,ppo,dqn,a2c"


class GarnetEnv(gym.Env):
    """A random MDP ("Garnet"): ``n_states`` states, each (s, a) leads to ``branching`` random successors.

    Transition probabilities are Dirichlet(1) over the successors; a fraction ``reward_density`` of the
    (s, a) pay a deterministic reward uniform in [0, 1], the others 0; episodes start in state 0 and are
    truncated after ``horizon`` steps (no terminal states). Exposes its exact model like the registered
    envs: ``transition_matrix()``, ``initial_distribution()``, ``horizon``.

    :param n_states: number of states
    :param n_actions: number of actions
    :param branching: successors per (s, a)
    :param reward_density: fraction of rewarding (s, a)
    :param horizon: steps per episode
    :param seed: seed of the MDP's construction
    """

    def __init__(
        self,
        n_states: int,
        n_actions: int = 4,
        branching: int = 5,
        reward_density: float = 0.1,
        horizon: int = 50,
        seed: int = 0,
    ):
        rng = np.random.default_rng(seed)
        self.horizon = int(horizon)
        self.P = np.zeros((n_states, n_actions, n_states))
        for s in range(n_states):
            for a in range(n_actions):
                succ = rng.choice(n_states, size=min(branching, n_states), replace=False)
                self.P[s, a, succ] = rng.dirichlet(np.ones(len(succ)))
        self.R = rng.random((n_states, n_actions)) * (rng.random((n_states, n_actions)) < reward_density)
        self.terminal = np.zeros(n_states, dtype=bool)
        self.observation_space = spaces.Discrete(n_states)
        self.action_space = spaces.Discrete(n_actions)
        self._cdf = np.cumsum(self.P, axis=-1)
        self._state = 0
        self._t = 0

    def transition_matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The exact model ``(P[S, A, S], R[S, A], terminal[S])``."""
        return self.P, self.R, self.terminal

    def initial_distribution(self) -> np.ndarray:
        """Episodes start in state 0."""
        init = np.zeros(self.P.shape[0])
        init[0] = 1.0
        return init

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self._state, self._t = 0, 0
        return 0, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        reward = float(self.R[self._state, action])
        u = self.np_random.random()
        self._state = min(int(np.searchsorted(self._cdf[self._state, action], u)), self.P.shape[0] - 1)
        self._t += 1
        return self._state, reward, False, self._t >= self.horizon, {}


def _time_tabular(agent: TabularPolicy, env: gym.Env, steps: int, max_seconds: float) -> np.ndarray:
    times = np.empty(steps)
    obs, _ = env.reset(seed=0)
    deadline = time.perf_counter() + max_seconds
    for i in range(steps):
        t0 = time.perf_counter()
        action = agent.act(obs)
        t1 = time.perf_counter()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        t2 = time.perf_counter()
        agent.observe(obs, action, float(reward), next_obs, terminated, truncated)
        times[i] = (t1 - t0) + (time.perf_counter() - t2)
        obs = env.reset()[0] if terminated or truncated else next_obs
        if time.perf_counter() > deadline:
            return times[: i + 1]
    return times


def _time_sb3(agent: Any, steps: int) -> np.ndarray:
    base = __import__("stable_baselines3.common.callbacks", fromlist=["BaseCallback"]).BaseCallback
    stamps: list[float] = []

    class Stamp(base):  # type: ignore[misc, valid-type]
        def _on_step(self) -> bool:
            stamps.append(time.perf_counter())
            return len(stamps) <= steps

    agent.model.learn(total_timesteps=steps + 1, callback=Stamp())
    return np.diff(stamps)


def _timings(spec: AgentSpec, n_states: int, steps: int, max_seconds: float) -> tuple[np.ndarray, str]:
    """Microseconds per step of a fresh agent on a fresh Garnet MDP, and what a step is."""
    env = gym.wrappers.PassiveEnvChecker(GarnetEnv(n_states, seed=n_states))
    agent = spec.build(env, seed=0)
    if spec.kind == "sb3":
        return _time_sb3(agent, steps) * 1e6, "one SB3 training step (incl. env step)"
    return _time_tabular(agent, env, steps, max_seconds) * 1e6, "act + observe"  # type: ignore[arg-type]


def _with_threads(threads: int, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with ``threads`` torch intra-op threads, the caller's setting restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


def measure(
    spec: AgentSpec, n_states: int, steps: int = 5000, max_seconds: float = 60.0, threads: int | None = None
) -> SpeedRow:
    """Time one agent on a Garnet MDP of ``n_states`` states, with the default threads and with one.

    :param spec: the agent
    :param n_states: size of the MDP
    :param steps: steps to time
    :param max_seconds: stop earlier when this much wall time has passed (per thread setting)
    :param threads: torch intra-op threads of the default columns (``None``: as torch is set now, i.e.
        what a user gets)
    :return: the row: median, mean and 99th percentile in microseconds, in both settings
    """
    import torch

    threads = threads or torch.get_num_threads()
    micro, what = _with_threads(threads, _timings, spec, n_states, steps, max_seconds)
    single, _ = _with_threads(1, _timings, spec, n_states, steps, max_seconds)
    return SpeedRow(
        agent=spec.name, n_states=n_states, steps=int(micro.size),
        median_us=float(np.median(micro)), mean_us=float(micro.mean()), p99_us=float(np.quantile(micro, 0.99)),
        what=what, threads=threads, median_us_1thread=float(np.median(single)),
        mean_us_1thread=float(single.mean()), p99_us_1thread=float(np.quantile(single, 0.99)),
    )


def _cell(row: SpeedRow | None) -> str:
    if row is None:
        return "failed"
    return (f"{row.median_us:.0f} / {row.mean_us:.0f}"
            f" ({row.median_us_1thread:.0f} / {row.mean_us_1thread:.0f})")


def render_markdown(result: SpeedResult, agents: Sequence[str], sizes: Sequence[int]) -> str:
    """The markdown report: per agent and size, median / mean µs with the default threads, then with one."""
    by_key = {(r.agent, r.n_states): r for r in result.rows}
    header = ["agent", *(f"S={n} median / mean µs ({result.torch_threads} threads), (1 thread)" for n in sizes)]
    table = [[name, *(_cell(by_key.get((name, n))) for n in sizes)] for name in agents]
    lines = [
        "# Speed benchmark",
        f"Reproduce with:\n\n    {result.command}\n",
        f"Run {result.date}, torch threads {result.torch_threads} (default columns) and 1 (in brackets), "
        f"{os.cpu_count()} CPUs. Garnet MDPs (4 actions, 5 successors, horizon 50), learning from scratch; tabular "
        "agents: act + observe per step (episode-start replanning included); SB3 agents: one training step.\n",
        report.markdown_table(header, table),
        *(f"- failed: {e['agent']} at S={e['n_states']}: {e['error']}" for e in result.errors),
    ]
    return "\n".join(lines) + "\n"


def run_speed(
    agents: str | Sequence[str] = DEFAULT_AGENTS,
    sizes: Sequence[int] = DEFAULT_SIZES,
    steps: int = 5000,
    max_seconds: float = 60.0,
    out: str | None = None,
    command: str | None = None,
    threads: int | None = None,
    force: bool = False,
) -> SpeedResult:
    """Run the speed benchmark in this process (one agent at a time, for clean timings) and write its results.

    :param agents: comma-separated agent names
    :param sizes: numbers of states
    :param steps: timed steps per (agent, size)
    :param max_seconds: wall-time cap per (agent, size) and thread setting
    :param out: results folder: ``out/speed/{results.json, summary.csv}`` and ``out/speed.md``; ``None``: a new
        ``runs/bench/speed-<time>``
    :param command: the command line to print above the table
    :param threads: torch threads of the default columns (``None``: torch's current setting, what users get)
    :param force: write into ``out`` even if it already holds files
    :return: the result: ``rows``, ``errors`` and the ``markdown`` text
    """
    import torch

    specs = parse_agents(agents)
    for spec in specs:
        spec.resolve()
    out = prepare_out(out, "speed", force)
    threads = threads or torch.get_num_threads()
    command = command or (
        f"python -m icrl_agent.bench speed --agents {','.join(s.name for s in specs)} "
        f"--sizes {','.join(map(str, sizes))} --steps {steps} --out {out}"
    )
    rows, errors = [], []
    for spec in specs:
        for n_states in sizes:
            try:
                rows.append(measure(spec, int(n_states), steps, max_seconds, threads))
            except Exception as err:  # one agent failing must not lose the others' timings
                errors.append({"agent": spec.name, "n_states": n_states, "error": f"{type(err).__name__}: {err}"})
    result = SpeedResult(command, timestamp(), threads, rows, errors, folder=os.path.join(out, "speed"))
    result.markdown = render_markdown(result, [s.name for s in specs], sizes)
    report.write_json(os.path.join(result.folder, "results.json"), result.to_json())
    report.write_csv(os.path.join(result.folder, "summary.csv"), [row.to_json() for row in result.rows])
    with open(os.path.join(out, "speed.md"), "w") as f:
        f.write(result.markdown)
    return result
