"""The classical baselines' parameters, word for word: every refused value names the parameter and its
valid range, the boundaries of each range are accepted and stored as floats; Random's deterministic
policy is a fixed, seed-dependent action per state that never consumes the RNG."""

import numpy as np
import pytest
from gymnasium import spaces

from icrl_agent.baselines import PSRL, UCBVI, VILCB, OptimisticVI, QLearning, Random

OBS, ACT = spaces.Discrete(4), spaces.Discrete(3)


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (OptimisticVI, {"c": -0.1}, "c must be >= 0, got -0.1"),
        (OptimisticVI, {"c": float("nan")}, "c must be >= 0, got nan"),
        (PSRL, {"prior_mass": 0}, "prior_mass must be > 0, got 0"),
        (PSRL, {"prior_mass": -1.0}, "prior_mass must be > 0, got -1.0"),
        (PSRL, {"prior_mass": float("nan")}, "prior_mass must be > 0, got nan"),
        (QLearning, {"epsilon": -0.01}, "epsilon must be in [0, 1], got -0.01"),
        (QLearning, {"epsilon": 1.5}, "epsilon must be in [0, 1], got 1.5"),
        (QLearning, {"lr_exponent": 0.5}, "lr_exponent must be in (0.5, 1], got 0.5"),
        (QLearning, {"lr_exponent": 1.01}, "lr_exponent must be in (0.5, 1], got 1.01"),
        (QLearning, {"learning_rate": 0.0}, "learning_rate must be in (0, 1] or None, got 0.0"),
        (QLearning, {"learning_rate": 1.2}, "learning_rate must be in (0, 1] or None, got 1.2"),
        (QLearning, {"optimism": -1}, "optimism must be >= 0, got -1"),
        (UCBVI, {"bonus": "bayes"}, "bonus must be one of ('hoeffding', 'bernstein'), got 'bayes'"),
        (UCBVI, {"delta": 0.0}, "delta must be in (0, 1), got 0.0"),
        (UCBVI, {"delta": 1.0}, "delta must be in (0, 1), got 1.0"),
        (UCBVI, {"bonus_scale": -2.0}, "bonus_scale must be >= 0, got -2.0"),
        (VILCB, {"beta": -0.5}, "beta must be >= 0, got -0.5"),
        (VILCB, {"beta": float("nan")}, "beta must be >= 0, got nan"),
    ],
)
def test_bad_parameter_names_itself_and_its_range(cls, kwargs, message):
    with pytest.raises(ValueError) as err:
        cls(OBS, ACT, **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "cls, kwargs, attrs",
    [
        (OptimisticVI, {}, {"c": 0.003}),
        (OptimisticVI, {"c": 0}, {"c": 0.0}),
        (PSRL, {}, {"prior_mass": 1.0}),
        (PSRL, {"prior_mass": 1e-9}, {"prior_mass": 1e-9}),
        (QLearning, {}, {"epsilon": 0.1, "lr_exponent": 0.6, "learning_rate": None, "optimism": 1.0}),
        (QLearning, {"epsilon": 0, "lr_exponent": 1, "learning_rate": 1.0, "optimism": 0}, {
            "epsilon": 0.0, "lr_exponent": 1.0, "learning_rate": 1.0, "optimism": 0.0}),
        (QLearning, {"epsilon": 1, "lr_exponent": 0.51}, {"epsilon": 1.0, "lr_exponent": 0.51}),
        (UCBVI, {}, {"bonus": "hoeffding", "delta": 0.1, "bonus_scale": 1.0}),
        (UCBVI, {"bonus": "bernstein", "delta": 0.999, "bonus_scale": 0}, {
            "bonus": "bernstein", "delta": 0.999, "bonus_scale": 0.0}),
        (VILCB, {}, {"beta": 0.1}),
        (VILCB, {"beta": 0}, {"beta": 0.0}),
    ],
)
def test_parameters_at_their_bounds_are_accepted_as_floats(cls, kwargs, attrs):
    agent = cls(OBS, ACT, **kwargs)
    for name, value in attrs.items():
        got = getattr(agent, name)
        assert got == value, name
        if isinstance(value, float):
            assert type(got) is float, name


