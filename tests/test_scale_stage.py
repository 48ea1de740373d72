"""The scale stage (icrl-v2 groundwork) and ``init_from``: the pinball loss, what moves, resume, the model card."""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from icrl_agent.checkpoint import checkpoint_sha256, load_checkpoint, save_checkpoint
from icrl_agent.model import IcrlModel, ModelConfig
from icrl_agent.pretraining.config import PretrainConfig, config_from_dict, load_config
from icrl_agent.pretraining.data import sample_training_batch
from icrl_agent.pretraining.train import (
    Stage1Loss,
    build_model,
    evaluate,
    init_from_checkpoint,
    policy_loss,
    scale_coverage,
    scale_loss,
    stage1_scale_quantile,
    train,
)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
V2_SCALE = REPO / "configs" / "v2.yaml"
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(tmp_path: Path, quantile_head: bool = True, **sections) -> PretrainConfig:
    """configs/tiny.yaml under ``tmp_path``, no stage 1 or ES unless asked, a quantile scale head by default."""
    cfg = load_config(TINY)
    defaults = {"stage1": {"steps": 0}, "es": {"generations": 0},
                "scale": {"steps": 4, "batch_size": 8, "eval_interval": 2, "eval_batch_size": 4}}
    parts = {name: replace(getattr(cfg, name), **{**defaults.get(name, {}), **sections.get(name, {})})
             for name in {*defaults, *sections}}
    if quantile_head:
        parts["model"] = replace(parts.get("model", cfg.model), scale_head="quantile")
    return replace(cfg, out_dir=str(tmp_path), log_dir="", checkpoint_dir=str(tmp_path / "ck"), progress=False,
                   **parts)


def saved_weights(checkpoint_dir: str | Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(Path(checkpoint_dir) / "last.safetensors"))
    return {k: v for k, v in tensors.items() if k.startswith("model.") or k.startswith("optim_scale.")}


# --- the loss ---

def _hand_batch() -> SimpleNamespace:
    """Three one-state MDPs with true max |R| 1, 2 and 4; the data of the third shows no reward."""
    R = torch.tensor([[[1.0, -0.5]], [[0.0, -2.0]], [[4.0, 1.0]]])
    stats = SimpleNamespace(counts=torch.ones(3, 1, 2), reward_mean=torch.tensor([[[1.0, 0.0]], [[0.0, -2.0]],
                                                                                 [[0.0, 0.0]]]))
    mdps = SimpleNamespace(R=R, state_mask=torch.ones(3, 1, dtype=torch.bool),
                           action_mask=torch.ones(3, 2, dtype=torch.bool))
    return SimpleNamespace(mdps=mdps, stats=stats)


def test_pinball_loss_and_coverage_on_a_hand_computed_case():
    batch = _hand_batch()
    # MDP 0 estimated e times too low (u = +1), MDP 1 e^2 times too high (u = -2), MDP 2 does not count
    estimate = torch.tensor([1.0 / math.e, 2.0 * math.e ** 2, 1e-9])
    # tau = 0.25: 0.25 * 1 and (1 - 0.25) * 2, averaged over the two MDPs that count
    assert float(scale_loss(estimate, batch, 0.25)) == pytest.approx((0.25 + 1.5) / 2, rel=1e-6)
    assert float(scale_loss(estimate, batch, 0.9)) == pytest.approx((0.9 + 0.2) / 2, rel=1e-6)
    assert float(scale_loss(estimate, batch)) == pytest.approx((1.0 + 4.0) / 2, rel=1e-6)  # squared (icrl-v1)
    assert scale_coverage(estimate, batch) == 0.5  # MDP 1 covered (true <= estimate), MDP 0 not
    exact = torch.tensor([1.0, 2.0, 123.0])
    assert float(scale_loss(exact, batch, 0.7)) < 1e-7 and scale_coverage(exact, batch) == 1.0
    nothing_seen = SimpleNamespace(mdps=batch.mdps, stats=SimpleNamespace(counts=batch.stats.counts,
                                                                          reward_mean=torch.zeros(3, 1, 2)))
    assert math.isnan(scale_coverage(estimate, nothing_seen)) and float(scale_loss(estimate, nothing_seen, 0.5)) == 0


