"""The uniformly random agent: the floor of every normalized score."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from icrl_agent.base import TabularAgent


class Random(TabularAgent):
    """Uniformly random actions (statistics are still kept, so ``fit``/``observe``/``stats`` work as usual).

    ``act(obs, deterministic=True)`` returns a fixed action per state, drawn uniformly once from ``seed``
    and the state's key (a deterministic random policy; it never consumes the RNG).

    :param observation_space: a finite Gymnasium observation space
    :param action_space: a Discrete action space
    :param seed: seed of the agent's RNG
    :param horizon: accepted for a uniform constructor; unused
    :param reward_max: accepted for a uniform constructor; unused
    """

    def act(self, obs: Any, deterministic: bool = False, *, stream: int = 0) -> int:
        key = self.stats.indexer.key(obs)
        if deterministic:
            return self.action_start + self._fixed_action(key)
        return self.action_start + int(self.rng.integers(self.n_actions))

    def _fixed_action(self, key: tuple[int, ...]) -> int:
        seed = int(self.seed) if isinstance(self.seed, (int, np.integer)) else 0
        digest = zlib.crc32(np.array((seed, *key), np.int64).tobytes())
        return digest % self.n_actions

    def _action_probabilities(self, state: int, step: int, deterministic: bool) -> np.ndarray:
        if not deterministic:
            return np.full(self.n_actions, 1.0 / self.n_actions)
        probs = np.zeros(self.n_actions)
        key = self.stats.indexer.key(self.stats.indexer.observation(state))
        probs[self._fixed_action(key)] = 1.0
        return probs
