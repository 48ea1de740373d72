"""Posterior sampling for RL (Osband, Russo & Van Roy, 2013): act optimally in one sampled MDP per episode."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from icrl_agent import solvers
from icrl_agent.planning_agent import PlanningAgent

from ._planning import certainty_equivalent_q, flat, plan


class PSRL(PlanningAgent):
    """PSRL with a Dirichlet transition prior and a Normal-Gamma reward prior, solved by finite-horizon VI.

    **Transitions.** The successors of ``(s, a)`` are the ``S`` known states plus the absorbing terminal
    node, with a ``Dirichlet(alpha0)`` prior on each (``alpha0 = prior_mass / (S + 1)``, so the prior weighs
    ``prior_mass`` transitions in total, 1 by default). A sample draws ``Gamma(count + alpha0)`` for every
    observed successor and the terminal node, and one ``Gamma(alpha0 * (S - k))`` for the ``S - k`` known
    states never seen after ``(s, a)`` (the Dirichlet aggregation property: the total mass on unseen
    successors is sampled exactly). That lumped mass is spread evenly over those unseen known states (the
    mean of its exact split), so an unvisited pair jumps to a uniformly random known state or ends.
    States not met yet cannot be planned for and carry no mass.

    **Rewards.** Per pair, ``r ~ Normal(mu, 1 / tau)`` with the conjugate prior ``mu | tau ~ Normal(0,
    1 / tau)``, ``tau ~ Gamma(2, rate=scale^2)``: the prior mean reward is 0 with a Student-t spread
    ``scale / sqrt(2)``; ``scale`` is the ``reward_max`` hint, else the largest ``|r|`` seen, else 1 while no
    non-zero reward was seen. Deterministic rewards shrink the posterior as ``1/N`` (not ``1/sqrt N``).

    One MDP is sampled at each episode start (and resampled when a count doubles, see
    :class:`PlanningAgent`); the agent is greedy in its finite-horizon Q. ``act(obs, deterministic=True)``
    is greedy in the empirical MDP (unvisited pairs worth 0), like the other planners: the posterior mean
    keeps ~``1/N`` mass on unseen successors, enough to flip near-tied late-step choices on RiverSwim.

    :param observation_space: a finite Gymnasium observation space
    :param action_space: a Discrete action space
    :param seed: seed of the agent's RNG (posterior samples, ties, unknown states)
    :param horizon: optional episode-length hint (inferred otherwise)
    :param reward_max: optional hint on the largest ``|reward|`` (the reward prior's scale)
    :param prior_mass: total Dirichlet pseudo-count of each pair's transition prior
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        seed: int = 0,
        horizon: int | None = None,
        reward_max: float | None = None,
        prior_mass: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, seed, horizon, reward_max, **kwargs)
        if not prior_mass > 0:
            raise ValueError(f"prior_mass must be > 0, got {prior_mass!r}")
        self.prior_mass = float(prior_mass)

    def _reward_posterior(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Normal-Gamma posterior ``(mu_n, kappa_n, a_n, b_n)`` per flat pair."""
        sp = self.stats.sparse()
        scale = self.reward_scale or 1.0
        n = sp.counts.reshape(-1).astype(np.float64)
        mean = sp.reward_mean.reshape(-1)
        kappa = 1.0 + n
        mu = n * mean / kappa
        a = 2.0 + n / 2
        b = scale**2 + n * sp.reward_var.reshape(-1) / 2 + n * mean**2 / (2 * kappa)
        return mu, kappa, a, b

    def _transition_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sampled per-edge probabilities, per-pair mass on unseen known states, and how many there are."""
        sp = self.stats.sparse()
        S, size = sp.n_states, sp.counts.size
        alpha0 = self.prior_mass / (S + 1)
        seen = np.bincount(sp.src, minlength=size)
        unseen = (S - seen).astype(np.float64)
        edge = sp.count + alpha0
        term = sp.terminal_counts.reshape(-1) + alpha0
        edge, term, lump = self.rng.gamma(edge), self.rng.gamma(term), self.rng.gamma(alpha0 * unseen)
        total = np.bincount(sp.src, weights=edge, minlength=size) + term + lump
        return edge / total[sp.src], lump / total, unseen

    def _solve(self, reward: np.ndarray, horizon: int) -> np.ndarray:
        sp = self.stats.sparse()
        S, A = sp.n_states, sp.n_actions
        prob, lump, unseen = self._transition_weights()
        per_unseen = flat(np.divide(lump, unseen, out=np.zeros_like(lump), where=unseen > 0))
        sampled = solvers.SparseTransitions.from_numpy(sp.src, sp.dst, prob, S, A)
        edges = solvers.SparseTransitions.from_numpy(sp.src, sp.dst, np.ones_like(prob), S, A)
        reward_t = flat(reward)

        def backup(k: int, v: torch.Tensor) -> torch.Tensor:
            on_seen = edges.expect(v).reshape(-1)  # value summed over each pair's seen successors
            return sampled.expect(v, reward_t).reshape(-1) + per_unseen * (v.sum() - on_seen)

        return plan(backup, horizon, sp)

    def _make_plan(self, horizon: int, optimistic: bool) -> np.ndarray:
        if not optimistic:
            return certainty_equivalent_q(self.stats.sparse(), horizon)
        mu, kappa, a, b = self._reward_posterior()
        tau = self.rng.gamma(a, 1.0 / b)
        reward = self.rng.normal(mu, 1.0 / np.sqrt(kappa * tau))
        return self._solve(reward, horizon)
