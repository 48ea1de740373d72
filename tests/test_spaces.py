"""ObservationIndexer and discrete_action_space: keys, ids, round trips and clear errors."""

import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from icrl_agent.spaces import ObservationIndexer, discrete_action_space

FINITE_SPACES = {
    "discrete_start": spaces.Discrete(5, start=-2),
    "multidiscrete_start": spaces.MultiDiscrete([3, 2], start=[1, -1]),
    "multidiscrete_2d": spaces.MultiDiscrete(np.array([[2, 2], [3, 1]]), dtype=np.int32),
    "multibinary": spaces.MultiBinary(3),
    "multibinary_2d": spaces.MultiBinary([2, 2]),
    "tuple": spaces.Tuple((spaces.Discrete(3), spaces.MultiBinary(2))),
    "dict_nested": spaces.Dict(
        {
            "b": spaces.Discrete(2, start=1),
            "a": spaces.Tuple((spaces.Discrete(2), spaces.MultiDiscrete([2, 3]))),
        }
    ),
}


def assert_same_obs(a, b):
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            assert_same_obs(a[k], b[k])
    elif isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_obs(x, y)
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", sorted(FINITE_SPACES))
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_ids_in_order_and_observation_round_trip(name, seed):
    space = FINITE_SPACES[name]
    space.seed(seed)
    indexer = ObservationIndexer(space)
    samples = [space.sample() for _ in range(12)]
    ids = [indexer.index(obs) for obs in samples]
    keys = [indexer.key(obs) for obs in samples]
    # ids are dense, assigned in order of first sight, equal exactly when keys are equal
    first_seen = list(dict.fromkeys(keys))
    assert ids == [first_seen.index(k) for k in keys]
    assert len(indexer) == len(first_seen)
    for obs, state_id in zip(samples, ids, strict=True):
        assert all(type(v) is int for v in indexer.key(obs)) and len(indexer.key(obs)) == indexer.dim
        back = indexer.observation(state_id)
        assert space.contains(back)
        assert_same_obs(back, obs)
        assert indexer.lookup(back) == state_id
    assert indexer.keys_array().shape == (len(first_seen), indexer.dim)


def test_native_formats():
    ix = ObservationIndexer(spaces.Discrete(4, start=3))
    ix.index(np.int64(5))
    assert ix.observation(0) == 5 and type(ix.observation(0)) is int
    assert ix.key(np.array(5)) == ix.key(5) == (5,)

    md = spaces.MultiDiscrete([3, 3], dtype=np.int32)
    ix = ObservationIndexer(md)
    assert ix.index([1, 2]) == ix.index(np.array([1, 2], np.int8)) == ix.index((1, 2)) == 0
    assert ix.observation(0).dtype == np.int32

    d = FINITE_SPACES["dict_nested"]
    ix = ObservationIndexer(d)
    obs = {"b": 2, "a": (1, np.array([1, 2]))}
    assert ix.key(obs) == (1, 1, 2, 2)  # "a" before "b": the order of d.spaces
    back = ix.observation(ix.index(obs))
    assert list(back) == ["a", "b"] and isinstance(back["a"], tuple)


def test_lookup_never_grows():
    ix = ObservationIndexer(spaces.Discrete(3))
    assert ix.lookup(1) is None and len(ix) == 0
    assert ix.index(1) == 0 and ix.lookup(1) == 0 and len(ix) == 1


@pytest.mark.parametrize(
    "space, bad",
    [
        (spaces.Discrete(3, start=1), 0),
        (spaces.Discrete(3, start=1), 4),
        (spaces.Discrete(3), 1.0),
        (spaces.Discrete(3), np.array([1])),
        (spaces.MultiDiscrete([2, 3], start=[1, 0]), [0, 0]),
        (spaces.MultiDiscrete([2, 3]), [1, 2, 0]),
        (spaces.MultiDiscrete([2, 3]), np.array([0.5, 1.0])),
        (spaces.MultiBinary(2), [0, 2]),
        (FINITE_SPACES["tuple"], (1,)),
        (FINITE_SPACES["dict_nested"], {"b": 1}),
        (FINITE_SPACES["dict_nested"], {"b": 3, "a": (0, [0, 0])}),
    ],
)
def test_observation_outside_space_is_value_error(space, bad):
    ix = ObservationIndexer(space)
    with pytest.raises(ValueError, match="is not in the observation space") as err:
        ix.index(bad)
    assert str(space) in str(err.value)
    assert len(ix) == 0


@pytest.mark.parametrize(
    "space",
    [
        spaces.Box(0, 1, (2,)),
        spaces.Text(5),
        spaces.Sequence(spaces.Discrete(2)),
        spaces.Graph(spaces.Discrete(2), None),
        spaces.Dict({"pos": spaces.Box(0, 1, (2,)), "dir": spaces.Discrete(4)}),
    ],
)
def test_unsupported_space_is_type_error(space):
    with pytest.raises(TypeError, match="is not supported.*Discretize"):
        ObservationIndexer(space)


def test_keys_array_load_keys_round_trip():
    space = FINITE_SPACES["dict_nested"]
    space.seed(0)
    ix = ObservationIndexer(space)
    for _ in range(20):
        ix.index(space.sample())
    other = ObservationIndexer(space)
    other.load_keys(ix.keys_array())
    assert len(other) == len(ix)
    for i in range(len(ix)):
        assert other.key(other.observation(i)) == ix.key(ix.observation(i))


@pytest.mark.parametrize(
    "keys",
    [np.zeros((2, 3), np.int64), np.array([[0], [0]]), np.array([[5]]), np.array([[0.0]])],
)
def test_load_keys_rejects_corrupt_keys_and_changes_nothing(keys):
    ix = ObservationIndexer(spaces.Discrete(3))
    ix.index(2)
    with pytest.raises(ValueError):
        ix.load_keys(keys)
    assert len(ix) == 1 and ix.lookup(2) == 0


def test_discrete_action_space():
    assert discrete_action_space(spaces.Discrete(4, start=-1)) == (4, -1)
    for bad in (spaces.MultiDiscrete([2, 2]), spaces.Box(-1, 1, (1,))):
        with pytest.raises(TypeError, match="Discrete action space.*wrapper"):
            discrete_action_space(bad)
