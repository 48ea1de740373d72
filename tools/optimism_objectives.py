"""Supervised objectives for the exploring plan's optimism, trained through the in-model VI (a probe).

    python tools/optimism_objectives.py --objective teacher --steps 300 --out runs/optq/teacher
    python tools/optimism_objectives.py --objective start --quantile 0.97 --estimates 6 --steps 0

Stage 2's evolution strategies could not move the per-pair optimism heads: independent gradient estimates
barely agree (``tools/es_gradient_agreement.py``). This probe measures the same for losses that backpropagate
through the exploring plan (``optimism=True``), and fits the optimism outputs on them. Starting from a
checkpoint (``--weights``, default the shipped weights), only these move: kappa, the bonus gain, the bonus row of the
per-(s, a) head's last layer and (unless ``--no-scale-head``) the reward-scale head; the encoder and every
output the exploitation plan reads stay as they are. Batches are fresh MDPs of the weights' prior, half with
uniform/epsilon-optimal data, half with the model's own online episodes (1..``--online-episodes``).

Objectives, each at a random number of steps to go ``k`` with the true MDP's ``Q*``:

- ``q``: pinball loss at ``--quantile`` of ``asinh(Q*/u) - asinh(Q/u)`` over the pairs of the known states,
  ``u = k * max |R|`` (the exploring Q as an upper quantile of ``Q*`` given what was seen; ``asinh`` keeps a
  wildly optimistic plan from dominating the batch);
- ``v``: the same on the state values ``max_a``;
- ``start``: the same on the start value at the full horizon (one number per MDP);
- ``teacher``: cross-entropy of the model's policy to the Boltzmann policy of optimistic VI told the true
  horizon and largest ``|R|`` (:func:`hinted_optimistic_q`, the batched twin of
  ``baselines.OptimisticVI``'s plan): the hinted baseline distilled into a model told nothing.

It prints the mean cosine between ``--estimates`` independent gradients (as the ES tool does), then fits with
Adam for ``--steps`` and writes the weights (``--out``) with this command in the card. Evaluate them like any
checkpoint: ``python -m icrl_agent.bench online --agents icrl:weights=OUT ...``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace

import torch
import torch.nn.functional as F

from icrl_agent import solvers
from icrl_agent.agent import shipped_weights_path
from icrl_agent.checkpoint import load_checkpoint, save_checkpoint
from icrl_agent.model import IcrlModel
from icrl_agent.model_inputs import StatsBatch
from icrl_agent.pretraining.config import PretrainConfig, config_from_dict, nest_flat_config
from icrl_agent.pretraining.data import TrainingBatch, boltzmann_targets
from icrl_agent.pretraining.rollouts import optimal_q_to_go
from icrl_agent.pretraining.train import derived_generator, policy_loss, scale_batches

OBJECTIVES = ("q", "v", "start", "teacher")
BONUS_ROW = 2  # the per-(s, a) head's outputs: reward pseudo-count, prior reward, bonus, unknown mass


def hinted_optimistic_q(stats: StatsBatch, reward_max: torch.Tensor, c: float = 0.003) -> torch.Tensor:
    """Optimistic VI told the horizon and the largest ``|R|``, on a batch of statistics: ``[B, Hmax, S, A]``.

    An untried pair is worth ``k * reward_max`` with ``k`` steps to go; a tried one
    ``R̂ + c k reward_max / sqrt(N + 1) + P̂ V_{k-1}`` (terminal mass worth 0), as ``baselines.OptimisticVI``
    plans with ``horizon`` and ``reward_max`` hints. Invalid actions hold 0.

    :param stats: the statistics (each MDP planned over ``Hmax``; read row ``k - 1`` for ``k`` steps to go)
    :param reward_max: ``[B]`` the largest ``|R|`` of each MDP
    :param c: the bonus constant
    """
    counts = stats.counts.double()
    p_hat = solvers.DenseTransitions(stats.transitions.double() / counts.clamp_min(1.0)[..., None])
    r_max = reward_max.double()[:, None, None]
    bonus = c * r_max / torch.sqrt(counts + 1.0)
    reward, untried = stats.reward_mean.double(), counts == 0
    valid = stats.action_mask[:, None, :]

    def backup(k: int, v: torch.Tensor) -> torch.Tensor:
        q = torch.where(untried, k * r_max, p_hat.expect(v, reward + k * bonus))
        return q.masked_fill(~valid, float("-inf"))

    q = solvers.backward_induction(backup, int(stats.horizon.max()), torch.zeros_like(reward[..., 0]))
    return q.masked_fill(~valid[:, None], 0.0)


def trained_parameters(model: IcrlModel, scale_head: bool) -> list[torch.nn.Parameter]:
    """What the probe moves (the bonus row of the per-pair head's last layer is picked by :func:`row_masks`)."""
    last = model.sa_head[-1]
    params = [model.kappa_raw, model.log_bonus_gain, last.weight, last.bias]
    return params + (list(model.scale_head.parameters()) if scale_head else [])


def row_masks(model: IcrlModel, params: list[torch.nn.Parameter]) -> list[torch.Tensor | None]:
    """Gradient masks: the bonus row of the per-pair head's last layer, everything else of the others."""
    last = model.sa_head[-1]
    masks: list[torch.Tensor | None] = []
    for p in params:
        if p is last.weight or p is last.bias:
            mask = torch.zeros_like(p)
            mask[BONUS_ROW] = 1.0
            masks.append(mask)
        else:
            masks.append(None)
    return masks


def _pinball(u: torch.Tensor, weight: torch.Tensor, quantile: float) -> torch.Tensor:
    """Per-MDP mean of the pinball loss of ``u`` (> 0: the plan is below ``Q*``) over ``weight`` > 0."""
    loss = torch.maximum(quantile * u, (quantile - 1.0) * u)
    dims = tuple(range(1, u.dim()))
    return ((loss * weight).sum(dims) / weight.sum(dims).clamp_min(1.0)).mean()


def objective_loss(model: IcrlModel, batch: TrainingBatch, objective: str, quantile: float,
                   temperature: float) -> tuple[torch.Tensor, float]:
    """The loss of one batch and its diagnostic: the share covered (``u <= 0``) or the teacher agreement."""
    out = model(batch.stats, optimism=True)
    mdps, rows = batch.mdps, torch.arange(batch.q_star.shape[0])
    valid = mdps.state_mask[:, :, None] & mdps.action_mask[:, None, :]
    r_max = mdps.R.abs().masked_fill(~valid, 0.0).amax((1, 2)).clamp_min(1e-12)
    if objective == "teacher":
        teacher = hinted_optimistic_q(batch.stats, r_max)[rows, batch.steps_to_go - 1].float()
        target = boltzmann_targets(teacher, mdps.action_mask, temperature)
        loss, agreement = policy_loss(out.logits(batch.steps_to_go).float(), replace(batch, target=target,
                                                                                      q_star=teacher))
        return loss, float(agreement)
    actions = mdps.action_mask[:, None, :]
    if objective == "start":
        horizon = mdps.horizon
        unit = (r_max * horizon)[:, None]
        best = lambda q: q.masked_fill(~actions, float("-inf")).amax(-1)  # noqa: E731
        q_star = optimal_q_to_go(mdps)[rows, horizon - 1]
        plan = out.q[rows, horizon - 1].float()
        u = (torch.asinh((mdps.initial * best(q_star)).sum(-1, keepdim=True) / unit)
             - torch.asinh((mdps.initial * best(plan)).sum(-1, keepdim=True) / unit))
        weight = torch.ones_like(u)
    else:
        unit = (r_max * batch.steps_to_go)[:, None, None]
        star, plan = batch.q_star / unit, out.q[rows, batch.steps_to_go - 1].float() / unit
        if objective == "v":
            star = star.masked_fill(~actions, float("-inf")).amax(-1, keepdim=True)
            plan = plan.masked_fill(~actions, float("-inf")).amax(-1, keepdim=True)
            weight = batch.loss_mask[:, :, None].float()
        else:
            weight = (batch.loss_mask[:, :, None] & actions).float()
        u = (torch.asinh(star) - torch.asinh(plan)).masked_fill(weight == 0, 0.0)
    return _pinball(u, weight, quantile), float(((u <= 0).float() * weight).sum() / weight.sum())


def gradient(model: IcrlModel, cfg: PretrainConfig, args: argparse.Namespace, params: list[torch.nn.Parameter],
             tag: object) -> tuple[list[torch.Tensor], float, list[float]]:
    """The masked gradient of the objective on fresh batches drawn from ``tag``, the loss and diagnostics."""
    generator = derived_generator(cfg, torch.device("cpu"), "optimism-objective", tag)
    # the scale stage's batches: half uniform/epsilon-optimal data, half the model's own online episodes
    half_own = replace(cfg.scale, batch_size=args.batch, online_prob=0.5, online_episodes=args.online_episodes)
    losses, diagnostics = [], []
    for batch in scale_batches(replace(cfg, scale=half_own), model, generator, torch.device("cpu")):
        loss, diagnostic = objective_loss(model, batch, args.objective, args.quantile, cfg.data.target_temperature)
        losses.append(loss)
        diagnostics.append(diagnostic)
    loss = torch.stack(losses).mean()
    grads = torch.autograd.grad(loss, params)
    masked = [g if m is None else g * m for g, m in zip(grads, row_masks(model, params), strict=True)]
    return masked, float(loss.detach()), diagnostics


def load(weights: str, explore_untried: bool) -> tuple[IcrlModel, dict, PretrainConfig]:
    """The model (optionally with ``explore_unknown: untried_only``, and then without icrl-v2.6's tried-pair bonus
    and missing-mass head, which give a tried pair a mass), its card and its run config."""
    model, card = load_checkpoint(weights)
    if explore_untried:
        config = replace(model.config, explore_unknown="untried_only", tried_unknown_limited=False,
                         tried_unknown_worth_after_goal="per_step")
        kept = {k: v for k, v in model.state_dict().items() if not k.startswith("missing_mass_head.")}
        model = IcrlModel(config)
        model.load_state_dict(kept)
    cfg = config_from_dict(nest_flat_config(card["config"]))
    return model.eval(), card, replace(cfg, model=model.config)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=str(shipped_weights_path()), help="starting checkpoint")
    parser.add_argument("--objective", choices=OBJECTIVES, required=True)
    parser.add_argument("--quantile", type=float, default=0.9, help="pinball quantile (objectives q, v, start)")
    parser.add_argument("--batch", type=int, default=64, help="MDPs per gradient (half own episodes)")
    parser.add_argument("--online-episodes", type=int, default=32, help="own episodes per MDP: 1..this many")
    parser.add_argument("--estimates", type=int, default=0, help="independent gradients to compare (0: skip)")
    parser.add_argument("--steps", type=int, default=0, help="Adam steps (0: no fit)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--no-scale-head", action="store_true", help="leave the reward-scale head as it is")
    parser.add_argument("--explore-untried", action="store_true",
                        help="model.explore_unknown: untried_only (and tried_unknown_limited: false)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="stem of the weights to write after the fit")
    args = parser.parse_args(argv)
    if not 0 < args.quantile < 1 or args.batch < 2 or args.estimates == 1 or (args.out and not args.steps):
        parser.error("need 0 < --quantile < 1, --batch >= 2, --estimates 0 or >= 2, and --steps with --out")
    torch.manual_seed(args.seed)
    model, card, cfg = load(args.weights, args.explore_untried)
    cfg = replace(cfg, seed=args.seed)
    params = trained_parameters(model, not args.no_scale_head)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    if args.estimates:
        vectors = []
        for k in range(args.estimates):
            grads, loss, diagnostics = gradient(model, cfg, args, params, ("estimate", k))
            vectors.append(torch.cat([g.reshape(-1) for g in grads]))
            print(f"estimate {k}: loss {loss:.4f}, diagnostic (random data, own episodes) "
                  f"{[round(d, 3) for d in diagnostics]}", flush=True)
        unit = F.normalize(torch.stack(vectors), dim=1)
        cosines = (unit @ unit.T)[torch.triu_indices(len(unit), len(unit), 1).unbind()]
        spread = float(cosines.std()) if len(cosines) > 1 else 0.0
        print(json.dumps({"cosine_mean": float(cosines.mean()), "cosine_std": spread}), flush=True)
    optimizer = torch.optim.Adam(params, lr=args.lr)
    for step in range(args.steps):
        grads, loss, diagnostics = gradient(model, cfg, args, params, ("step", step))
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        optimizer.step()
        if step % 25 == 0 or step == args.steps - 1:
            constants = model.optimism_constants()
            print(f"step {step}: loss {loss:.4f}, diagnostic {[round(d, 3) for d in diagnostics]}, kappa "
                  f"{constants['kappa']:.3f}, bonus gain {constants['bonus']:.2g}", flush=True)
    if args.out:
        training = dict(card.get("training", {}))
        training["command"] = " ".join(["python tools/optimism_objectives.py", *map(shlex.quote, sys.argv[1:] if
                                                                                      argv is None else argv)])
        training["optimism_objective"] = {"source_command": card.get("training", {}).get("command"), **vars(args)}
        run_config = dict(card["config"], model=dict(card["model_config"], **{
            "explore_unknown": model.config.explore_unknown}))
        print(f"wrote {save_checkpoint(args.out, model, run_config, training)}")


if __name__ == "__main__":
    main()
