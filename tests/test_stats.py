"""SufficientStats: brute-force equality, fold == update, atomic bad input, save/load, episode semantics."""

import json
from collections import Counter, defaultdict

import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from icrl_agent.spaces import ObservationIndexer
from icrl_agent.stats import SufficientStats

OBS_SPACES = {
    "discrete_start": spaces.Discrete(5, start=-2),
    "multidiscrete": spaces.MultiDiscrete([3, 2], start=[1, -1]),
    "multibinary_2d": spaces.MultiBinary([2, 2]),
    "tuple": spaces.Tuple((spaces.Discrete(3), spaces.MultiBinary(2))),
    "dict": spaces.Dict({"b": spaces.Discrete(2, start=1), "a": spaces.MultiDiscrete([2, 3])}),
}
ACTIONS = spaces.Discrete(3, start=-1)

row_strategy = st.tuples(
    st.integers(0, 5),  # obs: index into a pool of sampled observations
    st.integers(-1, 1),  # action (start = -1)
    st.floats(-5, 5, allow_nan=False, width=32),
    st.integers(0, 5),  # next obs
    st.booleans(),  # terminated
    st.booleans(),  # truncated
)


def make_stream(space, seed, rows):
    space.seed(seed)
    pool = [space.sample() for _ in range(6)]
    return [(pool[o], a, r, pool[n], term, trunc) for o, a, r, n, term, trunc in rows]


def brute_force(space, stream):
    """The statistics computed the obvious way, ids in order of first sight (obs, then next_obs)."""
    ix = ObservationIndexer(space)
    visits, terminal, initial = Counter(), Counter(), Counter()
    rewards, succ = defaultdict(list), Counter()
    lengths, truncs, step = [], [], 0
    for obs, a, r, nxt, term, trunc in stream:
        s, a = ix.index(obs), a - ACTIONS.start
        initial[s] += step == 0
        visits[s, a] += 1
        rewards[s, a].append(float(r))
        if term:
            terminal[s, a] += 1
        else:
            succ[s, a, ix.index(nxt)] += 1
        step += 1
        if term or trunc:
            lengths.append(step)
            truncs.append(bool(trunc))
            step = 0
    S, A = len(ix), ACTIONS.n
    out = {
        "counts": np.zeros((S, A), np.int64),
        "mean": np.zeros((S, A)),
        "var": np.zeros((S, A)),
        "transitions": np.zeros((S, A, S), np.int64),
        "terminal": np.zeros((S, A), np.int64),
        "initial": np.array([initial[s] for s in range(S)], np.int64),
    }
    for (s, a), n in visits.items():
        out["counts"][s, a], out["terminal"][s, a] = n, terminal[s, a]
        out["mean"][s, a] = np.mean(rewards[s, a])
        out["var"][s, a] = np.var(rewards[s, a]) if n >= 2 else 0.0
    for (s, a, s2), n in succ.items():
        out["transitions"][s, a, s2] = n
    trunc_lengths = [n for n, t in zip(lengths, truncs, strict=True) if t]
    out["episodes"] = (lengths, truncs, step, max(trunc_lengths, default=0))
    return out


def as_dataset(stream, space):
    obs = [row[0] for row in stream]
    nxt = [row[3] for row in stream]
    if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        obs, nxt = np.array(obs), np.array(nxt)
    return {
        "observations": obs,
        "actions": np.array([row[1] for row in stream], np.int64),
        "rewards": np.array([row[2] for row in stream], np.float64),
        "next_observations": nxt,
        "terminations": np.array([row[4] for row in stream], bool),
        "truncations": np.array([row[5] for row in stream], bool),
    }


def episodes(stats):
    return (stats.episode_lengths, stats.episode_truncated, stats.episode_step, stats.max_truncated_length)


def assert_state_equal(a, b):
    (arrays_a, meta_a), (arrays_b, meta_b) = a, b
    assert meta_a == meta_b and arrays_a.keys() == arrays_b.keys()
    for k in arrays_a:
        np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=k)
        assert arrays_a[k].dtype == arrays_b[k].dtype, k


def assert_dense_equal(x, y):
    for name in ("counts", "reward_mean", "reward_var", "transitions", "terminal_counts", "initial_counts"):
        np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)


