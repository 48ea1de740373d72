"""Gymnasium wrappers that let an agent learn in context inside loops it does not own."""

from __future__ import annotations

from typing import Any, Protocol, SupportsFloat

import gymnasium as gym


class InContextLearner(Protocol):
    """What :class:`InContextWrapper` needs of an agent (``Agent`` and every baseline qualify)."""

    def open_stream(self) -> int: ...

    def reset_episode(self, stream: int = 0) -> None: ...

    def observe(
        self, obs: Any, action: Any, reward: float, next_obs: Any, terminated: bool, truncated: bool, *, stream: int = 0
    ) -> None: ...


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

    Use ``SyncVectorEnv``: an ``AsyncVectorEnv`` runs its sub-envs in other processes, where the agent
    would be a copy that learns nothing the caller sees.

    :param env: the environment to wrap (finite observation space, Discrete actions)
    :param agent: the learner that receives every transition through ``observe``
    """

    def __init__(self, env: gym.Env, agent: InContextLearner):
        super().__init__(env)
        self.agent = agent
        self.stream = agent.open_stream()
        self._last_obs: Any = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        if self._last_obs is not None:  # an episode was still open: it is abandoned, not continued
            self.agent.reset_episode(stream=self.stream)
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict]:
        if self._last_obs is None:
            raise gym.error.ResetNeeded("call reset() before step() on an InContextWrapper")
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.agent.observe(
            self._last_obs, action, float(reward), next_obs, bool(terminated), bool(truncated), stream=self.stream
        )
        self._last_obs = None if (terminated or truncated) else next_obs
        return next_obs, reward, terminated, truncated, info
