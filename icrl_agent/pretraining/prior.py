"""The prior: families of tabular MDPs, each sampled in one batch of torch ops on the chosen device.

Every sampler returns a padded :class:`MDPBatch`; the mixture (:func:`sample_mdps`) pads the families
to a common size and applies what every family shares: a log-uniform reward scale, an occasional sign
flip, optional reward noise, and a horizon. Families (parameters drawn per MDP):

- ``garnet``: S in [min_states, max_states], A in [2, max_actions], each (s, a) reaches k in [1, 4]
  random successors with Dirichlet(1) weights; dense or sparse (5-30%) rewards with random signs;
  optionally terminal states; one or several start states.
- ``grid``: w x h cells (2..8 each, w*h <= max_states), 4 moves (+ "stay" w.p. 0.3 when max_actions > 4;
  only the first max_actions moves when it is < 4); walls (0-25%),
  slip 0-0.4 (a uniformly random move instead), a goal (terminal w.p. 0.8) and sometimes a second,
  smaller one; traps (0-15% of cells, negative, half of them terminal "lava"); step costs w.p. 0.3.
- ``river``: a RiverSwim-like chain (S in 3..40, 2 actions): "left" is deterministic, "right" advances
  w.p. 0.3-0.95 and slips back w.p. <= 0.1; a small reward (0.1-5% of the big one) at the left end,
  a big one at the right end; non-terminal. Needs deep exploration.
- ``bandit``: a contextual bandit: 2..8 contexts, A arms with random means; the next context is
  uniform, or a terminal sink (a one-shot bandit) w.p. 0.5.
- ``tree``: a slippery decision tree (branching 2..4, depth <= what fits in max_states); entering a leaf
  ends the episode with a sparse random leaf reward.
- ``distractor``: a corridor (4..32 cells, 2..4 actions) whose start pays a small reward (1-20% of the goal)
  and a far terminal goal pays the big one; the extra actions send the agent back to the start.
- ``step_cost``: DeepSea-like: a corridor where one (random, per state) action advances at a small cost
  (0.5-5% of the goal) and every other action returns to the start for free; the far end pays the goal.
- ``loop``: a ring of S states with moves +1, -1, a jump and "stay", slip 0-0.3, sparse rewards at a few
  random states; non-terminal.
- ``arms``: SixArms-like: a hub and one room per action (2..max_actions); from the hub, action i enters
  room i with probability p_i (1 for one arm, log-uniform arms_min_enter (0.02)-0.5 for the others), else stays; in room i
  one action stays and pays r_i, the others return to the hub. The rewards span a ratio of 10-1000; with
  probability 0.7 the rarer rooms pay more (the small sure reward hides the large rare one). With
  probability ``arms_rare_pays_prob`` (default 0) the rewards are ``(1 / p_i)^g`` instead, so that a try's
  expected payoff ``p_i r_i`` rises with rarity, as in SixArms. Rewards are paid on entering a state, so a try
  from the hub pays ``p_i r_i`` in expectation (the statistics show a room's worth before it is entered);
  with ``arms_hub_pays: false`` only staying pays, as in SixArms.

Benchmarks (RiverSwim's exact parameters, FrozenLake's maps, ...) are not in any family on purpose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch

FAMILIES = ("garnet", "grid", "river", "bandit", "tree", "distractor", "step_cost", "loop", "arms")


@dataclass
class MDPBatch:
    """``B`` tabular MDPs padded to ``S`` states and ``A`` actions.

    Padded actions copy action 0 and padded states are zero-reward self-loops, so exact solvers need
    no masks; the masks say what is real.

    :param P: transition probabilities ``[B, S, A, S]``, row-stochastic
    :param R: expected rewards ``[B, S, A]``
    :param reward_std: standard deviation of the Gaussian reward noise ``[B, S, A]``
    :param terminal: bool ``[B, S]``: entering such a state ends the episode
    :param initial: start distribution ``[B, S]``
    :param state_mask: bool ``[B, S]``, real states
    :param action_mask: bool ``[B, A]``, real actions
    :param horizon: episode length per MDP, long ``[B]``
    :param family: index into :data:`FAMILIES` per MDP, long ``[B]``
    """

    P: torch.Tensor
    R: torch.Tensor
    reward_std: torch.Tensor
    terminal: torch.Tensor
    initial: torch.Tensor
    state_mask: torch.Tensor
    action_mask: torch.Tensor
    horizon: torch.Tensor
    family: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.P.shape[0]

    @property
    def n_states(self) -> torch.Tensor:
        """Real states per MDP, long ``[B]``."""
        return self.state_mask.sum(dim=1)

    @property
    def n_actions(self) -> torch.Tensor:
        """Real actions per MDP, long ``[B]``."""
        return self.action_mask.sum(dim=1)

    def to(self, device: torch.device | str) -> MDPBatch:
        """Return a copy with every tensor on ``device``."""
        return MDPBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def select(self, index: torch.Tensor) -> MDPBatch:
        """The MDPs at ``index`` (a long tensor or bool mask over the batch)."""
        return MDPBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def default_family_weights() -> dict[str, float]:
    """The mixture weights of the default prior (every family; held-out ones are removed at training)."""
    return {
        "garnet": 3.0, "grid": 3.0, "river": 2.0, "bandit": 1.0, "tree": 1.0,
        "distractor": 2.0, "step_cost": 2.0, "loop": 1.0,
    }


@dataclass
class PriorSpec:
    """The prior over MDPs: the family mixture and the ranges every family shares.

    This is ``PretrainConfig.prior`` (the ``prior:`` section of a run config): every field is settable
    from YAML. Samplers read the ranges; :func:`sample_mdps` takes the mixture weights separately, so
    evaluations can draw one family at a time.
    """

    family_weights: dict[str, float] = field(default_factory=default_family_weights)  # mixture weights
    held_out: list[str] = field(default_factory=lambda: ["tree", "loop"])  # never trained on; reported
    min_states: int = 2                # smallest number of states of a sampled MDP
    max_states: int = 64               # largest number of states (grids and trees stay under it)
    max_actions: int = 8               # largest number of actions
    min_horizon: int = 10              # episode length range (log-uniform, raised where a goal needs it)
    max_horizon: int = 200
    reward_scale_min: float = 0.01     # rewards are multiplied by a log-uniform scale over this range
    reward_scale_max: float = 100.0
    negate_prob: float = 0.1           # probability that an MDP's rewards all change sign
    stochastic_reward_prob: float = 0.3  # probability of Gaussian reward noise (std 10-100% of |R|)
    # the small reward or cost that hides the goal in river, distractor and step_cost, as a fraction of the
    # goal reward, log-uniform in [min, max]; 0 keeps each family's own range (module docstring)
    small_reward_ratio_min: float = 0.0
    small_reward_ratio_max: float = 0.0
    max_corridor: int = 0              # longest river / distractor / step_cost chain; 0: 40 / 32 / 24
    arms_max_stay: int = 1             # arms: each room is kept by 1..arms_max_stay of its actions (at most
                                       # A - 1, so one always leaves); 1 keeps every room's single staying action
    arms_min_enter: float = 0.02       # arms: the other rooms are entered with probability log-uniform in
                                       # [arms_min_enter, 0.5] (SixArms' rarest is 0.01); 0.02 keeps the draws
    arms_rare_pays_prob: float = 0.0   # arms: share of MDPs whose room rewards are (1 / p_i)^g, g uniform in
                                       # [1, 1.3], so a try's expected payoff p_i r_i rises with rarity (as in
                                       # SixArms); 0 keeps the draws
    arms_hub_pays: bool = True         # arms: a try from the hub pays the expected reward of the room it enters
                                       # (the draws so far: the try shows p_i r_i at once); False: only staying
                                       # in a room pays, so a room's worth shows once it is entered (SixArms)

    @property
    def train_families(self) -> dict[str, float]:
        """Mixture weights of the families trained on (held-out ones and zero weights removed)."""
        return {k: w for k, w in self.family_weights.items() if k not in self.held_out and w > 0}

    def capped(self, max_horizon: int) -> PriorSpec:
        """A copy whose horizons are at most ``max_horizon`` (stage 2 caps them: its loop is sequential in H)."""
        top = min(self.max_horizon, max_horizon)
        return replace(self, max_horizon=top, min_horizon=min(self.min_horizon, top))


class _Draw:
    """Random draws from one generator on one device (keeps the samplers short)."""

    def __init__(self, generator: torch.Generator, device: torch.device):
        self.g, self.device = generator, device

    def uniform(self, lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=self.g, device=self.device)

    def bernoulli(self, p: float | torch.Tensor, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.g, device=self.device) < p

    def integers(self, lo: int | torch.Tensor, hi: int | torch.Tensor, n: int) -> torch.Tensor:
        """Uniform integers in ``[lo, hi]`` (inclusive, per element when tensors)."""
        u = torch.rand(n, generator=self.g, device=self.device)
        return (lo + (u * (torch.as_tensor(hi, device=self.device) - lo + 1)).floor()).long()

    def log_integers(self, lo: int, hi: int | torch.Tensor, n: int) -> torch.Tensor:
        """Integers in ``[lo, hi]``, log-uniform (small sizes as likely as large ones per octave)."""
        hi = torch.as_tensor(hi, device=self.device, dtype=torch.float32)
        u = torch.rand(n, generator=self.g, device=self.device)
        value = torch.exp(math.log(lo) + u * (torch.log(hi + 1) - math.log(lo))).floor()
        return torch.minimum(value, hi).long()

    def log_uniform(self, lo: float, hi: float, n: int) -> torch.Tensor:
        return torch.exp(self.uniform(math.log(lo), math.log(hi), n))


def _finish(
    P: torch.Tensor, R: torch.Tensor, terminal: torch.Tensor, initial: torch.Tensor,
    n_states: torch.Tensor, n_actions: torch.Tensor, min_horizon: torch.Tensor, family: str,
) -> MDPBatch:
    """Masks and padding: padded actions copy action 0, padded states become zero-reward self-loops."""
    n, S, A = R.shape
    device = R.device
    state_mask = torch.arange(S, device=device) < n_states[:, None]
    action_mask = torch.arange(A, device=device) < n_actions[:, None]
    P = torch.where(action_mask[:, None, :, None], P, P[:, :, :1])
    R = torch.where(action_mask[:, None, :], R, R[:, :, :1])
    eye = torch.eye(S, device=device).expand(n, A, S, S).transpose(1, 2)
    P = torch.where(state_mask[:, :, None, None], P, eye)
    R = R * state_mask[:, :, None]
    initial = initial * state_mask
    initial = initial / initial.sum(dim=1, keepdim=True)
    return MDPBatch(
        P=P, R=R, reward_std=torch.zeros_like(R), terminal=terminal & state_mask, initial=initial,
        state_mask=state_mask, action_mask=action_mask, horizon=min_horizon.long(),
        family=torch.full((n,), FAMILIES.index(family), dtype=torch.long, device=device),
    )


def _one_hot(index: torch.Tensor, size: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(index, size).float()


def _entry_rewards(P: torch.Tensor, entry: torch.Tensor) -> torch.Tensor:
    """Expected reward of (s, a) when a reward is paid on entering each state: ``R = P @ entry``."""
    return torch.einsum("nsat,nt->nsa", P, entry)


def sample_garnet(n: int, spec: PriorSpec, d: _Draw) -> MDPBatch:
    """Sparse random (Garnet/Dirichlet) MDPs. See the module docstring for the parameters."""
    n_states = d.log_integers(max(spec.min_states, 2), spec.max_states, n)
    n_actions = d.integers(2, spec.max_actions, n)
    S, A = int(n_states.max()), int(n_actions.max())
    branching = torch.minimum(d.integers(1, 4, n), n_states)
    valid = torch.arange(S, device=d.device) < n_states[:, None]
    scores = torch.where(valid[:, None, None, :], d.uniform(0, 1, n, S, A, S), -1.0)
    top = scores.topk(min(4, S), dim=-1).indices
    keep = torch.arange(top.shape[-1], device=d.device) < branching[:, None, None, None]
    weights = -torch.log(d.uniform(1e-6, 1.0, *top.shape)) * keep
    P = torch.zeros(n, S, A, S, device=d.device).scatter_add_(-1, top, weights)
    P = P / P.sum(dim=-1, keepdim=True)
    density = torch.where(d.bernoulli(0.5, n), 1.0, d.uniform(0.05, 0.3, n))
    rewarded = d.bernoulli(density[:, None, None], n, S, A)
    positive_only = d.bernoulli(0.5, n)[:, None, None]
    values = d.uniform(0, 1, n, S, A) * torch.where(positive_only | d.bernoulli(0.5, n, S, A), 1.0, -1.0)
    R = values * rewarded
    has_terminal = d.bernoulli(0.3, n)[:, None]
    terminal = has_terminal & d.bernoulli(d.uniform(0.05, 0.2, n)[:, None], n, S)
    terminal[:, 0] = False
    initial = _one_hot(torch.zeros(n, dtype=torch.long, device=d.device), S)
    several = d.bernoulli(0.3, n)[:, None] & d.bernoulli(0.3, n, S) & ~terminal
    initial = torch.maximum(initial, several.float())
    return _finish(P, R, terminal, initial, n_states, n_actions, torch.full_like(n_states, 1), "garnet")


_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left


def _grid_moves(width: torch.Tensor, n_states: torch.Tensor, wall: torch.Tensor, S: int) -> torch.Tensor:
    """Next cell ``[n, S, 4]`` of each move; blocked by borders and walls (the agent stays)."""
    cell = torch.arange(S, device=width.device)[None, :]
    row, col = cell // width[:, None], cell % width[:, None]
    height = n_states[:, None] // width[:, None]
    targets = []
    for dr, dc in _MOVES:
        r, c = row + dr, col + dc
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width[:, None])
        target = torch.where(inside, r * width[:, None] + c, cell).clamp(0, S - 1)
        blocked = wall.gather(1, target)
        targets.append(torch.where(blocked, cell.expand_as(target), target))
    return torch.stack(targets, dim=-1)


def _pick_cells(d: _Draw, allowed: torch.Tensor, n: int) -> torch.Tensor:
    """One uniformly random allowed cell per MDP (``allowed`` bool ``[n, S]``, at least one true)."""
    scores = torch.where(allowed, d.uniform(0.01, 1, n, allowed.shape[1]), 0.0)
    return scores.argmax(dim=1)


def sample_grid(n: int, spec: PriorSpec, d: _Draw) -> MDPBatch:
    """Grid worlds with walls, slip, goals, traps/lava and step costs (see the module docstring)."""
    max_side = min(8, spec.max_states // 2)
    width = d.integers(2, max_side, n)
    height = torch.minimum(d.integers(2, max_side, n), spec.max_states // width).clamp(min=2)
    n_states = width * height
    S = int(n_states.max())
    valid = torch.arange(S, device=d.device) < n_states[:, None]
    start = _pick_cells(d, valid, n)
    goal = _pick_cells(d, valid & (torch.arange(S, device=d.device) != start[:, None]), n)
    special = _one_hot(start, S).bool() | _one_hot(goal, S).bool()
    wall = valid & ~special & d.bernoulli(d.uniform(0, 0.25, n)[:, None], n, S)
    trap = valid & ~special & ~wall & d.bernoulli(d.uniform(0, 0.15, n)[:, None], n, S)
    n_moves = min(4, spec.max_actions)  # with fewer than 4 actions allowed, only the first moves exist
    moves = _one_hot(_grid_moves(width, n_states, wall, S), S)[:, :, :n_moves]  # [n, S, moves, S]
    slip = torch.where(d.bernoulli(0.5, n), 0.0, d.uniform(0.05, 0.4, n))[:, None, None, None]
    P = (1 - slip) * moves + slip * moves.mean(dim=2, keepdim=True)
    with_stay = d.bernoulli(0.3 if spec.max_actions > 4 else 0.0, n)
    n_actions = n_moves + with_stay.long()
    if spec.max_actions > 4:
        P = torch.cat([P, torch.eye(S, device=d.device).expand(n, S, S)[:, :, None, :]], dim=2)
    entry = _one_hot(goal, S)
    second = d.bernoulli(0.3, n)[:, None] & _one_hot(_pick_cells(d, valid & ~special & ~wall & ~trap, n), S).bool()
    entry = entry + second * d.uniform(0.1, 0.5, n)[:, None] - trap * d.uniform(0.2, 1.0, n)[:, None]
    step_cost = torch.where(d.bernoulli(0.3, n), d.uniform(0.005, 0.05, n), 0.0)[:, None, None]
    R = _entry_rewards(P, entry) - step_cost
    terminal = (_one_hot(goal, S).bool() & d.bernoulli(0.8, n)[:, None]) | (trap & d.bernoulli(0.5, n, S))
    min_h = 2 * (width + height)
    return _finish(P, R, terminal, _one_hot(start, S), n_states, n_actions, min_h, "grid")


def _chain_shift(S: int, n_states: torch.Tensor, step: int) -> torch.Tensor:
    """Index of the neighbour ``step`` cells away along a chain, clamped at both ends, ``[n, S]``."""
    cell = torch.arange(S, device=n_states.device)[None, :]
    return torch.minimum((cell + step).clamp(min=0), n_states[:, None] - 1).clamp(max=S - 1)


def sample_river(n: int, spec: PriorSpec, d: _Draw) -> MDPBatch:
    """RiverSwim-like chains with random lengths and current strengths (see the module docstring)."""
    n_states = d.integers(3, min(spec.max_corridor or 40, spec.max_states), n)
    S = int(n_states.max())
    left, right = _one_hot(_chain_shift(S, n_states, -1), S), _one_hot(_chain_shift(S, n_states, 1), S)
    here = torch.eye(S, device=d.device).expand(n, S, S)
    forward = d.uniform(0.3, 0.95, n)
    back = torch.minimum(d.uniform(0, 0.1, n), 1 - forward)
    f, b = forward[:, None, None], back[:, None, None]
    swim = f * right + b * left + (1 - f - b) * here
    P = torch.stack([left, swim], dim=2)
    R = torch.zeros(n, S, 2, device=d.device)
    R[:, 0, 0] = _small_reward(spec, d, n, 0.001, 0.05, log=True)
    last = (n_states - 1)[:, None]
    R[:, :, 1] = (torch.arange(S, device=d.device)[None, :] == last) * 1.0
    start = torch.where(d.bernoulli(0.5, n), 0, d.integers(0, 1, n))
    terminal = torch.zeros(n, S, dtype=torch.bool, device=d.device)
    return _finish(P, R, terminal, _one_hot(start, S), n_states, torch.full_like(n_states, 2), 2 * n_states, "river")


def sample_bandit(n: int, spec: PriorSpec, d: _Draw) -> MDPBatch:
    """Contextual and one-shot bandits (see the module docstring)."""
    one_shot = d.bernoulli(0.5, n)
    contexts = d.integers(1, min(8, spec.max_states - 1), n)
    n_states = torch.where(one_shot, contexts + 1, contexts).clamp(min=2)
    n_actions = d.integers(2, spec.max_actions, n)
    S, A = int(n_states.max()), int(n_actions.max())
    cell = torch.arange(S, device=d.device)[None, :]
    sink = (n_states - 1)[:, None]
    is_context = torch.where(one_shot[:, None], cell < sink, cell <= sink)
    to_sink = _one_hot(sink.squeeze(1), S)[:, None, None, :].expand(n, S, A, S)
    uniform = (is_context / is_context.sum(dim=1, keepdim=True))[:, None, None, :].expand(n, S, A, S)
    P = torch.where(one_shot[:, None, None, None], to_sink, uniform)
    R = d.uniform(0, 1, n, S, A) * is_context[:, :, None]
    terminal = one_shot[:, None] & (cell == sink)
    initial = is_context.float()
    return _finish(P, R, terminal, initial, n_states, n_actions, torch.ones_like(n_states), "bandit")


def sample_tree(n: int, spec: PriorSpec, d: _Draw) -> MDPBatch:
    """Slippery decision trees with rewarded leaves (see the module docstring)."""
    branching = d.integers(2, min(4, spec.max_actions), n)
    depth = torch.zeros_like(branching)
    for k in range(1, 7):  # deepest tree that fits, then a random depth up to it
        fits = (branching ** (k + 1) - 1) // (branching - 1) <= spec.max_states
        depth = torch.where(fits, k, depth)
    depth = d.integers(1, depth.clamp(min=1), n)
    n_states = (branching ** (depth + 1) - 1) // (branching - 1)
    S, A = int(n_states.max()), int(branching.max())
    node = torch.arange(S, device=d.device)[None, :, None]
    child = node * branching[:, None, None] + torch.arange(A, device=d.device)[None, None, :] + 1
    is_leaf = (node.squeeze(-1) * branching[:, None] + 1) >= n_states[:, None]
    child = torch.where(is_leaf[:, :, None], node, child).clamp(max=S - 1)
    moves = _one_hot(child, S)
    slip = torch.where(d.bernoulli(0.5, n), 0.0, d.uniform(0.05, 0.3, n))[:, None, None, None]
    action_valid = (torch.arange(A, device=d.device) < branching[:, None])[:, None, :, None]
    mean_move = (moves * action_valid).sum(dim=2, keepdim=True) / branching[:, None, None, None]
    P = (1 - slip) * moves + slip * mean_move
    rewarded = is_leaf & d.bernoulli(d.uniform(0.1, 0.5, n)[:, None], n, S)
    entry = d.uniform(0, 1, n, S) * rewarded
    R = _entry_rewards(P, entry)
    return _finish(P, R, is_leaf, _one_hot(torch.zeros_like(n_states), S), n_states, branching, depth, "tree")


def _small_reward(spec: PriorSpec, d: _Draw, n: int, lo: float, hi: float, log: bool) -> torch.Tensor:
    """The small reward (or cost) beside the goal's 1: the spec's ratio range if set, else the family's."""
    if spec.small_reward_ratio_max > 0:
        return d.log_uniform(spec.small_reward_ratio_min, spec.small_reward_ratio_max, n)
    return d.log_uniform(lo, hi, n) if log else d.uniform(lo, hi, n)


