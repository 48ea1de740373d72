"""What every benchmark shares: env names, exact reference values, the episode loop and the process pool."""

from __future__ import annotations

import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

DEFAULT_OUT = os.path.join("benchmarks", "results")


def all_env_ids() -> list[str]:
    """Every registered benchmark env id (``icrl_agent.envs.ALL_ENV_IDS``)."""
    import icrl_agent.envs as envs

    ids = getattr(envs, "ALL_ENV_IDS", None)
    if ids is None:
        raise RuntimeError("icrl_agent.envs.ALL_ENV_IDS does not exist in this install: no benchmark envs")
    return list(ids)


def parse_envs(names: str | Sequence[str]) -> list[str]:
    """Env ids from ``"all"`` or a comma-separated list, checked before anything runs.

    A name without the ``icrl/`` prefix or ``-v0`` suffix is completed (``RiverSwim`` ->
    ``icrl/RiverSwim-v0``) when that makes it a benchmark env.

    :param names: ``"all"``, ``"icrl/RiverSwim-v0,FrozenLake4x4"`` or a list
    :return: full env ids, in order
    :raises ValueError: for an unknown env, listing the valid ones
    """
    valid = all_env_ids()
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [item.strip() for item in items if item.strip()]
    if items == ["all"]:
        return valid
    resolved = []
    for item in items:
        candidates = [item, f"icrl/{item}", f"icrl/{item}-v0", f"{item}-v0"]
        match = next((c for c in candidates if c in valid), None)
        if match is None:
            raise ValueError(f"unknown env {item!r}; valid envs: all, {', '.join(valid)}")
        resolved.append(match)
    if not resolved:
        raise ValueError(f"no env given; valid envs: all, {', '.join(valid)}")
    return resolved


def make_env(env_id: str) -> gym.Env:
    """``gym.make(env_id)`` after registering the benchmark envs; short names (``RiverSwim``) work too."""
    import icrl_agent.envs  # noqa: F401  (registers the icrl/... ids)

    return gym.make(env_id if env_id in gym.registry else parse_envs(env_id)[0])


_ENV_CACHE: dict[str, gym.Env] = {}


def cached_env(env_id: str) -> gym.Env:
    """One env per id and process, reused by the runs a worker executes one after the other.

    Building some envs is dear (a MiniGrid task enumerates its whole state space); every run starts
    with a seeded ``reset``, so reuse changes no result.
    """
    if env_id not in _ENV_CACHE:
        _ENV_CACHE[env_id] = make_env(env_id)
    return _ENV_CACHE[env_id]


@dataclass(frozen=True)
class EnvReference:
    """Exact reference values of one env, over its episode horizon.

    :param env_id: the env id
    :param n_states: states of the exact model
    :param n_actions: actions
    :param horizon: steps per episode
    :param optimal: optimal expected episode return
    :param random: uniformly random policy's expected episode return
    :param reward_max: largest ``|R(s, a)|`` of the model
    """

    env_id: str
    n_states: int
    n_actions: int
    horizon: int
    optimal: float
    random: float
    reward_max: float


def env_reference(env_id: str) -> EnvReference:
    """Exact optimal and random episode returns of ``env_id`` from its model.

    :param env_id: a registered benchmark env
    :return: the reference values
    """
    from icrl_agent import solvers

    env = make_env(env_id)
    try:
        model = env.unwrapped
        P, R, _ = model.transition_matrix()
        return EnvReference(
            env_id,
            int(P.shape[0]),
            int(P.shape[1]),
            int(model.horizon),
            solvers.optimal_value(model),
            solvers.random_value(model),
            float(np.abs(np.asarray(R)).max()),
        )
    finally:
        env.close()


def run_episodes(agent: Any, env: gym.Env, episodes: int, seed: int, horizon: int) -> list[float]:
    """The online loop: ``act``, ``step``, ``observe`` for ``episodes`` episodes; the returns of each.

    An episode longer than ``horizon`` steps is cut there and reported to the agent as truncated, so
    the returns are always over the horizon the reference values assume.

    :param agent: anything with ``act(obs)`` and ``observe(obs, action, reward, next_obs, terminated, truncated)``
    :param env: the environment
    :param episodes: number of episodes
    :param seed: seeds the env's first reset
    :param horizon: the longest an episode may last
    :return: undiscounted return of each episode
    """
    returns = []
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):
        total, steps, done = 0.0, 0, False
        while not done:
            action = agent.act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            steps += 1
            truncated = bool(truncated) or (steps >= horizon and not terminated)
            agent.observe(obs, action, float(reward), next_obs, bool(terminated), truncated)
            total += float(reward)
            obs, done = next_obs, bool(terminated) or truncated
        returns.append(total)
        obs, _ = env.reset()
    return returns


def _init_worker() -> None:
    # Each worker is one of `workers` processes sharing the cores: intra-op threads would oversubscribe.
    import torch

    torch.set_num_threads(1)


def _guarded(fn: Callable[[dict], dict], task: dict) -> dict:
    start = time.perf_counter()
    try:
        result = fn(task)
    except Exception:
        return {**_describe(task), "error": traceback.format_exc()}
    result.setdefault("seconds", time.perf_counter() - start)
    return result


def _describe(task: dict) -> dict:
    return {key: value for key, value in task.items() if isinstance(value, str | int | float | bool)}


def run_tasks(fn: Callable[[dict], dict], tasks: Sequence[dict], workers: int, desc: str) -> list[dict]:
    """Run ``fn`` on every task, in ``workers`` processes, with a progress bar; never lose a result.

    A task whose ``fn`` raises yields ``{...task fields, "error": traceback}`` instead of a result, and the
    other tasks go on. If a worker process dies outright, the tasks it took are reported the same way.

    :param fn: a module-level function (picklable) from a task dict to a result dict
    :param tasks: the tasks
    :param workers: processes (1 runs in this process)
    :param desc: the progress bar's label
    :return: one result per task, in the order of ``tasks``
    """
    from tqdm.auto import tqdm

    results: list[dict | None] = [None] * len(tasks)
    with tqdm(total=len(tasks), desc=desc, dynamic_ncols=True, file=sys.stderr) as bar:
        if workers <= 1:
            for i, task in enumerate(tasks):
                results[i] = _guarded(fn, task)
                bar.update()
            return results  # type: ignore[return-value]
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
            futures = {pool.submit(_guarded, fn, task): i for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    results[i] = future.result()
                except BrokenProcessPool as err:
                    results[i] = {**_describe(tasks[i]), "error": f"worker process died: {err!r}"}
                bar.update()
    return results  # type: ignore[return-value]


def report_errors(results: Sequence[dict]) -> list[dict]:
    """Print every failed run (what it was and its traceback's last line) to stderr; return them."""
    errors = [r for r in results if "error" in r]
    for err in errors:
        what = ", ".join(f"{k}={v}" for k, v in err.items() if k != "error")
        last = err["error"].strip().splitlines()[-1] if err["error"].strip() else "?"
        print(f"FAILED run ({what}): {last}", file=sys.stderr)
    return errors


def command_line(subcommand: str, argv: Sequence[str]) -> str:
    """The command that reproduces a run, for the top of its report."""
    return "python -m icrl_agent.bench " + shlex.join([subcommand, *argv])


def timestamp() -> str:
    """UTC time of the run, ISO format."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
