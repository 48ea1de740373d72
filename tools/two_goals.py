"""Online benchmark on a corridor with two goals: a small one next to the start, a large one far away.

The probe of a planning rule's risk: once a goal's reward was seen (paid once, as the episode ends), an agent
that expects no more than one such reward from the unknown stops looking for a larger one. The corridor has
``length + 1`` cells; the agent starts in cell 1; entering cell 0 pays ``small`` and ends the episode, entering
cell ``length`` pays 1 and ends it; every other move costs ``cost``. Actions: 0 left, 1 right, deterministic.
The env is registered here only (``probe/TwoGoals-v0``), so it is in no benchmark table the agents were made on.

    python tools/two_goals.py --envs length=10:small=0.1:cost=0,length=20:small=0.01:cost=0.001 \\
        --agents icrl,optvi --seeds 10 --out runs/bench/two_goals

Each setting's horizon is ``3 * length`` unless it names one (``...:horizon=50``).
"""

from __future__ import annotations

import numpy as np

from icrl_agent.bench.probe import ProbeTool
from icrl_agent.envs.tabular import TabularEnv

ENV_ID = "probe/TwoGoals-v0"


class TwoGoals(TabularEnv):
    """A corridor of ``length + 1`` cells: the small goal in cell 0, the start in cell 1, the goal in cell ``length``."""

    HORIZON_PER_SIZE = 3
    """The default horizon's steps per unit of size: episodes of three steps per cell of the corridor."""

    def __init__(
        self, length: int = 10, small: float = 0.1, cost: float = 0.0, horizon: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if length < 2:
            raise ValueError(f"length must be >= 2, got {length}")
        n = length + 1
        P = np.zeros((n, 2, n))
        R = np.zeros((n, 2))
        for s in range(n):
            for a, step in enumerate((-1, 1)):
                nxt = min(max(s + step, 0), length)
                P[s, a, nxt] = 1.0
                R[s, a] = small if nxt == 0 else 1.0 if nxt == length else -cost
        terminal = np.zeros(n, bool)
        terminal[[0, length]] = True
        for s in (0, length):  # terminal cells are never left
            P[s] = 0.0
            P[s, :, s] = 1.0
            R[s] = 0.0
        initial = np.zeros(n)
        initial[1] = 1.0
        super().__init__(P, R, terminal, initial, horizon or self.HORIZON_PER_SIZE * length, render_mode=render_mode)


TOOL = ProbeTool(ENV_ID, TwoGoals, size_key="length",
                 script="tools/two_goals.py", description=__doc__.split("\n\n")[0],
                 title="Two goals: a small one near, a large one far")
with_horizon, register, build_parser, main = TOOL.with_horizon, TOOL.register, TOOL.build_parser, TOOL.main


if __name__ == "__main__":
    main()
