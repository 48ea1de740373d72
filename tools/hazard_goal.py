"""Online benchmark on an open room whose goal pays on every step the agent stays, until a hazard ends the episode.

The probe of icrl-v2.8's goal floor (docs/pretraining.md, "One more goal worth at least the goal seen"): a goal
pair's reward total per ending, ``N r̂ / T``, reads every reward as paid at an ending. Here the goal pays 1 on every
visit and ends the episode with probability ``hazard`` only, so that estimate is about ``1 / hazard`` goals. The
room is ``size x size`` cells, deterministic moves (0 left, 1 down, 2 right, 3 up; a wall keeps the agent in place),
start top-left, goal bottom-right, ``cost`` per move elsewhere. Registered here only (``probe/HazardGoal-v0``).

    python tools/hazard_goal.py --envs hazard=0.1,hazard=0.02 --agents icrl,optvi --seeds 10 --out runs/bench/hazard

Each setting's horizon is ``7 * size`` unless it names one (``...:horizon=50``).
"""

from __future__ import annotations

import numpy as np

from icrl_agent.bench.probe import ProbeTool
from icrl_agent.envs.tabular import TabularEnv

ENV_ID = "probe/HazardGoal-v0"
MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))  # left, down, right, up as (row, column) steps


class HazardGoal(TabularEnv):
    """A ``size x size`` room; the goal cell pays 1 for every action and is left only by the hazard's end state."""

    HORIZON_PER_SIZE = 7
    """The default horizon's steps per unit of size: episodes of seven steps per row of the room."""

    def __init__(
        self, size: int = 7, hazard: float = 0.1, cost: float = 0.0, horizon: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        if not 0.0 < hazard <= 1.0:
            raise ValueError(f"hazard must be in (0, 1], got {hazard}")
        cells, goal = size * size, size * size - 1
        end = cells  # the hazard's terminal state
        P = np.zeros((cells + 1, 4, cells + 1))
        R = np.full((cells + 1, 4), -cost)
        for s in range(cells):
            row, col = divmod(s, size)
            for a, (dr, dc) in enumerate(MOVES):
                nxt = min(max(row + dr, 0), size - 1) * size + min(max(col + dc, 0), size - 1)
                P[s, a, nxt] = 1.0
        P[goal] = 0.0
        P[goal, :, goal], P[goal, :, end], R[goal] = 1.0 - hazard, hazard, 1.0
        P[end, :, end], R[end] = 1.0, 0.0
        terminal = np.zeros(cells + 1, bool)
        terminal[end] = True
        initial = np.zeros(cells + 1)
        initial[0] = 1.0
        super().__init__(P, R, terminal, initial, horizon or self.HORIZON_PER_SIZE * size, render_mode=render_mode)


TOOL = ProbeTool(ENV_ID, HazardGoal, size_key="size",
                 script="tools/hazard_goal.py", description=__doc__.split("\n\n")[0],
                 title="A goal that pays while the agent stays, until a hazard")
with_horizon, register, build_parser, main = TOOL.with_horizon, TOOL.register, TOOL.build_parser, TOOL.main


if __name__ == "__main__":
    main()
