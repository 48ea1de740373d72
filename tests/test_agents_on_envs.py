"""The shared contract, run by every agent (``Agent`` with the shipped weights and every baseline) on every
registered env: one smoke episode each (API.md "Contract details")."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from icrl_agent.agent import Agent
from icrl_agent.baselines import PSRL, UCBVI, VILCB, OptimisticVI, QLearning, Random
from icrl_agent.envs import ALL_ENV_IDS

AGENTS = {cls.__name__: cls for cls in (Agent, OptimisticVI, PSRL, UCBVI, VILCB, QLearning, Random)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shipped_model():
    return Agent(gym.spaces.Discrete(2), gym.spaces.Discrete(2)).model


def make(name: str, env: gym.Env, shipped_model):
    if name == "Agent":
        agent = Agent(env.observation_space, env.action_space, seed=0)
        assert agent.weights["source"] == "shipped"
        agent.model = shipped_model  # the same weights, loaded once for the whole module
        return agent
    return AGENTS[name](env.observation_space, env.action_space, seed=0)


@pytest.mark.parametrize("name", list(AGENTS))
@pytest.mark.parametrize("env_id", ALL_ENV_IDS)
def test_one_smoke_episode(env_id, name, shipped_model):
    env = gym.make(env_id)
    agent = make(name, env, shipped_model)
    obs, _ = env.reset(seed=0)
    steps, done, total = 0, False, 0.0
    while not done:
        action = agent.act(obs)
        assert isinstance(action, (int, np.integer)) and env.action_space.contains(action)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        obs, steps, total, done = next_obs, steps + 1, total + float(reward), terminated or truncated
    assert np.isfinite(total)
    assert agent.stats.n_transitions == steps and agent.stats.n_episodes == 1 and agent.step_of(0) == 0
    assert agent.horizon == (steps if truncated else 2 * steps)  # a time limit, else twice the episode
    first, _ = env.reset(seed=1)
    greedy = agent.act(first, deterministic=True)
    assert env.action_space.contains(greedy) and agent.act(first, deterministic=True) == greedy
    action, state = agent.predict(first, deterministic=True)
    assert np.shape(action) == () and int(action) == greedy and state is None
    policy = agent.policy()
    assert policy.shape == (agent.stats.n_states, env.action_space.n)
    np.testing.assert_allclose(policy.sum(-1), 1.0)
