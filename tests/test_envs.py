"""The registered tabular envs: Gymnasium-valid, their models are what they step, their optima check out."""

from __future__ import annotations

import warnings
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

import icrl_agent
from icrl_agent.envs import (
    ALL_ENV_IDS,
    TABULAR_ENV_IDS,
    Chain,
    DeepSea,
    FourRooms,
    OpenRoom,
    TabularEnv,
    Taxi,
    register_tabular_envs,
)
from icrl_agent.solvers import finite_horizon_q


def model(env_id: str, **kwargs) -> TabularEnv:
    return gym.make(env_id, **kwargs).unwrapped


def greedy_actions(env: TabularEnv) -> np.ndarray:
    """Per-step optimal actions ``[H, S]`` of the env's own model."""
    P, R, terminal = env.transition_matrix()
    return finite_horizon_q(P, R, env.horizon, terminal).flip(0).argmax(dim=-1).numpy()  # by elapsed step


def rollout_returns(gym_env: gym.Env, actions: np.ndarray, episodes: int, seed: int) -> np.ndarray:
    """Returns of the per-step policy ``actions[t, s]`` played in ``gym_env`` (its own time limit applies)."""
    returns = np.zeros(episodes)
    obs, _ = gym_env.reset(seed=seed)
    for i in range(episodes):
        t, done = 0, False
        while not done:
            obs, reward, terminated, truncated, _ = gym_env.step(int(actions[min(t, len(actions) - 1), obs]))
            returns[i] += reward
            t, done = t + 1, terminated or truncated
        obs, _ = gym_env.reset()
    return returns


def assert_within_ci(returns: np.ndarray, value: float) -> None:
    half_width = 4.0 * returns.std(ddof=1) / np.sqrt(len(returns)) + 1e-9
    assert abs(returns.mean() - value) <= half_width, (returns.mean(), value, half_width)


# ---- every registered id ------------------------------------------------------------------------------


def test_ids_are_registered_and_exported():
    assert len(TABULAR_ENV_IDS) == 10 and set(TABULAR_ENV_IDS) <= set(ALL_ENV_IDS)
    assert all(env_id in gym.registry for env_id in ALL_ENV_IDS)
    assert icrl_agent.envs.TABULAR_ENV_IDS is TABULAR_ENV_IDS


def test_registration_is_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_tabular_envs()
        icrl_agent.envs.register_tabular_envs()


@pytest.mark.parametrize("env_id", TABULAR_ENV_IDS)
def test_env_checker_and_model(env_id):
    env = gym.make(env_id)
    unwrapped = env.unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(unwrapped, skip_render_check=True)
    P, R, terminal = unwrapped.transition_matrix()
    S, A = R.shape
    assert P.dtype == R.dtype == np.float64 and terminal.dtype == bool
    assert P.shape == (S, A, S) and terminal.shape == (S,)
    assert (unwrapped.observation_space.n, unwrapped.action_space.n) == (S, A)
    np.testing.assert_allclose(P.sum(axis=-1), 1.0, atol=1e-12)
    init = unwrapped.initial_distribution()
    assert init.shape == (S,) and np.isclose(init.sum(), 1.0) and not init[terminal].any()
    limit = env.spec.max_episode_steps
    assert unwrapped.horizon == (limit if limit is not None else unwrapped.size)
    assert unwrapped.optimal_value() > unwrapped.random_value()
    P[0, 0, 0] += 1.0  # copies: the env's model is untouched
    assert np.allclose(unwrapped.transition_matrix()[0].sum(axis=-1), 1.0)


