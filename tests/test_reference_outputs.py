"""The shipped weights compute what they computed: Q, temperatures and reward scales of fixed statistics.

Every weights file in ``icrl_agent/weights/`` has a reference file ``tests/reference/<name>_outputs.json``,
written by ``python tests/reference/make_reference_outputs.py [NAME]`` (see its docstring).
A refactor of the network or its planning layer must leave these outputs unchanged; regenerate the file
only for an intended change of outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script

from icrl_agent.checkpoint import checkpoint_sha256
from icrl_agent.model_inputs import StatsBatch

REFERENCE_DIR = Path(__file__).with_name("reference")
RTOL, ATOL = 1e-5, 1e-6


maker = load_script(REFERENCE_DIR / "make_reference_outputs.py")
NAMES = sorted(p.stem for p in maker.weights_path(maker.SHIPPED_WEIGHTS).parent.glob("*.safetensors"))
REFERENCES = {name: json.loads(maker.output_path(name).read_text()) for name in NAMES}
HINT = f"if this change of the shipped model's outputs is intended, regenerate them with `{maker.COMMAND} NAME`"
MODELS: dict[str, torch.nn.Module] = {}


def model(name: str) -> torch.nn.Module:
    if name not in MODELS:
        MODELS[name] = maker.load_model(name)
    return MODELS[name]


def test_every_shipped_weights_file_has_reference_outputs_and_the_default_is_one_of_them():
    assert maker.SHIPPED_WEIGHTS in NAMES and len(NAMES) >= 2
    assert all(maker.output_path(name).exists() for name in NAMES)


def assert_close(actual: torch.Tensor, expected, what: str, atol: float = ATOL) -> None:
    actual = actual.detach().double().numpy()
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != reference {expected.shape}; {HINT}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=atol, err_msg=f"{what} differs; {HINT}")


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_was_made_with_these_weights(name):
    assert REFERENCES[name]["sha256"] == checkpoint_sha256(maker.weights_path(name)), (
        f"the weights {name} changed since their reference outputs were made; {HINT}"
    )
    assert REFERENCES[name]["weights"] == name and sorted(REFERENCES[name]["cases"]) == sorted(maker.CASES)


def test_the_cases_cover_what_they_claim():
    chain, _ = maker.chain_small_early_reward()
    assert 0 < chain.sparse().reward_mean.max() and np.isclose(chain.sparse().reward_mean[0, 0], 0.005)
    grid, _ = maker.grid_with_terminal_transitions()
    assert grid.sparse().terminal_counts.sum() == 4 and grid.max_truncated_length == 7
    assert (grid.dense().transitions[1, 2] > 0).sum() == 2  # a stochastic row
    sparse_case, _ = maker.unvisited_pairs_and_a_new_state()
    counts = sparse_case.sparse().counts
    assert (counts == 0).sum() > counts.size // 2 and counts[3].sum() == 0  # state 3: seen, never left
    assert sparse_case.sparse().reward_var.max() > 0
    costs, _ = maker.negative_step_costs()
    visited = costs.sparse().counts > 0
    assert (costs.sparse().reward_mean[visited] == -1.0).all()


@pytest.mark.parametrize("optimism", [True, False])
@pytest.mark.parametrize("case", sorted(maker.CASES))
@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_outputs_match_the_reference(name, case, optimism):
    shipped_model = model(name)
    stats, horizon = maker.CASES[case]()
    expected = REFERENCES[name]["cases"][case]
    assert horizon == expected["horizon"], HINT
    with torch.no_grad():
        out = shipped_model.forward_sparse(stats.sparse(), horizon, optimism=optimism)
    ref = expected["optimism"][str(optimism).lower()]
    assert_close(out.q[0], ref["q"], f"{case} q (optimism={optimism})")
    assert_close(out.temperature[0], ref["temperature"], f"{case} temperature (optimism={optimism})")
    assert_close(out.reward_scale[0], ref["reward_scale"], f"{case} reward_scale (optimism={optimism})")


@pytest.mark.parametrize("optimism", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_the_dense_path_matches_the_reference_too(name, optimism):
    """All cases in one padded batch through ``forward``: the training path computes the same outputs."""
    shipped_model = model(name)
    built = {case: maker.CASES[case]() for case in sorted(maker.CASES)}
    n_states = max(stats.n_states for stats, _ in built.values())
    n_actions = max(stats.n_actions for stats, _ in built.values())
    b = len(built)
    arrays = {k: torch.zeros(b, n_states, n_actions) for k in ("counts", "reward_mean", "reward_var", "terminal_counts")}
    arrays["transitions"] = torch.zeros(b, n_states, n_actions, n_states)
    arrays["initial_counts"] = torch.zeros(b, n_states)
    state_mask = torch.zeros(b, n_states, dtype=torch.bool)
    action_mask = torch.zeros(b, n_actions, dtype=torch.bool)
    for i, (stats, _) in enumerate(built.values()):
        dense = stats.dense()
        s, a = dense.counts.shape
        for k in ("counts", "reward_mean", "reward_var", "terminal_counts"):
            arrays[k][i, :s, :a] = torch.tensor(getattr(dense, k), dtype=torch.float32)
        arrays["transitions"][i, :s, :a, :s] = torch.tensor(dense.transitions, dtype=torch.float32)
        arrays["initial_counts"][i, :s] = torch.tensor(dense.initial_counts, dtype=torch.float32)
        state_mask[i, :s], action_mask[i, :a] = True, True
    horizons = torch.tensor([h for _, h in built.values()])
    batch = StatsBatch(**arrays, state_mask=state_mask, action_mask=action_mask, horizon=horizons)
    with torch.no_grad():
        out = shipped_model(batch, optimism=optimism)
    for i, (case, (stats, horizon)) in enumerate(built.items()):
        ref = REFERENCES[name]["cases"][case]["optimism"][str(optimism).lower()]
        s, a = stats.n_states, stats.n_actions
        what = f"{case} via the dense path (optimism={optimism})"
        assert_close(out.q[i, :horizon, :s, :a], ref["q"], f"{what} q")
        # a temperature is a gap between Q values, so its rounding error scales with Q's size, not its own (the
        # step costs' exploring Q reaches 6e6 with icrl-v2.6, and the two paths round it differently)
        q_size = float(np.abs(np.nan_to_num(np.asarray(ref["q"], dtype=np.float64), posinf=0.0, neginf=0.0)).max())
        assert_close(out.temperature[i, :s], ref["temperature"], f"{what} temperature", atol=ATOL + RTOL * q_size)
        assert_close(out.reward_scale[i], ref["reward_scale"], f"{what} reward_scale")


def test_icrl_v2_1_is_icrl_v2_with_only_the_exploitation_rules_changed():
    """icrl-v2.1 (configs/v2_1.yaml, no training step) = icrl-v2's tensors + ``exploit_untried: floor`` and
    ``exploit_unknown: non_terminal``: its exploring outputs equal icrl-v2's (online behaviour unchanged),
    its exploitation outputs do not."""
    from dataclasses import replace

    from icrl_agent.checkpoint import load_checkpoint

    v2_1, v2_1_card = load_checkpoint(maker.weights_path("icrl-v2.1"))
    v2, v2_card = load_checkpoint(maker.weights_path("icrl-v2"))
    assert v2_1.config == replace(v2.config, exploit_untried="floor", exploit_unknown="non_terminal")
    v2_tensors = v2.state_dict()
    assert all(torch.equal(t, v2_tensors[k]) for k, t in v2_1.state_dict().items())
    assert v2_1_card["training"]["init_from"]["sha256"] == v2_card["sha256"]
    v2_1_ref, v2_ref = REFERENCES["icrl-v2.1"]["cases"], REFERENCES["icrl-v2"]["cases"]
    for case in maker.CASES:
        for key in ("q", "temperature", "reward_scale"):
            np.testing.assert_allclose(
                v2_1_ref[case]["optimism"]["true"][key], v2_ref[case]["optimism"]["true"][key], rtol=RTOL, atol=ATOL
            )
    assert any(v2_1_ref[c]["optimism"]["false"]["q"] != v2_ref[c]["optimism"]["false"]["q"] for c in maker.CASES)


def test_icrl_v2_2_is_icrl_v2_1_with_only_the_exploring_plan_changed():
    """icrl-v2.2 (configs/v2_2.yaml, no training step) = icrl-v2.1's tensors with the scale gain set to 8, plus
    ``explore_unknown: untried_only`` and ``spread_bonus: 0.3``: its exploitation Q equals icrl-v2.1's (offline
    behaviour unchanged), its exploring Q does not."""
    import math
    from dataclasses import replace

    from icrl_agent.checkpoint import load_checkpoint

    v2_2, v2_2_card = load_checkpoint(maker.weights_path("icrl-v2.2"))
    v2_1, v2_1_card = load_checkpoint(maker.weights_path("icrl-v2.1"))
    assert v2_2.config == replace(v2_1.config, explore_unknown="untried_only", spread_bonus=0.3)
    v2_1_tensors = v2_1.state_dict()
    changed = [k for k, t in v2_2.state_dict().items() if not torch.equal(t, v2_1_tensors[k])]
    assert changed == ["log_scale_gain"] and math.isclose(v2_2.optimism_constants()["scale_gain"], 8.0, rel_tol=1e-6)
    assert v2_2_card["training"]["init_from"]["sha256"] == v2_1_card["sha256"]
    assert_same_exploitation_q("icrl-v2.2", "icrl-v2.1")
    v2_2_ref, v2_1_ref = REFERENCES["icrl-v2.2"]["cases"], REFERENCES["icrl-v2.1"]["cases"]
    assert any(v2_2_ref[c]["optimism"]["true"]["q"] != v2_1_ref[c]["optimism"]["true"]["q"] for c in maker.CASES)


def frozenlake8x8_random_play_statistics():
    """40 episodes of uniform random play on Gymnasium's slippery FrozenLake8x8 (no reward met)."""
    import gymnasium as gym

    from icrl_agent.stats import SufficientStats

    env = gym.make("FrozenLake8x8-v1")
    stats = SufficientStats(env.observation_space, env.action_space)
    rng = np.random.default_rng(0)
    for episode in range(40):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            action = int(rng.integers(4))
            next_obs, reward, terminated, truncated, _ = env.step(action)
            stats.update(obs, action, reward, next_obs, terminated, truncated)
            obs, done = next_obs, terminated or truncated
    return stats


