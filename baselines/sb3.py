"""Stable-Baselines3 PPO, DQN and A2C as baselines, counted in episodes like every other agent.

``sb3_baseline("PPO", env)`` returns an :class:`SB3Baseline` whose ``learn(total_episodes=E)`` trains the
SB3 model online on ``env`` until exactly ``E`` training episodes have ended, and returns the return of
each of those *training* episodes (the same online metric the tabular agents are scored on: nothing is
evaluated apart from what the learner met while learning).

Discrete observations are one-hot encoded by :class:`OneHotObservation` (SB3's MLP policies need vectors;
the wrapper also honours a ``Discrete`` space's ``start``). Other finite spaces that SB3 reads natively
(MultiDiscrete, MultiBinary, Dict of those) are passed through.

Hyperparameters (:data:`SMALL_BUDGET_PARAMS`) are SB3's defaults adjusted for budgets of a few hundred
episodes of a few hundred steps at most:

- PPO: ``n_steps=128`` (SB3's 2048 would make one update per 10+ short episodes), ``batch_size=64``,
  ``n_epochs=4``, ``ent_coef=0.01`` (a little entropy keeps sparse-reward tasks explored);
- DQN: ``learning_starts=100``, ``buffer_size=50_000``, ``target_update_interval=250`` (SB3's 10 000
  steps is longer than most runs here), ``exploration_fraction=0.2``, ``exploration_final_eps=0.05``,
  ``learning_rate=1e-3``;
- A2C: SB3's defaults (``n_steps=5``) with ``ent_coef=0.01``.

All use ``gamma=0.99``, the default ``MlpPolicy`` (two layers of 64) and ``device="cpu"``. Any keyword
given to :func:`sb3_baseline` overrides these. DQN's exploration schedule is a fraction of
``total_timesteps``, which :meth:`SB3Baseline.learn` sets to ``total_episodes * max_episode_steps`` (the
most steps the episodes can take), so on tasks whose episodes end early epsilon decays more slowly.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled

ALGORITHMS = ("PPO", "DQN", "A2C")

SMALL_BUDGET_PARAMS: dict[str, dict[str, Any]] = {
    "PPO": {"n_steps": 128, "batch_size": 64, "n_epochs": 4, "ent_coef": 0.01, "gamma": 0.99},
    "DQN": {
        "learning_rate": 1e-3,
        "buffer_size": 50_000,
        "learning_starts": 100,
        "target_update_interval": 250,
        "exploration_fraction": 0.2,
        "exploration_final_eps": 0.05,
        "gamma": 0.99,
    },
    "A2C": {"ent_coef": 0.01, "gamma": 0.99},
}

_DEFAULT_MAX_EPISODE_STEPS = 1000


def _import_sb3() -> Any:
    try:
        return importlib.import_module("stable_baselines3")
    except ImportError as err:
        raise DependencyNotInstalled(
            "stable-baselines3 is not installed, run `pip install icrl-agent[sb3]` "
            "(or `pip install stable-baselines3`)"
        ) from err


class OneHotObservation(gym.ObservationWrapper):
    """Turn a ``Discrete(n, start)`` observation into a float32 one-hot vector of length ``n``.

    :param env: an environment with a ``Discrete`` observation space
    """

    def __init__(self, env: gym.Env):
        if not isinstance(env.observation_space, spaces.Discrete):
            raise TypeError(
                f"OneHotObservation needs a Discrete observation space, got {env.observation_space!r}"
            )
        super().__init__(env)
        self.n = int(env.observation_space.n)
        self.start = int(env.observation_space.start)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.n,), dtype=np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        """One-hot vector of ``observation``.

        :param observation: an element of the wrapped ``Discrete`` space
        :return: float32 array of shape ``(n,)``
        """
        vec = np.zeros(self.n, dtype=np.float32)
        vec[int(observation) - self.start] = 1.0
        return vec


def _stop_after_episodes_callback(sb3: Any, total_episodes: int) -> Any:
    """An SB3 callback that records finished episodes' returns and stops training after ``total_episodes``."""
    base = importlib.import_module("stable_baselines3.common.callbacks").BaseCallback

    class StopAfterEpisodes(base):
        def __init__(self) -> None:
            super().__init__()
            self.returns: list[float] = []

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", ()):
                episode = info.get("episode")
                if episode is not None and len(self.returns) < total_episodes:
                    self.returns.append(float(episode["r"]))
            return len(self.returns) < total_episodes

    return StopAfterEpisodes()


def _max_episode_steps(env: gym.Env) -> int:
    spec_limit = env.spec.max_episode_steps if env.spec is not None else None
    horizon = getattr(env.unwrapped, "horizon", None)
    return int(spec_limit or horizon or _DEFAULT_MAX_EPISODE_STEPS)


