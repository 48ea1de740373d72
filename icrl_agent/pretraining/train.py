"""Pretraining, top to bottom: stage 1 (cross-entropy to Boltzmann(Q*), DAgger), the scale stage, stage 2 (ES).

A run may start from a checkpoint's weights (``init_from``: every parameter whose name and shape match).
Stage 1 trains the network to imitate the Boltzmann policy of the *true* MDP's Q* from the statistics
of data drawn from it (uniform, epsilon-optimal and the model's own online episodes). The scale stage
(``scale.steps``, 0 skips it) then trains the scale head alone, the encoder frozen, on a quantile
(pinball) loss of the log ratio of its reward-scale estimate to the true MDP's largest ``|R|``. Stage 2 tunes only
``model.optimism_parameters()`` with antithetic evolution strategies on the multi-episode normalized
online return over prior MDPs (meta-RL: what makes exploration pay). Under ``torchrun`` stage 1 runs
DistributedDataParallel (each process its own MDPs) and stage 2 shares the population between processes.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from icrl_agent.checkpoint import checkpoint_sha256, load_checkpoint
from icrl_agent.model import IcrlModel
from icrl_agent.pretraining import distributed
from icrl_agent.pretraining.config import PretrainConfig, config_from_dict, flat_items, nest_flat_config
from icrl_agent.pretraining.data import SectionTimer, TrainingBatch, sample_training_batch
from icrl_agent.pretraining.prior import FAMILIES, sample_mdps
from icrl_agent.pretraining.rollouts import exact_values, normalized_returns, online_returns, optimal_q_to_go
from icrl_agent.pretraining.state import has_train_state, load_train_state, save_train_state

# keys that may differ between a run and its resumption (they do not change what is computed)
_RESUMABLE_CHANGES = {"device", "progress", "out_dir", "log_dir", "checkpoint_dir", "stage1.steps",
                      "scale.steps", "es.generations", "checkpoint_interval", "weights_name"}
# parameters whose meaning depends on ModelConfig.scale_head: copied by init_from only between the same modes
# (log_scale_gain multiplies softplus(linear(g)) in "gain" mode and is the exponent's factor in "quantile")
_SCALE_MODE_BOUND = ("log_scale_gain",)


def derived_generator(cfg: PretrainConfig, device: torch.device, *tags: object) -> torch.Generator:
    """A generator seeded from the run seed and ``tags`` (stage, step, rank): steps are reproducible alone,
    which is what makes a resumed run equal an uninterrupted one."""
    digest = hashlib.sha256("/".join(map(str, (cfg.seed, *tags))).encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def build_model(cfg: PretrainConfig, device: torch.device) -> IcrlModel:
    """The network, initialized from the run seed on the CPU (same weights on every device), then moved."""
    torch.manual_seed(cfg.seed)
    return IcrlModel(cfg.model).to(device)


def init_source_path(source: str) -> Path:
    """The checkpoint ``init_from`` names: ``"shipped"`` is the shipped default weights, anything else a path."""
    if source == "shipped":
        from icrl_agent.agent import shipped_weights_path

        return shipped_weights_path()
    return Path(source)


def init_from_checkpoint(model: IcrlModel, source: str) -> dict[str, Any]:
    """Copy into ``model`` every parameter of a checkpoint whose name and shape match; the rest stays as is.

    The checkpoint is read by :func:`icrl_agent.checkpoint.load_checkpoint` (safetensors, sha256 checked,
    nothing unpickled), without touching the global RNG. ``log_scale_gain`` is copied only when both models
    share ``scale_head``: its meaning differs between the modes, so it keeps its fresh value (0, gain 1).

    :param model: the run's freshly built model
    :param source: a checkpoint path (directory, stem or file) or ``"shipped"``
    :return: ``{"source", "sha256", "copied", "new", "shape_differs", "reset", "unused"}``: the names copied,
        those the source lacks, those whose shape differs, those reset for the scale-head mode, and the
        source's names the model does not have
    :raises ValueError: when no parameter matches
    """
    path = init_source_path(source)
    with torch.random.fork_rng(devices=[]):  # building the source model draws an init: keep the run's RNG
        source_model, _ = load_checkpoint(path)
    theirs = source_model.state_dict()
    other_mode = source_model.config.scale_head != model.config.scale_head
    ours = model.state_dict()
    report: dict[str, Any] = {"source": str(path), "sha256": checkpoint_sha256(path), "copied": [], "new": [],
                              "shape_differs": [], "reset": [], "unused": sorted(set(theirs) - set(ours))}
    for name, value in ours.items():
        if name not in theirs:
            report["new"].append(name)
        elif theirs[name].shape != value.shape:
            report["shape_differs"].append(name)
        elif other_mode and name in _SCALE_MODE_BOUND:
            report["reset"].append(name)
        else:
            report["copied"].append(name)
    if not report["copied"]:
        raise ValueError(
            f"init_from {source!r} ({path}): no parameter of the checkpoint matches the run's model by name and "
            f"shape (its model config: {source_model.config}; the run's: {model.config})"
        )
    with torch.no_grad():
        for name in report["copied"]:
            ours[name].copy_(theirs[name])
    return report


def _init_summary(report: dict[str, Any]) -> str:
    return (f"init_from {report['source']} (sha256 {report['sha256'][:16]}...): copied {len(report['copied'])} "
            f"tensors; fresh init, new: {report['new']}; fresh init, shape differs: {report['shape_differs']}; "
            f"reset (meaning depends on model.scale_head): {report['reset']}; unused: {report['unused']}")


class Stage1Loss(torch.nn.Module):
    """Cross-entropy of the model's policy to the Boltzmann targets over known states (plus the weighted
    reward-scale regression), and its accuracy.

    Wrapping the loss in a module lets DistributedDataParallel see the whole forward pass.
    """

    def __init__(self, model: IcrlModel, optimism: bool, scale_weight: float = 0.0, quantile: float | None = None):
        super().__init__()
        self.model, self.optimism, self.scale_weight, self.quantile = model, optimism, scale_weight, quantile

    def forward(self, batch: TrainingBatch) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch.stats, optimism=self.optimism)
        loss, accuracy = policy_loss(out.logits(batch.steps_to_go).float(), batch)
        if self.scale_weight > 0:
            loss = loss + self.scale_weight * scale_loss(out.reward_scale.float(), batch, self.quantile)
        return loss, accuracy


def stage1_scale_quantile(cfg: PretrainConfig) -> float | None:
    """Stage 1's reward-scale loss: the pinball at ``scale.quantile`` for a ``"quantile"`` scale head,
    else (``None``) icrl-v1's squared log error."""
    return cfg.scale.quantile if cfg.model.scale_head == "quantile" else None


