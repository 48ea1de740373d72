"""The missing-mass head: train it on top of frozen weights, supervised on prior MDPs, and save the copy.

    python -m icrl_agent.pretraining missing-mass icrl_agent/weights/icrl-v2.5 icrl_agent/weights/icrl-v2.6 \\
        --config configs/v2_5.yaml --steps 2000 --eval-batches 16 --seed 0 --target unknown_states \\
        --model tried_unknown_limited=true --model tried_unknown_worth_after_goal=once

(the command that made icrl-v2.6, about 2 minutes on one CPU thread; icrl-v2.7 is the same command with ``icrl-v2.7`` as
OUT and ``--model unknown_worth_after_goal=once_or_episode_cost``, and the shipped icrl-v2.8 with ``icrl-v2.8`` and
``--model unknown_worth_after_goal=once_or_goal_or_episode_cost``; all three have the same tensors)

Issue 15's "context-dependent optimism" with a low-variance training signal: with
``explore_unknown: learned_missing_mass`` the exploring plan gives a tried pair the head's estimate ``M̂(s, a)``
of the chance that its next try leads to an outcome not yet seen from it (the unknown successor's mass), where
``untried_only`` gives it none and ``all_pairs`` the Dirichlet-style ``w / (N + w)``. On prior MDPs the truth is
known. ``--target unseen_outcomes``: ``M = 1 - sum of P(s' | s, a) over the outcomes seen from the pair`` (every
terminal state counts as one outcome); ``--target unknown_states``: ``M = sum of P(s' | s, a) over the non-terminal
states not met yet``, what the plan's unknown successor stands for. The loss is the binary cross-entropy of ``M̂``
against ``M`` over the tried pairs of each batch (data as stage 1's: ``data`` and ``prior`` of ``--config``; with
``--online-prob p``, a share ``p`` of each step's MDPs holds the model's own exploring episodes instead). Only
the head moves: the encoder runs without gradient and every other tensor is copied from the source, so the
exploitation plan, and every offline result, are the source's. ``--model KEY=VALUE`` sets other planning options
of the copy (e.g. ``tried_unknown_limited=true``); they change no tensor.

The copy's card records the command, seed, steps, wall time and the held-out metrics (before and after):
cross-entropy, and the mean ``M̂`` against the mean ``M`` per count bucket (calibration).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from dataclasses import asdict
from typing import Any, cast

import torch
import torch.nn.functional as F

from icrl_agent.checkpoint import checkpoint_paths, checkpoint_sha256, load_checkpoint, save_checkpoint
from icrl_agent.model import IcrlModel, ModelConfig
from icrl_agent.pretraining.config import PretrainConfig, load_config
from icrl_agent.pretraining.data import TrainingBatch, sample_training_batch
from icrl_agent.pretraining.evaluate.cli import parse_key_value
from icrl_agent.pretraining.train import own_episode_batch

COMMAND = "python -m icrl_agent.pretraining missing-mass"

COUNT_BUCKETS = ((1, 1), (2, 3), (4, 9), (10, math.inf))


def true_missing_mass(batch: TrainingBatch) -> torch.Tensor:
    """``M(s, a)``: the true probability of the outcomes not yet seen from each pair, ``[B, S, A]``."""
    mdps, stats = batch.mdps, batch.stats
    terminal = mdps.terminal[:, None, None, :]
    seen_states = (stats.transitions > 0) & ~terminal
    seen_terminal = (stats.terminal_counts > 0)[..., None] & terminal
    seen = (mdps.P * (seen_states | seen_terminal)).sum(-1)
    return (1.0 - seen).clamp(0.0, 1.0)


def true_unknown_state_mass(batch: TrainingBatch) -> torch.Tensor:
    """``M(s, a)`` for ``--target unknown_states``: the true probability that a pair leads to a non-terminal state
    the agent has not met yet (not in ``stats.state_mask``), ``[B, S, A]``: what the plan's unknown successor, a
    state worth ``kappa scale`` per step, stands for."""
    mdps, stats = batch.mdps, batch.stats
    unmet = ~stats.state_mask & ~mdps.terminal & mdps.state_mask
    return (mdps.P * unmet[:, None, None, :]).sum(-1).clamp(0.0, 1.0)


TARGETS = {"unseen_outcomes": true_missing_mass, "unknown_states": true_unknown_state_mass}


def tried_pairs(batch: TrainingBatch) -> torch.Tensor:
    """Bool ``[B, S, A]``: real pairs of known states that were tried at least once."""
    stats = batch.stats
    return (stats.counts > 0) & stats.state_mask[:, :, None] & stats.action_mask[:, None, :]


def head_loss(model: IcrlModel, batch: TrainingBatch, target: str = "unseen_outcomes") -> torch.Tensor:
    """Binary cross-entropy of ``M̂`` against ``M`` (``target``, a key of :data:`TARGETS`) over the tried pairs."""
    mask = tried_pairs(batch)
    predicted = model.missing_mass(batch.stats)[mask].clamp(1e-6, 1.0 - 1e-6)
    return F.binary_cross_entropy(predicted, TARGETS[target](batch)[mask])


def bucket_name(lo: float, hi: float) -> str:
    """``n1``, ``n2-3``, ``n10+``: the metrics' name of the count bucket ``[lo, hi]``."""
    if lo == hi:
        return f"n{lo}"
    return f"n{lo}+" if math.isinf(hi) else f"n{lo}-{int(hi)}"


