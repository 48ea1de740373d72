"""UCB-VI (Azar, Osband & Munos, 2017): optimistic finite-horizon VI with the theory's bonuses."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from ._planning import PlanningAgent, backward_induction, expected_next

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

    def _plan(self, horizon: int) -> np.ndarray:
        sp = self.stats.sparse()
        S, A = sp.n_states, sp.n_actions
        counts = sp.counts.reshape(-1)
        unvisited = counts == 0
        n = np.maximum(counts, 1).astype(np.float64)
        prob, reward = sp.p_hat, sp.reward_mean.reshape(-1)
        r, H, L = self.reward_scale, horizon, self._log_term(horizon)
        if self.bonus == "hoeffding":
            fixed = 7 * H * r * L / np.sqrt(n)
            variance_bonus = None
        else:
            visits = sp.counts.sum(axis=1).astype(np.float64)
            cap = (H * r) ** 2
            with np.errstate(divide="ignore"):
                per_state = np.minimum(100**2 * H**3 * S**2 * A * L**2 * r**2 / visits, cap)
            fixed = 14 * H * r * L / (3 * n) + np.sqrt(
                8 * expected_next(sp.src, prob, per_state[sp.dst], S * A) / n
            )

            def variance_bonus(v_next: np.ndarray, mean: np.ndarray) -> np.ndarray:
                second = expected_next(sp.src, prob, v_next[sp.dst] ** 2, S * A)
                return np.sqrt(8 * L * np.maximum(second - mean**2, 0.0) / n)

        fixed = self.bonus_scale * fixed

        def backup(t: int, v_next: np.ndarray) -> np.ndarray:
            h = H - t
            mean = expected_next(sp.src, prob, v_next[sp.dst], S * A)
            q = reward + mean + fixed
            if variance_bonus is not None:
                q += self.bonus_scale * variance_bonus(v_next, mean)
            q = np.minimum(q, h * r)
            q[unvisited] = h * r
            return q

        return backward_induction(horizon, S, A, backup)
