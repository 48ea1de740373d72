"""The model's planning layer against an independent numpy backward induction written here.

The network's per-(s, a) head outputs are captured with a forward hook on ``model.sa_head``; everything
after them (the adjusted MDP and its exact finite-horizon VI) is recomputed in plain numpy from the
formulas of :class:`icrl_agent.model.IcrlModel`'s docstring, so these tests do not depend on how
``_plan`` is written. Q from the model is indexed by steps to go: ``q[k - 1]`` has ``k`` steps left.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from icrl_agent.agent import Agent, shipped_weights_path
from icrl_agent.checkpoint import load_checkpoint
from icrl_agent.model import IcrlModel, ModelConfig
from icrl_agent.model_inputs import StatsBatch
from icrl_agent.stats import SufficientStats

CONFIG = ModelConfig(d_model=16, n_heads=2, n_rounds=2, max_pseudo_count=5.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_stats(seed: int, n_states: int = 6, n_actions: int = 3, steps: int = 45) -> tuple[SufficientStats, int]:
    """Statistics of random play in a random MDP: noisy rewards of several sizes and signs, terminal
    transitions, truncated episodes, unvisited pairs (the last action is never tried in the upper half of
    the states) and a state that may only ever be seen as a successor."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(n_states, 0.3), size=(n_states, n_actions))
    R = rng.choice([0.0, 0.0, 0.3, -0.5, 2.0], size=(n_states, n_actions))
    p_end = rng.choice([0.0, 0.0, 0.3], size=(n_states, n_actions))
    stats = SufficientStats(spaces.Discrete(n_states), spaces.Discrete(n_actions))
    s, t, horizon = 0, 0, 7
    for _ in range(steps):
        a = int(rng.integers(n_actions - 1 if s >= n_states // 2 else n_actions))
        s_next = int(rng.choice(n_states, p=P[s, a]))
        reward = R[s, a] + 0.2 * rng.standard_normal() * (R[s, a] != 0)
        terminated = bool(rng.random() < p_end[s, a])
        t += 1
        truncated = not terminated and t == horizon
        stats.update(s, a, reward, s_next, terminated, truncated)
        s = 0 if terminated or truncated else s_next
        t = 0 if terminated or truncated else t
    return stats, horizon + 3


def make_model(seed: int = 0) -> IcrlModel:
    """A fresh double-precision model whose corrections are far from their initial values, so that every
    coefficient matters (a dropped gain or a swapped head output shows)."""
    torch.manual_seed(seed)
    model = IcrlModel(CONFIG).double().eval()
    with torch.no_grad():
        model.sa_head[-1].weight.mul_(30.0)
        model.sa_head[-1].bias.copy_(torch.tensor([0.3, -0.4, 0.5, 0.2], dtype=torch.float64))
        model.log_bonus_gain.fill_(math.log(0.3))
        model.log_unknown_gain.fill_(math.log(1.7))
        model.kappa_raw.fill_(0.4)
        model.log_scale_gain.fill_(0.5)
    return model


class HeadCapture:
    """Records the output of ``model.sa_head`` (the raw per-(s, a) corrections) on every forward pass."""

    def __init__(self, model: IcrlModel):
        self.raw: list[torch.Tensor] = []
        self.handle = model.sa_head.register_forward_hook(lambda _m, _i, out: self.raw.append(out.detach()))
        self.missing: list[torch.Tensor] = []  # M̂ of the missing-mass head, when the model has one
        if hasattr(model, "missing_mass_head"):
            model.missing_mass_head.register_forward_hook(
                lambda _m, _i, out: self.missing.append(torch.sigmoid(out.detach().squeeze(-1))))

    def last(self) -> np.ndarray:
        return self.raw[-1].double().numpy()


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def empirical_mdp(stats: SufficientStats) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """``(counts, reward_mean, p_hat, visited, c)``: ``p_hat`` leaves out terminal mass (worth 0), ``c`` the
    model's reward normalizer (largest ``|mean| + std`` over visited pairs, 1 if none)."""
    dense = stats.dense()
    counts = dense.counts.astype(np.float64)
    p_hat = dense.transitions / np.maximum(counts, 1.0)[..., None]
    visited = counts > 0
    size = (np.abs(dense.reward_mean) + np.sqrt(np.maximum(dense.reward_var, 0.0))) * visited
    c = float(size.max()) if size.max() > 0 else 1.0
    return counts, np.where(visited, dense.reward_mean, 0.0), p_hat, visited, c


def exact_q(p_hat: np.ndarray, reward: np.ndarray, horizon: int) -> np.ndarray:
    """Plain finite-horizon backward induction: ``[H, S, A]``, row ``k - 1`` with ``k`` steps to go."""
    v, out = np.zeros(p_hat.shape[0]), []
    for _ in range(horizon):
        q = reward + p_hat @ v
        out.append(q)
        v = q.max(-1)
    return np.stack(out)


def pooled_rho(stats: SufficientStats) -> float:
    """``rho``: the chance that two visits of one pair had different outcomes, pooled, ``(D + 1) / (T + 1)``."""
    dense = stats.dense()
    counts = dense.counts
    squared = (dense.transitions ** 2).sum(-1) + dense.terminal_counts ** 2
    return float(((counts ** 2 - squared).sum() + 1.0) / ((counts * (counts - 1.0)).clip(min=0.0).sum() + 1.0))


def tried_pairs_share(optimism: bool, unknown: str, explore: str, rho: float) -> float:
    """How much of its unknown mass a tried pair keeps under the plan's rule."""
    rule = explore if optimism else unknown
    return {"untried_only": 0.0, "impurity_weighted": rho}.get(rule, 1.0)


def split_tried_mass(m: np.ndarray, visited: np.ndarray, limited: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(tried pairs' mass for the limited bonus, the mass every step keeps)``: with ``limited`` a visited pair's
    unknown mass moves to the first; otherwise the first is 0."""
    if not limited:
        return np.zeros_like(m), m
    return np.where(visited, m, 0.0), np.where(visited, 0.0, m)


def unknown_worth_kappas(model: IcrlModel, kappa: float, rewarded_pairs: np.ndarray, terminal_counts: np.ndarray,
                         horizon: int, move_cost: float = 0.0, scale: float = 1.0,
                         goal: float = 0.0) -> tuple[float, float]:
    """``(kappa of the unknown successor's worth, kappa of a tried pair's limited bonus)`` after the horizon rules
    :func:`adjusted_q`'s docstring names; ``move_cost`` and ``goal`` (normalized) and ``scale`` serve
    ``"once_or_episode_cost"``, whose worth ``max(kappa scale, H move_cost)`` is a kappa of
    ``max(kappa, H move_cost / scale)``, and ``"once_or_goal_or_episode_cost"``, which adds ``goal / scale``."""
    config = model.config
    if config.optimism_horizon is not None:
        kappa *= config.optimism_horizon / horizon
    goal_rewards_only = bool(rewarded_pairs.any()) and bool((terminal_counts[rewarded_pairs] > 0).all())
    ceiling_applies = {"always": True, "reward_seen": bool(rewarded_pairs.any()), "terminal_rewards": goal_rewards_only}[
        config.optimism_horizon_max_when
    ]
    if config.optimism_horizon_max is not None and ceiling_applies:
        kappa *= min(1.0, config.optimism_horizon_max / horizon)
    rules = {name: getattr(config, name) if goal_rewards_only else "per_step"
             for name in ("unknown_worth_after_goal", "tried_unknown_worth_after_goal")}
    worth = {"per_step": kappa, "once": kappa / max(horizon - 1, 1),
             "once_or_episode_cost": max(kappa, horizon * move_cost / scale) / max(horizon - 1, 1),
             "once_or_goal_or_episode_cost": max(kappa, horizon * move_cost / scale, goal / scale) / max(horizon - 1, 1)}
    return tuple(worth[rule] for rule in rules.values())  # type: ignore[return-value]


def with_stay_floor(m: np.ndarray, stats: SufficientStats, config: ModelConfig) -> np.ndarray:
    """The exploring plan's unknown mass ``m [S, A]`` with ``config.stay_unknown_pseudo_count`` ``w_s``'s floor: a
    visited pair whose every visit led back to its own state keeps at least ``w_s / (N + w_s)``, under the options'
    conditions (:func:`adjusted_q`'s docstring names them)."""
    dense = stats.dense()
    counts, stays = dense.counts.astype(np.float64), np.einsum("sas->sa", dense.transitions)
    visited = counts > 0
    reward_mean = np.where(visited, dense.reward_mean, 0.0)
    w_s = config.stay_unknown_pseudo_count
    stayed_only = visited & (stays == counts)
    if config.stay_unknown_unpaid_only:
        stayed_only &= reward_mean <= 0
    if config.stay_unknown_moving_actions_only:
        stayed_only &= (counts - stays).sum(0) > 0
    if config.stay_unknown_max_tries is not None:
        stayed_only &= counts <= config.stay_unknown_max_tries
    rewarded = visited & (reward_mean > 0)
    if config.stay_unknown_when == "midway_reward" and not (rewarded & (dense.terminal_counts == 0)).any():
        stayed_only[:] = False
    return np.where(stayed_only, np.maximum(m, w_s / (counts + w_s)), m) if w_s > 0 else m


def adjusted_q(stats: SufficientStats, raw: np.ndarray, scale: float, model: IcrlModel, horizon: int,
               optimism: bool, floor: bool = False, unknown: str = "all_pairs",
               explore: str = "all_pairs", missing: np.ndarray | None = None,
               layers_out: list | None = None) -> np.ndarray:
    """Q of the adjusted MDP the model describes, in input units, by backward induction ``[H, S, A]``.

    Per (s, a) with ``N`` visits, ``k`` steps to go, normalized rewards ``r̂ / c``:
    reward ``r̂ + w_r / (N + w_r) (r0 - r̂)``; bonus ``c_b scale k / sqrt(N + 1)`` (optimism only);
    a mass ``m = w / (N + w)`` to an unknown successor worth ``kappa scale (k - 1)`` (optimism) or the mean
    of ``V_{k-1}`` over the states (no optimism); ``1 - m`` follows ``p_hat``. With ``floor`` (no optimism),
    an unvisited pair is worth at most ``k * min(0, smallest r̂ / c over the visited pairs)``. No optimism,
    ``unknown="untried_only"``: a visited pair has no unknown mass; ``"non_terminal"``: the mean of ``V_{k-1}``
    is reached with ``m (1 - t̂)`` only, ``t̂`` the pair's share of terminations (the rest of ``m`` ends).
    With ``optimism_horizon`` ``H0`` set, kappa is multiplied by ``H0 / horizon``; with ``optimism_horizon_max``
    ``H1``, by ``min(1, H1 / horizon)`` (with ``optimism_horizon_max_when="reward_seen"``, only if some visited pair's
    mean reward is positive; ``"terminal_rewards"``, only if moreover every such pair has ended an episode). With
    ``unknown_worth_after_goal="once"`` and rewards like that, the unknown successor is worth
    ``kappa scale (k - 1) / (horizon - 1)`` instead of ``kappa scale (k - 1)``; with ``"once_or_episode_cost"``,
    ``max(kappa scale, horizon cost) (k - 1) / (horizon - 1)``, ``cost`` minus the mean ``r̂ / c`` of the visited
    pairs that never ended an episode (0 if that is positive); with ``"once_or_goal_or_episode_cost"``, that and
    at least ``G (k - 1) / (horizon - 1)``, ``G`` the largest ``N r̂ / (c T)`` over the visited pairs with a positive
    mean that ended an episode ``T > 0`` times. With optimism and
    ``explore="untried_only"``, a visited pair has no unknown mass; with ``"impurity_weighted"``, ``rho m``; with
    ``"learned_missing_mass"``, ``missing`` (the missing-mass head's ``M̂ [S, A]``). With optimism and
    ``config.stay_unknown_pseudo_count`` ``w_s > 0``, a visited pair whose every visit led back to its own state
    keeps at least ``w_s / (N + w_s)`` of that mass (with ``stay_unknown_unpaid_only``, only if its mean reward is
    at most 0; with ``stay_unknown_when="midway_reward"``, only if some visited pair with a positive mean reward
    never ended an episode; with ``stay_unknown_moving_actions_only``, only if its action did not stay put on some
    try, at some state; with ``stay_unknown_max_tries`` ``K``, only if ``N <= K``). With
    ``config.spread_bonus`` ``c_v``, a visited pair also gets ``c_v f (sqrt(Var_p_hat[V_{k-1}] / (N + 1)) + sqrt(rho) range(V_{k-1}) / (N + 1))`` (optimism only;
    terminal mass worth 0, ``f`` the bonus factor, ``rho`` the pooled share of visit pairs with different outcomes).
    Without optimism, ``config.exploit_spread_penalty`` ``c_p`` subtracts ``c_p / sqrt(N + 1)`` times the same two
    terms from a visited pair. With ``config.value_cap`` and optimism, every ``V_{k-1}`` is read capped at ``(k - 1) max(1, kappa scale)``
    (kappa before the ``optimism_horizon`` factor). With optimism and ``config.spread_bonus_per_episode`` ``n``, the
    plan has ``n + 1`` value layers, ``j`` the spread bonuses left: layer 0 has none, layer ``j`` takes the larger of
    a bonus now (read from layer ``j - 1``'s values, which the pair then leads to) and keeping it; the plan is layer
    ``n``'s. With ``config.tried_unknown_limited`` too, a visited pair's unknown mass ``M`` leaves every step's backup
    and joins the limited bonus as ``M (kappa scale (k - 1) - p_hat V_{k-1})``, its kappa divided by ``horizon - 1``
    with ``tried_unknown_worth_after_goal="once"`` and goal rewards only (as ``unknown_worth_after_goal`` does).
    With layers, ``layers_out`` (a list) receives every layer's Q, ``[n + 1, H, S, A]`` in input units, and what
    taking the bonus gains in layer ``j`` over keeping it, ``plain[j - 1] + bonus - plain[j]`` (normalized; ``-inf``
    in layer 0, which has none to take), shaped alike.
    """
    counts, reward_mean, p_hat, visited, c = empirical_mdp(stats)
    r_norm = reward_mean / c
    cap = model.config.max_pseudo_count
    w_r = cap * sigmoid(raw[..., 0])
    prior = np.tanh(raw[..., 1])
    reward = r_norm + w_r / (counts + w_r) * (prior - r_norm)
    w = math.exp(model.log_unknown_gain.item()) * 2.0 * sigmoid(raw[..., 3])
    m = w / (counts + w)
    dense = stats.dense()
    rho = pooled_rho(stats)
    if optimism and explore == "learned_missing_mass":
        m = np.where(visited, missing, m)
    else:
        m = np.where(visited, tried_pairs_share(optimism, unknown, explore, rho) * m, m)
    if optimism:
        m = with_stay_floor(m, stats, model.config)
    layers = model.config.spread_bonus_per_episode if optimism else None
    tried_mass, m = split_tried_mass(m, visited, layers is not None and model.config.tried_unknown_limited)
    continuing = m
    if not optimism and unknown == "non_terminal":
        continuing = m * (1.0 - stats.dense().terminal_counts / np.maximum(counts, 1.0))
    bonus_coef = math.exp(model.log_bonus_gain.item()) * 2.0 * sigmoid(raw[..., 2])
    bonus = bonus_coef * scale / np.sqrt(counts + 1.0) if optimism else np.zeros_like(reward)
    spread_coef = model.config.spread_bonus * 2.0 * sigmoid(raw[..., 2]) / np.sqrt(counts + 1.0) * visited
    penalty_coef = model.config.exploit_spread_penalty / np.sqrt(counts + 1.0) * visited
    kappa = softplus(model.kappa_raw.item())
    capped = optimism and model.config.value_cap
    cap_per_step = max(1.0, kappa * scale)
    moves = visited & (dense.terminal_counts == 0)
    move_cost = max(0.0, -float(r_norm[moves].mean())) if moves.any() else 0.0
    goals = visited & (reward_mean > 0) & (dense.terminal_counts > 0)
    goal = float((counts * r_norm / np.maximum(dense.terminal_counts, 1.0))[goals].max()) if goals.any() else 0.0
    kappa, kappa_tried = unknown_worth_kappas(model, kappa, visited & (reward_mean > 0), dense.terminal_counts, horizon,
                                              move_cost, scale, goal)

    def variance_term(v: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(p_hat @ (v * v) - (p_hat @ v) ** 2, 1e-12))

    def range_term(v: np.ndarray) -> np.ndarray:
        return math.sqrt(rho) * (v.max() - v.min()) / np.sqrt(counts + 1.0)

    def spread_terms(v: np.ndarray) -> np.ndarray:
        return variance_term(v) + range_term(v)

    limit_variance_only = model.config.spread_bonus_limited_terms == "variance"

    def without_spread(v: np.ndarray, k: int) -> np.ndarray:
        q = reward + k * bonus + (1.0 - m) * (p_hat @ v)
        q = q + (m * kappa * scale * (k - 1) if optimism else continuing * v.mean())
        return q + spread_coef * range_term(v) if layers is not None and limit_variance_only else q

    def limited_bonus(v: np.ndarray, k: int) -> np.ndarray:
        spread = spread_coef * (variance_term(v) if limit_variance_only else spread_terms(v))
        return spread + tried_mass * (kappa_tried * scale * (k - 1) - p_hat @ v)

    if layers is not None:  # values[j]: j spread bonuses left
        values, out, every, takes = [np.zeros(counts.shape[0])] * (layers + 1), [], [], []
        for k in range(1, horizon + 1):
            values = [np.minimum(v, (k - 1) * cap_per_step) if capped else v for v in values]
            plain = [without_spread(v, k) for v in values]
            taken = [plain[j - 1] + limited_bonus(values[j - 1], k) for j in range(1, layers + 1)]
            qs = [plain[0]] + [np.maximum(taken[j - 1], plain[j]) for j in range(1, layers + 1)]
            out.append(qs[-1])
            every.append(qs)
            takes.append([np.full_like(plain[0], -np.inf)] + [taken[j - 1] - plain[j] for j in range(1, layers + 1)])
            values = [q.max(-1) for q in qs]
        if layers_out is not None:
            layers_out += [np.stack(every, 1) * c, np.stack(takes, 1)]
        return np.stack(out) * c
    v, out = np.zeros(counts.shape[0]), []
    for k in range(1, horizon + 1):
        v = np.minimum(v, (k - 1) * cap_per_step) if capped else v
        q = without_spread(v, k) + (spread_coef if optimism else -penalty_coef) * spread_terms(v)
        if floor and not optimism:
            lowest = min(0.0, float(r_norm[visited].min()))
            q = np.where(visited, q, np.minimum(q, k * lowest))
        out.append(q)
        v = q.max(-1)
    return np.stack(out) * c


def assert_batch_is_reference(model: IcrlModel, items: list, batched, raw: np.ndarray,
                              optimism: bool = True) -> list[np.ndarray]:
    """Each MDP of a batched forward pass equals :func:`adjusted_q` with the reward scale and head outputs that pass
    used (``items``: ``(stats, horizon)`` in the batch's order); returns those references, in that order."""
    expected = []
    for i, (stats, horizon) in enumerate(items):
        s, a = stats.n_states, stats.n_actions
        scale = batched.reward_scale[i].item() / empirical_mdp(stats)[4]
        expected.append(adjusted_q(stats, raw[i, :s, :a], scale, model, horizon, optimism))
        np.testing.assert_allclose(batched.q[i, :horizon, :s, :a].numpy(), expected[-1], rtol=1e-9, atol=1e-9)
    return expected


def to_batch(items: list[tuple[SufficientStats, int]]) -> StatsBatch:
    """A padded dense batch (float64) of several statistics."""
    n_states = max(s.n_states for s, _ in items) + 1  # one padded state slot at least
    n_actions = max(s.n_actions for s, _ in items) + 1
    b = len(items)
    arrays = {k: torch.zeros(b, n_states, n_actions, dtype=torch.float64)
              for k in ("counts", "reward_mean", "reward_var", "terminal_counts")}
    arrays["transitions"] = torch.zeros(b, n_states, n_actions, n_states, dtype=torch.float64)
    arrays["initial_counts"] = torch.zeros(b, n_states, dtype=torch.float64)
    state_mask = torch.zeros(b, n_states, dtype=torch.bool)
    action_mask = torch.zeros(b, n_actions, dtype=torch.bool)
    for i, (stats, _) in enumerate(items):
        dense = stats.dense()
        s, a = dense.counts.shape
        for k in ("counts", "reward_mean", "reward_var", "terminal_counts"):
            arrays[k][i, :s, :a] = torch.tensor(getattr(dense, k), dtype=torch.float64)
        arrays["transitions"][i, :s, :a, :s] = torch.tensor(dense.transitions, dtype=torch.float64)
        arrays["initial_counts"][i, :s] = torch.tensor(dense.initial_counts, dtype=torch.float64)
        state_mask[i, :s], action_mask[i, :a] = True, True
    horizon = torch.tensor([h for _, h in items])
    return StatsBatch(**arrays, state_mask=state_mask, action_mask=action_mask, horizon=horizon)


@pytest.mark.parametrize("optimism_horizon", [None, 4])
@pytest.mark.parametrize("optimism", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_plan_is_backward_induction_on_the_adjusted_mdp(seed, optimism, optimism_horizon):
    stats, horizon = random_stats(seed)
    model = make_model(seed)
    model.config = dataclasses.replace(model.config, optimism_horizon=optimism_horizon)
    capture = HeadCapture(model)
    with torch.no_grad():
        out = model.forward_sparse(stats.sparse(), horizon, optimism=optimism)
    c = empirical_mdp(stats)[4]
    scale = out.reward_scale.item() / c
    expected = adjusted_q(stats, capture.last()[0], scale, model, horizon, optimism)
    assert (stats.sparse().counts == 0).any() and stats.sparse().terminal_counts.any()
    np.testing.assert_allclose(out.q[0].numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("optimism_horizon", [None, 4])
@pytest.mark.parametrize("optimism", [True, False])
def test_dense_plan_is_backward_induction_on_the_adjusted_mdp_padding_included(optimism, optimism_horizon):
    """Each MDP of the batch is planned with its own horizon (and, with ``optimism_horizon``, its own
    per-step worth of the unknown successor)."""
    items = [random_stats(3), random_stats(4, n_states=4, n_actions=2, steps=30), random_stats(5, steps=20)]
    items[1] = (items[1][0], 5)  # a shorter horizon than the others
    model = make_model(1)
    model.config = dataclasses.replace(model.config, optimism_horizon=optimism_horizon)
    capture = HeadCapture(model)
    with torch.no_grad():
        out = model(to_batch(items), optimism=optimism)
    assert_batch_is_reference(model, items, out, capture.last(), optimism)


@pytest.mark.parametrize("optimism", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_corrections_q_is_exact_vi_of_the_empirical_mdp(seed, optimism):
    stats, horizon = random_stats(seed)
    model = make_model(seed)
    _, reward, p_hat, _, _ = empirical_mdp(stats)
    expected = exact_q(p_hat, reward, horizon)
    with torch.no_grad():
        sparse = model.forward_sparse(stats.sparse(), horizon, optimism=optimism, corrections=False)
        dense = model(to_batch([(stats, horizon)]), optimism=optimism, corrections=False)
    s, a = stats.n_states, stats.n_actions
    np.testing.assert_allclose(sparse.q[0].numpy(), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dense.q[0, :, :s, :a].numpy(), expected, rtol=1e-9, atol=1e-9)


class PlainVIModel(IcrlModel):
    """The network with every correction off: its Q is exact VI on the empirical MDP."""

    def forward_sparse(self, stats, horizon, optimism=True, corrections=True, horizon_known=True):
        return super().forward_sparse(
            stats, horizon, optimism=optimism, corrections=False, horizon_known=horizon_known
        )


def chain_step(s: int, a: int) -> tuple[float, int]:
    """A 5-state chain: 0 left (0.05 at the left end), 1 right (1.0 at the right end)."""
    if a == 0:
        return (0.05 if s == 0 else 0.0), max(s - 1, 0)
    return (1.0 if s == 4 else 0.0), min(s + 1, 4)


def first_best(q: np.ndarray) -> np.ndarray:
    """The first action within 1e-9 of the best, per state (the agent's deterministic tie rule)."""
    return (q >= q.max(-1, keepdims=True) - 1e-9).argmax(-1)


def test_agent_greedy_action_at_each_step_is_the_argmax_of_exact_q_with_the_steps_to_go():
    """With corrections off the agent's plan is exact VI: at elapsed step ``t`` of an ``H``-step episode its
    greedy action is the argmax of Q with ``H - t`` steps to go. In this chain the small reward on the left
    is best with few steps to go and the far one on the right with many, so reading the plan by elapsed
    step (or off by one) picks other actions."""
    torch.manual_seed(0)
    agent = Agent(spaces.Discrete(5), spaces.Discrete(2), seed=0, model=PlainVIModel(CONFIG).double())
    horizon = 8
    for actions in ([1, 1, 1, 1, 1, 0, 0, 0], [0, 1, 0, 0, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0, 1, 1]):
        s = 0
        for t, a in enumerate(actions):
            reward, s_next = chain_step(s, a)
            agent.observe(s, a, reward, s_next, False, t == horizon - 1)
            s = s_next
    assert agent.horizon == horizon
    _, reward, p_hat, _, _ = empirical_mdp(agent.stats)
    q = exact_q(p_hat, reward, horizon)  # q[k - 1]: k steps to go
    best = first_best(q)  # [H, S]
    assert len({tuple(row) for row in best}) > 1, "the test needs a plan whose greedy action depends on the step"
    for t in range(horizon):
        policy = agent.policy(step=t, deterministic=True)
        np.testing.assert_array_equal(policy.argmax(-1), best[horizon - 1 - t], err_msg=f"elapsed step {t}")
    # and through act, playing an episode: the expected action comes from the statistics of the moment
    s = 0
    for t in range(horizon):
        _, reward, p_hat, _, _ = empirical_mdp(agent.stats)
        expected = first_best(exact_q(p_hat, reward, horizon))[horizon - 1 - t, s]
        action = agent.act(s, deterministic=True)
        assert action == expected, f"elapsed step {t}, state {s}"
        r, s_next = chain_step(s, action)
        agent.observe(s, action, r, s_next, False, t == horizon - 1)
        s = s_next


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exploitation_floor_caps_untried_pairs_at_the_worst_reward_seen(seed):
    """``exploit_untried="floor"``: the exploitation plan values an untried pair no higher than plain VI's 0
    or a path of the worst reward seen; the exploring plan is unchanged."""
    stats, horizon = random_stats(seed)
    model = make_model(seed)
    model.config = dataclasses.replace(model.config, exploit_untried="floor")
    capture = HeadCapture(model)
    with torch.no_grad():
        out = model.forward_sparse(stats.sparse(), horizon, optimism=False)
        explore = model.forward_sparse(stats.sparse(), horizon, optimism=True)
    c = empirical_mdp(stats)[4]
    expected = adjusted_q(stats, capture.last()[0], out.reward_scale.item() / c, model, horizon, False, floor=True)
    np.testing.assert_allclose(out.q[0].numpy(), expected, rtol=1e-9, atol=1e-9)
    unvisited = stats.sparse().counts == 0
    mean_rule = adjusted_q(stats, capture.last()[0], out.reward_scale.item() / c, model, horizon, False)
    assert (out.q[0].numpy()[:, unvisited] <= mean_rule[:, unvisited] + 1e-12).all()
    assert (out.q[0].numpy()[:, unvisited] < mean_rule[:, unvisited] - 1e-6).any()  # the floor binds somewhere
    np.testing.assert_allclose(
        explore.q[0].numpy(),
        adjusted_q(stats, capture.last()[0], explore.reward_scale.item() / c, model, horizon, True),
        rtol=1e-9, atol=1e-9,
    )


@pytest.mark.parametrize("floor", [True, False])
@pytest.mark.parametrize("rule", ["untried_only", "non_terminal"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exploit_unknown_rules_match_the_numpy_backward_induction(seed, rule, floor):
    """``exploit_unknown``: in the exploitation plan, ``untried_only`` gives a tried pair no unknown mass (as
    plain VI); ``non_terminal`` takes its mass from the non-terminal outcomes only (the terminations seen
    stay); untried pairs keep theirs (and the floor); the exploring plan is unchanged."""
    stats, horizon = random_stats(seed)
    assert stats.dense().terminal_counts.sum() > 0  # terminations seen: non_terminal differs from all_pairs
    model = make_model(seed)
    untried = "floor" if floor else "known_mean"
    model.config = dataclasses.replace(model.config, exploit_untried=untried, exploit_unknown=rule)
    capture = HeadCapture(model)
    with torch.no_grad():
        out = model.forward_sparse(stats.sparse(), horizon, optimism=False)
        explore = model.forward_sparse(stats.sparse(), horizon, optimism=True)
    c = empirical_mdp(stats)[4]
    raw, scale = capture.last()[0], out.reward_scale.item() / c
    expected = adjusted_q(stats, raw, scale, model, horizon, False, floor=floor, unknown=rule)
    np.testing.assert_allclose(out.q[0].numpy(), expected, rtol=1e-9, atol=1e-9)
    with_mass = adjusted_q(stats, raw, scale, model, horizon, False, floor=floor)
    assert np.abs(out.q[0].numpy() - with_mass).max() > 1e-6  # the rule changes the plan
    np.testing.assert_allclose(
        explore.q[0].numpy(), adjusted_q(stats, raw, explore.reward_scale.item() / c, model, horizon, True),
        rtol=1e-9, atol=1e-9,
    )


def test_optimism_horizon_keeps_a_whole_episode_of_the_unknown_worth_the_same_at_every_horizon():
    """With ``optimism_horizon`` ``H0``, planning over ``H`` steps values an untried pair exactly as the
    default model does with kappa scaled by ``H0 / H``; at ``H = H0`` the two models agree."""
    stats, horizon = random_stats(0)
    default = make_model(0)
    scaled = make_model(0)
    scaled.config = dataclasses.replace(scaled.config, optimism_horizon=4)
    with torch.no_grad():
        q_scaled = scaled.forward_sparse(stats.sparse(), horizon).q
        q_same_horizon = scaled.forward_sparse(stats.sparse(), 4).q
        kappa = torch.nn.functional.softplus(default.kappa_raw) * 4 / horizon
        assert horizon != 4
        q_at_h0 = default.forward_sparse(stats.sparse(), 4).q
        default.kappa_raw.copy_(kappa + torch.log(-torch.expm1(-kappa)))  # softplus inverse
        q_default = default.forward_sparse(stats.sparse(), horizon).q
    np.testing.assert_allclose(q_scaled.numpy(), q_default.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(q_same_horizon.numpy(), q_at_h0.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_optimism_horizon_max_shrinks_the_unknown_worth_only_beyond_it(seed):
    """``optimism_horizon_max=H1``: an MDP planned over more than ``H1`` steps has its unknown successor worth
    ``kappa scale H1 / H`` per step, one planned over ``H1`` steps or fewer keeps the default worth, each MDP of a
    batch by its own horizon; a guessed horizon keeps the default worth; the exploitation plan is unchanged."""
    items = [random_stats(seed), random_stats(seed + 5, steps=30)]
    items[1] = (items[1][0], 5)
    long_horizon, short_horizon = items[0][1], items[1][1]
    model = make_model(seed)
    default_q = [model.forward_sparse(st.sparse(), h).q.detach() for st, h in items]
    default_exploit = model.forward_sparse(items[0][0].sparse(), long_horizon, optimism=False).q.detach()
    model.config = dataclasses.replace(model.config, optimism_horizon_max=7)
    assert short_horizon <= 7 < long_horizon
    capture = HeadCapture(model)
    with torch.no_grad():
        batched = model(to_batch(items), optimism=True)
        raw = capture.last()
        sparse = model.forward_sparse(items[0][0].sparse(), long_horizon)
        guessed = model.forward_sparse(items[0][0].sparse(), long_horizon, horizon_known=False)
        exploit = model.forward_sparse(items[0][0].sparse(), long_horizon, optimism=False)
    assert_batch_is_reference(model, items, batched, raw)
    np.testing.assert_allclose(batched.q[1, :short_horizon, :items[1][0].n_states, :items[1][0].n_actions].numpy(),
                               default_q[1][0].numpy(), rtol=1e-9, atol=1e-9)
    assert np.abs(sparse.q.numpy() - default_q[0].numpy()).max() > 1e-3
    np.testing.assert_allclose(sparse.q.numpy(), batched.q[:1, :long_horizon, :items[0][0].n_states,
                               :items[0][0].n_actions].numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(guessed.q.numpy(), default_q[0].numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(exploit.q.numpy(), default_exploit.numpy(), rtol=1e-12, atol=1e-12)


def costs_only_stats(seed: int) -> tuple[SufficientStats, int]:
    """Random play in a random 5-state MDP whose rewards are all 0 or negative, with slips and terminations."""
    rng = np.random.default_rng(seed)
    stats = SufficientStats(spaces.Discrete(5), spaces.Discrete(2))
    s = 0
    for t in range(40):
        a = int(rng.integers(2))
        s_next = int(rng.integers(5)) if rng.random() < 0.3 else min(s + a, 4)
        terminated = s_next == 4 and a == 1
        stats.update(s, a, -0.2 * a, s_next, terminated, (t + 1) % 8 == 0)
        s = 0 if terminated or (t + 1) % 8 == 0 else s_next
    return stats, 12


@pytest.mark.parametrize("seed", [0, 1])
def test_optimism_horizon_max_when_reward_seen_keeps_the_worth_until_a_positive_reward_is_seen(seed):
    """``optimism_horizon_max_when="reward_seen"``: an MDP with only costs seen keeps the default worth however long
    its horizon; one with a positive mean reward has it shrunk as with ``"always"``; both match the numpy
    backward induction in one batch."""
    costs, rewarded = costs_only_stats(seed), random_stats(seed)
    assert (rewarded[0].sparse().reward_mean > 0).any() and not (costs[0].sparse().reward_mean > 0).any()
    model = make_model(seed)
    default_costs = model.forward_sparse(costs[0].sparse(), costs[1]).q.detach()
    model.config = dataclasses.replace(model.config, optimism_horizon_max=4)
    always_rewarded = model.forward_sparse(rewarded[0].sparse(), rewarded[1]).q.detach()
    always_costs = model.forward_sparse(costs[0].sparse(), costs[1]).q.detach()
    assert np.abs(always_costs.numpy() - default_costs.numpy()).max() > 1e-3  # "always" would shrink it
    model.config = dataclasses.replace(model.config, optimism_horizon_max_when="reward_seen")
    capture = HeadCapture(model)
    with torch.no_grad():
        batched = model(to_batch([costs, rewarded]), optimism=True)
        raw = capture.last()
        q_costs = model.forward_sparse(costs[0].sparse(), costs[1]).q
        q_rewarded = model.forward_sparse(rewarded[0].sparse(), rewarded[1]).q
    np.testing.assert_allclose(q_costs.numpy(), default_costs.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(q_rewarded.numpy(), always_rewarded.numpy(), rtol=1e-12, atol=1e-12)
    assert_batch_is_reference(model, [costs, rewarded], batched, raw)


def goal_stats(seed: int, cost: float = 0.1, goal: float = 1.0, n_actions: int = 2) -> tuple[SufficientStats, int]:
    """Random play with actions 0 and 1 in a random 5-state MDP whose only positive reward (``goal``) comes as an
    episode ends at state 4, with costs (``-cost`` for action 1) on the way, slips and truncations: the rewards of a
    goal. ``n_actions`` sizes the action space (the actions above 1 are left untried)."""
    rng = np.random.default_rng(seed)
    stats = SufficientStats(spaces.Discrete(5), spaces.Discrete(n_actions))
    s, t = 0, 0
    for _ in range(60):
        a = int(rng.integers(2))
        s_next = int(rng.integers(5)) if rng.random() < 0.3 else min(s + a, 4)
        terminated, t = s_next == 4, t + 1
        stats.update(s, a, goal if terminated else -cost * a, s_next, terminated, not terminated and t == 8)
        s, t = (0, 0) if terminated or t == 8 else (s_next, t)
    return stats, 12


def check_goal_and_other_rewards(goal: SufficientStats, rewarded: SufficientStats) -> None:
    """The scenario's premise: every rewarded pair of ``goal`` ended an episode, some of ``rewarded`` never did
    (``random_stats`` draws this at seeds 0-4, not at 5)."""
    goal_sparse, rewarded_sparse = goal.sparse(), rewarded.sparse()
    assert (goal_sparse.terminal_counts[goal_sparse.reward_mean > 0] > 0).all(), "goal: a reward without an end"
    assert (rewarded_sparse.terminal_counts[rewarded_sparse.reward_mean > 0] == 0).any(), "every reward ended"


@pytest.mark.parametrize("seed", [0, 1])
def test_optimism_horizon_max_when_terminal_rewards_applies_only_where_every_reward_seen_ended_an_episode(seed):
    """``optimism_horizon_max_when="terminal_rewards"``: an MDP whose positive rewards all came from pairs that ended
    an episode has the worth shrunk as with ``"always"``; one with a rewarded pair that never ended one, or with
    only costs, keeps the default worth; all three match the numpy backward induction in one batch."""
    goal, rewarded, costs = goal_stats(seed), random_stats(seed), costs_only_stats(seed)
    check_goal_and_other_rewards(goal[0], rewarded[0])
    goal_sparse = goal[0].sparse()
    model = make_model(seed)
    default = [model.forward_sparse(st.sparse(), h).q.detach() for st, h in (goal, rewarded, costs)]
    model.config = dataclasses.replace(model.config, optimism_horizon_max=1)
    always_goal = model.forward_sparse(goal_sparse, goal[1]).q.detach()
    assert np.abs(always_goal.numpy() - default[0].numpy()).max() > 1e-3
    model.config = dataclasses.replace(model.config, optimism_horizon_max_when="terminal_rewards")
    capture = HeadCapture(model)
    with torch.no_grad():
        batched = model(to_batch([goal, rewarded, costs]), optimism=True)
        raw = capture.last()
        sparse = [model.forward_sparse(st.sparse(), h).q for st, h in (goal, rewarded, costs)]
    np.testing.assert_allclose(sparse[0].numpy(), always_goal.numpy(), rtol=1e-12, atol=1e-12)
    for kept, plain in zip(sparse[1:], default[1:], strict=True):
        np.testing.assert_allclose(kept.numpy(), plain.numpy(), rtol=1e-12, atol=1e-12)
    assert_batch_is_reference(model, [goal, rewarded, costs], batched, raw)


def check_rule_acts_only_on_goal_statistics(model: IcrlModel, rule: dict, seed: int) -> None:
    """Turn ``rule`` (config keys) on: the exploring plan changes on statistics whose positive rewards all ended an
    episode, stays bit for bit on statistics with a rewarded pair that never ended one and on cost-only ones, matches
    the numpy backward induction on all three in one batch, and the exploitation plan is unchanged."""
    items = [goal_stats(seed), random_stats(seed), costs_only_stats(seed)]
    check_goal_and_other_rewards(items[0][0], items[1][0])
    before = [model.forward_sparse(st.sparse(), h).q.detach() for st, h in items]
    exploit = [model.forward_sparse(st.sparse(), h, optimism=False).q.detach() for st, h in items]
    model.config = dataclasses.replace(model.config, **rule)
    capture = HeadCapture(model)
    with torch.no_grad():
        batched = model(to_batch(items), optimism=True)
        raw = capture.last()
        sparse = [model.forward_sparse(st.sparse(), h).q for st, h in items]
        sparse_exploit = [model.forward_sparse(st.sparse(), h, optimism=False).q for st, h in items]
    assert np.abs(sparse[0].numpy() - before[0].numpy()).max() > 1e-3
    for kept, plain in zip(sparse[1:] + sparse_exploit, before[1:] + exploit, strict=True):
        np.testing.assert_allclose(kept.numpy(), plain.numpy(), rtol=1e-12, atol=1e-12)
    for q_sparse, expected in zip(sparse, assert_batch_is_reference(model, items, batched, raw), strict=True):
        np.testing.assert_allclose(q_sparse[0].numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_unknown_worth_after_goal_once_applies_only_where_every_reward_seen_ended_an_episode(seed):
    """``unknown_worth_after_goal="once"``: where the positive rewards all came from pairs that ended an episode, the
    unknown successor is worth ``kappa scale`` over a whole episode (not per step to go); an MDP with a rewarded
    pair that never ended one, or with only costs, keeps the default plan; all three match the numpy backward
    induction in one batch, and the exploitation plan is unchanged."""
    check_rule_acts_only_on_goal_statistics(make_model(seed), {"unknown_worth_after_goal": "once"}, seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_unknown_worth_after_goal_once_or_episode_cost_is_once_with_an_episode_of_move_costs_as_floor(seed):
    """``unknown_worth_after_goal="once_or_episode_cost"``: where every positive reward ended an episode and moves
    cost more over an episode than ``kappa scale``, the unknown successor is worth that episode of costs (more than
    with ``"once"``); where moves are free it is ``"once"`` bit for bit; other rewards and costs alone keep the
    default plan. Every case matches the numpy backward induction, on the sparse and the batched paths."""
    model = make_model(seed)
    check_rule_acts_only_on_goal_statistics(model, {"unknown_worth_after_goal": "once_or_episode_cost"}, seed)
    free, costly = goal_stats(seed, cost=0.0), goal_stats(seed, cost=0.9)
    plans = {}
    for rule in ("once", "once_or_episode_cost"):
        model.config = dataclasses.replace(model.config, unknown_worth_after_goal=rule)
        with torch.no_grad():
            plans[rule] = [model.forward_sparse(st.sparse(), h).q for st, h in (free, costly)]
    np.testing.assert_allclose(plans["once_or_episode_cost"][0].numpy(), plans["once"][0].numpy(), rtol=0, atol=0)
    assert (plans["once_or_episode_cost"][1] >= plans["once"][1] - 1e-9).all()
    assert (plans["once_or_episode_cost"][1] - plans["once"][1]).max() > 1e-3
    model.config = dataclasses.replace(model.config, unknown_worth_after_goal="once_or_episode_cost")
    capture = HeadCapture(model)
    with torch.no_grad():
        batched = model(to_batch([costly]), optimism=True)
    stats, horizon = costly
    scale = batched.reward_scale[0].item() / empirical_mdp(stats)[4]
    expected = adjusted_q(stats, capture.last()[0, :stats.n_states, :stats.n_actions], scale, model, horizon, True)
    np.testing.assert_allclose(plans["once_or_episode_cost"][1][0].numpy(), expected, rtol=1e-9, atol=1e-9)


def goal_by_slips_stats(entries: int = 100) -> tuple[SufficientStats, int]:
    """A goal entered only by slips: from state 0, action 0 reaches the goal (reward 1, the episode ends) on one try
    in ``entries`` and otherwise leads to state 1, whose action 0 leads back; action 1 is never tried. Every pair's
    mean reward is small, so the normalization unit ``c`` is far below the goal's reward."""
    stats = SufficientStats(spaces.Discrete(3), spaces.Discrete(2))
    for i in range(entries):
        if i == entries - 1:
            stats.update(0, 0, 1.0, 2, True, False)
        else:
            stats.update(0, 0, 0.0, 1, False, False)
            stats.update(1, 0, 0.0, 0, False, i % 5 == 4)
    return stats, 10


@pytest.mark.parametrize("seed", [0, 1])
def test_unknown_worth_after_goal_once_or_goal_is_at_least_the_largest_goal_seen(seed):
    """``unknown_worth_after_goal="once_or_goal_or_episode_cost"``: where the goal was entered only by slips, the
    unknown successor is worth at least the goal's reward per ending, more than with ``"once_or_episode_cost"``; where
    every visit of the goal's pair ended the episode, it is ``"once_or_episode_cost"`` bit for bit; the rule acts only
    on goal statistics, and every plan matches the numpy backward induction."""
    model = make_model(seed)
    check_rule_acts_only_on_goal_statistics(model, {"unknown_worth_after_goal": "once_or_goal_or_episode_cost"}, seed)
    items = [goal_by_slips_stats(), (one_goal_one_move_stats(), 6), goal_by_slips_stats(entries=3)]
    plans = {}
    for rule in ("once_or_episode_cost", "once_or_goal_or_episode_cost"):
        model.config = dataclasses.replace(model.config, unknown_worth_after_goal=rule)
        with torch.no_grad():
            plans[rule] = [model.forward_sparse(st.sparse(), h).q for st, h in items]
    goal, plain = plans["once_or_goal_or_episode_cost"], plans["once_or_episode_cost"]
    assert (goal[0] - plain[0]).min() > -1e-9 and (goal[0] - plain[0]).max() > 1e-3, "the goal seen must bind"
    np.testing.assert_allclose(goal[1].numpy(), plain[1].numpy(), rtol=0, atol=0)
    capture = HeadCapture(model)
    with torch.no_grad():
        batched = model(to_batch(items), optimism=True)
    assert_batch_is_reference(model, items, batched, capture.last())


def small_goal_beside_a_trap_stats() -> tuple[SufficientStats, int]:
    """From state 0, action 0 enters a goal paying 0.5 and action 1 a trap costing 1; each ends the episode, tried
    three times. The trap sets the unit ``c``, so the goal is 0.5 units: a goal smaller than one unit."""
    stats = SufficientStats(spaces.Discrete(3), spaces.Discrete(2))
    for _ in range(3):
        stats.update(0, 0, 0.5, 1, True, False)
        stats.update(0, 1, -1.0, 2, True, False)
    return stats, 5


@pytest.mark.parametrize("seed", [0, 1])
def test_the_goal_floor_is_the_goal_seen_even_below_one_unit(seed):
    """With ``kappa * scale`` near 0.3, a goal of 0.5 units (smaller than the trap that sets the unit) lifts one more
    goal to 0.5, not to a whole unit: the plan matches the numpy backward induction and differs from
    ``"once_or_episode_cost"``."""
    model = make_model(seed)
    with torch.no_grad():
        model.kappa_raw.fill_(math.log(math.expm1(0.3)))  # kappa 0.3
        model.log_scale_gain.fill_(-30.0)  # scale 1
    items = [small_goal_beside_a_trap_stats()]
    plans = {}
    for rule in ("once_or_episode_cost", "once_or_goal_or_episode_cost"):
        model.config = dataclasses.replace(model.config, unknown_worth_after_goal=rule)
        capture = HeadCapture(model)
        with torch.no_grad():
            batched = model(to_batch(items), optimism=True)
        plans[rule] = assert_batch_is_reference(model, items, batched, capture.last())[0]
    assert (plans["once_or_goal_or_episode_cost"] - plans["once_or_episode_cost"]).max() > 1e-3


def one_goal_one_move_stats() -> SufficientStats:
    """One costly move (0.9, tried once) and then a goal (1, reached once), every other pair untried."""
    stats = SufficientStats(spaces.Discrete(3), spaces.Discrete(2))
    stats.update(0, 1, -0.9, 1, False, False)
    stats.update(1, 0, 1.0, 2, True, False)
    return stats


@pytest.mark.parametrize("seed", [0, 1])
def test_each_mdps_episode_cost_floor_is_its_own_mean_move_cost_over_its_tried_moves(seed):
    """In one batch: a goal reached once after a single move tried once, at horizons 2 and 6, beside random play with
    many costly moves. Each MDP's floor comes from its own tried moves only (not the batch's, not its untried
    pairs), a goal reached once is a goal, and every plan matches the numpy backward induction."""
    model = make_model(seed)
    model.config = dataclasses.replace(model.config, unknown_worth_after_goal="once_or_episode_cost")
    items = [(one_goal_one_move_stats(), 2), (one_goal_one_move_stats(), 6), goal_stats(seed, cost=0.9)]
    capture = HeadCapture(model)
    with torch.no_grad():
        batched = model(to_batch(items), optimism=True)
    raw = capture.last()
    single = assert_batch_is_reference(model, items, batched, raw)[1]
    stats, s = items[1][0], items[1][0].n_states
    scale = batched.reward_scale[1].item() / empirical_mdp(stats)[4]
    model.config = dataclasses.replace(model.config, unknown_worth_after_goal="once")
    once = adjusted_q(stats, raw[1, :s, :2], scale, model, 6, True)
    assert (single - once).max() > 1e-3, "the floor must bind on the single costly move"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exploit_spread_penalty_lowers_slippery_pairs_in_the_exploitation_plan_only(seed):
    """``exploit_spread_penalty=c_p``: the exploitation plan subtracts ``c_p / sqrt(N + 1)`` times the spread terms
    from each tried pair, on the sparse and the batched paths alike (numpy backward induction); the exploring plan
    is unchanged."""
    stats, horizon = random_stats(seed)
    model = make_model(seed)
    exploit_before = model.forward_sparse(stats.sparse(), horizon, optimism=False).q.detach()
    explore_before = model.forward_sparse(stats.sparse(), horizon, optimism=True).q.detach()
    model.config = dataclasses.replace(model.config, exploit_spread_penalty=0.5)
    capture = HeadCapture(model)
    with torch.no_grad():
        exploit = model.forward_sparse(stats.sparse(), horizon, optimism=False)
        batched = model(to_batch([(stats, horizon)]), optimism=False)
        explore = model.forward_sparse(stats.sparse(), horizon, optimism=True).q
    raw, scale = capture.last()[0], exploit.reward_scale.item() / empirical_mdp(stats)[4]
    expected = adjusted_q(stats, raw, scale, model, horizon, False, floor=model.config.exploit_untried == "floor",
                          unknown=model.config.exploit_unknown)
    np.testing.assert_allclose(exploit.q[0].numpy(), expected, rtol=1e-9, atol=1e-9)
    n_states, n_actions = expected.shape[1:]
    np.testing.assert_allclose(batched.q[0, :, :n_states, :n_actions].numpy(), expected, rtol=1e-9, atol=1e-9)
    assert (expected <= exploit_before[0].numpy() + 1e-9).all() and np.abs(expected - exploit_before[0].numpy()).max() > 1e-3
    np.testing.assert_allclose(explore.numpy(), explore_before.numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="exploit_spread_penalty must be a number >= 0"):
        ModelConfig(exploit_spread_penalty=-0.1)


@pytest.mark.parametrize("optimism", [True, False])
def test_a_guessed_horizon_keeps_the_unknown_worth_per_step_of_the_default_model(optimism):
    """``horizon_known=False`` (no episode has ended): the per-step worth of the unknown successor is not
    scaled by ``H0 / H``, so the plan is the default model's at the same horizon; known, it is scaled."""
    stats, horizon = random_stats(1)
    default = make_model(2)
    scaled = make_model(2)
    scaled.config = dataclasses.replace(scaled.config, optimism_horizon=4)
    assert horizon != 4
    with torch.no_grad():
        guessed = scaled.forward_sparse(stats.sparse(), horizon, optimism=optimism, horizon_known=False).q
        known = scaled.forward_sparse(stats.sparse(), horizon, optimism=optimism).q
        plain = default.forward_sparse(stats.sparse(), horizon, optimism=optimism).q
    np.testing.assert_allclose(guessed.numpy(), plain.numpy(), rtol=1e-12, atol=1e-12)
    if optimism:  # only the exploring plan has an unknown successor worth kappa * scale
        assert not np.allclose(known.numpy(), plain.numpy(), rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_allclose(known.numpy(), plain.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["optimism_horizon", "optimism_horizon_max", "stay_unknown_max_tries"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True, "20"])
def test_optimism_horizon_rejects_anything_but_none_or_a_positive_int(value, name):
    with pytest.raises(ValueError, match=f"{name} must be None or a positive int"):
        ModelConfig(**{name: value})


@pytest.mark.parametrize("worth", ["once", "once_or_episode_cost", "once_or_goal_or_episode_cost"])
@pytest.mark.parametrize("rule", [{"optimism_horizon": 20}, {"optimism_horizon_max": 50}])
def test_unknown_worth_after_goal_once_refuses_a_horizon_rule_beside_it(rule, worth):
    with pytest.raises(ValueError, match=f"unknown_worth_after_goal='{worth}' sets the unknown successor's worth"):
        ModelConfig(unknown_worth_after_goal=worth, **rule)
    with pytest.raises(ValueError, match="unknown_worth_after_goal must be one of"):
        ModelConfig(unknown_worth_after_goal="twice")


def test_optimism_horizon_max_when_rejects_an_unknown_rule_by_name():
    with pytest.raises(ValueError, match="optimism_horizon_max_when must be one of"):
        ModelConfig(optimism_horizon_max_when="never")


def test_the_two_optimism_horizon_rules_are_not_combined():
    with pytest.raises(ValueError, match="set one"):
        ModelConfig(optimism_horizon=20, optimism_horizon_max=50)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_explore_unknown_untried_only_gives_tried_pairs_no_unknown_mass_in_the_exploring_plan(seed):
    """``explore_unknown="untried_only"``: in the exploring plan a tried pair follows ``P̂`` (plus its bonus), an
    untried one reaches the unknown successor; the exploitation plan is unchanged."""
    stats, horizon = random_stats(seed)
    model = make_model(seed)
    default_exploit = model.forward_sparse(stats.sparse(), horizon, optimism=False).q.detach()
    model.config = dataclasses.replace(model.config, explore_unknown="untried_only")
    capture = HeadCapture(model)
    with torch.no_grad():
        explore = model.forward_sparse(stats.sparse(), horizon, optimism=True)
        exploit = model.forward_sparse(stats.sparse(), horizon, optimism=False)
    c = empirical_mdp(stats)[4]
    raw, scale = capture.last()[0], explore.reward_scale.item() / c
    expected = adjusted_q(stats, raw, scale, model, horizon, True, explore="untried_only")
    np.testing.assert_allclose(explore.q[0].numpy(), expected, rtol=1e-9, atol=1e-9)
    assert np.abs(expected - adjusted_q(stats, raw, scale, model, horizon, True)).max() > 1e-6
    np.testing.assert_allclose(exploit.q.numpy(), default_exploit.numpy(), rtol=1e-12, atol=1e-12)


def check_exploring_rule(stats: SufficientStats, horizon: int, model: IcrlModel, rule: dict, rtol: float) -> None:
    """Turn ``rule`` (config keys) on: the exploring plan matches the numpy backward induction on the sparse and
    the batched paths, differs from the plan without the rule, and the exploitation plan is unchanged."""
    without_rule = model.forward_sparse(stats.sparse(), horizon, optimism=True).q.detach()
    default_exploit = model.forward_sparse(stats.sparse(), horizon, optimism=False).q.detach()
    model.config = dataclasses.replace(model.config, **rule)
    capture = HeadCapture(model)
    with torch.no_grad():
        explore_q = model.forward_sparse(stats.sparse(), horizon, optimism=True)
        batched = model(to_batch([(stats, horizon)]), optimism=True)
        exploit = model.forward_sparse(stats.sparse(), horizon, optimism=False)
    c = empirical_mdp(stats)[4]
    raw, scale = capture.last()[0], explore_q.reward_scale.item() / c
    missing = capture.missing[0][0].double().numpy() if capture.missing else None  # the sparse pass's
    expected = adjusted_q(stats, raw, scale, model, horizon, True, explore=model.config.explore_unknown,
                          missing=missing)
    np.testing.assert_allclose(explore_q.q[0].numpy(), expected, rtol=rtol, atol=1e-9)
    n_states, n_actions = expected.shape[1:]
    np.testing.assert_allclose(batched.q[0, :, :n_states, :n_actions].numpy(), expected, rtol=rtol, atol=1e-9)
    assert np.abs(expected - without_rule[0].numpy()).max() > 1e-3
    np.testing.assert_allclose(exploit.q.numpy(), default_exploit.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_explore_unknown_impurity_weighted_gives_a_tried_pair_rho_times_its_unknown_mass(seed):
    """``explore_unknown="impurity_weighted"``: a tried pair keeps ``rho m`` of its unknown mass, ``rho`` the pooled
    share of visit pairs with different outcomes; with icrl-v2.5's spread bonus limited to 3 per episode and the
    value cap, in the sparse and the batched paths alike. The exploitation plan is unchanged."""
    stats, horizon = random_stats(seed)
    model = make_model(seed)
    model.config = dataclasses.replace(
        model.config, spread_bonus=0.5, value_cap=True, spread_bonus_per_episode=3, explore_unknown="untried_only"
    )
    check_exploring_rule(stats, horizon, model, {"explore_unknown": "impurity_weighted"}, rtol=1e-9)


def model_with_missing_mass_head(seed: int) -> IcrlModel:
    """:func:`make_model`'s network plus a missing-mass head (``explore_unknown="learned_missing_mass"``), with
    icrl-v2.5's spread bonus limited to 3 per episode and the value cap; its config says ``untried_only`` until a
    test turns the rule on."""
    base = make_model(seed)
    config = dataclasses.replace(base.config, spread_bonus=0.5, value_cap=True, spread_bonus_per_episode=3,
                                 explore_unknown="learned_missing_mass")
    torch.manual_seed(seed)
    model = IcrlModel(config).double().eval()
    model.load_state_dict(base.state_dict(), strict=False)
    with torch.no_grad():
        model.missing_mass_head.weight.mul_(5.0)
    model.config = dataclasses.replace(config, explore_unknown="untried_only")
    return model


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_explore_unknown_learned_missing_mass_gives_a_tried_pair_the_heads_estimate(seed):
    """``explore_unknown="learned_missing_mass"``: a tried pair's unknown mass is the head's ``M̂``, an untried
    pair keeps ``m``; in the sparse and the batched paths alike, and the exploitation plan is unchanged."""
    stats, horizon = random_stats(seed)
    model = model_with_missing_mass_head(seed)
    check_exploring_rule(stats, horizon, model, {"explore_unknown": "learned_missing_mass"}, rtol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_missing_mass_head_reads_the_count_and_the_pooled_impurity(seed):
    """With the embeddings' weights at 0, ``M̂ = sigmoid(a log1p(N) + b / sqrt(N + 1) + c sqrt(rho) + d)``, per
    pair, ``rho`` the pooled share of visit pairs with different outcomes (as the spread bonus reads it)."""
    stats, horizon = random_stats(seed)
    model = model_with_missing_mass_head(seed)
    a, b, c, d = 0.7, -1.3, 2.1, -0.4
    with torch.no_grad():
        model.missing_mass_head.weight.zero_()
        model.missing_mass_head.weight[0, -3:] = torch.tensor([a, b, c], dtype=torch.float64)
        model.missing_mass_head.bias.fill_(d)
    predicted = model.missing_mass(to_batch([(stats, horizon)]))[0].detach().numpy()
    counts = empirical_mdp(stats)[0]
    expected = sigmoid(a * np.log1p(counts) + b / np.sqrt(counts + 1.0) + c * math.sqrt(pooled_rho(stats)) + d)
    n_states, n_actions = counts.shape
    np.testing.assert_allclose(predicted[:n_states, :n_actions], expected, rtol=1e-9)


def test_missing_mass_needs_the_head():
    with pytest.raises(ValueError, match="learned_missing_mass"):
        make_model(0).missing_mass(to_batch([random_stats(0)]))


def test_explore_unknown_impurity_weighted_is_all_pairs_before_a_pair_is_tried_twice():
    """Before any pair was tried twice ``rho`` is 1, so a tried pair keeps all of its unknown mass; once every pair
    was tried often with one outcome each, ``rho`` is near 0 and the plan nears ``untried_only``'s."""
    stats = SufficientStats(spaces.Discrete(4), spaces.Discrete(2))
    for s in range(3):
        stats.update(s, 0, 0.5, s + 1, False, s == 2)
    model = make_model(0)
    plans = {}
    for rule in ("all_pairs", "impurity_weighted", "untried_only"):
        model.config = dataclasses.replace(model.config, explore_unknown=rule)
        plans[rule] = model.forward_sparse(stats.sparse(), 6, optimism=True).q.detach()
    torch.testing.assert_close(plans["impurity_weighted"], plans["all_pairs"], rtol=1e-12, atol=1e-12)
    assert (plans["impurity_weighted"] - plans["untried_only"]).abs().max() > 1e-3
    for _ in range(30):
        for s in range(3):
            stats.update(s, 0, 0.5, s + 1, False, s == 2)
    for rule in ("impurity_weighted", "untried_only"):
        model.config = dataclasses.replace(model.config, explore_unknown=rule)
        plans[rule] = model.forward_sparse(stats.sparse(), 6, optimism=True).q.detach()
    gap = (plans["impurity_weighted"] - plans["untried_only"]).abs().max()
    assert 0 < gap < 0.01 * plans["untried_only"].abs().max()


@pytest.mark.parametrize("explore", ["all_pairs", "impurity_weighted", "learned_missing_mass"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tried_unknown_limited_counts_a_tried_pairs_unknown_mass_among_the_episodes_bonuses(seed, explore):
    """``tried_unknown_limited``: a tried pair's unknown mass ``M`` (what ``explore_unknown`` leaves it) leaves every
    step's backup and becomes the bonus ``M (U_{k-1} - P̂ V_{k-1})`` taken on at most ``n`` steps with the spread
    bonus; an untried pair keeps ``m`` on every step. Sparse and batched paths alike; the exploitation plan is
    unchanged."""
    stats, horizon = random_stats(seed)
    model = model_with_missing_mass_head(seed)
    model.config = dataclasses.replace(model.config, explore_unknown=explore)
    check_exploring_rule(stats, horizon, model, {"tried_unknown_limited": True}, rtol=1e-9)


def stats_with_stays(seed: int) -> tuple[SufficientStats, int]:
    """:func:`random_stats` plus, in its upper half of states (where the last action is never tried), that action
    tried 1, 2 or 3 times and staying put every time; in state 3 it also once ended the episode from there, and in
    state 4 it once moved on, so those two stayed only mostly."""
    stats, horizon = random_stats(seed)
    last = stats.n_actions - 1
    for s in range(stats.n_states // 2, stats.n_states):
        for _ in range(1 + s % 3):
            stats.update(s, last, 0.0, s, False, False)
    stats.update(3, last, 0.0, 3, True, False)
    stats.update(4, last, 0.0, 0, False, False)
    return stats, horizon


def stayed_only_pairs(stats: SufficientStats) -> np.ndarray:
    """``[S, A]`` by observation: the tried pairs whose every try led back to their own state."""
    dense = stats.dense(by_observation=True)
    return (dense.counts > 0) & (np.einsum("sas->sa", dense.transitions) == dense.counts)


@pytest.mark.parametrize("limited", [False, True])
@pytest.mark.parametrize("explore", ["all_pairs", "impurity_weighted", "learned_missing_mass"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stay_unknown_pseudo_count_floors_the_mass_of_a_move_that_only_stayed_put(seed, explore, limited):
    """``stay_unknown_pseudo_count`` ``w_s``: a tried pair whose every try stayed at its state keeps at least
    ``w_s / (N + w_s)`` of unknown mass in the exploring plan, whatever ``explore_unknown`` left it, on every step or
    as a limited bonus; pairs that once ended or moved on are left as they were. Sparse and batched paths alike;
    the exploitation plan is unchanged."""
    stats, horizon = stats_with_stays(seed)
    stayed = stayed_only_pairs(stats)
    assert stayed[5, -1] and not stayed[3, -1] and not stayed[4, -1]
    model = model_with_missing_mass_head(seed)
    model.config = dataclasses.replace(model.config, explore_unknown=explore, tried_unknown_limited=limited)
    check_exploring_rule(stats, horizon, model, {"stay_unknown_pseudo_count": 20.0}, rtol=1e-9)


def stays_stats(seed: int, rewards: str) -> tuple[SufficientStats, int]:
    """:func:`goal_stats` with a third action, tried at states 1, 2 and 3 (once, twice, three times) and staying put
    every time. ``rewards``: ``"goal"`` (1 as an episode ends, else costs; the stays pay 0), ``"midway"`` (the endings
    pay 0, and the stay at state 3 pays 0.5: a reward that came midway) or ``"costs"`` (costs only; the stays pay
    0)."""
    stats, horizon = goal_stats(seed, goal=1.0 if rewards == "goal" else 0.0, n_actions=3)
    for s in (1, 2, 3):
        for _ in range(s):
            stats.update(s, 2, 0.5 if rewards == "midway" and s == 3 else 0.0, s, False, False)
    return stats, horizon


@pytest.mark.parametrize("seed", [0, 1])
def test_stay_unknown_when_midway_reward_floors_stays_only_where_a_reward_came_midway(seed):
    """``stay_unknown_when="midway_reward"``: the stay floor changes the exploring plan of an MDP with a positive
    reward from a pair that never ended an episode, and leaves bit for bit the plans of one whose rewards all came
    as episodes ended and of one with costs only; all three match the numpy backward induction in one batch."""
    items = [stays_stats(seed, "midway"), stays_stats(seed, "goal"), stays_stats(seed, "costs")]
    model = model_with_missing_mass_head(seed)
    model.config = dataclasses.replace(model.config, explore_unknown="learned_missing_mass", tried_unknown_limited=True)
    before = [model.forward_sparse(st.sparse(), h).q.detach() for st, h in items]
    model.config = dataclasses.replace(model.config, stay_unknown_pseudo_count=20.0, stay_unknown_when="midway_reward")
    capture = HeadCapture(model)
    with torch.no_grad():
        sparse = [model.forward_sparse(st.sparse(), h).q for st, h in items]
        missing = [m[0].double().numpy() for m in capture.missing]
    assert np.abs(sparse[0].numpy() - before[0].numpy()).max() > 1e-3
    for kept, plain in zip(sparse[1:], before[1:], strict=True):
        np.testing.assert_allclose(kept.numpy(), plain.numpy(), rtol=1e-12, atol=1e-12)
    for (stats, horizon), q, raw, m in zip(items, sparse, capture.raw, missing, strict=True):
        scale = model.reward_scale(to_batch([(stats, horizon)])).item() / empirical_mdp(stats)[4]
        expected = adjusted_q(stats, raw[0].double().numpy(), scale, model, horizon, True,
                              explore="learned_missing_mass", missing=m)
        np.testing.assert_allclose(q[0].numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_stay_unknown_unpaid_only_leaves_a_stay_that_paid_without_the_floor(seed):
    """``stay_unknown_unpaid_only``: a stay whose mean reward is positive (state 3's, paying 0.5) loses the floor,
    the unpaid stays keep it; sparse and batched paths match the numpy backward induction."""
    stats, horizon = stays_stats(seed, "midway")
    model = model_with_missing_mass_head(seed)
    model.config = dataclasses.replace(model.config, explore_unknown="learned_missing_mass", tried_unknown_limited=True,
                                       stay_unknown_pseudo_count=20.0, stay_unknown_when="midway_reward")
    check_exploring_rule(stats, horizon, model, {"stay_unknown_unpaid_only": True}, rtol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_stay_unknown_moving_actions_only_leaves_an_action_that_never_moved_without_the_floor(seed):
    """``stay_unknown_moving_actions_only``: where action 2 stayed put on every try at every state (a no-op), its
    pairs lose the floor (matching the numpy backward induction); once action 2 moved on one try elsewhere, every
    action that stayed somewhere has also moved somewhere, and the plan is the one without the option."""
    model = model_with_missing_mass_head(seed)
    model.config = dataclasses.replace(model.config, explore_unknown="learned_missing_mass", tried_unknown_limited=True,
                                       stay_unknown_pseudo_count=20.0, stay_unknown_when="midway_reward",
                                       stay_unknown_unpaid_only=True)
    no_op, horizon = stays_stats(seed, "midway")
    moved, _ = stays_stats(seed, "midway")
    moved.update(0, 2, 0.0, 1, False, False)
    floored = model.forward_sparse(moved.sparse(), horizon).q.detach()
    check_exploring_rule(no_op, horizon, model, {"stay_unknown_moving_actions_only": True}, rtol=1e-9)
    torch.testing.assert_close(model.forward_sparse(moved.sparse(), horizon).q.detach(), floored, rtol=1e-12, atol=1e-12)
    items = [(no_op, horizon), (moved, horizon)]  # each MDP of a batch reads its own actions
    capture = HeadCapture(model)
    with torch.no_grad():
        batched = model(to_batch(items), optimism=True)
    for i, (stats, _) in enumerate(items):
        s, a = stats.n_states, stats.n_actions
        scale = batched.reward_scale[i].item() / empirical_mdp(stats)[4]
        expected = adjusted_q(stats, capture.last()[i, :s, :a], scale, model, horizon, True,
                              explore="learned_missing_mass", missing=capture.missing[-1][i, :s, :a].double().numpy())
        np.testing.assert_allclose(batched.q[i, :horizon, :s, :a].numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_stay_unknown_max_tries_ends_the_floor_after_k_quiet_tries(seed):
    """``stay_unknown_max_tries`` ``K = 2``: the stays tried more than twice lose the floor (matching the numpy
    backward induction); with ``K`` above every count the plan is the one without the option."""
    stats, horizon = stays_stats(seed, "goal")
    model = model_with_missing_mass_head(seed)
    model.config = dataclasses.replace(model.config, explore_unknown="learned_missing_mass", tried_unknown_limited=True,
                                       stay_unknown_pseudo_count=20.0)
    floored = model.forward_sparse(stats.sparse(), horizon).q.detach()
    check_exploring_rule(stats, horizon, model, {"stay_unknown_max_tries": 2}, rtol=1e-9)
    model.config = dataclasses.replace(model.config, stay_unknown_max_tries=int(stats.dense().counts.max()))
    torch.testing.assert_close(model.forward_sparse(stats.sparse(), horizon).q.detach(), floored, rtol=1e-12, atol=1e-12)


def sixarms_hub_stats(arm_tries: int, horizon: int = 20) -> SufficientStats:
    """A SixArms-like hub told nothing, after ``arm_tries + 2`` episodes of ``horizon`` steps. Arm 0 always enters
    room 1, where action 0 stays and pays 1 and the others (each tried once, in the first episode) return to the
    hub. In each of the first ``arm_tries`` episodes arms 1-5 were tried once each from the hub first, and stayed
    there. Rooms 2-6 were never met."""
    stats = SufficientStats(spaces.Discrete(7), spaces.Discrete(6))
    for episode in range(arm_tries + 2):
        steps = [(0, arm, 0.0, 0) for arm in range(1, 6)] if episode < arm_tries else []
        if episode == 0:
            steps += [step for a in range(1, 6) for step in ((0, 0, 0.0, 1), (1, a, 0.0, 0))]
        steps += [(0, 0, 0.0, 1)] + [(1, 0, 1.0, 1)] * (horizon - len(steps) - 1)
        for t, (s, a, r, s_next) in enumerate(steps):
            stats.update(s, a, r, s_next, False, t == horizon - 1)
    return stats


def test_stay_unknown_pseudo_count_sends_an_agent_at_a_quiet_hub_to_retry_an_arm():
    """At a SixArms-like hub whose rarer arms each stayed put on their two tries, the shipped model's exploring plan
    enters the one room met; with ``w_s = 0.5`` it retries an arm, and after 40 quiet tries of each it enters the
    room again."""
    model = load_checkpoint(shipped_weights_path())[0].double().eval()
    choices = {}
    for w_s, tries in ((0.0, 2), (0.5, 2), (0.5, 40)):
        model.config = dataclasses.replace(model.config, stay_unknown_pseudo_count=w_s)
        with torch.no_grad():
            q = model.forward_sparse(sixarms_hub_stats(tries).sparse(), 20, optimism=True).q[0, -1, 0]
        choices[w_s, tries] = int(q.argmax())
    assert choices[0.0, 2] == 0
    assert choices[0.5, 2] != 0
    assert choices[0.5, 40] == 0


def test_tried_unknown_limited_caps_what_many_tried_pairs_are_worth():
    """A corridor whose every move was tried three times (one outcome each, no reward): with a tried pair's unknown
    mass on every step, the exploring plan collects it step after step; limited to one bonus per episode, it gains
    less than half as much over the plan without any tried-pair mass, and still something."""
    stats = SufficientStats(spaces.Discrete(12), spaces.Discrete(2))
    for _ in range(3):
        for s in range(11):
            stats.update(s, 0, 0.0, s + 1, False, False)
            stats.update(s, 1, 0.0, s, False, False)
        stats.update(11, 0, 0.0, 11, False, False)
        stats.update(11, 1, 0.0, 11, False, True)
    model = make_model(0)
    with torch.no_grad():
        model.log_bonus_gain.fill_(-20.0)  # the count bonus off, as in icrl-v2.5 (0.0002), so no value hits the cap
    base = dict(explore_unknown="all_pairs", spread_bonus=0.5, value_cap=True, spread_bonus_per_episode=1,
                tried_unknown_limited=False)
    values = {}
    for name, rule in {"every step": {}, "limited": {"tried_unknown_limited": True},
                       "none": {"explore_unknown": "untried_only"}}.items():
        model.config = dataclasses.replace(model.config, **{**base, **rule})
        with torch.no_grad():
            values[name] = model.forward_sparse(stats.sparse(), 40, optimism=True).q[0, -1].amax(-1)
    gain_limited = (values["limited"] - values["none"]).max().item()
    gain_every_step = (values["every step"] - values["none"]).max().item()
    assert 0 < gain_limited < 0.5 * gain_every_step


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tried_unknown_worth_after_goal_once_applies_only_where_every_reward_seen_ended_an_episode(seed):
    """``tried_unknown_worth_after_goal="once"``: where the positive rewards all came from pairs that ended an
    episode, a tried pair's limited bonus reads the unknown successor's worth as one more goal; an MDP with a
    rewarded pair that never ended one, or with only costs, keeps the per-step worth; the three match the numpy
    backward induction in one batch, and the exploitation plan is unchanged."""
    model = make_model(seed)
    model.config = dataclasses.replace(model.config, spread_bonus=0.5, value_cap=True, spread_bonus_per_episode=3,
                                       tried_unknown_limited=True)
    check_rule_acts_only_on_goal_statistics(model, {"tried_unknown_worth_after_goal": "once"}, seed)


def test_tried_unknown_worth_after_goal_needs_the_limit_and_no_horizon_rule():
    with pytest.raises(ValueError, match="tried_unknown_worth_after_goal sets the worth in a tried pair's limited"):
        ModelConfig(tried_unknown_worth_after_goal="once")
    limited = dict(spread_bonus=0.3, spread_bonus_per_episode=3, tried_unknown_limited=True)
    with pytest.raises(ValueError, match="tried_unknown_worth_after_goal='once' sets the unknown successor's worth"):
        ModelConfig(**limited, tried_unknown_worth_after_goal="once", optimism_horizon_max=20)
    with pytest.raises(ValueError, match="tried_unknown_worth_after_goal must be one of"):
        ModelConfig(**limited, tried_unknown_worth_after_goal="twice")


@pytest.mark.parametrize("rule", [{"spread_bonus_per_episode": None},
                                  {"explore_unknown": "untried_only"}])
def test_tried_unknown_limited_needs_limited_bonuses_and_a_tried_pair_mass(rule):
    config = dict(spread_bonus=0.3, spread_bonus_per_episode=3, explore_unknown="impurity_weighted",
                  tried_unknown_limited=True)
    with pytest.raises(ValueError, match="tried_unknown_limited counts a tried pair's unknown mass"):
        ModelConfig(**{**config, **rule})
    with pytest.raises(ValueError, match="tried_unknown_limited must be true or false"):
        ModelConfig(**{**config, "tried_unknown_limited": 1})


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("explore", ["all_pairs", "untried_only"])
def test_spread_bonus_follows_the_spread_of_successor_values_in_the_exploring_plan(seed, explore):
    """``spread_bonus=c_v``: a tried pair's count bonus gains the spread of its successors' values and the range
    term weighted by the pooled outcome impurity, in the sparse and the batched paths alike; the exploitation
    plan is unchanged."""
    stats, horizon = random_stats(seed)
    model = make_model(seed)
    model.config = dataclasses.replace(model.config, explore_unknown=explore)
    check_exploring_rule(stats, horizon, model, {"spread_bonus": 0.5}, rtol=1e-9)


@pytest.mark.parametrize("terms", ["both", "variance"])
@pytest.mark.parametrize("per_episode", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spread_bonus_per_episode_counts_at_most_n_bonuses_in_the_exploring_plan(seed, per_episode, terms):
    """``spread_bonus_per_episode=n``: the exploring plan is the layered backward induction of the numpy
    reference, in the sparse and the batched paths alike, with the value cap on; with
    ``spread_bonus_limited_terms="variance"`` the range term is counted on every step. The exploitation plan is
    unchanged."""
    stats, horizon = random_stats(seed)
    model = make_model(seed)
    model.config = dataclasses.replace(
        model.config, explore_unknown="untried_only", spread_bonus=0.5, value_cap=True,
        spread_bonus_limited_terms=terms,
    )
    check_exploring_rule(stats, horizon, model, {"spread_bonus_per_episode": per_episode}, rtol=1e-9)


@pytest.mark.parametrize("limited", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_count_bonuses_taken_returns_every_layer_and_where_it_takes_the_bonus(seed, limited):
    """``count_bonuses_taken``: the exploring plan also returns every layer ``Q^j`` of the numpy layered induction
    and where layer ``j`` counts on taking the pair's bonus, on the sparse and the batched paths (padding never
    takes one); its last layer is ``q``, which the key leaves unchanged. Without the key, or in the exploitation
    plan, there are no layers."""
    stats, horizon = random_stats(seed)
    model = make_model(seed)
    model.config = dataclasses.replace(
        model.config, explore_unknown="impurity_weighted", spread_bonus=0.5, value_cap=True,
        spread_bonus_per_episode=2, tried_unknown_limited=limited,
    )
    with torch.no_grad():
        without = model.forward_sparse(stats.sparse(), horizon, optimism=True)
        model.config = dataclasses.replace(model.config, count_bonuses_taken=True)
        capture = HeadCapture(model)
        sparse = model.forward_sparse(stats.sparse(), horizon, optimism=True)
        batched = model(to_batch([(stats, horizon)]), optimism=True)
        exploit = model.forward_sparse(stats.sparse(), horizon, optimism=False)
    assert without.q_by_bonuses_left is None and without.takes_bonus is None
    assert exploit.q_by_bonuses_left is None and exploit.takes_bonus is None
    torch.testing.assert_close(sparse.q, without.q, rtol=0, atol=0)
    c = empirical_mdp(stats)[4]
    layers: list = []
    adjusted_q(stats, capture.last()[0], sparse.reward_scale.item() / c, model, horizon, True,
               explore="impurity_weighted", layers_out=layers)
    expected_q, gain = layers
    clear = np.abs(gain) > 1e-9  # a near tie may round either way
    n_states, n_actions = stats.n_states, stats.n_actions
    for out in (sparse, batched):
        assert out.q_by_bonuses_left is not None and out.takes_bonus is not None
        torch.testing.assert_close(out.q_by_bonuses_left[0, -1], out.q[0], rtol=0, atol=0)
        q = out.q_by_bonuses_left[0, :, :, :n_states, :n_actions].numpy()
        np.testing.assert_allclose(q, expected_q, rtol=1e-9, atol=1e-9)
        takes = out.takes_bonus[0].numpy()
        np.testing.assert_array_equal(takes[:, :, :n_states, :n_actions][clear], (gain > 0)[clear])
        assert not takes[:, :, n_states:].any() and not takes[..., n_actions:].any()
    assert (gain[1:] > 1e-9).any() and (gain[1:] <= 0).any()  # layers that take a bonus and keep one
    # a tie keeps the bonus: with one step to go every layer's values are 0, and an untried pair's bonus is 0
    untried = stats.dense().counts == 0
    assert untried.any() and not sparse.takes_bonus[0, :, 0].numpy()[:, untried].any()


def test_count_bonuses_taken_needs_limited_bonuses():
    with pytest.raises(ValueError, match="count_bonuses_taken counts the episode's limited bonuses"):
        ModelConfig(count_bonuses_taken=True)
    with pytest.raises(ValueError, match="count_bonuses_taken must be true or false"):
        ModelConfig(spread_bonus=0.5, spread_bonus_per_episode=3, count_bonuses_taken=1)


def test_spread_bonus_per_episode_is_worth_less_than_a_bonus_every_step_and_more_than_none():
    """One bonus per episode lies between no spread bonus and a bonus on every step, and more bonuses allowed
    are worth more (on these statistics the plan's largest value grows with ``n``)."""
    stats, horizon = random_stats(0)
    model = make_model(0)
    model.config = dataclasses.replace(model.config, explore_unknown="untried_only", spread_bonus=0.5)

    def largest_value(**rule) -> float:
        model.config = dataclasses.replace(model.config, **rule)
        with torch.no_grad():
            return float(model.forward_sparse(stats.sparse(), horizon, optimism=True).q[0, -1].amax())

    every_step = largest_value(spread_bonus_per_episode=None)
    limited = [largest_value(spread_bonus_per_episode=n) for n in (1, 2, 3)]
    none = largest_value(spread_bonus=0.0, spread_bonus_per_episode=None)
    assert none < limited[0] < limited[1] < limited[2] < every_step


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "1"])
def test_spread_bonus_per_episode_rejects_anything_but_a_positive_int(value):
    with pytest.raises(ValueError, match="spread_bonus_per_episode must be None or a positive int"):
        ModelConfig(spread_bonus=0.3, spread_bonus_per_episode=value)


def test_spread_bonus_per_episode_needs_the_spread_bonus_on():
    with pytest.raises(ValueError, match="spread_bonus_per_episode limits the spread bonus, which is off"):
        ModelConfig(spread_bonus_per_episode=1)


@pytest.mark.parametrize("kappa_raw", [0.4, -4.0])  # kappa scale above 1, and below it (the bound is then 1)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_value_cap_reads_successor_values_capped_at_the_per_step_bound_in_the_exploring_plan(seed, kappa_raw):
    """``value_cap``: every successor value is read at most ``(k - 1) max(1, kappa scale)``, in the sparse and the
    batched paths alike; over a long plan the spread bonus makes the cap bind; the exploitation plan is
    unchanged."""
    stats, _ = random_stats(seed)
    model = make_model(seed)
    with torch.no_grad():
        model.kappa_raw.fill_(kappa_raw)
    model.config = dataclasses.replace(model.config, explore_unknown="untried_only", spread_bonus=0.5)
    check_exploring_rule(stats, 40, model, {"value_cap": True}, rtol=1e-8)


def test_value_cap_keeps_a_long_exploring_plan_finite_and_growing_at_most_linearly():
    """Without the cap the spread bonus compounds over the steps to go: on these statistics (seed 0; on seeds 1-3
    the values only grow quadratically) they overflow before step 1000. With it, ``Q_k`` stays finite and grows
    at most linearly in ``k``."""
    stats, _ = random_stats(0)
    horizon = 3000
    model = make_model(0).float()
    model.config = dataclasses.replace(model.config, explore_unknown="untried_only", spread_bonus=0.5)
    with torch.no_grad():
        uncapped = model.forward_sparse(stats.sparse(), horizon, optimism=True).q[0]
        model.config = dataclasses.replace(model.config, value_cap=True)
        capped = model.forward_sparse(stats.sparse(), horizon, optimism=True).q[0]
    valid = torch.isfinite(uncapped[0])  # invalid actions hold -inf at every step
    assert not torch.isfinite(uncapped[-1][valid]).all()
    assert torch.isfinite(capped[:, valid]).all()
    per_step = capped[:, valid].amax(-1) / torch.arange(1, horizon + 1)
    assert float(per_step[-1]) <= 1.01 * float(per_step[horizon // 2 - 1])


@pytest.mark.parametrize("name", ["value_cap", "stay_unknown_unpaid_only", "stay_unknown_moving_actions_only"])
@pytest.mark.parametrize("value", [1, "true", None])
def test_a_switch_rejects_anything_but_a_bool(value, name):
    with pytest.raises(ValueError, match=f"{name} must be true or false"):
        ModelConfig(**{name: value})


@pytest.mark.parametrize("name", ["spread_bonus", "stay_unknown_pseudo_count"])
@pytest.mark.parametrize("value", [-0.1, float("nan"), True, "1"])
def test_a_bonus_coefficient_rejects_a_value_that_is_not_a_number_at_least_zero(value, name):
    with pytest.raises(ValueError, match=f"{name} must be a number >= 0"):
        ModelConfig(**{name: value})


@pytest.mark.parametrize("name", ["explore_unknown", "stay_unknown_when"])
def test_a_rule_name_is_refused_unless_known(name):
    with pytest.raises(ValueError, match=f"{name} must be one of"):
        ModelConfig(**{name: "none"})


def test_exploit_unknown_rejects_an_unknown_rule_by_name():
    with pytest.raises(ValueError, match="exploit_unknown must be one of"):
        ModelConfig(exploit_unknown="none")
