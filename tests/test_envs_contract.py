"""The tabular envs, the contract in detail: TabularEnv's model checks and their exact wording, what
step / reset / render return, sampling never picks an impossible successor, the argument checks of the
classic and grid-world envs and their text renderings, and the Gymnasium toy-text adapter's
terminal-state model."""


import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded

import icrl_agent  # noqa: F401  (registers the icrl/ envs)
from icrl_agent.envs import (
    TABULAR_ENV_IDS,
    Chain,
    DeepSea,
    FourRooms,
    FrozenLake,
    GridWorld,
    OpenRoom,
    RiverSwim,
    SixArms,
    TabularEnv,
    Taxi,
    register_tabular_envs,
)
from icrl_agent.envs.gridworld import four_rooms_map, open_room_map
from icrl_agent.envs.tabular import terminal_self_loops
from icrl_agent.envs.toy_text import model_from_gymnasium, terminal_states


def two_state(**overrides):
    """A 2-state, 2-action model: action 0 stays, action 1 moves to the other state; reward 1 for moving."""
    model = {
        "P": np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]),
        "R": np.array([[0.0, 1.0], [0.0, 1.0]]),
        "terminal": np.zeros(2, bool),
        "initial": np.array([1.0, 0.0]),
        "horizon": 5,
    }
    return model | overrides


def refused(message, **overrides):
    with pytest.raises(ValueError) as err:
        TabularEnv(**two_state(**overrides))
    assert str(err.value) == message


# -- model checks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "P",
    [np.ones((2, 2)), np.ones((2, 2, 3)) / 3, np.ones((0, 2, 0)), np.ones((2, 0, 2)), np.ones((1, 1, 1, 1))],
)
def test_transitions_of_the_wrong_shape(P):
    refused(f"P must have shape [S, A, S] with S, A >= 1, got {P.shape}", P=P)


def test_model_arrays_of_the_wrong_shape():
    refused("R must have shape [S, A] = (2, 2), got (2,)", R=np.zeros(2))
    refused("R must have shape [S, A] = (2, 2), got (2, 2, 1)", R=np.zeros((2, 2, 1)))
    refused("terminal and initial must have shape [S] = (2,)", terminal=np.zeros(3, bool))
    refused("terminal and initial must have shape [S] = (2,)", initial=np.array([1.0]))
    refused("reward_table must have the shape of P (2, 2, 2), got (2, 2)", reward_table=np.zeros((2, 2)))


def test_transition_rows_must_be_distributions():
    message = ("P must be non-negative with every row P[s, a, :] summing to 1 (within 1e-8; a float32 model loses "
               "that: divide by the row sums in float64 first)")
    P = two_state()["P"]
    bad = P.copy()
    bad[0, 0] = [1.5, -0.5]  # sums to 1, but negative
    refused(message, P=bad)
    bad = P.copy()
    bad[1, 1] = [0.5, 0.49]
    refused(message, P=bad)
    bad = P.copy()
    bad[1, 1] = [1.0, 1e-4]
    refused(message, P=bad)
    bad[1, 1] = [1.0, 1e-6]  # a float32 rounding error: within numpy's default rtol, refused here
    refused(message, P=bad)
    ok = P.copy()
    ok[1, 1] = [1.0, 1e-9]  # within the tolerance
    env = TabularEnv(**two_state(P=ok))
    assert env.transition_matrix()[0][1, 1, 1] == 1e-9


def test_initial_distribution_checks():
    message = "initial must be a distribution over S (summing to 1 within 1e-8) with no mass on terminal states"
    refused(message, initial=np.array([1.5, -0.5]))
    refused(message, initial=np.array([1.0, 2e-6]))
    refused(message, initial=np.array([0.5, 0.4]))
    refused(message, initial=np.array([0.5, 0.5]), terminal=np.array([False, True]))
    env = TabularEnv(**two_state(initial=np.array([1.0, 1e-9]), terminal=np.array([False, False])))
    assert env.initial_distribution().dtype == np.float64
    env = TabularEnv(**two_state(initial=[1, 0], terminal=np.array([0, 1])))  # lists / ints are converted
    assert env.transition_matrix()[2].dtype == bool and env.transition_matrix()[2].tolist() == [False, True]


