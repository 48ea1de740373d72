"""The benchmark harness: outputs, names, crash isolation, normalization, the SB3 baselines."""

import csv
import json
import math
import os
import re
import shlex
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import load_script

from icrl_agent.bench import report
from icrl_agent.bench.__main__ import build_parser, canonical_command, main
from icrl_agent.bench.agents import (
    AGENTS,
    AgentSpec,
    AgentUnavailable,
    get_agent,
    parse_agents,
    register_agent,
)
from icrl_agent.bench.common import EPISODE_CAP, env_reference, make_env, parse_envs, run_episodes
from icrl_agent.bench.offline import behaviour_policy, collect_dataset, run_offline
from icrl_agent.bench.offline import render_markdown as render_offline
from icrl_agent.bench.online import render_markdown as render_online
from icrl_agent.bench.online import run_online, summarize
from icrl_agent.bench.results import OfflineResult, OnlineResult, SpeedResult
from icrl_agent.bench.speed import GarnetEnv, run_speed

FROZEN = "FrozenLake4x4"
RIVER = "RiverSwim"


class CrashOnSeedOne:
    """A random agent that raises on its third step when built with seed 1."""

    def __init__(self, observation_space, action_space, seed=0, horizon=None, reward_max=None):
        self.action_space = action_space
        self.seed = seed
        self.steps = 0
        self.rng = np.random.default_rng(seed)

    def act(self, obs, deterministic=False):
        self.steps += 1
        if self.seed == 1 and self.steps == 3:
            raise RuntimeError("deliberate crash for the test")
        return int(self.action_space.start + self.rng.integers(self.action_space.n))

    def observe(self, obs, action, reward, next_obs, terminated, truncated):
        pass


@pytest.fixture
def crashy():
    register_agent(AgentSpec("crashy", f"{__name__}:CrashOnSeedOne", description="crashes with seed 1"))
    yield "crashy"
    AGENTS.pop("crashy", None)


def test_tiny_online_run_writes_json_csv_png_and_markdown(tmp_path):
    result = run_online(
        f"{FROZEN},{RIVER}", "random,optvi", seeds=2, episodes=12, workers=2, out=str(tmp_path)
    )
    folder = tmp_path / "online"
    assert not result.errors
    data = json.loads((folder / "results.json").read_text())
    assert len(data["runs"]) == 2 * 2 * 2
    assert {"mean", "ci_low", "episodes_to_0.9", "seeds_reaching_0.9", "ratio_to_best_classical"} <= set(data["summary"][0])
    loaded = OnlineResult.load(folder / "results.json").rows  # what is written reads back the same (NaN too)
    assert [repr(r) for r in loaded] == [repr(r) for r in result.rows]
    assert all(len(run["returns"]) == 12 for run in data["runs"])
    assert data["agents"]["optvi"]["hints"] is True
    with open(folder / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["agent"], r["seeds"]) for r in rows} == {("random", "2"), ("optvi", "2")}
    assert len(rows) == 4
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs == ["curves_FrozenLake4x4.png", "curves_RiverSwim.png", "mean_normalized_return.png"]
    markdown = (tmp_path / "online.md").read_text()
    assert markdown == result.markdown
    command = markdown.split("Reproduce with:")[1].strip().splitlines()[0]
    assert command.startswith("python -m icrl_agent.bench online ")
    assert "| FrozenLake4x4 |" in markdown and "| RiverSwim |" in markdown


