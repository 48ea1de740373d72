"""The model's input: dense, padded sufficient statistics of a batch of MDPs.

Built by the agent from :class:`icrl_agent.stats.SufficientStats` and, in bulk, by the pretraining
data generator. Kept apart from the network so both sides import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class StatsBatch:
    """Sufficient statistics of ``B`` MDPs, padded to ``S`` states and ``A`` actions.

    :param counts: visits ``N(s, a)``, float ``[B, S, A]``
    :param reward_mean: empirical mean reward per ``(s, a)`` (0 where unvisited), ``[B, S, A]``
    :param reward_var: empirical reward variance per ``(s, a)``, ``[B, S, A]``
    :param transitions: counts ``N(s, a, s')`` into non-terminal known states, ``[B, S, A, S]``
    :param terminal_counts: counts of ``(s, a)`` transitions that ended the episode, ``[B, S, A]``
    :param initial_counts: how often each state started an episode, ``[B, S]``
    :param state_mask: which of the ``S`` slots are real, known states, bool ``[B, S]``
    :param action_mask: which of the ``A`` slots are real actions, bool ``[B, A]``
    :param horizon: planning horizon per MDP, long ``[B]``
    """

    counts: torch.Tensor
    reward_mean: torch.Tensor
    reward_var: torch.Tensor
    transitions: torch.Tensor
    terminal_counts: torch.Tensor
    initial_counts: torch.Tensor
    state_mask: torch.Tensor
    action_mask: torch.Tensor
    horizon: torch.Tensor

    def to(self, device: torch.device | str) -> StatsBatch:
        """Return a copy with every tensor on ``device``."""
        return StatsBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def batch_size(self) -> int:
        return self.counts.shape[0]