def test_stage1_uses_the_pinball_loss_only_for_a_quantile_head(tmp_path):
    gain, quantile = tiny_config(tmp_path, quantile_head=False), tiny_config(tmp_path, scale={"quantile": 0.8})
    assert stage1_scale_quantile(gain) is None and stage1_scale_quantile(quantile) == 0.8
    batch = sample_training_batch(16, quantile.train_families, quantile.prior, quantile.data,
                                  torch.Generator().manual_seed(2))
    model = build_model(quantile, CPU)
    with torch.no_grad():
        loss, _ = Stage1Loss(model, False, 0.5, stage1_scale_quantile(quantile))(batch)
        out = model(batch.stats, optimism=False)
        ce, _ = policy_loss(out.logits(batch.steps_to_go).float(), batch)
    assert float(loss) == pytest.approx(float(ce + 0.5 * scale_loss(out.reward_scale, batch, 0.8)), rel=1e-6)
    assert float(scale_loss(out.reward_scale, batch, 0.8)) != pytest.approx(float(scale_loss(out.reward_scale, batch)))


# --- the model's scale alone ---

@pytest.mark.parametrize("scale_head", ["gain", "quantile"])
@pytest.mark.parametrize("scale_inputs", ["embedding", "embedding_and_features"])
def test_reward_scale_alone_equals_the_forward_pass_and_only_reaches_the_scale_head(scale_head, scale_inputs):
    torch.manual_seed(0)
    model = IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2, scale_head=scale_head, scale_inputs=scale_inputs))
    cfg = load_config(TINY)
    batch = sample_training_batch(8, cfg.train_families, cfg.prior, cfg.data, torch.Generator().manual_seed(5))
    alone = model.reward_scale(batch.stats)
    assert torch.allclose(alone, model(batch.stats).reward_scale, rtol=1e-6, atol=0)
    alone.log().sum().backward()
    moved = {name for name, p in model.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)}
    assert moved and moved <= {n for n, _ in model.named_parameters() if n.startswith("scale_head.")} | {
        "log_scale_gain"}


def test_a_scale_head_reading_the_features_reads_them_beside_the_embedding():
    torch.manual_seed(0)
    both = IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2, scale_head="quantile",
                                 scale_inputs="embedding_and_features"))
    embedding_only = IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2, scale_head="quantile"))
    weights = both.state_dict()
    first = weights["scale_head.0.weight"]
    assert first.shape == (16, 16 + 15)  # g, then the 15 global features
    embedding_only.load_state_dict({**weights, "scale_head.0.weight": first[:, :16]})
    cfg = load_config(TINY)
    batch = sample_training_batch(8, cfg.train_families, cfg.prior, cfg.data, torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert not torch.allclose(both.reward_scale(batch.stats), embedding_only.reward_scale(batch.stats))
        first[:, 16:] = 0.0  # without the features' weights the two heads agree
        both.load_state_dict({**weights, "scale_head.0.weight": first})
        assert torch.allclose(both.reward_scale(batch.stats), embedding_only.reward_scale(batch.stats), rtol=1e-6)
    with pytest.raises(ValueError, match="scale_inputs"):
        ModelConfig(scale_inputs="features")


# --- the stage ---

def test_the_scale_stage_moves_only_the_scale_head(tmp_path):
    cfg = tiny_config(tmp_path, scale={"steps": 5})
    fresh = build_model(cfg, CPU).state_dict()
    result = train(cfg)
    assert result["finished"] and result["scale_step"] == 5 and result["step"] == 0
    after = result["model"].state_dict()
    changed = sorted(k for k in fresh if not torch.equal(fresh[k], after[k]))
    assert changed and all(k.startswith("scale_head.") for k in changed), changed
    assert {"scale_head.0.weight", "scale_head.2.weight"} <= set(changed)
    card = json.loads(Path(result["weights"]).with_suffix(".json").read_text())
    assert card["training"]["scale_steps"] == 5 and card["training"]["init_from"] is None
    metrics = card["training"]["metrics"]
    assert "scale/loss" in metrics and "scale/river/coverage" in metrics and "scale/tree/coverage" in metrics
    assert "final/river/scale_coverage" in metrics


def test_every_scale_step_draws_fresh_mdps_and_the_seed_fixes_them(tmp_path, monkeypatch):
    train_module = importlib.import_module("icrl_agent.pretraining.train")

    drawn: list[torch.Tensor] = []

    def spy(batch_size, *args, **kwargs):
        batch = sample_training_batch(batch_size, *args, **kwargs)
        if batch_size == 8:  # the stage's batches (the evaluations use 4)
            drawn.append(batch.mdps.R.clone())
        return batch

    monkeypatch.setattr(train_module, "sample_training_batch", spy)
    for seed in (0, 0, 1):
        train(replace(tiny_config(tmp_path / str(len(drawn))), seed=seed))
    first, again, other = drawn[:4], drawn[4:8], drawn[8:]
    assert all(not torch.equal(a, b) for i, a in enumerate(first) for b in first[i + 1:] if a.shape == b.shape)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other, strict=True))


