"""MiniGridTabular, the contract in detail: the exact wording of every refusal (each names the fix), the
accepted forms of actions and layout seeds, and what reset / step / set_state / the model accessors
return."""

import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded

from icrl_agent.envs.minigrid_tabular import MINIGRID_ACTION_NAMES, MiniGridTabular, register_minigrid_envs

minigrid = pytest.importorskip("minigrid")

NAV = ("left", "right", "forward")


@pytest.fixture(scope="module")
def empty():
    return MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=NAV, max_steps=30)


@pytest.mark.parametrize("seed", [-1, [], [0, -2], "0", [0, 1.0], ["a"], 1.5, None])
def test_bad_layout_seed_message(seed):
    with pytest.raises(ValueError) as err:
        MiniGridTabular("MiniGrid-Empty-6x6-v0", layout_seed=seed)
    assert str(err.value) == (
        f"layout_seed must be a non-negative int or a non-empty sequence of them, got {seed!r}"
    )


def test_layout_seeds_accepted_forms():
    env = MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=NAV, layout_seed=np.int64(3))
    assert env.layout_seeds == (3,) and type(env.layout_seeds[0]) is int
    env = MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=NAV, layout_seed=(0, np.int32(2)))
    assert env.layout_seeds == (0, 2)
    assert MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=NAV, layout_seed=0).layout_seeds == (0,)


def test_the_default_layout_seed_is_0():
    env = MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=NAV)
    assert env.layout_seeds == (0,) and env.reset(seed=3)[1] == {"layout_seed": 0}


@pytest.mark.parametrize("actions", ["left", 3, (), []])
def test_actions_must_be_a_non_empty_sequence(actions):
    with pytest.raises(ValueError) as err:
        MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=actions)
    assert str(err.value) == f"actions must be a non-empty sequence of ints or names, got {actions!r}"


@pytest.mark.parametrize("action", ["jump", 7, -1, 1.0, "LEFT", None])
def test_unknown_action_message(action):
    with pytest.raises(ValueError) as err:
        MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=("left", action))
    assert str(err.value) == (
        f"unknown MiniGrid action {action!r}: use ints 0..6 or names {MINIGRID_ACTION_NAMES}"
    )


def test_repeated_actions_message():
    for actions in ((0, 0), ("left", 0), ["forward", "right", 2]):
        with pytest.raises(ValueError) as err:
            MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=actions)
        assert str(err.value) == f"actions must not repeat, got {actions!r}"


def test_actions_as_ints_names_or_numpy_ints():
    env = MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=[np.int64(2), "left", 6], max_steps=10)
    assert env.actions == (2, 0, 6) and all(type(a) is int for a in env.actions)
    assert env.action_space == gym.spaces.Discrete(3)
    assert env.horizon == 10 and type(env.horizon) is int


def test_max_states_message_names_the_env_and_the_fixes():
    with pytest.raises(ValueError) as err:
        MiniGridTabular("MiniGrid-Empty-6x6-v0", max_states=10)
    assert str(err.value) == (
        "MiniGrid-Empty-6x6-v0 has more than max_states=10 reachable states: fix the layout (layout_seed), drop "
        "actions that multiply states (e.g. 'drop'), or raise max_states"
    )
    exact = MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=NAV, max_states=62)  # exactly enough
    assert exact.n_states == 62


def test_env_type_messages():
    with pytest.raises(TypeError) as err:
        MiniGridTabular("CartPole-v1")
    assert re.fullmatch(
        re.escape(f"env must be a MiniGrid env id or a MiniGrid env (minigrid {minigrid.__version__}), got ")
        + ".*CartPole.*",
        str(err.value),
        flags=re.S,
    )
    with pytest.raises(TypeError) as err:
        MiniGridTabular(42)
    assert str(err.value).endswith("got 42")
    real = gym.make("MiniGrid-Empty-6x6-v0")
    with pytest.raises(TypeError) as err:
        MiniGridTabular(real, max_steps=10, see_through_walls=True)
    assert str(err.value) == (
        "keyword arguments ['max_steps', 'see_through_walls'] apply only when env is an id, not an instance"
    )