@pytest.mark.parametrize("name", sorted(OBS_SPACES))
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1000), rows=st.lists(row_strategy, max_size=40))
def test_statistics_equal_brute_force_and_fold_equals_update(name, seed, rows):
    space = OBS_SPACES[name]
    stream = make_stream(space, seed, rows)
    stats = SufficientStats(space, ACTIONS)
    for row in stream:
        stats.update(*row)
    ref = brute_force(space, stream)
    d = stats.dense()
    np.testing.assert_array_equal(d.counts, ref["counts"])
    np.testing.assert_array_equal(d.transitions, ref["transitions"])
    np.testing.assert_array_equal(d.terminal_counts, ref["terminal"])
    np.testing.assert_array_equal(d.initial_counts, ref["initial"])
    np.testing.assert_allclose(d.reward_mean, ref["mean"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.reward_var, ref["var"], rtol=1e-9, atol=1e-9)
    assert episodes(stats) == ref["episodes"] and stats.n_episodes == len(ref["episodes"][0])
    assert stats.version == len(stream) and stats.n_transitions == len(stream)
    # every visit went to a known successor or to the terminal node
    np.testing.assert_array_equal(d.transitions.sum(-1) + d.terminal_counts, d.counts)
    visited = d.counts > 0
    np.testing.assert_allclose((d.p_hat.sum(-1) + d.terminal_prob)[visited], 1.0)

    folded = SufficientStats(space, ACTIONS)
    assert folded.fold(as_dataset(stream, space)) == len(stream)
    assert_state_equal(folded.state_dict(), stats.state_dict())

    sp = stats.sparse()
    assert np.all(np.diff(sp.src * max(stats.n_states, 1) + sp.dst) > 0)  # sorted by (src, dst), unique
    S, A = d.counts.shape
    np.testing.assert_array_equal(d.transitions.reshape(S * A, S)[sp.src, sp.dst], sp.count)
    assert sp.count.sum() == d.transitions.sum()


def test_terminated_goes_to_terminal_node_and_truncation_does_not():
    stats = SufficientStats(spaces.Discrete(4), spaces.Discrete(2))
    stats.update(0, 1, 1.0, 3, terminated=True, truncated=False)
    assert stats.n_states == 1  # next_obs of a terminated transition is not a state
    assert stats.dense().terminal_counts[0, 1] == 1 and stats.dense().transitions.sum() == 0
    stats.update(0, 0, 0.0, 2, terminated=False, truncated=True)
    assert stats.n_states == 2 and stats.dense().transitions[0, 0, 1] == 1
    assert stats.dense().terminal_counts[0, 0] == 0
    assert stats.episode_lengths == [1, 1] and stats.episode_truncated == [False, True]
    assert stats.max_truncated_length == 1 and stats.n_episodes == 2
    with pytest.raises(ValueError):  # next_obs of a terminated transition is still validated
        stats.update(0, 0, 0.0, 9, True, False)


def test_initial_states_and_episode_bookkeeping():
    stats = SufficientStats(spaces.Discrete(5), spaces.Discrete(2))
    for obs in (0, 1, 2):
        stats.update(obs, 0, 0.0, obs + 1, False, obs == 2)
    assert stats.episode_step == 0 and stats.episode_lengths == [3] and stats.max_truncated_length == 3
    stats.update(4, 0, 0.0, 0, False, False)
    stats.update(0, 1, 0.0, 1, True, False)
    np.testing.assert_array_equal(stats.dense().initial_counts, [1, 0, 0, 0, 1])
    assert (
        stats.episode_lengths == [3, 2] and stats.max_truncated_length == 3
    )  # termination is not truncation
    stats.update(1, 0, 0.0, 2, False, False)
    version = stats.version
    stats.reset_episode()  # abandons the open episode: not recorded, next obs is initial
    assert stats.version == version + 1 and stats.episode_lengths == [3, 2]
    stats.update(3, 0, 0.0, 4, False, False)
    assert stats.dense().initial_counts[stats.state_id(3)] == 1


def test_reward_variance_is_population_variance():
    stats = SufficientStats(spaces.Discrete(2), spaces.Discrete(1))
    stats.update(0, 0, 2.0, 1, False, False)
    assert stats.dense().reward_var[0, 0] == 0.0
    for r in (4.0, 9.0):
        stats.update(0, 0, r, 1, False, False)
    assert stats.dense().reward_mean[0, 0] == pytest.approx(5.0)
    assert stats.dense().reward_var[0, 0] == pytest.approx(np.var([2.0, 4.0, 9.0]))


BAD_UPDATES = [
    ("obs", dict(obs=7)),
    ("next_obs", dict(next_obs=-3)),
    ("next_obs", dict(next_obs=7, terminated=True)),
    ("action", dict(action=2)),  # start is -1: valid actions are -1, 0, 1
    ("action", dict(action=-2)),
    ("action", dict(action=0.0)),
    ("reward", dict(reward=float("nan"))),
    ("reward", dict(reward=float("inf"))),
    ("reward", dict(reward="1")),
    ("reward", dict(reward=None)),
    ("truncated", dict(truncated="yes")),
]


@pytest.mark.parametrize("what, change", BAD_UPDATES)
def test_bad_update_raises_and_changes_nothing(what, change):
    stats = SufficientStats(spaces.Discrete(5, start=-2), ACTIONS)
    stats.update(0, 1, 1.0, 1, False, False)
    before = stats.state_dict()
    row = dict(obs=1, action=0, reward=0.5, next_obs=2, terminated=False, truncated=False) | change
    with pytest.raises(ValueError) as err:
        stats.update(**row)
    assert repr(change[next(iter(change))]) in str(err.value) or what in str(err.value)
    assert_state_equal(stats.state_dict(), before)


@pytest.mark.parametrize("space", [spaces.Box(0, 1, (2,)), spaces.Text(4)])
def test_infinite_observation_space_is_type_error(space):
    with pytest.raises(TypeError, match="not supported"):
        SufficientStats(space, spaces.Discrete(2))


@pytest.mark.parametrize("space", [spaces.MultiDiscrete([2, 2]), spaces.Box(-1, 1, (1,))])
def test_non_discrete_action_space_is_type_error(space):
    with pytest.raises(TypeError, match="Discrete action space"):
        SufficientStats(spaces.Discrete(2), space)


def small_dataset(n=6):
    return {
        "observations": np.arange(n) % 3,
        "actions": np.zeros(n, np.int64),
        "rewards": np.ones(n),
        "next_observations": (np.arange(n) + 1) % 3,
        "terminations": np.arange(n) % 3 == 2,
    }


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: d.pop("rewards"), "rewards"),
        (lambda d: d.__setitem__("actions", np.zeros(5, np.int64)), "lengths"),
        (lambda d: d["rewards"].__setitem__(3, np.nan), "row 3"),
        (lambda d: d["observations"].__setitem__(4, 9), "row 4"),
        (lambda d: d["actions"].__setitem__(2, 5), "row 2"),
        (lambda d: d.__setitem__("truncations", np.array([0, 0, 0, 2, 0, 0])), "row 3"),
    ],
)
def test_fold_is_atomic(corrupt, message):
    stats = SufficientStats(spaces.Discrete(3), spaces.Discrete(2))
    stats.fold(small_dataset())
    before = stats.state_dict()
    bad = small_dataset()
    corrupt(bad)
    with pytest.raises(ValueError, match=message):
        stats.fold(bad)
    assert_state_equal(stats.state_dict(), before)


