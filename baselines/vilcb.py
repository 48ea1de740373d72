"""VI-LCB (Rashidinejad, Zhu, Ma, Jiao & Russell, 2021): offline RL by pessimistic value iteration."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from icrl_agent.planning_agent import PlanningAgent

from ._planning import empirical_transitions, flat, plan


class VILCB(PlanningAgent):
    """Finite-horizon VI on the empirical MDP minus a count penalty: trusts only what the data covers.

    With ``h = H - t`` steps to go, a visited pair is worth
    ``R_hat(s, a) - beta * h * r / sqrt(N(s, a)) + sum_s' P_hat(s' | s, a) V_{t+1}(s')`` and an unvisited one
    ``h * (r_lo - beta * r)`` (below any return possible, so data always beats no data); ``r`` is the
    ``reward_max`` hint, else the largest ``|r|`` seen, ``r_lo = min(0, smallest reward seen)``. The penalty
    is the Hoeffding width of a value in ``[0, h r]`` without the log factor (the paper's
    ``V_max sqrt(L / N)``); ``beta`` scales it. Values are not floored at the worst return as in the
    paper's analysis: the floor ties every poorly covered action and the tie, not the data, then picks.
    ``beta = 0`` is plain certainty-equivalent VI (unvisited pairs worth 0).

    The penalty is paid at every step of a path, so it compounds like ``H^2 / sqrt(N)``: ``beta = 1`` makes
    the agent loop on the most-visited actions (0.0 on a 4x4 grid from 50 near-expert episodes where
    ``beta = 0.1`` scores the optimum 1.0). Greedy value on RiverSwim (optimum 3.397, H = 20) from 100
    episodes of an epsilon-greedy expert, beta = 0 / 0.1 / 0.3 / 1 / 3: epsilon = 0.5: 3.397, 3.397, 3.397,
    1.178, 0.0; uniform data: 3.397, 1.318, 0.1, 0.1, 0.1. Default ``beta = 0.1``; sweep it per benchmark.

    Meant for ``fit(dataset)`` then ``act(obs, deterministic=True)`` (or ``policy(deterministic=True)``);
    online, it acts greedily in the same pessimistic plan (no exploration).

    :param observation_space: a finite Gymnasium observation space
    :param action_space: a Discrete action space
    :param seed: seed of the agent's RNG (ties when not deterministic, unknown states)
    :param horizon: optional episode-length hint (inferred from the dataset's episodes otherwise)
    :param reward_max: optional hint on the largest ``|reward|`` (inferred otherwise)
    :param beta: penalty constant; 0 gives plain certainty-equivalent VI
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        seed: int = 0,
        horizon: int | None = None,
        reward_max: float | None = None,
        beta: float = 0.1,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, seed, horizon, reward_max, **kwargs)
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        self.beta = float(beta)

    def _make_plan(self, horizon: int, optimistic: bool) -> np.ndarray:
        sp = self.stats.sparse()  # the same pessimistic plan explores and exploits
        counts = flat(sp.counts)
        unvisited = counts == 0
        transitions, reward = empirical_transitions(sp), flat(sp.reward_mean)
        penalty = self.beta * self.reward_scale / torch.sqrt(counts.clamp_min(1.0))
        r_lo = min(0.0, self.reward_min_seen) if self.beta > 0 else 0.0
        unvisited_rate = r_lo - self.beta * self.reward_scale

        def backup(k: int, v: torch.Tensor) -> torch.Tensor:  # k steps to go
            q = transitions.expect(v, reward - k * penalty).reshape(-1)
            return torch.where(unvisited, k * unvisited_rate, q)

        return plan(backup, horizon, sp)
