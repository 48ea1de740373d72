"""What every benchmark shares: env names, exact reference values, the episode loop and the process pool."""

from __future__ import annotations

import difflib
import json
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

from icrl_agent.base import MAX_HORIZON
from icrl_agent.env_info import exact_model as env_info_exact_model
from icrl_agent.env_info import make_timed, run_episode, time_limit_or
from icrl_agent.protocols import TabularPolicy

RUNS_DIR = os.path.join("runs", "bench")  # default home of new runs (git-ignored); never benchmarks/results
EPISODE_CAP = MAX_HORIZON  # steps per episode on an env without a time limit (CliffWalking-v1), the agent's own cap


def new_run_dir(verb: str, base: str = RUNS_DIR) -> str:
    """A fresh folder ``<base>/<verb>-<UTC time>`` (suffixed ``-2``, ``-3``... if taken): one run, one folder."""
    stem = os.path.join(base, f"{verb}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    path, n = stem, 2
    while os.path.exists(path):
        path, n = f"{stem}-{n}", n + 1
    return path


def prepare_out(out: str | None, verb: str, force: bool = False, base: str = RUNS_DIR) -> str:
    """The folder a run writes into: ``out``, or a new run folder when ``out`` is ``None``.

    Writing into a folder that already holds files (committed results, an earlier run) is refused unless
    ``force``: results are regenerated only on purpose.

    :param out: the folder asked for, or ``None`` for ``<base>/<verb>-<UTC time>``
    :param verb: the benchmark's name, for the new folder
    :param force: allow writing into a non-empty folder (files of the same name are overwritten)
    :param base: where new run folders go
    :return: the folder (created)
    :raises ValueError: ``out`` is a file, or a non-empty folder without ``force``
    """
    path = new_run_dir(verb, base) if out is None else out
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--out {path} is a file, not a folder")
    if out is not None and not force and os.path.isdir(path) and os.listdir(path):
        raise ValueError(
            f"--out {path} is not empty (it may hold committed results): pass --force to overwrite them, "
            "or choose another folder (by default every run gets a new one under runs/bench/)"
        )
    os.makedirs(path, exist_ok=True)
    return path


def show_progress(progress: bool | None) -> bool:
    """Whether to draw progress bars: as asked, else only when stderr is a terminal (never into logs)."""
    return sys.stderr.isatty() if progress is None else bool(progress)


def all_env_ids() -> list[str]:
    """Every registered benchmark env id (``icrl_agent.envs.ALL_ENV_IDS``)."""
    import icrl_agent.envs as envs

    ids = getattr(envs, "ALL_ENV_IDS", None)
    if ids is None:
        raise RuntimeError("icrl_agent.envs.ALL_ENV_IDS does not exist in this install: no benchmark envs")
    return list(ids)


def did_you_mean(name: str, valid: Sequence[str]) -> str:
    """`` Did you mean 'x'?`` for the closest valid names (difflib), or ``""``."""
    close = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def resolve_env_id(item: str) -> str:
    """A full env id: a benchmark env by short name (``RiverSwim``) or any registered Gymnasium id.

    :param item: e.g. ``RiverSwim``, ``icrl/RiverSwim-v0`` or ``FrozenLake-v1``
    :return: the id to ``gym.make``
    :raises ValueError: an id nobody registered, naming the benchmark envs and the closest ids
    """
    valid = all_env_ids()
    candidates = [item, f"icrl/{item}", f"icrl/{item}-v0", f"{item}-v0"]
    match = next((c for c in candidates if c in valid), None)
    if match is not None:
        return match
    if item in gym.registry:
        return item
    short = [e.removeprefix("icrl/").removesuffix("-v0") for e in valid]
    raise ValueError(
        f"unknown env {item!r}; valid envs: all, {', '.join(valid)}, or any registered Gymnasium id with "
        f"finite spaces (e.g. FrozenLake-v1).{did_you_mean(item, [*short, *valid, *gym.registry])}"
    )


# Python's spellings too: without them ``is_slippery=False`` reached ``gym.make`` as the truthy text "False".
_PYTHON_CONSTANTS = {"True": True, "False": False, "None": None}


def parse_value(text: str) -> Any:
    """A ``key=value`` value on the command line: JSON if it parses (``20``, ``0.1``, ``true``), Python's
    ``True`` / ``False`` / ``None``, else the text (``MiniGrid-LavaGapS5-v0``)."""
    if text in _PYTHON_CONSTANTS:
        return _PYTHON_CONSTANTS[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def split_env_spec(item: str) -> tuple[str, dict[str, Any]]:
    """``"DeepSea:size=20"`` -> ``("DeepSea", {"size": 20})``: an env name and its ``gym.make`` keywords.

    :raises ValueError: for a keyword not written ``key=value``
    """
    name, *overrides = item.strip().split(":")
    kwargs = {}
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ValueError(f"bad env keyword {override!r} in {item!r}: write name:key=value, e.g. DeepSea:size=20")
        kwargs[key] = parse_value(value)
    return name, kwargs


def short_env_name(env_id: str) -> str:
    """The label of an env in tables and plots: ``icrl/DeepSea-v0:size=20`` -> ``DeepSea:size=20``."""
    name, _, kwargs = env_id.partition(":")
    short = name.removeprefix("icrl/").removesuffix("-v0")
    return f"{short}:{kwargs}" if kwargs else short


def _resolve_env_spec(item: str) -> str:
    name, kwargs = split_env_spec(item)
    return ":".join([resolve_env_id(name), *(f"{k}={v}" for k, v in kwargs.items())])


def parse_envs(names: str | Sequence[str]) -> list[str]:
    """Env ids from ``"all"`` or a comma-separated list, checked before anything runs.

    A name without the ``icrl/`` prefix or ``-v0`` suffix is completed (``RiverSwim`` ->
    ``icrl/RiverSwim-v0``) when that makes it a benchmark env; any other registered Gymnasium id
    (``FrozenLake-v1``) is taken as it is. ``name:key=value`` passes a keyword to ``gym.make``
    (``DeepSea:size=20``).

    :param names: ``"all"``, ``"icrl/RiverSwim-v0,FrozenLake4x4,Taxi-v4,DeepSea:size=20"`` or a list
    :return: full env ids, in order
    :raises ValueError: for an unknown env, listing the valid ones
    """
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [item.strip() for item in items if item.strip()]
    if items == ["all"]:
        return all_env_ids()
    if not items:
        raise ValueError(f"no env given; valid envs: all, {', '.join(all_env_ids())}")
    return [_resolve_env_spec(item) for item in items]


def make_env(env_id: str) -> gym.Env:
    """``gym.make(env_id)`` after registering the benchmark envs; short names (``RiverSwim``) work too.

    Unlike :func:`icrl_agent.env_info.make_env` it does not check the spaces: :func:`env_reference` refuses
    an unsupported env with the bench's own message.
    """
    import icrl_agent.envs  # noqa: F401  (registers the icrl/... ids)

    name, kwargs = split_env_spec(env_id)
    return make_timed(name if name in gym.registry else resolve_env_id(name), **kwargs)


_ENV_CACHE: dict[str, gym.Env] = {}


def cached_env(env_id: str) -> gym.Env:
    """One env per id and process, reused by the runs a worker executes one after the other.

    Building some envs is dear (a MiniGrid task enumerates its whole state space); every run starts
    with a seeded ``reset``, so reuse changes no result.
    """
    if env_id not in _ENV_CACHE:
        _ENV_CACHE[env_id] = make_env(env_id)
    return _ENV_CACHE[env_id]


def exact_model(env: gym.Env) -> Any | None:
    """The env's exact model over the episodes the bench runs (:func:`icrl_agent.env_info.exact_model` with the
    bench's :data:`EPISODE_CAP`), or ``None``."""
    return env_info_exact_model(env, EPISODE_CAP)


def episode_horizon(env: gym.Env) -> int:
    """Steps per episode: the model's ``horizon``, else the env's time limit, else :data:`EPISODE_CAP`."""
    horizon = getattr(env.unwrapped, "horizon", None)
    if callable(getattr(env.unwrapped, "transition_matrix", None)) and horizon is not None:
        return int(horizon)
    return time_limit_or(env, EPISODE_CAP)


@dataclass(frozen=True)
class EnvReference:
    """Reference values of one env over its episode horizon (exact when the env exposes its model).

    :param env_id: the env id
    :param n_states: states of the exact model (of a Discrete observation space without one; else ``None``)
    :param n_actions: actions
    :param horizon: steps per episode (the model's, the time limit, or :data:`EPISODE_CAP`)
    :param optimal: optimal expected episode return (``None`` without an exact model)
    :param random: uniformly random policy's expected episode return (``None`` without an exact model)
    :param reward_max: largest ``|R(s, a)|`` of the model (``None`` without one)
    """

    env_id: str
    n_states: int | None
    n_actions: int
    horizon: int
    optimal: float | None
    random: float | None
    reward_max: float | None

    @property
    def normalized(self) -> bool:
        """Whether returns on this env are reported normalized (0 = random, 1 = optimal) or raw."""
        return self.optimal is not None and self.random is not None

    def score(self, returns: Sequence[float] | np.ndarray) -> np.ndarray:
        """Normalized returns where the env has an exact model, the raw returns otherwise."""
        if self.optimal is None or self.random is None:
            return np.asarray(returns, dtype=np.float64)
        from icrl_agent.bench.report import normalize

        return normalize(returns, self.optimal, self.random)


def _check_finite_spaces(env: gym.Env, env_id: str) -> None:
    from icrl_agent.spaces import ObservationIndexer

    try:
        ObservationIndexer(env.observation_space)
    except TypeError as err:
        raise ValueError(f"env {env_id} cannot be benchmarked: {err}") from err
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"env {env_id} cannot be benchmarked: its action space {env.action_space} is not Discrete")


def env_reference(env_id: str) -> EnvReference:
    """Reference values of ``env_id``: exact optimal and random episode returns from its model, if it has one.

    :param env_id: a benchmark env or any Gymnasium id with finite spaces
    :return: the reference values (``optimal``/``random`` ``None`` for an env without an exact model)
    :raises ValueError: for an env whose spaces are not finite (Box observations) or not Discrete (actions)
    """
    from icrl_agent import solvers

    env = make_env(env_id)
    try:
        _check_finite_spaces(env, env_id)
        n_actions = int(env.action_space.n)  # type: ignore[attr-defined]  # Discrete: checked above
        model = exact_model(env)
        if model is None:
            space = env.observation_space
            n_states = int(space.n) if isinstance(space, gym.spaces.Discrete) else None
            return EnvReference(env_id, n_states, n_actions, episode_horizon(env), None, None, None)
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


def run_episodes(agent: TabularPolicy, env: gym.Env, episodes: int, seed: int, horizon: int) -> list[float]:
    """The online loop: ``act``, ``step``, ``observe`` for ``episodes`` episodes; the returns of each.

    An episode longer than ``horizon`` steps is cut there and reported to the agent as truncated, so
    the returns are always over the horizon the reference values assume (and an env without a time
    limit cannot run forever).

    :param agent: anything with ``act(obs)`` and ``observe(obs, action, reward, next_obs, terminated, truncated)``
    :param env: the environment
    :param episodes: number of episodes
    :param seed: seeds the env's first reset
    :param horizon: the longest an episode may last
    :return: undiscounted return of each episode
    """
    return [run_episode(agent, env, horizon, seed if k == 0 else None) for k in range(episodes)]


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


def run_tasks(
    fn: Callable[[dict], dict], tasks: Sequence[dict], workers: int, desc: str, progress: bool | None = None
) -> list[dict]:
    """Run ``fn`` on every task, in ``workers`` processes, with a progress bar; never lose a result.

    A task whose ``fn`` raises yields ``{...task fields, "error": traceback}`` instead of a result, and the
    other tasks go on. If a worker process dies outright, the tasks it took are reported the same way.

    :param fn: a module-level function (picklable) from a task dict to a result dict
    :param tasks: the tasks
    :param workers: processes (1 runs in this process)
    :param desc: the progress bar's label
    :param progress: draw the bar (``None``: only when stderr is a terminal, see :func:`show_progress`)
    :return: one result per task, in the order of ``tasks``
    """
    from tqdm.auto import tqdm

    results: list[dict | None] = [None] * len(tasks)
    bar_off = not show_progress(progress)
    with tqdm(total=len(tasks), desc=desc, dynamic_ncols=True, file=sys.stderr, disable=bar_off) as bar:
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
