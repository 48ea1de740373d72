"""The reward-scale estimate against the true largest reward, by family, on random data and on the agent's own.

    python -m icrl_agent.pretraining evaluate scale --weights icrl_agent/weights/icrl-v2.1 --mdps 64

How optimistic the agent is, told nothing, rests on one number: its estimate of how large the rewards it has
not seen may be (``IcrlModel.reward_scale``). For every prior family (held-out ones included), the same
MDPs are drawn from the prior of the first weights' card, and each model's estimate is compared with the
true largest ``|R(s, a)|`` under two kinds of data:

- ``random``: the card's uniform / epsilon-optimal data (what the scale stage trains on by default);
- ``own``: only the model's own greedy episodes on its optimistic plan, from empty statistics
  (1..``--episodes``, uniform): the statistics a user's agent holds while it explores.

Per row: ``n`` the MDPs that count (their data holds a nonzero reward), ``coverage`` the share whose true
maximum is at or below the estimate (a scale stage at quantile ``tau`` aims at ``tau``), ``median`` the
median of ``log(true max) - log(estimate)`` (> 0: the estimate is too low), ``low_e`` the share whose
estimate is more than ``e`` times too low (where an agent stops exploring too early).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from icrl_agent.agent import shipped_weights_path
from icrl_agent.bench.common import prepare_out
from icrl_agent.checkpoint import load_checkpoint
from icrl_agent.model import IcrlModel
from icrl_agent.pretraining.config import PretrainConfig
from icrl_agent.pretraining.evaluate.prior import RUNS_DIR, config_of
from icrl_agent.pretraining.prior import FAMILIES
from icrl_agent.pretraining.train import scale_batches, scale_log_error

DATA_KINDS = ("random", "own")


def _family_config(cfg: PretrainConfig, family: str, kind: str, n_mdps: int, episodes: int) -> PretrainConfig:
    prior = replace(cfg.prior, family_weights={family: 1.0}, held_out=[])
    scale = replace(cfg.scale, batch_size=n_mdps, online_prob=float(kind == "own"), online_episodes=episodes)
    return replace(cfg, prior=prior, scale=scale)


@torch.no_grad()
def score_scale(model: IcrlModel, cfg: PretrainConfig, family: str, kind: str, n_mdps: int, episodes: int,
                seed: int) -> dict[str, float]:
    """Coverage, median log error and share more than ``e`` times too low, for one family and data kind.

    :param model: the model whose ``reward_scale`` is scored (its own episodes make the ``own`` data)
    :param cfg: the run configuration giving the prior and the random data's behaviour
    :param family: the prior family
    :param kind: ``"random"`` or ``"own"``
    :param n_mdps: MDPs drawn (the same ones for every model at a given seed)
    :param episodes: most episodes of the ``own`` data
    :param seed: seed of the draws
    :return: ``{"n", "coverage", "median", "low_e"}`` (NaN when no MDP counts)
    """
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data kind {kind!r}; expected one of {DATA_KINDS}")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + FAMILIES.index(family))
    (batch,) = scale_batches(_family_config(cfg, family, kind, n_mdps, episodes), model, generator,
                             torch.device("cpu"))
    error, counts = scale_log_error(model.reward_scale(batch.stats).float(), batch)
    error = error[counts]
    if not len(error):
        return {"n": 0, "coverage": float("nan"), "median": float("nan"), "low_e": float("nan")}
    return {"n": len(error), "coverage": float((error <= 0).float().mean()), "median": float(error.median()),
            "low_e": float((error > 1.0).float().mean())}


def run_scale(
    weights: Sequence[str],
    families: Sequence[str] | None,
    n_mdps: int,
    episodes: int,
    seed: int = 0,
    out_dir: str | Path | None = None,
    command: str = "",
    force: bool = False,
) -> dict[str, Any]:
    """Score each model's reward-scale estimate per family and data kind (see the module docstring).

    :param weights: checkpoints (``""``: the shipped weights); the first one's card gives the prior and data
    :param families: prior families (default: all)
    :param n_mdps: MDPs per family and data kind
    :param episodes: most episodes of a model's own data per MDP
    :param seed: seed of the draws
    :param out_dir: where ``scale.json`` and ``scale.md`` go (``None``: a new ``runs/evaluate/scale-<time>``)
    :param command: the command line, written above the table
    :param force: write into a non-empty ``out_dir``
    :return: ``{"rows": [...], "markdown": the table, "folder": out_dir}``
    """
    paths = [w or str(shipped_weights_path()) for w in weights]
    cfg = config_of(paths[0])
    out = Path(prepare_out(None if out_dir is None else str(out_dir), "scale", force, base=RUNS_DIR))
    names = [Path(p).name.removesuffix(".safetensors") for p in paths]
    if len(set(names)) < len(names):
        raise ValueError(f"--weights names two checkpoints with the same file name ({names}): rename a copy")
    models = {name: load_checkpoint(p)[0].eval() for name, p in zip(names, paths, strict=True)}
    rows = []
    for family in families or FAMILIES:
        for kind in DATA_KINDS:
            for name, model in models.items():
                rows.append({"family": family, "held_out": family in cfg.prior.held_out, "data": kind,
                             "model": name, **score_scale(model, cfg, family, kind, n_mdps, episodes, seed)})
    markdown = _write(rows, command, out)
    return {"rows": rows, "markdown": markdown, "folder": str(out)}


def _write(rows: list[dict[str, Any]], command: str, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    lines = [f"`{command}`", "", "Reward-scale estimate vs the true largest |R|: coverage (share at or below the "
             "estimate), median log(true / estimate), share more than e times too low.", "",
             "| family | data | model | n | coverage | median | low_e |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        tag = " (held out)" if r["held_out"] else ""
        lines.append(f"| {r['family']}{tag} | {r['data']} | {r['model']} | {r['n']} | {r['coverage']:.2f} | "
                     f"{r['median']:.2f} | {r['low_e']:.2f} |")
    text = "\n".join(lines) + "\n"
    (out / "scale.md").write_text(text)
    return text
