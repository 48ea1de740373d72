"""Bound torch's intra-op threads while an agent plans on its own small tensors.

A plan is a few hundred small torch ops (tensors of tens to hundreds of states). For those, torch's
default intra-op parallelism (one thread per core) only adds synchronization, and on a machine where
anything else runs the threads wait for each other: on 2 cores beside one busy process, gymnasium's
FrozenLake 8x8 (S=64) averaged 1.8-4.3 ms per act+observe with torch's default threads and
0.75-0.83 ms with one. :class:`planning_threads` sets the intra-op thread count to
:data:`PLANNING_THREADS` for the duration of an ``act`` / ``policy`` call (where every plan is made)
and restores the caller's setting after, so the caller's own torch work (an SB3 model, a training
loop) keeps whatever it asked for. A set/restore pair costs well under a microsecond (measured), so it
is done around every call rather than once for the process.
"""

from __future__ import annotations

import sys
from typing import Any

PLANNING_THREADS: int | None = 1
"""Intra-op torch threads the agents plan with; ``None`` leaves torch's setting alone."""


class planning_threads:
    """Context manager: at most :data:`PLANNING_THREADS` torch intra-op threads inside, the caller's count after.

    ``with planning_threads(): ...``; nests, and does nothing when the caller already uses fewer threads.
    """

    __slots__ = ("_before",)

    def __enter__(self) -> None:
        # torch not imported yet: nothing can plan with it before this block imports it (the baselines'
        # first plan does), and importing it here would make every light import pay for torch
        torch = sys.modules.get("torch")
        bound = PLANNING_THREADS
        self._before = None
        if torch is None or bound is None:
            return
        before = torch.get_num_threads()
        if before > bound:
            self._before = before
            torch.set_num_threads(bound)

    def __exit__(self, *exc: Any) -> None:
        if self._before is not None:
            sys.modules["torch"].set_num_threads(self._before)
