"""`python -m icrl_agent.pretraining evaluate`: prior MDPs as envs, accuracy, throughput; its CLI."""

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from icrl_agent.agent import SHIPPED_WEIGHTS
from icrl_agent.pretraining.__main__ import main as pretraining_main
from icrl_agent.pretraining.evaluate.accuracy import REFERENCE, run_accuracy
from icrl_agent.pretraining.evaluate.cli import parse_prior_overrides
from icrl_agent.pretraining.evaluate.prior import (
    config_of,
    prior_env,
    prior_spec_of,
    prior_spec_with,
    resolve_specs,
    run_prior,
)
from icrl_agent.pretraining.evaluate.scale import run_scale, score_scale

REPO = Path(__file__).resolve().parents[1]


def test_prior_env_is_a_valid_time_limited_tabular_env():
    env = prior_env("loop", 0, seed=0, weights=None)
    P, R, terminal = env.unwrapped.transition_matrix()
    np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-9)
    assert env.spec is None or env.spec.max_episode_steps in (None, env.unwrapped.horizon)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("seed", [0, 1])
def test_prior_overrides_and_horizon_change_the_drawn_env_and_nothing_else(seed):
    """``--prior`` draws from the weights' prior with some keys replaced; ``--horizon`` replaces the episode
    length; without them the env is the weights' own draw."""
    more_stays = prior_spec_with(None, {"arms_max_stay": 5})
    assert more_stays.arms_max_stay == 5
    changed = 0
    for index in range(8):
        base = prior_env("arms", index, seed=seed, weights=None)
        same = prior_env("arms", index, seed=seed, weights=None, prior=prior_spec_with(None, {}))
        stay = prior_env("arms", index, seed=seed, weights=None, prior=more_stays)
        longer_horizon = base.unwrapped.horizon + 7
        longer = prior_env("arms", index, seed=seed, weights=None, horizon=longer_horizon)
        P, R, _ = base.unwrapped.transition_matrix()
        np.testing.assert_array_equal(same.unwrapped.transition_matrix()[0], P)
        if R.shape[1] >= 3:  # with 2 actions a room is kept by its one staying action whatever the key says
            assert not np.array_equal(stay.unwrapped.transition_matrix()[0], P)  # more actions keep a room
            changed += 1
        assert base._max_episode_steps == base.unwrapped.horizon
        assert longer.unwrapped.horizon == longer_horizon and longer._max_episode_steps == longer_horizon
        np.testing.assert_array_equal(longer.unwrapped.transition_matrix()[0], P)
        np.testing.assert_array_equal(longer.unwrapped.transition_matrix()[1], R)
    assert changed >= 3