def test_model_accessors(empty):
    P, R, terminal = empty.transition_matrix()
    nxt = empty.successor_table()
    assert P.shape == (62, 3, 62) and nxt.shape == (62, 3) and nxt.dtype == np.int64
    assert (P.sum(-1) == 1.0).all() and (P.argmax(-1) == nxt).all()
    assert terminal.dtype == bool and terminal.sum() == 2 and R.dtype == np.float64
    assert set(np.unique(R).tolist()) == {0.0, 1.0}
    nxt[:] = 0
    R[:] = 5.0
    terminal[:] = True
    assert empty.successor_table().max() > 0 and empty.transition_matrix()[1].max() == 1.0
    assert empty.transition_matrix()[2].sum() == 2
    mu = empty.initial_distribution()
    assert mu.shape == (62,) and mu.sum() == 1.0 and mu[0] == 1.0  # ids in breadth-first order
    assert empty.observation_space == gym.spaces.Discrete(62)
    assert empty.optimal_value() == 1.0
    assert empty.optimal_value(gamma=0.5) == pytest.approx(0.5**6)  # 7 steps to the goal
    assert 0.0 < empty.random_value(gamma=0.9) < empty.random_value() < 1.0


def test_reset_step_and_set_state(empty):
    obs, info = empty.reset(seed=0)
    assert obs == 0 and info == {"layout_seed": 0} and empty.minigrid_state_id() == 0
    nxt = empty.successor_table()
    obs, reward, terminated, truncated, info = empty.step(np.int64(2))
    assert obs == nxt[0, 2] and type(obs) is int and reward == 0.0 and type(reward) is float
    assert terminated is False and truncated is False and info == {"minigrid_reward": 0.0}
    for bad in (3, -1):
        with pytest.raises(ValueError) as err:
            empty.step(bad)
        assert str(err.value) == f"action {bad!r} is not in the action space Discrete(3)"
    for bad in (-1, 62, 1.0, "1"):
        with pytest.raises(ValueError) as err:
            empty.set_state(bad)
        assert str(err.value) == f"state_id must be an int in [0, 62), got {bad!r}"
    empty.set_state(np.int64(5))
    assert empty.minigrid_state_id() == 5 and empty.minigrid.step_count == 0
    goal = int(np.flatnonzero(empty.transition_matrix()[2])[0])
    into_goal = np.argwhere(nxt == goal)[0]
    empty.set_state(int(into_goal[0]))
    obs, reward, terminated, _, info = empty.step(int(into_goal[1]))
    assert obs == goal and reward == 1.0 and terminated is True
    assert info["minigrid_reward"] == pytest.approx(1 - 0.9 / 30)
    with pytest.raises(ResetNeeded) as err:
        empty.step(0)
    assert str(err.value) == "the episode has terminated: call reset() before step()"
    empty.set_state(0)
    empty.step(0)


def test_step_before_reset_and_an_unknown_real_state():
    env = MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=NAV)
    with pytest.raises(ResetNeeded) as err:
        env.step(0)
    assert str(err.value) == "call reset() before step()"
    env.reset(seed=0)
    env.minigrid.agent_pos = (0, 0)  # inside the outer wall: no reachable state
    with pytest.raises(RuntimeError) as err:
        env.minigrid_state_id()
    assert str(err.value) == (
        "the MiniGrid env is in a state the extracted model does not contain: its dynamics depend on more "
        "than grid, agent pose and carried object (e.g. random moves), so it is not tabular"
    )
    env.close()


def test_register_passes_the_task_arguments():
    register_minigrid_envs()
    spec = gym.spec("icrl/MiniGrid-DoorKey-5x5-v0")
    assert spec.entry_point == "icrl_agent.envs.minigrid_tabular:MiniGridTabular"
    assert spec.max_episode_steps == 50
    assert spec.kwargs == {
        "env": "MiniGrid-DoorKey-5x5-v0",
        "actions": ("left", "right", "forward", "pickup", "toggle"),
        "layout_seed": 0,
        "max_steps": 50,
    }
    assert gym.spec("icrl/MiniGrid-Empty-6x6-v0").kwargs["actions"] == NAV


def test_max_states_is_the_largest_number_of_states_allowed():
    """max_states=N enumerates up to N states: Empty-6x6 with 3 actions has 62, so 61 is refused."""
    with pytest.raises(ValueError) as err:
        MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=NAV, max_states=61)
    assert str(err.value).startswith("MiniGrid-Empty-6x6-v0 has more than max_states=61 reachable states")


def test_max_states_message_of_an_env_instance_without_a_spec():
    """An env built directly (no Gymnasium spec) is named by Gymnasium's text for it, not by a spec id."""
    from minigrid.envs import EmptyEnv

    real = EmptyEnv(size=5)
    assert real.spec is None
    with pytest.raises(ValueError) as err:
        MiniGridTabular(real, actions=NAV, max_states=3)
    assert str(err.value) == (
        "<EmptyEnv instance> has more than max_states=3 reachable states: fix the layout (layout_seed), drop "
        "actions that multiply states (e.g. 'drop'), or raise max_states"
    )