def _episodes_per_mdp(batch) -> torch.Tensor:
    return batch.stats.initial_counts.sum(-1)


def test_online_scale_examples_are_the_models_own_episodes_from_empty_statistics(tmp_path, monkeypatch):
    train_module = importlib.import_module("icrl_agent.pretraining.train")
    cfg = tiny_config(tmp_path, scale={"batch_size": 8, "online_prob": 0.25, "online_episodes": 2},
                      data={"min_episodes": 20, "max_episodes": 32, "zero_data_prob": 0.0})
    model = build_model(cfg, CPU)

    def always_last_action(stats):  # a planner whose greedy action is the last one everywhere
        b, s, a = stats.counts.shape
        return torch.arange(a, dtype=torch.float32).expand(b, int(stats.horizon.max()), s, a).clone()

    monkeypatch.setattr(train_module, "greedy_planner", lambda m: always_last_action)
    random_part, online = train_module.scale_batches(cfg, model, torch.Generator().manual_seed(0), CPU)
    assert (random_part.mdps.batch_size, online.mdps.batch_size) == (6, 2)
    assert bool((_episodes_per_mdp(random_part) >= 20).all())
    episodes = _episodes_per_mdp(online)
    assert bool(((episodes >= 1) & (episodes <= 2)).all())
    last = online.mdps.action_mask.sum(-1) - 1  # every count sits on each MDP's last action
    counts = online.stats.counts
    on_last = counts.gather(2, last[:, None, None].expand(-1, counts.shape[1], 1)).sum((1, 2))
    assert bool((on_last == counts.sum((1, 2))).all()) and bool((on_last > 0).all())


def test_without_online_examples_the_scale_batches_are_the_uniform_epsilon_batch(tmp_path):
    cfg = tiny_config(tmp_path, scale={"batch_size": 8})
    (only,) = importlib.import_module("icrl_agent.pretraining.train").scale_batches(
        cfg, build_model(cfg, CPU), torch.Generator().manual_seed(3), CPU)
    expected = sample_training_batch(8, cfg.train_families, cfg.prior, cfg.data, torch.Generator().manual_seed(3), CPU)
    assert torch.equal(only.mdps.R, expected.mdps.R) and torch.equal(only.stats.counts, expected.stats.counts)


@pytest.mark.parametrize("online_prob", [0.5, 1.0])  # 1.0: the loss has nothing but the model's own episodes
def test_the_scale_stage_with_online_examples_moves_only_the_scale_head(tmp_path, online_prob):
    cfg = tiny_config(tmp_path, scale={"steps": 3, "online_prob": online_prob, "online_episodes": 3})
    fresh = build_model(cfg, CPU).state_dict()
    result = train(cfg)
    after = result["model"].state_dict()
    changed = sorted(k for k in fresh if not torch.equal(fresh[k], after[k]))
    assert changed and all(k.startswith("scale_head.") for k in changed), changed
    card = json.loads(Path(result["weights"]).with_suffix(".json").read_text())
    assert math.isfinite(card["training"]["metrics"]["scale/loss"])


def _pooled_coverage_and_loss(model: IcrlModel, cfg: PretrainConfig, quantile: float) -> tuple[float, float]:
    batch = sample_training_batch(256, cfg.train_families, cfg.prior, cfg.data, torch.Generator().manual_seed(77))
    with torch.no_grad():
        estimate = model.reward_scale(batch.stats)
    return scale_coverage(estimate, batch), float(scale_loss(estimate, batch, quantile))