def test_run_prior_draws_every_mdp_with_the_overrides_and_horizon(tmp_path, monkeypatch):
    from icrl_agent.pretraining.evaluate import prior as prior_module

    seen = []
    real = prior_module.prior_env

    def recording(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(prior_module, "prior_env", recording)
    result = run_prior(["arms"], "random", n_mdps=2, episodes=1, workers=1, out_dir=tmp_path,
                       prior_overrides={"arms_max_stay": 3}, horizon=7)
    assert not result["errors"] and len(seen) == 2
    assert all(k["prior"].arms_max_stay == 3 and k["horizon"] == 7 for k in seen)
    relabelled = run_prior(["arms"], "random", n_mdps=1, episodes=1, workers=1, out_dir=tmp_path / "b",
                           prior_overrides={"held_out": ["arms"]})
    assert relabelled["rows"][0]["held_out"] and not result["rows"][0]["held_out"]  # labels follow the overrides


def test_run_prior_keeps_every_run_with_its_mdps_optimum_and_random_value(tmp_path):
    """prior.json's ``runs``: one per (family, MDP, agent), the family means are their finite scores' means, and
    each score is the run's return normalized by the optimum and random value it records."""
    import json

    result = run_prior(["grid", "bandit"], "random,optvi", n_mdps=3, episodes=2, workers=1, out_dir=tmp_path)
    runs = json.loads((tmp_path / "prior.json").read_text())["runs"]
    assert runs == result["runs"] and len(runs) == 2 * 3 * 2
    assert {(r["family"], r["index"], r["agent"]) for r in runs} == {
        (f, i, a) for f in ("grid", "bandit") for i in range(3) for a in ("random", "optvi")
    }
    for row in result["rows"]:
        scores = [r["score"] for r in runs if (r["family"], r["agent"]) == (row["family"], row["agent"])]
        assert row["mean"] == pytest.approx(np.nanmean(scores)) and row["n"] == int(np.isfinite(scores).sum())
    for family, index in {(r["family"], r["index"]) for r in runs}:
        pair = [r for r in runs if (r["family"], r["index"]) == (family, index)]
        assert len({(r["optimal"], r["random"]) for r in pair}) == 1  # the same MDP for both agents
        assert all(r["optimal"] >= r["random"] for r in pair)
    paired = result["markdown"].split("Paired difference from random")[1]
    for family in ("grid", "bandit"):
        by_index = {a: {r["index"]: r["score"] for r in runs if r["family"] == family and r["agent"] == a}
                    for a in ("random", "optvi")}
        diffs = [by_index["optvi"][i] - by_index["random"][i] for i in range(3)
                 if np.isfinite(by_index["optvi"][i]) and np.isfinite(by_index["random"][i])]
        cell = next(line for line in paired.splitlines() if line.startswith(f"| {family} |")).split("|")[2]
        assert cell.strip().startswith(f"{np.mean(diffs):+.3f} [")


def relative_gap(run: dict) -> float:
    return (run["optimal"] - run["random"]) / max(abs(run["optimal"]), abs(run["random"]))


def test_min_gap_leaves_ill_conditioned_mdps_out_of_the_means_and_the_paired_table(tmp_path):
    """``min_gap``: an MDP where random play comes within that share of the optimum counts in no mean and no paired
    difference, the markdown names it, and prior.json still keeps every run. The threshold is taken between two
    of the drawn MDPs' gaps, so some are left out and some kept."""
    full = run_prior(["grid", "bandit"], "random,optvi", n_mdps=4, episodes=2, workers=1, out_dir=tmp_path / "all")
    gaps = sorted({relative_gap(r) for r in full["runs"] if np.isfinite(r["score"])})
    assert len(gaps) >= 2
    min_gap = (gaps[0] + gaps[1]) / 2
    result = run_prior(["grid", "bandit"], "random,optvi", n_mdps=4, episodes=2, workers=1, out_dir=tmp_path / "some",
                       min_gap=min_gap)
    runs = result["runs"]
    assert runs == full["runs"]
    left_out = {(r["family"], r["index"]) for r in runs if np.isfinite(r["score"]) and relative_gap(r) < min_gap}
    assert left_out
    for row in result["rows"]:
        mine = [r for r in runs if (r["family"], r["agent"]) == (row["family"], row["agent"]) and np.isfinite(r["score"])]
        kept = [r["score"] for r in mine if (r["family"], r["index"]) not in left_out]
        assert row["n"] == len(kept) and row["left_out"] == len(mine) - len(kept)
        assert row["mean"] == pytest.approx(np.mean(kept)) if kept else np.isnan(row["mean"])
    named = next(line for line in result["markdown"].splitlines() if line.startswith("Left out of the means"))
    listed = named.split("): ")[1].rstrip(".").split(", ")
    assert sorted(listed) == sorted(f"{family} {index}" for family, index in left_out)
    paired = result["markdown"].split("Paired difference from random")[1]
    for family in ("grid", "bandit"):
        by_index = {a: {r["index"]: r["score"] for r in runs if r["family"] == family and r["agent"] == a}
                    for a in ("random", "optvi")}
        diffs = [by_index["optvi"][i] - by_index["random"][i] for i in range(4)
                 if (family, i) not in left_out and np.isfinite(by_index["optvi"][i]) and np.isfinite(by_index["random"][i])]
        cell = next(line for line in paired.splitlines() if line.startswith(f"| {family} |")).split("|")[2]
        assert cell.strip() == "n/a" if not diffs else cell.strip().startswith(f"{np.mean(diffs):+.3f} [")


@pytest.mark.parametrize("min_gap", [-0.1, 1.0, float("nan"), True, "0.2"])
def test_run_prior_refuses_a_min_gap_outside_zero_to_one_before_any_output(tmp_path, min_gap):
    with pytest.raises(ValueError, match=r"min_gap must be a number in \[0, 1\)"):
        run_prior(["loop"], "random", n_mdps=1, episodes=1, workers=1, out_dir=tmp_path / "out", min_gap=min_gap)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["1", "-0.5", "a fifth"])