def test_qlearning_gamma_and_epsilon_schedule():
    agent = QLearning(OBS, ACT, horizon=10, epsilon=0.4)
    assert agent.gamma == pytest.approx(0.9)
    assert agent.current_epsilon == pytest.approx(0.4)
    for _ in range(3):  # three finished episodes
        agent.observe(0, 0, 0.0, 1, True, False)
    assert agent.current_epsilon == pytest.approx(0.4 / 2)


def test_random_deterministic_policy_is_fixed_per_state_and_seed():
    obs_space = spaces.MultiDiscrete([5, 5])
    act_space = spaces.Discrete(4, start=2)
    a, b = Random(obs_space, act_space, seed=7), Random(obs_space, act_space, seed=7)
    observations = [np.array([i, j]) for i in range(5) for j in range(5)]
    state = a.rng.bit_generator.state
    fixed = [a.act(o, deterministic=True) for o in observations]
    assert a.rng.bit_generator.state == state  # never consumes the RNG
    assert fixed == [b.act(o, deterministic=True) for o in observations] == [
        a.act(o, deterministic=True) for o in observations
    ]
    assert set(fixed) == {2, 3, 4, 5}  # uniform over the 4 actions: all of them over 25 states
    other = Random(obs_space, act_space, seed=8)
    assert [other.act(o, deterministic=True) for o in observations] != fixed
    for o in observations[:6]:
        a.observe(o, 2, 0.0, o, False, False)
    greedy = a.policy(deterministic=True)
    action_of = {tuple(o.tolist()): action for o, action in zip(observations, fixed, strict=True)}
    for s in range(a.stats.n_states):
        expected = np.eye(4)[action_of[tuple(a.stats.observation(s).tolist())] - act_space.start]
        np.testing.assert_array_equal(greedy[s], expected)
    np.testing.assert_array_equal(a.policy(), np.full((a.stats.n_states, 4), 0.25))


def test_random_exploring_actions_are_uniform():
    agent = Random(OBS, spaces.Discrete(3, start=-1), seed=0)
    actions = [agent.act(0) for _ in range(600)]
    assert set(actions) == {-1, 0, 1}
    assert all(150 < actions.count(a) < 250 for a in (-1, 0, 1))


# ---------------------------------------------------------------- the shared constructor


@pytest.mark.parametrize("cls", [OptimisticVI, PSRL, QLearning, UCBVI, VILCB, Random])
def test_baselines_default_seed_is_zero_and_unknown_keywords_are_refused(cls):
    """The documented constructor is ``Cls(obs, act, seed=0, horizon=None, reward_max=None, **params)``: the
    default seed is 0, and a misspelt parameter is a TypeError, never silently ignored."""
    assert cls(OBS, ACT).seed == 0
    with pytest.raises(TypeError):
        cls(OBS, ACT, epsilonn=0.2)


# ---------------------------------------------------------------- Q-learning's update, seen through its greedy policy


def _greedy_prefers_first(rewards, reference, **kwargs):
    """Q-learning on one state and two actions, every step terminal: action 0 gets ``rewards`` in turn, action 1
    ``reference`` once (its first visit sets Q to it exactly). The greedy policy (ties to the first action)
    picks action 0 iff ``Q(0, 0) >= reference``."""
    agent = QLearning(OBS, spaces.Discrete(2), horizon=10, optimism=0, **kwargs)
    for r in rewards:
        agent.observe(0, 0, r, 1, True, False)
    agent.observe(0, 1, reference, 1, True, False)
    return agent.act(0, deterministic=True) == 0


