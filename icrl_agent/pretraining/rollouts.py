"""Batched simulation of many MDPs at once, statistics accumulated by scatter-adds, exact reference values.

A *lane* is one running episode; ``lane_mdp[l]`` says which MDP of the batch it runs in. Episodes that
do not depend on the data (uniform or epsilon-greedy behaviour) all run side by side; an online agent
runs its episodes one after another (it replans from the statistics between them), all MDPs at once.
Q tensors here are indexed by *steps to go*, like the model's output: ``q[:, k - 1]`` = ``k`` steps left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from icrl_agent.model_inputs import StatsBatch
from icrl_agent.pretraining.prior import MDPBatch
from icrl_agent.solvers import finite_horizon_q, policy_values_to_go

# (lane_mdp [L], elapsed step t, state [L]) -> action [L]
ActionChooser = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]


@dataclass
class StatsAccumulator:
    """Running sufficient statistics of ``B`` MDPs in true state ids (``[B, S, A]`` etc., see StatsBatch)."""

    counts: torch.Tensor
    reward_sum: torch.Tensor
    reward_sq: torch.Tensor
    transitions: torch.Tensor
    terminal_counts: torch.Tensor
    initial_counts: torch.Tensor
    seen: torch.Tensor

    @classmethod
    def zeros(cls, mdps: MDPBatch) -> StatsAccumulator:
        """Empty statistics shaped like ``mdps``."""
        sa = torch.zeros_like(mdps.R)
        return cls(
            counts=sa, reward_sum=sa.clone(), reward_sq=sa.clone(), transitions=torch.zeros_like(mdps.P),
            terminal_counts=sa.clone(), initial_counts=torch.zeros_like(mdps.initial),
            seen=torch.zeros_like(mdps.state_mask),
        )

    def select(self, index: torch.Tensor) -> StatsAccumulator:
        """A copy of the statistics of the MDPs at ``index``."""
        return StatsAccumulator(**{f.name: getattr(self, f.name)[index].clone() for f in fields(self)})

    def assign(self, index: torch.Tensor, other: StatsAccumulator) -> None:
        """Overwrite the MDPs at ``index`` with ``other`` (the result of :meth:`select` after more data)."""
        for f in fields(self):
            getattr(self, f.name)[index] = getattr(other, f.name)

    def record_start(self, lane_mdp: torch.Tensor, state: torch.Tensor, active: torch.Tensor) -> None:
        """Count episode starts."""
        B, S = self.initial_counts.shape
        self.initial_counts.view(-1).index_add_(0, lane_mdp * S + state, active.to(self.counts.dtype))
        self.seen.view(-1)[(lane_mdp * S + state)[active]] = True

    def record(
        self, lane_mdp: torch.Tensor, state: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
        next_state: torch.Tensor, terminated: torch.Tensor, active: torch.Tensor,
    ) -> None:
        """Count one transition per active lane; terminated ones go to the absorbing terminal node."""
        B, S, A = self.counts.shape
        w = active.to(self.counts.dtype)
        sa = (lane_mdp * S + state) * A + action
        self.counts.view(-1).index_add_(0, sa, w)
        self.reward_sum.view(-1).index_add_(0, sa, w * reward)
        self.reward_sq.view(-1).index_add_(0, sa, w * reward * reward)
        self.terminal_counts.view(-1).index_add_(0, sa, w * terminated)
        self.transitions.view(-1).index_add_(0, sa * S + next_state, w * ~terminated)
        self.seen.view(-1)[(lane_mdp * S + next_state)[active & ~terminated]] = True

    def stats_batch(self, mdps: MDPBatch, extra_known: torch.Tensor | None = None) -> StatsBatch:
        """The model's input: statistics over the states seen so far (plus ``extra_known`` [B, S])."""
        n = self.counts.clamp(min=1)
        mean = self.reward_sum / n
        var = (self.reward_sq / n - mean * mean).clamp(min=0)
        known = self.seen if extra_known is None else self.seen | extra_known
        return StatsBatch(
            counts=self.counts, reward_mean=mean, reward_var=var, transitions=self.transitions,
            terminal_counts=self.terminal_counts, initial_counts=self.initial_counts,
            state_mask=known & mdps.state_mask, action_mask=mdps.action_mask, horizon=mdps.horizon,
        )


