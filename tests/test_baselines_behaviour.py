"""What the planning baselines' exploration rests on: PSRL's posterior and OptimisticVI's bonus.

Both are checked against closed forms written here from the docstrings, not against the code's own
formulas: PSRL's sampled mean rewards against the Student-t marginal of its Normal-Gamma posterior,
OptimisticVI's plan against the empirical MDP plus a bonus that favours rarely tried pairs.
"""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from icrl_agent.baselines import PSRL, OptimisticVI

# rewards observed per (state, action) of a 3-state, 2-action MDP (state 2 is never left): a few noisy,
# one single, many identical, and a wide spread around 0
REWARDS = {(0, 0): [4.0, 6.0, 5.0, 5.0], (0, 1): [-3.0], (1, 0): [0.5] * 10, (1, 1): [-2.0, 2.0] * 3}
N_SAMPLES = 4000


def feed(agent, rewards: dict[tuple[int, int], list[float]]) -> None:
    for (s, a), values in rewards.items():
        for r in values:
            agent.observe(s, a, r, 2 if s == 1 else 1, False, True)  # one-step episodes


def student_t_marginal(values: list[float], scale: float) -> tuple[float, float, float]:
    """``(location, scale, dof)`` of the posterior mean reward under PSRL's documented prior.

    Prior: ``r ~ Normal(mu, 1/tau)``, ``mu | tau ~ Normal(0, 1/tau)`` (``kappa0 = 1``), ``tau ~ Gamma(2,
    rate=scale^2)``. Conjugate update with ``n`` rewards of mean ``m``: ``kappa = 1 + n``, ``mu_n = n m /
    kappa``, ``a = 2 + n/2``, ``b = scale^2 + sum (r - m)^2 / 2 + n m^2 / (2 kappa)``; the marginal of ``mu``
    is Student-t with ``2a`` degrees of freedom, location ``mu_n`` and scale ``sqrt(b / (a kappa))``.
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    m = x.mean() if n else 0.0
    kappa, a = 1.0 + n, 2.0 + n / 2
    b = scale**2 + ((x - m) ** 2).sum() / 2 + n * m**2 / (2 * kappa)
    return n * m / kappa, float(np.sqrt(b / (a * kappa))), 2 * a


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("reward_max", [None, 2.0])
def test_psrl_sampled_mean_rewards_follow_the_normal_gamma_posterior(seed, reward_max):
    agent = PSRL(spaces.Discrete(3), spaces.Discrete(2), seed=seed, reward_max=reward_max)
    feed(agent, REWARDS)
    scale = reward_max or 6.0  # the hint, else the largest |r| seen
    # with one step to go, Q of the sampled MDP is its sampled mean reward
    samples = np.stack([agent._make_plan(1, optimistic=True)[0] for _ in range(N_SAMPLES)])  # [N, S, A]
    reference_t = np.random.default_rng(1000 + seed)
    for s in range(3):
        for a in range(2):
            loc, t_scale, dof = student_t_marginal(REWARDS.get((s, a), []), scale)
            x = samples[:, s, a]
            sd = t_scale * np.sqrt(dof / (dof - 2))  # the Student-t standard deviation
            what = f"pair ({s}, {a}), reward_max={reward_max}"
            assert abs(x.mean() - loc) < 5 * sd / np.sqrt(N_SAMPLES), (what, x.mean(), loc)
            # the spread: at the quantiles of Student-t draws, the standardized samples' CDF has those levels
            z = (x - loc) / t_scale
            levels = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
            cuts = np.quantile(reference_t.standard_t(dof, size=200_000), levels)
            ecdf = (z[:, None] <= cuts).mean(0)  # binomial noise: sd <= 0.008 at N = 4000
            np.testing.assert_allclose(ecdf, levels, atol=0.035, err_msg=what)
            if dof > 6:  # a light enough tail for the sample standard deviation to settle
                assert abs(x.std() / sd - 1) < 0.1, (what, x.std(), sd)


def test_psrl_posterior_spread_shrinks_with_visits_and_grows_with_the_reward_scale():
    spreads = {}
    for n_visits in (0, 4, 64):
        for reward_max in (1.0, 10.0):
            agent = PSRL(spaces.Discrete(3), spaces.Discrete(2), seed=0, reward_max=reward_max)
            feed(agent, {(0, 0): [0.5] * n_visits, (1, 1): [1.0]})
            samples = [agent._make_plan(1, optimistic=True)[0][0, 0] for _ in range(1500)]
            spreads[n_visits, reward_max] = np.subtract(*np.quantile(samples, [0.75, 0.25]))  # robust to t tails
    for reward_max in (1.0, 10.0):
        assert spreads[0, reward_max] > 2 * spreads[4, reward_max] > 4 * spreads[64, reward_max]
    for n_visits in (0, 4, 64):
        assert spreads[n_visits, 10.0] > 5 * spreads[n_visits, 1.0]


@pytest.mark.parametrize("prior_mass", [1.0, 4.0])
def test_psrl_sampled_transitions_follow_the_dirichlet_posterior(prior_mass):
    """Each pair's successors (the S known states and the terminal node) get Dirichlet(count + alpha0) with
    alpha0 = prior_mass / (S + 1): the sampled probabilities have its mean and variance, the S - k unseen
    known states sharing their lumped mass evenly."""
    agent = PSRL(spaces.Discrete(4), spaces.Discrete(2), seed=0, prior_mass=prior_mass)
    counts = {(0, 0): {1: 3, 2: 1}, (1, 0): {3: 2}, (2, 1): {0: 5}}
    terminal = {(0, 0): 2, (2, 1): 0}
    for (s, a), succ in counts.items():
        for s_next, n in succ.items():
            for _ in range(n):
                agent.observe(s, a, 0.0, s_next, False, False)
        for _ in range(terminal.get((s, a), 0)):
            agent.observe(s, a, 0.0, 0, True, False)
    sp = agent.stats.sparse()
    n_states, n_actions = sp.n_states, sp.n_actions
    alpha0 = prior_mass / (n_states + 1)
    draws = []
    for _ in range(N_SAMPLES):
        prob, lump, unseen = agent._transition_weights()
        full = np.zeros((n_states * n_actions, n_states + 1))  # last column: the terminal node
        full[sp.src, sp.dst] = prob
        per_unseen = np.divide(lump, unseen, out=np.zeros_like(lump), where=unseen > 0)
        seen = full[:, :n_states] > 0
        full[:, :n_states] += np.where(seen, 0.0, per_unseen[:, None])
        full[:, n_states] = 1.0 - full[:, :n_states].sum(-1)
        draws.append(full)
    draws = np.stack(draws)  # [N, S*A, S+1]
    for s in range(n_states):
        for a in range(n_actions):
            alpha = np.full(n_states + 1, alpha0)
            for s_next, n in counts.get((s, a), {}).items():
                alpha[s_next] += n
            alpha[n_states] += terminal.get((s, a), 0)
            total = alpha.sum()
            x = draws[:, s * n_actions + a]
            observed = alpha > alpha0
            mean = alpha / total
            var = alpha * (total - alpha) / (total**2 * (total + 1))
            # observed successors: Dirichlet marginals; unseen ones: an even share of the lumped mass
            unseen_mean = alpha0 / total
            np.testing.assert_allclose(x.mean(0)[observed], mean[observed], atol=5 * np.sqrt(var.max() / N_SAMPLES))
            np.testing.assert_allclose(x.mean(0)[~observed], unseen_mean, atol=5 * np.sqrt(var.max() / N_SAMPLES))
            np.testing.assert_allclose(x.var(0)[observed], var[observed], rtol=0.15, atol=1e-4)


def optimistic_agent(c: float = 0.1) -> OptimisticVI:
    """State 0: action 0 tried 15 times, action 1 once (same reward and successor), action 2 never."""
    agent = OptimisticVI(spaces.Discrete(3), spaces.Discrete(3), seed=0, horizon=4, c=c)
    for a, n in ((0, 15), (1, 1)):
        for _ in range(n):
            agent.observe(0, a, 0.5, 1, False, False)
    agent.observe(1, 0, 0.0, 2, False, True)
    agent.observe(2, 1, -0.5, 0, False, True)
    return agent


def test_optimistic_vi_bonus_raises_the_value_of_rarely_tried_pairs():
    agent = optimistic_agent()
    # q_values is by steps to go; reversed here so that [t] is elapsed step t
    optimistic, greedy = agent.q_values()[::-1], agent.q_values(deterministic=True)[::-1]
    horizon = optimistic.shape[0]
    visited = agent.stats.sparse().counts > 0
    # optimism only ever adds value; on visited pairs a positive bonus, on unvisited ones the most possible
    assert (optimistic[:, visited] > greedy[:, visited]).all()
    assert (optimistic >= greedy - 1e-12).all()
    for t in range(horizon):
        h = horizon - t
        # the pair tried once is worth more than the one tried 15 times (same reward, same successor)
        assert optimistic[t, 0, 1] > optimistic[t, 0, 0]
        # by the bonus difference, which grows with the steps to go: c * h * span / sqrt(N + 1)
        gap = 0.1 * h * agent.reward_span * (1 / np.sqrt(2) - 1 / np.sqrt(16))
        assert optimistic[t, 0, 1] - optimistic[t, 0, 0] == pytest.approx(gap)
        assert greedy[t, 0, 1] == pytest.approx(greedy[t, 0, 0])
        # an untried pair is worth the largest reward seen at every step to go
        assert optimistic[t, 0, 2] == pytest.approx(h * agent.reward_scale)
    # with one step to go the bonus is exactly c * span / sqrt(N + 1)
    bonus = optimistic[-1] - greedy[-1]
    span = agent.reward_span
    assert bonus[0, 0] == pytest.approx(0.1 * span / np.sqrt(16))
    assert bonus[0, 1] == pytest.approx(0.1 * span / np.sqrt(2))
    # and the exploring agent acts on it: never the well-known action in state 0
    assert agent.act(0) == int(np.argmax(optimistic[0, 0])) != 0


def test_optimistic_vi_without_bonus_adds_nothing_to_tried_pairs_with_one_step_to_go():
    agent = optimistic_agent(c=0.0)
    optimistic, greedy = agent.q_values()[::-1], agent.q_values(deterministic=True)[::-1]  # by elapsed step
    visited = agent.stats.sparse().counts > 0
    np.testing.assert_allclose(optimistic[-1][visited], greedy[-1][visited])