@pytest.mark.parametrize(
    "kwargs, rewards, q",
    [
        ({"lr_exponent": 1}, [1.0, 0.0, 0.2], 0.4),  # alpha = 1/N: the running mean of the rewards
        ({}, [1.0, 0.0], 1 - 2**-0.6),  # the default alpha = 1/N^0.6: 1, then 1/2^0.6
        ({"learning_rate": 0.5}, [0.8, 0.8], 0.8),  # the first visit overwrites, even with a constant rate
        ({"learning_rate": 0.5}, [0.8, 0.0], 0.4),  # then the constant rate
    ],
)
def test_qlearning_learning_rate_schedule(kwargs, rewards, q):
    """A terminal pair's Q after the rewards ``rewards``: the first visit sets it (alpha = 1), visit N moves it
    by ``alpha = learning_rate`` or ``1 / N ** lr_exponent``; read off the greedy choice against a reference."""
    assert _greedy_prefers_first(rewards, q - 0.01, **kwargs)
    assert not _greedy_prefers_first(rewards, q + 0.01, **kwargs)


def test_qlearning_optimism_is_for_exploring_only():
    """An untried pair is worth ``optimism * reward_max`` to the exploring policy (epsilon = 0 here: greedy in
    optimistic Q, ties uniform) and 0 to the greedy one (deterministic=True: ties to the first action)."""
    agent = QLearning(OBS, ACT, horizon=10, reward_max=1.0, epsilon=0.0)
    agent.observe(0, 0, 0.5, 1, True, False)
    s = agent.stats.state_id(0)
    np.testing.assert_allclose(agent.policy(deterministic=False)[s], [0.0, 0.5, 0.5])
    np.testing.assert_array_equal(agent.policy(deterministic=True)[s], [1.0, 0.0, 0.0])
    agent = QLearning(OBS, ACT, horizon=10, reward_max=1.0, epsilon=0.0, optimism=0.4)  # 0.4 < 0.5: stay
    agent.observe(0, 0, 0.5, 1, True, False)
    np.testing.assert_array_equal(agent.policy(deterministic=False)[s], [1.0, 0.0, 0.0])


def test_qlearning_fit_does_not_bootstrap_terminated_transitions():
    """``fit`` replays a dataset through the same update: a terminated transition's target is its reward alone
    (no value of the next state), so 0.5 then the end loses to 1.0 then the end, whatever follows state 1."""
    agent = QLearning(OBS, spaces.Discrete(2), horizon=10, optimism=0)
    agent.fit({
        "observations": [1, 0, 0],
        "actions": [0, 0, 1],
        "rewards": [1.0, 0.5, 1.0],
        "next_observations": [2, 1, 2],
        "terminations": [True, True, True],
    })
    assert agent.act(0, deterministic=True) == 1  # bootstrapping would give action 0 0.5 + 0.9 * 1.0


def test_qlearning_grows_its_table_with_more_actions_than_rows():
    """Q-learning's table starts at 16 rows and grows as states come, whatever the number of actions (here 40
    states and 40 actions): every state keeps the action that paid in it."""
    wide = QLearning(spaces.Discrete(40), spaces.Discrete(40), horizon=50, optimism=0)
    for s in range(39):
        wide.observe(s, s, 1.0, s + 1, False, False)
    wide.observe(39, 39, 1.0, 0, True, False)
    assert wide.stats.n_states == 40
    assert [wide.act(s, deterministic=True) for s in range(40)] == list(range(40))


def test_random_unseeded_fixed_policy_is_the_seed_zero_one():
    """``Random(seed=None)`` still has a reproducible deterministic policy: the fixed actions of seed 0."""
    obs_space = spaces.Discrete(30)
    unseeded, zero = Random(obs_space, ACT, seed=None), Random(obs_space, ACT, seed=0)
    assert [unseeded.act(o, deterministic=True) for o in range(30)] == [
        zero.act(o, deterministic=True) for o in range(30)
    ]


@pytest.mark.parametrize("cls", [OptimisticVI, PSRL, QLearning, UCBVI, VILCB, Random])
def test_baselines_use_the_horizon_and_reward_max_hints(cls):
    """The ``horizon`` and ``reward_max`` hints reach the agent: its horizon and reward scale are theirs."""
    agent = cls(OBS, ACT, horizon=7, reward_max=2.5)
    assert (agent.horizon, agent.reward_scale) == (7, 2.5)


