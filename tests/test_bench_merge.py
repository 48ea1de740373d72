"""``python -m icrl_agent.bench merge``: one online report from agents of several committed runs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from icrl_agent.bench.__main__ import main
from icrl_agent.bench.results import OnlineResult

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
NEW_AGENT, BASELINES = RESULTS / "icrl_v2_7", RESULTS / "icrl_v2_2"
CLASSICAL = ["qlearning", "ucbvi", "optvi", "psrl"]


def _summary(folder: Path) -> dict[tuple[str, str], dict]:
    data = json.loads((folder / "online" / "results.json").read_text())
    return {(row["env"], row["agent"]): row for row in data["summary"]}


def test_merge_reports_each_agent_as_its_own_run_did_and_ratios_against_the_other_runs_baselines(tmp_path, capsys):
    """Every merged row is the source's row (mean, CI, episodes to 0.9), and the new agent's ratio on each env is its
    mean over the best classical mean of the baselines' run; the report's median is the median of those."""
    out = tmp_path / "merged"
    argv = ["merge", "--take", str(NEW_AGENT), "icrl", "--take", str(BASELINES), ",".join(CLASSICAL), "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    merged = OnlineResult.load(out / "online" / "results.json")
    assert list(merged.agents) == ["icrl", *CLASSICAL]
    new, old = _summary(NEW_AGENT), _summary(BASELINES)
    ratios = []
    for row in merged.rows:
        source = new if row.agent == "icrl" else old
        expected = source[(row.env, row.agent)]
        assert row.mean == pytest.approx(expected["mean"], abs=1e-12)
        assert (row.ci_low, row.ci_high) == pytest.approx((expected["ci_low"], expected["ci_high"]), abs=1e-12)
        assert row.seeds_reaching == expected["seeds_reaching_0.9"]
        if row.agent == "icrl":
            best = max(old[(row.env, name)]["mean"] for name in CLASSICAL)
            assert row.ratio_to_best_classical == pytest.approx(expected["mean"] / best)
            ratios.append(row.ratio_to_best_classical)
    assert len(ratios) == len(merged.envs) == 13
    median_line = next(line for line in printed.splitlines() if line.startswith("| **median** |"))
    assert median_line.split("|")[2].strip() == f"{np.median(ratios):.2f}"
    assert "--take" in merged.command and "--agents icrl,qlearning" in merged.command  # names its sources
    assert (out / "online.md").read_text() == printed.rstrip("\n") + "\n"


def _copy_with(tmp_path: Path, edit) -> Path:
    """A copy of the new agent's run with its results.json edited by ``edit(data)``."""
    folder = tmp_path / "edited"
    shutil.copytree(NEW_AGENT / "online", folder / "online", ignore=shutil.ignore_patterns("*.png"))
    path = folder / "online" / "results.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return folder


def _other_budget(data: dict) -> None:
    data["envs"]["icrl/Chain-v0"]["episodes"] = 50


def _other_reference(data: dict) -> None:
    data["envs"]["icrl/Chain-v0"]["optimal"] *= 1.01


def _one_seed_less(data: dict) -> None:
    data["runs"] = [r for r in data["runs"] if not (r["env"] == "icrl/Taxi-v0" and r["seed"] == 9)]


def _env_left_out(data: dict) -> None:
    del data["envs"]["icrl/Taxi-v0"]


@pytest.mark.parametrize(("edit", "message"), [
    (_other_budget, "Chain: 50 episodes in"),
    (_other_reference, "hold different reference values"),
    (_one_seed_less, "ran other seeds than the first agent taken"),
    (_env_left_out, "ran other envs than"),
])
def test_merge_refuses_runs_that_are_not_comparable_and_writes_nothing(edit, message, tmp_path, capsys):
    edited, out = _copy_with(tmp_path, edit), tmp_path / "merged"
    argv = ["merge", "--take", str(BASELINES), "optvi", "--take", str(edited), "icrl", "--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(("takes", "message"), [
    ([(NEW_AGENT, "icrl"), (BASELINES, "icrl,optvi")], "agent 'icrl' is taken twice"),
    ([(NEW_AGENT, "optvi")], "has no agent 'optvi'; it holds: icrl"),
    ([(RESULTS / "no_such_folder", "icrl")], "no online results at"),
])
def test_merge_refuses_agents_it_cannot_take_naming_the_fix(takes, message, tmp_path, capsys):
    argv = ["merge", *[w for folder, agents in takes for w in ("--take", str(folder), agents)],
            "--out", str(tmp_path / "merged")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "merged").exists()
