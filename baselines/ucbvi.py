"""UCB-VI (Azar, Osband & Munos, 2017): optimistic finite-horizon VI with the theory's bonuses."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from icrl_agent.planning_agent import PlanningAgent

from ._planning import certainty_equivalent_q, empirical_transitions, flat, plan

_BONUSES = ("hoeffding", "bernstein")


class UCBVI(PlanningAgent):
    """UCB-VI with the Chernoff-Hoeffding (``"hoeffding"``) or Bernstein-Freedman (``"bernstein"``) bonus.

    Rewards are taken in ``[0, r]`` with ``r`` the ``reward_max`` hint (else the largest ``|r|`` seen),
    so the paper's unit-reward constants are multiplied by ``r``. With ``L = log(5 S A T / delta)``,
    ``T`` = transitions seen + ``H`` (the paper's ``T = KH`` is not known ahead), ``S`` the known states:

    - ``hoeffding``: ``b(s, a) = 7 H r L / sqrt(N(s, a))`` (Azar et al., Alg. 3);
    - ``bernstein``: ``sqrt(8 L Var_P_hat(V_{t+1}) / N) + 14 H r L / (3 N) +
      sqrt(8 sum_y P_hat(y) min(100^2 H^3 S^2 A L^2 r^2 / N'(y), H^2 r^2) / N)`` (Alg. 4), with ``N'(y)``
      the visits of ``y`` over all steps (the paper counts visits at step ``t + 1``; the stationary count
      is larger, the term saturates at ``H^2 r^2`` for any practical count either way).

    ``Q_t = min(R_hat + b + P_hat V_{t+1}, h r)`` with ``h = H - t`` steps to go (the valid per-step bound;
    the paper clips at ``H``), unvisited pairs at ``h r``. Replanned per episode (and on doubling counts,
    see :class:`PlanningAgent`). These constants make UCB-VI explore almost uniformly until each pair has
    thousands of visits: this is the agent the paper compared against. ``bonus_scale`` multiplies the bonus
    for tuned variants. ``act(obs, deterministic=True)``: greedy in the empirical MDP without bonus.

    :param observation_space: a finite Gymnasium observation space
    :param action_space: a Discrete action space
    :param seed: seed of the agent's RNG (ties, unknown states)
    :param horizon: optional episode-length hint (inferred otherwise)
    :param reward_max: optional hint on the largest ``|reward|`` (inferred otherwise)
    :param bonus: ``"hoeffding"`` or ``"bernstein"``
    :param delta: confidence level of the bounds
    :param bonus_scale: multiplier of the bonus (1 = the theory's constants)
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        seed: int = 0,
        horizon: int | None = None,
        reward_max: float | None = None,
        bonus: str = "hoeffding",
        delta: float = 0.1,
        bonus_scale: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, seed, horizon, reward_max, **kwargs)
        if bonus not in _BONUSES:
            raise ValueError(f"bonus must be one of {_BONUSES}, got {bonus!r}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        if not bonus_scale >= 0:
            raise ValueError(f"bonus_scale must be >= 0, got {bonus_scale!r}")
        self.bonus, self.delta, self.bonus_scale = bonus, float(delta), float(bonus_scale)

    def _log_term(self, horizon: int) -> float:
        S, A = self.stats.n_states, self.n_actions
        return float(np.log(5 * S * A * (self.stats.n_transitions + horizon) / self.delta))

    def _make_plan(self, horizon: int, optimistic: bool) -> np.ndarray:
        sp = self.stats.sparse()
        if not optimistic:
            return certainty_equivalent_q(sp, horizon)
        S, A = sp.n_states, sp.n_actions
        counts = flat(sp.counts)
        unvisited = counts == 0
        n = counts.clamp_min(1.0)
        transitions, reward = empirical_transitions(sp), flat(sp.reward_mean)
        r, H, L = self.reward_scale, horizon, self._log_term(horizon)
        if self.bonus == "hoeffding":
            fixed = 7 * H * r * L / torch.sqrt(n)
        else:
            visits = torch.tensor(sp.counts.sum(axis=1), dtype=torch.float64)
            # 1 / 0 = inf: a never-left state's term saturates at the cap
            per_state = torch.clamp(100**2 * H**3 * S**2 * A * L**2 * r**2 / visits, max=(H * r) ** 2)
            fixed = 14 * H * r * L / (3 * n) + torch.sqrt(8 * transitions.expect(per_state).reshape(-1) / n)
        fixed = self.bonus_scale * fixed

        def backup(k: int, v: torch.Tensor) -> torch.Tensor:  # k steps to go
            mean = transitions.expect(v).reshape(-1)
            q = reward + mean + fixed
            if self.bonus == "bernstein":
                second = transitions.expect(v**2).reshape(-1)
                q = q + self.bonus_scale * torch.sqrt(8 * L * torch.clamp(second - mean**2, min=0.0) / n)
            return torch.where(unvisited, k * r, torch.clamp(q, max=k * r))

        return plan(backup, horizon, sp)