def test_cli_prints_the_command_that_reproduces_the_table(tmp_path, capsys):
    argv = [
        "online",
        "--envs",
        FROZEN,
        "--agents",
        "random",
        "--seeds",
        "1",
        "--episodes",
        "3",
        "--workers",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    command = printed.split("Reproduce with:")[1].strip().splitlines()[0]
    words = command.split()[3:]  # after "python -m icrl_agent.bench"
    parser = build_parser()
    assert vars(parser.parse_args(words)) == vars(parser.parse_args(argv))
    assert canonical_command(parser, parser.parse_args(words)) == command
    assert "| FrozenLake4x4 |" in printed


def test_unknown_agent_and_env_names_list_the_valid_ones(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown agent 'nope'; valid agents: .*random.*optvi.*ppo"):
        parse_agents("random,nope")
    with pytest.raises(ValueError, match=r"unknown env 'Atlantis'; valid envs: all, .*RiverSwim"):
        parse_envs("RiverSwim,Atlantis")
    with pytest.raises(ValueError, match="write name:key=value"):
        get_agent("optvi:c")
    with pytest.raises(SystemExit) as exit_info:
        main(["online", "--agents", "nope", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "valid agents" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("argv, valid, suggestion", [
    (["online", "--agents", "random,optvl"], "valid agents: random, qlearning", "Did you mean 'optvi'?"),
    (["offline", "--agents", "vilbc"], "valid agents:", "Did you mean 'vilcb'?"),
    (["speed", "--agents", "qlearnin"], "valid agents:", "Did you mean 'qlearning'?"),
    (["online", "--envs", "RiverSwin"], "valid envs: all, icrl/RiverSwim-v0", "Did you mean 'RiverSwim'"),
    (["online", "--envs", "FrozenLake-v9"], "any registered Gymnasium id", "Did you mean 'FrozenLake-v1'"),
])
def test_a_bad_name_is_a_usage_error_naming_the_valid_ones_and_the_closest(argv, valid, suggestion, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert valid in err and suggestion in err and "Traceback" not in err


def test_help_shows_defaults_and_the_valid_names(capsys):
    for command, expected in (("online", ["(default: 10)", "(default: random,qlearning", "RiverSwim, SixArms",
                                          "optvi, psrl", "FrozenLake-v1"]),
                              ("speed", ["(default: 5000)", "(default: 16,64,500)", "1-thread"])):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert all(text in out for text in expected), (command, out)


def test_the_bench_never_writes_into_a_non_empty_folder_without_force(tmp_path, capsys):
    committed = tmp_path / "results"
    committed.mkdir()
    (committed / "online.md").write_text("committed table\n")
    argv = ["online", "--envs", FROZEN, "--agents", "random", "--seeds", "1", "--episodes", "2", "--workers", "1",
            "--out", str(committed)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "--force" in capsys.readouterr().err
    assert (committed / "online.md").read_text() == "committed table\n"
    assert sorted(os.listdir(committed)) == ["online.md"]
    with pytest.raises(ValueError, match="--force"):
        run_speed("random", sizes=[8], steps=2, out=str(committed))
    assert main([*argv, "--force"]) == 0
    assert (committed / "online.md").read_text().startswith("# Online benchmark")


def test_without_out_every_run_gets_a_new_folder_under_runs_bench(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run_online(FROZEN, "random", seeds=1, episodes=2, workers=1)
    second = run_online(FROZEN, "random", seeds=1, episodes=2, workers=1)
    assert first.folder != second.folder
    for result in (first, second):
        folder = Path(result.folder).parent
        assert folder.parent == Path("runs", "bench") and folder.name.startswith("online-")
        assert (folder / "online.md").exists()
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().splitlines()
    assert "runs/" in ignored


def test_progress_bar_only_on_a_terminal(tmp_path, capsys, monkeypatch):
    run_online(FROZEN, "random", seeds=1, episodes=2, workers=1, out=str(tmp_path / "a"))
    assert "online:" not in capsys.readouterr().err  # stderr is not a terminal under pytest
    run_online(FROZEN, "random", seeds=1, episodes=2, workers=1, out=str(tmp_path / "b"), progress=True)
    assert "online:" in capsys.readouterr().err
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    from icrl_agent.bench.common import show_progress

    assert show_progress(None) and not show_progress(False)


def test_a_finite_gymnasium_env_without_a_model_runs_and_reports_raw_returns(tmp_path):
    """Blackjack-v1 (a Tuple observation space, no transition table) runs online on raw returns; the offline
    benchmark, which scores the greedy policy exactly, refuses it by name."""
    env_id = "Blackjack-v1"
    ref = env_reference(env_id)
    assert not ref.normalized and ref.optimal is None
    assert gym.make(env_id).spec.max_episode_steps is None and ref.horizon == EPISODE_CAP  # the bench caps episodes
    result = run_online(env_id, "random,qlearning", seeds=1, episodes=3, workers=1, out=str(tmp_path))
    assert not result.errors
    assert all(not row.normalized for row in result.rows)
    assert f"| {env_id} (raw return) |" in result.markdown and "no exact model" in result.markdown
    data = json.loads((tmp_path / "online" / "results.json").read_text())
    assert data["envs"][env_id]["normalized"] is False
    random_returns = next(r["returns"] for r in data["runs"] if r["agent"] == "random")
    assert next(r for r in result.rows if r.agent == "random").mean == pytest.approx(np.mean(random_returns))
    assert not (tmp_path / "online" / "mean_normalized_return.png").exists()  # raw returns share no scale
    with pytest.raises(ValueError, match="exact model"):
        run_offline(env_id, "vi", seeds=1, sizes=[10], behaviours=["uniform"], workers=1, out=str(tmp_path / "off"))


@pytest.mark.parametrize(("env_id", "copy"), [("FrozenLake-v1", "icrl/FrozenLake4x4-v0"),
                                              ("FrozenLake8x8-v1", "icrl/FrozenLake8x8-v0"), ("Taxi-v4", "icrl/Taxi-v0"),
                                              ("CliffWalking-v1", "icrl/CliffWalking-v0")])
def test_a_plain_toy_text_env_is_scored_from_its_transition_table_as_its_icrl_copy(env_id, copy):
    """``gymnasium.make("FrozenLake-v1")`` and friends, as users make them, get exact references read from
    Gymnasium's ``P`` table: the optimum and the random policy's value of their ``icrl/`` copy over the same
    horizon (CliffWalking-v1 has no time limit, so the bench's cap), and the classical agents' hints."""
    from icrl_agent import solvers
    from icrl_agent.bench.agents import model_hints
    from icrl_agent.bench.common import exact_model

    plain, registered = env_reference(env_id), env_reference(copy)
    assert plain.normalized and plain.n_states == registered.n_states and plain.reward_max == registered.reward_max
    assert plain.horizon == (gym.make(env_id).spec.max_episode_steps or EPISODE_CAP)  # what the bench runs
    copy_model = exact_model(make_env(copy))
    assert plain.optimal == pytest.approx(solvers.optimal_value(copy_model, horizon=plain.horizon))
    assert plain.random == pytest.approx(solvers.random_value(copy_model, horizon=plain.horizon))
    assert model_hints(make_env(env_id)) == {"horizon": plain.horizon, "reward_max": registered.reward_max}


def test_a_plain_toy_text_env_runs_normalized_online_and_offline(tmp_path):
    result = run_online("FrozenLake-v1", "random", seeds=1, episodes=5, workers=1, out=str(tmp_path / "on"))
    assert not result.errors and all(row.normalized for row in result.rows)
    offline = run_offline("FrozenLake-v1", "vi", seeds=1, sizes=[50], behaviours=["uniform"], workers=1,
                          out=str(tmp_path / "off"))
    assert not offline.errors and offline.rows


def test_an_env_with_a_model_is_normalized_beside_one_without(tmp_path):
    result = run_online(f"{FROZEN},Blackjack-v1", "random", seeds=2, episodes=5, workers=1, out=str(tmp_path))
    rows = {r.env: r for r in result.rows}
    assert rows["icrl/FrozenLake4x4-v0"].normalized and not rows["Blackjack-v1"].normalized
    assert "**mean over envs with an exact model**" in result.markdown


def test_a_box_env_is_refused_naming_the_space():
    with pytest.raises(ValueError, match="CartPole-v1 cannot be benchmarked"):
        env_reference("CartPole-v1")


@pytest.mark.parametrize("path", sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "benchmarks" / "results").rglob("results.json")))
def test_committed_results_are_read_back_by_the_report_code(path):
    data = json.loads(Path(path).read_text())
    if "threshold" in data:  # online / sweep
        result = OnlineResult.load(path)
        assert len(result.rows) == len(data["summary"]) and result.rows[0].to_json()["env"] == data["summary"][0]["env"]
        assert all(row.normalized == result.envs[row.env].normalized for row in result.rows)  # raw where no model
        markdown = render_online(result)
        assert "| env |" in markdown and result.command in markdown
        rows, _ = summarize(result.runs, result.envs, parse_agents([a for a in result.agents if a in AGENTS]
                                                                     or ["random"]))
        by_key = {(r.env, r.agent): r.mean for r in result.rows}
        assert all(by_key[(r.env, r.agent)] == pytest.approx(r.mean) for r in rows if (r.env, r.agent) in by_key)
    elif "torch_threads" in data:
        result = SpeedResult.load(path)
        assert result.rows and result.rows[0].median_us == data["summary"][0]["median_us"]
    else:
        result = OfflineResult.load(path)
        assert len(result.rows) == len(data["summary"])
        assert "| env | behaviour |" in render_offline(result)


def test_parameter_override_reaches_the_constructor():
    env = make_env(RIVER)
    spec = get_agent("optvi:c=0.03")
    assert spec.name == "optvi:c=0.03"
    assert spec.build(env, seed=0).c == 0.03
    assert get_agent("vi").build(env, seed=0).beta == 0.0


def test_classical_agents_get_the_hints_icrl_gets_none():
    env = make_env(RIVER)
    _, R, _ = env.unwrapped.transition_matrix()
    agent = get_agent("psrl").build(env, seed=0)
    assert agent.horizon == env.unwrapped.horizon
    assert agent.reward_max_hint == pytest.approx(np.abs(R).max())
    assert get_agent("icrl").hint_kwargs(env) == {}


def test_icrl_resolves_only_when_the_agent_class_exists():
    import icrl_agent

    spec = get_agent("icrl")
    if hasattr(icrl_agent, "Agent"):
        assert spec.resolve() is icrl_agent.Agent
    else:
        with pytest.raises(AgentUnavailable, match="icrl_agent:Agent"):
            spec.resolve()


def test_a_crashing_run_is_reported_with_its_seed_and_the_others_survive(tmp_path, crashy):
    result = run_online(FROZEN, f"random,{crashy}", seeds=2, episodes=15, workers=2, out=str(tmp_path))
    assert [(e["agent"], e["seed"]) for e in result.errors] == [(crashy, 1)]
    assert "deliberate crash" in result.errors[0]["error"]
    summary = {r.agent: r for r in result.rows}
    assert summary["random"].seeds == 2 and summary[crashy].seeds == 1
    assert f"- {crashy} on icrl/FrozenLake4x4-v0, seed 1: RuntimeError: deliberate crash" in result.markdown
    data = json.loads((tmp_path / "online" / "results.json").read_text())
    assert sum("returns" in run for run in data["runs"]) == 3


def test_normalization_is_zero_at_the_random_value_and_one_at_the_optimum():
    ref = env_reference(FROZEN)
    assert 0 <= ref.random < ref.optimal <= 1
    np.testing.assert_allclose(
        report.normalize([ref.random, ref.optimal], ref.optimal, ref.random), [0.0, 1.0]
    )
    with pytest.raises(ValueError, match="cannot normalize"):
        report.normalize([1.0], 0.5, 0.5)


def test_summary_of_optimal_and_random_returns():
    ref = env_reference(RIVER)
    refs = {ref.env_id: ref}
    runs = [
        {"env": ref.env_id, "agent": name, "seed": seed, "returns": [value] * 30}
        for name, value in (("optvi", ref.optimal), ("random", ref.random))
        for seed in range(3)
    ]
    rows, curves = summarize(runs, refs, parse_agents("optvi,random"))
    by_agent = {r.agent: r for r in rows}
    assert by_agent["optvi"].mean == pytest.approx(1.0)
    assert by_agent["optvi"].episodes_to_threshold == 10  # the first full 10-episode window
    assert by_agent["optvi"].ratio_to_best_classical == pytest.approx(1.0)
    assert by_agent["random"].mean == pytest.approx(0.0, abs=1e-12)
    assert by_agent["random"].episodes_to_threshold is None
    assert curves[ref.env_id]["optvi"].shape == (3, 30)


def test_episodes_to_reach_and_bootstrap():
    assert report.episodes_to_reach([0.0] * 5 + [1.0] * 20) == 14  # window 5..14 holds one 0: 0.9
    assert report.episodes_to_reach([1.0] * 9) is None
    low, high = report.bootstrap_ci([0.2, 0.4, 0.6])
    assert 0.2 <= low <= 0.4 <= high <= 0.6
    assert report.median_episodes([10, None, None]) is None
    assert report.median_episodes([10, 20, None]) == 20


def test_run_episodes_cuts_at_the_horizon():
    env = GarnetEnv(8, horizon=50)
    seen = []

    class Recorder:
        def act(self, obs):
            return 0

        def observe(self, obs, action, reward, next_obs, terminated, truncated):
            seen.append(truncated)

    returns = run_episodes(Recorder(), env, episodes=2, seed=0, horizon=7)
    assert len(returns) == 2 and len(seen) == 14 and seen.count(True) == 2 and seen[6] and seen[13]


def test_offline_datasets_have_the_asked_size_and_behaviour(tmp_path):
    env = make_env(FROZEN)
    data = collect_dataset(env, behaviour_policy(env, "eps0.1"), 200, seed=0)
    assert all(len(v) == 200 for v in data.values())
    assert data["terminations"][-1] or data["truncations"][-1]
    greedy = behaviour_policy(env, "eps0.0")
    assert set(np.unique(greedy)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="unknown behaviour"):
        behaviour_policy(env, "greedy")
    result = run_offline(
        FROZEN, "vi", seeds=1, sizes=[20000], behaviours=["uniform"], workers=1, out=str(tmp_path)
    )
    assert not result.errors
    (row,) = result.rows
    assert row.mean > 0.95  # plain VI on plenty of uniform data finds the optimal policy
    assert (tmp_path / "offline.md").exists() and (tmp_path / "offline" / "offline_uniform.png").exists()


def test_speed_reports_default_threads_and_one_thread_side_by_side(tmp_path):
    import torch

    before = torch.get_num_threads()
    result = run_speed("random,optvi", sizes=[16], steps=60, out=str(tmp_path))
    assert torch.get_num_threads() == before  # the caller's setting is restored
    assert result.torch_threads == before  # the default columns: what a user gets
    assert {(r.agent, r.n_states) for r in result.rows} == {("random", 16), ("optvi", 16)}
    assert all(r.steps == 60 and r.median_us > 0 and r.mean_us > 0 and r.threads == before for r in result.rows)
    assert all(r.median_us_1thread > 0 and r.mean_us_1thread > 0 for r in result.rows)
    markdown = (tmp_path / "speed.md").read_text()
    assert f"({before} threads), (1 thread)" in markdown
    saved = json.loads((tmp_path / "speed" / "results.json").read_text())
    assert {"median_us", "mean_us", "median_us_1thread", "mean_us_1thread"} <= set(saved["summary"][0])


def test_speed_measures_with_the_callers_threads_then_one(monkeypatch, tmp_path):
    import torch

    from icrl_agent.bench import speed

    seen = []
    real = speed._timings
    monkeypatch.setattr(speed, "_timings", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    speed.run_speed("random", sizes=[8], steps=5, out=str(tmp_path), threads=2)
    assert seen == [2, 1]


def test_sb3_ppo_and_dqn_run_through_the_harness(tmp_path):
    pytest.importorskip("stable_baselines3")
    result = run_online(FROZEN, "ppo,dqn", seeds=1, episodes=4, workers=1, out=str(tmp_path))
    assert not result.errors
    data = json.loads((tmp_path / "online" / "results.json").read_text())
    assert sorted(run["agent"] for run in data["runs"]) == ["dqn", "ppo"]
    assert all(len(run["returns"]) == 4 for run in data["runs"])
    assert data["agents"]["ppo"]["hints"] is False


def test_sb3_baseline_counts_training_episodes():
    pytest.importorskip("stable_baselines3")
    from icrl_agent.baselines import sb3_baseline

    env = gym.make("FrozenLake-v1")
    baseline = sb3_baseline("a2c", env, seed=0)
    first = baseline.learn(total_episodes=7)
    assert len(first) == 7 and set(first) <= {0.0, 1.0}
    assert len(baseline.learn(total_episodes=3)) == 3 and len(baseline.episode_returns) == 10
    assert env.action_space.contains(baseline.act(0))
    actions, _ = baseline.predict(np.array([0, 5]), deterministic=True)
    assert actions.shape == (2,)
    with pytest.raises(ValueError, match="choose one of PPO, DQN, A2C"):
        sb3_baseline("SAC", env)
    with pytest.raises(TypeError, match="total_episodes=5"):
        baseline.learn(5)


def test_bootstrap_ci_of_a_single_value_is_that_value():
    assert report.bootstrap_ci([0.3]) == (pytest.approx(0.3), pytest.approx(0.3))
    assert all(math.isnan(x) for x in report.bootstrap_ci([]))


def test_offline_agents_share_each_dataset_and_a_failing_one_spares_the_other(tmp_path, crashy):
    result = run_offline(
        FROZEN, f"vi,{crashy}", seeds=2, sizes=[200], behaviours=["uniform"], workers=2, out=str(tmp_path)
    )
    assert sorted((e["agent"], e["seed"]) for e in result.errors) == [(crashy, 0), (crashy, 1)]
    assert "has no attribute 'fit'" in result.errors[0]["error"]
    (row,) = result.rows
    assert row.agent == "vi" and row.seeds == 2
    assert f"- {crashy} on icrl/FrozenLake4x4-v0 (uniform, 200), seed 0" in result.markdown


def test_sweep_optvi_runs_one_agent_per_bonus_and_names_the_best(tmp_path, capsys):
    argv = ["sweep-optvi", "--envs", RIVER, "--c", "0.001,0.01", "--seeds", "1", "--episodes", "12"]
    assert main([*argv, "--workers", "1", "--out", str(tmp_path)]) == 0
    markdown = (tmp_path / "sweep_optvi.md").read_text()
    assert "| env | optvi:c=0.001 | optvi:c=0.01 |" in markdown
    assert "**Best over envs: `optvi:c=0.0" in markdown
    data = json.loads((tmp_path / "sweep_optvi" / "results.json").read_text())
    assert data["agents"]["optvi:c=0.01"]["params"] == {"c": 0.01}


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PROBE_TOOLS = ("two_goals.py", "hazard_goal.py")
"""Tools that run the online benchmark on an env they register themselves."""


def _cited_command(table: Path) -> list[str]:
    """The words of the command a committed table starts with (its first command line)."""
    line = next(line for line in table.read_text().splitlines() if "python -m icrl_agent." in line
                or any(f"python tools/{tool}" in line for tool in PROBE_TOOLS))
    return shlex.split(line.strip().strip("`"))


def _parsed_command(words: list[str]) -> dict:
    """What a cited command asks for, as today's CLI parses it (bench, evaluate, or a probe tool); flags that
    change no result (``--force``, progress bars) are left out."""
    from icrl_agent.pretraining.evaluate.cli import build_parser as evaluate_parser

    if words[1].removeprefix("tools/") in PROBE_TOOLS:  # the online benchmark on an env registered by that tool only
        parsed = load_script(BENCHMARKS.parent / words[1]).build_parser().parse_args(words[2:])
    elif words[:3] == ["python", "-m", "icrl_agent.bench"]:
        parsed = build_parser().parse_args(words[3:])
    else:
        assert words[:4] == ["python", "-m", "icrl_agent.pretraining", "evaluate"], words
        parsed = evaluate_parser().parse_args(words[4:])
    return {k: v for k, v in vars(parsed).items() if k not in ("force", "progress", "no_progress")}


def test_every_committed_results_file_cites_a_command_that_still_parses():
    """The first command line of each committed table must be accepted by today's CLI (bench or evaluate)."""
    tables = sorted((BENCHMARKS / "results").rglob("*.md"))
    assert len(tables) >= 10
    for table in tables:
        assert _parsed_command(_cited_command(table)), table


def test_the_benchmarks_index_has_a_row_with_each_results_folders_command():
    """benchmarks/README.md names every committed results folder (and top-level table) in a row whose command asks
    for what the folder's own table says produced it, so a reader rerunning a row gets that folder's numbers."""
    rows: dict[str, list[str]] = {}
    for line in (BENCHMARKS / "README.md").read_text().splitlines():
        if line.startswith("| `results/"):
            cells = line.split(" | ")
            command = cells[-1].removesuffix(" |").strip().strip("`")
            for name in re.findall(r"`results/([^/`.]+)", cells[0]):
                rows.setdefault(name, []).append(command)
    results = BENCHMARKS / "results"
    tables = {p.name: sorted(p.glob("*.md")) for p in results.iterdir() if p.is_dir()}
    for table in results.glob("*.md"):  # the first benchmarks were written straight into results/
        tables.setdefault(table.stem, []).append(table)
    assert len(tables) >= 100
    for name, folder_tables in sorted(tables.items()):
        assert name in rows, f"benchmarks/README.md has no row for results/{name}"
        recorded = [_parsed_command(_cited_command(table)) for table in folder_tables]
        cited = [_parsed_command(shlex.split(command)) for command in rows[name]]
        assert any(row in recorded for row in cited), f"results/{name}: its row's command differs from {recorded[0]}"


def test_the_agent_and_every_tabular_baseline_fit_the_tabular_policy_protocol():
    from icrl_agent.protocols import TabularPolicy

    env = make_env(RIVER)
    names = [name for name, spec in AGENTS.items() if spec.kind == "tabular"]
    assert "icrl" in names and "optvi" in names
    for name in names:
        assert isinstance(get_agent(name).build(env, seed=0), TabularPolicy), name
    assert not isinstance(CrashOnSeedOne(env.observation_space, env.action_space), TabularPolicy)  # no fit/predict


def test_env_keywords_reach_gym_make_and_label_the_env():
    """``DeepSea:size=20`` is DeepSea built with size 20 (the DeepSea sweep), labelled as written."""
    from icrl_agent.bench.common import short_env_name

    (env_id,) = parse_envs("DeepSea:size=4")
    assert env_id == "icrl/DeepSea-v0:size=4" and short_env_name(env_id) == "DeepSea:size=4"
    env = make_env(env_id)
    assert env.unwrapped.size == 4 and env.observation_space.n == 4 * 4 + 1
    assert env_reference(env_id).horizon == 4
    with pytest.raises(ValueError, match="write name:key=value"):
        parse_envs("DeepSea:size")


@pytest.mark.parametrize("written, value", [("False", False), ("false", False), ("True", True), ("true", True)])
def test_a_boolean_env_keyword_reaches_gym_make_as_a_boolean(written, value):
    """``FrozenLake4x4:is_slippery=False`` is the deterministic lake: Python's spelling is not the truthy text."""
    (env_id,) = parse_envs(f"FrozenLake4x4:is_slippery={written}")
    env = make_env(env_id)
    assert env.spec.kwargs["is_slippery"] is value
    moves_from_start = env.unwrapped.gym_env.P[0][2]  # "right" from the start cell
    assert len(moves_from_start) == (3 if value else 1)


def test_python_none_and_plain_text_keep_their_meaning():
    from icrl_agent.bench.common import parse_value

    assert parse_value("None") is None and parse_value("null") is None
    assert parse_value("MiniGrid-LavaGapS5-v0") == "MiniGrid-LavaGapS5-v0"
    assert parse_value("1e-3") == 0.001 and parse_value("[0, 1]") == [0, 1]


def test_env_keywords_give_portable_plot_names(tmp_path):
    main(["online", "--envs", "DeepSea:size=3", "--agents", "random", "--seeds", "1", "--episodes", "2",
          "--workers", "1", "--out", str(tmp_path)])
    assert "curves_DeepSea_size-3.png" in os.listdir(tmp_path / "online")
    assert "| DeepSea:size=3 |" in (tmp_path / "online.md").read_text()


def test_paired_rows_pair_runs_by_seed_over_the_seeds_both_finished():
    """B - A is taken seed by seed (A's seeds listed in another order, B missing one), its CI is degenerate when
    every seed differs by the same amount, and the stuck seeds are counted per agent."""
    from icrl_agent.bench.paired import paired_rows

    a = {"icrl/Chain-v0": {2: 0.3, 0: 0.9, 1: 0.5, 3: 0.95}, "icrl/OnlyInA-v0": {0: 0.1}}
    b = {"icrl/Chain-v0": {0: 1.0, 1: 0.6, 2: 0.4}}
    (row,) = paired_rows(a, b, below=0.55)
    assert (row.env, row.seeds, row.below_a, row.below_b) == ("icrl/Chain-v0", 3, 2, 1)
    assert row.mean_a == pytest.approx((0.9 + 0.5 + 0.3) / 3) and row.mean_b == pytest.approx((1.0 + 0.6 + 0.4) / 3)
    assert row.difference == pytest.approx(0.1) and (row.ci_low, row.ci_high) == pytest.approx((0.1, 0.1))
    (flipped,) = paired_rows(b, a, below=0.55)
    assert flipped.difference == pytest.approx(-0.1)


def test_bench_paired_compares_committed_runs_seed_by_seed(capsys):
    """The CLI on a committed run of two agents: each env's difference is the mean over seeds of B's run minus A's,
    normalized as the bench normalizes, and its bootstrap CI holds it."""
    folder = BENCHMARKS / "results" / "whatif_tried_unknown_limited_once_retest_60_seeds"
    agent_a = "icrl:weights=icrl_agent/weights/icrl-v2.5"
    agent_b = "icrl:weights=runs/missing-mass/v25-mm-states-lim-once"
    assert main(["paired", str(folder), "--agent-a", agent_a, "--agent-b", agent_b]) == 0
    table = capsys.readouterr().out
    data = json.loads((folder / "online" / "results.json").read_text())

    def score(run: dict) -> float:
        env = data["envs"][run["env"]]
        return float(np.mean((np.array(run["returns"]) - env["random"]) / (env["optimal"] - env["random"])))

    scores = {(r["agent"], r["env"], r["seed"]): score(r) for r in data["runs"]}
    for env in data["envs"]:
        difference = np.mean([scores[(agent_b, env, s)] - scores[(agent_a, env, s)] for s in range(60)])
        label = env.removeprefix("icrl/").replace("-v0", "")
        cells = [c.strip() for c in next(line for line in table.splitlines() if line.startswith(f"| {label} |")).split("|")]
        assert cells[2] == "60" and cells[5].startswith(f"{difference:+.3f} [")
        low, high = (float(x) for x in cells[5].split("[")[1].rstrip("]").split(","))
        assert low < difference < high


@pytest.mark.parametrize(("argv", "message"), [
    (["paired", "benchmarks/results/no_such_folder"], "no online results at"),
    (["paired", "benchmarks/results/whatif_tried_unknown_limited_once_retest_60_seeds"], "holds 2 agents"),
    (["paired", "benchmarks/results/icrl_v2_6", "--agent-a", "optvi"], "has no agent 'optvi'; it holds: icrl"),
    (["paired", "benchmarks/results/icrl_v2_6"], "A and B are the same runs"),
    (["paired", "benchmarks/results/icrl_v2_6", "benchmarks/results/icrl_v2_6/"], "A and B are the same runs"),
    (["paired", "benchmarks/results/icrl_v2_6", "benchmarks/results/es_quiet_arms"], "holds 3 agents"),
    (["paired", "benchmarks/results/icrl_v2_6", "benchmarks/results/whatif_tried_unknown_limited_once_deepsea_sweep"],
     "share no (env, seed) run"),
])
def test_bench_paired_refuses_what_it_cannot_pair_naming_the_fix(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(BENCHMARKS.parent)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_paired_raw_returns_count_no_stuck_seeds_and_stay_out_of_the_mean():
    """Raw returns of envs without an exact model (a plain Gymnasium id) are compared seed by seed too, but their
    scales differ: they count no seed below the threshold and the mean row averages the normalized envs only."""
    from icrl_agent.bench.paired import paired_rows, render_paired

    a = {"icrl/Chain-v0": {0: 0.5, 1: 0.9}, "Taxi-v4": {0: -200.0, 1: -100.0}}
    b = {"icrl/Chain-v0": {0: 0.7, 1: 0.9}, "Taxi-v4": {0: -150.0, 1: -100.0}}
    chain, taxi = paired_rows(a, b, below=0.8, raw=frozenset({"Taxi-v4"}))
    assert (chain.below_a, chain.below_b, chain.normalized) == (1, 1, True)
    assert (taxi.below_a, taxi.below_b, taxi.normalized, taxi.difference) == (None, None, False, 25.0)
    table = render_paired([chain, taxi], "a", "b", 0.8)
    assert "| Taxi-v4 (raw return) | 2 | -150.000 | -125.000 | +25.000 [+0.000, +50.000] | n/a |" in table
    assert "| **mean over envs with an exact model** |  | 0.700 | 0.800 | +0.100 | 1 / 1 |" in table
