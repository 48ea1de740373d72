"""Every registered tabular env's exact model against a reference written out by hand from its documentation.

``tests/test_envs.py`` does this for RiverSwim (``riverswim_from_the_paper``); here the other envs get the
same: transitions, expected rewards, terminal states, start distribution and horizon, so a changed slip
probability, reward, map or time limit fails. The references are built from the rules in each env's
docstring (or the original paper / Gymnasium source rules), not from the env classes.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import icrl_agent  # noqa: F401  (registers the icrl/ envs)
from icrl_agent.envs import TABULAR_ENV_IDS

# left, down, right, up (FrozenLake's order, used by the grid worlds too)
FL_MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))

FROZEN_LAKE_4X4 = ["SFFF", "FHFH", "FFFH", "HFFG"]
FROZEN_LAKE_8X8 = [
    "SFFFFFFF",
    "FFFFFFFF",
    "FFFHFFFF",
    "FFFFFHFF",
    "FFFHFFFF",
    "FHHFFFHF",
    "FHFFHFHF",
    "FFFHFFFG",
]
FOUR_ROOMS_11 = [  # Sutton, Precup & Singh's layout, 104 free cells, one doorway per wall segment
    "S....#.....",
    ".....#.....",
    "...........",
    ".....#.....",
    ".....#.....",
    "##.#####.##",
    ".....#.....",
    ".....#.....",
    "...........",
    ".....#.....",
    ".....#....G",
]
OPEN_ROOM_5 = ["S....", ".....", ".....", ".....", "....G"]


class Reference:
    """A hand-built model: ``P[S, A, S]``, per-transition rewards ``T[S, A, S]``, terminal, initial, horizon."""

    def __init__(self, n_states: int, n_actions: int, horizon: int):
        self.P = np.zeros((n_states, n_actions, n_states))
        self.T = np.zeros((n_states, n_actions, n_states))
        self.terminal = np.zeros(n_states, bool)
        self.initial = np.zeros(n_states)
        self.horizon = horizon

    def add(self, s: int, a: int, s_next: int, p: float, reward: float) -> None:
        self.P[s, a, s_next] += p
        self.T[s, a, s_next] = reward

    def absorb_terminals(self) -> Reference:
        """Terminal states become zero-reward self-loops (docs/internals.md: nothing is chosen there)."""
        for s in np.flatnonzero(self.terminal):
            self.P[s] = 0.0
            self.P[s, :, s] = 1.0
            self.T[s] = 0.0
        return self

    @property
    def R(self) -> np.ndarray:
        return (self.P * self.T).sum(-1)


def chain() -> Reference:
    """Dearden et al. (1998) / Gym's NChain: 5 states, 0 forward / 1 back, the other action w.p. 0.2;
    back pays 2 and returns to 0, forward at the far end stays and pays 10."""
    ref = Reference(5, 2, 50)
    for s in range(5):
        forward = min(s + 1, 4)
        for a, p_forward in ((0, 0.8), (1, 0.2)):
            ref.add(s, a, forward, p_forward, 10.0 if s == 4 else 0.0)
            ref.add(s, a, 0, 1.0 - p_forward, 2.0)
    ref.initial[0] = 1.0
    return ref


def six_arms() -> Reference:
    """Strehl & Littman (2008), Figure 3."""
    ref = Reference(7, 6, 20)
    enter = [1.0, 0.15, 0.10, 0.05, 0.03, 0.01]
    pay = [50.0, 133.0, 300.0, 800.0, 1660.0, 6000.0]
    for a in range(6):
        ref.add(0, a, a + 1, enter[a], 0.0)
        if enter[a] < 1:
            ref.add(0, a, 0, 1.0 - enter[a], 0.0)
    for room in range(1, 7):
        for a in range(6):
            stays = a != 4 if room == 1 else a == room - 1
            if stays:
                ref.add(room, a, room, 1.0, pay[room - 1])
            else:
                ref.add(room, a, 0, 1.0, 0.0)
    ref.initial[0] = 1.0
    return ref


def deep_sea(size: int = 10, mapping_seed: int = 0) -> Reference:
    """bsuite's deterministic DeepSea: descend one row per step; "right" (per-cell action from bsuite's
    mapping) costs 0.01 / N and pays 1 at the last column, as bsuite's reward rule; the end state below
    the grid is terminal."""
    mapping = np.random.RandomState(mapping_seed).binomial(1, 0.5, [size, size])
    end = size * size
    ref = Reference(end + 1, 2, size)
    for row in range(size):
        for col in range(size):
            for a in (0, 1):
                right = a == mapping[row, col]
                new_col = min(col + 1, size - 1) if right else max(col - 1, 0)
                nxt = end if row == size - 1 else (row + 1) * size + new_col
                reward = (-0.01 / size + (1.0 if col == size - 1 else 0.0)) if right else 0.0
                ref.add(row * size + col, a, nxt, 1.0, reward)
    ref.terminal[end] = True
    ref.initial[0] = 1.0
    return ref.absorb_terminals()


def grid_world(desc: list[str], slip: float, horizon: int) -> Reference:
    """A map with walls '#': the intended move w.p. 1 - slip, each perpendicular one w.p. slip / 2; blocked
    moves stay; entering a goal pays 1 and ends the episode."""
    cells = [(r, c) for r, row in enumerate(desc) for c, ch in enumerate(row) if ch != "#"]
    index = {cell: i for i, cell in enumerate(cells)}
    ref = Reference(len(cells), 4, horizon)
    for i, (r, c) in enumerate(cells):
        for a, (dr, dc) in enumerate(FL_MOVES):
            perpendicular = [m for m in FL_MOVES if m[0] * dr + m[1] * dc == 0]
            for (mr, mc), p in [((dr, dc), 1.0 - slip)] + [(m, slip / 2) for m in perpendicular]:
                j = index.get((r + mr, c + mc), i)
                ref.add(i, a, j, p, 1.0 if desc[cells[j][0]][cells[j][1]] == "G" else 0.0)
        ref.terminal[i] = desc[r][c] == "G"
        ref.initial[i] = desc[r][c] == "S"
    return ref.absorb_terminals()


def frozen_lake(desc: list[str], horizon: int) -> Reference:
    """Gymnasium's slippery FrozenLake: the intended move or either perpendicular one, 1/3 each; moves off
    the lake stay; holes and the goal end the episode; 1 for entering the goal."""
    n_rows, n_cols = len(desc), len(desc[0])
    ref = Reference(n_rows * n_cols, 4, horizon)
    for r in range(n_rows):
        for c in range(n_cols):
            s = r * n_cols + c
            for a in range(4):
                for b in ((a - 1) % 4, a, (a + 1) % 4):
                    dr, dc = FL_MOVES[b]
                    r2, c2 = min(max(r + dr, 0), n_rows - 1), min(max(c + dc, 0), n_cols - 1)
                    ref.add(s, a, r2 * n_cols + c2, 1 / 3, 1.0 if desc[r2][c2] == "G" else 0.0)
            ref.terminal[s] = desc[r][c] in "HG"
            ref.initial[s] = desc[r][c] == "S"
    return ref.absorb_terminals()


def cliff_walking() -> Reference:
    """Sutton & Barto's Example 6.6 as Gymnasium's CliffWalking-v1: 4 x 12, 0 up / 1 right / 2 down /
    3 left, -1 per step, -100 and back to the start for stepping into the cliff; the goal ends it."""
    ref = Reference(48, 4, 200)
    moves = ((-1, 0), (0, 1), (1, 0), (0, -1))
    start, goal = 36, 47
    for s in range(48):
        r, c = divmod(s, 12)
        for a, (dr, dc) in enumerate(moves):
            r2, c2 = min(max(r + dr, 0), 3), min(max(c + dc, 0), 11)
            if r2 == 3 and 1 <= c2 <= 10:
                ref.add(s, a, start, 1.0, -100.0)
            else:
                ref.add(s, a, r2 * 12 + c2, 1.0, -1.0)
    ref.terminal[goal] = True
    ref.initial[start] = 1.0
    return ref.absorb_terminals()


def taxi() -> Reference:
    """Dietterich's Taxi as Gymnasium's Taxi-v4 (dry): 5 x 5 with walls, 0 south 1 north 2 east 3 west
    4 pickup 5 dropoff; -1 per step, -10 for an illegal pickup/dropoff, +20 for the dropoff at the
    destination, which ends the episode; starts uniform over the passenger waiting off its destination."""
    locs = [(0, 0), (0, 4), (4, 0), (4, 3)]
    # walls east of a cell: between (row, col) and (row, col + 1)
    walls_east = {(0, 1), (1, 1), (3, 0), (4, 0), (3, 2), (4, 2)}
    ref = Reference(500, 6, 200)

    def encode(row: int, col: int, passenger: int, dest: int) -> int:
        return ((row * 5 + col) * 5 + passenger) * 4 + dest

    for row in range(5):
        for col in range(5):
            for passenger in range(5):  # 4: in the taxi
                for dest in range(4):
                    s = encode(row, col, passenger, dest)
                    if passenger < 4 and passenger != dest:
                        ref.initial[s] = 1.0
                    for a in range(6):
                        r2, c2, p2, reward = row, col, passenger, -1.0
                        if a == 0:
                            r2 = min(row + 1, 4)
                        elif a == 1:
                            r2 = max(row - 1, 0)
                        elif a == 2 and (row, col) not in walls_east:
                            c2 = min(col + 1, 4)
                        elif a == 3 and (row, col - 1) not in walls_east:
                            c2 = max(col - 1, 0)
                        elif a == 4:
                            if passenger < 4 and (row, col) == locs[passenger]:
                                p2 = 4
                            else:
                                reward = -10.0
                        elif a == 5:
                            if passenger == 4 and (row, col) == locs[dest]:
                                p2, reward = dest, 20.0
                                ref.terminal[encode(row, col, dest, dest)] = True
                            elif passenger == 4 and (row, col) in locs:
                                p2 = locs.index((row, col))
                            else:
                                reward = -10.0
                        ref.add(s, a, encode(r2, c2, p2, dest), 1.0, reward)
    ref.initial /= ref.initial.sum()
    return ref.absorb_terminals()


REFERENCES = {
    "icrl/Chain-v0": chain,
    "icrl/SixArms-v0": six_arms,
    "icrl/DeepSea-v0": deep_sea,
    "icrl/GridWorld-Open-v0": lambda: grid_world(OPEN_ROOM_5, 0.1, 50),
    "icrl/GridWorld-FourRooms-v0": lambda: grid_world(FOUR_ROOMS_11, 0.1, 100),
    "icrl/FrozenLake4x4-v0": lambda: frozen_lake(FROZEN_LAKE_4X4, 100),
    "icrl/FrozenLake8x8-v0": lambda: frozen_lake(FROZEN_LAKE_8X8, 200),
    "icrl/CliffWalking-v0": cliff_walking,
    "icrl/Taxi-v0": taxi,
}
TIME_LIMITS = {"icrl/DeepSea-v0": None}  # DeepSea always ends after N steps; the others are cut at H


def test_every_registered_tabular_env_has_a_reference():
    assert set(REFERENCES) | {"icrl/RiverSwim-v0"} == set(TABULAR_ENV_IDS)  # RiverSwim: tests/test_envs.py


@pytest.mark.parametrize("env_id", sorted(REFERENCES))
def test_model_matches_the_hand_written_reference(env_id):
    ref = REFERENCES[env_id]()
    env = gym.make(env_id)
    model = env.unwrapped
    P, R, terminal = model.transition_matrix()
    assert P.shape == ref.P.shape
    np.testing.assert_allclose(P, ref.P, atol=1e-12, err_msg=f"{env_id}: transition probabilities")
    np.testing.assert_allclose(R, ref.R, atol=1e-12, err_msg=f"{env_id}: expected rewards")
    np.testing.assert_array_equal(terminal, ref.terminal, err_msg=f"{env_id}: terminal states")
    np.testing.assert_allclose(model.initial_distribution(), ref.initial, atol=1e-12)
    assert model.horizon == ref.horizon
    assert env.spec.max_episode_steps == TIME_LIMITS.get(env_id, ref.horizon)


@pytest.mark.parametrize("env_id", sorted(REFERENCES))
def test_each_step_pays_the_reward_of_the_transition_it_made(env_id):
    """Rewards tied to the successor (Chain's back / forward, SixArms' rooms, the cliff, a goal) are paid
    per transition, not as the expectation ``R[s, a]``: sampled steps from the reachable states pay the
    reference's reward of the transition made."""
    ref = REFERENCES[env_id]()
    env = gym.make(env_id).unwrapped
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    s = env.s
    for _ in range(300):
        a = int(rng.integers(env.n_actions))
        s_next, reward, terminated, _, _ = env.step(a)
        assert ref.P[s, a, s_next] > 0, (env_id, s, a, s_next)
        assert reward == pytest.approx(ref.T[s, a, s_next]), (env_id, s, a, s_next)
        assert terminated == ref.terminal[s_next]
        s = env.reset()[0] if terminated else s_next