def _corridor(n: int, spec: PriorSpec, d: _Draw, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    n_states = d.integers(4, min(max_length, spec.max_states), n)
    return n_states, torch.minimum(d.integers(2, 4, n), torch.tensor(spec.max_actions, device=d.device))


def sample_distractor(n: int, spec: PriorSpec, d: _Draw) -> MDPBatch:
    """A small reward at the start, a large one far away (see the module docstring)."""
    n_states, n_actions = _corridor(n, spec, d, spec.max_corridor or 32)
    S, A = int(n_states.max()), int(n_actions.max())
    here = torch.eye(S, device=d.device).expand(n, S, S)
    forward = d.uniform(0.6, 1.0, n)[:, None, None]
    right = forward * _one_hot(_chain_shift(S, n_states, 1), S) + (1 - forward) * here
    to_start = _one_hot(torch.zeros(n, S, dtype=torch.long, device=d.device), S)
    P = torch.stack([here, right] + [to_start] * (A - 2), dim=2)
    goal = n_states - 1
    R = _entry_rewards(P, _one_hot(goal, S))
    R[:, 0, 0] = _small_reward(spec, d, n, 0.01, 0.2, log=False)
    terminal = _one_hot(goal, S).bool()
    start = _one_hot(torch.zeros_like(n_states), S)
    return _finish(P, R, terminal, start, n_states, n_actions, 3 * n_states, "distractor")


def sample_step_cost(n: int, spec: PriorSpec, d: _Draw) -> MDPBatch:
    """DeepSea-like corridors: costly progress toward a distant goal (see the module docstring)."""
    n_states, n_actions = _corridor(n, spec, d, spec.max_corridor or 24)
    S, A = int(n_states.max()), int(n_actions.max())
    right = _one_hot(_chain_shift(S, n_states, 1), S)
    to_start = _one_hot(torch.zeros(n, S, dtype=torch.long, device=d.device), S)
    good = (d.uniform(0, 1, n, S) * n_actions[:, None]).floor().long()  # the advancing action, per state
    is_good = _one_hot(good, A).bool()[..., None]
    P = torch.where(is_good, right[:, :, None, :], to_start[:, :, None, :])
    goal = n_states - 1
    cost = _small_reward(spec, d, n, 0.005, 0.05, log=False)[:, None, None]
    R = _entry_rewards(P, _one_hot(goal, S)) - cost * is_good.squeeze(-1)
    terminal = _one_hot(goal, S).bool()
    start = _one_hot(torch.zeros_like(n_states), S)
    return _finish(P, R, terminal, start, n_states, n_actions, 2 * n_states, "step_cost")


def sample_loop(n: int, spec: PriorSpec, d: _Draw) -> MDPBatch:
    """Slippery rings with jumps and sparse rewards (see the module docstring)."""
    n_states = d.log_integers(max(spec.min_states, 3), spec.max_states, n)
    n_actions = torch.minimum(d.integers(2, 4, n), torch.tensor(spec.max_actions, device=d.device))
    S, A = int(n_states.max()), int(n_actions.max())
    cell = torch.arange(S, device=d.device)[None, :]
    jump = d.integers(2, torch.clamp(n_states // 2, min=2), n)[:, None]
    steps = [torch.ones_like(jump), -torch.ones_like(jump), jump, torch.zeros_like(jump)][:A]
    moves = torch.stack([_one_hot((cell + s) % n_states[:, None], S) for s in steps], dim=2)
    action_valid = (torch.arange(A, device=d.device) < n_actions[:, None])[:, None, :, None]
    mean_move = (moves * action_valid).sum(dim=2, keepdim=True) / n_actions[:, None, None, None]
    slip = d.uniform(0, 0.3, n)[:, None, None, None]
    P = (1 - slip) * moves + slip * mean_move
    rewarded = (cell < n_states[:, None]) & d.bernoulli((2.0 / n_states)[:, None], n, S)
    entry = d.uniform(0, 1, n, S) * rewarded
    entry[:, 0] = 0.0
    terminal = torch.zeros(n, S, dtype=torch.bool, device=d.device)
    start = _one_hot(torch.zeros_like(n_states), S)
    return _finish(P, _entry_rewards(P, entry), terminal, start, n_states, n_actions, n_states, "loop")


def sample_arms(n: int, spec: PriorSpec, d: _Draw) -> MDPBatch:
    """A hub with rooms entered with unequal probabilities and paying unequal rewards (module docstring)."""
    n_actions = d.integers(2, min(spec.max_actions, spec.max_states - 1), n)
    n_states = n_actions + 1
    S, A = int(n_states.max()), int(n_actions.max())
    arm = torch.arange(A, device=d.device)[None, :]
    valid = arm < n_actions[:, None]
    enter = torch.exp(d.uniform(math.log(spec.arms_min_enter), math.log(0.5), n, A)).masked_fill(~valid, 0.0)
    enter[:, 0] = 1.0  # the sure arm
    # rewards log-spaced over a random total ratio; by default the rarer the room, the larger its reward
    log_ratio = d.uniform(math.log(10.0), math.log(1000.0), n)[:, None]
    rarity = torch.argsort(torch.argsort(-enter.masked_fill(~valid, -1.0), dim=1), dim=1).float()
    shuffled = d.uniform(0, 1, n, A).masked_fill(~valid, 2.0).argsort(1).argsort(1).float()  # padded arms last
    rank = torch.where(d.bernoulli(0.7, n)[:, None], rarity, shuffled)
    reward = torch.exp(log_ratio * rank / (n_actions[:, None] - 1).clamp(min=1)) / torch.exp(log_ratio)
    room = 1 + arm  # state of room i
    hub = torch.zeros(n, A, S, device=d.device)
    hub.scatter_(2, room.expand(n, A)[..., None].clamp(max=S - 1), enter[..., None])
    hub[:, :, 0] += 1.0 - enter
    stay_action = (d.uniform(0, 1, n, S) * n_actions[:, None]).floor().long()
    stays = _one_hot(stay_action, A).bool()[..., None]  # [n, S, A, 1]
    if spec.arms_max_stay > 1:  # more staying actions per room, drawn after the first (older draws unchanged)
        most = (n_actions[:, None] - 1).clamp(min=1, max=spec.arms_max_stay).expand(n, S)
        n_stay = d.integers(1, most.reshape(-1), n * S).view(n, S)
        order = d.uniform(0, 1, n, S, A).masked_fill(~valid[:, None, :], 2.0)
        order = order.masked_fill(stays[..., 0], -1.0).argsort(-1).argsort(-1)  # the first staying action first
        stays = (order < n_stay[..., None])[..., None]
    if spec.arms_rare_pays_prob > 0:  # drawn after everything else: older draws unchanged
        pays = d.bernoulli(spec.arms_rare_pays_prob, n)[:, None]
        gain = d.uniform(1.0, 1.3, n)[:, None]
        payoff = enter.clamp_min(1e-6).pow(-gain).masked_fill(~valid, 0.0)
        reward = torch.where(pays, payoff / payoff.amax(1, keepdim=True), reward)
    in_room = torch.where(stays, torch.eye(S, device=d.device)[None, :, None, :], _one_hot(
        torch.zeros(n, S, dtype=torch.long, device=d.device), S)[:, :, None, :])
    P = torch.cat([hub[:, None], in_room[:, 1:]], dim=1)
    entry = torch.cat([torch.zeros(n, 1, device=d.device), reward], dim=1)[:, :S]
    R = _entry_rewards(P, entry)
    if not spec.arms_hub_pays:
        R[:, 0] = 0.0  # entering a room pays nothing; staying does
    terminal = torch.zeros(n, S, dtype=torch.bool, device=d.device)
    start = _one_hot(torch.zeros_like(n_states), S)
    return _finish(P, R, terminal, start, n_states, n_actions, torch.full_like(n_states, 10), "arms")


SAMPLERS = {
    "garnet": sample_garnet, "grid": sample_grid, "river": sample_river, "bandit": sample_bandit,
    "tree": sample_tree, "distractor": sample_distractor, "step_cost": sample_step_cost, "loop": sample_loop,
    "arms": sample_arms,
}


def pad_batch(batch: MDPBatch, n_states: int, n_actions: int) -> MDPBatch:
    """Pad to ``n_states`` x ``n_actions`` keeping the padding conventions of :class:`MDPBatch`."""
    B, S, A = batch.R.shape
    ds, da = n_states - S, n_actions - A
    if ds == 0 and da == 0:
        return batch
    pad = torch.nn.functional.pad
    P = pad(batch.P, (0, ds, 0, da, 0, ds))
    P[:, :, A:] = P[:, :, :1]
    eye = torch.eye(n_states, device=P.device)
    P[:, S:] = eye[S:, None, :]
    R = pad(batch.R, (0, da, 0, ds))
    R[:, :, A:] = R[:, :, :1]
    std = pad(batch.reward_std, (0, da, 0, ds))
    std[:, :, A:] = std[:, :, :1]
    return MDPBatch(
        P=P, R=R, reward_std=std, terminal=pad(batch.terminal, (0, ds)), initial=pad(batch.initial, (0, ds)),
        state_mask=pad(batch.state_mask, (0, ds)), action_mask=pad(batch.action_mask, (0, da)),
        horizon=batch.horizon, family=batch.family,
    )


def concat_batches(batches: list[MDPBatch]) -> MDPBatch:
    """Concatenate along the batch dimension, padding to the largest S and A."""
    S = max(b.R.shape[1] for b in batches)
    A = max(b.R.shape[2] for b in batches)
    padded = [pad_batch(b, S, A) for b in batches]
    return MDPBatch(**{f.name: torch.cat([getattr(b, f.name) for b in padded]) for f in fields(MDPBatch)})


def _apply_shared(batch: MDPBatch, spec: PriorSpec, d: _Draw) -> MDPBatch:
    """Reward scale and sign, reward noise and horizon: what every family shares."""
    n = batch.batch_size
    scale = d.log_uniform(spec.reward_scale_min, spec.reward_scale_max, n)
    sign = torch.where(d.bernoulli(spec.negate_prob, n), -1.0, 1.0)
    batch.R = batch.R * (scale * sign)[:, None, None]
    noisy = d.bernoulli(spec.stochastic_reward_prob, n)[:, None, None]
    batch.reward_std = noisy * d.uniform(0.1, 1.0, n)[:, None, None] * batch.R.abs()
    horizon = d.log_uniform(spec.min_horizon, spec.max_horizon + 1, n).floor().long()
    batch.horizon = torch.maximum(horizon, batch.horizon).clamp(max=spec.max_horizon)
    return batch


def sample_mdps(
    batch_size: int,
    family_weights: dict[str, float],
    spec: PriorSpec,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> MDPBatch:
    """Sample ``batch_size`` MDPs from the mixture of families.

    :param batch_size: number of MDPs
    :param family_weights: mixture weights per family name (need not sum to 1)
    :param spec: size, horizon and reward ranges
    :param generator: torch generator on ``device``; fixes the draw
    :param device: where the tensors live
    :return: the padded batch, families in a random order
    """
    unknown = set(family_weights) - set(SAMPLERS)
    if unknown:
        raise ValueError(f"unknown MDP families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    names = [k for k, w in family_weights.items() if w > 0]
    if not names:
        raise ValueError("family_weights must give at least one family a weight > 0")
    d = _Draw(generator, torch.device(device))
    weights = torch.tensor([float(family_weights[k]) for k in names], device=d.device)
    choice = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
    counts = torch.bincount(choice, minlength=len(names)).tolist()
    parts = [SAMPLERS[name](count, spec, d) for name, count in zip(names, counts, strict=True) if count > 0]
    batch = _apply_shared(concat_batches(parts), spec, d)
    return batch.select(torch.randperm(batch_size, generator=generator, device=d.device))
