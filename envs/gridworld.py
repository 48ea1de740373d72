"""Grid worlds drawn from a text map: an open room and Sutton, Precup & Singh's four rooms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from icrl_agent.envs.tabular import TabularEnv, terminal_self_loops

# FrozenLake's action order: left, down, right, up (row, col deltas)
MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))


def open_room_map(size: int) -> list[str]:
    """A ``size x size`` room without walls, start top-left, goal bottom-right."""
    if size < 2:
        raise ValueError(f"an open room needs size >= 2, got {size}")
    rows = ["." * size for _ in range(size)]
    rows[0] = "S" + rows[0][1:]
    rows[-1] = rows[-1][:-1] + "G"
    return rows


def four_rooms_map(size: int) -> list[str]:
    """A ``size x size`` area split in four rooms by a wall cross with one doorway per wall segment."""
    if size < 5:
        raise ValueError(f"four rooms need size >= 5, got {size}")
    mid = size // 2
    grid = [["." for _ in range(size)] for _ in range(size)]
    for i in range(size):
        grid[mid][i] = grid[i][mid] = "#"
    for door in (mid // 2, mid + 1 + (size - mid - 1) // 2):
        grid[mid][door] = grid[door][mid] = "."
    grid[0][0], grid[-1][-1] = "S", "G"
    return ["".join(row) for row in grid]


class GridWorld(TabularEnv):
    """
    ## Description
    A grid world drawn from a text map: ``S`` start, ``G`` goal, ``.`` floor, ``#`` wall. The agent
    moves between free cells; with probability ``slip`` the move goes to one of the two perpendicular
    directions instead (``slip / 2`` each). Moves into a wall or off the map leave it in place. The
    registered layouts are an open room (``icrl/GridWorld-Open-v0``) and four rooms after Sutton,
    Precup & Singh (1999) (``icrl/GridWorld-FourRooms-v0``, a symmetric ``size x size`` version with one
    doorway per wall).

    ## Action Space
    ``Discrete(4)``: 0 left, 1 down, 2 right, 3 up (FrozenLake's order).

    ## Observation Space
    ``Discrete(S)``: the free cells (walls excluded) numbered in row-major order.

    ## Starting State
    The ``S`` cell (top-left in the registered layouts).

    ## Rewards
    1 on entering the goal, ``-step_cost`` on every other step (default 0).

    ## Episode End
    Terminated on entering the goal (a terminal state); truncated after ``horizon`` steps.

    ## Arguments
    ```python
    gym.make("icrl/GridWorld-Open-v0")              # 5x5, slip 0.1, horizon 50
    gym.make("icrl/GridWorld-FourRooms-v0")         # 11x11 (104 free cells), slip 0.1, horizon 100
    gym.make("icrl/GridWorld-Open-v0", size=8, slip=0.0, step_cost=0.01, horizon=80, max_episode_steps=80)
    GridWorld(["S..#", "..#G", "...."], slip=0.2, horizon=30)
    ```
    ``horizon`` is the planning horizon of ``optimal_value``; change it together with
    ``max_episode_steps`` (the time limit Gymnasium applies).

    ## Exact model
    ``transition_matrix()`` -> ``(P[S, 4, S], R[S, 4], terminal[S])``, the goal terminal.

    ## Optimal return
    ``optimal_value()``: the best probability of reaching the goal within the horizon, minus step
    costs; 1.0 (to 4 decimals) for the registered layouts (random: about 0.32 open, 0.007 four rooms).

    ## Version History
    * v0: initial version
    """

    def __init__(
        self,
        desc: Sequence[str],
        slip: float = 0.1,
        step_cost: float = 0.0,
        horizon: int = 50,
        render_mode: str | None = None,
    ) -> None:
        """:param desc: the map, one string per row, with exactly one ``S`` and at least one ``G``
        :param slip: probability of moving perpendicular to the intended direction, in ``[0, 1]``
        :param step_cost: cost of every step that does not enter a goal
        :param horizon: episode length
        :param render_mode: ``None`` or ``"ansi"``
        """
        self.desc = self._check_map(desc)
        if not 0.0 <= slip <= 1.0:
            raise ValueError(f"slip must be in [0, 1], got {slip}")
        cells = [(r, c) for r, row in enumerate(self.desc) for c, ch in enumerate(row) if ch != "#"]
        self.cells = cells
        index = {cell: i for i, cell in enumerate(cells)}
        n = len(cells)
        P, reward_table = np.zeros((n, 4, n)), np.full((n, 4, n), -float(step_cost))
        for i, (r, c) in enumerate(cells):
            for a in range(4):
                for move, p in ((a, 1.0 - slip), ((a + 1) % 4, slip / 2), ((a + 3) % 4, slip / 2)):
                    dr, dc = MOVES[move]
                    P[i, a, index.get((r + dr, c + dc), i)] += p
        terminal = np.array([self.desc[r][c] == "G" for r, c in cells])
        reward_table[:, :, terminal] = 1.0
        terminal_self_loops(P, terminal, reward_table)
        R = (P * reward_table).sum(axis=-1)
        initial = np.array([self.desc[r][c] == "S" for r, c in cells], dtype=float)
        super().__init__(P, R, terminal, initial, horizon, reward_table, render_mode)

    @staticmethod
    def _check_map(desc: Sequence[str]) -> list[str]:
        rows = [str(row) for row in desc]
        text = "".join(rows)
        if not rows or len({len(row) for row in rows}) != 1 or set(text) - set("SG.#"):
            raise ValueError("desc must be equal-length rows of 'S', 'G', '.', '#', e.g. ['S..', '.#.', '..G']")
        if text.count("S") != 1 or "G" not in text:
            raise ValueError("desc needs exactly one start 'S' and at least one goal 'G'")
        return rows

    def _render_text(self) -> str:
        grid = [list(row) for row in self.desc]
        if self.s is not None:
            r, c = self.cells[self.s]
            grid[r][c] = "x"
        return "\n".join("".join(row) for row in grid) + "\n"


class OpenRoom(GridWorld):
    __doc__ = GridWorld.__doc__

    def __init__(
        self,
        size: int = 5,
        slip: float = 0.1,
        step_cost: float = 0.0,
        horizon: int = 50,
        render_mode: str | None = None,
    ) -> None:
        """:param size: side of the room (>= 2); start top-left, goal bottom-right
        :param slip: probability of moving perpendicular to the intended direction
        :param step_cost: cost of every step that does not enter the goal
        :param horizon: episode length
        :param render_mode: ``None`` or ``"ansi"``
        """
        super().__init__(open_room_map(size), slip, step_cost, horizon, render_mode)


class FourRooms(GridWorld):
    __doc__ = GridWorld.__doc__

    def __init__(
        self,
        size: int = 11,
        slip: float = 0.1,
        step_cost: float = 0.0,
        horizon: int = 100,
        render_mode: str | None = None,
    ) -> None:
        """:param size: side of the area inside the outer wall (>= 5); start top-left, goal bottom-right
        :param slip: probability of moving perpendicular to the intended direction
        :param step_cost: cost of every step that does not enter the goal
        :param horizon: episode length
        :param render_mode: ``None`` or ``"ansi"``
        """
        super().__init__(four_rooms_map(size), slip, step_cost, horizon, render_mode)