@pytest.mark.parametrize("quantile", [0.75, 0.9])
def test_coverage_moves_to_the_quantile_and_the_pinball_loss_drops(tmp_path, quantile):
    # (the estimate is >= c, the largest reward seen, so coverage cannot fall below the share of MDPs whose
    # largest reward was already seen: 0.41 on this prior; the fresh head starts at 0.58)
    cfg = tiny_config(tmp_path, scale={"steps": 80, "batch_size": 16, "lr": 0.01, "quantile": quantile,
                                       "eval_interval": 80})
    before, loss_before = _pooled_coverage_and_loss(build_model(cfg, CPU), cfg, quantile)
    result = train(cfg)
    after, loss_after = _pooled_coverage_and_loss(result["model"], cfg, quantile)
    assert loss_after < 0.9 * loss_before
    assert abs(after - quantile) < abs(before - quantile) and abs(after - quantile) < 0.1, (before, after)


def test_scale_stage_resume_equals_an_uninterrupted_run(tmp_path):
    sections = {"stage1": {"steps": 2}, "scale": {"steps": 5}, "es": {"generations": 1}}
    straight = replace(tiny_config(tmp_path / "a", **sections), checkpoint_interval=2)
    train(straight)
    interrupted = replace(tiny_config(tmp_path / "b", **sections), checkpoint_interval=2)
    first = train(interrupted, stop_after=3)  # stage 1, then one scale step
    assert not first["finished"] and (first["step"], first["scale_step"]) == (2, 1)
    second = train(interrupted, resume=True, stop_after=3)  # scale steps 2..4 (a checkpoint at 2 and 4)
    assert not second["finished"] and (second["scale_step"], second["generation"]) == (4, 0)
    last = train(interrupted, resume=True)
    assert last["finished"] and (last["scale_step"], last["generation"]) == (5, 1)
    a, b = saved_weights(straight.checkpoint_dir), saved_weights(interrupted.checkpoint_dir)
    assert any(k.startswith("optim_scale.") for k in a)  # the scale stage's Adam state is in the checkpoint
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((Path(interrupted.checkpoint_dir) / "last.json").read_text())["scale_step"] == 5


def test_evaluate_reports_the_scale_coverage_beside_the_log_error(tmp_path):
    cfg = tiny_config(tmp_path)
    scores = evaluate(build_model(cfg, CPU), cfg, ["garnet", "river"], CPU, online_episodes=0)
    for family in ("garnet", "river"):
        assert 0.0 <= scores[f"{family}/scale_coverage"] <= 1.0 and f"{family}/scale_log_error" in scores


# --- init_from ---

def test_init_from_copies_matching_parameters_and_reports_the_rest(tmp_path):
    gain_cfg = tiny_config(tmp_path, quantile_head=False)
    source = replace(gain_cfg, seed=7)
    source_model = build_model(source, CPU)
    with torch.no_grad():
        source_model.log_scale_gain.fill_(-1.5)
    save_checkpoint(tmp_path / "src", source_model, source.to_dict(), {})
    cfg = replace(tiny_config(tmp_path), init_from=str(tmp_path / "src"))
    fresh = build_model(cfg, CPU)
    rng = torch.get_rng_state()
    model = build_model(cfg, CPU)
    report = init_from_checkpoint(model, cfg.init_from)
    assert torch.equal(torch.get_rng_state(), rng)  # reading the source leaves the run's RNG alone
    theirs, ours, fresh_sd = source_model.state_dict(), model.state_dict(), fresh.state_dict()
    assert report["sha256"] == checkpoint_sha256(tmp_path / "src")
    assert report["new"] == ["scale_head.0.weight", "scale_head.0.bias", "scale_head.2.weight", "scale_head.2.bias"]
    assert report["unused"] == ["scale_head.bias", "scale_head.weight"] and report["shape_differs"] == []
    assert report["reset"] == ["log_scale_gain"] and model.log_scale_gain.item() == 0.0  # gain 1 in quantile mode
    assert set(report["copied"]) == set(ours) - set(report["new"]) - set(report["reset"])
    assert all(torch.equal(ours[k], theirs[k]) for k in report["copied"])
    assert all(torch.equal(ours[k], fresh_sd[k]) for k in report["new"] + report["reset"])
    # same scale-head mode: log_scale_gain is copied like the rest
    same_mode = build_model(gain_cfg, CPU)
    assert "log_scale_gain" in init_from_checkpoint(same_mode, str(tmp_path / "src"))["copied"]
    assert same_mode.log_scale_gain.item() == -1.5
    # a wider model: the shapes differ (every name matches, nearly nothing fits)
    wide = replace(cfg, model=replace(cfg.model, d_model=32))
    wide_report = init_from_checkpoint(build_model(wide, CPU), str(tmp_path / "src"))
    assert "embed_global.0.weight" in wide_report["shape_differs"]