@pytest.mark.parametrize("env_id", TABULAR_ENV_IDS)
def test_episodes_end_as_registered(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    terminal = env.unwrapped.transition_matrix()[2]
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        assert terminated == bool(terminal[obs]) and np.isfinite(reward)
    assert steps <= env.unwrapped.horizon and (terminated or steps == env.unwrapped.horizon)


# ---- step samples the model ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env_id, state, action",
    [
        ("icrl/RiverSwim-v0", 2, 1),
        ("icrl/RiverSwim-v0", 0, 1),
        ("icrl/SixArms-v0", 0, 1),
        ("icrl/Chain-v0", 4, 0),
        ("icrl/GridWorld-Open-v0", 6, 2),
        ("icrl/FrozenLake4x4-v0", 4, 1),
        ("icrl/CliffWalking-v0", 36, 1),
    ],
)
def test_step_matches_the_model(env_id, state, action):
    env = model(env_id)
    P, R, _ = env.transition_matrix()
    env.reset(seed=123)
    n = 4000
    counts, rewards, paid = np.zeros(env.n_states), np.zeros(n), {}
    for i in range(n):
        env.s = state
        next_state, rewards[i], _, _, _ = env.step(action)
        counts[next_state] += 1
        paid.setdefault(next_state, set()).add(rewards[i])
    assert all(len(r) == 1 for r in paid.values())  # these rewards are a function of (s, a, s')
    expected = n * P[state, action]
    assert counts[expected == 0].sum() == 0
    support = expected > 0
    chi2 = (((counts - expected) ** 2)[support] / expected[support]).sum()
    dof = max(support.sum() - 1, 1)
    assert chi2 < dof + 6 * np.sqrt(2 * dof) + 6, chi2
    assert abs(rewards.mean() - R[state, action]) <= 5 * rewards.std() / np.sqrt(n) + 1e-12


def test_same_seed_same_trajectory():
    def trajectory(seed):
        env = gym.make("icrl/FrozenLake8x8-v0")
        env.reset(seed=seed)
        env.action_space.seed(seed)
        return [env.step(env.action_space.sample())[:2] for _ in range(30)]

    assert trajectory(5) == trajectory(5) != trajectory(6)


# ---- optimal values against independent checks -----------------------------------------------------


def test_frozenlake_optimum_matches_gymnasiums_own_env():
    env = model("icrl/FrozenLake4x4-v0")
    value = env.optimal_value()
    assert abs(value - 0.74) < 0.005  # Gymnasium's registration note: "optimum = 0.74"
    returns = rollout_returns(gym.make("FrozenLake-v1"), greedy_actions(env), episodes=2000, seed=0)
    assert_within_ci(returns, value)
    assert abs(model("icrl/FrozenLake8x8-v0").optimal_value() - 0.91) < 0.005  # "optimum = 0.91"


def test_cliffwalking_optimum_is_the_shortest_safe_path():
    env = model("icrl/CliffWalking-v0")
    assert env.optimal_value() == pytest.approx(-13.0)
    returns = rollout_returns(
        gym.make("CliffWalking-v1", max_episode_steps=200), greedy_actions(env), episodes=3, seed=0
    )
    assert (returns == -13.0).all()
    # breadth-first search on the 4x12 grid, cliff cells (bottom row between start and goal) excluded
    free = {(r, c) for r in range(4) for c in range(12)} - {(3, c) for c in range(1, 11)}
    distance, queue = {(3, 0): 0}, deque([(3, 0)])
    while queue:
        r, c = queue.popleft()
        for nxt in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if nxt in free and nxt not in distance:
                distance[nxt] = distance[(r, c)] + 1
                queue.append(nxt)
    assert -distance[(3, 11)] == env.optimal_value()


def taxi_shortest_solutions(gym_taxi) -> dict[int, int]:
    """Fewest steps to a successful dropoff from every state, by BFS over Gymnasium's own ``step``."""
    successors, solved = {}, set()
    for s in range(500):
        successors[s] = []
        for a in range(6):
            gym_taxi.s = s
            nxt, _, terminated, _, _ = gym_taxi.step(a)
            if terminated:
                solved.add(s)
            else:
                successors[s].append(nxt)
    predecessors = {s: [] for s in range(500)}
    for s, nexts in successors.items():
        for nxt in nexts:
            predecessors[nxt].append(s)
    steps, queue = dict.fromkeys(solved, 1), deque(solved)
    while queue:
        s = queue.popleft()
        for prev in predecessors[s]:
            if prev not in steps:
                steps[prev] = steps[s] + 1
                queue.append(prev)
    return steps


