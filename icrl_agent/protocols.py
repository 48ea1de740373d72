"""The agent surface every tabular agent offers, as a typing ``Protocol`` (cf. SB3's ``PolicyPredictor``).

:class:`~icrl_agent.Agent`, every baseline of :mod:`icrl_agent.baselines` (all
:class:`~icrl_agent.base.TabularAgent`) and anything a user writes with these four methods fit it, without
inheriting from anything. The bench, the wrappers and user code type agents with it (the wrappers with :class:`InContextLearner`, which adds
streams of episodes)::

    from icrl_agent.protocols import TabularPolicy

    def evaluate(agent: TabularPolicy, env: gym.Env) -> float: ...

It is ``runtime_checkable``: ``isinstance(obj, TabularPolicy)`` checks that the four methods exist (not
their signatures).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TabularPolicy(Protocol):
    """An agent that acts on observations and learns from transitions, online or from a dataset."""

    def act(self, obs: Any, deterministic: bool = False) -> int:
        """An action of the action space for ``obs``.

        :param obs: an observation of the observation space (seen before or not)
        :param deterministic: the exploitation policy instead of the exploring one
        :return: the action
        """
        ...

    def observe(
        self, obs: Any, action: Any, reward: float, next_obs: Any, terminated: bool, truncated: bool
    ) -> None:
        """Learn from one transition, exactly as ``env.step(action)`` returned it after ``obs``.

        :param obs: the observation the action was taken in
        :param action: the action taken
        :param reward: the reward ``env.step`` returned
        :param next_obs: the observation ``env.step`` returned
        :param terminated: the episode ended in a terminal state
        :param truncated: the episode was cut short (time limit)
        """
        ...

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """Stable-Baselines3's ``predict``: actions for one observation or a batch from a VecEnv.

        :param observation: one observation or a batch
        :param state: recurrent state (unused by tabular agents; returned as is)
        :param episode_start: which rows of the batch start an episode
        :param deterministic: the exploitation policy
        :return: ``(actions, state)``
        """
        ...

    def fit(self, dataset: Any) -> int:
        """Learn offline from a dataset (a dict of arrays or a ``minari.MinariDataset``).

        :param dataset: the transitions
        :return: the number of transitions added
        """
        ...


@runtime_checkable
class InContextLearner(TabularPolicy, Protocol):
    """A :class:`TabularPolicy` that also keeps several streams of episodes apart (what
    :class:`~icrl_agent.wrappers.InContextWrapper` needs; ``Agent`` and every tabular baseline qualify)."""

    def open_stream(self) -> int:
        """A new stream of episodes (its own elapsed-step counter), e.g. one per sub-env of a vector env."""
        ...

    def reset_episode(self, stream: int = 0) -> None:
        """End the open episode of ``stream``."""
        ...

    def observe(  # TabularPolicy.observe plus the stream keyword
        self, obs: Any, action: Any, reward: float, next_obs: Any, terminated: bool, truncated: bool, *, stream: int = 0
    ) -> None:
        """:meth:`TabularPolicy.observe` for the episode of ``stream``."""
        ...
