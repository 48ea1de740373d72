"""SufficientStats, the contract in detail: which rewards, flags and actions are accepted, the exact error
wording (each names the problem and the fix), the exports (sparse edges, p_hat, by-observation rows),
episode bookkeeping per stream, the dataset forms fold accepts, and the saved format with every check
load makes before trusting a file."""

import json
import re

import numpy as np
import pytest
from gymnasium import spaces

from icrl_agent.stats import SufficientStats

ACTIONS = spaces.Discrete(3, start=-1)


def fresh(obs_space=None, act_space=ACTIONS):
    return SufficientStats(obs_space if obs_space is not None else spaces.Discrete(4), act_space)


# -- rewards, flags, actions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reward, value",
    [
        (2, 2.0),
        (-1.5, -1.5),
        (np.int8(3), 3.0),
        (np.uint16(4), 4.0),
        (np.float32(0.25), 0.25),
        (np.array(1.5), 1.5),
        (np.array(7, np.int32), 7.0),
        (np.array(2, np.uint8), 2.0),
    ],
)
def test_real_scalar_rewards_are_accepted(reward, value):
    stats = fresh()
    stats.update(0, 0, reward, 1, False, False)  # action 0 is index 1 (start -1)
    assert stats.dense().reward_mean[0, 1] == value


@pytest.mark.parametrize("reward", [True, np.bool_(False), "1", None, [1.0], np.array([1.0]), np.array(True), 1j])
def test_reward_that_is_not_a_real_number_is_named(reward):
    stats = fresh()
    with pytest.raises(ValueError) as err:
        stats.update(0, 0, reward, 1, False, False)
    assert str(err.value) == f"Reward {reward!r} is not a real number: pass a Python or NumPy int/float scalar."
    assert stats.n_states == 0 and stats.version == 0


@pytest.mark.parametrize("reward", [float("nan"), float("-inf"), np.float64("inf"), np.array(np.nan)])
def test_reward_that_is_not_finite_is_named(reward):
    with pytest.raises(ValueError) as err:
        fresh().update(0, 0, reward, 1, False, False)
    assert str(err.value) == (
        f"Reward {reward!r} is not finite: fix or clip the env's rewards before observing them."
    )


@pytest.mark.parametrize(
    "flag, value",
    [
        (True, True),
        (np.bool_(True), True),
        (0, False),
        (1, True),
        (1.0, True),
        (np.int64(1), True),
        (np.float32(0.0), False),
        (np.array(True), True),
        (np.array(1, np.uint8), True),
        (np.array(0.0), False),
        (np.array(1, np.int16), True),
    ],
)
def test_flags_as_bools_or_zero_one_numbers(flag, value):
    stats = fresh()
    stats.update(0, 0, 0.0, 1, terminated=flag, truncated=False)
    assert stats.dense().terminal_counts[0, 1] == int(value)
    assert stats.n_episodes == int(value)
    stats = fresh()
    stats.update(0, 0, 0.0, 1, terminated=False, truncated=flag)
    assert stats.episode_truncated == ([True] if value else [])


@pytest.mark.parametrize("flag", [2, -1, 0.5, "yes", None, np.array([True]), np.array(2), np.array("1")])
@pytest.mark.parametrize("name", ["terminated", "truncated"])
def test_bad_flag_is_named(flag, name):
    stats = fresh()
    with pytest.raises(ValueError) as err:
        stats.update(0, 0, 0.0, 1, **{"terminated": False, "truncated": False, name: flag})
    assert str(err.value) == (
        f"{name} must be a bool, got {flag!r}: pass the flag exactly as env.step returns it."
    )
    assert stats.version == 0


def test_action_index_accepts_integers_of_the_space():
    stats = fresh()
    assert [stats.action_index(a) for a in (-1, 0, 1)] == [0, 1, 2]
    assert stats.action_index(np.int8(1)) == 2 and stats.action_index(np.uint8(0)) == 1
    assert stats.action_index(np.array(-1)) == 0 and stats.action_index(np.array(1, np.uint32)) == 2
    assert type(stats.action_index(np.int64(0))) is int


@pytest.mark.parametrize("action", [0.0, True, np.bool_(False), "0", None, np.array(0.0), np.array([0])])
def test_action_that_is_not_an_integer_is_named(action):
    with pytest.raises(ValueError) as err:
        fresh().action_index(action)
    assert str(err.value) == (
        f"Action {action!r} is not an integer: pass an int of the action space {ACTIONS}."
    )


