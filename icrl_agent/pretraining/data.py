"""Training examples: (sampled MDP, statistics of data drawn from it) -> Boltzmann(Q*) target, batched.

Per MDP: a random amount of data (zero to plenty) from a random behaviour (uniform, epsilon-greedy
around Q*, optionally followed by the model's own online episodes, DAgger-style), a random number of
steps to go ``k``, and the target ``pi(a|s) ~ exp(Q*_k(s, a) / tau_s)`` with ``tau_s`` proportional to
that state's own Q range (DESIGN lesson 3: a temperature relative to the whole MDP is too soft far
from the reward).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from icrl_agent.model_inputs import StatsBatch
from icrl_agent.pretraining.prior import MDPBatch, PriorSpec, _Draw, sample_mdps
from icrl_agent.pretraining.rollouts import (
    Planner,
    StatsAccumulator,
    epsilon_greedy,
    optimal_q_to_go,
    planned_episodes,
    run_episodes,
)


@dataclass
class DataSpec:
    """How much data of which behaviour, and the targets: ``PretrainConfig.data`` (the ``data:`` section)."""

    max_episodes: int = 64             # episodes of data per MDP: log-uniform over min_episodes..max_episodes
    min_episodes: int = 1              # (evaluations fix both to one amount)
    zero_data_prob: float = 0.1        # probability of an MDP with no data at all (the first step of an agent)
    epsilon_optimal_prob: float = 0.3  # share of MDPs whose behaviour is epsilon-greedy around Q* (else uniform)
    dagger_prob: float = 0.3           # share of MDPs whose data ends with the model's own episodes (DAgger)
    dagger_start: int = 200            # stage-1 step from which DAgger rollouts are mixed in
    dagger_episodes: int = 8           # the model's own episodes appended (at most) per DAgger MDP
    target_temperature: float = 0.1    # Boltzmann target temperature, times each state's Q range


@dataclass
class TrainingBatch:
    """One batch of supervised examples.

    :param stats: the model's input
    :param steps_to_go: ``k`` per MDP, long ``[B]`` (1..horizon)
    :param target: Boltzmann target probabilities ``[B, S, A]`` (0 on invalid actions)
    :param q_star: the true ``Q*_k`` ``[B, S, A]`` (for accuracy)
    :param loss_mask: bool ``[B, S]``: known, real states (where the loss is taken)
    :param mdps: the true MDPs
    """

    stats: StatsBatch
    steps_to_go: torch.Tensor
    target: torch.Tensor
    q_star: torch.Tensor
    loss_mask: torch.Tensor
    mdps: MDPBatch


class SectionTimer:
    """Wall time per named section (synchronizing CUDA so the numbers mean something)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.seconds: dict[str, float] = defaultdict(float)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Add the time spent inside the ``with`` block to ``seconds[name]``."""
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - start


def boltzmann_targets(q: torch.Tensor, action_mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(Q / tau_s)`` per state with ``tau_s = temperature x (max_a Q - min_a Q)`` over valid actions.

    States whose actions are all equal get the uniform distribution over valid actions.

    :param q: ``[B, S, A]``
    :param action_mask: bool ``[B, A]``
    :param temperature: relative temperature (> 0)
    :return: probabilities ``[B, S, A]``, 0 on invalid actions
    """
    mask = action_mask[:, None, :].expand_as(q)
    q_max = q.masked_fill(~mask, float("-inf")).amax(dim=-1, keepdim=True)
    q_min = q.masked_fill(~mask, float("inf")).amin(dim=-1, keepdim=True)
    spread = q_max - q_min
    scale = q.abs().masked_fill(~mask, 0).amax(dim=(1, 2), keepdim=True)
    flat = spread <= 1e-6 * scale + 1e-12
    z = (q - q_max) / torch.where(flat, 1.0, temperature * spread)
    z = torch.where(flat, 0.0, z).masked_fill(~mask, float("-inf"))
    return torch.softmax(z, dim=-1)


def _episode_amounts(spec: DataSpec, d: _Draw, n: int) -> torch.Tensor:
    if spec.max_episodes == 0:
        return torch.zeros(n, dtype=torch.long, device=d.device)
    amount = d.log_integers(spec.min_episodes, spec.max_episodes, n)
    return torch.where(d.bernoulli(spec.zero_data_prob, n), 0, amount)


