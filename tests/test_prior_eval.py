"""`bench prior`: MDPs of the pretraining prior become envs that agents learn online."""

import numpy as np
import pytest

from icrl_agent.bench.accuracy import REFERENCE, run_accuracy
from icrl_agent.bench.prior_eval import prior_env, resolve_specs, run_prior


def test_prior_env_is_a_valid_time_limited_tabular_env():
    env = prior_env("loop", 0, seed=0, weights=None)
    P, R, terminal = env.unwrapped.transition_matrix()
    np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-9)
    assert env.spec is None or env.spec.max_episode_steps in (None, env.unwrapped.horizon)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_blind_agents_are_told_nothing():
    blind, told = resolve_specs("optvi-blind,optvi", weights=None)
    assert blind.name == "optvi-blind" and not blind.hints and told.hints


def test_run_prior_scores_every_agent_per_family(tmp_path):
    result = run_prior(["loop"], "random,optvi-blind", n_mdps=2, episodes=3, workers=1, out_dir=tmp_path)
    assert not result["errors"]
    rows = {r["agent"]: r for r in result["rows"]}
    assert set(rows) == {"random", "optvi-blind"} and all(r["family"] == "loop" for r in rows.values())
    assert rows["optvi-blind"]["n"] >= 1 and np.isfinite(rows["optvi-blind"]["mean"])
    assert (tmp_path / "prior.md").exists() and (tmp_path / "prior.json").exists()


def test_accuracy_bench_scores_models_and_the_empirical_vi_reference(tmp_path):
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


def test_accuracy_bench_rejects_negative_amounts(tmp_path):
    with pytest.raises(ValueError, match="episodes"):
        run_accuracy([None], ["loop"], [-1], n_mdps=2, out_dir=tmp_path)
