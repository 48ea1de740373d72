"""Gymnasium's toy-text tasks (FrozenLake, CliffWalking, Taxi) with their exact models.

The model is read from Gymnasium's own ``env.unwrapped.P`` (``P[s][a]`` = list of ``(prob, s', reward,
done)``) and start distribution; observation ids, actions and rewards are Gymnasium's, and ``step``
samples the same outcome lists, so the dynamics are the original ones.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.toy_text import CliffWalkingEnv, FrozenLakeEnv, TaxiEnv

from icrl_agent.envs.tabular import TabularEnv, terminal_self_loops

Outcomes = list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]


def terminal_states(P_dict: dict, initial: np.ndarray) -> np.ndarray:
    """States that Gymnasium ends an episode on entering: the successors of ``done`` transitions.

    :param P_dict: Gymnasium's ``P[s][a]`` lists of ``(prob, s', reward, done)``
    :param initial: the start distribution ``[S]``
    :return: bool ``[S]``
    :raises ValueError: if, from a state an episode can reach, ``done`` is not a function of ``s'``
    """
    terminal = np.zeros(len(initial), dtype=bool)
    for actions in P_dict.values():
        for outcomes in actions.values():
            for prob, nxt, _, done in outcomes:
                terminal[nxt] |= bool(done) and prob > 0
    # Only states an episode can be in matter: e.g. Taxi's states after a dropoff are never acted from.
    frontier = [int(s) for s in np.flatnonzero(initial)]
    seen = set(frontier)
    while frontier:
        s = frontier.pop()
        for outcomes in P_dict[s].values():
            for prob, nxt, _, done in outcomes:
                if prob > 0 and bool(done) != terminal[nxt]:
                    raise ValueError(
                        f"transition {s} -> {nxt} has done={done} but state {nxt} is terminal={terminal[nxt]} "
                        "elsewhere: termination is not a function of the next state, so this env has no "
                        "terminal-state model"
                    )
                if prob > 0 and not terminal[nxt] and nxt not in seen:
                    seen.add(int(nxt))
                    frontier.append(int(nxt))
    return terminal


def model_from_gymnasium(
    P_dict: dict, initial: np.ndarray, n_actions: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Outcomes]:
    """``(P, R, terminal, outcomes)`` from Gymnasium's ``P`` dict; terminal rows become zero-reward loops.

    ``outcomes[s][a]`` keeps Gymnasium's own ``(probs, next states, rewards)`` arrays for sampling, so
    two outcomes reaching the same ``s'`` with different rewards stay distinct.
    """
    n_states = len(initial)
    P, R = np.zeros((n_states, n_actions, n_states)), np.zeros((n_states, n_actions))
    outcomes: Outcomes = []
    for s in range(n_states):
        outcomes.append([])
        for a in range(n_actions):
            probs, nexts, rewards = (np.array([o[i] for o in P_dict[s][a]]) for i in range(3))
            np.add.at(P[s, a], nexts.astype(int), probs)
            R[s, a] = float(probs @ rewards)
            outcomes[s].append((np.cumsum(probs), nexts.astype(int), rewards.astype(float)))
    terminal = terminal_states(P_dict, initial)
    terminal_self_loops(P, terminal, R)
    return P, R, terminal, outcomes


class GymnasiumToyText(TabularEnv):
    """A Gymnasium toy-text env (anything with ``P`` and ``initial_state_distrib``) as a ``TabularEnv``.

    Rendering is Gymnasium's: the inner env is kept in the same state and renders itself.

    :param env_id: the Gymnasium id, e.g. ``"FrozenLake-v1"``
    :param horizon: episode length (the registered ``max_episode_steps``)
    :param render_mode: any render mode of the inner env, or ``None``
    :param gym_kwargs: keyword arguments of ``gymnasium.make(env_id, ...)``
    """

    def __init__(self, env_id: str, horizon: int, render_mode: str | None = None, **gym_kwargs: Any) -> None:
        self.gym_env = gym.make(env_id, render_mode=render_mode, disable_env_checker=True, **gym_kwargs).unwrapped
        self.metadata = {**self.gym_env.metadata}
        initial = np.asarray(self.gym_env.initial_state_distrib, dtype=np.float64)
        P, R, terminal, self._outcomes = model_from_gymnasium(self.gym_env.P, initial, int(self.gym_env.action_space.n))
        super().__init__(P, R, terminal, initial, horizon, render_mode=render_mode)

    def _transition(self, s: int, a: int) -> tuple[int, float]:
        cdf, nexts, rewards = self._outcomes[s][a]
        i = self._sample(cdf)
        return int(nexts[i]), float(rewards[i])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        obs, info = super().reset(seed=seed, options=options)
        self._sync()
        return obs, info

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        result = super().step(action)
        self._sync()
        return result

    def _sync(self) -> None:
        self.gym_env.s, self.gym_env.lastaction = self.s, self.lastaction
        if self.render_mode == "human":
            self.gym_env.render()

    def render(self) -> Any:
        return None if self.render_mode in (None, "human") else self.gym_env.render()

    def close(self) -> None:
        self.gym_env.close()


class FrozenLake(GymnasiumToyText):
    """
    ## Description
    Gymnasium's FrozenLake (``FrozenLake-v1``) with its exact model: cross a frozen lake from the
    top-left to the goal at the bottom-right without falling into a hole. On the slippery lake
    (default) the agent moves in the intended direction with probability 1/3, else in one of the two
    perpendicular directions.

    ## Action Space
    ``Discrete(4)``: 0 left, 1 down, 2 right, 3 up (Gymnasium's).

    ## Observation Space
    ``Discrete(16)`` (4x4) or ``Discrete(64)`` (8x8): ``row * ncol + col``, Gymnasium's ids.

    ## Starting State
    The ``S`` cell, top-left.

    ## Rewards
    Gymnasium's: 1 on reaching the goal, 0 otherwise.

    ## Episode End
    Terminated on entering a hole or the goal (terminal states, where Gymnasium's ``P`` says ``done``);
    truncated after ``horizon`` steps: 100 (4x4) and 200 (8x8), Gymnasium's own ``max_episode_steps``.

    ## Arguments
    ```python
    gym.make("icrl/FrozenLake4x4-v0")
    gym.make("icrl/FrozenLake8x8-v0")
    gym.make("icrl/FrozenLake4x4-v0", is_slippery=False)
    ```
    Keyword arguments other than ``map_name``, ``horizon`` and ``render_mode`` go to
    ``gym.make("FrozenLake-v1", ...)`` (``desc``, ``is_slippery``, ``success_rate``, ``reward_schedule``).

    ## Exact model
    ``transition_matrix()`` -> ``(P[S, 4, S], R[S, 4], terminal[S])`` read from Gymnasium's
    ``env.unwrapped.P``; terminal states (holes, goal) are zero-reward self-loops.

    ## Optimal return
    ``optimal_value()``: the best success probability within the horizon: about 0.74 (4x4, 100 steps)
    and 0.91 (8x8, 200 steps), Gymnasium's "optimum" notes; random: about 0.014 and 0.002.

    ## Version History
    * v0: initial version (Gymnasium ``FrozenLake-v1``)
    """

    metadata = dict(FrozenLakeEnv.metadata)  # gym.make checks render_mode against the class's

    def __init__(
        self, map_name: str = "4x4", horizon: int = 100, render_mode: str | None = None, **gym_kwargs: Any
    ) -> None:
        """:param map_name: ``"4x4"`` or ``"8x8"``
        :param horizon: episode length
        :param render_mode: ``None``, ``"ansi"``, ``"rgb_array"`` or ``"human"``
        :param gym_kwargs: more keyword arguments of Gymnasium's FrozenLake
        """
        super().__init__("FrozenLake-v1", horizon, render_mode, map_name=map_name, **gym_kwargs)


class CliffWalking(GymnasiumToyText):
    """
    ## Description
    Gymnasium's CliffWalking (``CliffWalking-v1``; Sutton & Barto, Example 6.6) with its exact model:
    walk along a 4x12 grid from the bottom-left to the bottom-right without stepping off the cliff
    between them.

    ## Action Space
    ``Discrete(4)``: 0 up, 1 right, 2 down, 3 left (Gymnasium's).

    ## Observation Space
    ``Discrete(48)``: ``row * 12 + col``, Gymnasium's ids (the cliff cells are never occupied).

    ## Starting State
    Cell 36, bottom-left.

    ## Rewards
    Gymnasium's: -1 per step, -100 for stepping into the cliff, which sends the agent back to the start
    without ending the episode.

    ## Episode End
    Terminated on entering the goal (cell 47, the terminal state); truncated after ``horizon`` = 200
    steps (Gymnasium registers no time limit for it).

    ## Arguments
    ```python
    gym.make("icrl/CliffWalking-v0")
    gym.make("icrl/CliffWalking-v0", is_slippery=True)
    ```

    ## Exact model
    ``transition_matrix()`` -> ``(P[48, 4, 48], R[48, 4], terminal[48])`` read from Gymnasium's
    ``env.unwrapped.P``. With ``is_slippery=True`` falling into the cliff and bumping into the border
    can both lead back to the start with different rewards: ``R`` is their expectation and ``step``
    samples Gymnasium's own outcomes.

    ## Optimal return
    ``optimal_value()`` = -13 (the 13-step path along the cliff); the random policy: about -2079.

    ## Version History
    * v0: initial version (Gymnasium ``CliffWalking-v1``)
    """

    metadata = dict(CliffWalkingEnv.metadata)  # gym.make checks render_mode against the class's

    def __init__(self, horizon: int = 200, render_mode: str | None = None, **gym_kwargs: Any) -> None:
        """:param horizon: episode length
        :param render_mode: ``None``, ``"ansi"``, ``"rgb_array"`` or ``"human"``
        :param gym_kwargs: more keyword arguments of Gymnasium's CliffWalking (``is_slippery``)
        """
        super().__init__("CliffWalking-v1", horizon, render_mode, **gym_kwargs)


class Taxi(GymnasiumToyText):
    """
    ## Description
    Gymnasium's Taxi (``Taxi-v4``; Dietterich, 2000) with its exact model: drive a taxi on a 5x5 grid
    with walls, pick up a passenger at one of four marked locations and drop them at another.

    ## Action Space
    ``Discrete(6)``: 0 south, 1 north, 2 east, 3 west, 4 pickup, 5 dropoff (Gymnasium's).

    ## Observation Space
    ``Discrete(500)``: Gymnasium's ``((row * 5 + col) * 5 + passenger) * 4 + destination``.

    ## Starting State
    Gymnasium's: uniform over the 300 states with the passenger waiting at a location that is not the
    destination.

    ## Rewards
    Gymnasium's: -1 per step, +20 for a successful dropoff, -10 for an illegal pickup or dropoff.

    ## Episode End
    Terminated by the successful dropoff. It lands in the state "taxi and passenger at the destination"
    (4 states, one per destination), which no other transition of an episode enters, so those 4 are the
    terminal states and no extra absorbing state is needed (their rows, never acted from, become
    zero-reward self-loops; the other "passenger at the destination" states are unreachable and keep
    Gymnasium's rows). Truncated after
    ``horizon`` = 200 steps, Gymnasium's ``max_episode_steps``.

    ## Arguments
    ```python
    gym.make("icrl/Taxi-v0")
    gym.make("icrl/Taxi-v0", is_rainy=True)
    ```
    ``fickle_passenger`` is refused: Gymnasium changes the destination in ``step``, outside its ``P``.

    ## Exact model
    ``transition_matrix()`` -> ``(P[500, 6, 500], R[500, 6], terminal[500])`` read from Gymnasium's
    ``env.unwrapped.P``.

    ## Optimal return
    ``optimal_value()``: about 7.93, the mean over the 300 start states of ``21 - shortest solution
    length`` (Gymnasium's registration note says "optimum = 8.46"; breadth-first search over its own
    dynamics gives 7.93); random: about -771.

    ## Version History
    * v0: initial version (Gymnasium ``Taxi-v4``)
    """

    metadata = dict(TaxiEnv.metadata)  # gym.make checks render_mode against the class's

    def __init__(self, horizon: int = 200, render_mode: str | None = None, **gym_kwargs: Any) -> None:
        """:param horizon: episode length
        :param render_mode: ``None``, ``"ansi"``, ``"rgb_array"`` or ``"human"``
        :param gym_kwargs: more keyword arguments of Gymnasium's Taxi (``is_rainy``, ``rainy_probability``)
        """
        if gym_kwargs.get("fickle_passenger"):
            raise ValueError(
                "fickle_passenger=True changes the destination outside Taxi's P, so there is no exact model: "
                "use gym.make('Taxi-v4', fickle_passenger=True) directly"
            )
        super().__init__("Taxi-v4", horizon, render_mode, **gym_kwargs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        obs, info = super().reset(seed=seed, options=options)
        self.gym_env.taxi_orientation = 0
        return obs, info