def test_taxi_optimum_is_the_mean_shortest_solution():
    env = model("icrl/Taxi-v0")
    gym_taxi = gym.make("Taxi-v4").unwrapped
    gym_taxi.reset(seed=0)
    steps = taxi_shortest_solutions(gym_taxi)
    starts = np.flatnonzero(gym_taxi.initial_state_distrib)
    assert len(starts) == 300
    # -1 per step, +20 instead of -1 for the dropoff: 21 - steps
    assert env.optimal_value() == pytest.approx(np.mean([21 - steps[s] for s in starts]))
    returns = rollout_returns(gym.make("Taxi-v4"), greedy_actions(env), episodes=300, seed=0)
    assert_within_ci(returns, env.optimal_value())


def riverswim_from_the_paper() -> tuple[np.ndarray, np.ndarray]:
    """Osband, Russo & Van Roy (2013), Figure 2, written out by hand."""
    P, R = np.zeros((6, 2, 6)), np.zeros((6, 2))
    for s in range(6):
        P[s, 0, max(s - 1, 0)] = 1.0
    P[0, 1, :2] = 0.4, 0.6
    for s in range(1, 5):
        P[s, 1, s - 1 : s + 2] = 0.05, 0.6, 0.35
    P[5, 1, 4:] = 0.4, 0.6
    R[0, 0], R[5, 1] = 0.005, 1.0
    return P, R


def expectimax(P: np.ndarray, R: np.ndarray, horizon: int) -> np.ndarray:
    """Plain-Python backward induction (no torch), the values ``V_0[s]``."""
    v = [0.0] * P.shape[0]
    for _ in range(horizon):
        v = [
            max(R[s, a] + sum(P[s, a, t] * v[t] for t in range(P.shape[0])) for a in range(P.shape[1]))
            for s in range(P.shape[0])
        ]
    return np.array(v)


def test_riverswim_model_optimum_and_structure():
    env = model("icrl/RiverSwim-v0")
    P, R, terminal = env.transition_matrix()
    P_paper, R_paper = riverswim_from_the_paper()
    np.testing.assert_allclose(P, P_paper)
    np.testing.assert_allclose(R, R_paper)
    assert not terminal.any() and env.horizon == 20
    assert env.optimal_value() == pytest.approx(expectimax(P_paper, R_paper, 20)[0], rel=1e-10)
    actions = greedy_actions(env)
    assert (actions[0] == 1).all()  # long horizon: swim right everywhere, even at the left bank
    assert actions[-1, 0] == 0  # one step left: take the small sure reward
    returns = rollout_returns(gym.make("icrl/RiverSwim-v0"), actions, episodes=3000, seed=1)
    assert_within_ci(returns, env.optimal_value())
    assert env.random_value() < 20 * 0.005 < env.optimal_value()