def sample_categorical(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``probs [L, K]`` by inverse CDF (one uniform per row)."""
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device)
    return (probs.cumsum(dim=-1) < u).sum(dim=-1).clamp(max=probs.shape[-1] - 1)


def run_episodes(
    mdps: MDPBatch,
    acc: StatsAccumulator,
    lane_mdp: torch.Tensor,
    choose: ActionChooser,
    generator: torch.Generator,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run one episode per lane, all lanes in lockstep, adding every transition to ``acc``.

    :param mdps: the batch of true MDPs
    :param acc: statistics updated in place
    :param lane_mdp: long ``[L]``, the MDP each lane runs in
    :param choose: behaviour policy, ``choose(lane_mdp, t, state) -> action``
    :param generator: torch generator on the batch's device
    :param start: start state per lane (drawn from the start distribution when not given)
    :return: the undiscounted return of each lane, ``[L]``
    """
    state = sample_categorical(mdps.initial[lane_mdp], generator) if start is None else start
    horizon = mdps.horizon[lane_mdp]
    alive = torch.ones_like(lane_mdp, dtype=torch.bool)
    acc.record_start(lane_mdp, state, alive)
    returns = torch.zeros(lane_mdp.shape[0], device=lane_mdp.device, dtype=mdps.R.dtype)
    for t in range(int(horizon.max()) if lane_mdp.numel() else 0):
        active = alive & (t < horizon)
        if t % 8 == 0 and not bool(active.any()):
            break
        action = choose(lane_mdp, t, state)
        next_state = sample_categorical(mdps.P[lane_mdp, state, action], generator)
        noise = torch.randn(lane_mdp.shape[0], generator=generator, device=lane_mdp.device)
        reward = mdps.R[lane_mdp, state, action] + mdps.reward_std[lane_mdp, state, action] * noise
        terminated = mdps.terminal[lane_mdp, next_state]
        acc.record(lane_mdp, state, action, reward, next_state, terminated, active)
        returns += reward * active
        alive = alive & ~terminated
        state = next_state
    return returns


def epsilon_greedy(
    mdps: MDPBatch, q_to_go: torch.Tensor, epsilon: torch.Tensor, generator: torch.Generator
) -> ActionChooser:
    """Greedy in ``q_to_go [B, H, S, A]`` w.p. ``1 - epsilon[b]``, else uniform over valid actions.

    ``epsilon = 1`` everywhere is the uniform random policy (``q_to_go`` is then never read).
    """

    def choose(lane_mdp: torch.Tensor, t: int, state: torch.Tensor) -> torch.Tensor:
        n_actions = mdps.action_mask[lane_mdp].sum(dim=1)
        u = torch.rand(lane_mdp.shape[0], generator=generator, device=lane_mdp.device)
        random_action = (torch.rand(lane_mdp.shape[0], generator=generator, device=lane_mdp.device)
                         * n_actions).long().clamp(max=mdps.action_mask.shape[1] - 1)
        greedy = greedy_action(mdps, q_to_go, lane_mdp, t, state)
        return torch.where(u < epsilon[lane_mdp], random_action, greedy)

    return choose


def greedy_action(
    mdps: MDPBatch,
    q_to_go: torch.Tensor,
    lane_mdp: torch.Tensor,
    t: int,
    state: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A maximizing valid action of ``q_to_go[b, H_b - t - 1, s]`` per lane.

    Ties (relative tolerance 1e-9, as :func:`icrl_agent.base.best_actions`) go to a uniformly random tied
    action when a ``generator`` is given, else to the first. Random ties matter for an online agent: in a
    state met after its plan was made every action ties, and always taking action 0 there is a policy
    no real agent follows (the :class:`~icrl_agent.Agent` picks at random too).
    """
    k = (mdps.horizon[lane_mdp] - t - 1).clamp(min=0, max=q_to_go.shape[1] - 1)
    q = q_to_go[lane_mdp, k, state].float()
    q = q.masked_fill(~mdps.action_mask[lane_mdp], float("-inf"))
    if generator is None:
        return q.argmax(dim=-1)
    top = q.amax(dim=-1, keepdim=True)
    tied = q >= top - 1e-9 * top.abs().clamp(min=1.0)
    u = torch.rand(q.shape, generator=generator, device=q.device)
    return (u * tied).argmax(dim=-1)


def optimal_q_to_go(mdps: MDPBatch) -> torch.Tensor:
    """Exact ``Q*`` of the true MDPs, ``[B, Hmax, S, A]``, indexed by steps to go (``[:, k-1]``)."""
    horizon = int(mdps.horizon.max())
    return finite_horizon_q(mdps.P, mdps.R, horizon, mdps.terminal)


def exact_values(mdps: MDPBatch, q_to_go: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact expected returns from the start distribution of the optimal and the uniform random policy.

    :param mdps: the batch
    :param q_to_go: ``Q*`` from :func:`optimal_q_to_go`, computed when not given
    :return: ``(v_optimal [B], v_random [B])``, each at the MDP's own horizon
    """
    q_to_go = optimal_q_to_go(mdps) if q_to_go is None else q_to_go
    idx = (mdps.horizon - 1).view(-1, 1, 1, 1).expand(-1, 1, *q_to_go.shape[2:])
    v_opt = (mdps.initial * q_to_go.gather(1, idx).squeeze(1).amax(dim=-1)).sum(dim=1)
    pi = mdps.action_mask.to(mdps.R.dtype) / mdps.action_mask.sum(dim=1, keepdim=True)
    uniform = pi[:, None, :].expand_as(mdps.R)
    v_to_go = policy_values_to_go(mdps.P, mdps.R, uniform, int(mdps.horizon.max()), mdps.terminal)  # (B, H, S)
    v_start = v_to_go[torch.arange(len(mdps.horizon), device=v_to_go.device), mdps.horizon - 1]  # (B, S)
    return v_opt, (mdps.initial * v_start).sum(dim=1)


def normalized_returns(returns: torch.Tensor, v_opt: torch.Tensor, v_rand: torch.Tensor) -> torch.Tensor:
    """``(R - R_random) / (R_opt - R_random)`` per MDP (rows of ``returns``); NaN where the gap is ~0."""
    gap = v_opt - v_rand
    degenerate = gap.abs() <= 1e-6 * (v_opt.abs() + v_rand.abs()) + 1e-12
    norm = (returns - v_rand[:, None]) / torch.where(degenerate, 1.0, gap)[:, None]
    return norm.masked_fill(degenerate[:, None], float("nan"))


Planner = Callable[[StatsBatch], torch.Tensor]


def as_planner(model_or_policy: torch.nn.Module | Planner, optimism: bool = True) -> Planner:
    """A function ``StatsBatch -> q_to_go [B, H, S, A]`` from a model or such a function.

    :param model_or_policy: an ``IcrlModel`` (called with ``optimism``) or any callable returning
        ``q_to_go`` (or an object with a ``.q`` attribute)
    :param optimism: passed to the model
    :return: the planner
    """
    if isinstance(model_or_policy, torch.nn.Module):
        return lambda batch: model_or_policy(batch, optimism=optimism).q

    def plan(batch: StatsBatch) -> torch.Tensor:
        out = model_or_policy(batch)
        return out if isinstance(out, torch.Tensor) else out.q

    return plan


@torch.no_grad()
def planned_episodes(
    planner: Planner,
    mdps: MDPBatch,
    acc: StatsAccumulator,
    n_episodes: torch.Tensor | int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Act as an online agent: plan once per episode from the statistics, act greedily, update them.

    :param planner: ``StatsBatch -> q_to_go``
    :param mdps: the true MDPs
    :param acc: statistics, updated in place
    :param n_episodes: episodes per MDP (an int, or long ``[B]`` for a varying number)
    :param generator: torch generator on the batch's device
    :return: per-episode returns ``[B, max episodes]`` (0 after an MDP's last episode)
    """
    B = mdps.batch_size
    n_episodes = torch.as_tensor(n_episodes, device=mdps.R.device).expand(B)
    total = int(n_episodes.max()) if B else 0
    returns = torch.zeros(B, total, device=mdps.R.device, dtype=mdps.R.dtype)
    for e in range(total):
        lane_mdp = torch.nonzero(n_episodes > e).squeeze(1)
        everyone = lane_mdp.shape[0] == B
        sub = mdps if everyone else mdps.select(lane_mdp)
        sub_acc = acc if everyone else acc.select(lane_mdp)
        lanes = torch.arange(lane_mdp.shape[0], device=lane_mdp.device)
        start = sample_categorical(sub.initial, generator)
        # the agent sees its start state before it acts, but has not counted it yet
        known = torch.nn.functional.one_hot(start, sub.initial.shape[1]).bool()
        q = planner(sub_acc.stats_batch(sub, extra_known=known))
        choose = lambda lm, t, s, q=q, sub=sub: greedy_action(sub, q, lm, t, s, generator)  # noqa: E731
        returns[lane_mdp, e] = run_episodes(sub, sub_acc, lanes, choose, generator, start=start)
        if not everyone:
            acc.assign(lane_mdp, sub_acc)
    return returns


@torch.no_grad()
def online_returns(
    model_or_policy: torch.nn.Module | Planner,
    mdps: MDPBatch,
    n_episodes: int | torch.Tensor,
    generator: torch.Generator,
    optimism: bool = True,
) -> torch.Tensor:
    """Run a model (or planner) as an online agent from empty statistics on every MDP of the batch.

    :param model_or_policy: an ``IcrlModel`` or a planner ``StatsBatch -> q_to_go``
    :param mdps: the true MDPs
    :param n_episodes: episodes per MDP (an int, or long ``[B]``: each MDP's own budget)
    :param generator: torch generator on the batch's device
    :param optimism: passed to the model
    :return: per-episode returns ``[B, max episodes]`` (0 after an MDP's last episode)
    """
    acc = StatsAccumulator.zeros(mdps)
    return planned_episodes(as_planner(model_or_policy, optimism), mdps, acc, n_episodes, generator)