def test_init_from_with_nothing_in_common_fails_clearly(tmp_path):
    cfg = tiny_config(tmp_path)
    # a pure-GAT model of another width: every shared name has another shape, no optimism constants
    other = ModelConfig(d_model=8, n_heads=4, n_rounds=1, head="gat_policy")
    save_checkpoint(tmp_path / "src", IcrlModel(other), {}, {})
    with pytest.raises(ValueError, match="no parameter of the checkpoint matches"):
        init_from_checkpoint(build_model(cfg, CPU), str(tmp_path / "src"))


def test_init_from_is_recorded_in_the_model_card_and_survives_resume(tmp_path):
    source = tiny_config(tmp_path / "src", quantile_head=False)
    src_model = build_model(replace(source, seed=3), CPU)
    save_checkpoint(tmp_path / "src" / "w", src_model, source.to_dict(), {})
    cfg = replace(tiny_config(tmp_path / "run", scale={"steps": 3}), init_from=str(tmp_path / "src" / "w"),
                  checkpoint_interval=1)
    assert not train(cfg, stop_after=1)["finished"]
    sha = checkpoint_sha256(tmp_path / "src" / "w.json")
    (tmp_path / "src" / "w.safetensors").unlink()  # a resumed run needs only its checkpoint
    result = train(cfg, resume=True)
    card = load_checkpoint(result["weights"])[1]["training"]
    assert card["init_from"]["sha256"] == sha
    assert card["init_from"]["reset"] == ["log_scale_gain"] and "round.query.weight" in card["init_from"]["copied"]
    final = result["model"].state_dict()
    assert torch.equal(final["round.query.weight"], src_model.state_dict()["round.query.weight"])


def test_init_from_loads_icrl_v1_into_the_v2_model(tmp_path):
    cfg = load_config(V2_SCALE)
    v1_path = REPO / "icrl_agent" / "weights" / "icrl-v1.safetensors"
    assert REPO / cfg.init_from == v1_path and cfg.model.scale_head == "quantile"  # by path, not "shipped"
    model = build_model(cfg, CPU)
    report = init_from_checkpoint(model, str(v1_path))
    v1, card = load_checkpoint(v1_path)
    assert report["sha256"] == card["sha256"] and report["reset"] == ["log_scale_gain"]
    assert report["shape_differs"] == [] and all(k.startswith("scale_head.") for k in report["new"] + report["unused"])
    v1_sd = v1.state_dict()
    assert all(torch.equal(model.state_dict()[k], v1_sd[k]) for k in report["copied"])
    assert model.log_scale_gain.exp().item() == 1.0  # gain 1: exp(softplus(mlp(g))) as the probe used


# --- configs ---

def test_v2_scale_config_is_icrl_v1_with_a_quantile_head_and_only_the_scale_stage():
    cfg = load_config(V2_SCALE)
    v1 = load_config(REPO / "configs" / "default.yaml")
    card = json.loads((REPO / "icrl_agent" / "weights" / "icrl-v1.json").read_text())
    assert cfg.model == replace(ModelConfig.from_dict(card["model_config"]), scale_head="quantile")
    assert cfg.prior == v1.prior and cfg.data == v1.data and cfg.seed == v1.seed
    assert cfg.stage1.steps == 0 and cfg.es.generations == 0 and cfg.scale.steps > 0
    assert cfg.scale.quantile == 0.5 and (cfg.out_dir, cfg.weights_name) == ("runs/v2", "icrl-v2")


def test_scale_section_rejects_unknown_keys_and_out_of_range_values():
    with pytest.raises(ValueError, match=r"scale\.mystery"):
        config_from_dict({"scale": {"mystery": 1}})
    for key, value in (("quantile", 1.0), ("quantile", 0), ("steps", -1), ("lr", 0.0), ("batch_size", 0),
                       ("online_prob", 1.5), ("online_prob", -0.1), ("online_episodes", 0)):
        with pytest.raises(ValueError, match=rf"scale\.{key}"):
            config_from_dict({"scale": {key: value}})
    with pytest.raises(ValueError, match="init_from"):
        config_from_dict({"init_from": 3})
