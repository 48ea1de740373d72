"""tools/two_goals.py: the corridor with a small goal next to the start and a large one far away."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from conftest import load_script

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "two_goals.py"
tool = load_script(TOOL)


def test_the_corridor_pays_the_small_goal_next_to_the_start_and_the_large_one_at_the_far_end():
    env = tool.TwoGoals(length=4, small=0.1, cost=0.01)
    P, R, terminal = env.transition_matrix()
    assert terminal.tolist() == [True, False, False, False, True]
    assert env.reset(seed=0)[0] == 1
    assert R[1, 0] == pytest.approx(0.1) and R[3, 1] == pytest.approx(1.0) and R[2, 1] == pytest.approx(-0.01)
    assert np.allclose(P.sum(-1), 1.0) and P[2, 1, 3] == 1.0 and P[2, 0, 1] == 1.0
    assert env.horizon == 12
    assert env.optimal_value() == pytest.approx(1.0 - 2 * 0.01)  # two paid moves, then the goal
    with pytest.raises(ValueError, match="length must be >= 2"):
        tool.TwoGoals(length=1)


def test_each_setting_gets_a_horizon_so_the_bench_sets_its_time_limit():
    assert tool.with_horizon("length=10:small=0.1") == "length=10:small=0.1:horizon=30"
    assert tool.with_horizon("length=10:horizon=12") == "length=10:horizon=12"


def test_the_tool_runs_the_online_benchmark_on_its_env(tmp_path, capsys):
    tool.main(["--envs", "length=3:small=0.1:cost=0", "--agents", "optvi", "--seeds", "1", "--episodes", "3",
               "--workers", "1", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "online" / "results.json").read_text())
    assert [len(run["returns"]) for run in data["runs"]] == [3]
    assert data["command"].startswith("python tools/two_goals.py --envs length=3")
    assert "probe/TwoGoals:length=3:small=0.1:cost=0:horizon=9" in capsys.readouterr().out