@pytest.mark.parametrize("action", [2, -2, np.int64(5)])
def test_action_outside_the_space_is_named_with_the_valid_range(action):
    with pytest.raises(ValueError) as err:
        fresh().action_index(action)
    assert str(err.value) == (
        f"Action {action!r} is outside the action space {ACTIONS} (valid: -1..1): pass actions of that space."
    )


# -- queries -------------------------------------------------------------------------------------------


def test_count_state_id_and_observation():
    stats = fresh(spaces.Discrete(6, start=10))
    assert stats.count(0, 0) == 0 and stats.count(3, 2) == 0  # unknown states count 0
    stats.update(12, 1, 0.0, 15, False, False)
    stats.update(12, 1, 0.0, 15, False, False)
    assert stats.count(0, 2) == 2 and stats.count(0, 0) == 0 and stats.count(1, 2) == 0
    assert stats.count(2, 2) == 0 and type(stats.count(0, 2)) is int
    assert stats.n_states == 2 and stats.n_transitions == 2
    version = stats.version
    assert stats.state_id(15) == 1 and stats.state_id(13) is None
    assert stats.state_id(12, add=True) == 0 and stats.version == version  # known: no change
    assert stats.state_id(13, add=True) == 2 and stats.version == version + 1 and stats.n_states == 3
    assert stats.dense().counts.shape == (3, 3)
    assert stats.observation(np.int64(1)) == 15 and stats.observation(2) == 13
    with pytest.raises(IndexError):
        stats.observation(3)
    with pytest.raises(ValueError):
        stats.state_id(16)


def test_count_of_any_unknown_state_is_zero():
    stats = fresh(spaces.Discrete(40), spaces.Discrete(2))
    assert stats.count(100, 1) == 0 and stats.count(16, 0) == 0
    for s in range(0, 16, 2):
        stats.update(s, 0, 0.0, s + 1, False, False)
    assert stats.n_states == 16
    assert stats.count(16, 0) == 0 and stats.count(15, 0) == 0 and stats.count(14, 0) == 1
    assert stats.count(1000, 1) == 0


def test_episode_and_stream_steps():
    stats = fresh()
    assert stats.episode_step == 0 and stats.stream_step(3) == 0 and stats.n_episodes == 0
    stats.update(0, 0, 0.0, 1, False, False, stream=3)
    stats.update(1, 0, 0.0, 2, False, False, stream=3)
    stats.update(2, 0, 0.0, 3, False, False)
    assert stats.stream_step(3) == 2 and stats.episode_step == 1 and stats.stream_step(0) == 1
    version = stats.version
    stats.reset_episode(3)
    assert stats.stream_step(3) == 0 and stats.episode_step == 1 and stats.version == version + 1
    stats.reset_episode(3)  # nothing open: no change
    stats.reset_episode(7)
    assert stats.version == version + 1 and stats.n_episodes == 0
    stats.update(3, 0, 0.0, 0, False, False, stream=3)
    np.testing.assert_array_equal(stats.dense().initial_counts, [1, 0, 1, 1])


def test_termination_with_time_limit_counts_as_truncated_and_terminal():
    stats = fresh()
    stats.update(0, 0, 0.0, 1, False, False)
    stats.update(1, 1, 0.0, 2, True, True)
    assert stats.episode_lengths == [2] and stats.episode_truncated == [True]
    assert stats.max_truncated_length == 2
    assert stats.dense().terminal_counts[1, 2] == 1 and stats.n_states == 2  # next obs not indexed
    for _ in range(3):
        stats.update(0, 0, 0.0, 1, False, True)
    assert stats.max_truncated_length == 2 and stats.episode_lengths == [2, 1, 1, 1]


# -- exports -------------------------------------------------------------------------------------------


def _example():
    stats = fresh()
    stats.update(0, 0, 1.0, 1, False, False)  # s0 a0 -> s1
    stats.update(1, 1, 2.0, 0, False, False)  # s1 a1 -> s0
    stats.update(0, 0, 3.0, 2, False, False)  # s0 a0 -> s2
    stats.update(2, -1, 0.5, 3, True, False)  # s2 a-1 -> terminal
    stats.update(0, 0, 5.0, 1, False, True)  # s0 a0 -> s1
    return stats