# ---------------------------------------------------------------- UCB-VI's plan against the documented formula

# (obs, action, reward, next_obs, terminated, truncated): pair (0, 0) three times with two outcomes (whose
# values differ: a variance), the other pairs of states 0-2 once, state 3 (only reached) never left
UCBVI_DATA = [
    (0, 0, 0.1, 1, False, False), (1, 0, 0.2, 0, False, False), (0, 0, 0.3, 2, False, True),
    (0, 1, 0.0, 2, False, False), (2, 1, 0.4, 0, False, False), (0, 0, 0.1, 1, False, True),
    (1, 1, 0.0, 0, False, False), (2, 0, 0.05, 3, False, True),
]


def _ucbvi_reference(bonus, H, r, scale, delta):
    """UCB-VI's optimistic ``Q[H, S, A]`` (index k - 1: k steps to go) by its docstring, in observation order."""
    S, A = 4, 2
    n_sa = np.zeros((S, A))
    p = np.zeros((S, A, S))
    rew = np.zeros((S, A))
    for s, a, reward, s2, _, _ in UCBVI_DATA:
        n_sa[s, a] += 1
        p[s, a, s2] += 1
        rew[s, a] += reward
    n = np.maximum(n_sa, 1)
    p, rew = p / n[..., None], rew / n
    L = np.log(5 * S * A * (len(UCBVI_DATA) + H) / delta)
    if bonus == "hoeffding":
        fixed = 7 * H * r * L / np.sqrt(n)
    else:
        with np.errstate(divide="ignore"):  # a never-left state: inf, capped
            per_state = np.minimum(100**2 * H**3 * S**2 * A * L**2 * r**2 / n_sa.sum(axis=1), (H * r) ** 2)
        fixed = 14 * H * r * L / (3 * n) + np.sqrt(8 * (p @ per_state) / n)
    fixed = scale * fixed
    v, out = np.zeros(S), []
    for k in range(1, H + 1):
        mean = p @ v
        q = rew + mean + fixed
        if bonus == "bernstein":
            q = q + scale * np.sqrt(8 * L * np.maximum(p @ v**2 - mean**2, 0.0) / n)
        q = np.where(n_sa == 0, k * r, np.minimum(q, k * r))
        out.append(q)
        v = q.max(axis=1)
    return np.stack(out)


@pytest.mark.parametrize("bonus", ["hoeffding", "bernstein"])
@pytest.mark.parametrize("scale, r", [(1e-3, 0.5), (1.0, 0.5), (1e-3, 100.0)])
def test_ucbvi_optimistic_plan_is_the_documented_formula(bonus, scale, r):
    """UCB-VI's exploring plan: ``Q_k = min(R_hat + P_hat V_{k-1} + b, k r)``, unvisited pairs at ``k r``, with
    ``L = log(5 S A (T + H) / delta)`` and the Hoeffding bonus ``7 H r L / sqrt(N)`` or Bernstein's three
    terms (both times ``bonus_scale``); a small ``bonus_scale`` keeps the values under the cap so every term
    shows, ``bonus_scale = 1`` pins the cap; a large ``r`` unsaturates Bernstein's per-state term."""
    H, delta = 3, 0.2
    agent = UCBVI(OBS, spaces.Discrete(2), horizon=H, reward_max=r, bonus=bonus, bonus_scale=scale, delta=delta)
    for row in UCBVI_DATA:
        agent.observe(*row)
    ids = [agent.stats.state_id(o) for o in range(4)]
    expected = _ucbvi_reference(bonus, H, r, scale, delta)
    np.testing.assert_allclose(agent.q_values()[:, ids], expected, rtol=1e-12, atol=1e-12)
    if scale < 1:
        assert (expected[:, _counts_by_obs(agent) > 0] < np.arange(1, H + 1)[:, None] * r).all()  # under the cap


def _counts_by_obs(agent):
    """``N(obs, a)`` of the 4 x 2 pairs."""
    return np.array([[agent.stats.sparse().counts[agent.stats.state_id(o), a] for a in range(2)] for o in range(4)])


