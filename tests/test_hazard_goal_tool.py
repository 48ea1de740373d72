"""tools/hazard_goal.py: an open room whose goal pays on every step until a hazard ends the episode."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from conftest import load_script

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "hazard_goal.py"
tool = load_script(TOOL)


def test_the_goal_pays_every_step_and_only_the_hazard_ends_the_episode():
    env = tool.HazardGoal(size=3, hazard=0.25, cost=0.01)
    P, R, terminal = env.transition_matrix()
    assert terminal.tolist() == [False] * 9 + [True]
    assert all(env.reset(seed=seed)[0] == 0 for seed in range(5))  # the start cell is fixed
    assert np.allclose(P.sum(-1), 1.0)
    assert P[0, 2, 1] == 1.0 and P[0, 1, 3] == 1.0 and P[0, 0, 0] == 1.0 and P[0, 3, 0] == 1.0
    assert (P[8, :, 8] == 0.75).all() and (P[8, :, 9] == 0.25).all() and (R[8] == 1.0).all()
    assert R[0, 2] == pytest.approx(-0.01) and env.horizon == 21
    with pytest.raises(ValueError, match="hazard must be in"):
        tool.HazardGoal(hazard=0.0)
    with pytest.raises(ValueError, match="size must be >= 2"):
        tool.HazardGoal(size=1)


def test_each_setting_gets_a_horizon_so_the_bench_sets_its_time_limit():
    assert tool.with_horizon("hazard=0.1") == "hazard=0.1:horizon=49"
    assert tool.with_horizon("size=4:hazard=0.1") == "size=4:hazard=0.1:horizon=28"
    assert tool.with_horizon("hazard=0.1:horizon=12") == "hazard=0.1:horizon=12"


def test_the_tool_runs_the_online_benchmark_on_its_env(tmp_path, capsys):
    tool.main(["--envs", "size=2:hazard=0.5", "--agents", "optvi", "--seeds", "1", "--episodes", "3",
               "--workers", "1", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "online" / "results.json").read_text())
    assert [len(run["returns"]) for run in data["runs"]] == [3]
    assert data["command"].startswith("python tools/hazard_goal.py --envs size=2:hazard=0.5")
    assert "probe/HazardGoal:size=2:hazard=0.5:horizon=14" in capsys.readouterr().out
