"""Reference outputs of the weights in ``icrl_agent/weights/`` on a few fixed statistics.

Run from the repository root:

    python tests/reference/make_reference_outputs.py [NAME]     # NAME: icrl-v1, icrl-v2, ...; default: the shipped one

It rebuilds ``tests/reference/<NAME>_outputs.json``: for each case below, that model's
``forward_sparse(stats.sparse(), horizon, optimism=...)`` -> ``q``, ``temperature`` and ``reward_scale``,
with and without optimism. ``tests/test_reference_outputs.py`` recomputes them and compares to tolerance,
so a refactor of the network or its planning layer that changes what the shipped weights compute fails.
Regenerate only when a change of outputs is intended (new weights, a deliberate model change), and say
so in the commit.

The statistics are built by feeding fixed transitions through :class:`icrl_agent.stats.SufficientStats`
(no RNG), so they are exact.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from gymnasium import spaces

from icrl_agent.agent import SHIPPED_WEIGHTS, shipped_weights_path
from icrl_agent.checkpoint import checkpoint_sha256, load_checkpoint
from icrl_agent.stats import SufficientStats

OUTPUT = Path(__file__).with_name(f"{SHIPPED_WEIGHTS}_outputs.json")  # the shipped weights' reference


def weights_path(name: str) -> Path:
    """``icrl_agent/weights/<name>.safetensors`` (every weights file the package ships)."""
    return shipped_weights_path().with_name(f"{name}.safetensors")


def output_path(name: str) -> Path:
    """Where the reference outputs of weights ``name`` live."""
    return Path(__file__).with_name(f"{name}_outputs.json")
COMMAND = "python tests/reference/make_reference_outputs.py"
SIGNIFICANT_DIGITS = 9


def _episode(stats: SufficientStats, steps: list[tuple[int, int, float, int]], end: str) -> None:
    """Feed one episode of ``(s, a, r, s')`` steps; its last step ends it as ``end`` says."""
    for i, (s, a, r, s_next) in enumerate(steps):
        last = i == len(steps) - 1
        stats.update(s, a, r, s_next, last and end == "terminated", last and end == "truncated")


def chain_small_early_reward() -> tuple[SufficientStats, int]:
    """A 5-state chain: action 0 goes left (0.005 at the left end), action 1 right (1.0 at the right end).

    Episodes of 8 steps, truncated (a time limit). The right end is reached only once.
    """
    stats = SufficientStats(spaces.Discrete(5), spaces.Discrete(2))

    def step(s: int, a: int) -> tuple[int, int, float, int]:
        if a == 0:
            return s, a, 0.005 if s == 0 else 0.0, max(s - 1, 0)
        return s, a, 1.0 if s == 4 else 0.0, min(s + 1, 4)

    for actions in ([0] * 8, [1, 0, 0, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0], [0, 1, 0, 0, 0, 1, 1, 0]):
        s, steps = 0, []
        for a in actions:
            steps.append(step(s, a))
            s = steps[-1][3]
        _episode(stats, steps, "truncated")
    return stats, 8


def grid_with_terminal_transitions() -> tuple[SufficientStats, int]:
    """A 3x3 grid (state = 3 row + col; actions 0 up, 1 right, 2 down, 3 left): a goal at 8 terminates
    with +1, a pit at 6 with -1; one move slipped (1, down stayed at 1), so some rows are stochastic."""
    stats = SufficientStats(spaces.Discrete(9), spaces.Discrete(4))
    _episode(stats, [(0, 1, 0.0, 1), (1, 1, 0.0, 2), (2, 2, 0.0, 5), (5, 2, 1.0, 8)], "terminated")
    _episode(stats, [(0, 2, 0.0, 3), (3, 2, -1.0, 6)], "terminated")
    _episode(stats, [(0, 1, 0.0, 1), (1, 2, 0.0, 1), (1, 2, 0.0, 4), (4, 1, 0.0, 5), (5, 2, 1.0, 8)],
             "terminated")
    _episode(stats, [(0, 0, 0.0, 0), (0, 3, 0.0, 0), (0, 1, 0.0, 1), (1, 1, 0.0, 2), (2, 0, 0.0, 2),
                     (2, 2, 0.0, 5), (5, 2, 0.0, 5)], "truncated")  # the last move slipped too; time limit 7
    _episode(stats, [(0, 2, 0.0, 3), (3, 1, 0.0, 4), (4, 1, 0.0, 5), (5, 2, 1.0, 8)], "terminated")
    return stats, 7


def unvisited_pairs_and_a_new_state() -> tuple[SufficientStats, int]:
    """4 states x 3 actions: most pairs never tried, state 3 only ever seen as a successor (no action tried
    there), noisy rewards (non-zero variance) on one pair."""
    stats = SufficientStats(spaces.Discrete(4), spaces.Discrete(3))
    _episode(stats, [(0, 0, 0.2, 1), (1, 0, 0.0, 0), (0, 0, 0.6, 1), (1, 2, 0.0, 2)], "truncated")
    _episode(stats, [(0, 1, 0.0, 0), (0, 0, 0.1, 2), (2, 1, 0.0, 3)], "truncated")
    return stats, 4


def negative_step_costs() -> tuple[SufficientStats, int]:
    """A corridor of 4 states with a step cost of -1 everywhere; reaching state 3 terminates (cost -1 too)
    and action 1 from state 1 sometimes jumps straight to the exit."""
    stats = SufficientStats(spaces.Discrete(4), spaces.Discrete(2))
    _episode(stats, [(0, 1, -1.0, 1), (1, 1, -1.0, 2), (2, 1, -1.0, 3)], "terminated")
    _episode(stats, [(0, 0, -1.0, 0), (0, 1, -1.0, 1), (1, 1, -1.0, 3)], "terminated")
    _episode(stats, [(0, 1, -1.0, 1), (1, 0, -1.0, 0), (0, 1, -1.0, 1), (1, 1, -1.0, 2), (2, 0, -1.0, 1)],
             "truncated")
    return stats, 6


CASES: dict[str, Callable[[], tuple[SufficientStats, int]]] = {
    "chain_small_early_reward": chain_small_early_reward,
    "grid_with_terminal_transitions": grid_with_terminal_transitions,
    "unvisited_pairs_and_a_new_state": unvisited_pairs_and_a_new_state,
    "negative_step_costs": negative_step_costs,
}


def load_model(name: str = SHIPPED_WEIGHTS) -> torch.nn.Module:
    model, _ = load_checkpoint(weights_path(name))
    return model.eval()


load_shipped_model = load_model


def _rounded(x: torch.Tensor) -> object:
    return _round_list(x.detach().double().tolist())


def _round_list(value: object) -> object:
    if isinstance(value, list):
        return [_round_list(v) for v in value]
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def compute_outputs(model: torch.nn.Module) -> dict[str, dict]:
    """``{case: {"horizon", "optimism": {"true"/"false": {"q", "temperature", "reward_scale"}}}}``."""
    out = {}
    for name, build in CASES.items():
        stats, horizon = build()
        sparse = stats.sparse()
        case = {"horizon": horizon, "n_states": stats.n_states, "n_actions": stats.n_actions, "optimism": {}}
        for optimism in (True, False):
            with torch.no_grad():
                result = model.forward_sparse(sparse, horizon, optimism=optimism)
            case["optimism"][str(optimism).lower()] = {
                "q": _rounded(result.q[0]),
                "temperature": _rounded(result.temperature[0]),
                "reward_scale": _rounded(result.reward_scale[0]),
            }
        out[name] = case
    return out


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else SHIPPED_WEIGHTS
    model = load_model(name)
    data = {
        "weights": name,
        "sha256": checkpoint_sha256(weights_path(name)),
        "regenerate": COMMAND,
        "torch": torch.__version__,
        "cases": compute_outputs(model),
    }
    text = json.dumps(data, indent=1)
    # one line per innermost list of numbers (a row of Q), so the file stays short and diffs stay readable
    text = re.sub(r"\[\s*([-+0-9.eE,\s]+?)\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    output_path(name).write_text(text + "\n")
    print(f"wrote {output_path(name)} ({len(data['cases'])} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
