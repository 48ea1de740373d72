"""Stage 2 for context-dependent optimism (``es.parameters: heads``), its fitness, the prior it trains on, and
the constants ablation (``model.encoder: none``)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from icrl_agent.model import IcrlModel, ModelConfig
from icrl_agent.pretraining.config import PretrainConfig, config_from_dict
from icrl_agent.pretraining.prior import PriorSpec, sample_mdps
from icrl_agent.pretraining.train import RunState, es_budgets, es_fitness, es_fitness_noise, es_generation

SMALL = {"d_model": 16, "n_heads": 2, "n_rounds": 2}
EXACT = {"reward_scale_min": 1.0, "reward_scale_max": 1.0, "negate_prob": 0.0, "stochastic_reward_prob": 0.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(**es) -> PretrainConfig:
    return config_from_dict({
        "seed": 0, "log_dir": "", "model": SMALL,
        "prior": {"family_weights": {"garnet": 1, "arms": 1, "river": 1}, "held_out": [], "max_states": 8,
                  "max_actions": 3, "min_horizon": 4, "max_horizon": 8},
        "stage1": {"steps": 0},
        "es": {"generations": 1, "pairs": 2, "mdps": 4, "episodes": 6, "max_horizon": 8, **es},
    })


# ----------------------------------------------------------------------------- what ES moves


def test_heads_scope_adds_the_last_layers_of_the_sa_and_scale_heads():
    model = IcrlModel(ModelConfig(**SMALL, scale_head="quantile"))
    constants = model.es_parameters("constants")
    heads = model.es_parameters("heads")
    assert constants == model.optimism_parameters()
    expected = [model.sa_head[-1].weight, model.sa_head[-1].bias, model.scale_head[-1].weight, model.scale_head[-1].bias]
    assert heads[:4] == constants and heads[4:] == expected
    assert sum(p.numel() for p in heads) == 4 + (16 * 4 + 4) + (16 + 1)
    with pytest.raises(ValueError, match="unknown ES scope"):
        model.es_parameters("everything")


def test_constants_ablation_moves_only_biases_and_its_heads_ignore_the_statistics():
    model = IcrlModel(ModelConfig(**SMALL, encoder="none"))
    heads = model.es_parameters("heads")
    assert heads[4:] == [model.sa_head[-1].bias, model.scale_head.bias]
    g = torch.Generator().manual_seed(0)
    mdps = sample_mdps(3, {"garnet": 1}, PriorSpec(max_states=6, max_actions=3, max_horizon=6), g)
    from icrl_agent.pretraining.rollouts import StatsAccumulator, epsilon_greedy, run_episodes

    acc = StatsAccumulator.zeros(mdps)
    lanes = torch.arange(3)
    run_episodes(mdps, acc, lanes, epsilon_greedy(mdps, torch.zeros_like(mdps.R)[:, None], torch.ones(3), g), g)
    batch = acc.stats_batch(mdps)
    raw = []
    handle = model.sa_head.register_forward_hook(lambda _m, _i, out: raw.append(out.detach()))
    with torch.no_grad():
        model(batch)
    handle.remove()
    # every (s, a) of every MDP gets the same raw corrections: the head's bias
    assert torch.allclose(raw[0], model.sa_head(torch.zeros(1, 3 * 16)).detach().expand_as(raw[0]))


def test_an_es_generation_with_heads_moves_the_heads_and_leaves_the_encoder():
    cfg = tiny_config(parameters="heads", min_episodes=2, worst_fifth_weight=1.0, sigma=0.5, mdps=8)
    model = IcrlModel(cfg.model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    scalars = es_generation(cfg, RunState(), model, _single_process())
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert moved == {"log_bonus_gain", "log_unknown_gain", "kappa_raw", "log_scale_gain", "sa_head.2.weight",
                     "sa_head.2.bias", "scale_head.weight", "scale_head.bias"}
    assert math.isfinite(scalars["fitness_mean"]) and scalars["fitness_spread"] >= 0


def test_adam_es_steps_each_parameter_by_lr_up_the_same_gradient_estimate():
    """``es.optimizer: adam``'s first step moves every ES parameter by ``lr`` (Adam's first step is
    ``lr * sign(g)``), in the direction the plain step takes: up the fitness gradient estimate."""
    plain_cfg = tiny_config(parameters="heads", sigma=0.5, mdps=8, lr=1.0)
    adam_cfg = dataclasses.replace(plain_cfg, es=dataclasses.replace(plain_cfg.es, optimizer="adam", lr=0.01))
    plain, adam = IcrlModel(plain_cfg.model), IcrlModel(plain_cfg.model)
    adam.load_state_dict(plain.state_dict())
    theta = parameters_to_vector(plain.es_parameters("heads")).detach().clone()
    plain_step = es_generation(plain_cfg, RunState(), plain, _single_process())
    optimizer = torch.optim.Adam(adam.es_parameters("heads"), lr=0.01)
    adam_step = es_generation(adam_cfg, RunState(), adam, _single_process(), optimizer)
    up = parameters_to_vector(plain.es_parameters("heads")).detach() - theta
    moved = parameters_to_vector(adam.es_parameters("heads")).detach() - theta
    assert up.abs().min() > 0  # every parameter has a gradient here
    torch.testing.assert_close(moved, 0.01 * torch.sign(up), rtol=1e-4, atol=1e-7)
    assert plain_step["step_norm"] == pytest.approx(float(up.norm()), rel=1e-6)
    assert adam_step["step_norm"] == pytest.approx(0.01 * math.sqrt(theta.numel()), rel=1e-4)
    assert adam_step["fitness_mean"] == plain_step["fitness_mean"]  # the same population and draws


def test_es_optimizer_is_checked_by_name():
    with pytest.raises(ValueError, match=r"es\.optimizer.*sgd, adam"):
        tiny_config(optimizer="rmsprop")


def _single_process():
    from icrl_agent.pretraining import distributed

    return distributed.DistInfo()  # one process, on the CPU


# ----------------------------------------------------------------------------- the fitness


def test_budgets_are_log_uniform_between_min_and_max_episodes():
    cfg = tiny_config(min_episodes=10, episodes=1000)
    budgets = es_budgets(cfg, 4000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert budgets.min() >= 10 and budgets.max() <= 1000
    # log-uniform: as many budgets in [10, 100) as in [100, 1000]
    share_low = float((budgets < 100).double().mean())
    assert 0.45 < share_low < 0.55
    fixed = es_budgets(tiny_config(), 5, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert fixed.tolist() == [6] * 5


def test_fitness_scores_each_mdp_over_its_own_budget_and_adds_the_worst_fifth():
    v_opt, v_rand = torch.ones(5), torch.zeros(5)
    returns = torch.tensor([
        [1.0, 1.0, 0.0, 0.0],   # budget 2: 1.0 (the zeros after its budget must not count)
        [0.5, 0.5, 0.5, 0.5],   # 0.5
        [0.0, 1.0, 0.0, 0.0],   # budget 2: 0.5
        [0.2, 0.2, 0.2, 0.2],   # 0.2
        [0.0, 0.0, 0.0, 0.0],   # 0.0, the worst fifth
    ])
    budgets = torch.tensor([2, 4, 2, 4, 4])
    assert es_fitness(returns, budgets, v_opt, v_rand, 0.0).item() == pytest.approx(2.2 / 5)
    assert es_fitness(returns, budgets, v_opt, v_rand, 2.0).item() == pytest.approx(2.2 / 5 + 2.0 * 0.0)
    better_worst = returns.clone()
    better_worst[4] = 0.1
    gain = es_fitness(better_worst, budgets, v_opt, v_rand, 2.0) - es_fitness(returns, budgets, v_opt, v_rand, 2.0)
    assert gain.item() == pytest.approx(0.1 / 5 + 2.0 * 0.1)
    # equal budgets, no worst-fifth term: icrl-v1's fitness, the mean over every (MDP, episode)
    full = torch.full((5,), 4)
    assert es_fitness(returns, full, v_opt, v_rand, 0.0).item() == pytest.approx(float(returns.mean()))


def test_fitness_noise_scores_the_final_parameters_on_fresh_draws():
    cfg = tiny_config(noise_draws=3, min_episodes=2)
    model = IcrlModel(cfg.model)
    theta = parameters_to_vector(model.parameters()).clone()
    noise = es_fitness_noise(cfg, model, torch.device("cpu"))
    assert noise["draws"] == 3 and noise["fitness_std"] > 0 and math.isfinite(noise["fitness_mean"])
    assert torch.equal(parameters_to_vector(model.parameters()), theta)  # measuring moves nothing


# ----------------------------------------------------------------------------- the prior


def test_arms_family_is_a_hub_with_rare_rooms_paying_more():
    g = torch.Generator().manual_seed(0)
    mdps = sample_mdps(200, {"arms": 1}, PriorSpec(max_states=8, max_actions=6, **EXACT), g)
    assert torch.allclose(mdps.P.sum(-1), torch.ones_like(mdps.P.sum(-1)))
    n_arms = mdps.action_mask.sum(1)
    assert (mdps.state_mask.sum(1) == n_arms + 1).all()
    enter = mdps.P[:, 0, :, 1:].sum(-1)  # from the hub, the chance to leave it per arm
    assert torch.allclose(enter[:, 0], torch.ones(200))
    room_reward = torch.stack([mdps.R[i, 1:1 + int(n), :].max() for i, n in enumerate(n_arms)])
    assert torch.allclose(room_reward, torch.ones(200))  # the best room pays 1 (before the shared scale)
    ratios = torch.stack([mdps.R[i, 1:1 + int(n)].amax(-1).max() / mdps.R[i, 1:1 + int(n)].amax(-1).min()
                          for i, n in enumerate(n_arms)])
    assert ratios.min() >= 10 - 1e-4 and ratios.max() <= 1000 + 1e-3
    # the rarest room pays the most in about 70% of the MDPs (random order otherwise)
    rarest = torch.stack([enter[i, :int(n)].argmin() for i, n in enumerate(n_arms)])
    richest = torch.stack([mdps.R[i, 1:1 + int(n)].amax(-1).argmax() for i, n in enumerate(n_arms)])
    assert 0.65 < float((rarest == richest).double().mean()) < 0.95


def _staying_actions(mdps) -> torch.Tensor:
    """``[B, S-1, A]``: which actions keep each room (states 1..) with probability 1."""
    rooms = torch.arange(1, mdps.P.shape[1])
    return (mdps.P[:, rooms, :, rooms].transpose(0, 1) > 0.999) & mdps.action_mask[:, None, :]


def test_arms_rooms_are_kept_by_one_to_arms_max_stay_actions_and_one_always_leaves():
    from icrl_agent.pretraining.prior import _Draw, sample_arms

    def draw(spec: PriorSpec):  # the family's own sampler: sample_mdps shuffles after the shared draws
        return sample_arms(300, spec, _Draw(torch.Generator().manual_seed(2), torch.device("cpu")))

    spec = PriorSpec(max_states=8, max_actions=6, **EXACT)
    one, several = draw(spec), draw(dataclasses.replace(spec, arms_max_stay=4))
    rooms = one.state_mask[:, 1:]
    n_one, n_several = _staying_actions(one).sum(-1)[rooms], _staying_actions(several).sum(-1)[rooms]
    assert bool((n_one == 1).all())
    most = (one.action_mask.sum(1, keepdim=True) - 1).clamp(min=1, max=4).expand_as(rooms)[rooms]
    assert bool(((n_several >= 1) & (n_several <= most)).all())
    assert set(n_several.tolist()) == {1, 2, 3, 4}
    # the room of the default draw keeps its staying action, and its reward; the hub is as before
    assert bool((_staying_actions(several) >= _staying_actions(one)).all())
    assert torch.equal(one.P[:, 0], several.P[:, 0]) and torch.allclose(one.R.amax(-1), several.R.amax(-1))


def test_arms_min_enter_sets_the_rarest_room_and_the_default_keeps_the_draws():
    from icrl_agent.pretraining.prior import _Draw, sample_arms

    def draw(spec: PriorSpec):
        return sample_arms(400, spec, _Draw(torch.Generator().manual_seed(3), torch.device("cpu")))

    spec = PriorSpec(max_states=8, max_actions=6, **EXACT)
    default, explicit = draw(spec), draw(dataclasses.replace(spec, arms_min_enter=0.02))
    rare = draw(dataclasses.replace(spec, arms_min_enter=0.001))
    assert torch.equal(default.P, explicit.P) and torch.equal(default.R, explicit.R)

    def entry(mdps):  # probability of entering each room from the hub, over the rooms that exist
        p = mdps.P[:, 0, :, 1:]  # [n, A, S-1]
        return p.amax(-1)[mdps.action_mask & (p.amax(-1) < 1)]

    assert entry(default).min() >= 0.02 * (1 - 1e-5) and entry(default).max() <= 0.5 * (1 + 1e-5)
    assert entry(rare).min() < 0.01 and entry(rare).min() >= 0.001 * (1 - 1e-5)


def test_arms_rare_pays_makes_a_try_pay_more_the_rarer_the_room_and_0_keeps_the_draws():
    from icrl_agent.pretraining.prior import _Draw, sample_arms

    def draw(spec: PriorSpec):
        return sample_arms(300, spec, _Draw(torch.Generator().manual_seed(4), torch.device("cpu")))

    spec = PriorSpec(max_states=8, max_actions=6, **EXACT)
    default, explicit = draw(spec), draw(dataclasses.replace(spec, arms_rare_pays_prob=0.0))
    assert torch.equal(default.P, explicit.P) and torch.equal(default.R, explicit.R)

    def payoffs(mdps):  # [n, A]: per arm, P(enter) x the room's staying reward (0 for padded arms)
        A = mdps.P.shape[2]
        enter = torch.stack([mdps.P[:, 0, a, 1 + a] for a in range(A)], 1)
        room_reward = torch.stack([mdps.R[:, 1 + a].amax(-1) for a in range(A)], 1)
        return (enter * room_reward).masked_fill(~mdps.action_mask, float("nan")), enter

    for mdps, rises in ((draw(dataclasses.replace(spec, arms_rare_pays_prob=1.0)), True), (default, False)):
        payoff, enter = payoffs(mdps)
        rarer = enter[:, :, None] < enter[:, None, :]  # arm i rarer than arm j
        pays_more = payoff[:, :, None] >= payoff[:, None, :] * (1 - 1e-5)
        valid = mdps.action_mask[:, :, None] & mdps.action_mask[:, None, :]
        assert bool(pays_more[rarer & valid].all()) == rises
    assert torch.equal(draw(dataclasses.replace(spec, arms_rare_pays_prob=1.0)).P, default.P)  # rewards only


def test_arms_hub_pays_false_pays_only_for_staying_in_a_room_and_true_keeps_the_draws():
    from icrl_agent.pretraining.prior import _Draw, sample_arms

    def draw(spec: PriorSpec):
        return sample_arms(200, spec, _Draw(torch.Generator().manual_seed(5), torch.device("cpu")))

    spec = PriorSpec(max_states=8, max_actions=6, **EXACT)
    default, explicit = draw(spec), draw(dataclasses.replace(spec, arms_hub_pays=True))
    quiet = draw(dataclasses.replace(spec, arms_hub_pays=False))
    assert torch.equal(default.P, explicit.P) and torch.equal(default.R, explicit.R)
    assert bool((default.R[:, 0] > 0).any()) and bool((quiet.R[:, 0] == 0).all())  # the hub's tries
    assert torch.equal(quiet.P, default.P) and torch.equal(quiet.R[:, 1:], default.R[:, 1:])  # rooms unchanged


@pytest.mark.parametrize("family", ["river", "distractor", "step_cost"])
def test_small_reward_ratio_and_corridor_length_are_settable(family):
    spec = PriorSpec(max_states=40, small_reward_ratio_min=1e-4, small_reward_ratio_max=1e-3, max_corridor=30,
                     **EXACT)
    mdps = sample_mdps(300, {family: 1}, spec, torch.Generator().manual_seed(1))
    small = -mdps.R[mdps.R < 0] if family == "step_cost" else mdps.R[:, 0, 0]
    assert small.min() >= 1e-4 * (1 - 1e-5) and small.max() <= 1e-3 * (1 + 1e-5)
    assert mdps.state_mask.sum(1).max() <= 30 and mdps.state_mask.sum(1).max() > 20
    default = sample_mdps(300, {family: 1}, dataclasses.replace(spec, small_reward_ratio_min=0.0,
                                                                small_reward_ratio_max=0.0, max_corridor=0),
                          torch.Generator().manual_seed(1))
    small_default = -default.R[default.R < 0] if family == "step_cost" else default.R[:, 0, 0]
    assert small_default.min() >= 1e-3 * (1 - 1e-5)  # each family's own range: 0.1% and up


@pytest.mark.parametrize("key,value,match", [
    ("es", {"parameters": "all"}, "es.parameters"),
    ("es", {"min_episodes": 50, "episodes": 40}, "es.min_episodes"),
    ("es", {"worst_fifth_weight": -1}, "es.worst_fifth_weight"),
    ("prior", {"small_reward_ratio_min": 0.5, "small_reward_ratio_max": 0.1}, "prior.small_reward_ratio_min"),
    ("prior", {"max_corridor": 3}, "prior.max_corridor"),
    ("prior", {"arms_max_stay": 0}, "prior.arms_max_stay"),
    ("prior", {"arms_min_enter": 0.0}, "prior.arms_min_enter"),
    ("prior", {"arms_min_enter": 0.5}, "prior.arms_min_enter"),
    ("prior", {"arms_rare_pays_prob": 1.5}, "prior.arms_rare_pays_prob"),
    ("prior", {"arms_hub_pays": "no"}, "prior.arms_hub_pays"),
    ("model", {"encoder": "mlp"}, "encoder"),
    ("model", {"exploit_untried": "zero"}, "exploit_untried"),
])
def test_bad_values_of_the_new_keys_are_refused_by_name(key, value, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict({key: value})
