"""The base of every registered tabular env: an exact model built once, a ``step`` that only samples it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from icrl_agent import solvers

_ATOL = 1e-8


def _as_model(
    P: np.ndarray, R: np.ndarray, terminal: np.ndarray, initial: np.ndarray, reward_table: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated float64/bool copies of a tabular model; ValueError naming the first problem found."""
    P = np.array(P, dtype=np.float64)
    R = np.array(R, dtype=np.float64)
    terminal = np.array(terminal, dtype=bool)
    initial = np.array(initial, dtype=np.float64)
    if P.ndim != 3 or P.shape[0] != P.shape[2] or P.shape[0] < 1 or P.shape[1] < 1:
        raise ValueError(f"P must have shape [S, A, S] with S, A >= 1, got {P.shape}")
    n_states, n_actions = P.shape[:2]
    if R.shape != (n_states, n_actions):
        raise ValueError(f"R must have shape [S, A] = {(n_states, n_actions)}, got {R.shape}")
    if terminal.shape != (n_states,) or initial.shape != (n_states,):
        raise ValueError(f"terminal and initial must have shape [S] = ({n_states},)")
    # rtol=0: the exact values the benchmarks normalize by assume the rows sum to 1 to float64 precision
    if (P < 0).any() or not np.allclose(P.sum(axis=-1), 1.0, rtol=0.0, atol=_ATOL):
        raise ValueError("P must be non-negative with every row P[s, a, :] summing to 1 (within 1e-8; a float32 "
                         "model loses that: divide by the row sums in float64 first)")
    if (initial < 0).any() or not np.isclose(initial.sum(), 1.0, rtol=0.0, atol=_ATOL) or initial[terminal].any():
        raise ValueError("initial must be a distribution over S (summing to 1 within 1e-8) with no mass on "
                         "terminal states")
    if reward_table is not None:
        reward_table = np.array(reward_table, dtype=np.float64)
        if reward_table.shape != P.shape:
            raise ValueError(f"reward_table must have the shape of P {P.shape}, got {reward_table.shape}")
        if not np.allclose((P * reward_table).sum(axis=-1), R, atol=1e-6):
            raise ValueError("R must be the expected reward of reward_table: R[s, a] = sum_s' P * reward_table")
    if not all(np.isfinite(x).all() for x in (R, reward_table if reward_table is not None else R)):
        raise ValueError("rewards must be finite")
    return P, R, terminal, initial, reward_table


class TabularEnv(gym.Env[int, int]):
    """A finite MDP given by its exact model; the base class of every registered tabular env.

    The model ``(P[S, A, S], R[S, A], terminal[S])`` and the initial distribution are built once;
    ``step`` samples ``s' ~ P[s, a]`` and pays ``reward_table[s, a, s']`` when a per-transition reward
    table is given (else ``R[s, a]``). ``terminated`` is ``terminal[s']``; ``truncated`` is always False:
    time limits come from ``max_episode_steps`` at registration, as in Gymnasium. ``horizon`` is that
    episode length, used for finite-horizon values.

    :param P: transition probabilities ``[S, A, S]``, every row summing to 1
    :param R: expected reward of taking ``a`` in ``s``, ``[S, A]``
    :param terminal: bool ``[S]``: entering such a state ends the episode
    :param initial: start-state distribution ``[S]`` (no mass on terminal states)
    :param horizon: episode length (the registered ``max_episode_steps``)
    :param reward_table: optional reward received on each transition ``[S, A, S]``; ``R`` must be its
        expectation under ``P``
    :param render_mode: ``None`` or ``"ansi"``
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        P: np.ndarray,
        R: np.ndarray,
        terminal: np.ndarray,
        initial: np.ndarray,
        horizon: int,
        reward_table: np.ndarray | None = None,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
            raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self._P, self._R, self._terminal, self._initial, self._reward_table = _as_model(
            P, R, terminal, initial, reward_table
        )
        self._cdf = np.cumsum(self._P, axis=-1)
        self._initial_cdf = np.cumsum(self._initial)
        self.horizon = int(horizon)
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(self._P.shape[0])
        self.action_space = spaces.Discrete(self._P.shape[1])
        self.s: int | None = None
        self.lastaction: int | None = None

    @property
    def n_states(self) -> int:
        """Number of states ``S``."""
        return int(self._P.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return int(self._P.shape[1])

    def transition_matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The exact model.

        :return: copies of ``(P[S, A, S], R[S, A], terminal[S])`` (float64, float64, bool)
        """
        return self._P.copy(), self._R.copy(), self._terminal.copy()

    def initial_distribution(self) -> np.ndarray:
        """The start-state distribution.

        :return: a float64 copy, shape ``[S]``
        """
        return self._initial.copy()

    def optimal_value(self, gamma: float | None = None) -> float:
        """Optimal expected return from the start distribution.

        :param gamma: discount factor; ``None`` for the undiscounted return over ``horizon`` steps
        :return: the optimal value
        """
        return solvers.optimal_value(self, horizon=None if gamma is not None else self.horizon, gamma=gamma)

    def random_value(self, gamma: float | None = None) -> float:
        """Expected return of the uniformly random policy from the start distribution.

        :param gamma: discount factor; ``None`` for the undiscounted return over ``horizon`` steps
        :return: the random policy's value
        """
        return solvers.random_value(self, horizon=None if gamma is not None else self.horizon, gamma=gamma)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.s = self._sample(self._initial_cdf)
        self.lastaction = None
        return self.s, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        if self.s is None:
            raise ResetNeeded("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in the action space {self.action_space}")
        s, a = self.s, int(action)
        next_state, reward = self._transition(s, a)
        self.s, self.lastaction = next_state, a
        return next_state, reward, bool(self._terminal[next_state]), False, {}

    def _transition(self, s: int, a: int) -> tuple[int, float]:
        """Sample ``s'`` from the model and the reward of that transition."""
        next_state = self._sample(self._cdf[s, a])
        if self._reward_table is None:
            return next_state, float(self._R[s, a])
        return next_state, float(self._reward_table[s, a, next_state])

    def _sample(self, cdf: np.ndarray) -> int:
        # scaling by the last cumulative value keeps the draw on a positive-probability index
        return int(np.searchsorted(cdf, self.np_random.random() * cdf[-1], side="right"))

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return self._render_text()

    def _render_text(self) -> str:
        last = "" if self.lastaction is None else f" (last action {self.lastaction})"
        return f"state {self.s}{last}\n"


def terminal_self_loops(P: np.ndarray, terminal: np.ndarray, *rewards: np.ndarray) -> None:
    """Make every terminal state a zero-reward self-loop, in place (nothing is ever chosen there).

    :param P: transitions ``[S, A, S]``
    :param terminal: bool ``[S]``
    :param rewards: reward arrays indexed by state first (``R[S, A]``, ``reward_table[S, A, S]``)
    """
    idx = np.flatnonzero(terminal)
    P[idx] = 0.0
    P[idx, :, idx] = 1.0
    for reward in rewards:
        reward[idx] = 0.0
