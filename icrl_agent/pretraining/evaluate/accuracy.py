"""Policy accuracy against the Boltzmann target of ``Q*``, by family and by amount of data.

    python -m icrl_agent.pretraining evaluate accuracy --episodes 0,1,4,16,64 --mdps 128

For every prior family (held-out ones included) and every data amount (episodes of uniform or
epsilon-optimal behaviour, as in stage 1 without DAgger), MDPs are drawn from the prior the weights were
trained with, and each model's exploitation policy (``optimism=False``) is scored: ``accuracy`` is the
share of known states whose greedy action is optimal (within 1% of the state's Q range), ``loss`` the
cross-entropy to the Boltzmann target (stage 1's loss). ``empirical VI`` is the reference a model must
beat: exact value iteration on the empirical MDP (every learned correction off).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from icrl_agent.agent import shipped_weights_path
from icrl_agent.bench.common import prepare_out
from icrl_agent.checkpoint import load_checkpoint
from icrl_agent.model import IcrlModel
from icrl_agent.pretraining.data import DataSpec, TrainingBatch, sample_training_batch
from icrl_agent.pretraining.evaluate.prior import RUNS_DIR, prior_spec_of
from icrl_agent.pretraining.prior import FAMILIES, PriorSpec
from icrl_agent.pretraining.train import policy_loss

REFERENCE = "empirical VI"


def _batch(family: str, episodes: int, n_mdps: int, prior: PriorSpec, seed: int) -> TrainingBatch:
    spec = DataSpec(max_episodes=episodes, min_episodes=max(episodes, 1), zero_data_prob=float(episodes == 0),
                    dagger_prob=0.0)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + episodes)
    return sample_training_batch(n_mdps, {family: 1.0}, prior, spec, generator)


@torch.no_grad()
def _score(model: IcrlModel, batch: TrainingBatch, corrections: bool = True) -> dict[str, float]:
    out = model(batch.stats, optimism=False, corrections=corrections)
    loss, accuracy = policy_loss(out.logits(batch.steps_to_go).float(), batch)
    return {"accuracy": float(accuracy), "loss": float(loss)}


def run_accuracy(
    weights: Sequence[str | None],
    families: Sequence[str] | None,
    episodes: Sequence[int],
    n_mdps: int,
    seed: int = 0,
    out_dir: str | Path | None = None,
    command: str = "",
    force: bool = False,
) -> dict[str, Any]:
    """Accuracy and loss of each model, plus the empirical-VI reference, per family and data amount.

    :param weights: checkpoints to score (``None``: the shipped weights); the first one's card gives the
        prior's ranges and held-out families
    :param families: prior families (default: all of them)
    :param episodes: data amounts, in episodes per MDP (0: no data, only the start state is known)
    :param n_mdps: MDPs per family and amount
    :param seed: seed of the MDP and data draws
    :param out_dir: where ``accuracy.json`` and ``accuracy.md`` go (``None``: a new
        ``runs/evaluate/accuracy-<time>``; a non-empty folder only with ``force``)
    :param command: the command line, written above the tables
    :param force: write into a non-empty ``out_dir``
    :return: ``{"rows": [...], "markdown": the tables, "folder": out_dir}``
    """
    if any(e < 0 for e in episodes):
        raise ValueError(f"--episodes must be amounts >= 0, got {list(episodes)}")
    prior = prior_spec_of(weights[0])
    held_out = prior.held_out
    out = Path(prepare_out(None if out_dir is None else str(out_dir), "accuracy", force, base=RUNS_DIR))
    families = list(families or FAMILIES)
    models = {_label(w): load_checkpoint(w or shipped_weights_path())[0].eval() for w in weights}
    reference = next((m for m in models.values() if m.config.head == "vi"), None)
    rows = []
    for family in families:
        for amount in episodes:
            batch = _batch(family, amount, n_mdps, prior, seed)
            scored = {name: _score(model, batch) for name, model in models.items()}
            if reference is not None:
                scored[REFERENCE] = _score(reference, batch, corrections=False)
            for name, metrics in scored.items():
                rows.append({"family": family, "held_out": family in held_out, "episodes": amount,
                             "model": name, **metrics})
    names = list(models) + ([REFERENCE] if reference is not None else [])
    markdown = _write(rows, names, families, list(episodes), out, command)
    return {"rows": rows, "markdown": markdown, "folder": str(out)}


def _label(weights: str | None) -> str:
    return "shipped" if weights is None else Path(weights).name.removesuffix(".safetensors")


def _write(
    rows: list[dict[str, Any]], names: list[str], families: list[str], episodes: list[int], out: Path, command: str
) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    lines = [f"`{command}`", "", "Greedy-action accuracy of the exploitation policy (share of known states "
             "where it picks an optimal action); columns: episodes of data per MDP.", ""]
    for name in names:
        lines += [f"### {name}", "", "| family | " + " | ".join(map(str, episodes)) + " |",
                  "|---" * (len(episodes) + 1) + "|"]
        for family in families:
            cells = [next(r for r in rows if r["family"] == family and r["episodes"] == e and r["model"] == name)
                     for e in episodes]
            tag = " (held out)" if cells[0]["held_out"] else ""
            lines.append(f"| {family}{tag} | " + " | ".join(f"{c['accuracy']:.2f}" for c in cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    (out / "accuracy.md").write_text(text)
    return text