def load_config_change(name: str, source: str, added: tuple[str, ...] = (),
                       made_by: tuple[str, str] = ("init_from", "sha256"), **changes):
    """Load ``name`` and ``source``, checking that ``name`` was made from ``source``: every tensor of ``source``
    equal in ``name``, which has only the ``added`` tensors besides; the model config ``source``'s with ``changes``;
    and ``source``'s sha256 recorded in ``name``'s card under ``training[made_by[0]][made_by[1]]`` (``init_from``
    with no training step, or the stage that trained the added tensors).

    :return: the two models, ``(name's, source's)``
    """
    from dataclasses import replace

    from icrl_agent.checkpoint import load_checkpoint

    new, new_card = load_checkpoint(maker.weights_path(name))
    old, old_card = load_checkpoint(maker.weights_path(source))
    assert new.config == replace(old.config, **changes)
    new_tensors, old_tensors = new.state_dict(), old.state_dict()
    assert all(torch.equal(new_tensors[k], t) for k, t in old_tensors.items())
    assert sorted(set(new_tensors) - set(old_tensors)) == sorted(added)
    assert new_card["training"][made_by[0]][made_by[1]] == old_card["sha256"]
    return new, old


def load_missing_mass_change(name: str, **rules):
    """:func:`load_config_change` for weights made by ``python -m icrl_agent.pretraining missing-mass`` from
    icrl-v2.5 (icrl-v2.6 on): icrl-v2.5's tensors plus the missing-mass head, planning with icrl-v2.6's rules
    (``learned_missing_mass``, ``tried_unknown_limited``, ``tried_unknown_worth_after_goal: once``) and ``rules``."""
    return load_config_change(name, "icrl-v2.5", added=("missing_mass_head.bias", "missing_mass_head.weight"),
                              made_by=("missing_mass_head", "source_sha256"), explore_unknown="learned_missing_mass",
                              tried_unknown_limited=True, tried_unknown_worth_after_goal="once", **rules)