@torch.no_grad()
def held_out_metrics(
    model: IcrlModel, batches: list[TrainingBatch], target: str = "unseen_outcomes"
) -> dict[str, float]:
    """Cross-entropy, and mean ``M̂`` against mean ``M`` per count bucket, over fixed batches."""
    predicted, truth, counts = [], [], []
    for batch in batches:
        mask = tried_pairs(batch)
        predicted.append(model.missing_mass(batch.stats)[mask])
        truth.append(TARGETS[target](batch)[mask])
        counts.append(batch.stats.counts[mask])
    p, m, n = torch.cat(predicted), torch.cat(truth), torch.cat(counts)
    metrics = {"bce": float(F.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), m)), "pairs": float(len(m))}
    metrics["mean_abs_error"] = float((p - m).abs().mean())
    for lo, hi in COUNT_BUCKETS:
        inside = (n >= lo) & (n <= hi)
        name = bucket_name(lo, hi)
        metrics[f"{name}/predicted"] = float(p[inside].mean()) if inside.any() else float("nan")
        metrics[f"{name}/true"] = float(m[inside].mean()) if inside.any() else float("nan")
        metrics[f"{name}/share"] = float(inside.float().mean())
    return metrics


def model_with_head(source: str, options: dict[str, Any] | None = None) -> tuple[IcrlModel, dict[str, Any]]:
    """The source's network with ``explore_unknown: learned_missing_mass`` and a fresh head (``M̂`` = 0.1).

    :param options: other :class:`ModelConfig` fields to set (planning options; no tensor depends on them)
    """
    loaded, card = load_checkpoint(source)
    if hasattr(loaded, "missing_mass_head"):
        raise ValueError(f"{source} already has a missing-mass head; start from the checkpoint it was trained on")
    if "explore_unknown" in (options or {}):
        raise ValueError("--model explore_unknown is set by this command (learned_missing_mass); leave it out")
    config = ModelConfig.from_dict(dict(card["model_config"], **(options or {}), explore_unknown="learned_missing_mass"))
    model = IcrlModel(config)
    keys = model.load_state_dict(loaded.state_dict(), strict=False)
    if keys.unexpected_keys or set(keys.missing_keys) != {"missing_mass_head.weight", "missing_mass_head.bias"}:
        raise ValueError(f"{source} does not fit the head's network (head={config.head!r}): missing "
                         f"{keys.missing_keys}, unexpected {keys.unexpected_keys}; give a head='vi' checkpoint")
    with torch.no_grad():
        model.missing_mass_head.weight.zero_()
        model.missing_mass_head.bias.fill_(math.log(0.1 / 0.9))
    return model, card


def batches(cfg: PretrainConfig, count: int, size: int, generator: torch.Generator) -> list[TrainingBatch]:
    return [sample_training_batch(size, cfg.train_families, cfg.prior, cfg.data, generator) for _ in range(count)]


def step_batches(
    cfg: PretrainConfig, model: IcrlModel, size: int, online_prob: float, online_episodes: int,
    generator: torch.Generator,
) -> list[TrainingBatch]:
    """One training step's examples: ``size`` fresh MDPs, a share ``online_prob`` of them holding only the model's
    own greedy episodes on its exploring plan (1..``online_episodes`` from empty statistics, as the scale stage's
    ``scale.online_prob``), the rest ``cfg.data``'s uniform / epsilon-optimal episodes. Own episodes show what an
    exploring agent holds: a found reward visited over and over, the other pairs tried a few times, states not met
    (SixArms' hub), which random data, meeting nearly every state, rarely shows."""
    n_online = round(online_prob * size)
    out = batches(cfg, 1, size - n_online, generator) if n_online < size else []
    if n_online:
        out.append(own_episode_batch(cfg, model, n_online, online_episodes, generator))
    return out