@pytest.mark.parametrize(
    "beta, rewards, unvisited_rate",
    [
        (0.1, [-0.5, 1.0], -0.5 - 0.1 * 2.0),  # r_lo = the smallest reward seen, below 0
        (0.1, [0.5, 1.0], 0.0 - 0.1 * 2.0),  # r_lo = 0 when every reward is positive
        (0.0, [-0.5, 1.0], 0.0),  # beta = 0: plain VI, unvisited pairs worth 0
    ],
)
def test_vilcb_unvisited_pairs_are_worth_less_than_any_return(beta, rewards, unvisited_rate):
    """VI-LCB values an unvisited pair at ``h (r_lo - beta r)`` with ``h`` steps to go, ``r_lo = min(0, smallest
    reward seen)`` and ``r`` the reward scale (hint 2.0 here); ``beta = 0`` gives plain VI (worth 0)."""
    agent = VILCB(OBS, ACT, horizon=4, reward_max=2.0, beta=beta)
    for r in rewards:
        agent.observe(0, 0, r, 1, True, False)
    q = agent.q_values(deterministic=True)[:, agent.stats.state_id(0)]
    np.testing.assert_allclose(q[:, 1:], np.arange(1, 5)[:, None] * unvisited_rate * np.ones((1, 2)))


# ---------------------------------------------------------------- PSRL's sampled MDP


def test_psrl_reward_prior_scale_is_one_before_any_nonzero_reward():
    """Without a hint and before any non-zero reward, PSRL's reward prior has scale 1: an unvisited pair's
    sampled mean reward is Student-t (4 dof) with scale ``1 / sqrt(2)``, interquartile range 1.048."""
    agent = PSRL(spaces.Discrete(3), spaces.Discrete(2), seed=0)
    agent.observe(0, 0, 0.0, 1, False, True)
    assert agent.reward_scale == 0.0
    s = agent.stats.state_id(1)
    samples = [agent._make_plan(1, optimistic=True)[0][s, 1] for _ in range(1500)]
    iqr = np.subtract(*np.quantile(samples, [0.75, 0.25]))
    assert 0.9 < iqr < 1.2, iqr  # scale 2 would give 2.1


def test_psrl_sampled_mdp_spreads_the_lump_over_unseen_known_states():
    """PSRL's sampled MDP: each pair moves to its seen successors with the sampled probabilities and puts the
    sampled lump mass evenly on its unseen known states (``lump / (S - k)``, here k = 1 and 2 of S = 3); the
    plan is finite-horizon VI in it (checked against the sampled weights and rewards themselves)."""
    agent = PSRL(spaces.Discrete(3), spaces.Discrete(2), seed=3, reward_max=1.0)
    for row in [(0, 0, 0.5, 1, False, False), (1, 0, 0.2, 0, False, False), (1, 0, 0.3, 2, False, False),
                (2, 1, 1.0, 0, False, True)]:
        agent.observe(*row)
    sp = agent.stats.sparse()
    S, A, H = sp.n_states, sp.n_actions, 3
    reward = np.random.default_rng(0).uniform(0.1, 1.0, S * A)
    state = agent.rng.bit_generator.state
    q = agent._solve(reward, H)
    agent.rng.bit_generator.state = state
    prob, lump, unseen = agent._transition_weights()  # the same draws
    assert sorted(unseen[sp.counts.reshape(-1) > 0].tolist()) == [1.0, 2.0, 2.0]
    v = np.zeros(S)
    for k in range(H):
        on_seen, expected = np.zeros(S * A), reward.copy()
        np.add.at(on_seen, sp.src, v[sp.dst])
        np.add.at(expected, sp.src, prob * v[sp.dst])
        expected += np.where(unseen > 0, lump / np.maximum(unseen, 1), 0.0) * (v.sum() - on_seen)
        np.testing.assert_allclose(q[k].reshape(-1), expected, rtol=1e-12)
        v = expected.reshape(S, A).max(axis=1)
