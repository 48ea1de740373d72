"""The SB3 wrapper's contract (icrl_agent.baselines.sb3): Discrete observations one-hot encoded (``start``
honoured), other finite spaces passed through; the episode budget of ``learn`` (stop right after the N-th
episode, total_timesteps = N x the episode cap); the hyperparameters and seed handed to SB3; the greedy vs
sampled actions of ``act`` / ``predict``; every refusal naming the fix."""

import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled

from icrl_agent.baselines import sb3 as sb3_module

pytest.importorskip("stable_baselines3")

SB3Baseline, OneHotObservation, sb3_baseline = sb3_module.SB3Baseline, sb3_module.OneHotObservation, sb3_module.sb3_baseline


class Corridor(gym.Env):
    """A tiny env without a spec: ``length`` steps then terminated, reward 1 on the last one."""

    def __init__(self, observation_space=None, horizon=None, length=3):
        self.observation_space = observation_space or spaces.Discrete(5, start=3)
        self.action_space = spaces.Discrete(2)
        self.length = length
        if horizon is not None:
            self.horizon = horizon

    def _obs(self):
        if isinstance(self.observation_space, spaces.Discrete):
            return self.observation_space.start + self.t
        return np.array([self.t % 2, 0], dtype=np.int64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        return self._obs(), float(done), done, False, {}


def test_missing_sb3_names_the_install_command(monkeypatch):
    """Without stable-baselines3 the error says how to install it."""
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import fails
    with pytest.raises(DependencyNotInstalled) as err:
        sb3_baseline("PPO", Corridor())
    assert str(err.value) == (
        "stable-baselines3 is not installed, run `pip install icrl-agent[sb3]` (or `pip install stable-baselines3`)"
    )


def test_one_hot_observation_space_and_vectors_honour_start():
    """``OneHotObservation`` of ``Discrete(5, start=3)``: a float32 Box in [0, 1] of length 5, and observation
    ``3 + i`` is the unit vector ``e_i``; any other space is refused by name."""
    wrapper = OneHotObservation(Corridor())
    space = wrapper.observation_space
    assert isinstance(space, spaces.Box) and space.shape == (5,) and space.dtype == np.float32
    np.testing.assert_array_equal(space.low, np.zeros(5))
    np.testing.assert_array_equal(space.high, np.ones(5))
    for i in range(5):
        vec = wrapper.observation(3 + i)
        assert vec.dtype == np.float32
        np.testing.assert_array_equal(vec, np.eye(5)[i])
    with pytest.raises(TypeError) as err:
        OneHotObservation(Corridor(spaces.MultiDiscrete([2, 2])))
    assert str(err.value) == "OneHotObservation needs a Discrete observation space, got MultiDiscrete([2 2])"


def test_sb3_baseline_attributes_seed_and_hyperparameters():
    """The baseline keeps what it was built with (algo, env, seed: 0 by default), hands SB3 the small-budget
    hyperparameters (keywords override them), one-hot encodes a Discrete observation space, and is quiet."""
    env = Corridor()
    baseline = SB3Baseline("PPO", env)
    assert (baseline.algo, baseline.env, baseline.seed) == ("PPO", env, 0)
    assert baseline.params == sb3_module.SMALL_BUDGET_PARAMS["PPO"]
    assert (baseline.model.n_steps, baseline.model.n_epochs, baseline.model.ent_coef) == (128, 4, 0.01)
    assert baseline.model.observation_space == spaces.Box(0.0, 1.0, (5,), np.float32)
    assert sb3_baseline("a2c", env).seed == 0
    tuned = sb3_baseline("ppo", env, seed=3, n_steps=64)
    assert tuned.seed == 3 and tuned.params["n_steps"] == 64 and tuned.model.n_steps == 64


def test_sb3_baseline_is_quiet(capsys):
    """Building a baseline prints nothing (SB3's verbose=0)."""
    sb3_baseline("a2c", Corridor())
    assert capsys.readouterr().out == ""


def test_sb3_baseline_seed_fixes_the_initial_network():
    """The same seed builds the same network; another seed another one."""
    def weights(seed):
        return list(sb3_baseline("a2c", Corridor(), seed=seed).model.policy.state_dict().values())

    a, b, c = weights(5), weights(5), weights(6)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_sb3_baseline_passes_other_finite_spaces_through():
    """A MultiDiscrete observation space is SB3's own business: no one-hot wrapper, observations passed as is."""
    env = Corridor(spaces.MultiDiscrete([2, 2]))
    baseline = sb3_baseline("a2c", env)
    assert baseline.model.observation_space == env.observation_space
    assert baseline.act(np.array([1, 0])) in (0, 1)


def test_episode_cap_is_the_time_limit_else_the_env_horizon_else_1000():
    """``max_episode_steps`` (what ``learn`` multiplies the episode budget by): the registered time limit, else
    the env's ``horizon`` attribute, else 1000."""
    assert sb3_baseline("a2c", gym.make("FrozenLake-v1")).max_episode_steps == 100
    assert sb3_baseline("a2c", Corridor(horizon=7)).max_episode_steps == 7
    assert sb3_baseline("a2c", Corridor()).max_episode_steps == 1000


def test_learn_stops_right_after_the_last_episode():
    """``learn(total_episodes=N)`` returns N training returns and takes no env step past the N-th episode's
    end; a budget of 1 is fine, 0 is refused."""
    baseline = sb3_baseline("a2c", Corridor(), seed=0)
    assert baseline.learn(total_episodes=1) == [1.0]
    assert baseline.learn(total_episodes=2) == [1.0, 1.0]
    monitor = baseline.vec_env.envs[0]
    assert monitor.get_episode_lengths() == [3, 3, 3]
    assert baseline.model.num_timesteps == 9
    with pytest.raises(ValueError) as err:
        baseline.learn(total_episodes=0)
    assert str(err.value) == "total_episodes must be >= 1, got 0"
    with pytest.raises(ValueError) as err:
        baseline.learn(Corridor(), total_episodes=1)
    assert str(err.value) == (
        "this SB3 baseline is bound to the env it was built with; build a new one for another env"
    )


def test_learn_default_budget_and_timestep_cap(monkeypatch):
    """``learn()`` runs 100 episodes by default, with SB3's ``total_timesteps`` = episodes x episode cap and
    the timestep count reset on the first call (SB3's own learn stubbed: only the call is checked)."""
    baseline = sb3_baseline("a2c", Corridor(horizon=7))
    calls = []
    monkeypatch.setattr(baseline.model, "learn", lambda **kw: calls.append(kw))
    assert baseline.learn() == []
    assert calls[0]["total_timesteps"] == 700 and calls[0]["reset_num_timesteps"] is True


def test_act_and_predict_sample_by_default_and_are_greedy_when_asked():
    """``predict`` / ``act`` sample from the policy unless ``deterministic=True`` (the untrained PPO policy
    is near uniform over the 4 actions, so 64 samples are never all equal; greedy ones always are)."""
    baseline = sb3_baseline("ppo", gym.make("FrozenLake-v1"), seed=0)
    batch = np.zeros(64, dtype=np.int64)
    sampled, _ = baseline.predict(batch)
    greedy, _ = baseline.predict(batch, deterministic=True)
    assert sampled.shape == greedy.shape == (64,)
    assert len(set(sampled.tolist())) > 1 and len(set(greedy.tolist())) == 1
    assert len({baseline.act(0) for _ in range(40)}) > 1
    assert {baseline.act(0, deterministic=True) for _ in range(20)} == set(greedy.tolist())


def test_non_discrete_actions_are_refused_by_name():
    """SB3 baselines need Discrete actions: anything else is a TypeError naming the space."""
    env = Corridor()
    env.action_space = spaces.Box(-1.0, 1.0, (1,))
    with pytest.raises(TypeError, match=r"sb3_baseline needs a Discrete action space, got Box\("):
        sb3_baseline("ppo", env)
