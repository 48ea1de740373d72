"""What a Gymnasium / Stable-Baselines3 user meets in the first hour (issue 16), on gymnasium's own envs.

Fast by default (planning threads), SB3's ``evaluate_policy`` with its defaults learns through
``InContextWrapper``, envs without a time limit, one-time warnings that name the fix, SB3-style
``learn(total_timesteps=...)``, and statistics that say how their rows map to observations.
"""

import multiprocessing
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from icrl_agent import Agent, InContextWrapper
from icrl_agent import base as base_module
from icrl_agent.model import IcrlModel


def user_warnings(record, topic):
    return [w for w in record if issubclass(w.category, UserWarning) and topic in str(w.message)]


# ---------------------------------------------------------------------- fast by default


def test_planning_uses_one_thread_and_restores_the_callers_setting(monkeypatch):
    env = gym.make("FrozenLake8x8-v1")
    agent = Agent(env.observation_space, env.action_space, seed=0)
    seen = []
    forward = IcrlModel.forward_sparse

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(IcrlModel, "forward_sparse", spy)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        obs, _ = env.reset(seed=0)
        for _ in range(30):
            action = agent.act(obs)
            assert torch.get_num_threads() == 2  # the caller's setting, back after every call
            next_obs, reward, terminated, truncated, _ = env.step(action)
            agent.observe(obs, action, reward, next_obs, terminated, truncated)
            obs = env.reset()[0] if terminated or truncated else next_obs
        agent.policy(deterministic=True)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)  # a caller already on one thread is left alone
        agent.act(obs, deterministic=True)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {1}


# ---------------------------------------------------------------------- InContextWrapper explores


