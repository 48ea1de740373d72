"""How much of an ES gradient estimate is signal: the agreement of independent estimates at one point.

    python tools/es_gradient_agreement.py --config configs/v2_2_es_adam.yaml --estimates 6 --pairs 12

A diagnostic for stage 2 (:func:`icrl_agent.pretraining.train.es_gradient`): it builds the config's model with
its ``init_from`` weights and, without moving them, makes ``--estimates`` gradient estimates from independent
draws (MDPs, budgets, episode seeds and perturbations of generations 0, 1, ...), each from ``--pairs`` antithetic
pairs (default: the config's ``es.pairs``; ``--mdps`` and ``--sigma`` likewise). If the estimates were the true
gradient plus independent noise, the mean cosine between two of them is ``|g|^2 / (|g|^2 + noise^2)``: near 0
means a generation's step is mostly noise, and ES cannot climb at that budget.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace

import torch

from icrl_agent.pretraining import distributed
from icrl_agent.pretraining.config import PretrainConfig, load_config
from icrl_agent.pretraining.train import build_model, es_gradient, init_from_checkpoint


def gradient_estimates(cfg: PretrainConfig, estimates: int) -> torch.Tensor:
    """``[estimates, n]``: ES gradient estimates at the config's starting weights, from independent draws."""
    info = distributed.DistInfo()  # one process, on the CPU
    model = build_model(cfg, info.device)
    if cfg.init_from:
        init_from_checkpoint(model, cfg.init_from)
    model.eval()
    return torch.stack([es_gradient(cfg, model, generation, info)[0] for generation in range(estimates)])


def agreement(grads: torch.Tensor) -> dict[str, float]:
    """Pairwise cosines of the estimates, and the signal share they imply.

    :param grads: ``[K, n]``, K >= 2 estimates
    :return: ``cosine_mean`` and ``cosine_std`` over the ``K (K - 1) / 2`` pairs, ``signal_share`` (the mean
        cosine clamped at 0: the share of an estimate's squared norm that is gradient) and
        ``noise_to_signal`` (noise over gradient, squared norms; ``inf`` when no signal is seen). If the
        noise shrinks like ``1 / pairs``, ``pairs * noise_to_signal`` pairs make half of an estimate signal
    """
    if grads.shape[0] < 2:
        raise ValueError(f"need at least 2 estimates to compare, got {grads.shape[0]}")
    unit = grads / grads.norm(dim=1, keepdim=True).clamp_min(1e-30)
    cosines = (unit @ unit.T)[torch.triu_indices(len(grads), len(grads), 1).unbind()]
    share = max(float(cosines.mean()), 0.0)
    return {"cosine_mean": float(cosines.mean()), "cosine_std": float(cosines.std()) if len(cosines) > 1 else 0.0,
            "signal_share": share, "noise_to_signal": (1 - share) / share if share > 0 else math.inf}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a pretraining config (its prior, es section, init_from)")
    parser.add_argument("--estimates", type=int, default=6, help="independent estimates to compare (>= 2)")
    parser.add_argument("--pairs", type=int, default=None, help="antithetic pairs per estimate (default es.pairs)")
    parser.add_argument("--mdps", type=int, default=None, help="MDPs per estimate (default es.mdps)")
    parser.add_argument("--sigma", type=float, default=None, help="perturbation scale (default es.sigma)")
    args = parser.parse_args(argv)
    if args.estimates < 2:
        parser.error(f"--estimates must be at least 2, got {args.estimates}")
    cfg = load_config(args.config)
    es = replace(cfg.es, pairs=args.pairs or cfg.es.pairs, mdps=args.mdps or cfg.es.mdps,
                 sigma=args.sigma or cfg.es.sigma)
    cfg = replace(cfg, es=es)
    grads = gradient_estimates(cfg, args.estimates)
    report = {"config": args.config, "init_from": cfg.init_from, "parameters": es.parameters, "pairs": es.pairs,
              "mdps": es.mdps, "sigma": es.sigma, "estimates": args.estimates, **agreement(grads)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