def collect_data(
    mdps: MDPBatch,
    q_to_go: torch.Tensor,
    spec: DataSpec,
    generator: torch.Generator,
    planner: Planner | None = None,
    timer: SectionTimer | None = None,
) -> StatsAccumulator:
    """Statistics of a random amount of data per MDP under a random behaviour.

    :param mdps: the true MDPs
    :param q_to_go: their exact ``Q*`` (for epsilon-greedy behaviour)
    :param spec: amounts and behaviour mixture
    :param generator: torch generator on the batch's device
    :param planner: the current model as a planner; when given, a ``dagger_prob`` share of the MDPs
        gets 1..``dagger_episodes`` more episodes of the model acting online on its own statistics
    :param timer: optional timer (sections ``rollouts`` and ``dagger``)
    :return: the accumulated statistics
    """
    timer = timer or SectionTimer(mdps.R.device)
    d = _Draw(generator, mdps.R.device)
    B = mdps.batch_size
    u = d.uniform(0, 1, B)
    epsilon = torch.where(u < spec.epsilon_optimal_prob, d.uniform(0, 1, B), 1.0)
    dagger = (u >= spec.epsilon_optimal_prob) & (u < spec.epsilon_optimal_prob + spec.dagger_prob)
    acc = StatsAccumulator.zeros(mdps)
    with timer.section("rollouts"):
        lane_mdp = torch.repeat_interleave(torch.arange(B, device=d.device), _episode_amounts(spec, d, B))
        run_episodes(mdps, acc, lane_mdp, epsilon_greedy(mdps, q_to_go, epsilon, generator), generator)
    if planner is not None and spec.dagger_prob > 0:
        with timer.section("dagger"):
            episodes = torch.where(dagger, d.integers(1, spec.dagger_episodes, B), 0)
            planned_episodes(planner, mdps, acc, episodes, generator)
    return acc


def make_batch(
    mdps: MDPBatch,
    spec: DataSpec,
    generator: torch.Generator,
    planner: Planner | None = None,
    timer: SectionTimer | None = None,
) -> TrainingBatch:
    """Solve the MDPs exactly, collect data, and build the supervised targets.

    :param mdps: the true MDPs
    :param spec: data amounts, behaviours and target temperature
    :param generator: torch generator on the batch's device
    :param planner: the current model as a planner, for DAgger data (``None``: no DAgger)
    :param timer: optional timer (sections ``solve``, ``rollouts``, ``dagger``)
    :return: the batch
    """
    timer = timer or SectionTimer(mdps.R.device)
    with timer.section("solve"):
        q_to_go = optimal_q_to_go(mdps)
    acc = collect_data(mdps, q_to_go, spec, generator, planner, timer)
    d = _Draw(generator, mdps.R.device)
    steps_to_go = d.integers(1, mdps.horizon, mdps.batch_size)
    q_star = q_to_go[torch.arange(mdps.batch_size, device=d.device), steps_to_go - 1]
    # the agent also knows the state it is in now: one drawn from the start distribution
    start = torch.multinomial(mdps.initial, 1, generator=generator).squeeze(1)
    known = torch.nn.functional.one_hot(start, mdps.initial.shape[1]).bool()
    stats = acc.stats_batch(mdps, extra_known=known)
    return TrainingBatch(
        stats=stats, steps_to_go=steps_to_go,
        target=boltzmann_targets(q_star, mdps.action_mask, spec.target_temperature),
        q_star=q_star, loss_mask=stats.state_mask, mdps=mdps,
    )


def sample_training_batch(
    batch_size: int,
    family_weights: dict[str, float],
    prior: PriorSpec,
    spec: DataSpec,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    planner: Planner | None = None,
    timer: SectionTimer | None = None,
) -> TrainingBatch:
    """Sample MDPs from the prior and turn them into a :class:`TrainingBatch` (see :func:`make_batch`).

    :param batch_size: MDPs in the batch
    :param family_weights: mixture weights of the families to draw from
    :param prior: size, horizon and reward ranges
    :param spec: data amounts, behaviours and target temperature
    :param generator: torch generator on ``device``
    :param device: where everything runs
    :param planner: the current model as a planner, for DAgger data
    :param timer: optional timer (sections ``prior``, ``solve``, ``rollouts``, ``dagger``)
    :return: the batch
    """
    timer = timer or SectionTimer(device)
    with timer.section("prior"):
        mdps = sample_mdps(batch_size, family_weights, prior, generator, device)
    return make_batch(mdps, spec, generator, planner, timer)
