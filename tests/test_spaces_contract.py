"""icrl_agent.spaces, the contract in detail: the exact error wording (each names the problem and the
fix), saved-space round trips through space_signature / space_from_signature, keys of every supported
leaf and of nested Tuple/Dict spaces, and load_keys / observation refusing bad input."""

import json
import re

import numpy as np
import pytest
from gymnasium import spaces

from icrl_agent.spaces import (
    ObservationIndexer,
    discrete_action_space,
    space_from_signature,
    space_signature,
)

NESTED = spaces.Dict(
    {
        "b": spaces.Discrete(2, start=1),
        "a": spaces.Tuple((spaces.Discrete(2), spaces.MultiDiscrete([2, 3], start=[0, -1]))),
    }
)

UNSUPPORTED_HELP = (
    "is not supported: icrl_agent needs a finite space (Discrete, MultiDiscrete, MultiBinary, or a "
    "Tuple/Dict of those). Discretize it first with an observation wrapper, e.g. bin each Box dimension "
    "into a MultiDiscrete (gymnasium.wrappers.TransformObservation with a new observation_space), or use a "
    "tabular wrapper that maps each observation to a Discrete state."
)


# -- unsupported spaces --------------------------------------------------------------------------------


def test_unsupported_root_space_message_is_exact():
    box = spaces.Box(0, 1, (2,))
    with pytest.raises(TypeError) as err:
        ObservationIndexer(box)
    assert str(err.value) == f"Observation space {box} {UNSUPPORTED_HELP}"
    with pytest.raises(TypeError) as err:
        space_signature(box)
    assert str(err.value) == f"Observation space {box} {UNSUPPORTED_HELP}"


def test_unsupported_component_names_the_enclosing_space():
    box = spaces.Box(0, 1, (2,))
    root = spaces.Dict({"pos": box, "dir": spaces.Discrete(4)})
    with pytest.raises(TypeError) as err:
        ObservationIndexer(root)
    assert str(err.value) == f"Observation space {box} (inside {root}) {UNSUPPORTED_HELP}"
    nested = spaces.Tuple((spaces.Discrete(2), spaces.Tuple((spaces.Text(3),))))
    with pytest.raises(TypeError, match=re.escape(f"{nested.spaces[1].spaces[0]} (inside {nested}) is not")):
        ObservationIndexer(nested)


# -- signatures ----------------------------------------------------------------------------------------

SIGNATURES = [
    (spaces.Discrete(5, start=-2), {"type": "Discrete", "n": 5, "start": -2}),
    (
        spaces.MultiDiscrete([3, 2], start=[1, -1]),
        {"type": "MultiDiscrete", "nvec": [3, 2], "start": [1, -1]},
    ),
    (
        spaces.MultiDiscrete(np.array([[2, 2], [3, 1]]), dtype=np.int32),
        {"type": "MultiDiscrete", "nvec": [[2, 2], [3, 1]], "start": [[0, 0], [0, 0]]},
    ),
    (spaces.MultiBinary([2, 3]), {"type": "MultiBinary", "shape": [2, 3]}),
    (
        spaces.Tuple((spaces.Discrete(3), spaces.MultiBinary(2))),
        {
            "type": "Tuple",
            "spaces": [{"type": "Discrete", "n": 3, "start": 0}, {"type": "MultiBinary", "shape": [2]}],
        },
    ),
    (
        NESTED,
        {
            "type": "Dict",
            "spaces": [
                [
                    "a",
                    {
                        "type": "Tuple",
                        "spaces": [
                            {"type": "Discrete", "n": 2, "start": 0},
                            {"type": "MultiDiscrete", "nvec": [2, 3], "start": [0, -1]},
                        ],
                    },
                ],
                ["b", {"type": "Discrete", "n": 2, "start": 1}],
            ],
        },
    ),
]


@pytest.mark.parametrize("space, expected", SIGNATURES, ids=lambda x: type(x).__name__)
def test_space_signature_is_pinned(space, expected):
    # the saved format: agents saved earlier must keep loading
    assert space_signature(space) == expected


@pytest.mark.parametrize("space, signature", SIGNATURES, ids=lambda x: type(x).__name__)
def test_space_round_trips_through_json_signature(space, signature):
    rebuilt = space_from_signature(json.loads(json.dumps(space_signature(space))))
    assert type(rebuilt) is type(space)
    assert space_signature(rebuilt) == signature
    # the same values: the same keys and observations, whatever the dtype
    space.seed(3)
    original, loaded = ObservationIndexer(space), ObservationIndexer(rebuilt)
    assert loaded.dim == original.dim
    for _ in range(10):
        obs = space.sample()
        assert rebuilt.contains(loaded.observation(loaded.index(obs)))
        assert loaded.key(obs) == original.key(obs)