def assert_same_exploitation_q(name: str, source: str) -> None:
    """``name``'s exploitation Q equals ``source``'s in every reference case (offline behaviour unchanged)."""
    new_ref, old_ref = REFERENCES[name]["cases"], REFERENCES[source]["cases"]
    for case in maker.CASES:
        np.testing.assert_allclose(new_ref[case]["optimism"]["false"]["q"], old_ref[case]["optimism"]["false"]["q"],
                                   rtol=RTOL, atol=ATOL, err_msg=case)


def test_icrl_v2_3_is_icrl_v2_2_with_the_value_cap_and_its_exploring_values_grow_linearly():
    """icrl-v2.3 (configs/v2_3.yaml, no training step) = icrl-v2.2's tensors + ``value_cap: true``: its
    exploitation Q equals icrl-v2.2's (offline behaviour unchanged). On slippery FrozenLake8x8 statistics
    icrl-v2.2's exploring values compound with the steps to go, far past ``H kappa scale`` (the most ``H`` steps
    of the unknown successor are worth) or to NaN; icrl-v2.3's stay within it."""
    v2_3, v2_2 = load_config_change("icrl-v2.3", "icrl-v2.2", value_cap=True)
    assert_same_exploitation_q("icrl-v2.3", "icrl-v2.2")
    stats = frozenlake8x8_random_play_statistics().sparse()
    horizon = 500
    with torch.no_grad():
        capped, uncapped = (m.forward_sparse(stats, horizon) for m in (v2_3, v2_2))
    bound = horizon * max(1.0, v2_3.optimism_constants()["kappa"] * float(capped.reward_scale))  # c = 1 here
    assert float(capped.q.max()) <= 1.01 * bound
    compounded = float(uncapped.q.max())  # 1.7e16 here; other draws of the play overflow to NaN
    assert not np.isfinite(compounded) or compounded > 1e3 * bound