def test_fold_episode_boundaries_and_component_columns():
    space = spaces.Dict({"x": spaces.Discrete(3), "y": spaces.MultiBinary(2)})
    data = {
        "observations": {"x": np.array([0, 1, 2, 0]), "y": np.array([[0, 1], [1, 1], [0, 0], [0, 1]])},
        "actions": np.array([0, 1, 0, 1]),
        "rewards": np.array([0.0, 1.0, 0.0, 2.0], np.float32),
        "next_observations": {"x": np.array([1, 2, 0, 1]), "y": np.array([[1, 1], [0, 0], [0, 1], [1, 1]])},
        "terminations": np.array([0.0, 1.0, 0.0, 0.0]),
        "truncations": np.array([0.0, 0.0, 1.0, 0.0]),
    }
    stats = SufficientStats(space, spaces.Discrete(2))
    stats.update({"x": 2, "y": [0, 0]}, 0, 0.0, {"x": 2, "y": [0, 0]}, False, False)  # left open by fold
    assert stats.fold(data) == 4
    assert stats.episode_lengths == [2, 1] and stats.episode_truncated == [False, True]
    assert stats.episode_step == 1  # the last, unfinished episode stays open
    s0 = stats.state_id({"x": 0, "y": np.array([0, 1])})
    assert stats.dense().initial_counts[s0] == 2  # rows 0 and 3 start episodes


def test_dense_export_is_cached_by_version_and_read_only():
    stats = SufficientStats(spaces.Discrete(3), spaces.Discrete(2))
    stats.update(0, 0, 1.0, 1, False, False)
    d = stats.dense()
    assert stats.dense() is d and stats.sparse() is stats.sparse()
    with pytest.raises(ValueError):
        d.counts[0, 0] = 5
    stats.update(1, 0, 1.0, 2, False, False)
    assert stats.dense() is not d and stats.dense().counts.shape == (3, 2)


def test_state_id_and_action_index():
    stats = SufficientStats(spaces.MultiDiscrete([2, 2]), ACTIONS)
    assert stats.state_id([1, 1]) is None and stats.n_states == 0
    assert (
        stats.state_id([1, 1], add=True) == 0 and stats.version == 1 and stats.dense().counts.shape == (1, 3)
    )
    assert stats.action_index(np.int64(1)) == 2 and stats.action_index(-1) == 0


