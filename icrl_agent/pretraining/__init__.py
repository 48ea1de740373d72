"""Pretraining of the icrl model on synthetic MDPs: prior, batched data, training loops, DDP, CLI.

    python -m icrl_agent.pretraining --config configs/default.yaml --device cuda
    torchrun --nproc_per_node=N -m icrl_agent.pretraining --config configs/default.yaml

See docs/pretraining.md. Acting never imports this package.
"""

from icrl_agent.pretraining.config import PretrainConfig, load_config
from icrl_agent.pretraining.prior import FAMILIES, MDPBatch, PriorSpec, sample_mdps
from icrl_agent.pretraining.rollouts import exact_values, normalized_returns, online_returns
from icrl_agent.pretraining.train import train

__all__ = [
    "FAMILIES", "MDPBatch", "PretrainConfig", "PriorSpec", "exact_values", "load_config", "normalized_returns",
    "online_returns", "sample_mdps", "train",
]
