"""Shared machinery of the planning baselines: sparse finite-horizon VI and the replanning schedule.

The empirical MDP is read from :meth:`SufficientStats.sparse` (COO edges ``(s, a) -> s'``), so one
backup costs ``O(E + S A)`` with ``E`` the number of distinct observed transitions, never ``S^2 A``.
Mass into the absorbing terminal node carries value 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from icrl_agent.base import TabularAgent, Transition
from icrl_agent.stats import SparseStats

StepBackup = Callable[[int, np.ndarray], np.ndarray]


def expected_next(src: np.ndarray, weight: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """``sum_e weight[e] * values[e]`` per source pair: a segment sum over COO edges.

    :param src: source pair ``s * A + a`` of each edge, int ``[E]``
    :param weight: per-edge weight (a probability), float ``[E]``
    :param values: per-edge value (e.g. ``V[dst]``), float ``[E]``
    :param size: number of pairs ``S * A``
    :return: float64 ``[S * A]``
    """
    return np.bincount(src, weights=weight * values, minlength=size)


def backward_induction(horizon: int, n_states: int, n_actions: int, backup: StepBackup) -> np.ndarray:
    """Finite-horizon Q by backward induction, ``V_H = 0``.

    :param horizon: number of steps ``H``
    :param n_states: number of states ``S``
    :param n_actions: number of actions ``A``
    :param backup: ``backup(t, v_next) -> q_t``: flat ``[S * A]`` Q at elapsed step ``t`` given ``V_{t+1}[S]``
    :return: float64 ``Q[H, S, A]`` indexed by elapsed step
    """
    q = np.empty((horizon, n_states, n_actions))
    v_next = np.zeros(n_states)
    for t in range(horizon - 1, -1, -1):
        q[t] = backup(t, v_next).reshape(n_states, n_actions)
        v_next = q[t].max(axis=1) if n_states else v_next
    return q


def certainty_equivalent_q(sp: SparseStats, horizon: int) -> np.ndarray:
    """Optimal Q of the empirical MDP (mean rewards, empirical transitions); unvisited pairs are worth 0.

    :param sp: sparse statistics
    :param horizon: number of steps ``H``
    :return: float64 ``Q[H, S, A]``
    """
    size = sp.counts.size
    prob = sp.p_hat
    reward = sp.reward_mean.reshape(-1)
    return backward_induction(
        horizon, sp.n_states, sp.n_actions, lambda t, v: reward + expected_next(sp.src, prob, v[sp.dst], size)
    )


class PlanningAgent(TabularAgent):
    """A tabular agent greedy in a finite-horizon Q plan, replanned only when it matters.

    The exploring plan (:meth:`_plan`) is made at an episode start when the statistics changed since the
    last plan (so exploration is committed for the episode), when the horizon estimate changed, and
    mid-episode, at most every ``max(1, H // 20)`` steps, when a state the plan does not know is met (in
    between, its actions all tie: they are all untried) or when the count of a pair the agent took has
    doubled since the last plan (UCRL2's rule; a first visit counts as doubling). The exploitation plan
    (:meth:`_greedy_plan`) is recomputed whenever the statistics changed, so
    ``act(obs, deterministic=True)`` is a function of the statistics.
    Subclasses implement both plans as ``Q[H, S, A]`` arrays indexed by elapsed step.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._q: np.ndarray | None = None
        self._q_counts = np.zeros((0, self.n_actions), np.int64)
        self._q_version = -1
        self._stale = False
        self._steps_since_plan = 0
        self._taken_since_plan: dict[tuple[int, int], int] = {}
        self._greedy: tuple[int, int, np.ndarray] | None = None  # (version, horizon, Q)

    def _plan(self, horizon: int) -> np.ndarray:
        """The exploring plan ``Q[H, S, A]`` from the current statistics."""
        raise NotImplementedError

    def _greedy_plan(self, horizon: int) -> np.ndarray:
        """The exploitation plan ``Q[H, S, A]``; by default the certainty-equivalent VI."""
        return certainty_equivalent_q(self.stats.sparse(), horizon)

    def _exploring_q(self, state: int, step: int) -> np.ndarray:
        q, horizon = self._q, self.horizon
        may_replan = self._steps_since_plan >= max(1, horizon // 20)
        outside = q is not None and state >= q.shape[1]
        if (
            q is None
            or q.shape[0] != horizon
            or (step == 0 and self._q_version != self.stats.version)
            or ((self._stale or outside) and may_replan)
        ):
            q = self._q = self._plan(horizon)
            self._q_counts = self.stats.sparse().counts.copy()
            self._q_version = self.stats.version
            self._stale = False
            self._steps_since_plan = 0
            self._taken_since_plan.clear()
        elif outside:  # met since the plan, replanned soon: all its actions are untried, so all tie
            return np.zeros(self.n_actions)
        return q[step, state]

    def _greedy_q(self, state: int, step: int) -> np.ndarray:
        horizon = self.horizon
        if self._greedy is None or self._greedy[:2] != (self.stats.version, horizon):
            self._greedy = (self.stats.version, horizon, self._greedy_plan(horizon))
        return self._greedy[2][step, state]

    def _action_scores(self, state: int, step: int, deterministic: bool) -> np.ndarray:
        return self._greedy_q(state, step) if deterministic else self._exploring_q(state, step)

    def _on_update(self, transition: Transition) -> None:
        self._steps_since_plan += 1
        pair = (transition.state, transition.action)
        taken = self._taken_since_plan[pair] = self._taken_since_plan.get(pair, 0) + 1
        planned = int(self._q_counts[pair]) if pair[0] < self._q_counts.shape[0] else 0
        if taken >= max(planned, 1):
            self._stale = True

    def q_values(self, deterministic: bool = False) -> np.ndarray:
        """The plan the agent acts on: float64 ``Q[H, S, A]`` indexed by elapsed step and state id.

        :param deterministic: the exploitation plan instead of the exploring one
        :return: ``Q[H, S, A]`` over the states known when it was made (made now if there is none)
        """
        if self.stats.n_states == 0:
            return np.zeros((self.horizon, 0, self.n_actions))
        self._action_scores(self.stats.n_states - 1, self.step_of(0), deterministic)
        return self._greedy[2] if deterministic else self._q