def test_rebuilt_spaces_have_the_saved_bounds():
    d = space_from_signature({"type": "Discrete", "n": 4, "start": 7})
    assert (d.n, d.start) == (4, 7)
    md = space_from_signature({"type": "MultiDiscrete", "nvec": [3, 2], "start": [1, -1]})
    np.testing.assert_array_equal(md.nvec, [3, 2])
    np.testing.assert_array_equal(md.start, [1, -1])
    mb = space_from_signature({"type": "MultiBinary", "shape": [2, 3]})
    assert mb.shape == (2, 3)
    t = space_from_signature({"type": "Tuple", "spaces": [{"type": "Discrete", "n": 2, "start": 0}]})
    assert isinstance(t.spaces[0], spaces.Discrete) and t.spaces[0].n == 2
    dd = space_from_signature({"type": "Dict", "spaces": [["x", {"type": "MultiBinary", "shape": [3]}]]})
    assert list(dd.spaces) == ["x"] and dd.spaces["x"].shape == (3,)


@pytest.mark.parametrize(
    "signature, detail",
    [
        ({"type": "Box", "low": 0}, "unknown space type 'Box'"),
        ({"n": 3}, "unknown space type None"),
        (["Discrete", 3], "unknown space type None"),
        ("Discrete", "unknown space type None"),
        ({"type": "Discrete", "n": 3}, "'start'"),
        ({"type": "MultiDiscrete", "start": [0]}, "'nvec'"),
        ({"type": "MultiDiscrete", "nvec": [2]}, "'start'"),
        ({"type": "MultiBinary"}, "'shape'"),
        ({"type": "Tuple"}, "'spaces'"),
        ({"type": "Dict"}, "'spaces'"),
    ],
)
def test_bad_signature_is_value_error_naming_it(signature, detail):
    with pytest.raises(ValueError) as err:
        space_from_signature(signature)
    assert str(err.value) == f"bad space signature {signature!r}: {detail}"


@pytest.mark.parametrize("outer", ["Tuple", "Dict"])
def test_bad_component_signature_is_value_error(outer):
    bad = {"type": "Discrete", "n": 2}
    signature = {"type": outer, "spaces": [bad] if outer == "Tuple" else [["k", bad]]}
    with pytest.raises(ValueError, match=re.escape(f"bad space signature {bad!r}: 'start'")):
        space_from_signature(signature)


# -- keys and observations -----------------------------------------------------------------------------


def test_keys_of_every_leaf_and_of_nested_spaces():
    assert ObservationIndexer(spaces.Discrete(3, start=-1)).key(np.int32(1)) == (1,)
    md = ObservationIndexer(spaces.MultiDiscrete(np.array([[2, 3], [4, 5]]), start=[[1, 0], [0, -2]]))
    assert md.dim == 4 and md.key(np.array([[2, 2], [3, -2]])) == (2, 2, 3, -2)
    mb = ObservationIndexer(spaces.MultiBinary([2, 2]))
    assert mb.key(np.array([[True, False], [False, True]])) == (1, 0, 0, 1)
    ix = ObservationIndexer(NESTED)
    assert ix.dim == 4
    assert ix.key({"a": [1, np.array([1, -1])], "b": np.int64(2)}) == (1, 1, -1, 2)
    # observations come back in the space's own format
    back = ix.observation(ix.index({"a": (0, np.array([1, 1])), "b": 1}))
    assert list(back) == ["a", "b"] and back["b"] == 1 and back["a"][0] == 0
    np.testing.assert_array_equal(back["a"][1], [1, 1])


@pytest.mark.parametrize(
    "space, bad, detail",
    [
        (spaces.Discrete(3, start=1), 4, "4 is outside Discrete(3, start=1) (valid: 1..3)"),
        (spaces.Discrete(3), 1.0, "Discrete needs an integer scalar, got float"),
        (spaces.Discrete(3), np.array(1.0), "Discrete needs an integer scalar, got ndarray"),
        (
            spaces.MultiDiscrete([2, 3]),
            np.array([0.5, 1.0]),
            "MultiDiscrete([2 3]) needs integer values, got dtype float64",
        ),
        (spaces.MultiDiscrete([2, 3]), [1, 2, 0], "MultiDiscrete([2 3]) needs shape (2,), got shape (3,)"),
        (
            spaces.MultiDiscrete([2, 3], start=[1, 0]),
            [1, 3],
            "flat component 1 is 3, outside MultiDiscrete([2 3], start=[1 0]) (valid: 0..2)",
        ),
        (spaces.MultiBinary(2), [0, 2], "flat component 1 is 2, outside MultiBinary(2) (valid: 0..1)"),
        (spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2))), 1, "Tuple needs a tuple of 2 components, got int"),
        (spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2))), "ab", "Tuple needs a tuple of 2 components, got str"),
        (
            spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2))),
            {0: 0, 1: 1},
            "Tuple needs a tuple of 2 components, got dict",
        ),
        (spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2))), (1,), "Tuple needs 2 components, got 1"),
        (spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2))), (1, 1, 1), "Tuple needs 2 components, got 3"),
        (NESTED, [1, (0, [0, 0])], "Dict needs a mapping, got list"),
        (NESTED, {"b": 1}, "Dict needs keys ['a', 'b'], got ['b']"),
        (NESTED, {"b": 1, "a": (0, [0, 0]), "c": 0}, "Dict needs keys ['a', 'b'], got ['a', 'b', 'c']"),
    ],
)
def test_observation_outside_space_names_the_problem(space, bad, detail):
    ix = ObservationIndexer(space)
    with pytest.raises(ValueError) as err:
        ix.index(bad)
    assert str(err.value) == (
        f"Observation {bad!r} is not in the observation space {space}: {detail}. Pass observations exactly "
        "as the env returns them, or fix the env/wrapper so they lie in its observation_space."
    )
    assert len(ix) == 0