def test_sparse_export_edges_and_probabilities():
    sp = _example().sparse()
    assert (sp.n_states, sp.n_actions) == (3, 3) and type(sp.n_states) is int and type(sp.n_actions) is int
    np.testing.assert_array_equal(sp.src, [1, 1, 5])  # s*A + a
    np.testing.assert_array_equal(sp.dst, [1, 2, 0])
    np.testing.assert_array_equal(sp.count, [2, 1, 1])
    assert sp.src.dtype == sp.dst.dtype == sp.count.dtype == np.int64
    np.testing.assert_allclose(sp.p_hat, [2 / 3, 1 / 3, 1.0])
    expected_terminal = np.zeros((3, 3))
    expected_terminal[2, 0] = 1.0
    np.testing.assert_array_equal(sp.terminal_prob, expected_terminal)
    np.testing.assert_array_equal(sp.initial_counts, [2, 0, 0])  # the last row starts a new episode
    np.testing.assert_allclose(sp.reward_mean[0, 1], 3.0)
    np.testing.assert_allclose(sp.reward_var[0, 1], np.var([1.0, 3.0, 5.0]))
    for arr in vars(sp).values():
        assert not arr.flags.writeable
    for arr in (sp.counts, sp.terminal_counts, sp.initial_counts):
        assert arr.dtype == np.int64
    assert sp.reward_mean.dtype == sp.reward_var.dtype == np.float64


def test_dense_export_probabilities_are_zero_where_unvisited():
    d = _example().dense()
    assert d.p_hat.shape == (3, 3, 3) and d.p_hat.dtype == np.float64
    np.testing.assert_allclose(d.p_hat[0, 1], [0, 2 / 3, 1 / 3])
    np.testing.assert_array_equal(d.p_hat[0, 0], 0.0)  # never tried: zeros, not NaN
    np.testing.assert_array_equal(d.p_hat[2, 0], 0.0)  # terminated: no known successor
    assert d.terminal_prob[2, 0] == 1.0 and d.terminal_prob.sum() == 1.0
    assert d.transitions.dtype == np.int64 and not d.transitions.flags.writeable


def test_reward_variance_is_never_negative():
    stats = fresh()
    for _ in range(3):
        stats.update(0, 0, 0.1, 1, False, False)  # sum of squares / n - mean^2 rounds below 0
    assert stats.dense().reward_var[0, 1] == 0.0
    assert stats.dense().reward_mean[0, 1] == pytest.approx(0.1)


def test_dense_by_observation_rows_follow_observations():
    stats = fresh(spaces.Discrete(5, start=-2))
    stats.update(1, 0, 4.0, -2, False, False)
    stats.update(-2, 1, 2.0, 1, True, False)
    stats.update(1, 0, 6.0, -2, False, False)
    d = stats.dense(by_observation=True)
    assert d.counts.shape == (5, 3) and d.transitions.shape == (5, 3, 5)
    np.testing.assert_array_equal(d.counts[3], [0, 2, 0])  # obs 1 -> row 1 - (-2)
    np.testing.assert_array_equal(d.counts[0], [0, 0, 1])
    assert d.counts[[1, 2, 4]].sum() == 0
    assert d.transitions[3, 1, 0] == 2 and d.transitions.sum() == 2
    assert d.terminal_counts[0, 2] == 1 and d.terminal_counts.sum() == 1
    np.testing.assert_array_equal(d.initial_counts, [0, 0, 0, 2, 0])
    assert d.reward_mean[3, 1] == 5.0 and d.reward_var[3, 1] == 1.0 and d.reward_mean[0, 2] == 2.0
    assert d.reward_mean.dtype == d.reward_var.dtype == np.float64
    for arr in (d.counts, d.transitions, d.terminal_counts, d.initial_counts):
        assert arr.dtype == np.int64  # as dense(): counts stay integers
    for arr in vars(d).values():
        assert not arr.flags.writeable
    assert stats.dense(by_observation=True) is d  # cached until the next change
    stats.update(0, 0, 0.0, 2, False, False)
    d2 = stats.dense(by_observation=True)
    assert d2 is not d and d2.counts[2, 1] == 1
    assert stats.dense(by_observation=False).counts.shape == (4, 3)


def test_dense_by_observation_needs_a_discrete_space():
    space = spaces.MultiDiscrete([2, 2])
    with pytest.raises(TypeError) as err:
        fresh(space).dense(by_observation=True)
    assert str(err.value) == (
        f"dense(by_observation=True) needs a Discrete observation space, not {space}: use dense() and "
        "map its rows with stats.observation(i) / stats.state_id(obs)"
    )