def _box_room():
    """A 3x2 room: the agent at (1, 1) facing east, a red box holding a yellow key at (3, 1), a goal below."""
    from minigrid.core.grid import Grid
    from minigrid.core.mission import MissionSpace
    from minigrid.core.world_object import Box, Goal, Key
    from minigrid.minigrid_env import MiniGridEnv

    class BoxRoom(MiniGridEnv):
        def __init__(self):
            super().__init__(mission_space=MissionSpace(mission_func=lambda: "open the box"), width=5, height=4,
                             max_steps=20)

        def _gen_grid(self, width, height):
            self.grid = Grid(width, height)
            self.grid.wall_rect(0, 0, width, height)
            self.grid.set(3, 1, Box("red", contains=Key("yellow")))
            self.grid.set(3, 2, Goal())
            self.agent_pos, self.agent_dir = (1, 1), 0

    return BoxRoom()


def test_what_a_box_holds_is_part_of_the_state():
    """Box contents are state (the class docstring): toggling a box that holds a key leaves the key in its
    cell, the key can then be carried, and set_state puts the box back with the key inside."""
    env = MiniGridTabular(_box_room(), actions=("left", "right", "forward", "pickup", "toggle"))
    nxt = env.successor_table()
    start, _ = env.reset(seed=0)
    facing_box, *_ = env.step(2)  # forward to (2, 1), the box in front
    assert env.minigrid.grid.get(3, 1).type == "box"
    opened, *_ = env.step(4)  # toggle: the box gives way to its key
    assert opened != facing_box and opened == nxt[facing_box, 4]
    assert env.minigrid.grid.get(3, 1).type == "key"
    carrying, *_ = env.step(3)  # pickup
    assert carrying == nxt[opened, 3] and env.minigrid.carrying.type == "key"
    assert env.minigrid.grid.get(3, 1) is None
    env.set_state(facing_box)
    box = env.minigrid.grid.get(3, 1)
    assert box.type == "box" and box.contains.type == "key" and env.minigrid.carrying is None
    assert env.minigrid_state_id() == facing_box and nxt[facing_box, 4] == opened
    env.close()


def test_termination_that_is_not_a_function_of_the_state_is_refused_with_the_reason():
    """A task whose 'done' ends the episode without changing the state has no terminal-state model."""
    from minigrid.envs import EmptyEnv

    class DoneEnds(EmptyEnv):
        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            return obs, reward, terminated or action == self.actions.done, truncated, info

    with pytest.raises(RuntimeError) as err:
        MiniGridTabular(DoneEnds(size=5), actions=("forward", "done"))
    assert str(err.value) == (
        "MiniGrid terminated on entering a state it also enters without terminating: termination depends on "
        "more than the state (or the dynamics are random), so this env is not tabular"
    )


def test_register_minigrid_envs_fills_an_emptied_registry_with_the_documented_specs():
    """``register_minigrid_envs()`` registers again every id removed from Gymnasium's registry, with the
    MiniGridTabular entry point, the task's horizon as time limit and the task arguments, and leaves an id
    still registered as it is (here the first one: the others after it are registered all the same)."""
    from icrl_agent.envs.minigrid_tabular import MINIGRID_ENV_IDS

    register_minigrid_envs()
    kept = gym.registry[MINIGRID_ENV_IDS[0]]
    saved = {env_id: gym.registry.pop(env_id) for env_id in MINIGRID_ENV_IDS[1:]}
    try:
        register_minigrid_envs()
        assert gym.registry[MINIGRID_ENV_IDS[0]] is kept
        expected = {
            "icrl/MiniGrid-Empty-6x6-v0": ("MiniGrid-Empty-6x6-v0", 30, NAV),
            "icrl/MiniGrid-DoorKey-5x5-v0": (
                "MiniGrid-DoorKey-5x5-v0", 50, ("left", "right", "forward", "pickup", "toggle")
            ),
            "icrl/MiniGrid-FourRooms-v0": ("MiniGrid-FourRooms-v0", 100, NAV),
        }
        assert set(expected) == set(MINIGRID_ENV_IDS)
        for env_id, (minigrid_id, horizon, actions) in expected.items():
            spec = gym.registry[env_id]
            assert spec is not saved.get(env_id)  # a new registration for each removed id
            assert spec.entry_point == "icrl_agent.envs.minigrid_tabular:MiniGridTabular"
            assert spec.max_episode_steps == horizon
            assert spec.kwargs == {"env": minigrid_id, "actions": actions, "layout_seed": 0, "max_steps": horizon}
        assert isinstance(gym.make("icrl/MiniGrid-Empty-6x6-v0").unwrapped, MiniGridTabular)
    finally:
        gym.registry.update(saved)