def test_grows_past_initial_capacity():
    stats = SufficientStats(spaces.Discrete(200), spaces.Discrete(2))
    for s in range(199):
        stats.update(s, s % 2, float(s), s + 1, False, s == 198)
    d = stats.dense()
    assert d.counts.shape == (200, 2) and d.counts.sum() == 199
    assert d.reward_mean[150, 0] == 150.0 and d.transitions[150, 0, 151] == 1


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), rows=st.lists(row_strategy, max_size=30))
def test_save_load_round_trip_is_exact(tmp_path_factory, seed, rows):
    space = OBS_SPACES["dict"]
    stats = SufficientStats(space, ACTIONS)
    for row in make_stream(space, seed, rows):
        stats.update(*row)
    path = tmp_path_factory.mktemp("stats") / "stats.bin"
    stats.save(path)
    assert path.exists() and not path.with_name("stats.bin.npz").exists()
    loaded = SufficientStats.load(path, space, ACTIONS)
    assert_state_equal(loaded.state_dict(), stats.state_dict())
    assert_dense_equal(loaded.dense(), stats.dense())
    assert episodes(loaded) == episodes(stats) and loaded.version == stats.version
    for i in range(stats.n_states):
        assert loaded.indexer.key(loaded.indexer.observation(i)) == stats.indexer.key(
            stats.indexer.observation(i)
        )
    # both keep counting identically
    for s in (stats, loaded):
        s.update({"b": 1, "a": [0, 0]}, 0, 1.0, {"b": 2, "a": [1, 2]}, False, False)
    assert_state_equal(loaded.state_dict(), stats.state_dict())


def test_load_rejects_other_spaces_pickles_and_corrupt_files(tmp_path):
    stats = SufficientStats(spaces.Discrete(3), spaces.Discrete(2))
    stats.update(0, 1, 1.0, 2, False, False)
    path = tmp_path / "s.npz"
    stats.save(path)
    with pytest.raises(ValueError, match="spaces"):
        SufficientStats.load(path, spaces.Discrete(4), spaces.Discrete(2))
    with pytest.raises(ValueError, match="spaces"):
        SufficientStats.load(path, spaces.Discrete(3), spaces.Discrete(2, start=1))
    pickled = tmp_path / "p.pkl"
    import pickle

    pickled.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ValueError, match="not a SufficientStats"):
        SufficientStats.load(pickled, spaces.Discrete(3), spaces.Discrete(2))
    arrays, meta = stats.state_dict()
    arrays["counts"] = arrays["counts"] + 1
    corrupt = tmp_path / "c.npz"
    with open(corrupt, "wb") as f:
        np.savez(f, **arrays, __meta__=np.array([json.dumps(meta)]))
    with pytest.raises(ValueError, match="corrupt"):
        SufficientStats.load(corrupt, spaces.Discrete(3), spaces.Discrete(2))
    target = SufficientStats(spaces.Discrete(3), spaces.Discrete(2))
    with pytest.raises(ValueError):
        target.load_state_dict(arrays, meta)
    assert target.n_states == 0 and target.version == 0


def by_observation(stats):
    """Initial and transition counts keyed by observations, not by the order states were met."""
    dense, obs = stats.dense(), stats.indexer.observation
    initial = {obs(s): int(c) for s, c in enumerate(dense.initial_counts) if c}
    edges = {(obs(s), a, obs(t)): int(c) for (s, a, t), c in np.ndenumerate(dense.transitions) if c}
    return initial, edges


def test_interleaved_streams_count_like_the_same_episodes_in_sequence():
    """Sub-envs of a vector env feed one agent: each stream keeps its own open episode."""
    obs_space, act_space = spaces.Discrete(4), spaces.Discrete(2)
    episode_a = [(0, 1, 0.5, 1, False, False), (1, 0, 1.0, 2, True, False)]
    episode_b = [(3, 1, -1.0, 2, False, False), (2, 1, 0.0, 1, False, False), (1, 1, 2.0, 0, False, True)]
    sequential = SufficientStats(obs_space, act_space)
    for row in episode_a + episode_b:
        sequential.update(*row)
    interleaved = SufficientStats(obs_space, act_space)
    interleaved.update(*episode_b[0], stream=1)
    interleaved.update(*episode_a[0], stream=0)
    interleaved.update(*episode_b[1], stream=1)
    assert interleaved.stream_step(1) == 2 and interleaved.episode_step == 1
    interleaved.update(*episode_a[1], stream=0)
    interleaved.update(*episode_b[2], stream=1)
    assert by_observation(interleaved) == by_observation(sequential)
    assert sorted(interleaved.episode_lengths) == sorted(sequential.episode_lengths) == [2, 3]
    assert interleaved.max_truncated_length == 3 and interleaved.stream_step(1) == 0