def test_evaluate_prior_min_gap_is_a_usage_error_outside_zero_to_one(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        pretraining_main(["evaluate", "prior", "--min-gap", value])
    assert exit_info.value.code == 2 and "must be a number in [0, 1)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"arms_max_sty": 5}, "unknown config key prior.arms_max_sty"),
     ({"arms_max_stay": 0}, "arms_max_stay' = 0 is out of range")],
)
def test_a_bad_prior_override_is_refused_by_name_before_any_output(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run_prior(["arms"], "random", n_mdps=1, episodes=1, workers=1, out_dir=tmp_path / "out",
                  prior_overrides=overrides)
    assert not (tmp_path / "out").exists()


def test_prior_overrides_are_read_from_the_command_line_as_json_values():
    assert parse_prior_overrides("arms_max_stay=5,small_reward_ratio_max=0.1,held_out=[\"tree\"]") == {
        "arms_max_stay": 5, "small_reward_ratio_max": 0.1, "held_out": ["tree"]}
    with pytest.raises(ValueError, match="--prior takes key=value"):
        parse_prior_overrides("arms_max_stay")


def test_the_prior_is_read_from_the_shipped_card_written_with_a_flat_config():
    prior = prior_spec_of(None)
    card = json.loads((REPO / "icrl_agent" / "weights" / "icrl-v1.json").read_text())["config"]
    assert (prior.max_states, prior.max_horizon, prior.held_out) == (card["max_states"], card["max_horizon"],
                                                                   card["held_out"])


def test_blind_agents_are_told_nothing():
    blind, told = resolve_specs("optvi-blind,optvi", weights=None)
    assert blind.name == "optvi-blind" and not blind.hints and told.hints


def test_weights_go_to_every_icrl_agent_not_given_its_own():
    default, own = resolve_specs("icrl,icrl:weights=other/weights", weights="card/weights")
    assert default.params["weights"] == "card/weights" and own.params["weights"] == "other/weights"


def test_run_prior_scores_every_agent_per_family(tmp_path):
    result = run_prior(["loop"], "random,optvi-blind", n_mdps=2, episodes=3, workers=1, out_dir=tmp_path)
    assert not result["errors"]
    rows = {r["agent"]: r for r in result["rows"]}
    assert set(rows) == {"random", "optvi-blind"} and all(r["family"] == "loop" for r in rows.values())
    assert rows["optvi-blind"]["n"] >= 1 and np.isfinite(rows["optvi-blind"]["mean"])
    assert (tmp_path / "prior.md").exists() and (tmp_path / "prior.json").exists()


def test_accuracy_scores_models_and_the_empirical_vi_reference(tmp_path):
    result = run_accuracy([None], ["loop", "garnet"], [0, 8], n_mdps=8, out_dir=tmp_path)
    rows = result["rows"]
    assert {r["model"] for r in rows} == {"shipped", REFERENCE}
    assert {(r["family"], r["episodes"]) for r in rows} == {(f, e) for f in ("loop", "garnet") for e in (0, 8)}
    assert all(0.0 <= r["accuracy"] <= 1.0 and np.isfinite(r["loss"]) for r in rows)
    by = {(r["model"], r["family"], r["episodes"]): r["accuracy"] for r in rows}
    # with no data nothing is known but the start state, where empirical VI cannot tell actions apart
    # while 8 episodes of data let it do better on a garnet
    assert by[(REFERENCE, "garnet", 8)] > by[(REFERENCE, "garnet", 0)]
    assert next(r for r in rows if r["family"] == "loop")["held_out"]
    assert (tmp_path / "accuracy.md").exists()


def test_accuracy_rejects_negative_amounts(tmp_path):
    with pytest.raises(ValueError, match="episodes"):
        run_accuracy([None], ["loop"], [-1], n_mdps=2, out_dir=tmp_path)


def test_scale_scores_every_family_on_random_data_and_on_the_agents_own(tmp_path):
    result = run_scale([""], ["arms", "loop"], n_mdps=6, episodes=2, out_dir=tmp_path)
    rows = result["rows"]
    assert [(r["family"], r["data"]) for r in rows] == [("arms", "random"), ("arms", "own"), ("loop", "random"),
                                                        ("loop", "own")]
    assert all(r["model"] == SHIPPED_WEIGHTS and 0 < r["n"] <= 6 and 0.0 <= r["coverage"] <= 1.0 for r in rows)
    assert [r["held_out"] for r in rows] == [False, False, True, True]
    saved = json.loads((tmp_path / "scale.json").read_text())
    assert saved["rows"] == rows and (tmp_path / "scale.md").read_text().count("| arms |") == 2
    with pytest.raises(ValueError, match="same file name"):
        run_scale(["", ""], ["arms"], n_mdps=2, episodes=1, out_dir=tmp_path / "twice")


@pytest.mark.parametrize("factor, coverage, low_e", [(1e6, 1.0, 0.0), (1e-6, 0.0, 1.0)])
def test_scale_metrics_read_an_estimate_too_high_and_too_low_the_right_way(factor, coverage, low_e, monkeypatch):
    from icrl_agent.agent import shipped_weights_path
    from icrl_agent.checkpoint import load_checkpoint

    model = load_checkpoint(shipped_weights_path())[0].eval()
    cfg = config_of(shipped_weights_path())
    honest = model.reward_scale
    monkeypatch.setattr(model, "reward_scale", lambda stats: honest(stats) * factor)
    scores = score_scale(model, cfg, "garnet", "random", n_mdps=8, episodes=2, seed=0)
    assert scores["n"] > 0 and scores["coverage"] == coverage and scores["low_e"] == low_e
    assert (scores["median"] < 0) == (factor > 1)
    with pytest.raises(ValueError, match="data kind"):
        score_scale(model, cfg, "garnet", "mine", n_mdps=2, episodes=1, seed=0)


def test_evaluate_verb_runs_prior_and_prints_the_command_that_reproduces_it(tmp_path, capsys):
    argv = ["evaluate", "prior", "--families", "loop", "--agents", "random", "--mdps", "1", "--episodes", "2",
            "--workers", "1", "--out", str(tmp_path / "p")]
    assert pretraining_main(argv) == 0
    out = capsys.readouterr().out
    assert "python -m icrl_agent.pretraining evaluate prior --families loop --agents random" in out
    assert (tmp_path / "p" / "prior.md").read_text().startswith("`python -m icrl_agent.pretraining evaluate prior")
    with pytest.raises(SystemExit) as exit_info:  # written results are not overwritten without --force
        pretraining_main(argv)
    assert exit_info.value.code == 2 and "--force" in capsys.readouterr().err


def test_evaluate_speed_calls_the_throughput_measurement(tmp_path, monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("icrl_agent.pretraining.evaluate.speed")
    fake.run_pretrain_speed = lambda device, config_path: calls.append((device, config_path)) or {"mdps_per_s": 12.5}
    monkeypatch.setitem(sys.modules, "icrl_agent.pretraining.evaluate.speed", fake)
    argv = ["evaluate", "speed", "--device", "cpu", "--config", "my.yaml", "--out", str(tmp_path)]
    assert pretraining_main(argv) == 0
    assert calls == [("cpu", "my.yaml")]
    saved = json.loads((tmp_path / "pretrain_speed" / "results.json").read_text())
    assert saved["mdps_per_s"] == 12.5
    assert saved["command"] == f"python -m icrl_agent.pretraining evaluate speed --device cpu --config my.yaml --out {tmp_path}"
    assert "12.5" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "prior", "--agents", "optvi-blnd"], "Did you mean"),
    (["evaluate", "prior", "--families", "tre"], "Did you mean 'tree'?"),
    (["evaluate", "accuracy", "--families", "gird"], "Did you mean 'grid'?"),
    (["evaluate", "scale", "--families", "arm"], "Did you mean 'arms'?"),
])
def test_evaluate_bad_names_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        pretraining_main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_bench_no_longer_has_the_pretraining_verbs_and_says_where_they_went(capsys):
    from icrl_agent.bench.__main__ import main as bench_main

    for verb in ("prior", "accuracy", "pretrain-speed"):
        with pytest.raises(SystemExit) as exit_info:
            bench_main([verb])
        assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        bench_main(["--help"])
    assert "python -m icrl_agent.pretraining evaluate" in capsys.readouterr().out


def test_training_cli_is_unchanged_and_points_to_evaluate():
    result = subprocess.run([sys.executable, "-m", "icrl_agent.pretraining", "--help"], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0 and "--config" in result.stdout and "evaluate --help" in result.stdout
