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