def test_icrl_v2_4_is_icrl_v2_3_with_a_lower_confidence_bound_in_the_exploitation_plan():
    """icrl-v2.4 (configs/v2_4.yaml, no training step) = icrl-v2.3's tensors + ``exploit_spread_penalty: 0.1``.
    Its exploring Q equals icrl-v2.3's in every case (online behaviour unchanged); its exploitation Q is nowhere
    higher, and lower where a tried move had several outcomes (the grid's slipped move)."""
    load_config_change("icrl-v2.4", "icrl-v2.3", exploit_spread_penalty=0.1)
    v2_4_ref, v2_3_ref = REFERENCES["icrl-v2.4"]["cases"], REFERENCES["icrl-v2.3"]["cases"]
    for case in maker.CASES:
        np.testing.assert_allclose(
            v2_4_ref[case]["optimism"]["true"]["q"], v2_3_ref[case]["optimism"]["true"]["q"], rtol=RTOL, atol=ATOL
        )
        exploit_4, exploit_3 = (np.asarray(ref[case]["optimism"]["false"]["q"]) for ref in (v2_4_ref, v2_3_ref))
        assert (exploit_4 <= exploit_3 + ATOL).all(), case
    grid_4, grid_3 = (np.asarray(ref["grid_with_terminal_transitions"]["optimism"]["false"]["q"])
                      for ref in (v2_4_ref, v2_3_ref))
    assert np.abs(grid_4 - grid_3).max() > 1e-3


def test_icrl_v2_5_is_icrl_v2_4_with_three_spread_bonuses_per_episode():
    """icrl-v2.5 (configs/v2_5.yaml, no training step) = icrl-v2.4's tensors + ``spread_bonus_per_episode: 3``.
    Its exploitation Q equals icrl-v2.4's in every case (offline behaviour unchanged). Its exploring plan values no
    state higher at the full horizon (at most three bonuses per episode instead of one per step), and lower where
    slippery moves repeat over many steps (the chain, the step costs). A single Q entry can come out a little
    higher (the grid: 4e-5): with the value cap a lower layer's values, capped less often, can spread more."""
    load_config_change("icrl-v2.5", "icrl-v2.4", spread_bonus_per_episode=3)
    assert_same_exploitation_q("icrl-v2.5", "icrl-v2.4")
    v2_5_ref, v2_4_ref = REFERENCES["icrl-v2.5"]["cases"], REFERENCES["icrl-v2.4"]["cases"]
    for case in maker.CASES:
        explore_5, explore_4 = (np.asarray(ref[case]["optimism"]["true"]["q"], dtype=np.float64)
                                for ref in (v2_5_ref, v2_4_ref))
        values_5, values_4 = (np.nanmax(np.where(np.isfinite(q[-1]), q[-1], np.nan), -1) for q in (explore_5, explore_4))
        assert (values_5 <= values_4 * (1 + RTOL) + ATOL).all(), case
    for case in ("chain_small_early_reward", "negative_step_costs"):
        explore_5, explore_4 = (np.asarray(ref[case]["optimism"]["true"]["q"], dtype=np.float64)
                                for ref in (v2_5_ref, v2_4_ref))
        assert np.nanmax(np.abs(np.nan_to_num(explore_5 - explore_4))) > 1e-3, case


