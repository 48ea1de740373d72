"""The network: dense and sparse paths agree, equivariance, exact planning inside, edge cases."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from icrl_agent.model import IcrlModel, ModelConfig, ModelOutput
from icrl_agent.model_inputs import StatsBatch
from icrl_agent.solvers import finite_horizon_q

SMALL = {"d_model": 32, "n_heads": 4, "n_rounds": 3}


def random_stats(rng: np.random.Generator, n_states: int, n_actions: int, max_visits: int = 6) -> dict:
    """Statistics of random samples from a random sparse MDP, with unvisited pairs and terminations."""
    counts = np.zeros((n_states, n_actions))
    transitions = np.zeros((n_states, n_actions, n_states))
    terminal = np.zeros((n_states, n_actions))
    r_sum, r_sq = np.zeros((n_states, n_actions)), np.zeros((n_states, n_actions))
    for s in range(n_states):
        for a in range(n_actions):
            if rng.random() < 0.3:
                continue
            support = rng.choice(n_states, size=min(n_states, 2), replace=False)
            mean_reward = rng.choice([0.0, 0.0, 1.0, -0.3, 5.0])
            for _ in range(rng.integers(1, max_visits + 1)):
                counts[s, a] += 1
                if rng.random() < 0.15:
                    terminal[s, a] += 1
                else:
                    transitions[s, a, rng.choice(support)] += 1
                r = mean_reward + 0.5 * rng.standard_normal() * (mean_reward != 0)
                r_sum[s, a] += r
                r_sq[s, a] += r * r
    n = np.maximum(counts, 1)
    mean = r_sum / n
    initial = np.zeros(n_states)
    initial[0] = 3
    return {
        "counts": counts,
        "reward_mean": mean,
        "reward_var": np.maximum(r_sq / n - mean**2, 0),
        "transitions": transitions,
        "terminal_counts": terminal,
        "initial_counts": initial,
    }


def to_batch(mdps: list[dict], horizons: list[int], pad_states: int = 0, pad_actions: int = 0) -> StatsBatch:
    n_states = max(m["counts"].shape[0] for m in mdps) + pad_states
    n_actions = max(m["counts"].shape[1] for m in mdps) + pad_actions
    b = len(mdps)
    out = {
        k: torch.zeros(b, n_states, n_actions, dtype=torch.float64)
        for k in ("counts", "reward_mean", "reward_var", "terminal_counts")
    }
    out["transitions"] = torch.zeros(b, n_states, n_actions, n_states, dtype=torch.float64)
    out["initial_counts"] = torch.zeros(b, n_states, dtype=torch.float64)
    state_mask = torch.zeros(b, n_states, dtype=torch.bool)
    action_mask = torch.zeros(b, n_actions, dtype=torch.bool)
    for i, m in enumerate(mdps):
        s, a = m["counts"].shape
        for k in ("counts", "reward_mean", "reward_var", "terminal_counts"):
            out[k][i, :s, :a] = torch.as_tensor(m[k])
        out["transitions"][i, :s, :a, :s] = torch.as_tensor(m["transitions"])
        out["initial_counts"][i, :s] = torch.as_tensor(m["initial_counts"])
        state_mask[i, :s], action_mask[i, :a] = True, True
    return StatsBatch(**out, state_mask=state_mask, action_mask=action_mask, horizon=torch.tensor(horizons))


def to_sparse(m: dict) -> SimpleNamespace:
    s, a = m["counts"].shape
    src, dst = np.nonzero(m["transitions"].reshape(s * a, s))
    return SimpleNamespace(
        counts=m["counts"],
        reward_mean=m["reward_mean"],
        reward_var=m["reward_var"],
        terminal_counts=m["terminal_counts"],
        initial_counts=m["initial_counts"],
        src=src.astype(np.int64),
        dst=dst.astype(np.int64),
        count=m["transitions"].reshape(s * a, s)[src, dst].astype(np.int64),
    )


def make_model(head: str = "vi", **overrides) -> IcrlModel:
    torch.manual_seed(0)
    return IcrlModel(ModelConfig(**{**SMALL, "head": head, **overrides})).double()


@pytest.mark.parametrize("head", ["vi", "gat_policy"])
@pytest.mark.parametrize("optimism", [True, False])
def test_dense_and_sparse_paths_agree(head, optimism):
    model = make_model(head)
    mdp = random_stats(np.random.default_rng(1), 9, 3)
    dense = model(to_batch([mdp], [12]), optimism=optimism)
    sparse = model.forward_sparse(to_sparse(mdp), 12, optimism=optimism)
    for name in ("q", "temperature", "reward_scale"):
        torch.testing.assert_close(getattr(sparse, name), getattr(dense, name), atol=1e-5, rtol=1e-5)


def test_sparse_path_sums_duplicate_edges():
    model = make_model()
    mdp = random_stats(np.random.default_rng(2), 5, 2)
    sp = to_sparse(mdp)
    first = model.forward_sparse(sp, 6).q
    half = sp.count // 2
    doubled = SimpleNamespace(
        **{
            **vars(sp),
            "src": np.concatenate([sp.src, sp.src]),
            "dst": np.concatenate([sp.dst, sp.dst]),
            "count": np.concatenate([half, sp.count - half]),
        }
    )
    torch.testing.assert_close(model.forward_sparse(doubled, 6).q, first)


def test_permuting_states_and_actions_permutes_the_output():
    model = make_model()
    batch = to_batch([random_stats(np.random.default_rng(3), 7, 4)], [9])
    ps, pa = torch.randperm(7, generator=torch.Generator().manual_seed(0)), torch.tensor([2, 0, 3, 1])
    permuted = StatsBatch(
        counts=batch.counts[:, ps][:, :, pa],
        reward_mean=batch.reward_mean[:, ps][:, :, pa],
        reward_var=batch.reward_var[:, ps][:, :, pa],
        transitions=batch.transitions[:, ps][:, :, pa][..., ps],
        terminal_counts=batch.terminal_counts[:, ps][:, :, pa],
        initial_counts=batch.initial_counts[:, ps],
        state_mask=batch.state_mask[:, ps],
        action_mask=batch.action_mask[:, pa],
        horizon=batch.horizon,
    )
    out, out_p = model(batch), model(permuted)
    torch.testing.assert_close(out_p.q, out.q[:, :, ps][..., pa])
    torch.testing.assert_close(out_p.temperature, out.temperature[:, ps])
    torch.testing.assert_close(out_p.reward_scale, out.reward_scale)


@pytest.mark.parametrize("optimism", [True, False])
def test_without_corrections_the_model_plans_exactly_on_the_empirical_mdp(optimism):
    model = make_model()
    mdp = random_stats(np.random.default_rng(4), 8, 3)
    horizon = 15
    q = model(to_batch([mdp], [horizon]), optimism=optimism, corrections=False).q[0]
    p_hat = mdp["transitions"] / np.maximum(mdp["counts"], 1)[..., None]  # terminal mass: value 0
    exact = finite_horizon_q(p_hat, mdp["reward_mean"], horizon)  # indexed by steps to go, like the model
    torch.testing.assert_close(q, exact, atol=1e-9, rtol=1e-9)
    sparse_q = model.forward_sparse(to_sparse(mdp), horizon, optimism=optimism, corrections=False).q[0]
    torch.testing.assert_close(sparse_q, exact, atol=1e-9, rtol=1e-9)


def test_with_huge_counts_the_optimistic_model_converges_to_plain_vi():
    model = make_model()
    mdp = random_stats(np.random.default_rng(5), 6, 3)
    mdp["counts"][:] = np.maximum(mdp["counts"], 1)  # every pair visited
    base = mdp["transitions"].sum(-1) + mdp["terminal_counts"]
    empty = base == 0
    mdp["transitions"][empty, 0] = 1
    mdp["counts"] = mdp["transitions"].sum(-1) + mdp["terminal_counts"]
    gaps = []
    for factor in (1.0, 1e4, 1e10):
        big = {
            **mdp,
            "counts": mdp["counts"] * factor,
            "transitions": mdp["transitions"] * factor,
            "terminal_counts": mdp["terminal_counts"] * factor,
        }
        batch = to_batch([big], [30])
        gaps.append((model(batch).q - model(batch, corrections=False).q).abs().max().item())
    assert gaps[0] > 1e-2  # the corrections do act on small counts...
    assert gaps[2] < 1e-3 * gaps[0]  # ...and vanish as the counts grow
    assert gaps[2] < gaps[1] < gaps[0]


def test_padding_does_not_change_outputs():
    model = make_model()
    rng = np.random.default_rng(6)
    mdps = [random_stats(rng, 5, 2), random_stats(rng, 8, 4)]
    alone = [model(to_batch([m], [h])) for m, h in zip(mdps, [7, 11], strict=True)]
    padded_batch = to_batch(mdps, [7, 11], pad_states=3, pad_actions=1)
    for name in ("counts", "transitions", "reward_mean", "reward_var", "terminal_counts"):
        t = getattr(padded_batch, name)
        real = padded_batch.state_mask[:, :, None] & padded_batch.action_mask[:, None, :]
        real = real.reshape(real.shape + (1,) * (t.dim() - 3))
        t[~real.expand_as(t)] = 7.0  # garbage in padded slots must not leak
    padded = model(padded_batch)
    for i, (m, out) in enumerate(zip(mdps, alone, strict=True)):
        s, a = m["counts"].shape
        h = int(out.q.shape[1])
        torch.testing.assert_close(padded.q[i, :h, :s, :a], out.q[0])
        torch.testing.assert_close(padded.temperature[i, :s], out.temperature[0])
        torch.testing.assert_close(padded.reward_scale[i], out.reward_scale[0])
        assert torch.all(padded.q[i, :, s:] == 0) and torch.all(padded.q[i, :, :, a:] == 0)


@pytest.mark.parametrize("head", ["vi", "gat_policy"])
def test_gradients_reach_every_parameter(head):
    model = make_model(head)
    batch = to_batch([random_stats(np.random.default_rng(7), 6, 3) for _ in range(2)], [5, 8])
    out = model(batch)
    logits = out.logits(batch.horizon)
    loss = logits.masked_fill(torch.isinf(logits), 0).pow(2).sum() + out.q.sum() + out.reward_scale.sum()
    loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not silent


def test_optimism_parameters_are_few_and_switch_off_with_optimism():
    model = make_model()
    params = model.optimism_parameters()
    assert len(params) == 4 and sum(p.numel() for p in params) == 4
    assert all(any(p is q for q in model.parameters()) for p in params)
    batch = to_batch([random_stats(np.random.default_rng(8), 6, 3)], [10])
    model(batch, optimism=False).q.sum().backward()
    assert model.log_bonus_gain.grad is None or model.log_bonus_gain.grad == 0
    assert model.kappa_raw.grad is None or model.kappa_raw.grad == 0
    assert make_model("gat_policy").optimism_parameters() == []


def test_optimism_makes_untried_actions_attractive():
    rng = np.random.default_rng(9)
    mdp = random_stats(rng, 6, 3)
    mdp["reward_mean"][:] = 0.0  # nothing rewarding seen yet
    mdp["reward_var"][:] = 0.0
    mdp["counts"][:, 1:] = 0
    mdp["transitions"][:, 1:] = 0
    mdp["terminal_counts"][:, 1:] = 0
    mdp["counts"][:, 0] = mdp["transitions"][:, 0].sum(-1) + mdp["terminal_counts"][:, 0] + 1
    mdp["transitions"][:, 0, 0] += 1
    q = make_model()(to_batch([mdp], [20])).q[0, -1]
    assert torch.all(q[:, 1:] > q[:, :1])


@pytest.mark.parametrize("head", ["vi", "gat_policy"])
def test_single_state_single_action(head):
    model = make_model(head)
    mdp = {
        "counts": np.array([[3.0]]),
        "reward_mean": np.array([[0.5]]),
        "reward_var": np.array([[0.0]]),
        "transitions": np.array([[[3.0]]]),
        "terminal_counts": np.array([[0.0]]),
        "initial_counts": np.array([1.0]),
    }
    dense = model(to_batch([mdp], [4]))
    assert dense.q.shape == (1, 4, 1, 1) and torch.isfinite(dense.q).all()
    torch.testing.assert_close(model.forward_sparse(to_sparse(mdp), 4).q, dense.q)
    empty = {k: np.zeros_like(v) for k, v in mdp.items()}  # nothing seen at all
    out = model.forward_sparse(to_sparse(empty), 3)
    assert torch.isfinite(out.q).all() and torch.all(out.temperature > 0)


def test_logits_mask_invalid_actions_and_temperature_is_positive():
    model = make_model()
    batch = to_batch(
        [random_stats(np.random.default_rng(10), 4, 2), random_stats(np.random.default_rng(11), 5, 3)], [3, 6]
    )
    out = model(batch)
    assert isinstance(out, ModelOutput) and out.q.shape == (2, 6, 5, 3)
    logits = out.logits(torch.tensor([3, 6]))
    assert torch.all(logits[0, :, 2] == float("-inf")) and torch.isfinite(logits[1]).all()
    assert torch.all(out.temperature > 0) and torch.all(out.reward_scale > 0)
    with pytest.raises(ValueError, match="steps_to_go"):
        out.logits(torch.tensor([0, 7]))


@pytest.mark.parametrize("planning", [{}, {"explore_unknown": "untried_only", "spread_bonus": 0.3}])
def test_rewards_are_scale_free(planning):
    model = make_model()
    model.config = dataclasses.replace(model.config, **planning)
    mdp = random_stats(np.random.default_rng(12), 6, 3)
    out = model(to_batch([mdp], [8]))
    scaled = model(
        to_batch(
            [{**mdp, "reward_mean": 100 * mdp["reward_mean"], "reward_var": 1e4 * mdp["reward_var"]}], [8]
        )
    )
    torch.testing.assert_close(scaled.q, 100 * out.q)
    torch.testing.assert_close(scaled.reward_scale, 100 * out.reward_scale)
    assert torch.all(out.reward_scale >= (np.abs(mdp["reward_mean"]) + np.sqrt(mdp["reward_var"])).max())


def test_the_policy_heads_scores_do_not_change_with_the_reward_unit():
    model = make_model("gat_policy")
    mdp = random_stats(np.random.default_rng(12), 6, 3)
    out = model(to_batch([mdp], [8]))
    scaled = model(
        to_batch(
            [{**mdp, "reward_mean": 100 * mdp["reward_mean"], "reward_var": 1e4 * mdp["reward_var"]}], [8]
        )
    )
    torch.testing.assert_close(scaled.q, out.q)


@pytest.mark.parametrize("scale_inputs", ["embedding", "embedding_and_features"])
def test_the_output_holds_the_batchs_masks_and_the_scale_the_scale_head_gives(scale_inputs):
    model = make_model(scale_inputs=scale_inputs)
    batch = to_batch([random_stats(np.random.default_rng(3), 5, 3)], [6], pad_states=2, pad_actions=1)
    out = model(batch)
    torch.testing.assert_close(out.state_mask, batch.state_mask.bool())
    torch.testing.assert_close(out.action_mask, batch.action_mask.bool())
    torch.testing.assert_close(out.reward_scale, model.reward_scale(batch))


def test_bad_input_is_refused_clearly():
    model = make_model()
    batch = to_batch([random_stats(np.random.default_rng(13), 4, 2)], [5])
    with pytest.raises(ValueError, match="horizon"):
        model(StatsBatch(**{**vars(batch), "horizon": torch.tensor([0])}))
    with pytest.raises(ValueError, match="max_horizon"):
        model.forward_sparse(to_sparse(random_stats(np.random.default_rng(13), 4, 2)), 10**6)
    with pytest.raises(ValueError, match="transitions"):
        model(StatsBatch(**{**vars(batch), "transitions": batch.transitions[..., :3]}))
    with pytest.raises(ValueError, match="n_heads"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="head"):
        ModelConfig(head="mlp")
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({"d_model": 32, "depth": 3})


@pytest.mark.parametrize("cap", [0.5, 1.0, 10.0])
def test_any_positive_reward_pseudo_count_cap_builds_and_starts_below_it(cap):
    model = IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=1, max_pseudo_count=cap))
    start = cap * torch.sigmoid(model.sa_head[-1].bias[0].detach())
    assert 0 < float(start) < cap and abs(float(start) - min(1.0, cap / 2)) < 1e-5
