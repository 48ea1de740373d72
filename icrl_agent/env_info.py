"""Any Gymnasium env with finite spaces, as the demo and the examples take it: ids, reference returns, labels.

``python -m icrl_agent.demo --env FrozenLake-v1`` (or ``CliffWalking-v1``, ``Taxi-v4``, an ``icrl/...``
benchmark id, or a short benchmark name such as ``RiverSwim``) goes through :func:`make_env` and
:func:`env_info`:

- an env with an exact model (:func:`exact_model`: every ``icrl/...`` benchmark env, and Gymnasium's toy-text envs
  through their ``P`` tables) is scored by **normalized return**:
  0 = the uniformly random policy's expected return, 1 = the optimal policy's, both computed exactly;
- any other env is scored by its **raw return** (nothing says what is good), and the axis labels say so.

Episodes of an env without a time limit are cut at :data:`icrl_agent.base.MAX_HORIZON` steps (reported
to the agent as truncated), as :meth:`~icrl_agent.base.TabularAgent.learn` does, so every loop ends.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from icrl_agent.base import MAX_HORIZON, _has_time_limit, play_episode
from icrl_agent.spaces import ObservationIndexer, discrete_action_space


def resolve_env_id(env_id: str) -> str:
    """The registered Gymnasium id of ``env_id``; a short benchmark name (``RiverSwim``) is completed.

    :param env_id: ``FrozenLake-v1``, ``icrl/RiverSwim-v0``, ``RiverSwim``, ...
    :return: an id in ``gymnasium.registry``
    :raises ValueError: if no registered env matches, with examples of valid ids
    """
    import icrl_agent.envs  # noqa: F401  (registers the icrl/... ids)

    for candidate in (env_id, f"icrl/{env_id}", f"icrl/{env_id}-v0", f"{env_id}-v0"):
        if candidate in gym.registry:
            return candidate
    from icrl_agent.envs import ALL_ENV_IDS

    raise ValueError(
        f"unknown env {env_id!r}: pass a registered Gymnasium id with finite spaces, e.g. FrozenLake-v1, "
        f"CliffWalking-v1, Taxi-v4, or a benchmark env: {', '.join(ALL_ENV_IDS)}"
    )


def make_timed(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` that keeps a registered env's time limit equal to its ``horizon``.

    A ``horizon`` given without ``max_episode_steps`` to an env registered with a time limit sets that limit
    too: ``gymnasium.make("icrl/RiverSwim-v0", horizon=200)`` alone would still end episodes after the
    registered 20 steps.

    :param env_id: a registered id
    :param kwargs: passed to ``gymnasium.make``
    :return: the env
    :raises ValueError: if the env's ``horizon`` and its time limit still disagree
    """
    if "horizon" in kwargs and "max_episode_steps" not in kwargs and gym.spec(env_id).max_episode_steps is not None:
        kwargs = {**kwargs, "max_episode_steps": kwargs["horizon"]}
    env = gym.make(env_id, **kwargs)
    horizon, limit = getattr(env.unwrapped, "horizon", None), env.spec.max_episode_steps if env.spec else None
    if isinstance(horizon, int) and limit is not None and limit != horizon:
        env.close()
        raise ValueError(
            f"{env_id}: horizon is {horizon} steps but the time limit (max_episode_steps) ends episodes after "
            f"{limit}, so the env's exact values would be for the wrong episode length. Pass the same length to "
            f"both (horizon={limit}, max_episode_steps={limit}), or horizon alone"
        )
    return env


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` of any env with a finite observation space and Discrete actions.

    :param env_id: a registered id or a short benchmark name (see :func:`resolve_env_id`)
    :param kwargs: passed to ``gymnasium.make`` through :func:`make_timed` (a ``horizon`` alone sets the time
        limit too)
    :return: the env
    :raises ValueError: for an unknown id, or an env whose ``horizon`` and time limit disagree
    :raises TypeError: if its spaces are not ones the agents handle (e.g. ``Box``)
    """
    env = make_timed(resolve_env_id(env_id), **kwargs)
    try:
        ObservationIndexer(env.observation_space)
        discrete_action_space(env.action_space)
    except TypeError:
        env.close()
        raise
    return env


def env_id_arg(text: str) -> str:
    """An ``argparse`` ``type=``: the resolved id, or an argparse error (not a traceback) for a bad one."""
    try:
        env_id = resolve_env_id(text)
        make_env(env_id).close()
    except (ValueError, TypeError, gym.error.Error) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return env_id


@dataclass(frozen=True)
class EnvInfo:
    """What the demo and the examples know of an env.

    :param env_id: the registered id
    :param n_states: number of observations (``None`` if the space is not Discrete and no model says)
    :param n_actions: number of actions
    :param horizon: the episode length: the model's horizon, else the ``TimeLimit``'s, else ``None``
    :param optimal: optimal expected episode return, from the exact model (``None`` without one)
    :param random: uniformly random policy's expected episode return (``None`` without an exact model)
    :param reward_max: largest ``|R(s, a)|`` of the exact model (``None`` without one)
    :param cut: the env has no time limit, and ``horizon`` is where a loop cuts its episodes (the exact model of a
        toy-text env without one is over that many steps)
    """

    env_id: str
    n_states: int | None
    n_actions: int
    horizon: int | None
    optimal: float | None = None
    random: float | None = None
    reward_max: float | None = None
    cut: bool = False

    @property
    def exact(self) -> bool:
        """Whether the env exposes an exact model, so that returns can be normalized."""
        return self.optimal is not None and self.random is not None and self.optimal - self.random > 1e-12

    @property
    def episode_cap(self) -> int:
        """Steps after which a loop cuts an episode: the horizon, else :data:`~icrl_agent.base.MAX_HORIZON`."""
        return self.horizon if self.horizon is not None else MAX_HORIZON

    @property
    def return_label(self) -> str:
        """Axis label of :meth:`score`'s values."""
        if self.exact:
            return "normalized return (1 = optimal, 0 = random policy)"
        return "return (raw: the env has no exact model to normalize with)"

    def score(self, returns: Any) -> np.ndarray:
        """Normalized returns with an exact model (0 = random, 1 = optimal in expectation), raw otherwise.

        :param returns: undiscounted episode returns
        :return: float64 array, same shape
        """
        values = np.asarray(returns, dtype=np.float64)
        if not self.exact or self.optimal is None or self.random is None:
            return values
        return (values - self.random) / (self.optimal - self.random)

    def describe(self) -> str:
        """One line: sizes, horizon and, with an exact model, the reference returns."""
        states = f"{self.n_states} states" if self.n_states is not None else "finite observations"
        horizon = f"horizon {self.horizon}" if self.horizon is not None and not self.cut else (
            f"no time limit (episodes cut at {self.episode_cap} steps)")
        line = f"{self.env_id}: {states}, {self.n_actions} actions, {horizon}"
        if self.exact:
            return line + f"; optimal return {self.optimal:.3f}, random {self.random:.3f}"
        return line + "; no exact model: raw returns are shown"

    def hints(self) -> dict[str, Any]:
        """The privileged hints classical baselines are told: those known of ``horizon`` and ``reward_max``."""
        out: dict[str, Any] = {}
        if self.horizon is not None:
            out["horizon"] = self.horizon
        if self.reward_max is not None and self.reward_max > 0:
            out["reward_max"] = self.reward_max
        return out


@dataclass(frozen=True)
class ToyTextModel:
    """The exact model of a plain Gymnasium toy-text env, read from its ``P`` table, over the episodes the bench
    runs (:class:`icrl_agent.solvers.TabularModel`): terminal states are zero-reward self-loops, as in the icrl/
    copies of these envs."""

    P: np.ndarray
    R: np.ndarray
    terminal: np.ndarray
    initial: np.ndarray
    horizon: int

    def transition_matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.P, self.R, self.terminal

    def initial_distribution(self) -> np.ndarray:
        return self.initial


def exact_model(env: gym.Env, cap: int = MAX_HORIZON) -> Any | None:
    """The env's exact model, or ``None``: ``env.unwrapped`` when it has ``transition_matrix()``,
    ``initial_distribution()`` and ``horizon`` (every icrl/ env), else a :class:`ToyTextModel` read from Gymnasium's
    ``P`` table and ``initial_state_distrib`` (FrozenLake-v1, CliffWalking-v1, Taxi-v4 as ``gymnasium.make`` makes
    them) when ending an episode is a property of the next state, over the env's time limit, else ``cap`` steps."""
    inner: Any = env.unwrapped
    if all(hasattr(inner, a) for a in ("transition_matrix", "initial_distribution", "horizon")):
        return inner
    table, initial = getattr(inner, "P", None), getattr(inner, "initial_state_distrib", None)
    if not isinstance(table, dict) or initial is None or not isinstance(env.action_space, gym.spaces.Discrete):
        return None
    from icrl_agent.envs.toy_text import model_from_gymnasium

    initial = np.asarray(initial, dtype=np.float64)
    try:
        P, R, terminal, _ = model_from_gymnasium(table, initial, int(env.action_space.n))
    except ValueError:  # `done` is not a function of the next state: no terminal-state model
        return None
    return ToyTextModel(P, R, terminal, initial, time_limit_or(env, cap))


def time_limit_or(env: gym.Env, cap: int) -> int:
    """The env's registered time limit (``max_episode_steps``), else ``cap``."""
    limit = env.spec.max_episode_steps if env.spec is not None else None
    return int(limit) if limit else cap


def env_info(env_id: str) -> EnvInfo:
    """Sizes, horizon and (with an exact model) reference returns of ``env_id``.

    :param env_id: any id :func:`make_env` accepts
    :return: the :class:`EnvInfo`
    """
    from icrl_agent import solvers

    env = make_env(env_id)
    try:
        model = exact_model(env)
        n_actions, _ = discrete_action_space(env.action_space)
        obs_space = env.observation_space
        n_states = int(obs_space.n) if isinstance(obs_space, spaces.Discrete) else None
        limit = getattr(env.spec, "max_episode_steps", None) if _has_time_limit(env) else None
        name = env.spec.id if env.spec is not None else str(env_id)
        if model is None:
            return EnvInfo(name, n_states, n_actions, limit)
        P, R, _ = model.transition_matrix()
        return EnvInfo(
            name,
            int(np.shape(P)[0]),
            n_actions,
            int(model.horizon),
            solvers.optimal_value(model),
            solvers.random_value(model),
            float(np.abs(np.asarray(R)).max()),
            cut=isinstance(model, ToyTextModel) and limit is None,
        )
    finally:
        env.close()


def run_episode(agent: Any, env: gym.Env, cap: int, seed: int | None = None) -> float:
    """One episode of ``act`` / ``step`` / ``observe``, cut (as a truncation) after ``cap`` steps.

    The loop is :func:`icrl_agent.base.play_episode`, the one ``Agent.learn`` runs too.

    :param agent: anything with ``act(obs)`` and ``observe(obs, action, reward, next_obs, terminated, truncated)``
    :param env: the env
    :param cap: the most steps the episode may last (e.g. :attr:`EnvInfo.episode_cap`)
    :param seed: seed of this episode's reset
    :return: its undiscounted return
    """
    return play_episode(agent, env, cap, seed).total


def action_names(env: gym.Env) -> list[str]:
    """Names of the env's actions when it documents them (known toy-text envs), else plain indices.

    :param env: the env
    :return: one name per action, in action-index order
    """
    n, start = discrete_action_space(env.action_space)
    names = getattr(env.unwrapped, "action_names", None)
    if names is not None and len(names) == n:
        return [str(x) for x in names]
    inner = getattr(env.unwrapped, "gym_env", env.unwrapped)  # the icrl/ toy-text copies keep Gymnasium's env
    known = _KNOWN_ACTION_NAMES.get(type(inner).__name__)
    if known is not None and len(known) == n and start == 0:
        return list(known)
    return [str(start + i) for i in range(n)]


# Gymnasium's toy-text envs document their actions only in their docstrings.
_KNOWN_ACTION_NAMES = {
    "RiverSwim": ("left", "right"),
    "FrozenLakeEnv": ("left", "down", "right", "up"),
    "CliffWalkingEnv": ("up", "right", "down", "left"),
    "TaxiEnv": ("south", "north", "east", "west", "pickup", "dropoff"),
}
