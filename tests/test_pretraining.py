"""Pretraining: the prior's MDPs are valid, training learns, resumes exactly, runs under torchrun, fails clearly."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from icrl_agent.checkpoint import load_checkpoint, save_checkpoint
from icrl_agent.model import ModelConfig
from icrl_agent.pretraining.config import (
    FLAT_KEY_MOVES,
    PretrainConfig,
    config_from_dict,
    flat_items,
    load_config,
    nest_flat_config,
)
from icrl_agent.pretraining.data import DataSpec, boltzmann_targets, sample_training_batch
from icrl_agent.pretraining.prior import FAMILIES, SAMPLERS, PriorSpec, _Draw, sample_mdps
from icrl_agent.pretraining.rollouts import (
    exact_values,
    greedy_action,
    normalized_returns,
    online_returns,
    optimal_q_to_go,
)
from icrl_agent.pretraining.train import build_model, scale_loss, train

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
PYTHON = sys.executable


def tiny_config(tmp_path: Path, **sections) -> PretrainConfig:
    """configs/tiny.yaml writing under ``tmp_path``; ``stage1={"steps": 60}`` overrides keys of a section."""
    cfg = load_config(TINY)
    parts = {name: replace(getattr(cfg, name), **values) for name, values in sections.items()}
    return replace(cfg, out_dir=str(tmp_path), log_dir="", checkpoint_dir=str(tmp_path / "ck"),
                   progress=False, **parts)


def saved_weights(checkpoint_dir: str | Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(Path(checkpoint_dir) / "last.safetensors"))
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


# --- the prior ---

@pytest.mark.parametrize("family", FAMILIES)
def test_family_samples_are_valid_mdps(family):
    spec = PriorSpec()
    batch = SAMPLERS[family](32, spec, _Draw(torch.Generator().manual_seed(1), torch.device("cpu")))
    assert torch.allclose(batch.P.sum(-1), torch.ones_like(batch.R), atol=1e-5)
    assert (batch.P >= 0).all()
    n_states, n_actions = batch.n_states, batch.n_actions
    assert ((n_states >= 2) & (n_states <= spec.max_states)).all()
    assert ((n_actions >= 2) & (n_actions <= spec.max_actions)).all()
    real = batch.state_mask[:, None, None, :]
    # no probability leaks from a real state into padding, and padded states go nowhere
    leak = (batch.P * ~real).sum(-1)[batch.state_mask]
    assert leak.abs().max() < 1e-6
    assert torch.allclose(batch.initial.sum(1), torch.ones(32)) and (batch.initial[~batch.state_mask] == 0).all()
    assert not batch.terminal[~batch.state_mask].any()


def test_mixture_respects_ranges_and_seed():
    spec = PriorSpec(max_states=16, max_actions=4, min_horizon=5, max_horizon=30)
    weights = {k: 1.0 for k in FAMILIES}
    a = sample_mdps(64, weights, spec, torch.Generator().manual_seed(3))
    b = sample_mdps(64, weights, spec, torch.Generator().manual_seed(3))
    assert torch.equal(a.P, b.P) and torch.equal(a.R, b.R) and torch.equal(a.horizon, b.horizon)
    assert a.state_mask.shape[1] <= 16 and a.action_mask.shape[1] <= 4
    assert ((a.horizon >= 1) & (a.horizon <= 30)).all()
    assert set(a.family.tolist()) <= set(range(len(FAMILIES)))
    scales = a.R.abs().amax(dim=(1, 2))
    assert scales.max() / scales[scales > 0].min() > 10  # log-uniform scales over orders of magnitude


def test_held_out_families_never_trained_on(tmp_path):
    cfg = tiny_config(tmp_path)
    assert set(cfg.prior.held_out).isdisjoint(cfg.train_families)
    batch = sample_training_batch(64, cfg.train_families, cfg.prior, cfg.data, torch.Generator().manual_seed(0))
    held = {FAMILIES.index(name) for name in cfg.prior.held_out}
    assert held.isdisjoint(batch.mdps.family.tolist())


def test_es_horizon_cap_keeps_the_range_valid():
    capped = PriorSpec(min_horizon=10, max_horizon=200).capped(5)
    assert (capped.min_horizon, capped.max_horizon) == (5, 5)
    assert PriorSpec(min_horizon=10, max_horizon=30).capped(100) == PriorSpec(min_horizon=10, max_horizon=30)


# --- data and the online simulator ---

def test_boltzmann_targets_use_each_states_own_gap():
    q = torch.tensor([[[1.0, 0.0, 5.0], [1000.0, 999.0, -7.0], [2.0, 2.0, 9.0]]])
    mask = torch.tensor([[True, True, False]])
    target = boltzmann_targets(q, mask, temperature=0.1)
    assert torch.allclose(target[0, 0], target[0, 1])  # same relative gap, same target, whatever the scale
    assert target[0, 0, 0] > 0.99 and (target[..., 2] == 0).all()
    assert torch.allclose(target[0, 2, :2], torch.tensor([0.5, 0.5]))  # ties: uniform


def test_training_batch_statistics_are_consistent():
    cfg = DataSpec(max_episodes=16, zero_data_prob=0.0)
    spec = PriorSpec(max_states=12, max_actions=4, max_horizon=20)
    batch = sample_training_batch(16, {"garnet": 1, "grid": 1}, spec, cfg, torch.Generator().manual_seed(0))
    stats = batch.stats
    visits = stats.transitions.sum(-1) + stats.terminal_counts
    assert torch.allclose(visits, stats.counts)  # every visit has a successor or ended the episode
    assert (stats.counts.sum((1, 2)) > 0).all()
    assert not (stats.state_mask & ~batch.mdps.state_mask).any()
    assert torch.allclose(batch.target.sum(-1), torch.ones_like(batch.target[..., 0]))


def test_scale_loss_targets_the_true_reward_max_where_rewards_were_seen():
    cfg = DataSpec(max_episodes=16, zero_data_prob=0.0)
    spec = PriorSpec(max_states=12, max_actions=4, max_horizon=20)
    batch = sample_training_batch(16, {"garnet": 1, "distractor": 1}, spec, cfg, torch.Generator().manual_seed(1))
    batch.stats.reward_mean[0] = 0.0  # MDP 0: its data shows no reward yet
    valid = batch.mdps.state_mask[:, :, None] & batch.mdps.action_mask[:, None, :]
    true_max = batch.mdps.R.abs().masked_fill(~valid, 0).amax((1, 2)).float()
    seen = ((batch.stats.counts > 0) & (batch.stats.reward_mean != 0)).flatten(1).any(1)
    assert not seen[0] and seen[1:].any() and (true_max > 0).all()
    assert float(scale_loss(true_max, batch)) < 1e-10
    off = float(scale_loss(true_max * math.e, batch))
    assert abs(off - 1.0) < 1e-5  # one e-fold off everywhere: squared log error 1
    # an MDP whose data holds no nonzero reward does not count, whatever the estimate
    wrong_where_unseen = torch.where(seen, true_max, true_max * 1e6)
    assert float(scale_loss(wrong_where_unseen, batch)) < 1e-10


def test_greedy_action_breaks_ties_at_random_like_the_agent():
    spec = PriorSpec(min_states=4, max_states=4, max_actions=3, max_horizon=5)
    mdps = sample_mdps(1, {"garnet": 1.0}, spec, torch.Generator().manual_seed(0))
    n_actions = int(mdps.action_mask[0].sum())
    q = torch.zeros(1, int(mdps.horizon[0]), 4, mdps.action_mask.shape[1])  # a state planned as unknown
    lanes, state = torch.zeros(3000, dtype=torch.long), torch.zeros(3000, dtype=torch.long)
    picks = greedy_action(mdps, q, lanes, 0, state, torch.Generator().manual_seed(0))
    share = torch.bincount(picks, minlength=n_actions).float() / len(picks)
    assert torch.allclose(share[:n_actions], torch.full((n_actions,), 1 / n_actions), atol=0.04)
    q[0, :, 0, n_actions - 1] = 1.0  # a strict best action is always taken
    picks = greedy_action(mdps, q, lanes, 0, state, torch.Generator().manual_seed(0))
    assert (picks == n_actions - 1).all()
    assert (greedy_action(mdps, q * 0, lanes, 0, state) == 0).all()  # no generator: the first tie


def test_online_returns_of_the_true_q_are_optimal():
    spec = PriorSpec(max_states=10, max_actions=3, max_horizon=15)
    g = torch.Generator().manual_seed(0)
    mdps = sample_mdps(64, {k: 1.0 for k in FAMILIES}, spec, g)
    q = optimal_q_to_go(mdps)
    v_opt, v_rand = exact_values(mdps, q)
    oracle = normalized_returns(online_returns(lambda stats: q, mdps, 30, g), v_opt, v_rand)
    assert abs(float(torch.nanmean(oracle)) - 1.0) < 0.1
    assert oracle.shape == (64, 30)


# --- config ---

def test_config_rejects_unknown_key_by_name_at_every_level():
    with pytest.raises(ValueError, match="unknown config key mystery; known keys: .*prior"):
        config_from_dict({"mystery": 8})
    with pytest.raises(ValueError, match=r"unknown config key prior\.foo; known keys of 'prior': .*max_states"):
        config_from_dict({"prior": {"foo": 1}})
    with pytest.raises(ValueError, match=r"unknown config key model\.width"):
        config_from_dict({"model": {"width": 8}})
    with pytest.raises(ValueError, match=r"unknown config key es\.popsize"):
        config_from_dict({"es": {"popsize": 8}})
    with pytest.raises(ValueError, match=r"prior\.family_weights\.riverswim"):
        config_from_dict({"prior": {"family_weights": {"riverswim": 1.0}}})


@pytest.mark.parametrize("section, key, value", [
    ("stage1", "batch_size", 0), ("stage1", "lr", -1.0), ("data", "dagger_prob", 1.5), ("prior", "max_horizon", 0),
    ("prior", "held_out", ["nope"]), ("prior", "stochastic_reward_prob", 2.0), ("data", "min_episodes", 0),
    ("es", "pairs", 0), ("model", "d_model", 0),
])
def test_config_rejects_out_of_range_value_by_name(section, key, value):
    with pytest.raises(ValueError, match=section if section == "model" else rf"{section}\.{key}"):
        config_from_dict({section: {key: value}})


def test_every_prior_and_data_parameter_reaches_the_sampler_from_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("prior: {stochastic_reward_prob: 0.0, max_states: 6}\n"
                    "data: {min_episodes: 5, max_episodes: 5, zero_data_prob: 0.0}\n")
    cfg = load_config(path)
    assert cfg.prior.stochastic_reward_prob == 0.0 and cfg.data.min_episodes == 5
    batch = sample_training_batch(32, cfg.train_families, cfg.prior, cfg.data, torch.Generator().manual_seed(0))
    assert (batch.mdps.reward_std == 0).all()  # no reward noise: the prior's key arrived
    noisy = sample_training_batch(32, cfg.train_families, replace(cfg.prior, stochastic_reward_prob=1.0), cfg.data,
                                  torch.Generator().manual_seed(0))
    assert (noisy.mdps.reward_std > 0).any()
    assert (batch.stats.initial_counts.sum(-1) == 5).all()  # min_episodes arrived: 5 episodes per MDP


def test_flat_config_is_refused_with_the_new_name_of_every_moved_key(tmp_path):
    with pytest.raises(ValueError, match=r"max_states -> prior\.max_states.*es_pairs -> es\.pairs.*nest_flat_config"):
        config_from_dict({"max_states": 24, "es_pairs": 4})
    with pytest.raises(ValueError, match=r"stage1_steps -> stage1\.steps"):
        config_from_dict({"seed": 0, "stage1_steps": 5})
    flat = tmp_path / "flat.yaml"
    flat.write_text("seed: 0\nbatch_size: 8\n")
    result = subprocess.run([PYTHON, "-m", "icrl_agent.pretraining", "--config", str(flat)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "batch_size -> stage1.batch_size" in result.stderr
    assert "Traceback" not in result.stderr


def test_default_yaml_is_exactly_the_config_of_the_shipped_weights():
    """`--config configs/default.yaml` must reproduce icrl-v1: the same value reaches every key."""
    card = json.loads((REPO / "icrl_agent" / "weights" / "icrl-v1.json").read_text())
    shipped = config_from_dict(nest_flat_config(card["config"]))
    assert load_config(REPO / "configs" / "default.yaml") == shipped
    assert ModelConfig.from_dict(card["model_config"]) == shipped.model
    assert card["training"]["command"] == "python -m icrl_agent.pretraining --config configs/default.yaml"


def test_a_written_config_loads_back_equal(tmp_path):
    cfg = load_config(REPO / "configs" / "default.yaml")
    assert config_from_dict(cfg.to_dict()) == cfg  # what a checkpoint or card records reads back
    path = tmp_path / "written.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert load_config(path) == cfg


def test_config_files_load(tmp_path):
    for path in (REPO / "configs" / "default.yaml", TINY, REPO / "configs" / "ablation_gat.yaml"):
        assert isinstance(load_config(path), PretrainConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\nprior: {mystery: 1}\n")
    result = subprocess.run([PYTHON, "-m", "icrl_agent.pretraining", "--config", str(bad)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "prior.mystery" in result.stderr


def test_resume_accepts_a_checkpoint_written_with_a_flat_config(tmp_path):
    cfg = tiny_config(tmp_path)
    train(cfg, stop_after=2)
    meta_path = Path(cfg.checkpoint_dir) / "last.json"
    meta = json.loads(meta_path.read_text())
    new_name = {new: old for old, new in FLAT_KEY_MOVES.items()}
    # (flat configs predate the scale section and init_from: a flat checkpoint holds neither)
    flat = {new_name.get(key, key): value for key, value in flat_items(meta["config"]).items()
            if not key.startswith(("model.", "scale.")) and key != "init_from"}
    flat["model"] = meta["config"]["model"]
    assert "stage1_steps" in flat and "es_pairs" in flat and "max_states" in flat
    meta["config"] = flat
    meta_path.write_text(json.dumps(meta))
    assert train(cfg, resume=True)["finished"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_cuda_without_cuda_fails_clearly(tmp_path):
    result = subprocess.run(
        [PYTHON, "-m", "icrl_agent.pretraining", "--config", str(TINY), "--device", "cuda", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 2
    assert "CUDA is not available" in result.stderr and "--device cpu" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


# --- training ---

def test_stage1_loss_drops(tmp_path):
    from icrl_agent.pretraining.train import build_model, policy_loss

    cfg = tiny_config(tmp_path, stage1={"steps": 60, "eval_interval": 60}, es={"generations": 0},
                      data={"dagger_start": 60})
    fixed = sample_training_batch(64, cfg.train_families, cfg.prior, cfg.data, torch.Generator().manual_seed(123))

    def loss_of(model):
        with torch.no_grad():
            return float(policy_loss(model(fixed.stats, optimism=False).logits(fixed.steps_to_go), fixed)[0])

    before = loss_of(build_model(cfg, torch.device("cpu")))
    result = train(cfg)
    assert result["finished"] and result["step"] == 60
    assert loss_of(result["model"]) < 0.93 * before
    model, card = load_checkpoint(result["weights"])  # the final weights and model card
    assert card["training"]["stage1_steps"] == 60 and card["config"]["seed"] == cfg.seed
    assert "final/tree/online_return" in card["training"]["metrics"]
    assert all(torch.equal(v, result["model"].state_dict()[k]) for k, v in model.state_dict().items())


def test_resume_equals_uninterrupted_run(tmp_path):
    straight = tiny_config(tmp_path / "a")
    train(straight)
    interrupted = tiny_config(tmp_path / "b")
    first = train(interrupted, stop_after=3)  # mid stage 1, after a DAgger step
    assert not first["finished"] and first["step"] == 3
    second = train(interrupted, resume=True, stop_after=4)  # into stage 2
    assert not second["finished"] and second["generation"] == 1
    last = train(interrupted, resume=True)
    assert last["finished"] and last["generation"] == straight.es.generations
    a, b = saved_weights(straight.checkpoint_dir), saved_weights(interrupted.checkpoint_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_keeps_the_es_adam_state(tmp_path):
    """With ``es.optimizer: adam`` a run stopped between generations and resumed ends with the weights of
    an uninterrupted run: Adam's moments are saved in the checkpoint (a fresh Adam would step differently)."""
    sections = {"stage1": {"steps": 0}, "es": {"generations": 3, "optimizer": "adam", "lr": 0.01}}
    straight = tiny_config(tmp_path / "a", **sections)
    train(straight)
    interrupted = tiny_config(tmp_path / "b", **sections)
    assert train(interrupted, stop_after=2)["generation"] == 2
    assert train(interrupted, resume=True)["finished"]
    a, b = saved_weights(straight.checkpoint_dir), saved_weights(interrupted.checkpoint_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_init_constants_are_set_after_init_from_and_kept_across_resume(tmp_path):
    """``init_constants`` overwrite the named optimism constants of the ``init_from`` weights on a fresh start;
    a resumed run keeps what training made of them (setting them again would undo the first step; stage 1
    moves them here, with ``stage1.optimism`` on)."""
    source_cfg = tiny_config(tmp_path / "src")
    source = build_model(replace(source_cfg, seed=5), torch.device("cpu"))
    save_checkpoint(tmp_path / "src" / "w", source, source_cfg.to_dict(), {})
    constants = {"kappa": 3.0, "scale_gain": 8.0}

    def config(name: str, steps: int) -> PretrainConfig:
        sections = {"stage1": {"steps": steps, "optimism": True}, "es": {"generations": 0}}
        return replace(tiny_config(tmp_path / name, **sections), init_from=str(tmp_path / "src" / "w"),
                       init_constants=constants, checkpoint_interval=1)

    model = train(config("set", 0))["model"]
    assert model.optimism_constants() == pytest.approx(
        dict(source.optimism_constants(), **constants), rel=1e-6
    )
    assert torch.equal(model.round.query.weight, source.round.query.weight)
    straight, interrupted = config("a", 2), config("b", 2)
    train(straight)
    assert train(interrupted, stop_after=1)["step"] == 1
    assert train(interrupted, resume=True)["finished"]
    a, b = saved_weights(straight.checkpoint_dir), saved_weights(interrupted.checkpoint_dir)
    assert not torch.equal(a["model.kappa_raw"], model.kappa_raw.detach())  # stage 1 moved kappa
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("constants, message", [
    ({"kapa": 1.0}, r"init_constants\.kapa"), ({"kappa": 0}, r"init_constants\.kappa"),
    ({"bonus": True}, r"init_constants\.bonus"), ([1.0], "init_constants"),
])
def test_init_constants_are_checked_by_name(constants, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict({"init_constants": constants})


def test_init_constants_need_a_model_with_optimism_constants():
    with pytest.raises(ValueError, match="init_constants.*gat_policy"):
        config_from_dict({"init_constants": {"kappa": 2.0}, "model": {"head": "gat_policy"}})
    assert config_from_dict({"model": {"head": "gat_policy"}}).init_constants == {}


def test_resume_refuses_a_different_config(tmp_path):
    cfg = tiny_config(tmp_path)
    train(cfg, stop_after=2)
    with pytest.raises(ValueError, match=r"stage1\.lr"):
        train(replace(cfg, stage1=replace(cfg.stage1, lr=0.5)), resume=True)


def test_torchrun_two_processes_keep_identical_weights(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(f"""
        import os
        import torch
        from safetensors.torch import save_file
        from dataclasses import replace
        from icrl_agent.pretraining.config import load_config
        from icrl_agent.pretraining.train import scale_loss, train
        torch.set_num_threads(1)
        cfg = replace(load_config({str(TINY)!r}), out_dir={str(tmp_path)!r}, log_dir="",
                      checkpoint_dir={str(tmp_path / "ck")!r}, progress=False)
        cfg = replace(cfg, stage1=replace(cfg.stage1, steps=4), es=replace(cfg.es, generations=1),
                      scale=replace(cfg.scale, steps=2, eval_interval=1, eval_batch_size=2))  # gradients all-reduced
        model = train(cfg)["model"]
        save_file({{k: v.contiguous() for k, v in model.state_dict().items()}},
                  {str(tmp_path)!r} + f"/rank{{os.environ['RANK']}}.safetensors")
    """))
    result = subprocess.run(
        [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
        capture_output=True, text=True, cwd=REPO, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    single = saved_weights(tmp_path / "ck")
    assert all(torch.equal(single["model." + k], rank0[k]) for k in rank0)
