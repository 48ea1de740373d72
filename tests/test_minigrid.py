"""The MiniGrid tabular wrapper: the extracted model is the real env's; the registered tasks are solvable."""

import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

from icrl_agent import solvers
from icrl_agent.envs.minigrid_tabular import MINIGRID_ENV_IDS, MiniGridTabular, register_minigrid_envs

# The wrapper module never imports minigrid; the tests need it.
pytest.importorskip("minigrid")

register_minigrid_envs()

_ENVS: dict[str, MiniGridTabular] = {}
_BUILD_SECONDS: dict[str, float] = {}


def tabular(env_id: str) -> MiniGridTabular:
    """One built env per id for the whole module (FourRooms takes ~0.6 s to enumerate)."""
    if env_id not in _ENVS:
        start = time.perf_counter()
        _ENVS[env_id] = gym.make(env_id).unwrapped
        _BUILD_SECONDS[env_id] = time.perf_counter() - start
    return _ENVS[env_id]


def real_view(env: MiniGridTabular) -> tuple:
    """The real env's state in MiniGrid's own terms, independent of the wrapper's state keys."""
    mg = env.minigrid
    carrying = None if mg.carrying is None else mg.carrying.encode()
    return tuple(int(x) for x in mg.agent_pos), int(mg.agent_dir), carrying, mg.grid.encode().tobytes()


def assert_model_matches_real_env(env: MiniGridTabular) -> None:
    """Every (state, action): restore the real env, step it, compare with P, R and terminal."""
    P, R, terminal = env.transition_matrix()
    next_state = env.successor_table()
    assert np.array_equal(P.argmax(axis=-1), next_state) and np.allclose(P.sum(axis=-1), 1.0)
    decay = 1 - 0.9 / env.horizon  # MiniGrid's reward after one step from step_count 0
    for s in range(env.n_states):
        if terminal[s]:
            assert (next_state[s] == s).all() and (R[s] == 0).all()
            continue
        for a, minigrid_action in enumerate(env.actions):
            env.set_state(s)
            _, reward, terminated, truncated, _ = env.minigrid.step(minigrid_action)
            landed = real_view(env)
            assert env.minigrid_state_id() == next_state[s, a]
            assert terminated == terminal[next_state[s, a]] and not truncated
            assert reward == pytest.approx(R[s, a] * decay)
            env.set_state(int(next_state[s, a]))
            assert real_view(env) == landed, f"state {next_state[s, a]} is not where MiniGrid landed"
            env.set_state(s)
            obs, wrapped_reward, wrapped_terminated, _, info = env.step(a)
            assert (obs, wrapped_reward, wrapped_terminated) == (next_state[s, a], R[s, a], terminal[obs])
            assert info["minigrid_reward"] == pytest.approx(reward)


@pytest.mark.parametrize("env_id", MINIGRID_ENV_IDS)
def test_model_agrees_with_real_env_on_every_state_action(env_id):
    env = tabular(env_id)
    print(f"{env_id}: S={env.n_states} A={len(env.actions)} built in {_BUILD_SECONDS[env_id]:.2f}s")
    assert_model_matches_real_env(env)