def test_exports_of_empty_statistics():
    stats = fresh()
    d, sp = stats.dense(), stats.sparse()
    assert d.counts.shape == (0, 3) and d.transitions.shape == (0, 3, 0) and d.initial_counts.shape == (0,)
    assert sp.src.shape == sp.dst.shape == sp.count.shape == (0,)
    assert stats.dense(by_observation=True).counts.shape == (4, 3)


def test_growth_keeps_every_count():
    stats = fresh(spaces.Discrete(100), spaces.Discrete(2))
    for s in range(0, 98, 2):  # two new states per transition
        stats.update(s, 1, float(s), s + 1, False, False)
    d = stats.dense()
    assert d.counts.shape == (98, 2)
    np.testing.assert_array_equal(d.counts[::2, 1], 1)
    np.testing.assert_array_equal(d.counts[1::2], 0)
    np.testing.assert_array_equal(d.reward_mean[::2, 1], np.arange(0, 98, 2))
    np.testing.assert_array_equal(d.initial_counts[::2], [1] + [0] * 48)
    assert all(d.transitions[i, 1, i + 1] == 1 for i in range(0, 98, 2))


# -- fold: dataset forms and errors --------------------------------------------------------------------


def test_fold_tuple_observations_as_component_columns():
    space = spaces.Tuple((spaces.Discrete(3), spaces.MultiBinary(2)))
    data = {
        "observations": (np.array([0, 2]), np.array([[0, 1], [1, 1]])),
        "actions": [0, 1],
        "rewards": [1.0, 2.0],
        "next_observations": (np.array([2, 1]), np.array([[1, 1], [0, 0]])),
        "terminations": [False, True],
    }
    stats = SufficientStats(space, spaces.Discrete(2))
    assert stats.fold(data) == 2
    assert stats.state_id((0, [0, 1])) == 0 and stats.state_id((2, [1, 1])) == 1
    assert stats.dense().transitions[0, 0, 1] == 1 and stats.dense().terminal_counts[1, 1] == 1
    rows = SufficientStats(space, spaces.Discrete(2))
    rows.fold(data | {"observations": [(0, [0, 1]), (2, [1, 1])], "next_observations": [(2, [1, 1]), (1, [0, 0])]})
    assert rows.state_dict()[1] == stats.state_dict()[1]


def test_fold_nested_component_columns():
    space = spaces.Dict(
        {"pos": spaces.Tuple((spaces.Discrete(3), spaces.Discrete(4))), "d": spaces.Dict({"k": spaces.Discrete(2)})}
    )
    data = {
        "observations": {"pos": (np.array([0, 1, 2]), np.array([3, 2, 1])), "d": {"k": np.array([0, 1, 1])}},
        "actions": (0, 1, 0),  # a plain tuple is one column of rows, whatever the observation space
        "rewards": (1.0, 2.0, 3.0),
        "next_observations": {"pos": (np.array([1, 2, 0]), np.array([2, 1, 0])), "d": {"k": np.array([1, 1, 0])}},
        "terminations": [False, False, True],
    }
    stats = SufficientStats(space, spaces.Discrete(2))
    assert stats.fold(data) == 3
    assert stats.state_id({"pos": (1, 2), "d": {"k": 1}}) == 1
    assert stats.state_id({"pos": (2, 1), "d": {"k": 1}}) == 2
    assert stats.dense().reward_mean[2, 0] == 3.0 and stats.dense().terminal_counts[2, 0] == 1
    assert stats.episode_lengths == [3]


def test_fold_tuple_of_dict_component_columns():
    space = spaces.Tuple((spaces.Dict({"k": spaces.Discrete(2)}), spaces.Discrete(3)))
    data = {
        "observations": ({"k": np.array([0, 1, 1])}, np.array([0, 1, 2])),
        "actions": [0, 1, 0],
        "rewards": [1.0, 2.0, 3.0],
        "next_observations": ({"k": np.array([1, 1, 0])}, np.array([1, 2, 0])),
        "terminations": [False, False, True],
    }
    stats = SufficientStats(space, spaces.Discrete(2))
    assert stats.fold(data) == 3
    assert stats.state_id(({"k": 1}, 2)) == 2 and stats.dense().reward_mean[2, 0] == 3.0