def test_chain_structure():
    env = model("icrl/Chain-v0")
    actions = greedy_actions(env)
    assert actions[0, 0] == 0 and (actions[: env.horizon // 2] == 0).all()  # forward to the 10s
    assert actions[-1, 0] == 1  # last step: back pays 2 * 0.8 vs 0
    env.reset(seed=0)
    for _ in range(50):  # the executed action decides the reward: forward at the end 10, back 2
        env.s = 4
        next_state, reward, _, _, _ = env.step(0)
        assert reward == {4: 10.0, 0: 2.0}[next_state]
    exact = Chain(slip=0.0, horizon=10)
    assert exact.optimal_value() == pytest.approx(10.0 * 6)  # 4 steps to the end, then 6 times 10
    returns = rollout_returns(gym.make("icrl/Chain-v0"), actions, episodes=1000, seed=2)
    assert_within_ci(returns, env.optimal_value())


def test_sixarms_structure():
    env = model("icrl/SixArms-v0")
    P, R, _ = env.transition_matrix()
    assert R.max() == 6000.0 and P[0, 5, 6] == pytest.approx(0.01)
    assert greedy_actions(env)[0, 0] == 5  # 20 steps: gamble on the richest room


@pytest.mark.parametrize("size", [1, 5, 10])
def test_deepsea_optimum_and_mapping(size):
    env = DeepSea(size=size, mapping_seed=3)
    assert env.horizon == size and env.optimal_value() == pytest.approx(0.99)
    assert env.random_value() == pytest.approx(2.0**-size - 0.005)
    np.testing.assert_array_equal(
        env.action_mapping, np.random.RandomState(3).binomial(1, 0.5, [size, size])
    )
    obs, _ = env.reset(seed=0)
    total, terminated = 0.0, False
    for row in range(size):
        obs, reward, terminated, _, _ = env.step(int(env.action_mapping[row, row]))
        total += reward
    assert terminated and obs == size * size and total == pytest.approx(0.99)


def test_gridworlds():
    assert model("icrl/GridWorld-FourRooms-v0").n_states == 104  # Sutton, Precup & Singh's count
    assert FourRooms(size=11).transition_matrix()[0].shape == (104, 4, 104)
    deterministic = OpenRoom(size=5, slip=0.0, step_cost=0.1, horizon=8)
    assert deterministic.optimal_value() == pytest.approx(1.0 - 7 * 0.1)  # 8 moves, the last into the goal
    assert OpenRoom(size=5, slip=0.0, horizon=7).optimal_value() == 0.0  # the goal is 8 moves away
    env = gym.make("icrl/GridWorld-Open-v0", render_mode="ansi")
    env.reset(seed=0)
    assert env.render().splitlines()[0].startswith("x")


def test_taxi_terminal_states_are_the_dropoffs():
    env = model("icrl/Taxi-v0")
    _, _, terminal = env.transition_matrix()
    decoded = [env.gym_env.decode(int(s)) for s in np.flatnonzero(terminal)]
    locs = env.gym_env.locs
    assert len(decoded) == 4
    assert all(p == d and (r, c) == locs[d] for r, c, p, d in decoded)


def test_adapter_renders_like_gymnasium():
    env = gym.make("icrl/FrozenLake4x4-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(1)
    assert "SFFF" in env.render().replace("\x1b[41m", "").replace("\x1b[0m", "")


# ---- bad input --------------------------------------------------------------------------------------------


def test_bad_models_and_calls_raise_clear_errors():
    P = np.full((2, 1, 2), 0.5)
    with pytest.raises(ValueError, match="summing to 1"):
        TabularEnv(P * 2, np.zeros((2, 1)), np.zeros(2, bool), np.array([1.0, 0.0]), 5)
    with pytest.raises(ValueError, match="R must have shape"):
        TabularEnv(P, np.zeros((2, 2)), np.zeros(2, bool), np.array([1.0, 0.0]), 5)
    with pytest.raises(ValueError, match="no mass on terminal"):
        TabularEnv(P, np.zeros((2, 1)), np.array([True, False]), np.array([1.0, 0.0]), 5)
    with pytest.raises(ValueError, match="horizon"):
        TabularEnv(P, np.zeros((2, 1)), np.zeros(2, bool), np.array([1.0, 0.0]), 0)
    with pytest.raises(ValueError, match="fickle_passenger"):
        Taxi(fickle_passenger=True)
    env = TabularEnv(P, np.zeros((2, 1)), np.zeros(2, bool), np.array([1.0, 0.0]), 5)
    with pytest.raises(ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not in the action space"):
        env.step(3)


def episode_length(env: gym.Env) -> int:
    """Steps of one episode that always moves right."""
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(1)
        steps, done = steps + 1, terminated or truncated
    return steps


def test_a_horizon_given_alone_sets_the_time_limit_too_in_make_env_and_the_bench():
    """``gymnasium.make("icrl/RiverSwim-v0", horizon=200)`` alone keeps the registered 20-step limit (Gymnasium's
    rule); ``make_env`` and the bench's ``RiverSwim:horizon=N`` names end episodes at the horizon the exact
    values are computed for."""
    from icrl_agent.bench.common import make_env as bench_make_env
    from icrl_agent.env_info import make_env

    assert episode_length(gym.make("icrl/RiverSwim-v0", horizon=200)) == 20
    env = make_env("RiverSwim", horizon=200)
    assert env.unwrapped.horizon == 200 and episode_length(env) == 200
    env = bench_make_env("RiverSwim:horizon=30")
    assert env.unwrapped.horizon == 30 and episode_length(env) == 30
    assert episode_length(make_env("RiverSwim")) == 20


@pytest.mark.parametrize("kwargs", [{"max_episode_steps": 50}, {"horizon": 30, "max_episode_steps": 50}])
def test_make_env_refuses_a_time_limit_that_disagrees_with_the_horizon(kwargs):
    from icrl_agent.env_info import make_env

    with pytest.raises(ValueError, match="horizon=50, max_episode_steps=50"):
        make_env("RiverSwim", **kwargs)
