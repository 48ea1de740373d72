"""Gymnasium wrappers that let an agent learn in context inside loops it does not own."""

from __future__ import annotations

import os
import warnings
from typing import Any, SupportsFloat, cast

import gymnasium as gym

from icrl_agent.protocols import InContextLearner


class InContextWrapper(gym.Wrapper):
    """Feed every transition of ``env`` to ``agent``, so that ``agent.predict`` alone learns in context.

    SB3's ``predict`` never sees rewards. Wrap the env once and hand it to loops you do not own:
    SB3's ``evaluate_policy`` (which puts it in a ``DummyVecEnv``) or a Gymnasium ``SyncVectorEnv``
    whose sub-envs each wrap one env around the *same* agent. Each wrapper is its own stream of
    episodes for the agent (its own elapsed-step counter and initial states), numbered in the order
    the wrappers are made, which is the order of a vector env's sub-envs. The reset observation that a
    vector env returns after an episode's end comes from ``reset`` and is never counted as a transition;
    a ``reset`` in the middle of an episode abandons it (``agent.reset_episode``), so the next episode
    starts at step 0.

    **Exploring by default.** Loops you do not own often ask for greedy actions: SB3's
    ``evaluate_policy`` calls ``predict(obs, deterministic=True)`` unless told otherwise. A greedy plan
    built from few data never explores, so the agent would never learn. With ``explore=True`` (the
    default), an ``agent.act``/``agent.predict`` request with ``deterministic=True`` for the observation
    this wrapper just returned (from ``reset`` or ``step``) is served by the agent's exploring policy.
    ``explore=False`` restores exploitation (e.g. to score the greedy policy while it still learns).
    Requests for other observations, or once the wrapper is closed, are not affected.

    Use ``SyncVectorEnv``: an ``AsyncVectorEnv`` runs its sub-envs in other processes, where the agent
    would be a copy that learns nothing the caller sees. A wrapper made in a process other than the one
    that built its agent warns once.

    :param env: the environment to wrap (finite observation space, Discrete actions)
    :param agent: the learner that receives every transition through ``observe``
    :param explore: serve ``deterministic=True`` requests for this env's observations with the exploring
        policy, so the agent keeps learning (see above)
    """

    def __init__(self, env: gym.Env, agent: InContextLearner, explore: bool = True):
        super().__init__(env)
        self.agent = agent
        self.explore = bool(explore)
        self.stream = agent.open_stream()
        self._last_obs: Any = None
        home = getattr(agent, "_home_pid", None)
        if home is not None and home != os.getpid():
            _warn_copied_agent(agent)

    def _pending(self, obs: Any) -> None:
        """Tell the agent which observation an action is now expected for (exploring wrappers only)."""
        pending = getattr(self.agent, "_explore_pending", None)
        if pending is None:
            return
        if obs is None or not self.explore:
            pending.pop(self.stream, None)
            return
        try:
            pending[self.stream] = cast(Any, self.agent).stats.indexer.key(obs)
        except (AttributeError, ValueError):  # not an agent with statistics, or an observation outside its space
            pending.pop(self.stream, None)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        if self._last_obs is not None:  # an episode was still open: it is abandoned, not continued
            self.agent.reset_episode(stream=self.stream)
        self._last_obs = obs
        self._pending(obs)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict]:
        if self._last_obs is None:
            raise gym.error.ResetNeeded("call reset() before step() on an InContextWrapper")
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.agent.observe(
            self._last_obs, action, float(reward), next_obs, bool(terminated), bool(truncated), stream=self.stream
        )
        self._last_obs = None if (terminated or truncated) else next_obs
        self._pending(self._last_obs)
        return next_obs, reward, terminated, truncated, info

    def close(self) -> None:
        """Close the env; the agent's next ``deterministic=True`` request is not served by exploration."""
        self._pending(None)
        super().close()


def _warn_copied_agent(agent: Any) -> None:
    """Warn once per process: this wrapper feeds a copy of the agent, not the caller's."""
    if getattr(agent, "_copy_warned", False):
        return
    agent._copy_warned = True
    warnings.warn(
        f"InContextWrapper: this process (pid {os.getpid()}) holds a copy of the {type(agent).__name__} made in "
        f"process {agent._home_pid}, as in a gymnasium AsyncVectorEnv (or SB3 SubprocVecEnv) worker: the "
        "transitions of this env teach that copy, never the caller's agent. Use gymnasium.vector.SyncVectorEnv "
        "(or SB3 DummyVecEnv) for envs that share one agent.",
        UserWarning,
        stacklevel=3,
    )