def test_fold_tuple_observations_with_tuple_columns_elsewhere():
    space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2)))
    data = {
        "observations": [(0, 1), (1, 1)],
        "actions": (1, 0),
        "rewards": (0.5, 1.5),
        "next_observations": [(1, 1), (0, 0)],
        "terminations": (False, False),
        "truncations": (False, True),
    }
    stats = SufficientStats(space, spaces.Discrete(2))
    assert stats.fold(data) == 2 and stats.episode_lengths == [2]
    bad = {"observations": (np.array([0, 1]), 1), "next_observations": (np.array([0, 1]), np.array([1, 1]))}
    with pytest.raises(ValueError) as err:
        stats.fold(data | bad)
    assert str(err.value) == "dataset['observations'] must be an array or sequence of rows, got int"


def test_fold_without_truncations_ends_episodes_only_on_termination():
    stats = fresh(spaces.Discrete(3), spaces.Discrete(2))
    data = {
        "observations": [0, 1, 2, 0],
        "actions": [0, 0, 1, 1],
        "rewards": [0.0, 0.0, 1.0, 0.0],
        "next_observations": [1, 2, 0, 1],
        "terminations": [False, True, False, False],
    }
    assert stats.fold(data) == 4
    assert stats.episode_lengths == [2] and stats.episode_truncated == [False] and stats.episode_step == 2
    np.testing.assert_array_equal(stats.dense().initial_counts, [1, 0, 1])


