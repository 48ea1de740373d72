"""Diagnostics of pretrained weights, beside the code that trains them (``bench`` is for users' agents).

    python -m icrl_agent.pretraining evaluate prior     # online return on prior MDPs, held-out families
    python -m icrl_agent.pretraining evaluate accuracy  # exploitation accuracy by family and data amount
    python -m icrl_agent.pretraining evaluate scale     # reward-scale estimate vs truth, random data and own
    python -m icrl_agent.pretraining evaluate speed     # pretraining throughput and where the time goes

From Python: :func:`run_prior`, :func:`run_accuracy`, :func:`run_scale`, :func:`run_pretrain_speed`.
"""

from icrl_agent.pretraining.evaluate.accuracy import run_accuracy
from icrl_agent.pretraining.evaluate.prior import run_prior
from icrl_agent.pretraining.evaluate.scale import run_scale
from icrl_agent.pretraining.evaluate.speed import run_pretrain_speed

__all__ = ["run_accuracy", "run_pretrain_speed", "run_prior", "run_scale"]
