"""MiniGrid tasks as exact tabular MDPs: a Discrete-state env that steps the real MiniGrid env.

``minigrid`` is an optional dependency (``pip install icrl-agent[minigrid]``): nothing here imports it
at module import time, so ``import icrl_agent`` works without it; making one of these envs without it
raises ``gymnasium.error.DependencyNotInstalled``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled, ResetNeeded

from icrl_agent import solvers

MINIGRID_MISSING = "minigrid is not installed, run pip install icrl-agent[minigrid]"

# Objects no step changes, moves or removes: the fixed background of a layout, never snapshotted.
_STATIC_TYPES = frozenset({"wall", "goal", "lava", "floor"})


MINIGRID_ACTION_NAMES = ("left", "right", "forward", "pickup", "drop", "toggle", "done")
_NAVIGATION = ("left", "right", "forward")

# id -> (MiniGrid id, MiniGrid kwargs, actions, layout seed). Horizons (MiniGrid's max_steps): about 4x
# the shortest solution, where MiniGrid's default is huge for these tiny grids (Empty-6x6: 144 steps for a
# 7-step task, the random policy then succeeds 66% of the time; DoorKey-5x5: 250 for 11, random 27%);
# FourRooms keeps MiniGrid's 100 (shortest 15, random 0.4%).
_REGISTRATIONS: dict[str, tuple[str, dict[str, Any], tuple[str, ...], int]] = {
    "icrl/MiniGrid-Empty-6x6-v0": ("MiniGrid-Empty-6x6-v0", {"max_steps": 30}, _NAVIGATION, 0),
    "icrl/MiniGrid-DoorKey-5x5-v0": (
        "MiniGrid-DoorKey-5x5-v0",
        {"max_steps": 50},
        ("left", "right", "forward", "pickup", "toggle"),
        0,
    ),
    "icrl/MiniGrid-FourRooms-v0": ("MiniGrid-FourRooms-v0", {"max_steps": 100}, _NAVIGATION, 0),
}
MINIGRID_ENV_IDS: tuple[str, ...] = tuple(_REGISTRATIONS)


def register_minigrid_envs() -> None:
    """Register the tabular MiniGrid tasks with Gymnasium (idempotent; minigrid is needed only at make).

    Registers ``icrl/MiniGrid-Empty-6x6-v0``, ``icrl/MiniGrid-DoorKey-5x5-v0`` and
    ``icrl/MiniGrid-FourRooms-v0`` (the ids in ``MINIGRID_ENV_IDS``). ``max_episode_steps`` is the
    horizon, MiniGrid's ``max_steps``, at which the real env truncates too; pass both to change it.
    """
    for env_id, (minigrid_id, kwargs, actions, layout_seed) in _REGISTRATIONS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="icrl_agent.envs.minigrid_tabular:MiniGridTabular",
            max_episode_steps=kwargs["max_steps"],
            kwargs={"env": minigrid_id, "actions": actions, "layout_seed": layout_seed, **kwargs},
        )


def _import_minigrid() -> Any:
    try:
        import minigrid
    except ImportError as error:
        raise DependencyNotInstalled(MINIGRID_MISSING) from error
    return minigrid


class MiniGridTabular(gym.Env):
    """
    ## Description
    A MiniGrid task seen as the finite MDP it is: every state the agent can reach from the reset
    state(s) is enumerated once, by breadth-first search over all actions on the *real* MiniGrid env
    (snapshotting and restoring its grid, agent pose and carried object), and numbered. ``step`` steps
    the real MiniGrid env and returns the id of the state it lands in, so rendering, dynamics and
    termination are MiniGrid's own; the exact model extracted by the search is exposed for evaluation.

    A state is everything MiniGrid's dynamics read: agent position and direction, the carried object,
    which object lies in which cell, and the state of every object that has one (door open/locked,
    box contents), as MiniGrid encodes them (type, color, state): two objects that look alike are
    one, as in MiniGrid's own ``hash()``. That is what lets a key survive the real env's resets, which
    rebuild every object; no MiniGrid task tells look-alike objects apart.

    ## Action Space
    ``Discrete(len(actions))``: index ``i`` plays MiniGrid action ``actions[i]`` (names from
    ``left, right, forward, pickup, drop, toggle, done``). Default: all seven, as MiniGrid. The
    registered tasks keep only what the task needs (navigation tasks: ``left, right, forward``; DoorKey
    adds ``pickup, toggle``): fewer actions mean fewer useless self-loops for an agent to rule out, and
    fewer states (``drop`` would let the key lie on any cell). Useless actions are kept as self-loops.

    ## Observation Space
    ``Discrete(S)``: the state id, ``0..S-1`` in breadth-first order from the reset state(s).

    ## Starting State
    MiniGrid's reset with a fixed *layout seed* (``layout_seed``, default 0), so that randomised
    layouts (DoorKey, FourRooms) give one fixed MDP. A sequence of seeds gives a uniform start over
    those layouts (each layout's states are distinct states). The ``seed`` of ``reset`` only picks
    among the layouts.

    ## Rewards
    MiniGrid pays ``1 - 0.9 * step_count / max_steps`` on success, which depends on time and is not a
    function of the state. Here the reward is MiniGrid's reward computed at ``step_count = 0`` (it is
    read from the real env stepped from that count), i.e. 1 on reaching the goal, 0 otherwise: the
    success indicator, stationary and on the same scale as MiniGrid's. The time pressure MiniGrid
    encodes in its decay is kept by the horizon (finite-horizon returns), or by ``gamma`` for those who
    evaluate discounted returns. MiniGrid's own reward is in ``info["minigrid_reward"]``.

    ## Episode End
    Terminated exactly when MiniGrid's step says so (goal reached, lava, or a task's own rule);
    truncated at the horizon, MiniGrid's ``max_steps`` (``horizon``), by the real env.

    ## Arguments
    ```python
    gym.make("icrl/MiniGrid-Empty-6x6-v0")      # 3 actions, horizon 30 (MiniGrid: 144), 62 states
    gym.make("icrl/MiniGrid-DoorKey-5x5-v0")    # 5 actions, horizon 50 (MiniGrid: 250), 62 states
    gym.make("icrl/MiniGrid-FourRooms-v0")      # 3 actions, horizon 100, real 19x19 layout, 1040 states
    MiniGridTabular("MiniGrid-LavaGapS5-v0", actions=("left", "right", "forward"), layout_seed=[0, 1])
    ```
    Extra keyword arguments go to ``gymnasium.make`` of the MiniGrid id (e.g. ``max_steps``,
    ``render_mode``).

    ## Exact model
    ``transition_matrix()`` -> ``(P[S, A, S], R[S, A], terminal[S])`` (deterministic ``P``; terminal
    states have zero-reward self-loops), ``initial_distribution()``, ``horizon``.

    ## Optimal return
    ``optimal_value(gamma=None)`` and ``random_value(gamma=None)``: exact, over ``horizon`` steps unless
    ``gamma`` is given. With the success reward the optimal value is the best success probability
    within the horizon (1 for the registered tasks; random: 0.10, 0.003 and 0.004).
    The registered horizons are about 4x the shortest solution where MiniGrid's ``max_steps`` is huge
    for such small grids (there the random policy would succeed 66% and 27% of the time), MiniGrid's
    own 100 for FourRooms, kept at its real 19x19 size with layout seed 0 (1040 states).

    Only MiniGrid envs whose step is deterministic given grid, agent pose and carried object are
    supported (not DynamicObstacles, not BabyAI instruction envs); ``step`` raises when the real env
    leaves the extracted model.

    ## Version History
    * v0: initial version
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}

    def __init__(
        self,
        env: str | gym.Env,
        actions: Sequence[int | str] | None = None,
        layout_seed: int | Sequence[int] = 0,
        max_states: int = 5_000,
        **minigrid_kwargs: Any,
    ) -> None:
        """Enumerate the MDP of a MiniGrid task.

        :param env: a MiniGrid env id (made with ``gymnasium.make``) or a MiniGrid env instance
        :param actions: the MiniGrid actions to expose, as ints or names; ``None`` for all seven
        :param layout_seed: seed(s) of MiniGrid's reset that fix the layout(s)
        :param max_states: refuse to enumerate more states than this (``transition_matrix()`` is dense,
            ``S * A * S`` floats: 5000 states and 7 actions take 1.4 GB)
        :param minigrid_kwargs: keyword arguments for ``gymnasium.make(env, ...)`` (e.g. ``max_steps``)
        """
        minigrid = _import_minigrid()
        self._layout_seeds = self._check_seeds(layout_seed)
        self.minigrid = self._make_minigrid(minigrid, env, minigrid_kwargs)
        self.actions = self._check_actions(actions)
        self.render_mode = self.minigrid.render_mode
        self.horizon = int(self.minigrid.max_steps)
        # The search discards MiniGrid's egocentric observation, 60-85% of a step's cost (measured on
        # FourRooms and UnlockPickup; no MiniGrid task's step reads it): skip computing it meanwhile.
        self.minigrid.gen_obs = _no_observation
        try:
            self._extract_model(max_states)
        finally:
            del self.minigrid.gen_obs
            self._reset_real(self._layout_seeds[0])
        self.observation_space = spaces.Discrete(self.n_states)
        self.action_space = spaces.Discrete(len(self.actions))
        self._state: int | None = None

    # ---- construction -------------------------------------------------------------------------------

    @staticmethod
    def _check_seeds(layout_seed: int | Sequence[int]) -> tuple[int, ...]:
        try:
            seeds = (layout_seed,) if isinstance(layout_seed, int | np.integer) else tuple(layout_seed)
        except TypeError:  # neither an int nor a sequence (1.5, None): refused below with the fix
            seeds = ()
        if not seeds or any(not isinstance(s, int | np.integer) or s < 0 for s in seeds):
            raise ValueError(
                f"layout_seed must be a non-negative int or a non-empty sequence of them, got {layout_seed!r}"
            )
        return tuple(int(s) for s in seeds)

    @staticmethod
    def _make_minigrid(minigrid: Any, env: str | gym.Env, kwargs: dict[str, Any]) -> Any:
        from minigrid.minigrid_env import MiniGridEnv

        if isinstance(env, str):
            env = gym.make(env, disable_env_checker=True, **kwargs)
        elif kwargs:
            raise TypeError(
                f"keyword arguments {sorted(kwargs)} apply only when env is an id, not an instance"
            )
        if not isinstance(env, gym.Env) or not isinstance(env.unwrapped, MiniGridEnv):
            raise TypeError(
                f"env must be a MiniGrid env id or a MiniGrid env (minigrid {minigrid.__version__}), "
                f"got {env!r}"
            )
        return env.unwrapped

    def _check_actions(self, actions: Sequence[int | str] | None) -> tuple[int, ...]:
        n_actions = len(self.minigrid.actions)
        if actions is None:
            return tuple(range(n_actions))
        if isinstance(actions, str) or not isinstance(actions, Sequence) or not actions:
            raise ValueError(f"actions must be a non-empty sequence of ints or names, got {actions!r}")
        chosen = []
        for action in actions:
            if isinstance(action, str) and action in MINIGRID_ACTION_NAMES[:n_actions]:
                action = MINIGRID_ACTION_NAMES.index(action)
            if (
                isinstance(action, str)
                or not isinstance(action, int | np.integer)
                or not 0 <= action < n_actions
            ):
                raise ValueError(
                    f"unknown MiniGrid action {action!r}: use ints 0..{n_actions - 1} or names "
                    f"{MINIGRID_ACTION_NAMES[:n_actions]}"
                )
            chosen.append(int(action))
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"actions must not repeat, got {actions!r}")
        return tuple(chosen)

    def _extract_model(self, max_states: int) -> None:
        """Breadth-first search over the real env: the successor table, rewards and terminal flags.

        Ids are assigned in discovery order, so expanding ids in increasing order is the search itself.
        """
        self._backgrounds: dict[bytes, int] = {}
        self._ids: dict[tuple, int] = {}
        self._snapshots: list[tuple] = []
        self._terminal_list: list[bool] = []
        self._layout_attrs = self._capture_layouts()
        self._initial_ids = []
        for layout in range(len(self._layout_seeds)):
            self._restore_layout(layout)
            self._initial_ids.append(self._add_state(layout, False, max_states))
        next_rows, reward_rows = [], []
        state = 0
        while state < len(self._snapshots):
            row = [self._expand(state, action, max_states) for action in self.actions]
            next_rows.append([nxt for nxt, _ in row])
            reward_rows.append([reward for _, reward in row])
            state += 1
        self._next = np.asarray(next_rows, dtype=np.int64).reshape(-1, len(self.actions))
        self._rewards = np.asarray(reward_rows, dtype=np.float64).reshape(-1, len(self.actions))
        self._terminal = np.asarray(self._terminal_list, dtype=bool)

    def _capture_layouts(self) -> list[dict[str, Any]]:
        """Reset the real env on each layout; per layout, the env attributes that resets set.

        Restoring them (the grid object, the mission, task attributes such as Unlock's ``door``) makes
        snapshots of a layout valid again after later resets built new objects. The names are those any
        reset changed, so a value one layout shares with the previous one is still restored.
        """
        changed: set[str] = set()
        self._layout_backgrounds: list[int] = []
        after_reset = []
        for seed in self._layout_seeds:
            before = dict(vars(self.minigrid))
            self._reset_real(seed)
            after = dict(vars(self.minigrid))
            self._layout_backgrounds.append(self._background)
            changed.update(
                name for name, value in after.items() if name not in before or before[name] is not value
            )
            after_reset.append(after)
        names = {name for name in changed if not name.startswith("_np_random")}
        return [{name: after[name] for name in names if name in after} for after in after_reset]

    def _reset_real(self, seed: int) -> None:
        """Reset the real env on a layout and identify its fixed background."""
        self.minigrid.reset(seed=seed)
        self._background = self._background_id()

    def _background_id(self) -> int:
        """Number of the layout's fixed part: its walls, goals, lava and floor (steps never change them:
        MiniGrid picks up, drops and toggles only other objects), numbered by MiniGrid's encoding."""
        from minigrid.core.constants import OBJECT_TO_IDX

        empty = bytes((OBJECT_TO_IDX["empty"], 0, 0))
        codes = b"".join(
            empty if obj is None or obj.type not in _STATIC_TYPES else bytes(obj.encode())
            for obj in self.minigrid.grid.grid
        )
        return self._backgrounds.setdefault(codes, len(self._backgrounds))

    def _restore_layout(self, layout: int) -> None:
        self._background = self._layout_backgrounds[layout]
        vars(self.minigrid).update(self._layout_attrs[layout])

    def _add_state(self, layout: int, terminated: bool, max_states: int) -> int:
        """Id of the real env's current state, numbering (and snapshotting) it if new."""
        key = self._state_key()
        state = self._ids.get(key)
        if state is None:
            if len(self._snapshots) >= max_states:
                raise ValueError(
                    f"{self.minigrid.spec.id if self.minigrid.spec else self.minigrid} has more than "
                    f"max_states={max_states} reachable states: fix the layout (layout_seed), drop actions "
                    "that multiply states (e.g. 'drop'), or raise max_states"
                )
            state = self._ids[key] = len(self._snapshots)
            self._snapshots.append(self._snapshot(layout))
            self._terminal_list.append(terminated)
        elif self._terminal_list[state] != terminated:
            raise RuntimeError(
                "MiniGrid terminated on entering a state it also enters without terminating: termination "
                "depends on more than the state (or the dynamics are random), so this env is not tabular"
            )
        return state

    def _expand(self, state: int, action: int, max_states: int) -> tuple[int, float]:
        """Successor and reward of (state, action), read from the real env stepped at step_count 0."""
        if self._terminal_list[state]:
            return state, 0.0
        self._restore(self._snapshots[state], step_count=-1)  # step() increments it to 0 first
        _, reward, terminated, _, _ = self.minigrid.step(action)
        return self._add_state(self._snapshots[state][0], bool(terminated), max_states), float(reward)

    # ---- snapshots and state keys -------------------------------------------------------------------

    def _snapshot(self, layout: int) -> tuple:
        """What a step can change: cell contents, agent pose, carried object, stateful objects' attributes.

        A shallow copy of the cell list plus the attributes of the few stateful objects (doors, boxes,
        keys, balls): measured 11 us to take and 2 us to restore on FourRooms, against 650 us each way
        for a deepcopy of grid, pose and carried object (a step itself costs ~130 us). Object identities
        are kept, so task attributes that point at objects (Unlock's ``door``) stay valid.
        """
        env = self.minigrid
        cells = list(env.grid.grid)
        stateful = [obj for obj in _walk([*cells, env.carrying]) if obj.type not in _STATIC_TYPES]
        attrs = tuple((obj, _copy_attrs(obj)) for obj in stateful)
        return layout, cells, tuple(env.agent_pos), env.agent_dir, env.carrying, attrs

    def _restore(self, snapshot: tuple, step_count: int) -> None:
        layout, cells, agent_pos, agent_dir, carrying, attrs = snapshot
        env = self.minigrid
        self._restore_layout(layout)
        env.grid.grid[:] = cells
        env.agent_pos, env.agent_dir, env.carrying = agent_pos, agent_dir, carrying
        for obj, saved in attrs:
            vars(obj).update(_copy_attrs(saved))
        env.step_count = step_count

    def _state_key(self) -> tuple:
        """Hashable appearance of the real env's state: the layout's fixed background, agent pose,
        carried object and MiniGrid's encoding of every other object (with box contents) by cell.

        Appearance, not object identity, so the key survives the real env's resets (which rebuild every
        object). Only the movable objects are listed: 3x faster than encoding the whole grid.
        """
        env = self.minigrid
        movable = tuple(
            (cell, _appearance(obj))
            for cell, obj in enumerate(env.grid.grid)
            if obj is not None and obj.type not in _STATIC_TYPES
        )
        agent_pos = (int(env.agent_pos[0]), int(env.agent_pos[1]))
        return self._background, agent_pos, int(env.agent_dir), _appearance(env.carrying), movable

    # ---- the exact model ----------------------------------------------------------------------------

    @property
    def n_states(self) -> int:
        """Number of reachable states ``S``."""
        return len(self._snapshots)

    @property
    def layout_seeds(self) -> tuple[int, ...]:
        """The MiniGrid reset seeds that fix the layouts."""
        return self._layout_seeds

    def transition_matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The exact model, read from the real env.

        :return: ``P[S, A, S]`` (one-hot rows: MiniGrid is deterministic), ``R[S, A]`` and ``terminal[S]``
        """
        n_states, n_actions = self._next.shape
        P = np.zeros((n_states, n_actions, n_states))
        P[np.arange(n_states)[:, None], np.arange(n_actions)[None, :], self._next] = 1.0
        return P, self._rewards.copy(), self._terminal.copy()

    def successor_table(self) -> np.ndarray:
        """The deterministic transitions as a table, cheaper than ``P`` for large ``S``.

        :return: ``next_state[S, A]`` (int64); terminal states loop on themselves
        """
        return self._next.copy()

    def initial_distribution(self) -> np.ndarray:
        """Start-state probabilities: uniform over the layouts' reset states.

        :return: ``mu[S]``
        """
        counts = np.bincount(self._initial_ids, minlength=self.n_states)
        return counts / counts.sum()

    def optimal_value(self, gamma: float | None = None) -> float:
        """Exact optimal expected return from the start distribution.

        :param gamma: discount factor; ``None`` for the undiscounted return over ``horizon`` steps
        :return: the optimal value
        """
        return solvers.optimal_value(self, gamma=gamma)

    def random_value(self, gamma: float | None = None) -> float:
        """Exact expected return of the uniformly random policy from the start distribution.

        :param gamma: discount factor; ``None`` for the undiscounted return over ``horizon`` steps
        :return: the random policy's value
        """
        return solvers.random_value(self, gamma=gamma)

    # ---- the real env, as a Discrete-state env ------------------------------------------------------

    def minigrid_state_id(self) -> int:
        """Id of the state the real MiniGrid env is in now.

        :return: the state id
        """
        state = self._ids.get(self._state_key())
        if state is None:
            raise RuntimeError(
                "the MiniGrid env is in a state the extracted model does not contain: its dynamics depend "
                "on more than grid, agent pose and carried object (e.g. random moves), so it is not tabular"
            )
        return state

    def set_state(self, state_id: int) -> None:
        """Put the real env in a state, as at the start of an episode (MiniGrid ``step_count`` 0).

        :param state_id: the state, ``0..S-1``
        """
        if not isinstance(state_id, int | np.integer) or not 0 <= state_id < self.n_states:
            raise ValueError(f"state_id must be an int in [0, {self.n_states}), got {state_id!r}")
        self._restore(self._snapshots[int(state_id)], step_count=0)
        self._state = int(state_id)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        """Reset the real env on one of the layouts (chosen with ``seed`` when there are several).

        :param seed: seeds the choice of layout
        :param options: unused
        :return: the start state id and ``{"layout_seed": ...}``
        """
        super().reset(seed=seed)
        layout_seed = self._layout_seeds[int(self.np_random.integers(len(self._layout_seeds)))]
        self._reset_real(layout_seed)
        self._state = self.minigrid_state_id()
        return self._state, {"layout_seed": layout_seed}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        """Step the real env with ``actions[action]``.

        :param action: an action index in ``action_space``
        :return: next state id, the stationary reward ``R[s, a]``, terminated, truncated (at
            ``horizon``) and ``{"minigrid_reward": MiniGrid's time-decayed reward}``
        """
        if self._state is None:
            raise ResetNeeded("call reset() before step()")
        if self._terminal[self._state]:
            raise ResetNeeded("the episode has terminated: call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in the action space {self.action_space}")
        index = int(action)
        _, minigrid_reward, terminated, truncated, _ = self.minigrid.step(self.actions[index])
        nxt = self.minigrid_state_id()
        if nxt != self._next[self._state, index] or bool(terminated) != self._terminal[nxt]:
            raise RuntimeError(
                f"MiniGrid moved from state {self._state} with action {index} to {nxt} (terminated="
                f"{terminated}), not as extracted: its dynamics are not deterministic in the state"
            )
        reward = float(self._rewards[self._state, index])
        self._state = nxt
        return nxt, reward, bool(terminated), bool(truncated), {"minigrid_reward": float(minigrid_reward)}

    def render(self) -> Any:
        """MiniGrid's own rendering of the real env (``render_mode`` as given at make)."""
        return self.minigrid.render()

    def close(self) -> None:
        """Close the real env."""
        self.minigrid.close()


def _no_observation() -> None:
    return None


def _walk(objects: Sequence[Any]) -> list[Any]:
    """The objects and, recursively, what they contain (None skipped)."""
    found = []
    stack = [obj for obj in objects if obj is not None]
    while stack:
        obj = stack.pop()
        found.append(obj)
        if obj.contains is not None:
            stack.append(obj.contains)
    return found


def _copy_attrs(obj_or_attrs: Any) -> dict[str, Any]:
    attrs = obj_or_attrs if isinstance(obj_or_attrs, dict) else vars(obj_or_attrs)
    return {name: value.copy() if isinstance(value, np.ndarray) else value for name, value in attrs.items()}


def _appearance(obj: Any) -> tuple | None:
    """MiniGrid's encoding of an object, with what it contains (boxes), recursively."""
    if obj is None:
        return None
    return (obj.encode(), _appearance(obj.contains))