class SB3Baseline:
    """A Stable-Baselines3 model trained online on one env, counted in training episodes.

    Build it with :func:`sb3_baseline`. ``learn`` may be called several times: training continues and
    each call returns the returns of its own episodes.

    :param algo: ``"PPO"``, ``"DQN"`` or ``"A2C"``
    :param env: the environment to learn (finite observation space, Discrete actions)
    :param seed: seeds the SB3 model and the env's first reset
    :param kwargs: SB3 constructor arguments overriding :data:`SMALL_BUDGET_PARAMS`
    """

    def __init__(self, algo: str, env: gym.Env, seed: int = 0, **kwargs: Any):
        sb3 = _import_sb3()
        monitor = importlib.import_module("stable_baselines3.common.monitor").Monitor
        dummy_vec_env = importlib.import_module("stable_baselines3.common.vec_env").DummyVecEnv
        if not isinstance(env.action_space, spaces.Discrete):
            raise TypeError(f"sb3_baseline needs a Discrete action space, got {env.action_space!r}")
        self.algo = algo
        self.env = env
        self.seed = seed
        self.max_episode_steps = _max_episode_steps(env)
        self._one_hot = isinstance(env.observation_space, spaces.Discrete)
        wrapped = OneHotObservation(env) if self._one_hot else env
        self._obs_wrapper = wrapped if self._one_hot else None
        self.vec_env = dummy_vec_env([lambda: monitor(wrapped)])
        self.vec_env.seed(seed)
        params = {**SMALL_BUDGET_PARAMS[algo], **kwargs}
        self.params = params
        self.model = getattr(sb3, algo)(
            "MlpPolicy", self.vec_env, seed=seed, device="cpu", verbose=0, **params
        )
        self.episode_returns: list[float] = []

    def learn(self, env: gym.Env | None = None, total_episodes: int = 100) -> list[float]:
        """Train online until ``total_episodes`` more training episodes have ended.

        :param env: must be ``None`` or the env given at construction (an SB3 model is bound to its env)
        :param total_episodes: how many training episodes to run (>= 1)
        :return: the undiscounted return of each of those training episodes, in order
        """
        if env is not None and env is not self.env:
            if isinstance(env, int):
                raise TypeError(f"learn() got env={env!r}: pass the episode budget as total_episodes={env}")
            raise ValueError(
                "this SB3 baseline is bound to the env it was built with; build a new one for another env"
            )
        if int(total_episodes) < 1:
            raise ValueError(f"total_episodes must be >= 1, got {total_episodes}")
        total_episodes = int(total_episodes)
        callback = _stop_after_episodes_callback(self.model, total_episodes)
        self.model.learn(
            total_timesteps=total_episodes * self.max_episode_steps,
            callback=callback,
            reset_num_timesteps=not self.episode_returns,
        )
        self.episode_returns.extend(callback.returns)
        return list(callback.returns)

    def _encode(self, obs: Any) -> np.ndarray:
        if not self._one_hot:
            return obs
        obs_array = np.asarray(obs)
        if obs_array.ndim == 0:
            return self._obs_wrapper.observation(obs_array)
        return np.stack([self._obs_wrapper.observation(o) for o in obs_array])

    def predict(
        self,
        obs: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        """SB3's ``predict`` on raw observations (one-hot encoded here when the space is Discrete).

        :param obs: one observation or a batch, in the env's own observation format
        :param state: recurrent state (unused by these policies)
        :param episode_start: episode starts (unused by these policies)
        :param deterministic: greedy action instead of a sample
        :return: ``(actions, state)`` as SB3 returns them
        """
        return self.model.predict(self._encode(obs), state, episode_start, deterministic)

    def act(self, obs: Any, deterministic: bool = False) -> int:
        """One action for one observation.

        :param obs: an observation of the env
        :param deterministic: greedy action instead of a sample
        :return: an action of the env's action space
        """
        action, _ = self.predict(obs, deterministic=deterministic)
        return int(np.asarray(action).reshape(-1)[0])

    def close(self) -> None:
        """Close the vectorized env (and with it the wrapped env)."""
        self.vec_env.close()


def sb3_baseline(algo: str, env: gym.Env, seed: int = 0, **kwargs: Any) -> SB3Baseline:
    """A Stable-Baselines3 PPO, DQN or A2C baseline on ``env`` with small-budget hyperparameters.

    :param algo: ``"PPO"``, ``"DQN"`` or ``"A2C"`` (case-insensitive)
    :param env: the environment to learn (finite observation space, Discrete actions)
    :param seed: seeds the model and the env
    :param kwargs: SB3 constructor arguments overriding :data:`SMALL_BUDGET_PARAMS`
    :return: an :class:`SB3Baseline`; call ``learn(total_episodes=E)`` for the training returns
    """
    name = str(algo).upper()
    if name not in ALGORITHMS:
        raise ValueError(f"unknown SB3 algorithm {algo!r}; choose one of {', '.join(ALGORITHMS)}")
    return SB3Baseline(name, env, seed=seed, **kwargs)