def scale_log_error(reward_scale: torch.Tensor, batch: TrainingBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """``log(true max |R|) - log(reward_scale)`` per MDP (> 0: the estimate is too low), and which MDPs count
    (their data holds a nonzero reward and their true rewards are not all 0).

    :param reward_scale: the model's estimate ``[B]``, in reward units
    :param batch: the MDPs and their statistics
    :return: ``(error [B], counts [B] bool)``
    """
    mdps, stats = batch.mdps, batch.stats
    valid = mdps.state_mask[:, :, None] & mdps.action_mask[:, None, :]
    true_max = mdps.R.abs().masked_fill(~valid, 0.0).amax(dim=(1, 2)).float()
    seen = ((stats.counts > 0) & (stats.reward_mean != 0)).flatten(1).any(dim=1) & (true_max > 0)
    return true_max.clamp_min(1e-12).log() - reward_scale.clamp_min(1e-12).log(), seen


def scale_loss(reward_scale: torch.Tensor, batch: TrainingBatch, quantile: float | None = None) -> torch.Tensor:
    """Log error of the model's reward-scale estimate against the true MDP's largest ``|R(s, a)|``.

    This is what teaches the network how large the rewards it has not seen yet may be (the hint the
    classical baselines are handed). Only MDPs whose data holds a nonzero reward count: before that the
    scale has no unit, and greedy actions do not depend on it.

    :param reward_scale: the model's estimate ``[B]``, in reward units
    :param batch: the MDPs and their statistics
    :param quantile: ``None``: the squared log error (icrl-v1); ``tau`` in (0, 1): the pinball loss
        ``max(tau u, (tau - 1) u)`` of ``u = log(true max) - log(estimate)``, minimized when a share ``tau`` of
        the MDPs has its true maximum at or below the estimate
    :return: the mean over the MDPs that count (0 if none does)
    """
    return _mean_scale_loss(*scale_log_error(reward_scale, batch), quantile)


def _mean_scale_loss(error: torch.Tensor, seen: torch.Tensor, quantile: float | None) -> torch.Tensor:
    if quantile is None:
        loss = error.square()
    else:
        loss = torch.maximum(quantile * error, (quantile - 1.0) * error)
    return (loss * seen).sum() / seen.sum().clamp(min=1)


def scale_coverage(reward_scale: torch.Tensor, batch: TrainingBatch) -> float:
    """Share of the MDPs that count (as in :func:`scale_loss`) whose true max ``|R|`` is <= the estimate.

    :return: the share, NaN when no MDP counts
    """
    error, seen = scale_log_error(reward_scale, batch)
    if not bool(seen.any()):
        return float("nan")
    return float(((error <= 0) & seen).sum() / seen.sum())


def policy_loss(logits: torch.Tensor, batch: TrainingBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-MDP mean cross-entropy over known states, then the batch mean; and the greedy accuracy.

    :param logits: ``[B, S, A]``, ``-inf`` on invalid actions
    :param batch: targets and masks
    :return: ``(loss, accuracy)``: accuracy is the share of known states whose greedy action is optimal
        (within 1% of that state's Q range)
    """
    valid = batch.mdps.action_mask[:, None, :].expand_as(logits)
    log_p = F.log_softmax(logits, dim=-1).masked_fill(~valid, 0.0)
    ce = -(batch.target * log_p).sum(dim=-1)
    mask = batch.loss_mask.to(ce.dtype)
    per_mdp = (ce * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    q = batch.q_star.masked_fill(~valid, float("-inf"))
    best, worst = q.amax(dim=-1), batch.q_star.masked_fill(~valid, float("inf")).amin(dim=-1)
    chosen = batch.q_star.gather(-1, logits.argmax(dim=-1, keepdim=True)).squeeze(-1)
    correct = (chosen >= best - 0.01 * (best - worst)).to(ce.dtype)
    accuracy = (correct * mask).sum() / mask.sum().clamp(min=1)
    return per_mdp.mean(), accuracy


@dataclass
class RunState:
    """Counters carried across checkpoints."""

    step: int = 0                 # stage-1 optimizer steps done
    generation: int = 0           # stage-2 generations done
    scale_step: int = 0           # scale-stage optimizer steps done
    wall_time: float = 0.0        # seconds of training before this process started
    metrics: dict[str, float] = field(default_factory=dict)


def _logger(cfg: PretrainConfig, info: distributed.DistInfo) -> Any:
    if not info.is_main or not cfg.log_dir:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(
            "TensorBoard logging needs the tensorboard package: pip install 'icrl-agent[pretraining]' "
            "(or set log_dir: '' in the config to disable it)"
        ) from err
    writer = SummaryWriter(cfg.log_dir)
    table = "\n".join(f"|{k}|{json.dumps(v)}|" for k, v in flat_items(cfg.to_dict()).items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    return writer


def _progress(cfg: PretrainConfig, info: distributed.DistInfo, total: int, initial: int, desc: str) -> Any:
    if not (cfg.progress and info.is_main):
        return None
    from tqdm import tqdm

    # disable=None: drawn only when stderr is a terminal, so redirected logs get no carriage returns
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, disable=None)


def _check_resumable(cfg: PretrainConfig, saved: dict[str, Any]) -> None:
    """Refuse to resume under a config that computes something else (checkpoints of flat configs included)."""
    now = flat_items(cfg.to_dict())
    then = flat_items(config_from_dict(nest_flat_config(saved)).to_dict())
    changed = sorted(k for k in set(now) | set(then) if k not in _RESUMABLE_CHANGES and now.get(k) != then.get(k))
    if changed:
        raise ValueError(
            f"cannot resume from {cfg.checkpoint_dir}: config keys {changed} differ from the checkpoint's; "
            "use the same config, or a new checkpoint_dir to start a new run"
        )


@torch.no_grad()
def evaluate(
    model: IcrlModel, cfg: PretrainConfig, families: list[str], device: torch.device, online_episodes: int = 10
) -> dict[str, float]:
    """Target accuracy and loss per family (uniform/epsilon data), and the online normalized return.

    :param model: the bare model
    :param cfg: the run config (prior and data ranges, eval batch size)
    :param families: family names to evaluate, each alone
    :param device: where to run
    :param online_episodes: episodes of the online evaluation (0 skips it)
    :return: ``{"<family>/accuracy", "<family>/loss", "<family>/scale_log_error", "<family>/scale_coverage",
        "<family>/online_return"}`` (``scale_log_error``: root mean squared log error of the reward-scale
        estimate, see :func:`scale_loss`; ``scale_coverage``: the share of MDPs whose true max ``|R|`` is <= it,
        see :func:`scale_coverage`)
    """
    out: dict[str, float] = {}
    for name in families:
        g = derived_generator(cfg, device, "eval", name)
        batch = sample_training_batch(cfg.stage1.eval_batch_size, {name: 1.0}, cfg.prior, cfg.data, g, device)
        output = model(batch.stats, optimism=False)
        loss, acc = policy_loss(output.logits(batch.steps_to_go).float(), batch)
        out[f"{name}/loss"], out[f"{name}/accuracy"] = float(loss), float(acc)
        out[f"{name}/scale_log_error"] = float(scale_loss(output.reward_scale.float(), batch).sqrt())
        out[f"{name}/scale_coverage"] = scale_coverage(output.reward_scale.float(), batch)
        if online_episodes:
            out[f"{name}/online_return"] = online_score(model, cfg, {name: 1.0}, g, cfg.stage1.eval_batch_size,
                                                        online_episodes, device)
    return out


def online_score(
    model: IcrlModel, cfg: PretrainConfig, families: dict[str, float], generator: torch.Generator,
    n_mdps: int, n_episodes: int, device: torch.device,
) -> float:
    """Mean normalized online return of the model (optimism on) over fresh prior MDPs."""
    mdps = sample_mdps(n_mdps, families, cfg.prior.capped(cfg.es.max_horizon), generator, device)
    v_opt, v_rand = exact_values(mdps, optimal_q_to_go(mdps))
    returns = online_returns(model, mdps, n_episodes, generator)
    return float(torch.nanmean(normalized_returns(returns, v_opt, v_rand).clamp(-2.0, 2.0)))


def stage1_step(
    cfg: PretrainConfig, state: RunState, model: IcrlModel, loss_module: torch.nn.Module,
    optimizer: torch.optim.Optimizer, info: distributed.DistInfo, timer: SectionTimer,
) -> dict[str, float]:
    """One optimizer step on a fresh batch of this process's MDPs; returns the step's scalars."""
    device, opt = info.device, cfg.stage1
    g = derived_generator(cfg, device, "stage1", state.step, info.rank)
    use_dagger = state.step >= cfg.data.dagger_start and cfg.data.dagger_prob > 0
    planner = greedy_planner(model) if use_dagger else None
    batch = sample_training_batch(opt.batch_size, cfg.train_families, cfg.prior, cfg.data, g, device, planner, timer)
    for group in optimizer.param_groups:
        group["lr"] = opt.lr * min(1.0, (state.step + 1) / max(1, opt.warmup_steps))
    with timer.section("forward_backward"):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            loss, accuracy = loss_module(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opt.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
        optimizer.step()
    return {"loss": loss.item(), "accuracy": accuracy.item(), "lr": optimizer.param_groups[0]["lr"]}


def greedy_planner(model: IcrlModel) -> Callable[[Any], torch.Tensor]:
    """The model as a DAgger planner: statistics -> its exploring plan's Q (in eval mode, restored after)."""

    def plan(stats: Any) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            return model(stats, optimism=True).q.float()
        finally:
            model.train(was_training)
    return plan


def scale_batches(
    cfg: PretrainConfig, model: IcrlModel, generator: torch.Generator, device: torch.device
) -> list[TrainingBatch]:
    """The scale stage's examples for one step: ``scale.batch_size`` fresh MDPs in one or two batches.

    The first holds uniform/epsilon-optimal data (``cfg.data``, no DAgger); the second, a share
    ``scale.online_prob`` of the MDPs, only the model's own greedy episodes on its optimistic plan from empty
    statistics, 1..``scale.online_episodes`` of them: the statistics a user's agent holds while it explores,
    which random data rarely resembles (one room of a hub visited over and over, the others tried once).

    :return: the batches (the second only when it holds at least one MDP)
    """
    n_online = round(cfg.scale.online_prob * cfg.scale.batch_size)
    n_random = cfg.scale.batch_size - n_online
    batches = []
    if n_random:
        batches.append(sample_training_batch(n_random, cfg.train_families, cfg.prior, cfg.data, generator, device))
    if n_online:
        batches.append(own_episode_batch(cfg, model, n_online, cfg.scale.online_episodes, generator, device))
    return batches


def own_episode_batch(
    cfg: PretrainConfig, model: IcrlModel, size: int, episodes: int, generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> TrainingBatch:
    """``size`` fresh MDPs of ``cfg``'s prior holding only the model's own greedy episodes on its exploring plan,
    1..``episodes`` of them from empty statistics: the statistics a user's agent holds while it explores."""
    own = replace(cfg.data, max_episodes=0, epsilon_optimal_prob=0.0, dagger_prob=1.0, dagger_episodes=episodes)
    return sample_training_batch(size, cfg.train_families, cfg.prior, own, generator, device,
                                 planner=greedy_planner(model))


def scale_parameters(model: IcrlModel) -> list[torch.nn.Parameter]:
    """What the scale stage trains: the scale head's parameters, nothing else."""
    return list(model.scale_head.parameters())


def scale_step(
    cfg: PretrainConfig, state: RunState, model: IcrlModel, optimizer: torch.optim.Optimizer,
    info: distributed.DistInfo,
) -> dict[str, float]:
    """One scale-stage step: the pinball loss on a fresh batch (uniform/epsilon data, and a ``scale.online_prob``
    share of MDPs with the model's own online episodes), gradients of the scale head only (the encoder runs
    without gradient), averaged over processes, one Adam step."""
    g = derived_generator(cfg, info.device, "scale", state.scale_step, info.rank)
    errors, seen = [], []
    for batch in scale_batches(cfg, model, g, info.device):
        error, counts = scale_log_error(model.reward_scale(batch.stats).float(), batch)
        errors.append(error)
        seen.append(counts)
    params = scale_parameters(model)
    loss = _mean_scale_loss(torch.cat(errors), torch.cat(seen), cfg.scale.quantile)
    grads = torch.autograd.grad(loss, params)  # nothing outside the scale head gets a gradient
    for p, grad in zip(params, grads, strict=True):
        p.grad = distributed.all_reduce_sum(grad.clone(), info) / info.world_size
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": float(distributed.all_reduce_sum(loss.detach().clone(), info)) / info.world_size}


@torch.no_grad()
def evaluate_scale(model: IcrlModel, cfg: PretrainConfig, families: list[str], device: torch.device) -> dict[str, float]:
    """Coverage and pinball loss of the reward-scale estimate per family, on a fixed set of MDPs per run.

    :return: ``{"<family>/coverage", "<family>/loss"}`` (coverage: see :func:`scale_coverage`)
    """
    out: dict[str, float] = {}
    for name in families:
        g = derived_generator(cfg, device, "scale-eval", name)
        batch = sample_training_batch(cfg.scale.eval_batch_size, {name: 1.0}, cfg.prior, cfg.data, g, device)
        estimate = model.reward_scale(batch.stats).float()
        out[f"{name}/coverage"] = scale_coverage(estimate, batch)
        out[f"{name}/loss"] = float(scale_loss(estimate, batch, cfg.scale.quantile))
    return out


def es_budgets(cfg: PretrainConfig, n_mdps: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Online episodes per ES MDP: ``es.episodes`` each, or log-uniform in [es.min_episodes, es.episodes]."""
    es = cfg.es
    if es.min_episodes <= 0 or es.min_episodes >= es.episodes:
        return torch.full((n_mdps,), es.episodes, dtype=torch.long, device=device)
    low, high = math.log(es.min_episodes), math.log(es.episodes + 1)
    draw = torch.rand(n_mdps, generator=generator, device=device) * (high - low) + low
    return draw.exp().floor().long().clamp(es.min_episodes, es.episodes)


def es_fitness(
    returns: torch.Tensor, budgets: torch.Tensor, v_opt: torch.Tensor, v_rand: torch.Tensor, worst_weight: float
) -> torch.Tensor:
    """Fitness of one member: the mean over MDPs of each one's mean normalized return over its own budget,
    plus ``worst_weight`` times the mean of the worst fifth of those scores (a stuck run costs what it
    costs a user). With equal budgets and no worst-fifth term, the mean over every (MDP, episode)."""
    norm = normalized_returns(returns, v_opt, v_rand).clamp(-2.0, 2.0)
    if worst_weight == 0 and bool((budgets == returns.shape[1]).all()):
        return torch.nanmean(norm)
    in_budget = torch.arange(returns.shape[1], device=returns.device) < budgets[:, None]
    per_mdp = torch.nanmean(norm.masked_fill(~in_budget, float("nan")), dim=1)
    per_mdp = per_mdp[~per_mdp.isnan()]
    fitness = per_mdp.mean()
    if worst_weight > 0 and per_mdp.numel():
        worst = per_mdp.sort().values[: max(1, per_mdp.numel() // 5)]
        fitness = fitness + worst_weight * worst.mean()
    return fitness


@dataclass
class ESDraw:
    """What every member of one ES generation meets: the MDPs, their values and budgets, the episodes' seed."""

    mdps: Any
    v_opt: torch.Tensor
    v_rand: torch.Tensor
    budgets: torch.Tensor
    seed_tag: tuple[Any, ...]


def es_draw(cfg: PretrainConfig, generator: torch.Generator, device: torch.device, *seed_tag: Any) -> ESDraw:
    """Sample one generation's MDPs (training families) and budgets; episodes are seeded by ``seed_tag``."""
    mdps = sample_mdps(cfg.es.mdps, cfg.train_families, cfg.prior.capped(cfg.es.max_horizon), generator, device)
    v_opt, v_rand = exact_values(mdps, optimal_q_to_go(mdps))
    return ESDraw(mdps, v_opt, v_rand, es_budgets(cfg, cfg.es.mdps, generator, device), seed_tag)


def es_evaluate(cfg: PretrainConfig, model: IcrlModel, draw: ESDraw, device: torch.device) -> float:
    """The fitness of the model's current parameters on one draw (common random numbers: same seed)."""
    returns = online_returns(model, draw.mdps, draw.budgets, derived_generator(cfg, device, *draw.seed_tag))
    return float(es_fitness(returns, draw.budgets, draw.v_opt, draw.v_rand, cfg.es.worst_fifth_weight))


def es_gradient(
    cfg: PretrainConfig, model: IcrlModel, generation: int, info: distributed.DistInfo
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ES estimate of the fitness gradient at the model's ES parameters, from the antithetic population
    and the draw of ``generation`` (members shared out by rank); the parameters are left as they were.

    :return: ``(gradient, fitness)``: the estimate divided by the population's fitness std (flat, in
        ``model.es_parameters(es.parameters)``'s order) and every member's fitness, ``[2 * es.pairs]``
    """
    device, es = info.device, cfg.es
    params = model.es_parameters(es.parameters)
    theta = parameters_to_vector(params).detach().clone()
    g = derived_generator(cfg, device, "es", generation)
    noise = torch.randn(es.pairs, theta.numel(), generator=g, device=device)
    members = torch.cat([theta + es.sigma * noise, theta - es.sigma * noise])
    fitness = torch.zeros(members.shape[0], device=device, dtype=torch.float64)
    draw = es_draw(cfg, g, device, "es-episodes", generation)
    for i in range(info.rank, members.shape[0], info.world_size):
        vector_to_parameters(members[i], params)
        # common random numbers: every member meets the same MDPs and the same episode randomness
        fitness[i] = es_evaluate(cfg, model, draw, device)
    distributed.all_reduce_sum(fitness, info)
    diff = (fitness[: es.pairs] - fitness[es.pairs:]).to(theta.dtype)
    gradient = (diff[:, None] * noise).sum(dim=0) / (2 * es.pairs * es.sigma)
    vector_to_parameters(theta.clone(), params)  # a copy: the parameters become views of what they are given
    return gradient / (fitness.std().to(theta.dtype) + 1e-8), fitness


def es_generation(
    cfg: PretrainConfig, state: RunState, model: IcrlModel, info: distributed.DistInfo,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, float]:
    """One ES generation: :func:`es_gradient`, then a step up it.

    :param optimizer: ``es.optimizer: adam``'s optimizer over ``model.es_parameters(es.parameters)``, which
        then takes the step on the estimate; ``None`` (``sgd``) adds ``es.lr`` times the estimate
    :return: the population's fitness mean, max and spread, and ``step_norm``, the L2 size of the update
    """
    params = model.es_parameters(cfg.es.parameters)
    theta = parameters_to_vector(params).detach().clone()
    gradient, fitness = es_gradient(cfg, model, state.generation, info)
    if optimizer is None:
        vector_to_parameters(theta + cfg.es.lr * gradient, params)
    else:
        _adam_ascent(optimizer, params, gradient)
    step_norm = float((parameters_to_vector(params).detach() - theta).norm())
    return {"fitness_mean": float(fitness.mean()), "fitness_max": float(fitness.max()),
            "fitness_spread": float(fitness.std()), "step_norm": step_norm}


def _adam_ascent(
    optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], gradient: torch.Tensor
) -> None:
    """One optimizer step up the fitness gradient estimate (``gradient`` is flat, in ``params``' order)."""
    offset = 0
    for p in params:
        p.grad = -gradient[offset:offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def es_fitness_noise(cfg: PretrainConfig, model: IcrlModel, device: torch.device) -> dict[str, float]:
    """The final parameters' fitness on ``es.noise_draws`` fresh draws (MDPs, budgets and episode seeds):
    the spread of the same parameters evaluated again, to compare with the population's spread."""
    scores = []
    for k in range(cfg.es.noise_draws):
        g = derived_generator(cfg, device, "es-noise", k)
        scores.append(es_evaluate(cfg, model, es_draw(cfg, g, device, "es-noise-episodes", k), device))
    values = torch.tensor(scores, dtype=torch.float64)
    return {"fitness_mean": float(values.mean()), "fitness_std": float(values.std()) if len(scores) > 1 else 0.0,
            "draws": float(len(scores))}


@dataclass
class TrainingRun:
    """What the stages of one call of :func:`train` share: processes, model, optimizer, counters, logs."""

    cfg: PretrainConfig
    info: distributed.DistInfo
    model: IcrlModel
    optimizer: torch.optim.Optimizer
    scale_optimizer: torch.optim.Optimizer  # the scale stage's Adam over the scale head
    es_optimizer: torch.optim.Optimizer | None  # es.optimizer "adam": its Adam over the ES parameters
    loss_module: torch.nn.Module
    state: RunState
    writer: Any
    budget: float                 # steps + generations this call may still do (stop_after)
    init_report: dict[str, Any] | None = None  # what init_from copied (None: fresh init)
    start_time: float = field(default_factory=time.time)

    def spend(self) -> None:
        """Count one step or generation against this call's budget."""
        self.budget -= 1

    def checkpoint(self) -> None:
        """Write the resumable state (rank 0), then wait for every rank."""
        state = self.state
        if self.info.is_main:
            meta = {"step": state.step, "generation": state.generation, "scale_step": state.scale_step,
                    "config": self.cfg.to_dict(), "wall_time": state.wall_time + time.time() - self.start_time,
                    "metrics": state.metrics, "init_from": self.init_report}
            save_train_state(self.cfg.checkpoint_dir, self.model, self.optimizer, meta, self.extra_optimizers())
        distributed.barrier(self.info)

    def extra_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers saved beside stage 1's, by name."""
        return _extra_optimizers(self.scale_optimizer, self.es_optimizer)

    def log(self, prefix: str, scalars: dict[str, float], counter: int) -> None:
        """Record the scalars in the metrics and TensorBoard under ``prefix/``."""
        self.state.metrics.update({f"{prefix}/{k}": v for k, v in scalars.items()})
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(f"{prefix}/{k}", v, counter)


def _extra_optimizers(
    scale_optimizer: torch.optim.Optimizer, es_optimizer: torch.optim.Optimizer | None
) -> dict[str, torch.optim.Optimizer]:
    """The optimizers a checkpoint holds beside stage 1's, by name (``es`` only with ``es.optimizer: adam``)."""
    extra = {"scale": scale_optimizer}
    if es_optimizer is not None:
        extra["es"] = es_optimizer
    return extra


def _start(cfg: PretrainConfig, resume: bool, stop_after: int | None) -> TrainingRun:
    """Processes, device, seeded model (or a checkpoint's weights), optimizers (stage 1 leaves the optimism
    parameters to ES; the scale stage has its own), resume."""
    info = distributed.setup(cfg.device)
    model = build_model(cfg, info.device)
    for p in model.optimism_parameters():  # ES owns these; stage 1 leaves them alone
        p.requires_grad_(cfg.stage1.optimism)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.stage1.lr, weight_decay=cfg.stage1.weight_decay)
    scale_optimizer = torch.optim.Adam(scale_parameters(model), lr=cfg.scale.lr)
    es_optimizer: torch.optim.Optimizer | None = None
    if cfg.es.optimizer == "adam":
        es_optimizer = torch.optim.Adam(model.es_parameters(cfg.es.parameters), lr=cfg.es.lr)
    state, init_report = RunState(), None
    if resume and has_train_state(cfg.checkpoint_dir):
        extra = _extra_optimizers(scale_optimizer, es_optimizer)
        meta = load_train_state(cfg.checkpoint_dir, model, optimizer, extra)
        _check_resumable(cfg, meta["config"])
        state = RunState(meta["step"], meta["generation"], meta.get("scale_step", 0), meta["wall_time"],
                         meta["metrics"])
        init_report = meta.get("init_from")
    else:
        if cfg.init_from:
            init_report = init_from_checkpoint(model, cfg.init_from)
            if info.is_main:
                print(_init_summary(init_report), file=sys.stderr)
        model.set_optimism_constants(cfg.init_constants)  # a resumed run holds them in its checkpoint
    loss_module: torch.nn.Module = Stage1Loss(model, cfg.stage1.optimism, cfg.stage1.scale_loss_weight,
                                              stage1_scale_quantile(cfg))
    if info.enabled:
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        loss_module = DistributedDataParallel(loss_module, device_ids=device_ids, find_unused_parameters=True)
    writer = _logger(cfg, info)
    if writer is not None and init_report is not None:
        writer.add_text("init_from", _init_summary(init_report))
    budget = float(stop_after) if stop_after is not None else float("inf")
    return TrainingRun(cfg, info, model, optimizer, scale_optimizer, es_optimizer, loss_module, state, writer, budget,
                       init_report)


def train(
    cfg: PretrainConfig, resume: bool = False, stop_after: int | None = None, command: str | None = None
) -> dict[str, Any]:
    """Run (or resume) a full pretraining run; write the final weights and model card on rank 0.

    :param cfg: the run config
    :param resume: continue from ``cfg.checkpoint_dir`` when it holds a checkpoint
    :param command: the command line that started the run, recorded in the model card
    :param stop_after: stop after this many steps (stage 1 and scale stage) + generations *of this call*,
        leaving a resumable checkpoint (e.g. to fit a job's time limit); ``None`` runs to the end
    :return: ``{"finished", "step", "generation", "metrics", "weights" (the stem written, rank 0), "model"}``
    """
    # --- setup: processes, device, seeding, model, optimizer, resumed counters ---
    run = _start(cfg, resume, stop_after)

    # --- stage 1: cross-entropy to Boltzmann(Q*) with DAgger ---
    run_stage1(run)

    # --- the scale stage: the scale head alone, pinball loss at scale.quantile ---
    run.model.eval()
    run_scale_stage(run)

    # --- stage 2: evolution strategies over the optimism parameters ---
    run_es = bool(run.model.optimism_parameters()) and cfg.es.generations > 0
    if run_es:
        run_stage2(run)

    # --- the end: final evaluation, weights and model card ---
    state = run.state
    finished = (state.step >= cfg.stage1.steps and state.scale_step >= cfg.scale.steps
                and (not run_es or state.generation >= cfg.es.generations))
    if not finished:
        run.checkpoint()
    weights = None
    if finished and run.info.is_main:
        scores = evaluate(run.model, cfg, list(cfg.train_families) + cfg.prior.held_out, run.info.device)
        state.metrics.update({f"final/{k}": v for k, v in scores.items()})
        weights = _save_final(cfg, run.model, state, time.time() - run.start_time, run.info.device, command,
                              run.init_report)
    if run.writer is not None:
        run.writer.close()
    distributed.barrier(run.info)
    distributed.teardown(run.info)
    return {"finished": finished, "step": state.step, "scale_step": state.scale_step,
            "generation": state.generation, "metrics": state.metrics, "weights": weights, "model": run.model,
            "init_from": run.init_report}


def run_stage1(run: TrainingRun) -> None:
    """Stage-1 steps until ``stage1.steps`` or this call's budget: log, evaluate, checkpoint on schedule."""
    cfg, state = run.cfg, run.state
    run.model.train()
    bar = _progress(cfg, run.info, cfg.stage1.steps, state.step, "stage 1 (CE)")
    timer = SectionTimer(run.info.device)
    window_start, window_steps = time.time(), 0
    while state.step < cfg.stage1.steps and run.budget > 0:
        scalars = stage1_step(cfg, state, run.model, run.loss_module, run.optimizer, run.info, timer)
        state.step += 1
        run.spend()
        window_steps += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{scalars['loss']:.3f}", acc=f"{scalars['accuracy']:.2f}")
        run.log("stage1", scalars, state.step)
        last = state.step == cfg.stage1.steps
        if state.step % cfg.stage1.eval_interval == 0 or last:
            elapsed = time.time() - window_start
            speed = {"steps_per_s": window_steps / elapsed,
                     "mdps_per_s": window_steps * cfg.stage1.batch_size * run.info.world_size / elapsed}
            window_start, window_steps = time.time(), 0
            _log_eval(run, speed, timer)
        if state.step % cfg.checkpoint_interval == 0 or last:
            run.checkpoint()
    if bar is not None:
        bar.close()


def run_scale_stage(run: TrainingRun) -> None:
    """Scale-stage steps (once stage 1 is done) until ``scale.steps`` or this call's budget; coverage per
    family every ``scale.eval_interval`` steps and at the end; checkpoints on schedule."""
    cfg, state = run.cfg, run.state
    if state.scale_step >= cfg.scale.steps:
        return
    bar = _progress(cfg, run.info, cfg.scale.steps, state.scale_step, "scale stage")
    families = list(cfg.train_families) + cfg.prior.held_out
    while state.step >= cfg.stage1.steps and state.scale_step < cfg.scale.steps and run.budget > 0:
        scalars = scale_step(cfg, state, run.model, run.scale_optimizer, run.info)
        state.scale_step += 1
        run.spend()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{scalars['loss']:.3f}")
        run.log("scale", scalars, state.scale_step)
        last = state.scale_step == cfg.scale.steps
        if (state.scale_step % cfg.scale.eval_interval == 0 or last) and run.info.is_main:
            run.log("scale", evaluate_scale(run.model, cfg, families, run.info.device), state.scale_step)
        if state.scale_step % cfg.checkpoint_interval == 0 or last:
            run.checkpoint()
    if bar is not None:
        bar.close()


def run_stage2(run: TrainingRun) -> None:
    """ES generations (once stage 1 and the scale stage are done) until ``es.generations`` or this call's budget."""
    cfg, state = run.cfg, run.state
    ready = state.step >= cfg.stage1.steps and state.scale_step >= cfg.scale.steps
    if (ready and cfg.es.generations and cfg.es.noise_draws and run.info.is_main
            and "es_noise_start/fitness_mean" not in state.metrics):
        # the starting parameters on the same fresh draws as the final ones: a before/after on equal terms
        run.log("es_noise_start", es_fitness_noise(cfg, run.model, run.info.device), state.generation)
    bar = _progress(cfg, run.info, cfg.es.generations, state.generation, "stage 2 (ES)")
    while ready and state.generation < cfg.es.generations and run.budget > 0:
        t0 = time.time()
        scalars = es_generation(cfg, state, run.model, run.info, run.es_optimizer)
        scalars["generations_per_s"] = 1.0 / (time.time() - t0)
        state.generation += 1
        run.spend()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(fitness=f"{scalars['fitness_mean']:.3f}")
        run.log("stage2", scalars, state.generation)
        if state.generation % cfg.checkpoint_interval == 0 or state.generation == cfg.es.generations:
            run.checkpoint()
    if bar is not None:
        bar.close()
    finished = cfg.es.generations > 0 and state.generation >= cfg.es.generations
    if finished and cfg.es.noise_draws and run.info.is_main and "es_noise/fitness_std" not in state.metrics:
        run.log("es_noise", es_fitness_noise(cfg, run.model, run.info.device), state.generation)


def _log_eval(run: TrainingRun, speed: dict[str, float], timer: SectionTimer) -> None:
    """Held-out evaluation and throughput scalars (rank 0 only; no collective calls inside)."""
    if not run.info.is_main:
        return
    run.model.eval()
    scores = evaluate(run.model, run.cfg, run.cfg.prior.held_out, run.info.device, online_episodes=0)
    run.model.train()
    run.log("heldout", scores, run.state.step)
    run.log("speed", speed, run.state.step)
    if run.writer is not None:
        total = sum(timer.seconds.values()) or 1.0
        for k, v in timer.seconds.items():
            run.writer.add_scalar(f"time_share/{k}", v / total, run.state.step)


def _save_final(
    cfg: PretrainConfig, model: IcrlModel, state: RunState, elapsed: float, device: torch.device,
    command: str | None, init_report: dict[str, Any] | None = None,
) -> str:
    from icrl_agent.checkpoint import save_checkpoint

    stem = Path(cfg.out_dir) / cfg.weights_name
    card = {
        "command": command, "seed": cfg.seed, "init_from": init_report, "stage1_steps": state.step,
        "scale_steps": state.scale_step, "es_generations": state.generation,
        "wall_time_s": state.wall_time + elapsed, "device": str(device), "torch": torch.__version__,
        "train_families": cfg.train_families, "held_out": cfg.prior.held_out, "families": list(FAMILIES),
        "metrics": {k: (v if math.isfinite(v) else None) for k, v in state.metrics.items()},
    }
    save_checkpoint(str(stem), model, cfg.to_dict(), card)
    return str(stem)
