"""The benchmark harness: outputs, names, crash isolation, normalization, the SB3 baselines."""

import csv
import json
import math
import os

import gymnasium as gym
import numpy as np
import pytest

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
from icrl_agent.bench.common import env_reference, make_env, parse_envs, run_episodes
from icrl_agent.bench.offline import behaviour_policy, collect_dataset, run_offline
from icrl_agent.bench.online import run_online, summarize
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
    assert not result["errors"]
    data = json.loads((folder / "results.json").read_text())
    assert len(data["runs"]) == 2 * 2 * 2
    assert all(len(run["returns"]) == 12 for run in data["runs"])
    assert data["agents"]["optvi"]["hints"] is True
    with open(folder / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["agent"], r["seeds"]) for r in rows} == {("random", "2"), ("optvi", "2")}
    assert len(rows) == 4
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs == ["curves_FrozenLake4x4.png", "curves_RiverSwim.png", "mean_normalized_return.png"]
    markdown = (tmp_path / "online.md").read_text()
    assert markdown == result["markdown"]
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
    assert [(e["agent"], e["seed"]) for e in result["errors"]] == [(crashy, 1)]
    assert "deliberate crash" in result["errors"][0]["error"]
    summary = {r["agent"]: r for r in result["summary"]}
    assert summary["random"]["seeds"] == 2 and summary[crashy]["seeds"] == 1
    assert (
        f"- {crashy} on icrl/FrozenLake4x4-v0, seed 1: RuntimeError: deliberate crash" in result["markdown"]
    )
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
    by_agent = {r["agent"]: r for r in rows}
    assert by_agent["optvi"]["mean"] == pytest.approx(1.0)
    assert by_agent["optvi"]["episodes_to_0.9"] == 10  # the first full 10-episode window
    assert by_agent["optvi"]["ratio_to_best_classical"] == pytest.approx(1.0)
    assert by_agent["random"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert by_agent["random"]["episodes_to_0.9"] is None
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
    assert not result["errors"]
    (row,) = result["summary"]
    assert row["mean"] > 0.95  # plain VI on plenty of uniform data finds the optimal policy
    assert (tmp_path / "offline.md").exists() and (tmp_path / "offline" / "offline_uniform.png").exists()


def test_speed_reports_median_and_mean_per_size(tmp_path):
    result = run_speed("random,optvi", sizes=[16], steps=60, out=str(tmp_path))
    assert {(r["agent"], r["n_states"]) for r in result["summary"]} == {("random", 16), ("optvi", 16)}
    assert all(r["steps"] == 60 and r["median_us"] > 0 and r["mean_us"] > 0 for r in result["summary"])
    assert (tmp_path / "speed.md").exists()


def test_sb3_ppo_and_dqn_run_through_the_harness(tmp_path):
    pytest.importorskip("stable_baselines3")
    result = run_online(FROZEN, "ppo,dqn", seeds=1, episodes=4, workers=1, out=str(tmp_path))
    assert not result["errors"]
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
    assert sorted((e["agent"], e["seed"]) for e in result["errors"]) == [(crashy, 0), (crashy, 1)]
    assert "has no attribute 'fit'" in result["errors"][0]["error"]
    (row,) = result["summary"]
    assert row["agent"] == "vi" and row["seeds"] == 2
    assert f"- {crashy} on icrl/FrozenLake4x4-v0 (uniform, 200), seed 0" in result["markdown"]


def test_pretrain_speed_subcommand_calls_the_pretraining_benchmark(tmp_path, monkeypatch, capsys):
    import sys
    import types

    calls = []
    fake = types.ModuleType("icrl_agent.bench.pretrain_speed")
    fake.run_pretrain_speed = lambda device, config_path: (
        calls.append((device, config_path)) or {"mdps_per_s": 12.5}
    )
    monkeypatch.setitem(sys.modules, "icrl_agent.bench.pretrain_speed", fake)
    assert main(["pretrain-speed", "--device", "cpu", "--config", "my.yaml", "--out", str(tmp_path)]) == 0
    assert calls == [("cpu", "my.yaml")]
    saved = json.loads((tmp_path / "pretrain_speed" / "results.json").read_text())
    assert saved["mdps_per_s"] == 12.5 and saved["command"].endswith("--out " + str(tmp_path))
    assert "12.5" in capsys.readouterr().out


def test_sweep_optvi_runs_one_agent_per_bonus_and_names_the_best(tmp_path, capsys):
    argv = ["sweep-optvi", "--envs", RIVER, "--c", "0.001,0.01", "--seeds", "1", "--episodes", "12"]
    assert main([*argv, "--workers", "1", "--out", str(tmp_path)]) == 0
    markdown = (tmp_path / "sweep_optvi.md").read_text()
    assert "| env | optvi:c=0.001 | optvi:c=0.01 |" in markdown
    assert "**Best over envs: `optvi:c=0.0" in markdown
    data = json.loads((tmp_path / "sweep_optvi" / "results.json").read_text())
    assert data["agents"]["optvi:c=0.01"]["params"] == {"c": 0.01}