def test_reward_checks():
    refused("rewards must be finite", R=np.array([[0.0, np.inf], [0.0, 1.0]]))
    refused("rewards must be finite", R=np.array([[np.nan, 1.0], [0.0, 1.0]]))
    table = np.zeros((2, 2, 2))
    table[0, 1, 1] = table[1, 1, 0] = 1.0
    env = TabularEnv(**two_state(reward_table=table))  # R is its expectation
    assert env.transition_matrix()[1].tolist() == [[0.0, 1.0], [0.0, 1.0]]
    off = table.copy()
    off[0, 1, 1] = 1.1
    refused("R must be the expected reward of reward_table: R[s, a] = sum_s' P * reward_table", reward_table=off)
    nan_table = table.copy()
    nan_table[0, 0, 1] = np.nan  # probability 0: the expectation check cannot see it
    with pytest.raises(ValueError):
        TabularEnv(**two_state(reward_table=nan_table))


@pytest.mark.parametrize("horizon", [0, -3, 2.0, True, "5", None])
def test_horizon_must_be_a_positive_int(horizon):
    refused(f"horizon must be an int >= 1, got {horizon!r}", horizon=horizon)


def test_horizon_and_render_mode_accepted():
    env = TabularEnv(**two_state(horizon=np.int64(3)))
    assert env.horizon == 3 and type(env.horizon) is int
    assert TabularEnv(**two_state(horizon=1)).horizon == 1
    refused("render_mode must be one of ['ansi'] or None, got 'human'", render_mode="human")


# -- the env -------------------------------------------------------------------------------------------


def test_spaces_sizes_and_copies_of_the_model():
    P = np.zeros((3, 2, 3))
    P[:, :, 0] = 1.0
    env = TabularEnv(P, np.zeros((3, 2)), np.zeros(3, bool), np.array([0.0, 1.0, 0.0]), 4)
    assert (env.n_states, env.n_actions) == (3, 2) and type(env.n_states) is int and type(env.n_actions) is int
    assert env.observation_space == gym.spaces.Discrete(3) and env.action_space == gym.spaces.Discrete(2)
    P_copy, R_copy, terminal_copy = env.transition_matrix()
    P_copy[:] = 0.0
    R_copy[:] = 7.0
    terminal_copy[:] = True
    initial = env.initial_distribution()
    initial[:] = 0.0
    P2, R2, terminal2 = env.transition_matrix()
    assert P2[:, :, 0].min() == 1.0 and R2.max() == 0.0 and not terminal2.any()
    assert env.initial_distribution().tolist() == [0.0, 1.0, 0.0]
    assert env.reset(seed=0)[0] == 1  # the start distribution


def test_reset_and_step_return_gymnasium_types():
    env = TabularEnv(**two_state(render_mode="ansi"))
    assert env.s is None and env.lastaction is None and env.render_mode == "ansi"
    with pytest.raises(ResetNeeded) as err:
        env.step(0)
    assert str(err.value) == "call reset() before step()"
    obs, info = env.reset(seed=0)
    assert obs == 0 and type(obs) is int and info == {}
    assert env.render() == "state 0\n"
    obs, reward, terminated, truncated, info = env.step(np.int64(1))
    assert (obs, reward, terminated, truncated, info) == (1, 1.0, False, False, {})
    assert type(obs) is int and type(reward) is float and type(terminated) is bool and type(truncated) is bool
    assert env.s == 1 and env.lastaction == 1 and type(env.lastaction) is int
    assert env.render() == "state 1 (last action 1)\n"
    env.step(0)
    assert env.render() == "state 1 (last action 0)\n"
    env.reset()
    assert env.lastaction is None and env.render() == "state 0\n"
    for bad in (2, -1, 0.5):
        with pytest.raises(ValueError) as err:
            env.step(bad)
        assert str(err.value) == f"action {bad!r} is not in the action space Discrete(2)"
    assert TabularEnv(**two_state()).render() is None


def test_terminated_follows_the_terminal_state():
    env = TabularEnv(**two_state(terminal=np.array([False, True])))
    env.reset(seed=0)
    assert env.step(0)[2] is False
    assert env.step(1)[2] is True