def _variants():
    """A 3x2 room whose reset seed's bits vary one kind of state each, the agent always at (1, 1) facing
    east: bit 0 a wall at (1, 2) (the fixed background), bit 1 a red key carried from the start, bit 2 a
    ball instead of a key in the box at (3, 1). A goal at (3, 2)."""
    from minigrid.core.grid import Grid
    from minigrid.core.mission import MissionSpace
    from minigrid.core.world_object import Ball, Box, Goal, Key, Wall
    from minigrid.minigrid_env import MiniGridEnv

    class Variants(MiniGridEnv):
        def __init__(self):
            super().__init__(mission_space=MissionSpace(mission_func=lambda: "reach the goal"), width=5, height=4,
                             max_steps=20)

        def _gen_grid(self, width, height):
            bits = self.np_random_seed
            self.grid = Grid(width, height)
            self.grid.wall_rect(0, 0, width, height)
            self.grid.set(3, 1, Box("red", contains=Ball("blue") if bits & 4 else Key("yellow")))
            self.grid.set(3, 2, Goal())
            if bits & 1:
                self.grid.set(1, 2, Wall())
            self.agent_pos, self.agent_dir = (1, 1), 0

        def reset(self, *, seed=None, options=None):
            obs, info = super().reset(seed=seed, options=options)
            if self.np_random_seed & 2:
                self.carrying = Key("red")
            return obs, info

    return Variants()


def test_layouts_that_differ_only_in_walls_carried_object_or_box_contents_are_distinct_states():
    """A state is the fixed background, the agent pose, the carried object and every movable object with
    what it contains (the class docstring): four layouts that differ in one of these each, with the agent in
    the same pose, are four start states, each the start of its own layout."""
    env = MiniGridTabular(_variants(), actions=("left", "right", "forward", "pickup", "toggle"),
                          layout_seed=[0, 1, 2, 4])
    mu = env.initial_distribution()
    starts = np.flatnonzero(mu)
    assert len(starts) == 4 and np.allclose(mu[starts], 0.25)
    assert env.minigrid_state_id() == 0  # made: the real env waits in the first layout's start state
    by_seed = {}
    for seed in range(40):
        state, info = env.reset(seed=seed)
        by_seed[info["layout_seed"]] = state
    assert sorted(by_seed) == [0, 1, 2, 4] and sorted(by_seed.values()) == starts.tolist()
    for layout, start in by_seed.items():
        env.set_state(start)
        carried = env.minigrid.carrying
        assert (carried is not None) == bool(layout & 2)
        assert (env.minigrid.grid.get(1, 2) is not None) == bool(layout & 1)
        assert env.minigrid.grid.get(3, 1).contains.type == ("ball" if layout & 4 else "key")
    env.close()


def test_render_mode_is_the_real_envs():
    """``render_mode`` is MiniGrid's, as Gymnasium wrappers (e.g. RecordVideo) read it from the env."""
    env = MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=NAV, render_mode="rgb_array")
    assert env.render_mode == "rgb_array" == env.minigrid.render_mode
    assert MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=NAV).render_mode is None


def test_a_real_env_that_leaves_the_model_is_reported_by_step():
    """step compares the real env's move with the extracted model: an env changed behind the wrapper's
    back (here the agent turned) lands elsewhere, and step says so instead of returning a wrong state."""
    env = MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=NAV)
    start, _ = env.reset(seed=0)
    expected = int(env.successor_table()[start, 2])
    env.minigrid.agent_dir = 1  # facing down instead of right: forward moves elsewhere
    with pytest.raises(RuntimeError) as err:
        env.step(2)
    landed = env.minigrid_state_id()
    assert landed != expected
    assert str(err.value) == (
        f"MiniGrid moved from state {start} with action 2 to {landed} (terminated=False), not as extracted: "
        "its dynamics are not deterministic in the state"
    )


def test_without_minigrid_the_error_says_how_to_install(monkeypatch):
    import sys

    from gymnasium.error import DependencyNotInstalled

    monkeypatch.setitem(sys.modules, "minigrid", None)  # import minigrid now raises ImportError
    with pytest.raises(DependencyNotInstalled) as err:
        MiniGridTabular("MiniGrid-Empty-6x6-v0")
    assert str(err.value) == "minigrid is not installed, run pip install icrl-agent[minigrid]"