def step_loss(model: IcrlModel, step: list[TrainingBatch], target: str) -> torch.Tensor:
    """:func:`head_loss` over a step's batches, each weighted by its share of the MDPs."""
    total = sum(len(batch.mdps.P) for batch in step)
    return cast(torch.Tensor, sum(head_loss(model, batch, target) * (len(batch.mdps.P) / total) for batch in step))


def _clean(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if math.isnan(v) else round(v, 6)) for k, v in metrics.items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m icrl_agent.pretraining missing-mass SOURCE OUT --config FILE [...]``; returns the exit code."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog=COMMAND, description=(__doc__ or "").split("\n")[0])
    parser.add_argument("source", help="checkpoint whose network the head reads (directory, stem or .safetensors)")
    parser.add_argument("out", help="stem of the copy to write")
    parser.add_argument("--config", required=True, help="pretraining config whose prior and data the batches use")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", choices=sorted(TARGETS), default="unseen_outcomes",
                        help="what M̂ learns: the chance of an outcome not yet seen from the pair (unseen_outcomes) "
                             "or of a state not yet met (unknown_states)")
    parser.add_argument("--online-prob", type=float, default=0.0,
                        help="share of each step's MDPs whose data is the model's own exploring episodes (default 0: "
                             "all uniform / epsilon-optimal, as --config's data)")
    parser.add_argument("--online-episodes", type=int, default=16,
                        help="those MDPs get 1..N own episodes (uniform)")
    parser.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                        help="a ModelConfig field of the copy, e.g. tried_unknown_limited=true (repeatable)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing copy at OUT")
    args = parser.parse_args(words)
    if args.steps < 1 or args.batch_size < 1 or args.eval_batches < 1 or args.online_episodes < 1:
        parser.error("--steps, --batch-size, --eval-batches and --online-episodes must each be at least 1")
    if not 0.0 <= args.online_prob <= 1.0:
        parser.error(f"--online-prob is a share of each step's MDPs, between 0 and 1; got {args.online_prob}")
    existing = [path for path in checkpoint_paths(args.out) if path.exists()]
    if existing and not args.force:  # before training, so the refusal costs nothing
        print(f"error: {existing[0]} exists (it may be shipped or committed weights); choose another OUT, or pass "
              "--force to overwrite it", file=sys.stderr)
        return 2
    try:
        options = dict(parse_key_value(text, "--model takes key=value (e.g. tried_unknown_limited=true)")
                       for text in args.model)
        cfg = load_config(args.config)
        torch.manual_seed(args.seed)
        model, card = model_with_head(args.source, options)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    held_out = batches(cfg, args.eval_batches, args.batch_size, torch.Generator().manual_seed(10_000 + args.seed))
    before = held_out_metrics(model, held_out, args.target)
    print(f"before: bce {before['bce']:.4f}, mean |M̂ - M| {before['mean_abs_error']:.4f}", flush=True)
    optimizer = torch.optim.Adam(model.missing_mass_head.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        step_examples = step_batches(cfg, model, args.batch_size, args.online_prob, args.online_episodes, generator)
        loss = step_loss(model, step_examples, args.target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == args.steps:
            print(f"step {step}: bce {float(loss.detach()):.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    wall = time.perf_counter() - start
    after = held_out_metrics(model, held_out, args.target)
    print(f"after: bce {after['bce']:.4f}, mean |M̂ - M| {after['mean_abs_error']:.4f}")
    for lo, hi in COUNT_BUCKETS:
        name = bucket_name(lo, hi)
        print(f"  {name}: M̂ {after[name + '/predicted']:.3f} against M {after[name + '/true']:.3f} "
              f"({after[name + '/share']:.0%} of tried pairs)")
    training = dict(card.get("training", {}))
    training["missing_mass_head"] = {
        "source": args.source, "source_sha256": checkpoint_sha256(args.source),
        "source_command": training.get("command"), "config": args.config, "target": args.target, "steps": args.steps,
        "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "model": options,
        "online_prob": args.online_prob, "online_episodes": args.online_episodes,
        "wall_time_s": round(wall, 1), "held_out_before": _clean(before), "held_out_after": _clean(after),
    }
    training["command"] = " ".join([COMMAND, *map(shlex.quote, words)])
    run_config = dict(card["config"])
    if isinstance(run_config.get("model"), dict):
        run_config["model"] = asdict(model.config)
    path = save_checkpoint(args.out, model, run_config, training)
    print(f"wrote {path} in {wall:.0f} s of training")
    return 0