def test_sampling_never_draws_an_impossible_successor():
    P = np.zeros((4, 1, 4))
    P[:, 0] = [0.0, 0.5, 0.5, 0.0]  # the first and last states have probability 0
    env = TabularEnv(P, np.zeros((4, 1)), np.zeros(4, bool), np.array([0.0, 0.3, 0.7, 0.0]), 3)
    env.reset(seed=1)
    starts, nexts = set(), []
    for seed in range(200):
        starts.add(env.reset(seed=seed)[0])
        nexts.append(env.step(0)[0])
    assert starts == {1, 2} and set(nexts) == {1, 2}
    assert 70 < nexts.count(1) < 130  # half and half
    # a distribution summing to 1 only within the tolerance still draws the last possible state
    P = np.zeros((3, 1, 3))
    P[:, 0] = [0.5, 0.5 - 1e-9, 0.0]
    env = TabularEnv(P, np.zeros((3, 1)), np.zeros(3, bool), np.array([1.0, 0.0, 0.0]), 3)
    env.reset(seed=0)
    assert {env.step(0)[0] for _ in range(100)} == {0, 1}


def test_a_transition_pays_its_own_reward():
    P = np.zeros((2, 1, 2))
    P[:, 0] = [0.5, 0.5]
    table = np.zeros((2, 1, 2))
    table[:, 0] = [-1.0, 3.0]
    env = TabularEnv(P, np.ones((2, 1)), np.zeros(2, bool), np.array([1.0, 0.0]), 3, reward_table=table)
    env.reset(seed=0)
    for _ in range(30):
        obs, reward, *_ = env.step(0)
        assert reward == (3.0 if obs == 1 else -1.0)


def test_values_follow_the_horizon_or_the_discount():
    env = TabularEnv(**two_state(horizon=4))
    assert env.optimal_value() == 4.0  # move every step
    assert env.random_value() == 2.0
    assert env.optimal_value(gamma=0.5) == pytest.approx(2.0)  # 1 / (1 - 0.5)
    assert env.random_value(gamma=0.5) == pytest.approx(1.0)


def test_terminal_self_loops_in_place():
    P = np.full((3, 2, 3), 1 / 3)
    R = np.ones((3, 2))
    table = np.ones((3, 2, 3))
    terminal_self_loops(P, np.array([False, True, True]), R, table)
    assert P[1, :, 1].tolist() == [1.0, 1.0] and P[2, :, 2].tolist() == [1.0, 1.0]
    assert P[1, :, [0, 2]].sum() == 0.0 and P[2, :, :2].sum() == 0.0
    assert P[0].tolist() == np.full((2, 3), 1 / 3).tolist()
    assert R[1:].sum() == 0.0 and R[0].tolist() == [1.0, 1.0]
    assert table[1:].sum() == 0.0 and table[0].sum() == 6.0


# -- classic envs --------------------------------------------------------------------------------------


def test_classic_argument_checks():
    for n in (1, 0):
        with pytest.raises(ValueError) as err:
            RiverSwim(n_states=n)
        assert str(err.value) == f"RiverSwim needs n_states >= 2, got {n}"
    for n, slip in ((1, 0.2), (5, -0.1), (5, 1.5)):
        with pytest.raises(ValueError) as err:
            Chain(n_states=n, slip=slip)
        assert str(err.value) == f"Chain needs n_states >= 2 and slip in [0, 1], got {n}, {slip}"
    assert Chain(n_states=2, slip=0.0).n_states == 2 and Chain(slip=1.0).n_states == 5
    assert RiverSwim(n_states=2).n_states == 2
    with pytest.raises(ValueError) as err:
        DeepSea(size=0)
    assert str(err.value) == "DeepSea needs size >= 1, got 0"


