"""What the planning baselines share: the empirical MDP as sparse transitions, and its plain VI.

The planning itself (backward induction, the steps-to-go ``Q`` convention) is :mod:`icrl_agent.solvers`;
the plan cache and replanning rule are :class:`icrl_agent.planning_agent.PlanningAgent`. The empirical MDP
is read from :meth:`SufficientStats.sparse` (COO edges ``(s, a) -> s'``), so one backup costs
``O(E + S A)`` with ``E`` the number of distinct observed transitions, never ``S^2 A``. Mass into the
absorbing terminal node carries value 0.
"""

from __future__ import annotations

import numpy as np
import torch

from icrl_agent import solvers
from icrl_agent.stats import SparseStats


def empirical_transitions(sp: SparseStats) -> solvers.SparseTransitions:
    """``P̂(s' | s, a)`` of the statistics as sparse transitions (terminal mass left out: worth 0)."""
    return solvers.SparseTransitions.from_numpy(sp.src, sp.dst, sp.p_hat, sp.n_states, sp.n_actions)


def flat(x: np.ndarray) -> torch.Tensor:
    """A per-pair ``[S, A]`` (or ``[S * A]``) array as a flat float64 tensor ``[S * A]``."""
    return torch.tensor(np.asarray(x), dtype=torch.float64).reshape(-1)


def plan(backup: solvers.Backup, horizon: int, sp: SparseStats) -> np.ndarray:
    """Backward induction of a flat per-pair backup, as the numpy ``Q[H, S, A]`` (steps to go) agents cache.

    :param backup: ``backup(k, V_{k-1}[S]) -> Q_k[S * A]`` with ``k`` steps to go
    :param horizon: number of steps ``H``
    :param sp: the statistics (for ``S`` and ``A``)
    :return: float64 ``Q[H, S, A]`` indexed by steps to go
    """
    shape = (sp.n_states, sp.n_actions)
    q = solvers.backward_induction(
        lambda k, v: backup(k, v).view(shape), horizon, torch.zeros(sp.n_states, dtype=torch.float64)
    )
    return q.numpy()


def certainty_equivalent_q(sp: SparseStats, horizon: int) -> np.ndarray:
    """Optimal Q of the empirical MDP (mean rewards, empirical transitions); unvisited pairs are worth 0.

    :param sp: sparse statistics
    :param horizon: number of steps ``H``
    :return: float64 ``Q[H, S, A]`` indexed by steps to go
    """
    transitions, reward = empirical_transitions(sp), flat(sp.reward_mean)
    return plan(lambda k, v: transitions.expect(v, reward), horizon, sp)