@pytest.mark.parametrize("dtype", [np.uint64, np.uint8, np.int8])
def test_bounds_are_ints_whatever_the_space_dtype(dtype):
    space = spaces.MultiDiscrete([3, 3], dtype=dtype)
    ix = ObservationIndexer(space)
    with pytest.raises(ValueError, match=re.escape(f"flat component 1 is 3, outside {space} (valid: 0..2)")):
        ix.key(np.array([1, 3], dtype))
    assert ix.key(np.array([1, 2], dtype)) == (1, 2)
    ix.index(np.array([2, 2], dtype))
    assert ix.keys_array().dtype == np.int64
    with pytest.raises(ValueError, match=re.escape(f"key row 0 ([3, 0]) is not in {space}")):
        ix.load_keys(np.array([[3, 0]]))


def test_load_keys_bounds_are_exact_for_large_values_inside_tuples():
    big = 2**60
    leaf = spaces.MultiDiscrete([200], start=[big + 1])  # valid: big + 1 .. big + 200
    ix = ObservationIndexer(spaces.Tuple((leaf, spaces.Discrete(2))))
    ix.load_keys(np.array([[big + 1, 0], [big + 200, 1]]))
    assert len(ix) == 2
    for bad in ([big, 0], [big + 201, 0]):  # one below / above: as floats they would round inside
        with pytest.raises(ValueError, match="is not in"):
            ix.load_keys(np.array([bad]))
    assert len(ix) == 2


def test_observation_of_unknown_state_id():
    ix = ObservationIndexer(spaces.Discrete(3))
    ix.index(2)
    assert ix.observation(0) == 2
    for bad in (1, 5, -1):
        with pytest.raises(IndexError) as err:
            ix.observation(bad)
        assert str(err.value) == f"state id {bad} is unknown: 1 states are known"


# -- keys_array / load_keys ----------------------------------------------------------------------------


def test_load_keys_wrong_shape_or_dtype_message():
    ix = ObservationIndexer(spaces.MultiBinary(2))
    for bad in (np.zeros(2, np.int64), np.zeros((1, 3), np.int64), np.zeros((1, 2, 1), np.int64), np.zeros((1, 2))):
        with pytest.raises(ValueError) as err:
            ix.load_keys(bad)
        assert str(err.value) == (
            f"keys must be an integer array of shape [S, 2] for MultiBinary(2), got {bad.dtype} {bad.shape}: "
            "pass the output of keys_array() of an indexer of the same space"
        )
    assert len(ix) == 0


def test_load_keys_accepts_any_integer_dtype_and_an_empty_array():
    ix = ObservationIndexer(spaces.MultiDiscrete([3, 3]))
    ix.load_keys(np.array([[2, 1], [0, 0]], np.uint8))
    assert ix.lookup([2, 1]) == 0 and ix.lookup([0, 0]) == 1 and ix.keys_array().dtype == np.int64
    ix.load_keys(np.zeros((0, 2)))  # an empty float array is still no states
    assert len(ix) == 0 and ix.keys_array().shape == (0, 2)


def test_load_keys_names_the_first_bad_row():
    ix = ObservationIndexer(spaces.MultiDiscrete([3, 3]))
    with pytest.raises(ValueError) as err:
        ix.load_keys(np.array([[0, 0], [1, 2], [0, 3], [5, 5]]))
    assert str(err.value) == "key row 2 ([0, 3]) is not in MultiDiscrete([3 3]): the keys are corrupt"
    with pytest.raises(ValueError, match=re.escape("key row 1 ([-1, 0]) is not in")):
        ix.load_keys(np.array([[0, 0], [-1, 0]]))


def test_load_keys_duplicate_rows_message():
    ix = ObservationIndexer(spaces.Discrete(3))
    with pytest.raises(ValueError) as err:
        ix.load_keys(np.array([[0], [1], [0]]))
    assert str(err.value) == "keys contain duplicate rows for Discrete(3): the keys are corrupt"


def test_discrete_action_space_message_is_exact():
    bad = spaces.MultiDiscrete([2, 2])
    with pytest.raises(TypeError) as err:
        discrete_action_space(bad)
    assert str(err.value) == (
        f"Action space {bad} is not supported: icrl_agent needs a gymnasium.spaces.Discrete action space. "
        "Wrap the env with an action wrapper that exposes a Discrete space, e.g. a fixed set of Box "
        "actions, or the flattened combinations of a MultiDiscrete, indexed 0..n-1."
    )
    n, start = discrete_action_space(spaces.Discrete(np.int64(3), start=np.int64(2)))
    assert (n, start) == (3, 2) and type(n) is int and type(start) is int