def evaluate_online(seed, explore, episodes):
    from stable_baselines3.common.evaluation import evaluate_policy

    env = gym.make("FrozenLake-v1")
    agent = Agent(env.observation_space, env.action_space, seed=seed)
    wrapped = InContextWrapper(env, agent) if explore else InContextWrapper(env, agent, explore=False)
    wrapped.reset(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3: "the env is not wrapped with a Monitor"
        rewards, _ = evaluate_policy(agent, wrapped, n_eval_episodes=episodes, return_episode_rewards=True)
    return float(np.mean(rewards)), agent


def test_sb3_evaluate_policy_with_its_defaults_learns_frozenlake():
    pytest.importorskip("stable_baselines3")
    # Measured, seeds 0-3, 80 episodes: 0.12, 0.40, 0.09, 0.07 (exploitation from nothing: 0.00 on every seed).
    success = [evaluate_online(seed, explore=True, episodes=80)[0] for seed in range(4)]
    assert min(success) >= 0.03 and np.mean(success) >= 0.08, success


def test_explore_false_gives_the_exploitation_policy():
    pytest.importorskip("stable_baselines3")
    success, agent = evaluate_online(0, explore=False, episodes=3)
    assert success == 0.0
    # inside a non-exploring wrapper a greedy request is the exploitation policy: the same action every time
    env = InContextWrapper(gym.make("FrozenLake-v1"), agent, explore=False)
    obs, _ = env.reset(seed=1)
    assert len({int(agent.predict(obs, deterministic=True)[0]) for _ in range(20)}) == 1


def wrapped_actions(explore, deterministic, steps=300):
    """Actions of an agent acting through ``predict`` inside an ``InContextWrapper`` on FrozenLake-v1."""
    env = gym.make("FrozenLake-v1")
    agent = Agent(env.observation_space, env.action_space, seed=0)
    wrapped = InContextWrapper(env, agent, explore=explore)
    obs, _ = wrapped.reset(seed=0)
    actions = []
    for _ in range(steps):
        actions.append(int(agent.predict(obs, deterministic=deterministic)[0]))
        obs, _, terminated, truncated, _ = wrapped.step(actions[-1])
        if terminated or truncated:
            obs, _ = wrapped.reset()
    return actions, agent, wrapped, obs


def test_exploring_wrapper_serves_greedy_requests_with_the_exploring_policy():
    exploring, *_ = wrapped_actions(explore=True, deterministic=False)
    assert wrapped_actions(explore=True, deterministic=True)[0] == exploring
    assert wrapped_actions(explore=False, deterministic=True)[0] != exploring


def test_greedy_requests_outside_the_wrapper_exploit():
    _, agent, wrapped, obs = wrapped_actions(explore=True, deterministic=True, steps=100)
    other = (obs + 1) % 16  # not the observation the wrapper returned: exploitation, the same every time
    assert len({int(agent.act(other, deterministic=True)) for _ in range(10)}) == 1
    # the exploring policy draws from the agent's RNG, the exploitation policy never does
    obs, _ = wrapped.reset()
    rng_before = agent.rng.bit_generator.state
    agent.predict(obs, deterministic=True)
    assert agent.rng.bit_generator.state != rng_before  # served by the exploring policy
    obs, _ = wrapped.reset()
    wrapped.close()  # a closed wrapper no longer serves its last observation with exploration
    rng_before = agent.rng.bit_generator.state
    action = int(agent.predict(obs, deterministic=True)[0])
    assert agent.rng.bit_generator.state == rng_before
    state = agent.stats.state_id(obs)
    assert action == (int(agent.policy(deterministic=True)[state].argmax()) if state is not None else 0)


# ---------------------------------------------------------------------- no time limit


def cliffwalking_without_time_limit():
    env = gym.make("CliffWalking-v1", max_episode_steps=None)
    assert env.spec.max_episode_steps is None and not isinstance(env, gym.wrappers.TimeLimit)
    return env


def test_learn_returns_on_an_env_without_time_limit_and_warns_once():
    env = cliffwalking_without_time_limit()
    agent = Agent(env.observation_space, env.action_space, seed=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        returns = agent.learn(env, total_episodes=3, seed=0)
    assert len(returns) == 3
    assert max(agent.stats.episode_lengths) <= base_module.MAX_HORIZON
    assert agent.stats.max_truncated_length == base_module.MAX_HORIZON  # the random first episode was cut
    assert agent.horizon <= base_module.MAX_HORIZON
    found = user_warnings(record, "TimeLimit")
    assert len(found) == 1 and str(base_module.MAX_HORIZON) in str(found[0].message)


def test_inferred_horizon_is_capped_and_a_hint_is_not():
    env = cliffwalking_without_time_limit()
    agent = Agent(env.observation_space, env.action_space, seed=0)
    with pytest.warns(UserWarning, match="TimeLimit"):
        for _ in range(base_module.MAX_HORIZON + 50):  # one long episode that terminates: 2x would exceed the cap
            agent.observe(36, 0, -1.0, 24, False, False)
            agent.observe(24, 2, -1.0, 36, False, False)
    agent.observe(36, 1, -1.0, 47, True, False)
    assert agent.horizon == base_module.MAX_HORIZON
    hinted = Agent(env.observation_space, env.action_space, horizon=2 * base_module.MAX_HORIZON)
    assert hinted.horizon == 2 * base_module.MAX_HORIZON


def test_learn_does_not_cut_episodes_of_an_env_with_a_time_limit():
    env = gym.wrappers.TimeLimit(cliffwalking_without_time_limit(), max_episode_steps=base_module.MAX_HORIZON + 100)
    agent = Agent(env.observation_space, env.action_space, seed=0)
    with pytest.warns(UserWarning, match="TimeLimit"):
        agent.learn(env, total_episodes=1, seed=0)  # a random walk: it hits the time limit, not the cap
    assert agent.stats.episode_lengths == [base_module.MAX_HORIZON + 100]


# ---------------------------------------------------------------------- one-time warnings


def test_many_predicts_without_observe_warn_once():
    env = gym.make("FrozenLake-v1")
    agent = Agent(env.observation_space, env.action_space, seed=0)
    obs, _ = env.reset(seed=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(base_module.BLIND_CALLS_WARNING - 1):
            obs = env.step(int(agent.predict(obs, deterministic=True)[0]))[0]
        assert not user_warnings(record, "observe")
        for _ in range(3 * base_module.BLIND_CALLS_WARNING):
            agent.act(obs)
    found = user_warnings(record, "observe")
    assert len(found) == 1 and "InContextWrapper" in str(found[0].message)


def test_observing_or_evaluating_a_frozen_policy_does_not_warn():
    env = gym.make("FrozenLake-v1")
    agent = Agent(env.observation_space, env.action_space, seed=0)
    obs, _ = env.reset(seed=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(2 * base_module.BLIND_CALLS_WARNING):  # a plain act/observe loop
            action = agent.act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            agent.observe(obs, action, reward, next_obs, terminated, truncated)
            obs = env.reset()[0] if terminated or truncated else next_obs
        for _ in range(2 * base_module.BLIND_CALLS_WARNING):  # then a greedy evaluation of what it learned
            obs, _, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
            if terminated or truncated:
                obs, _ = env.reset()
    assert not user_warnings(record, "observe")


def test_async_vector_env_of_wrapped_envs_warns_in_the_caller():
    agent = Agent(spaces.Discrete(16), spaces.Discrete(4), seed=0)
    envs = gym.vector.AsyncVectorEnv(
        [lambda: InContextWrapper(gym.make("FrozenLake-v1"), agent) for _ in range(2)], context="fork"
    )
    try:
        obs, _ = envs.reset(seed=0)
        with pytest.warns(UserWarning, match="AsyncVectorEnv") as record:
            for _ in range(base_module.BLIND_CALLS_WARNING // 2 + 1):
                obs = envs.step(agent.predict(obs)[0])[0]
    finally:
        envs.close()
    assert agent.stats.n_transitions == 0  # the transitions went to the workers' copies
    assert len(user_warnings(record, "AsyncVectorEnv")) == 1


def _make_wrapper_here(agent, queue):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        InContextWrapper(gym.make("FrozenLake-v1"), agent)
        InContextWrapper(gym.make("FrozenLake-v1"), agent)
    queue.put([str(w.message) for w in record if issubclass(w.category, UserWarning)])


def test_a_wrapper_made_in_another_process_warns_once_there():
    agent = Agent(spaces.Discrete(16), spaces.Discrete(4), seed=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        InContextWrapper(gym.make("FrozenLake-v1"), agent)  # the agent's own process: silent
    assert not user_warnings(record, "copy")
    ctx = multiprocessing.get_context("fork")  # what AsyncVectorEnv's workers do on Linux
    queue = ctx.Queue()
    proc = ctx.Process(target=_make_wrapper_here, args=(agent, queue))
    proc.start()
    messages = queue.get(timeout=60)
    proc.join(timeout=60)
    assert len(messages) == 1 and "copy" in messages[0] and "SyncVectorEnv" in messages[0], messages


# ---------------------------------------------------------------------- SB3 habits


def test_learn_accepts_total_timesteps_and_counts_exactly_that_many_steps():
    env = gym.make("FrozenLake-v1")
    agent = Agent(env.observation_space, env.action_space, seed=0)
    returns = agent.learn(env, total_timesteps=500, seed=0)
    assert agent.stats.n_transitions == 500
    assert len(returns) == agent.stats.n_episodes and all(r in (0.0, 1.0) for r in returns)
    assert agent.stats.episode_step == 0  # the episode the budget cut was abandoned
    with pytest.raises(ValueError, match="not both"):
        agent.learn(env, total_episodes=2, total_timesteps=100)
    with pytest.raises(TypeError, match=r"^Agent\.learn needs the env"):
        agent.learn(total_timesteps=100)
    with pytest.raises(ValueError, match="total_timesteps"):
        agent.learn(env, total_timesteps=0)


# ---------------------------------------------------------------------- statistics and observations


def test_stats_map_rows_to_observations_both_ways():
    env = gym.make("FrozenLake-v1")
    agent = Agent(env.observation_space, env.action_space, seed=0)
    agent.learn(env, total_episodes=20, seed=0)
    stats = agent.stats
    for i in range(stats.n_states):
        assert stats.state_id(stats.observation(i)) == i
    assert stats.observation(0) == 0  # FrozenLake starts in 0: the first state met
    assert any(stats.observation(i) != i for i in range(stats.n_states))  # rows are not observations
    with pytest.raises(IndexError):
        stats.observation(stats.n_states)


def test_dense_by_observation_indexes_rows_by_observation_minus_start():
    obs_space, act_space = spaces.Discrete(6, start=10), spaces.Discrete(2)
    agent = Agent(obs_space, act_space, seed=0)
    agent.observe(14, 1, 0.5, 12, False, False)
    agent.observe(12, 0, 1.0, 15, False, True)
    agent.observe(12, 0, 0.0, 12, True, False)
    d = agent.stats.dense(by_observation=True)
    assert d.counts.shape == (6, 2) and d.transitions.shape == (6, 2, 6)
    assert d.counts[4, 1] == 1 and d.counts[2, 0] == 2 and d.counts.sum() == 3
    assert d.transitions[4, 1, 2] == 1 and d.transitions[2, 0, 5] == 1 and d.transitions.sum() == 2
    assert d.reward_mean[2, 0] == 0.5 and d.terminal_counts[2, 0] == 1
    assert d.initial_counts[4] == 1 and d.initial_counts[2] == 1 and d.initial_counts.sum() == 2
    raw = agent.stats.dense()
    for i in range(agent.stats.n_states):
        row = agent.stats.observation(i) - 10
        np.testing.assert_array_equal(d.counts[row], raw.counts[i])
    assert not d.counts.flags.writeable
    multi = Agent(spaces.MultiDiscrete([2, 2]), act_space)
    with pytest.raises(TypeError, match="Discrete"):
        multi.stats.dense(by_observation=True)