@pytest.mark.parametrize("env_id", MINIGRID_ENV_IDS)
def test_check_env_passes(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", MINIGRID_ENV_IDS)
def test_optimal_greedy_policy_reaches_the_goal(env_id):
    env = tabular(env_id)
    P, R, terminal = env.transition_matrix()
    q = solvers.finite_horizon_q(P, R, env.horizon, terminal).flip(0)  # q[t]: elapsed step t
    optimal = env.optimal_value()
    assert 0 < optimal == pytest.approx(1.0)
    assert 0 <= env.random_value() < optimal
    assert 0 < env.optimal_value(gamma=0.99) < 1
    obs, _ = env.reset(seed=0)
    total, t, terminated, truncated = 0.0, 0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(int(q[t, obs].argmax()))
        total, t = total + reward, t + 1
    assert terminated and total == pytest.approx(optimal)
    # MiniGrid's own reward decays with time; the wrapper's is the stationary success indicator.
    assert info["minigrid_reward"] == pytest.approx(1 - 0.9 * t / env.horizon)


def test_registered_tasks_are_documented_sizes():
    sizes = {env_id: (tabular(env_id).n_states, tabular(env_id).horizon) for env_id in MINIGRID_ENV_IDS}
    # Empty-6x6: 15 free cells x 4 directions, plus the goal entered facing right or down.
    assert sizes["icrl/MiniGrid-Empty-6x6-v0"] == (62, 30)
    assert sizes["icrl/MiniGrid-DoorKey-5x5-v0"][1] == 50
    assert sizes["icrl/MiniGrid-FourRooms-v0"][1] == 100
    assert 500 < sizes["icrl/MiniGrid-FourRooms-v0"][0] < 2000  # the real 19x19 layout stays tabular
    assert tabular("icrl/MiniGrid-Empty-6x6-v0").action_space == gym.spaces.Discrete(3)
    assert tabular("icrl/MiniGrid-DoorKey-5x5-v0").action_space == gym.spaces.Discrete(5)


def test_register_is_idempotent_and_ids_make_the_wrapper():
    register_minigrid_envs()
    register_minigrid_envs()
    for env_id in MINIGRID_ENV_IDS:
        assert env_id in gym.registry
        assert gym.spec(env_id).max_episode_steps == tabular(env_id).horizon
    env = gym.make("icrl/MiniGrid-Empty-6x6-v0", max_steps=12, max_episode_steps=12)
    assert isinstance(env.unwrapped, MiniGridTabular) and env.unwrapped.horizon == 12


def test_truncates_at_horizon_without_terminating():
    env = MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=("left",), max_steps=5)
    env.reset(seed=0)
    flags = [env.step(0)[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]


def test_several_layouts_form_one_mdp_with_a_uniform_start():
    env = MiniGridTabular(
        "MiniGrid-DoorKey-5x5-v0",
        actions=("left", "right", "forward", "pickup", "toggle"),
        layout_seed=[0, 1],
        max_steps=50,
    )
    mu = env.initial_distribution()
    starts = np.flatnonzero(mu)
    assert len(starts) == 2 and np.allclose(mu[starts], 0.5)
    seen = {env.reset(seed=seed)[0] for seed in range(20)}
    assert seen == set(starts.tolist())
    # set_state must restore layout 0's objects even after a reset rebuilt them.
    assert_model_matches_real_env(env)
    assert env.optimal_value() == pytest.approx(1.0)


def test_all_seven_actions_by_default_with_useless_ones_as_self_loops():
    env = MiniGridTabular("MiniGrid-Empty-6x6-v0")
    assert env.actions == tuple(range(7))
    next_state = env.successor_table()
    start = int(np.flatnonzero(env.initial_distribution())[0])
    assert (next_state[start, 3:] == start).all()  # pickup, drop, toggle, done: nothing to act on
    assert (next_state[start, :3] != start).all()
    assert env.n_states == 62


def test_picking_up_and_dropping_keys_multiplies_states_and_matches_the_real_env():
    env = MiniGridTabular("MiniGrid-DoorKey-5x5-v0")
    assert env.n_states > tabular("icrl/MiniGrid-DoorKey-5x5-v0").n_states
    assert_model_matches_real_env(env)


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="unknown MiniGrid action 'jump'"):
        MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=("left", "jump"))
    with pytest.raises(ValueError, match="must not repeat"):
        MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=(0, 0))
    with pytest.raises(ValueError, match="layout_seed"):
        MiniGridTabular("MiniGrid-Empty-6x6-v0", layout_seed=-1)
    with pytest.raises(ValueError, match="raise max_states"):
        MiniGridTabular("MiniGrid-FourRooms-v0", max_states=100)
    with pytest.raises(TypeError, match="MiniGrid env"):
        MiniGridTabular("CartPole-v1")
    env = tabular("icrl/MiniGrid-Empty-6x6-v0")
    with pytest.raises(ValueError, match="state_id"):
        env.set_state(env.n_states)


def test_step_errors_leave_the_state_unchanged():
    env = MiniGridTabular("MiniGrid-Empty-6x6-v0", actions=("left", "right", "forward"))
    with pytest.raises(ResetNeeded):
        env.step(0)
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="not in the action space"):
        env.step(3)
    assert env.minigrid_state_id() == obs and env.minigrid.step_count == 0
    goal_entries = np.flatnonzero(env.transition_matrix()[2])
    env.set_state(int(goal_entries[0]))
    with pytest.raises(ResetNeeded, match="terminated"):
        env.step(0)


def test_an_env_instance_is_wrapped_in_place():
    real = gym.make("MiniGrid-Empty-6x6-v0", max_steps=20)
    env = MiniGridTabular(real, actions=("left", "right", "forward"))
    assert env.minigrid is real.unwrapped and env.horizon == 20
    with pytest.raises(TypeError, match="only when env is an id"):
        MiniGridTabular(real, max_steps=10)


def test_rgb_render_is_minigrids():
    env = gym.make("icrl/MiniGrid-Empty-6x6-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3


def test_without_minigrid_import_works_and_make_says_how_to_install():
    code = (
        "import sys; sys.modules['minigrid'] = None\n"
        "import gymnasium as gym\n"
        "from icrl_agent.envs.minigrid_tabular import register_minigrid_envs, MiniGridTabular\n"
        "register_minigrid_envs()\n"
        "try:\n"
        "    gym.make('icrl/MiniGrid-Empty-6x6-v0')\n"
        "except gym.error.DependencyNotInstalled as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install icrl-agent[minigrid]" in result.stdout