def test_riverswim_arguments():
    env = RiverSwim(n_states=4, horizon=7, middle=(0.1, 0.6, 0.3), render_mode="ansi")
    P, R, terminal = env.transition_matrix()
    assert env.horizon == 7 and env.n_states == 4 and not terminal.any()
    assert P[1, 1].tolist() == pytest.approx([0.1, 0.6, 0.3, 0.0])
    assert P[0, 1].tolist() == pytest.approx([0.4, 0.6, 0.0, 0.0])
    assert P[3, 1].tolist() == pytest.approx([0.0, 0.0, 0.4, 0.6])
    assert P[2, 0].tolist() == [0.0, 1.0, 0.0, 0.0] and P[0, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert R[0, 0] == 0.005 and R[3, 1] == 1.0 and R.sum() == 1.005
    env.reset(seed=0)
    assert env.render() == "x~~~\n"
    env.s = 2
    assert env.render() == "~~x~\n"


def test_sixarms_and_chain_arguments():
    env = SixArms(horizon=3, render_mode="ansi")
    assert env.horizon == 3 and env.render_mode == "ansi"
    P, R, _ = env.transition_matrix()
    assert R[1].tolist() == [50.0, 50.0, 50.0, 50.0, 0.0, 50.0] and R[6].tolist() == [0, 0, 0, 0, 0, 6000.0]
    env.reset(seed=0)
    assert env.render() == "state 0\n"
    chain = Chain(n_states=3, slip=0.25, small=1.0, large=4.0, horizon=6, render_mode="ansi")
    P, R, _ = chain.transition_matrix()
    assert chain.horizon == 6 and chain.render_mode == "ansi"
    assert P[2, 0].tolist() == [0.25, 0.0, 0.75] and P[1, 1].tolist() == [0.75, 0.0, 0.25]
    assert R[2, 0] == pytest.approx(0.75 * 4.0 + 0.25 * 1.0) and R[0, 1] == pytest.approx(0.75 * 1.0)


def test_deepsea_arguments_and_rendering():
    env = DeepSea(size=3, randomize_actions=False, move_cost=0.3, render_mode="ansi")
    assert env.horizon == 3 and (env.action_mapping == 1).all()
    P, R, terminal = env.transition_matrix()
    assert R[0, 1] == pytest.approx(-0.1) and R[0, 0] == 0.0 and R[8, 1] == pytest.approx(0.9)
    assert terminal.tolist() == [False] * 9 + [True]
    assert P[0, 1, 4] == 1.0 and P[0, 0, 3] == 1.0 and P[6, 0, 9] == 1.0 and P[9, :, 9].tolist() == [1.0, 1.0]
    env.reset(seed=0)
    assert env.render() == "x..\n...\n..$\n"
    env.step(1)
    assert env.render() == "...\n.x.\n..$\n"
    env.step(1)
    assert env.render() == "...\n...\n..x\n"
    env.step(1)
    assert env.s == 9 and env.render() == "...\n...\n..$\n"
    assert DeepSea(size=2, mapping_seed=None).action_mapping.shape == (2, 2)
    unrendered = DeepSea(size=2, render_mode="ansi")
    assert unrendered.render() == "..\n.$\n"


def test_deepsea_action_mapping_is_an_integer_array_in_both_modes():
    """``action_mapping`` is bsuite's 0/1 integer mapping, drawn or all ones: usable as an index either way."""
    fixed, drawn = DeepSea(size=3, randomize_actions=False), DeepSea(size=3, mapping_seed=0)
    for mapping in (fixed.action_mapping, drawn.action_mapping):
        assert mapping.shape == (3, 3) and np.issubdtype(mapping.dtype, np.integer)
    assert fixed.action_mapping.tolist() == [[1, 1, 1]] * 3


# -- grid worlds ---------------------------------------------------------------------------------------


def test_grid_maps():
    assert open_room_map(2) == ["S.", ".G"]
    assert open_room_map(3) == ["S..", "...", "..G"]
    with pytest.raises(ValueError) as err:
        open_room_map(1)
    assert str(err.value) == "an open room needs size >= 2, got 1"
    assert four_rooms_map(5) == ["S.#..", ".....", "#.##.", "..#..", "....G"]
    with pytest.raises(ValueError) as err:
        four_rooms_map(4)
    assert str(err.value) == "four rooms need size >= 5, got 4"


@pytest.mark.parametrize("desc", [[], ["S.", "..G"], ["S.x", "..G"], ["S.X", "..G"], ["S.", "S G"]])
def test_grid_map_characters_and_rows(desc):
    with pytest.raises(ValueError) as err:
        GridWorld(desc)
    assert str(err.value) == "desc must be equal-length rows of 'S', 'G', '.', '#', e.g. ['S..', '.#.', '..G']"


@pytest.mark.parametrize("desc", [["..", ".G"], ["S.", "S.", ".G"], ["S.", ".."]])
def test_grid_map_start_and_goal(desc):
    with pytest.raises(ValueError) as err:
        GridWorld(desc)
    assert str(err.value) == "desc needs exactly one start 'S' and at least one goal 'G'"


@pytest.mark.parametrize("slip", [-0.1, 1.1])
def test_grid_slip_in_unit_interval(slip):
    with pytest.raises(ValueError) as err:
        GridWorld(["SG"], slip=slip)
    assert str(err.value) == f"slip must be in [0, 1], got {slip}"


def test_grid_slip_one_always_moves_perpendicular():
    """slip = 1 is in [0, 1]: the intended move never happens, each perpendicular one half the time."""
    env = GridWorld(["S..", "...", "..G"], slip=1.0)
    P = env.transition_matrix()[0]
    # from S, "right" (2): down to (1, 0) = state 3 or up (outside: stay), never right
    assert P[0, 2].tolist() == [0.5, 0.0, 0.0, 0.5] + [0.0] * 5


def test_grid_world_defaults_are_the_documented_ones():
    """GridWorld's defaults (slip 0.1, no step cost, horizon 50) are those of the registered open room,
    and each named layout's default size is its registered one (DeepSea's N as well)."""
    plain, room = GridWorld(open_room_map(5)), OpenRoom()
    assert plain.horizon == room.horizon == 50 and room.desc == open_room_map(5)
    for mine, registered in zip(plain.transition_matrix(), room.transition_matrix(), strict=True):
        assert np.array_equal(mine, registered)
    assert plain.transition_matrix()[1][0].tolist() == [0.0] * 4  # no step cost away from the goal
    assert plain.transition_matrix()[0][0, 2, 1] == pytest.approx(0.9)
    for cls, env_id in ((OpenRoom, "icrl/GridWorld-Open-v0"), (FourRooms, "icrl/GridWorld-FourRooms-v0")):
        direct, made = cls(), gym.make(env_id).unwrapped
        assert direct.desc == made.desc and direct.n_states == made.n_states
    assert FourRooms().desc == four_rooms_map(11) and FourRooms().n_states == 104
    assert DeepSea().size == gym.make("icrl/DeepSea-v0").unwrapped.size == 10


def test_grid_world_model_and_rendering():
    env = GridWorld(["S.", "#G"], slip=0.2, step_cost=0.5, horizon=9, render_mode="ansi")
    assert env.horizon == 9 and env.cells == [(0, 0), (0, 1), (1, 1)]
    P, R, terminal = env.transition_matrix()
    assert terminal.tolist() == [False, False, True]
    assert env.initial_distribution().tolist() == [1.0, 0.0, 0.0]
    # from S, "right" (2): 0.8 right, 0.1 down (a wall: stay), 0.1 up (outside: stay)
    assert P[0, 2].tolist() == pytest.approx([0.2, 0.8, 0.0])
    # from (0, 1), "down" (1): 0.8 into the goal, 0.1 left, 0.1 right (outside: stay)
    assert P[1, 1].tolist() == pytest.approx([0.1, 0.1, 0.8])
    assert R[1, 1] == pytest.approx(0.8 * 1.0 - 0.2 * 0.5) and R[0, 2] == pytest.approx(-0.5)
    assert P[2, :, 2].tolist() == [1.0] * 4 and R[2].tolist() == [0.0] * 4
    env.reset(seed=0)
    assert env.render() == "x.\n#G\n"
    env.s = 2
    assert env.render() == "S.\n#x\n"
    assert GridWorld(["S.", "#G"], render_mode="ansi").render() == "S.\n#G\n"
    assert GridWorld(("SG",)).desc == ["SG"]


def test_named_grid_worlds_pass_their_arguments():
    room = OpenRoom(size=3, slip=0.0, step_cost=0.25, horizon=6, render_mode="ansi")
    assert room.desc == ["S..", "...", "..G"] and room.horizon == 6 and room.render_mode == "ansi"
    assert room.transition_matrix()[0][0, 2, 1] == 1.0  # no slip
    assert room.transition_matrix()[1][0, 2] == -0.25
    rooms = FourRooms(size=5, slip=0.0, step_cost=0.5, horizon=7, render_mode="ansi")
    assert rooms.desc == four_rooms_map(5) and rooms.horizon == 7 and rooms.render_mode == "ansi"
    assert rooms.transition_matrix()[1][0, 0] == -0.5


# -- Gymnasium toy-text adapter ------------------------------------------------------------------------


def test_terminal_states_of_a_gymnasium_p_dict():
    # 0 -> 1 (done) or 0 -> 2; 2 -> 1 (done); 3 never reachable
    P = {
        0: {0: [(0.5, 1, 1.0, True), (0.5, 2, 0.0, False)]},
        1: {0: [(1.0, 1, 0.0, True)]},
        2: {0: [(1.0, 1, 2.0, True), (0.0, 3, 0.0, True)]},
        3: {0: [(1.0, 0, 0.0, False)]},
    }
    initial = np.array([1.0, 0.0, 0.0, 0.0])
    assert terminal_states(P, initial).tolist() == [False, True, False, False]
    model_P, R, terminal, outcomes = model_from_gymnasium(P, initial, 1)
    assert model_P[0, 0].tolist() == [0.0, 0.5, 0.5, 0.0] and R[0, 0] == 0.5 and R[2, 0] == 2.0
    assert model_P[1, 0].tolist() == [0.0, 1.0, 0.0, 0.0] and R[1, 0] == 0.0
    cdf, nexts, rewards = outcomes[0][0]
    assert cdf.tolist() == [0.5, 1.0] and nexts.tolist() == [1, 2] and rewards.tolist() == [1.0, 0.0]


def test_termination_that_is_not_a_function_of_the_next_state_is_refused():
    P = {
        0: {0: [(0.5, 1, 0.0, True), (0.5, 2, 0.0, False)]},
        1: {0: [(1.0, 1, 0.0, True)]},
        2: {0: [(1.0, 1, 0.0, False)]},  # enters 1 without ending the episode
    }
    with pytest.raises(ValueError) as err:
        terminal_states(P, np.array([1.0, 0.0, 0.0]))
    assert str(err.value) == (
        "transition 2 -> 1 has done=False but state 1 is terminal=True elsewhere: termination is not a "
        "function of the next state, so this env has no terminal-state model"
    )
    # the same conflict from a state no episode reaches is ignored
    assert terminal_states(P, np.array([0.0, 1.0, 0.0])).tolist() == [False, True, False]


def test_toy_text_adapter_keeps_gymnasiums_state_and_rendering():
    env = gym.make("icrl/FrozenLake4x4-v0", render_mode="ansi").unwrapped
    env.reset(seed=0)
    assert env.gym_env.s == env.s == 0 and env.gym_env.lastaction is None
    obs, *_ = env.step(2)
    assert env.gym_env.s == obs and env.gym_env.lastaction == 2
    assert env.render() == env.gym_env.render()
    assert gym.make("icrl/FrozenLake4x4-v0").unwrapped.render() is None
    assert env.metadata["render_modes"] == env.gym_env.metadata["render_modes"]
    env.close()


def test_toy_text_envs_pass_render_mode_and_gymnasium_arguments_on():
    """CliffWalking and Taxi hand ``render_mode`` and Gymnasium's own keyword arguments (``is_slippery``,
    ``is_rainy``) to the inner env: the rendering is Gymnasium's and the model is the varied task's."""
    for env_id in ("icrl/CliffWalking-v0", "icrl/Taxi-v0"):
        env = gym.make(env_id, render_mode="ansi").unwrapped
        assert env.render_mode == "ansi" and env.gym_env.render_mode == "ansi"
        env.reset(seed=0)
        text = env.render()
        assert isinstance(text, str) and text == env.gym_env.render()
        assert gym.make(env_id).unwrapped.gym_env.render_mode is None
    # the default tasks are deterministic; the slippery cliff and the rainy taxi are not
    assert gym.make("icrl/CliffWalking-v0").unwrapped.transition_matrix()[0].max(-1).min() == 1.0
    slippery = gym.make("icrl/CliffWalking-v0", is_slippery=True).unwrapped
    assert slippery.gym_env.is_slippery and slippery.transition_matrix()[0].max(-1).min() == pytest.approx(1 / 3)
    rainy = gym.make("icrl/Taxi-v0", is_rainy=True).unwrapped
    assert rainy.transition_matrix()[0].max(-1).min() == pytest.approx(0.8)


def test_taxi_refuses_a_fickle_passenger_and_says_what_to_use_instead():
    with pytest.raises(ValueError) as err:
        gym.make("icrl/Taxi-v0", fickle_passenger=True)
    assert str(err.value) == (
        "fickle_passenger=True changes the destination outside Taxi's P, so there is no exact model: "
        "use gym.make('Taxi-v4', fickle_passenger=True) directly"
    )


def test_taxi_reset_draws_the_taxi_as_gymnasiums_own_reset_does():
    """Gymnasium's Taxi turns the taxi picture with the last move and faces it south again on reset; the
    adapter resets Gymnasium's state itself, so it must restore that orientation too."""
    env = Taxi(render_mode="rgb_array")
    reference = gym.make("Taxi-v4", render_mode="rgb_array").unwrapped
    reference.reset(seed=0)
    env.reset(seed=0)
    for action in (2, 3):  # east, west: the taxi now faces west
        env.step(action)
        env.render()
    env.reset(seed=1)
    reference.s, reference.lastaction = env.s, None
    assert np.array_equal(env.render(), reference.render())
    env.close()
    reference.close()


@pytest.mark.parametrize("env_id, gymnasium_id", [("icrl/FrozenLake4x4-v0", "FrozenLake-v1"),
                                                   ("icrl/CliffWalking-v0", "CliffWalking-v1"), ("icrl/Taxi-v0", "Taxi-v4")])
def test_toy_text_envs_offer_gymnasiums_render_modes_without_a_warning(env_id, gymnasium_id):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gym.make warns when render_mode is not in the class's metadata
        env = gym.make(env_id, render_mode="rgb_array")
    modes = gym.make(gymnasium_id).unwrapped.metadata["render_modes"]
    assert type(env.unwrapped).metadata["render_modes"] == modes and "rgb_array" in modes
    env.reset(seed=0)
    assert env.render().ndim == 3
    env.close()


@pytest.mark.parametrize("render_mode", [None, "human"])
def test_toy_text_render_without_a_frame_to_return_draws_nothing(render_mode):
    """Gymnasium's render API: without a render mode ``render()`` returns None, and in ``"human"`` mode
    reset and step draw the window themselves, so ``render()`` returns None without drawing again."""
    env = FrozenLake(render_mode=render_mode)
    drawn = []
    env.gym_env.render = lambda: drawn.append(env.gym_env.s)
    env.reset(seed=0)
    env.step(2)
    frames = len(drawn)
    assert frames == (2 if render_mode == "human" else 0)
    assert env.render() is None and len(drawn) == frames


def test_register_tabular_envs_fills_an_emptied_registry_with_the_documented_specs():
    """``register_tabular_envs()`` is public: after the icrl ids were removed (e.g. a test or a tool reset
    Gymnasium's registry) it registers each id again with its entry point, time limit and kwargs."""
    saved = {env_id: gym.registry.pop(env_id) for env_id in TABULAR_ENV_IDS}
    try:
        register_tabular_envs()
        assert set(TABULAR_ENV_IDS) <= set(gym.registry)
        for env_id, spec in saved.items():
            assert gym.registry[env_id] is not spec
            new = gym.spec(env_id)
            assert (new.entry_point, new.max_episode_steps, new.kwargs) == (
                spec.entry_point,
                spec.max_episode_steps,
                spec.kwargs,
            )
        deep_sea = gym.spec("icrl/DeepSea-v0")
        assert deep_sea.entry_point == "icrl_agent.envs.classic:DeepSea"
        assert deep_sea.max_episode_steps is None and deep_sea.kwargs == {"size": 10}
        frozen = gym.spec("icrl/FrozenLake8x8-v0")
        assert frozen.entry_point == "icrl_agent.envs.toy_text:FrozenLake"
        assert frozen.max_episode_steps == 200 and frozen.kwargs == {"map_name": "8x8", "horizon": 200}
        assert gym.spec("icrl/Chain-v0").max_episode_steps == 50
        assert isinstance(gym.make("icrl/Chain-v0").unwrapped, Chain)
    finally:
        gym.registry.update(saved)


def test_frozen_lake_defaults_and_gymnasium_arguments():
    """FrozenLake() is the registered 4x4 task (horizon 100); other keyword arguments go to Gymnasium."""
    lake, made = FrozenLake(), gym.make("icrl/FrozenLake4x4-v0").unwrapped
    assert lake.horizon == made.horizon == 100 and lake.n_states == 16
    for mine, registered in zip(lake.transition_matrix(), made.transition_matrix(), strict=True):
        assert np.array_equal(mine, registered)
    assert lake.transition_matrix()[0].max(-1).min() == pytest.approx(1 / 3)  # slippery by default
    assert FrozenLake(is_slippery=False).transition_matrix()[0].max(-1).min() == 1.0


def test_gymnasium_outcomes_keep_integer_successors_and_float_rewards():
    """``model_from_gymnasium``'s outcome arrays index states: the successors are integer ids."""
    P = {0: {0: [(0.5, 1, 1.0, False), (0.5, 0, 0.0, False)]}, 1: {0: [(1.0, 1, 0.0, False)]}}
    _, _, _, outcomes = model_from_gymnasium(P, np.array([1.0, 0.0]), 1)
    cdf, nexts, rewards = outcomes[0][0]
    assert nexts.dtype.kind == "i" and nexts.tolist() == [1, 0]
    assert rewards.dtype == np.float64 and cdf.tolist() == [0.5, 1.0]


def test_integer_model_arrays_become_float64_copies():
    """``transition_matrix()`` and ``initial_distribution()`` are float64 whatever the input's dtype."""
    model = two_state()
    env = TabularEnv(model["P"].astype(int), model["R"].astype(int), [0, 0], [1, 0], 5)
    P, R, terminal = env.transition_matrix()
    assert (P.dtype, R.dtype, terminal.dtype) == (np.float64, np.float64, bool)
    assert env.initial_distribution().dtype == np.float64 and env.initial_distribution().tolist() == [1.0, 0.0]


def test_a_one_state_one_action_model_is_accepted():
    env = TabularEnv(np.ones((1, 1, 1)), np.full((1, 1), 2.0), np.zeros(1, bool), np.ones(1), 3)
    assert env.reset(seed=0)[0] == 0 and env.step(0)[:2] == (0, 2.0)
    assert env.optimal_value() == 6.0


def test_the_reward_table_expectation_is_checked_to_1e_6():
    """R may differ from the reward table's expectation by rounding (up to 1e-6), not more."""
    table = np.zeros((2, 2, 2))
    table[0, 1, 1] = table[1, 1, 0] = 1.0
    R = two_state()["R"] + np.array([[5e-7, 0.0], [0.0, 0.0]])  # R[0, 0] is 0 in the table's expectation
    env = TabularEnv(**two_state(R=R, reward_table=table))
    assert env.transition_matrix()[1][0, 0] == 5e-7
    refused(
        "R must be the expected reward of reward_table: R[s, a] = sum_s' P * reward_table",
        R=two_state()["R"] + np.array([[2e-6, 0.0], [0.0, 0.0]]),
        reward_table=table,
    )


class _Draw:
    """A stand-in generator whose every draw is ``u``: the ends of [0, 1)."""

    def __init__(self, u):
        self.u = u

    def random(self):
        return self.u


def test_the_extreme_draws_never_land_on_an_impossible_state():
    P = np.zeros((4, 1, 4))
    P[:, 0] = [0.0, 0.5, 0.5, 0.0]
    env = TabularEnv(P, np.zeros((4, 1)), np.zeros(4, bool), np.array([0.0, 0.3, 0.7, 0.0]), 3)
    env.reset(seed=0)
    env.np_random = _Draw(0.0)
    assert env.reset()[0] == 1 and env.step(0)[0] == 1
    env.np_random = _Draw(np.nextafter(1.0, 0.0))
    assert env.reset()[0] == 2 and env.step(0)[0] == 2
    # a row summing to just under 1 (within the tolerance): the top draw is scaled into it, not past it
    P = np.zeros((3, 1, 3))
    P[:, 0] = [0.5, 0.5 - 1e-9, 0.0]
    env = TabularEnv(P, np.zeros((3, 1)), np.zeros(3, bool), np.array([1.0, 0.0, 0.0]), 3)
    env.reset(seed=0)
    env.np_random = _Draw(np.nextafter(1.0, 0.0))
    assert env.step(0)[0] == 1


def test_a_conflict_reached_only_through_a_zero_probability_outcome_is_ignored():
    """Only states an episode can reach matter: an outcome of probability 0 reaches nothing."""
    P = {
        0: {0: [(1.0, 3, 0.0, False), (0.0, 2, 0.0, False)]},
        1: {0: [(1.0, 1, 0.0, True)]},
        2: {0: [(1.0, 1, 0.0, False)]},  # enters the terminal state 1 without ending: only via probability 0
        3: {0: [(1.0, 1, 0.0, True)]},
    }
    assert terminal_states(P, np.array([1.0, 0.0, 0.0, 0.0])).tolist() == [False, True, False, False]