def test_icrl_v2_6_is_icrl_v2_5_with_a_learned_missing_mass_as_a_limited_bonus():
    """icrl-v2.6 (``python -m icrl_agent.pretraining missing-mass``: only the new missing-mass head trained) =
    icrl-v2.5's tensors + that head, planning with ``explore_unknown: learned_missing_mass``,
    ``tried_unknown_limited`` and ``tried_unknown_worth_after_goal: once``. Its exploitation Q equals icrl-v2.5's in
    every case (offline behaviour unchanged); its exploring Q differs in every case. Where no positive reward was
    seen (the step costs), a tried pair's bonus toward the unknown successor only adds: no state is worth less."""
    load_missing_mass_change("icrl-v2.6")
    assert_same_exploitation_q("icrl-v2.6", "icrl-v2.5")
    v2_6_ref, v2_5_ref = REFERENCES["icrl-v2.6"]["cases"], REFERENCES["icrl-v2.5"]["cases"]
    for case in maker.CASES:
        explore_6, explore_5 = (np.asarray(ref[case]["optimism"]["true"]["q"], dtype=np.float64)
                                for ref in (v2_6_ref, v2_5_ref))
        assert np.nanmax(np.abs(np.nan_to_num(explore_6 - explore_5))) > 1e-3, case
    costs_6, costs_5 = (np.asarray(ref["negative_step_costs"]["optimism"]["true"]["q"], dtype=np.float64).max(-1)
                        for ref in (v2_6_ref, v2_5_ref))
    assert (costs_6 >= costs_5 * (1 - RTOL) - ATOL).all() and (costs_6[-1] > costs_5[-1]).all()


def test_icrl_v2_7_is_icrl_v2_6_with_one_goal_worth_at_least_an_episode_of_move_costs():
    """icrl-v2.7 (icrl-v2.6's command with ``unknown_worth_after_goal: once_or_episode_cost``) = icrl-v2.6's tensors
    bit for bit, planning with that one rule more. Its exploitation Q equals icrl-v2.6's in every case (offline
    behaviour unchanged). Its exploring Q equals icrl-v2.6's where a positive reward came without an episode's end
    (the chain, the unvisited pairs) or none came (the step costs), and is lower where the only positive rewards
    ended episodes and moves are free (the grid's goal): one more goal, not one per step to go."""
    new, _ = load_missing_mass_change("icrl-v2.7", unknown_worth_after_goal="once_or_episode_cost")
    v2_6_tensors = model("icrl-v2.6").state_dict()
    assert all(torch.equal(t, v2_6_tensors[k]) for k, t in new.state_dict().items())
    assert_same_exploitation_q("icrl-v2.7", "icrl-v2.6")
    v2_7_ref, v2_6_ref = REFERENCES["icrl-v2.7"]["cases"], REFERENCES["icrl-v2.6"]["cases"]
    for case in ("chain_small_early_reward", "unvisited_pairs_and_a_new_state", "negative_step_costs"):
        np.testing.assert_allclose(v2_7_ref[case]["optimism"]["true"]["q"], v2_6_ref[case]["optimism"]["true"]["q"],
                                   rtol=RTOL, atol=ATOL, err_msg=case)
    grid_7, grid_6 = (np.nan_to_num(np.asarray(ref["grid_with_terminal_transitions"]["optimism"]["true"]["q"],
                                               dtype=np.float64)) for ref in (v2_7_ref, v2_6_ref))
    assert (grid_7 <= grid_6 + RTOL * np.abs(grid_6) + ATOL).all() and (grid_6 - grid_7).max() > 1e-3


def test_icrl_v2_8_is_icrl_v2_7_with_one_more_goal_worth_at_least_the_goal_seen():
    """icrl-v2.8 (icrl-v2.7's command with ``unknown_worth_after_goal: once_or_goal_or_episode_cost``) = icrl-v2.7's
    tensors bit for bit, planning with that one rule more. In every reference case both of its plans equal
    icrl-v2.7's: the rule acts only where a goal's pair ended fewer than about half of its visits (a goal entered
    by slips), which no case holds; ``tests/test_model_planning.py`` tests it where it acts."""
    new, _ = load_missing_mass_change("icrl-v2.8", unknown_worth_after_goal="once_or_goal_or_episode_cost")
    v2_7_tensors = model("icrl-v2.7").state_dict()
    assert all(torch.equal(t, v2_7_tensors[k]) for k, t in new.state_dict().items())
    assert_same_exploitation_q("icrl-v2.8", "icrl-v2.7")
    v2_8_ref, v2_7_ref = REFERENCES["icrl-v2.8"]["cases"], REFERENCES["icrl-v2.7"]["cases"]
    for case in maker.CASES:
        np.testing.assert_allclose(v2_8_ref[case]["optimism"]["true"]["q"], v2_7_ref[case]["optimism"]["true"]["q"],
                                   rtol=RTOL, atol=ATOL, err_msg=f"{case}, optimism true")
