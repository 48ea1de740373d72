"""The shipped agent is told no reward scale, so multiplying every reward by 0.01 or 100 must change nothing.

The network reads rewards divided by the largest one seen (``IcrlModel`` is scale-free) and multiplies Q,
temperatures and reward scale back: the same seed then gives the same actions, online and after ``fit``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import icrl_agent  # noqa: F401  (registers the icrl/... envs)
from icrl_agent import Agent

SCALES = (0.01, 100.0)
# a chain with a tiny early reward, bandit-like arms with rewards 50..6000, and step costs of -1/-100
ENVS = [("icrl/RiverSwim-v0", 12), ("icrl/SixArms-v0", 8), ("icrl/CliffWalking-v0", 4)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def online_actions(env_id: str, episodes: int, scale: float) -> list[int]:
    env = gym.wrappers.TransformReward(gym.make(env_id), lambda r: r * scale)
    agent = Agent(env.observation_space, env.action_space, seed=0)
    actions = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            action = agent.act(obs)
            actions.append(int(action))
            next_obs, reward, terminated, truncated, _ = env.step(action)
            agent.observe(obs, action, reward, next_obs, terminated, truncated)
            obs, done = next_obs, terminated or truncated
    return actions


@pytest.mark.parametrize("env_id,episodes", ENVS)
@pytest.mark.parametrize("scale", SCALES)
def test_online_actions_do_not_depend_on_the_reward_unit(env_id, episodes, scale):
    assert online_actions(env_id, episodes, scale) == online_actions(env_id, episodes, 1.0)


def test_offline_policy_does_not_depend_on_the_reward_unit():
    env = gym.make("icrl/RiverSwim-v0")
    rng = np.random.default_rng(0)
    transitions = []
    for episode in range(30):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            action = int(rng.integers(2)) if rng.random() < 0.5 else 1
            next_obs, reward, terminated, truncated, _ = env.step(action)
            transitions.append((obs, action, reward, next_obs, terminated, truncated))
            obs, done = next_obs, terminated or truncated
    policies = []
    for scale in (1.0, *SCALES):
        agent = Agent(env.observation_space, env.action_space, seed=0)
        for obs, action, reward, next_obs, terminated, truncated in transitions:
            agent.observe(obs, action, reward * scale, next_obs, terminated, truncated)
        policies.append([agent.act(s, deterministic=True) for s in range(6)])
    assert policies[1] == policies[0] and policies[2] == policies[0]
