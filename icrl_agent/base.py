"""What every tabular agent shares: ours (``Agent``) and the classical baselines.

:class:`TabularAgent` holds the spaces, the :class:`~icrl_agent.stats.SufficientStats`, the seeded RNG,
the elapsed-step counter of each stream of episodes (read from the statistics, so the two never drift),
the horizon and reward-scale inference, and the public surface ``act / observe / reset_episode /
predict / fit / learn / policy``. A subclass says how it scores actions (:meth:`_action_scores`, or
overrides :meth:`_action_probabilities` / :meth:`_select`) and how it learns from a transition
(:meth:`_on_update`).

One rule for what the agent is not told, used by every agent:

- **Horizon** :attr:`TabularAgent.horizon`: the ``horizon=`` hint if given; else the longest truncated
  episode seen, when no episode ran longer (a time limit reveals itself); else ``2 x`` the longest
  episode seen (nothing shows the limit: no episode was cut, or only shorter ones were, like the partial
  last episode of a dataset; doubling leaves room for longer paths without letting optimistic values
  grow unboundedly); else
  :data:`DEFAULT_HORIZON` before any episode ended; the inferred value is capped at :data:`MAX_HORIZON`
  (an env without a time limit may run episodes of any length: the agent warns once, naming
  ``gymnasium.wrappers.TimeLimit``, and :meth:`TabularAgent.learn` cuts episodes at the cap, as
  truncations). Elapsed steps beyond it use the last step's plan.
- **Reward scale** :attr:`TabularAgent.reward_scale`: the ``reward_max=`` hint if given, else the
  largest ``|r|`` seen so far (0 before any non-zero reward). :attr:`TabularAgent.reward_span` is the
  hint, else ``max r - min r`` seen. Being told nothing has a cost: normalizing by the rewards seen
  makes an agent blind after a small early reward (RiverSwim's 0.005 trap; see the RiverSwim rows of
  benchmarks/results/icrl/online.md).
- **Unknown states** (never seen): a uniformly random action; with ``deterministic=True`` the first action.
- **Ties** between best actions: broken by the seeded RNG; with ``deterministic=True`` the first best
  action, so the same statistics always give the same action.
- **Inside an exploring** :class:`~icrl_agent.wrappers.InContextWrapper` (its default), a
  ``deterministic=True`` request for the observation the wrapper just returned is served by the
  exploring policy, so loops that ask for greedy actions (SB3's ``evaluate_policy``) still learn.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from icrl_agent._threads import planning_threads
from icrl_agent.stats import SufficientStats

DEFAULT_HORIZON = 100
"""Planning horizon before any episode has ended (and no ``horizon=`` hint was given)."""

MAX_HORIZON = 500
"""Cap of the inferred planning horizon, and the longest episode :meth:`TabularAgent.learn` runs in an env
without a ``TimeLimit``. Every benchmark env ends its episodes within 200 steps; an env that never ends
them warns once (wrap it in ``gymnasium.wrappers.TimeLimit``, or pass ``horizon=``)."""

BLIND_CALLS_WARNING = 1000
"""``act``/``predict`` calls with no transition observed after which the agent warns (once) that it
learns nothing: exploring calls, or any calls while it has no data at all."""

_HORIZON_FACTOR = 2
_TIE_TOLERANCE = 1e-9


class Transition(NamedTuple):
    """One observed transition, in state ids and action indices, as handed to :meth:`TabularAgent._on_update`.

    ``next_state`` is None when the transition terminated (it went to the absorbing terminal node);
    ``step`` is the elapsed step at which ``action`` was taken.
    """

    state: int
    action: int
    reward: float
    next_state: int | None
    terminated: bool
    truncated: bool
    step: int
    stream: int


def _has_time_limit(env: Any) -> bool:
    """Whether ``env`` (or an env it wraps) is a ``TimeLimit`` or was made with ``max_episode_steps``."""
    seen = 0
    while env is not None and seen < 100:
        if isinstance(env, gym.wrappers.TimeLimit):
            return True
        spec = getattr(env, "spec", None)
        if getattr(spec, "max_episode_steps", None) is not None:
            return True
        env, seen = getattr(env, "env", None), seen + 1
    return False


class EpisodeOutcome(NamedTuple):
    """What :func:`play_episode` saw: the return, the steps taken, whether the episode ended (terminated or
    truncated, by the env or by the cap) and whether the cap cut it."""

    total: float
    steps: int
    finished: bool
    cut: bool


def play_episode(
    agent: Any,
    env: Any,
    cap: int | None,
    seed: int | None = None,
    max_steps: int | None = None,
    on_step: Callable[[], None] | None = None,
) -> EpisodeOutcome:
    """THE episode loop (``learn``, the bench, the demo and the examples all run this one).

    ``env.reset`` (seeded if ``seed``), the agent's ``reset_episode`` if it has one, then ``act`` / ``step`` /
    ``observe`` until the episode ends. After ``cap`` steps (an env without a time limit) the episode is cut
    and the agent told it was truncated; after ``max_steps`` steps (a step budget) the loop stops with the
    episode unfinished.

    :param agent: anything with ``act(obs)`` and ``observe(obs, action, reward, next_obs, terminated, truncated)``
    :param env: a Gymnasium env
    :param cap: the most steps the episode may last, or None (the env's own time limit ends it)
    :param seed: seed of this episode's reset
    :param max_steps: stop after this many steps even if the episode goes on
    :param on_step: called after every step (e.g. a progress bar)
    :return: the :class:`EpisodeOutcome`
    """
    obs, _ = env.reset(seed=seed)
    reset = getattr(agent, "reset_episode", None)
    if reset is not None:
        reset()
    total, steps, done, cut = 0.0, 0, False, False
    while not done:
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        terminated, truncated = bool(terminated), bool(truncated)
        if cap is not None and steps >= cap and not (terminated or truncated):
            truncated = cut = True
        agent.observe(obs, action, float(reward), next_obs, terminated, truncated)
        total += float(reward)
        obs, done = next_obs, terminated or truncated
        if on_step is not None:
            on_step()
        if max_steps is not None and steps >= max_steps:
            break
    return EpisodeOutcome(total, steps, done, cut)


def _positive_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


def _positive_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = float("nan")
    if not out > 0 or not np.isfinite(out) or isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a positive finite number or None, got {value!r}")
    return out


def best_actions(scores: np.ndarray) -> np.ndarray:
    """Indices of the actions whose score ties with the best (relative tolerance 1e-9).

    :param scores: one score per action, float ``[A]``
    :return: the tied best indices, ascending
    """
    top = scores.max()
    return np.flatnonzero(scores >= top - _TIE_TOLERANCE * max(1.0, abs(top)))


def _batch_size(obs: Any, space: spaces.Space) -> int | None:
    """Number of rows if ``obs`` is a batch of observations of ``space`` (SB3's rule), None if single."""
    if isinstance(space, spaces.Dict):
        if not isinstance(obs, Mapping) or not obs:
            raise ValueError(f"Observation {obs!r} is not a dict of the observation space {space}")
        sizes = {_batch_size(obs[k], space[k]) if k in space.spaces else -1 for k in obs}
    elif isinstance(space, spaces.Tuple):
        if not isinstance(obs, (tuple, list)) or len(obs) != len(space.spaces):
            raise ValueError(f"Observation {obs!r} is not a tuple of the observation space {space}")
        sizes = {_batch_size(o, s) for o, s in zip(obs, space.spaces, strict=True)}
    else:
        shape = np.shape(obs)
        if shape == space.shape:
            return None
        if shape[1:] == space.shape:
            return shape[0]
        raise ValueError(
            f"Observation of shape {shape} fits neither the observation space {space} (shape {space.shape}) "
            f"nor a batch of it (shape (n_envs, *{space.shape})): pass one observation or a VecEnv batch"
        )
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(f"Observation {obs!r} mixes single and batched components of {space}")
    return sizes.pop()


def _batch_row(obs: Any, space: spaces.Space, i: int) -> Any:
    if isinstance(space, spaces.Dict):
        return {k: _batch_row(obs[k], space[k], i) for k in space.spaces}
    if isinstance(space, spaces.Tuple):
        return tuple(_batch_row(o, s, i) for o, s in zip(obs, space.spaces, strict=True))
    row = np.asarray(obs)[i]
    return row.item() if isinstance(space, spaces.Discrete) else row


def _concat_episodes(parts: list[Any]) -> Any:
    first = parts[0]
    if isinstance(first, Mapping):
        return {k: _concat_episodes([p[k] for p in parts]) for k in first}
    if isinstance(first, tuple):
        return tuple(_concat_episodes([p[j] for p in parts]) for j in range(len(first)))
    return np.concatenate([np.asarray(p) for p in parts])


def _slice_obs(obs: Any, sl: slice) -> Any:
    if isinstance(obs, Mapping):
        return {k: _slice_obs(v, sl) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(_slice_obs(v, sl) for v in obs)
    return np.asarray(obs)[sl]


def _ended(truncations: np.ndarray, terminations: np.ndarray) -> np.ndarray:
    """``truncations`` with the last step set if the episode ends with neither flag (it was cut short)."""
    if truncations.size and truncations.shape == terminations.shape and not (truncations[-1] or terminations[-1]):
        truncations = truncations.copy()
        truncations[-1] = True
    return truncations


def dataset_from_episodes(episodes: Any) -> dict[str, Any]:
    """Flatten Minari-style episodes into the dict of arrays that :meth:`SufficientStats.fold` reads.

    :param episodes: an iterable of episodes with ``observations`` (one more than actions; an array, or a
        dict/tuple of arrays), ``actions``, ``rewards``, ``terminations``, ``truncations``
        (e.g. ``minari.MinariDataset.iterate_episodes()``)
    :return: a dict with ``observations, actions, rewards, next_observations, terminations, truncations``;
        an episode whose last step is neither terminated nor truncated is marked truncated there (as
        Minari's DataCollector marks an episode cut short), so that it never runs on into the next one
    :raises ValueError: if an episode does not have one more observation than actions
    """
    cols: dict[str, list[Any]] = {k: [] for k in ("obs", "next", "actions", "rewards", "term", "trunc")}
    for i, ep in enumerate(episodes):
        n = len(ep.actions)
        first = ep.observations
        while isinstance(first, (Mapping, tuple)):
            first = next(iter(first.values())) if isinstance(first, Mapping) else first[0]
        if len(first) != n + 1:
            raise ValueError(
                f"episode {i} has {len(first)} observations for {n} actions: a Minari episode holds one more "
                "observation than actions"
            )
        cols["obs"].append(_slice_obs(ep.observations, slice(0, n)))
        cols["next"].append(_slice_obs(ep.observations, slice(1, n + 1)))
        for key, attr in (("actions", "actions"), ("rewards", "rewards")):
            cols[key].append(np.asarray(getattr(ep, attr)))
        cols["term"].append(np.asarray(ep.terminations, bool))
        cols["trunc"].append(_ended(np.asarray(ep.truncations, bool), cols["term"][-1]))
    if not cols["actions"]:
        raise ValueError("the dataset holds no episodes: nothing to fit")
    return {
        "observations": _concat_episodes(cols["obs"]),
        "actions": np.concatenate(cols["actions"]),
        "rewards": np.concatenate(cols["rewards"]),
        "next_observations": _concat_episodes(cols["next"]),
        "terminations": np.concatenate(cols["term"]),
        "truncations": np.concatenate(cols["trunc"]),
    }


class TabularAgent:
    """Base class of every tabular agent: statistics, RNG, step counters, inference of what it is not told.

    :param observation_space: a finite Gymnasium space (Discrete, MultiDiscrete, MultiBinary, Tuple/Dict)
    :param action_space: a ``gymnasium.spaces.Discrete`` space (any ``start``)
    :param seed: seed of the agent's NumPy generator: the same seed and calls give the same actions
    :param horizon: optional hint: the episode length to plan for (inferred from episodes otherwise)
    :param reward_max: optional hint: the largest ``|reward|`` to expect (inferred from rewards otherwise)
    :raises TypeError: if a space is not supported
    :raises ValueError: if a hint is not a positive number
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        seed: int = 0,
        horizon: int | None = None,
        reward_max: float | None = None,
    ):
        self.stats = SufficientStats(observation_space, action_space)
        self.observation_space = observation_space
        self.action_space = action_space
        self.n_actions = self.stats.n_actions
        self.action_start = self.stats.action_start
        self.seed = int(seed) if isinstance(seed, np.integer) else seed  # a NumPy int would not save to JSON
        self.rng = np.random.default_rng(seed)
        self.horizon_hint = _positive_int(horizon, "horizon")
        self.reward_max_hint = _positive_float(reward_max, "reward_max")
        self.reward_min_seen = np.inf
        self.reward_max_seen = -np.inf
        self._n_streams = 0
        self._longest = (0, 0)  # (episodes seen, longest length) cache
        self._init_user_guards()

    def _init_user_guards(self) -> None:
        """State of the one-time warnings and of the exploring wrappers (none of it is saved)."""
        self._home_pid = os.getpid()  # a copy of the agent in another process keeps this: see InContextWrapper
        self._warned: set[str] = set()
        self._blind_calls = 0  # act calls since the last observed transition (or fit)
        self._blind_exploring = False  # one of them asked for the exploring policy
        self._batch_rows = 0  # rows of the last predict on a batch since the last observed transition (0: none)
        self._explore_pending: dict[int, Any] = {}  # stream -> key of the obs an exploring wrapper returned

    def _warn_no_time_limit(self, stacklevel: int) -> None:
        self._warn_once("horizon", (
            f"{type(self).__name__}: an episode ran {MAX_HORIZON} steps without ending, as in an env without a "
            f"time limit; the agent plans at most {MAX_HORIZON} steps ahead (icrl_agent.base.MAX_HORIZON) and "
            "learn() cuts episodes there. Fix: wrap the env in gymnasium.wrappers.TimeLimit(env, "
            "max_episode_steps=N), or pass horizon=N to the agent."
        ), stacklevel=stacklevel)

    def _warn_once(self, topic: str, message: str, stacklevel: int = 4) -> None:
        """Warn about ``topic`` (a ``UserWarning``) the first time only; stacklevel counts from the caller."""
        if topic not in self._warned:
            self._warned.add(topic)
            warnings.warn(message, UserWarning, stacklevel=stacklevel)

    # ------------------------------------------------------------------ what the agent infers

    @property
    def horizon(self) -> int:
        """Planning horizon: the hint, else the time limit seen, else 2 x the longest episode, else 100;
        an inferred horizon is capped at :data:`MAX_HORIZON`."""
        if self.horizon_hint is not None:
            return self.horizon_hint
        n = self.stats.n_episodes
        if n == 0:
            return DEFAULT_HORIZON
        if self._longest[0] != n:
            self._longest = (n, max(self.stats.episode_lengths))
        truncated_at = self.stats.max_truncated_length
        if truncated_at > 0 and truncated_at >= self._longest[1]:
            return min(truncated_at, MAX_HORIZON)
        # a truncation shorter than some episode was not a time limit (e.g. a dataset cut mid-episode)
        return min(_HORIZON_FACTOR * self._longest[1], MAX_HORIZON)

    @property
    def horizon_known(self) -> bool:
        """Whether :attr:`horizon` rests on something seen: the hint, or an episode that ended (before that
        it is the guess :data:`DEFAULT_HORIZON`)."""
        return self.horizon_hint is not None or self.stats.n_episodes > 0

    @property
    def reward_scale(self) -> float:
        """Largest reward magnitude to plan with: the ``reward_max`` hint, else the largest ``|r|`` seen (or 0)."""
        if self.reward_max_hint is not None:
            return self.reward_max_hint
        if self.reward_max_seen < self.reward_min_seen:
            return 0.0
        return max(abs(self.reward_max_seen), abs(self.reward_min_seen))

    @property
    def reward_span(self) -> float:
        """Range of rewards: the ``reward_max`` hint, else ``max r - min r`` seen (0 before two distinct rewards)."""
        if self.reward_max_hint is not None:
            return self.reward_max_hint
        if self.reward_max_seen < self.reward_min_seen:
            return 0.0
        return self.reward_max_seen - self.reward_min_seen

    def step_of(self, stream: int = 0) -> int:
        """Elapsed step of the open episode of ``stream``, clamped to ``horizon - 1`` (a plan's last step)."""
        return min(self.stats.stream_step(stream), self.horizon - 1)

    def _note_rewards(self, rewards: np.ndarray) -> None:
        if rewards.size:
            self.reward_min_seen = min(self.reward_min_seen, float(rewards.min()))
            self.reward_max_seen = max(self.reward_max_seen, float(rewards.max()))

    # ------------------------------------------------------------------ acting

    def act(self, obs: Any, deterministic: bool = False, *, stream: int = 0) -> int:
        """Choose an action for ``obs`` at the current elapsed step of ``stream``.

        Planning runs with at most ``icrl_agent._threads.PLANNING_THREADS`` (1) torch intra-op threads, the
        caller's setting restored after: the plan's tensors are small, and more threads only contend.

        :param obs: an observation of the observation space (seen before or not)
        :param deterministic: the exploitation policy: no exploration, ties to the first best action; inside
            an exploring :class:`~icrl_agent.wrappers.InContextWrapper` (for the observation it just
            returned) the exploring policy is used instead, so that the agent keeps learning
        :param stream: the stream of episodes ``obs`` belongs to (see :meth:`open_stream`); 0 for a plain loop
        :return: a Gymnasium action of the action space (``start`` included)
        :raises ValueError: if ``obs`` is not in the observation space
        """
        with planning_threads():
            return self._act(obs, deterministic, stream)

    def _act(self, obs: Any, deterministic: bool, stream: int) -> int:
        if self._explore_pending:
            pending = self._explore_pending.pop(stream, None)
            if deterministic and pending is not None and pending == self.stats.indexer.key(obs):
                deterministic = False  # inside an exploring InContextWrapper: keep learning
        self._count_blind_call(deterministic)
        state = self.stats.state_id(obs)
        if state is None:
            index = 0 if deterministic else int(self.rng.integers(self.n_actions))
        else:
            index = self._select(state, self.step_of(stream), deterministic)
        return self.action_start + index

    def _count_blind_call(self, deterministic: bool) -> None:
        """Warn once when many actions are asked for and no transition ever comes back."""
        self._blind_calls += 1
        self._blind_exploring = self._blind_exploring or not deterministic
        if self._blind_calls < BLIND_CALLS_WARNING or "blind" in self._warned:
            return
        if not (self._blind_exploring or self.stats.n_transitions == 0):
            return  # a frozen policy being evaluated greedily: nothing to learn, nothing to say
        name = type(self).__name__
        if self._batch_rows > self._n_streams:  # more sub-envs than wrappers made in this process
            self._warn_once("blind", (
                f"{name}.predict was called {self._blind_calls} times on batches of observations and no "
                "transition reached this agent. If the envs are InContextWrapper-wrapped inside a "
                "gymnasium AsyncVectorEnv (or SB3 SubprocVecEnv), each worker process feeds its own copy of "
                "the agent: use gymnasium.vector.SyncVectorEnv (or SB3 DummyVecEnv) instead. Otherwise wrap "
                "each env in icrl_agent.InContextWrapper(env, agent), or call agent.observe(...) after "
                "each env.step."
            ))
        else:
            self._warn_once("blind", (
                f"{name}.act/predict was called {self._blind_calls} times and no transition was observed: "
                "the agent learns only from observe(). Call agent.observe(obs, action, reward, next_obs, "
                "terminated, truncated) after each env.step, or wrap the env in "
                "icrl_agent.InContextWrapper(env, agent) for loops you do not own (SB3's evaluate_policy)."
            ))

    def _select(self, state: int, step: int, deterministic: bool) -> int:
        """Action index for a known state: sample :meth:`_action_probabilities`, or its first mode."""
        probs = self._action_probabilities(state, step, deterministic)
        if deterministic:
            return int(np.argmax(probs))
        return int(self.rng.choice(self.n_actions, p=probs))

    def _action_probabilities(self, state: int, step: int, deterministic: bool) -> np.ndarray:
        """Uniform over the best-scoring actions of :meth:`_action_scores` (the first one if deterministic)."""
        best = best_actions(self._action_scores(state, step, deterministic))
        probs = np.zeros(self.n_actions)
        if deterministic:
            probs[best[0]] = 1.0
        else:
            probs[best] = 1.0 / len(best)
        return probs

    def _action_scores(self, state: int, step: int, deterministic: bool) -> np.ndarray:
        """Scores ``[A]`` of the actions of a known state at an elapsed step; the agent acts greedily in them."""
        raise NotImplementedError

    def policy(self, step: int | None = None, deterministic: bool = False) -> np.ndarray:
        """Action probabilities of every known state, in state-id order (``agent.stats.state_id(obs)``).

        :param step: elapsed step (default: the current step of stream 0), clamped to ``horizon - 1``
        :param deterministic: the exploitation policy instead of the exploring one
        :return: float64 ``[S, A]``, rows sum to 1
        """
        step = self.step_of(0) if step is None else min(max(int(step), 0), self.horizon - 1)
        out = np.empty((self.stats.n_states, self.n_actions))
        with planning_threads():
            for state in range(self.stats.n_states):
                out[state] = self._action_probabilities(state, step, deterministic)
        return out

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """Stable-Baselines3's ``predict``: actions for one observation or a VecEnv batch.

        Row ``i`` of a batch of ``n`` acts in stream ``first + i``, where the streams ``first..first+n-1``
        are the last ``n`` opened by :meth:`open_stream` (the sub-envs' wrappers), or ``0..n-1`` if fewer
        were opened. A single observation acts in the last opened stream (0 if none).
        ``episode_start[i]`` true abandons stream ``i``'s unfinished episode, if any.

        ``predict`` never sees rewards: the agent learns from :meth:`observe`, which
        :class:`~icrl_agent.wrappers.InContextWrapper` calls for every step of the env it wraps. The rule
        for ``deterministic=True``: inside an exploring ``InContextWrapper`` (``explore=True``, the
        default), a request for the observation the wrapper just returned is served by the *exploring*
        policy, so loops that ask for greedy actions, like SB3's ``evaluate_policy`` by default, keep
        learning; with ``InContextWrapper(env, agent, explore=False)``, or on an env that is not wrapped,
        ``deterministic=True`` is the exploitation policy. Many calls with no transition ever observed
        warn once (the agent would learn nothing).

        :param observation: one observation, or a batch with a leading ``n_envs`` dimension
        :param state: unused (no recurrent state); returned as is
        :param episode_start: optional bools ``[n_envs]``: which rows start an episode
        :param deterministic: the exploitation policy (see the rule above)
        :return: ``(actions, state)``: an int64 array of shape ``(n_envs,)``, or ``()`` for one observation
        :raises ValueError: if the observation fits neither the space nor a batch of it, or a row is outside
            the space; nothing is reset and no action is drawn then
        """
        n = _batch_size(observation, self.observation_space)
        rows = (
            [observation]
            if n is None
            else [_batch_row(observation, self.observation_space, i) for i in range(n)]
        )
        for row in rows:  # every row is checked before any episode is reset or any action drawn
            self.stats.indexer.key(row)
        first = max(0, self._n_streams - len(rows))
        if n is not None:
            self._batch_rows = n
        if episode_start is not None:
            for i, start in enumerate(np.asarray(episode_start, bool).reshape(-1)[: len(rows)]):
                if start:
                    self.reset_episode(stream=first + i)
        actions = np.array(
            [self.act(o, deterministic, stream=first + i) for i, o in enumerate(rows)], np.int64
        )
        return (actions[0] if n is None else actions), state

    # ------------------------------------------------------------------ learning

    def open_stream(self) -> int:
        """A new stream id for one more env feeding this agent (``InContextWrapper`` calls it): 0, 1, 2, ..."""
        self._n_streams += 1
        return self._n_streams - 1

    def observe(
        self,
        obs: Any,
        action: Any,
        reward: float,
        next_obs: Any,
        terminated: bool,
        truncated: bool,
        *,
        stream: int = 0,
    ) -> None:
        """Learn from one transition, exactly as ``env.step(action)`` returned it after ``obs``.

        A ``terminated`` or ``truncated`` transition ends the episode (the next one starts at step 0).

        :param stream: the stream of episodes it belongs to (see :meth:`open_stream`); 0 for a plain loop
        :raises ValueError: an observation or action outside its space, a reward that is not a finite number,
            or a flag that is not a bool; the statistics are then unchanged
        """
        step = self.stats.stream_step(stream)
        self.stats.update(obs, action, reward, next_obs, terminated, truncated, stream=stream)
        self._blind_calls = self._batch_rows = 0
        self._blind_exploring = False
        if step + 1 == MAX_HORIZON and not (terminated or truncated) and self.horizon_hint is None:
            self._warn_no_time_limit(stacklevel=4)
        r = float(reward)
        self._note_rewards(np.array([r]))
        terminated = bool(terminated)
        self._on_update(
            Transition(
                cast(int, self.stats.state_id(obs)),  # indexed by the update above
                self.stats.action_index(action),
                r,
                None if terminated else self.stats.state_id(next_obs),
                terminated,
                bool(truncated),
                step,
                stream,
            )
        )

    def _on_update(self, transition: Transition) -> None:
        """Hook called after each observed transition is counted (online learning rules go here)."""

    def reset_episode(self, stream: int = 0) -> None:
        """Start a new episode in ``stream``: an unfinished one is abandoned (its transitions stay counted).

        Not needed after an observed ``terminated``/``truncated`` transition, which already ends the episode.
        """
        self.stats.reset_episode(stream)

    def fit(self, dataset: Any) -> int:
        """Add an offline dataset to the statistics, atomically (a bad row raises and adds nothing).

        :param dataset: a dict of arrays ``observations, actions, rewards, next_observations, terminations``
            (+ optional ``truncations``), or a ``minari.MinariDataset`` (anything with ``iterate_episodes()``)
        The dataset's episodes are offline: an unfinished last one is abandoned, so the next observed
        transition starts a new episode at step 0 instead of continuing it.

        :return: the number of transitions added
        :raises ValueError: a missing key, mismatched lengths or a bad row (named); nothing is added
        """
        if hasattr(dataset, "iterate_episodes"):
            dataset = dataset_from_episodes(dataset.iterate_episodes())
        added = self.stats.fold(dataset)
        if added:
            self.stats.reset_episode()
            self._blind_calls = self._batch_rows = 0
            self._blind_exploring = False
        self._note_rewards(np.asarray(dataset["rewards"], np.float64).reshape(-1))
        self._on_fit(dataset)
        return added

    def _on_fit(self, dataset: Mapping[str, Any]) -> None:
        """Hook called after a dataset was folded into the statistics."""

    def learn(
        self,
        env: gym.Env | None = None,
        total_episodes: int | None = None,
        progress_bar: bool = False,
        seed: int | None = None,
        *,
        total_timesteps: int | None = None,
    ) -> list[float]:
        """Run an online loop in ``env``, acting and observing every transition (stream 0).

        Give the budget in episodes (``total_episodes``, default 100) or, as Stable-Baselines3 users type
        it, in steps (``total_timesteps``: exactly that many ``env.step`` calls; an episode still running
        at the end is abandoned and its return not reported). In an env without a ``TimeLimit`` (no
        ``gymnasium.wrappers.TimeLimit`` and no ``max_episode_steps``), an episode is cut after
        :data:`MAX_HORIZON` steps (or the ``horizon=`` hint, if larger) and counted as truncated, so
        ``learn`` always returns; the agent then warns once.

        :param env: a Gymnasium env with this agent's spaces
        :param total_episodes: number of episodes to run
        :param progress_bar: show a tqdm progress bar
        :param seed: optional seed for the env's first ``reset`` (reproducible runs)
        :param total_timesteps: number of steps to run, instead of ``total_episodes``
        :return: the undiscounted return of each finished episode
        :raises TypeError: if ``env`` is missing
        :raises ValueError: if both budgets are given, or a budget is not a positive int
        """
        name = type(self).__name__
        if env is None:
            raise TypeError(
                f"{name}.learn needs the env to run in: agent.learn(env, total_timesteps=5000) or "
                "agent.learn(env, total_episodes=100) (unlike an SB3 model, the agent is not built around an env)"
            )
        if total_episodes is not None and total_timesteps is not None:
            raise ValueError(f"{name}.learn takes total_episodes or total_timesteps, not both")
        if total_timesteps is not None:
            budget, unit = int(_positive_int(total_timesteps, "total_timesteps") or 0), "step"
        else:
            episodes = 100 if total_episodes is None else total_episodes
            budget, unit = int(_positive_int(episodes, "total_episodes") or 0), "episode"
        cap = None if _has_time_limit(env) else max(MAX_HORIZON, self.horizon_hint or 0)
        bar = None
        if progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=budget, desc=name, unit=unit)
        returns: list[float] = []
        steps, outcome = 0, None
        tick = bar.update if bar is not None and unit == "step" else None
        try:
            while (len(returns) if unit == "episode" else steps) < budget:
                outcome = play_episode(
                    self, env, cap, seed if not returns and steps == 0 else None,
                    max_steps=budget - steps if unit == "step" else None, on_step=tick,
                )
                steps += outcome.steps
                if outcome.cut:
                    self._warn_no_time_limit(stacklevel=4)
                if outcome.finished:
                    returns.append(outcome.total)
                    if bar is not None and unit == "episode":
                        bar.update()
        finally:
            if bar is not None:
                bar.close()
        if outcome is not None and not outcome.finished:
            self.reset_episode()  # the last episode was cut by the step budget: abandon it
        return returns