def test_fold_abandons_the_open_episode_and_counts_versions():
    stats = fresh(spaces.Discrete(3), spaces.Discrete(2))
    stats.update(0, 0, 0.0, 1, False, False)
    version = stats.version
    assert stats.fold({k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminations")}) == 0
    assert stats.version == version and stats.episode_step == 1  # nothing added: the episode stays open
    data = {
        "observations": [1, 2, 0],
        "actions": [1, 0, 1],
        "rewards": [0.0, 1.0, 2.0],
        "next_observations": [2, 0, 1],
        "terminations": [False, False, False],
        "truncations": [False, True, False],
    }
    assert stats.fold(data) == 3
    # abandoning the open episode is a change too
    assert stats.version == version + 4 and stats.episode_lengths == [2] and stats.episode_step == 1
    np.testing.assert_array_equal(stats.dense().initial_counts, [2, 1, 0])


@pytest.mark.parametrize("dataset", [[("o", "a")], "data", None])
def test_fold_needs_a_mapping(dataset):
    with pytest.raises(ValueError) as err:
        fresh().fold(dataset)
    assert str(err.value) == (
        "dataset must be a dict of arrays with keys ['observations', 'actions', 'rewards', 'next_observations', "
        f"'terminations'], got {type(dataset).__name__}"
    )


def test_fold_missing_keys_and_lengths_messages():
    full = {"observations": [0], "actions": [0], "rewards": [0.0], "next_observations": [1], "terminations": [0]}
    with pytest.raises(ValueError) as err:
        fresh().fold({"observations": [0], "rewards": [0.0]})
    assert str(err.value) == (
        "dataset is missing the key(s) ['actions', 'next_observations', 'terminations']: it needs "
        "['observations', 'actions', 'rewards', 'next_observations', 'terminations'] (+ optional 'truncations')"
    )
    with pytest.raises(ValueError) as err:
        fresh().fold(full | {"truncations": [False, False]})
    assert str(err.value) == (
        "dataset columns have mismatched lengths {'observations': 1, 'actions': 1, 'rewards': 1, "
        "'next_observations': 1, 'terminations': 1, 'truncations': 2}: every column needs one entry per row"
    )
    with pytest.raises(ValueError) as err:
        fresh().fold(full | {"rewards": 0.0})
    assert str(err.value) == "dataset['rewards'] must be an array or sequence of rows, got float"
    stats = fresh()
    with pytest.raises(ValueError) as err:
        stats.fold(full | {"actions": [7]})
    assert str(err.value) == (
        f"dataset row 0 is invalid, nothing was added: Action 7 is outside the action space {ACTIONS} "
        "(valid: -1..1): pass actions of that space."
    )
    assert stats.version == 0 and stats.n_states == 0


def test_fold_component_column_errors():
    dspace = spaces.Dict({"x": spaces.Discrete(3), "y": spaces.Discrete(2)})
    base = {"actions": [0], "rewards": [0.0], "terminations": [False]}
    good = {"x": np.array([0]), "y": np.array([1])}
    for bad in ({"x": np.array([0])}, {"x": np.array([0]), "y": np.array([1, 0])}, good | {"z": np.array([0])}):
        with pytest.raises(ValueError) as err:
            fresh(dspace).fold(base | {"observations": good, "next_observations": bad})
        assert str(err.value) == "dataset['next_observations'] must have the keys ['x', 'y'] and equal lengths"
    with pytest.raises(ValueError) as err:
        fresh(dspace).fold(base | {"observations": {"x": np.array([0]), "y": 1}, "next_observations": good})
    assert str(err.value) == "dataset[\"observations['y']\"] must be an array or sequence of rows, got int"
    tspace = spaces.Tuple((spaces.Discrete(3), spaces.Discrete(2)))
    for bad in ((np.array([0]),), (np.array([0]), np.array([1, 1])), (np.array([0]),) * 3):
        with pytest.raises(ValueError) as err:
            fresh(tspace).fold(base | {"observations": (np.array([0]), np.array([1])), "next_observations": bad})
        assert str(err.value) == "dataset['next_observations'] must be a tuple of 2 equal-length columns"


# -- saving and loading --------------------------------------------------------------------------------


def test_state_dict_layout_is_pinned():
    stats = _example()
    stats.update(1, 0, 0.0, 2, False, False, stream=2)
    arrays, meta = stats.state_dict()
    assert meta == {
        "format": "icrl_agent.SufficientStats/1",
        "observation_space": {"type": "Discrete", "n": 4, "start": 0},
        "action_space": {"type": "Discrete", "n": 3, "start": -1},
        "open_episode_steps": {"2": 1},
        "max_truncated_length": 1,
        "version": 6,
    }
    json.dumps(meta)
    assert list(arrays) == [
        "keys", "counts", "reward_sum", "reward_sq", "terminal_counts", "initial_counts",
        "edge_src", "edge_dst", "edge_count", "episode_lengths", "episode_truncated",
    ]  # fmt: skip
    np.testing.assert_array_equal(arrays["keys"], [[0], [1], [2]])
    np.testing.assert_array_equal(arrays["reward_sum"][0, 1], 9.0)
    np.testing.assert_array_equal(arrays["reward_sq"][0, 1], 35.0)
    np.testing.assert_array_equal(arrays["edge_src"], [1, 1, 4, 5])
    np.testing.assert_array_equal(arrays["edge_dst"], [1, 2, 2, 0])
    np.testing.assert_array_equal(arrays["edge_count"], [2, 1, 1, 1])
    np.testing.assert_array_equal(arrays["episode_lengths"], [4, 1])
    assert arrays["episode_truncated"].dtype == np.bool_ and arrays["episode_lengths"].dtype == np.int64
    arrays["counts"][0, 1] = 99  # a copy: the statistics are unchanged
    assert stats.count(0, 1) == 3


def test_state_dict_dtypes_without_any_episode():
    arrays, _ = fresh().state_dict()
    assert arrays["episode_lengths"].dtype == np.int64 and arrays["episode_truncated"].dtype == np.bool_
    assert arrays["keys"].shape == (0, 1) and arrays["edge_src"].dtype == np.int64
    stats = fresh()
    stats.update(0, 0, 1.0, 1, False, False)  # an open episode only
    arrays, _ = stats.state_dict()
    assert arrays["episode_lengths"].shape == (0,) and arrays["episode_lengths"].dtype == np.int64
    assert arrays["episode_truncated"].dtype == np.bool_


def test_load_state_dict_restores_open_episodes_per_stream():
    stats = _example()
    stats.update(1, 0, 0.0, 2, False, False, stream=2)
    stats.update(0, 0, 0.0, 3, False, False)
    restored = fresh()
    restored.load_state_dict(*stats.state_dict())
    assert restored.stream_step(2) == 1 and restored.episode_step == 1 and restored.version == stats.version
    assert restored.max_truncated_length == 1 and restored.n_states == 4
    for s in (stats, restored):  # both continue the same open episodes
        s.update(2, 1, 1.0, 0, False, True, stream=2)
    assert restored.state_dict()[1] == stats.state_dict()[1]
    assert restored.episode_lengths == stats.episode_lengths == [4, 1, 2]
    assert restored.max_truncated_length == 2
    np.testing.assert_array_equal(restored.dense().initial_counts, stats.dense().initial_counts)


def test_load_state_dict_of_many_states_then_growth():
    stats = fresh(spaces.Discrete(40), spaces.Discrete(1))
    for s in range(20):
        stats.update(s, 0, 1.0, s + 1, False, False)
    restored = SufficientStats(spaces.Discrete(40), spaces.Discrete(1))
    restored.load_state_dict(*stats.state_dict())
    for s in (stats, restored):
        for t in range(21, 39):
            s.update(t, 0, 2.0, t + 1, False, False)
    assert restored.state_dict()[1] == stats.state_dict()[1]
    np.testing.assert_array_equal(restored.dense().counts, stats.dense().counts)
    np.testing.assert_array_equal(restored.dense().transitions, stats.dense().transitions)


def _saved():
    stats = _example()
    return stats.state_dict()


def _refuse(arrays, meta, message, space=None, exact=True):
    target = fresh(space)
    target.update(3, 0, 1.0, 0, False, False)
    before = target.state_dict()
    with pytest.raises(ValueError) as err:
        target.load_state_dict(arrays, meta)
    if exact:
        assert str(err.value) == message
    else:
        assert re.search(message, str(err.value)), str(err.value)
    after = target.state_dict()
    assert after[1] == before[1]
    for k in before[0]:
        np.testing.assert_array_equal(after[0][k], before[0][k])


def test_load_refuses_another_format_or_other_spaces():
    arrays, meta = _saved()
    _refuse(arrays, meta | {"format": "other/1"},
            "not SufficientStats data (format 'other/1', expected 'icrl_agent.SufficientStats/1')")
    _refuse(arrays, {k: v for k, v in meta.items() if k != "format"},
            "not SufficientStats data (format None, expected 'icrl_agent.SufficientStats/1')")
    saved = {"observation_space": meta["observation_space"], "action_space": meta["action_space"]}
    target = {"observation_space": {"type": "Discrete", "n": 5, "start": 0}, "action_space": meta["action_space"]}
    _refuse(arrays, meta,
            f"saved statistics are for spaces {saved}, not {target}: load them with the observation and action "
            "spaces they were collected in", space=spaces.Discrete(5))
    _refuse(arrays, meta | {"action_space": {"type": "Discrete", "n": 3, "start": 0}}, "saved statistics are for spaces",
            exact=False)


def test_load_refuses_missing_or_misshapen_arrays():
    arrays, meta = _saved()
    _refuse({k: v for k, v in arrays.items() if k not in ("counts", "edge_dst")}, meta,
            "saved statistics are missing the array(s) ['counts', 'edge_dst']: the file is corrupt")
    cases = {
        "keys": (np.zeros((3, 2), np.int64), "int64 (3, 2), expected (3, 1)"),
        "counts": (np.zeros((3, 2), np.int64), "int64 (3, 2), expected (3, 3)"),
        "reward_sum": (arrays["reward_sum"].astype(np.int64), "int64 (3, 3), expected (3, 3)"),
        "reward_sq": (arrays["reward_sq"][:2], "float64 (2, 3), expected (3, 3)"),
        "terminal_counts": (arrays["terminal_counts"].astype(np.float64), "float64 (3, 3), expected (3, 3)"),
        "initial_counts": (arrays["initial_counts"][:, None], "int64 (3, 1), expected (3,)"),
        "edge_src": (arrays["edge_src"].astype(np.float32), "float32 (3,), expected (3,)"),
        "edge_dst": (arrays["edge_dst"][:2], "int64 (2,), expected (3,)"),
        "edge_count": (arrays["edge_count"].astype(bool), "bool (3,), expected (3,)"),
        "episode_lengths": (arrays["episode_lengths"].astype(np.float64), "float64 (2,), expected (2,)"),
        "episode_truncated": (np.array([1, 0], np.int64), "int64 (2,), expected (2,)"),
    }
    for name, (bad, detail) in cases.items():
        _refuse(arrays | {name: bad}, meta, f"saved array {name!r} has {detail}")
    # unsigned counts and empty arrays of any dtype are fine
    ok = fresh()
    ok.load_state_dict(arrays | {"counts": arrays["counts"].astype(np.uint32)}, meta)
    assert ok.count(0, 1) == 3
    ok.load_state_dict(fresh().state_dict()[0] | {"episode_truncated": np.zeros(0, np.float64)},
                       fresh().state_dict()[1])
    assert ok.n_states == 0


CORRUPT_COUNTS = "saved transition counts do not add up to the visit counts: the file is corrupt"


@pytest.mark.parametrize(
    "name, index, value",
    [
        ("edge_src", 0, -1),
        ("edge_src", 2, 9),  # S * A = 9
        ("edge_dst", 0, -1),
        ("edge_dst", 0, 3),  # S = 3
        ("edge_count", 1, 0),
        ("edge_count", 1, 2),
        ("counts", (0, 1), 4),
        ("terminal_counts", (2, 0), 0),
    ],
)
def test_load_refuses_counts_that_do_not_add_up(name, index, value):
    arrays, meta = _saved()
    bad = arrays[name].copy()
    bad[index] = value
    _refuse(arrays | {name: bad}, meta, CORRUPT_COUNTS)


def test_load_refuses_an_edge_counted_zero_times():
    arrays, meta = _saved()
    # an extra edge (0, 0) -> 0 seen 0 times: the sums still add up, the edge is still impossible
    arrays = arrays | {
        "edge_src": np.append(arrays["edge_src"], 0),
        "edge_dst": np.append(arrays["edge_dst"], 0),
        "edge_count": np.append(arrays["edge_count"], 0),
    }
    _refuse(arrays, meta, CORRUPT_COUNTS)


def test_load_refuses_duplicate_edges():
    arrays, meta = _saved()
    # edges (1 -> 1) x2 and (1 -> 2) x1 rewritten as (1 -> 1) x1 twice and (1 -> 2) x1: the sums still add up
    arrays = arrays | {
        "edge_src": np.array([1, 1, 1, 5]),
        "edge_dst": np.array([1, 1, 2, 0]),
        "edge_count": np.array([1, 1, 1, 1]),
    }
    _refuse(arrays, meta, "saved transition edges contain duplicates: the file is corrupt")
    # the same destination from another source is not a duplicate
    arrays, meta = _saved()
    ok = fresh()
    ok.load_state_dict(arrays, meta)
    assert ok.dense().transitions[0, 1, 1] == 2


@pytest.mark.parametrize("raw", [None, [1], {"0": 0}, {"0": -2}, {"0": "3"}, {"0": 1.5}])
def test_load_refuses_bad_open_episode_steps(raw):
    arrays, meta = _saved()
    _refuse(arrays, meta | {"open_episode_steps": raw},
            f"saved statistics have a bad 'open_episode_steps' entry {raw!r}: the file is corrupt")


@pytest.mark.parametrize("name", ["max_truncated_length", "version"])
@pytest.mark.parametrize("value", [None, -1, True, 2.0, "3"])
def test_load_refuses_bad_counters(name, value):
    arrays, meta = _saved()
    _refuse(arrays, meta | {name: value}, f"saved statistics have an invalid {name!r}: {value!r}")


def test_load_accepts_zero_counters():
    arrays, meta = fresh().state_dict()
    stats = fresh()
    stats.update(0, 0, 0.0, 1, False, False)
    stats.load_state_dict(arrays, meta | {"max_truncated_length": 0, "version": 0, "open_episode_steps": {}})
    assert stats.version == 0 and stats.n_states == 0 and stats.episode_step == 0


def test_save_and_load_files(tmp_path):
    stats = _example()
    path = tmp_path / "stats"
    stats.save(path)
    assert path.exists() and not (tmp_path / "stats.npz").exists()
    loaded = SufficientStats.load(str(path), spaces.Discrete(4), ACTIONS)
    assert loaded.state_dict()[1] == stats.state_dict()[1]
    with np.load(path, allow_pickle=False) as data:
        assert json.loads(str(data["__meta__"][0])) == stats.state_dict()[1]

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError) as err:
        SufficientStats.load(text, spaces.Discrete(4), ACTIONS)
    assert str(err.value).startswith(f"{str(text)!r} is not a SufficientStats .npz file written by save(): ")
    with pytest.raises(ValueError, match="is not a SufficientStats .npz file"):
        SufficientStats.load(tmp_path / "missing.npz", spaces.Discrete(4), ACTIONS)

    arrays, _ = stats.state_dict()
    for name, extra in (("nometa.npz", {}), ("badjson.npz", {"__meta__": np.array(["{not json"])}),
                        ("empty.npz", {"__meta__": np.array([], dtype="<U1")})):
        with open(tmp_path / name, "wb") as f:
            np.savez(f, **arrays, **extra)
        with pytest.raises(ValueError) as err:
            SufficientStats.load(tmp_path / name, spaces.Discrete(4), ACTIONS)
        assert str(err.value) == (
            f"{str(tmp_path / name)!r} has no valid metadata: it was not written by SufficientStats.save()"
        )
