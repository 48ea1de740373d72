"""Classic exploration benchmarks from the literature: RiverSwim, SixArms, Chain and DeepSea."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from icrl_agent.envs.tabular import TabularEnv, terminal_self_loops

LEFT, RIGHT = 0, 1


def _start_at(n_states: int, state: int = 0) -> np.ndarray:
    initial = np.zeros(n_states)
    initial[state] = 1.0
    return initial


class RiverSwim(TabularEnv):
    """
    ## Description
    RiverSwim (Strehl & Littman, 2008) as used in the posterior-sampling literature (Osband, Russo &
    Van Roy, 2013, "(More) efficient reinforcement learning via posterior sampling", Figure 2): a chain
    of ``n_states`` positions in a river. Swimming left, with the current, always succeeds and a small
    reward waits at the left bank; swimming right, against the current, mostly fails, and a reward 200
    times larger waits at the right end. Dithering exploration settles for the small reward.

    ## Action Space
    ``Discrete(2)``: 0 swim left, 1 swim right.

    ## Observation Space
    ``Discrete(n_states)``: the position, 0 the left bank.

    ## Starting State
    Always position 0 (Osband et al. 2013).

    ## Rewards
    5/1000 for swimming left at position 0, 1 for swimming right at position ``n_states - 1`` (paid
    whatever the outcome), 0 otherwise.

    ## Episode End
    No terminal state: truncated after ``horizon`` steps (20, as in Osband et al. 2013).

    Dynamics. Left: one position left (stay at 0). Right (``middle`` = P(left), P(stay), P(right)):
    in the middle 0.05 / 0.6 / 0.35; at position 0, 0.4 stay / 0.6 right; at the right end,
    0.4 left / 0.6 stay (Osband et al. 2013). ``middle=(0.1, 0.6, 0.3)`` gives Strehl & Littman's
    original middle probabilities.

    ## Arguments
    ```python
    gym.make("icrl/RiverSwim-v0")                   # 6 states, horizon 20
    gym.make("icrl/RiverSwim-v0", n_states=10, horizon=40, max_episode_steps=40)
    ```
    ``horizon`` is the planning horizon of ``optimal_value``; change it together with
    ``max_episode_steps`` (the time limit Gymnasium applies).

    ## Exact model
    ``transition_matrix()`` -> ``(P[S, 2, S], R[S, 2], terminal[S])`` with no terminal state.

    ## Optimal return
    ``optimal_value()``: 6 states, horizon 20: about 3.40 (swim right everywhere until the last step);
    the random policy earns about 0.044, the "stay left" trap 0.1.

    ## Version History
    * v0: initial version
    """

    def __init__(
        self,
        n_states: int = 6,
        horizon: int = 20,
        middle: Sequence[float] = (0.05, 0.6, 0.35),
        render_mode: str | None = None,
    ) -> None:
        """:param n_states: number of positions (>= 2)
        :param horizon: episode length
        :param middle: ``(P(left), P(stay), P(right))`` of swimming right in the middle, summing to 1
        :param render_mode: ``None`` or ``"ansi"``
        """
        if n_states < 2:
            raise ValueError(f"RiverSwim needs n_states >= 2, got {n_states}")
        P, R = np.zeros((n_states, 2, n_states)), np.zeros((n_states, 2))
        p_left, p_stay, p_right = middle
        for s in range(n_states):
            P[s, LEFT, max(s - 1, 0)] = 1.0
            P[s, RIGHT, [max(s - 1, 0), s, min(s + 1, n_states - 1)]] += (p_left, p_stay, p_right)
        P[0, RIGHT] = 0.0
        P[0, RIGHT, [0, 1]] = 0.4, 0.6
        P[n_states - 1, RIGHT] = 0.0
        P[n_states - 1, RIGHT, [n_states - 2, n_states - 1]] = 0.4, 0.6
        R[0, LEFT], R[n_states - 1, RIGHT] = 5.0 / 1000.0, 1.0
        super().__init__(P, R, np.zeros(n_states, bool), _start_at(n_states), horizon, render_mode=render_mode)

    def _render_text(self) -> str:
        return "".join("x" if i == self.s else "~" for i in range(self.n_states)) + "\n"


class SixArms(TabularEnv):
    """
    ## Description
    SixArms (Strehl & Littman, 2008, "An analysis of model-based interval estimation for Markov
    decision processes", Figure 3): from a central state 0, six actions each try to enter one of six
    rooms; the richer the room, the less likely the attempt succeeds. Inside a room, the right action
    keeps the agent there and pays the room's reward; any other action sends it back to state 0.

    ## Action Space
    ``Discrete(6)``.

    ## Observation Space
    ``Discrete(7)``: 0 the centre, ``i`` room ``i`` (1..6).

    ## Starting State
    State 0.

    ## Rewards
    From state 0, action ``i`` enters room ``i + 1`` with probability 1, 0.15, 0.10, 0.05, 0.03, 0.01
    (else stays), reward 0. Staying in room ``i`` pays 50, 133, 300, 800, 1660, 6000. Room 1 is kept by
    every action but 4; room ``i >= 2`` only by action ``i - 1``. Leaving a room pays 0.

    ## Episode End
    No terminal state: truncated after ``horizon`` steps (default 20, the effective horizon of the
    original discount 0.95).

    ## Arguments
    ```python
    gym.make("icrl/SixArms-v0")                     # horizon 20
    ```

    ## Exact model
    ``transition_matrix()`` -> ``(P[7, 6, 7], R[7, 6], terminal[7])``, no terminal state.

    ## Optimal return
    ``optimal_value()``: about 1.07e4 over 20 steps (keep trying for room 6 with action 5, then stay);
    random about 411.

    ## Version History
    * v0: initial version
    """

    ENTER_PROBABILITY = (1.0, 0.15, 0.10, 0.05, 0.03, 0.01)
    ROOM_REWARD = (50.0, 133.0, 300.0, 800.0, 1660.0, 6000.0)

    def __init__(self, horizon: int = 20, render_mode: str | None = None) -> None:
        """:param horizon: episode length
        :param render_mode: ``None`` or ``"ansi"``
        """
        P, reward_table = np.zeros((7, 6, 7)), np.zeros((7, 6, 7))
        for a, p in enumerate(self.ENTER_PROBABILITY):
            P[0, a, a + 1] += p
            P[0, a, 0] += 1.0 - p
        for room in range(1, 7):
            stay = [a for a in range(6) if a != 4] if room == 1 else [room - 1]
            P[room, :, 0] = 1.0
            P[room, stay, 0] = 0.0
            P[room, stay, room] = 1.0
            reward_table[room, stay, room] = self.ROOM_REWARD[room - 1]
        R = (P * reward_table).sum(axis=-1)
        super().__init__(P, R, np.zeros(7, bool), _start_at(7), horizon, reward_table, render_mode)


class Chain(TabularEnv):
    """
    ## Description
    The Chain of Dearden, Friedman & Russell (1998, "Bayesian Q-learning", Figure 1), as Gym's
    ``NChain``: ``n_states`` states in a line. Action "forward" moves one state along the chain and pays
    nothing until the far end, where it stays and pays 10; action "back" returns to state 0 and pays 2.
    With probability ``slip`` the *other* action is carried out. Greedy learners take the 2.

    ## Action Space
    ``Discrete(2)``: 0 forward, 1 back.

    ## Observation Space
    ``Discrete(n_states)``: the position in the chain.

    ## Starting State
    State 0.

    ## Rewards
    The executed action decides: "back" pays 2 (``small``), "forward" at the last state pays 10
    (``large``), anything else 0. Each reward is tied to the successor reached, so the model keeps the
    reward per transition.

    ## Episode End
    No terminal state: truncated after ``horizon`` steps (default 50).

    ## Arguments
    ```python
    gym.make("icrl/Chain-v0")                       # 5 states, slip 0.2, horizon 50
    gym.make("icrl/Chain-v0", slip=0.0)
    ```

    ## Exact model
    ``transition_matrix()`` -> ``(P[S, 2, S], R[S, 2], terminal[S])``, no terminal state.

    ## Optimal return
    ``optimal_value()``: about 172.9 over 50 steps (forward, "back" only in the last steps); always
    "back" earns about 80, the random policy about 64.

    ## Version History
    * v0: initial version
    """

    def __init__(
        self,
        n_states: int = 5,
        slip: float = 0.2,
        small: float = 2.0,
        large: float = 10.0,
        horizon: int = 50,
        render_mode: str | None = None,
    ) -> None:
        """:param n_states: chain length (>= 2)
        :param slip: probability that the other action is carried out, in ``[0, 1]``
        :param small: reward of "back"
        :param large: reward of "forward" at the far end
        :param horizon: episode length
        :param render_mode: ``None`` or ``"ansi"``
        """
        if n_states < 2 or not 0.0 <= slip <= 1.0:
            raise ValueError(f"Chain needs n_states >= 2 and slip in [0, 1], got {n_states}, {slip}")
        P, reward_table = np.zeros((n_states, 2, n_states)), np.zeros((n_states, 2, n_states))
        for s in range(n_states):
            forward = min(s + 1, n_states - 1)
            for a, p_forward in ((0, 1.0 - slip), (1, slip)):
                P[s, a, forward] += p_forward
                P[s, a, 0] += 1.0 - p_forward
                reward_table[s, a, forward] = large if s == n_states - 1 else 0.0
                reward_table[s, a, 0] = small
        R = (P * reward_table).sum(axis=-1)
        super().__init__(P, R, np.zeros(n_states, bool), _start_at(n_states), horizon, reward_table, render_mode)


class DeepSea(TabularEnv):
    """
    ## Description
    DeepSea from bsuite (Osband et al., 2020, "Behaviour Suite for Reinforcement Learning"; deterministic
    version): an ``N x N`` grid, the agent starts at the top-left and descends one row per step, moving
    one column left or right. Going right costs ``0.01 / N``; only going right at every step reaches
    the bottom-right cell, where going right once more pays 1. Which action means "right" is drawn per
    cell from ``mapping_seed``, as bsuite does (``np.random.RandomState(mapping_seed).binomial(1, 0.5,
    [N, N])``; action ``a`` is "right" at ``(row, col)`` when ``a == mapping[row, col]``), so the same
    seed gives bsuite's mapping.

    ## Action Space
    ``Discrete(2)``.

    ## Observation Space
    ``Discrete(N * N + 1)``: ``row * N + col`` for a cell (cells right of the diagonal are unreachable),
    and ``N * N`` for the end state below the grid (bsuite's all-zero observation).

    ## Starting State
    Cell ``(0, 0)``.

    ## Rewards
    ``-0.01 / N`` for "right", plus 1 for "right" at the bottom-right cell ``(N - 1, N - 1)``.

    ## Episode End
    Terminated after exactly ``N`` steps, when the agent leaves the bottom row (the end state is
    terminal). Registered without a time limit, so ``N`` can change: ``horizon = N``.

    ## Arguments
    ```python
    gym.make("icrl/DeepSea-v0")                     # N = 10, mapping_seed 0
    gym.make("icrl/DeepSea-v0", size=20, mapping_seed=3)
    gym.make("icrl/DeepSea-v0", randomize_actions=False)   # action 1 is always "right"
    ```

    ## Exact model
    ``transition_matrix()`` -> ``(P[N*N+1, 2, N*N+1], R, terminal)``: deterministic ``P``, one terminal
    state.

    ## Optimal return
    ``optimal_value()`` = 0.99 for every N (N moves right, then the treasure); the random policy earns
    ``2^-N - 0.005`` in expectation.

    ## Version History
    * v0: initial version
    """

    def __init__(
        self,
        size: int = 10,
        mapping_seed: int | None = 0,
        randomize_actions: bool = True,
        move_cost: float = 0.01,
        render_mode: str | None = None,
    ) -> None:
        """:param size: grid side ``N`` (>= 1), also the episode length
        :param mapping_seed: seed of the per-cell action mapping (bsuite's ``mapping_seed``)
        :param randomize_actions: False makes action 1 "right" everywhere
        :param move_cost: unscaled cost of "right" (paid as ``move_cost / N``)
        :param render_mode: ``None`` or ``"ansi"``
        """
        if size < 1:
            raise ValueError(f"DeepSea needs size >= 1, got {size}")
        self.size = size
        if randomize_actions:
            self.action_mapping = np.random.RandomState(mapping_seed).binomial(1, 0.5, [size, size])
        else:
            self.action_mapping = np.ones((size, size), dtype=int)
        end = size * size
        P, R = np.zeros((end + 1, 2, end + 1)), np.zeros((end + 1, 2))
        for row in range(size):
            for col in range(size):
                for a in (0, 1):
                    right = a == self.action_mapping[row, col]
                    new_col = min(col + 1, size - 1) if right else max(col - 1, 0)
                    P[row * size + col, a, end if row == size - 1 else (row + 1) * size + new_col] = 1.0
                    R[row * size + col, a] = (
                        float(right and col == size - 1) - move_cost / size * right
                    )
        terminal = np.arange(end + 1) == end
        terminal_self_loops(P, terminal, R)
        super().__init__(P, R, terminal, _start_at(end + 1), size, render_mode=render_mode)

    def _render_text(self) -> str:
        grid = [["." for _ in range(self.size)] for _ in range(self.size)]
        if self.s is not None and self.s < self.size * self.size:
            grid[self.s // self.size][self.s % self.size] = "x"
        grid[-1][-1] = "x" if self.s == self.size * self.size - 1 else "$"
        return "\n".join("".join(row) for row in grid) + "\n"
