"""The foundation model: a graph attention network reads the statistics, exact planning gives Q.

Pipeline (DESIGN.md §2): features of every state-action pair -> K weight-tied rounds of attention over the
observed successors (empirical ``log P̂`` as attention bias, plus a learned "unexplored" and a "terminal"
node) and attention pooling of each state's actions -> per-(s, a) heads that adjust the empirical MDP ->
an exact, differentiable finite-horizon value iteration on the adjusted MDP -> ``Q``. Every learned term
is a pseudo-count or a ``1/sqrt(N+1)``-scaled bonus, so the model reduces to plain value iteration on the
empirical MDP as counts grow.

Two execution paths share one set of weights: :meth:`IcrlModel.forward` on dense padded batches (training)
and :meth:`IcrlModel.forward_sparse` on the observed transitions only (inference, cost linear in the
number of observed ``(s, a, s')`` triples). Only the two graph operations differ (:class:`_DenseGraph`,
:class:`_SparseGraph`); everything else is the same code.

The file is longer than most: the network, its two graph back-ends and the planner belong together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from icrl_agent import solvers
from icrl_agent.model_inputs import StatsBatch

HEADS = ("vi", "gat_policy")
SCALE_HEADS = ("gain", "quantile")
SCALE_INPUTS = ("embedding", "embedding_and_features")
ENCODERS = ("gat", "none")
ES_SCOPES = ("constants", "heads")
EXPLOIT_UNTRIED = ("known_mean", "floor")
EXPLOIT_UNKNOWN = ("all_pairs", "untried_only", "non_terminal")
EXPLORE_UNKNOWN = ("all_pairs", "untried_only", "impurity_weighted", "learned_missing_mass")
CEILING_WHEN = ("always", "reward_seen", "terminal_rewards")
UNKNOWN_WORTH_AFTER_GOAL = ("per_step", "once", "once_or_episode_cost", "once_or_goal_or_episode_cost")
SPREAD_LIMITED_TERMS = ("both", "variance")
NEAR_TIE_WHEN = ("always", "terminal_rewards", "no_midway_reward")
STAY_UNKNOWN_WHEN = ("always", "midway_reward")
OPTIMISM_CONSTANTS = ("bonus", "unknown", "kappa", "scale_gain")
"""Natural-unit names of :meth:`IcrlModel.optimism_parameters`, in their order."""
_MAX_LOG_SCALE = 16.0  # unseen rewards up to e^16 ~ 9e6 times those seen: keeps exp() finite
_N_SA, _N_STATE, _N_GLOBAL = 8, 4, 15
_GAP_FLOOR = 1e-3  # temperature floor relative to the reward scale, for states whose actions tie
# stacked successor values [L, B, S] -> (limited spread terms, P̂ V), each [L, B, S, A]
_TermsAndMean = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ModelConfig:
    """Architecture of :class:`IcrlModel` (nothing here depends on the number of states or actions).

    :param d_model: width of every node embedding
    :param n_heads: attention heads; ``d_model`` must be divisible by it
    :param n_rounds: K, the number of weight-tied propagation rounds
    :param head: ``"vi"`` (heads adjust the empirical MDP, exact VI gives Q) or ``"gat_policy"``
        (the paper's pure-GAT policy, an ablation: logits straight from the network)
    :param max_horizon: largest planning horizon accepted (the VI loop runs that many steps)
    :param max_pseudo_count: upper bound of the reward pseudo-count ``w_r``
    :param init_bonus: initial bonus coefficient: bonus = ``c * k * scale / sqrt(N + 1)``, ``c`` this
        value at the head's midpoint
    :param init_unknown_mass: initial pseudo-count ``w`` toward the unknown successor (mass ``w / (N + w)``)
    :param init_kappa: initial worth of the unknown successor, per step to go, in reward scales
    :param min_temperature: floor of the per-state temperature, relative to that state's Q gap
    :param encoder: ``"gat"`` (the graph network reads the statistics) or ``"none"`` (the ablation: every
        embedding is zero, so each head outputs its bias: the same planning skeleton run with constants)
    :param exploit_untried: what an untried pair is worth in the exploitation plan (``optimism=False``):
        ``"known_mean"`` (icrl-v1, v2: its learned prior reward plus the mean value of the known states) or
        ``"floor"`` (that, but at most ``k * min(0, smallest reward seen)`` with ``k`` steps to go: never
        more than plain VI's 0 or a path of the worst reward seen, so data beats no data, as in VI-LCB)
    :param exploit_unknown: which pairs keep their unknown-successor mass in the exploitation plan:
        ``"all_pairs"`` (icrl-v1, v2: mass ``m`` of every pair goes to a successor worth the mean known
        value), ``"untried_only"`` (a tried pair follows ``P̂`` alone, as in plain VI) or ``"non_terminal"``
        (a tried pair's mass ``m`` is taken from its non-terminal outcomes only: with ``"all_pairs"`` an
        episode that ended still goes on with probability ``m``, so a goal that ends episodes pays again,
        values grow with the steps to go, and a long plan prefers loitering to entering the goal)
    :param optimism_horizon: ``None`` (icrl-v1, v2): the unknown successor is worth ``kappa * scale`` per
        step to go at any planning horizon ``H``, so a whole episode of it is worth ``kappa * scale * H``
        and optimism grows with the episode length; an int ``H0``: per step it is worth
        ``kappa * scale * H0 / H``, so a whole episode of it is worth the same at every horizon (kappa is
        then read at ``H = H0``); the bonus is unchanged. While the horizon is a guess (an agent before its
        first episode ends, ``forward_sparse(..., horizon_known=False)``) the worth stays ``kappa * scale``
        per step: a guessed horizon must not make the first episode less optimistic than the later ones
    :param optimism_horizon_max: ``None`` (icrl-v1 to v2.3) or an int ``H1``: planning over ``H > H1`` steps, the
        unknown successor is worth ``kappa * scale * H1 / H`` per step, so a whole episode of it is worth at most
        what it is at ``H1``; at ``H <= H1`` (and while the horizon is a guess) nothing changes. ``H1`` is meant to
        be the longest horizon kappa was tuned on, so a 200-step episode does not make exploring four times more
        worth than the prior's 50-step ones did. Not combined with ``optimism_horizon``
    :param optimism_horizon_max_when: when ``optimism_horizon_max`` applies: ``"always"``, or ``"reward_seen"``
        (only in an MDP where some pair's mean reward is positive: until a first reward is found, the whole
        episode's optimism stays, as a distant reward needs it; once one is found, a long episode explores no more
        than the prior's did), or ``"terminal_rewards"`` (only in an MDP where some pair's mean reward is
        positive and every such pair has ended an episode: the rewards seen look like a goal's, paid once as the
        episode ends, so an unknown state promises one more such reward rather than one per step to go; with
        ``H1 = 1`` a whole episode of the unknown successor is then worth ``kappa * scale``)
    :param explore_unknown: which pairs keep their unknown-successor mass in the exploring plan:
        ``"all_pairs"`` (icrl-v1, v2: a tried pair keeps ``m = w / (N + w)``, worth ``kappa * scale`` per step,
        so a large MDP whose pairs were each tried a few times still lures the agent away from a reward it
        found), ``"untried_only"`` (as optimistic VI: only an untried pair reaches the unknown successor;
        a tried one follows ``P̂`` and keeps its count bonus) or ``"impurity_weighted"`` (a tried pair keeps
        ``rho m``, ``rho`` the MDP's pooled share of visit pairs with different outcomes, see ``spread_bonus``: where
        every move proved deterministic a tried pair hides no outcome, where moves slip one tried once may)
        or ``"learned_missing_mass"`` (a tried pair keeps ``M̂``, the missing-mass head's estimate of the true
        chance that its next try leads to an outcome not yet seen from it; the head is trained supervised on prior
        MDPs, whose true transitions are known, by ``python -m icrl_agent.pretraining missing-mass``; icrl-v2.6 and v2.7)
    :param spread_bonus: ``c_v >= 0``; the exploring plan adds an empirical-Bernstein bonus to a tried pair's
        count bonus: ``c_v f (sqrt(Var_P̂[V_{k-1}] / (N + 1)) + sqrt(rho) range(V_{k-1}) / (N + 1))``, ``f`` the
        per-pair bonus factor ``2 sigmoid(.)``. The first term is the spread of its successors' values (UCB-VI's
        Bernstein bonus): none for a move that always led to one state, or to states worth the same. The second
        covers what a few visits cannot show: ``range`` is the largest minus the smallest state value, and
        ``rho`` the MDP's pooled chance that two visits of a pair had different outcomes, so an MDP whose moves
        all proved deterministic (DeepSea) gives it none, while one where moves slip (Chain) keeps a move tried
        once worth retrying. Both need no reward scale: the values carry it. ``0`` (icrl-v1, v2) leaves it out
    :param spread_bonus_per_episode: ``None`` (icrl-v2.2 to v2.4): every step of the plan counts its pair's
        spread bonus, so on slippery moves an agent can collect it by wandering and reach a goal late; ``n >= 1``:
        at most ``n`` steps of an episode count it. The plan then has ``n + 1`` layers, ``V^j`` with ``j``
        bonuses left: ``Q^j_k = max(b_k(V^{j-1}_{k-1}) + Q_k(V^{j-1}_{k-1}), Q_k(V^j_{k-1}))``, ``Q_k(V)`` the
        backup without the spread bonus and ``b_k(V)`` the bonus read from ``V``; it plays ``Q^n``. Costs
        ``n + 1`` backups per step. Needs ``spread_bonus > 0``; icrl-v2.5 to v2.7 use ``3``
    :param spread_bonus_limited_terms: what ``spread_bonus_per_episode`` limits: ``"both"`` terms of the spread
        bonus, or only the ``"variance"`` term (it fades like ``1 / sqrt(N + 1)``, so it can be collected on
        moves tried many times); the range term, which fades like ``1 / (N + 1)`` and keeps a move tried once or
        twice worth retrying, then counts on every step
    :param tried_unknown_limited: ``False`` (icrl-v1 to v2.5): a tried pair's unknown-successor mass (what
        ``explore_unknown`` leaves it) is part of every step's backup; ``True``: with ``spread_bonus_per_episode``
        ``n``, it becomes a bonus ``M (U_{k-1} - P̂ V_{k-1})``, ``M`` that mass and ``U_{k-1}`` the unknown successor's
        worth, counted among the episode's ``n`` limited bonuses. One retry of a pair whose unseen outcome may pay
        (Chain's forward move that slipped once) keeps its worth; many small masses collected by wandering (long
        or deep MDPs whose pairs were each tried once) are worth at most ``n`` of them. An untried pair keeps its
        mass ``m`` on every step (icrl-v2.6 and v2.7). Needs ``spread_bonus_per_episode`` and an ``explore_unknown`` other than
        ``"untried_only"``
    :param tried_unknown_worth_after_goal: with ``tried_unknown_limited``, the ``U`` of a tried pair's bonus:
        ``"per_step"`` (the unknown successor's worth, as an untried pair reaches it) or ``"once"`` (as
        ``unknown_worth_after_goal="once"``, for this bonus only: where every positive reward seen ended an episode,
        ``kappa * scale (k - 1) / (H - 1)``, one more goal, so after a goal the bonus no longer draws the agent off
        its way on every episode of a long horizon; an untried pair keeps its worth; icrl-v2.6 and v2.7)
    :param value_cap: ``False`` (icrl-v1 to v2.2) or ``True`` (icrl-v2.3 to v2.7): the exploring plan caps every
        successor value at ``V_{k-1} <= (k - 1) max(1, kappa scale)`` (normalized units), the most ``k - 1``
        steps can be worth when each pays at most the largest reward seen or the unknown successor's worth per
        step, as UCB-VI caps its values at ``k r_max``. Without it the spread bonus, proportional to the values
        it reads, compounds over the steps to go: a 500-step plan on FrozenLake8x8 statistics (reward 1 at the
        goal) reaches ``1.7e16`` (float32 then cannot order the actions), and longer ones overflow
    :param unknown_worth_after_goal: ``"per_step"`` (icrl-v1 to v2.3): the unknown successor is worth
        ``kappa * scale`` per step to go, whatever rewards were seen; ``"once"``: in an MDP where some pair's mean
        reward is positive and every such pair has ended an episode (the rewards seen are a goal's, paid once as
        the episode ends), it is worth ``kappa * scale (k - 1) / (H - 1)`` with ``k`` steps to go: one more goal
        when met with the whole episode ahead, less as the episode runs out, not one reward per step. So a long
        episode no longer lures the agent from a goal it found to any unknown state, and reaching the unknown
        sooner still counts. Before any reward, where a reward came without an episode's end, and while the
        horizon is a guess, nothing changes. ``"once_or_episode_cost"``: as ``"once"``, but one more goal is worth
        at least a whole episode of the typical move cost, ``max(kappa * scale, H cost) (k - 1) / (H - 1)``
        (``cost``: minus the mean reward of the tried pairs that never ended an episode, if negative; normalized).
        Where moves cost, a small goal found first then does not stop the walk to a larger one that the costs
        suggest (a 0.01 goal beside the start, 0.001 per move); where they are free it is ``"once"``.
        ``"once_or_goal_or_episode_cost"``: as ``"once_or_episode_cost"``, and one more goal is worth at least the
        largest goal seen, ``G``: per pair that ended an episode with a positive mean reward, its rewards' total over
        its endings (its statistics cannot tell which outcome paid). The normalization unit is the largest
        ``|mean reward| + std`` of a pair, which is below the goal's own reward where the goal is only entered by
        slips; then ``kappa * scale`` can be worth less than the goal seen, and a known slippery route beats the
        untried move into the goal for good. None of them is combined with the horizon rules above; icrl-v2.7 uses
        ``"once_or_episode_cost"``, icrl-v2.8 ``"once_or_goal_or_episode_cost"``
    :param exploit_spread_penalty: ``c_p >= 0``; the exploitation plan subtracts from a tried pair's value
        ``c_p (sqrt(Var_P̂[V_{k-1}]) + sqrt(rho) range(V_{k-1}) / sqrt(N + 1)) / sqrt(N + 1)``, the spread bonus's
        terms with the sign turned (a lower confidence bound, as VI-LCB's, that needs no reward scale): a slippery
        move seen a few times, whose lucky outcomes make it look best, is trusted less. ``0`` (icrl-v1 to v2.3)
        leaves it out; icrl-v2.4 to v2.7 use ``0.1``
    :param explore_near_tie_tolerance: read by the agent, not the plan: exploring actions whose ``Q`` is within
        this share of the plan's largest ``|Q|`` of the best are near ties, and the agent takes the one with the
        highest mean ``Q`` over 1..k steps to go (sooner reward), as its exploitation plan does within 1e-5.
        Undiscounted, with more steps to go than the goal needs, every move that still reaches it is worth about
        the same, and where moves slip "about" is the slips' noise, not float rounding, so the noise picks the way.
        ``0`` (icrl-v1 to v2.7): only exact ties, broken uniformly. Measured and not shipped (docs/pretraining.md,
        "Near ties in the exploring plan"): it gains slippery grids and loses FrozenLake
    :param explore_near_tie_when: ``"always"``, or ``"terminal_rewards"``: only while some pair's mean reward is
        positive and every such pair has ended an episode (the rewards seen are a goal's, so sooner reward means
        the goal sooner; where a reward comes without an episode's end, sooner reward is the small one at hand,
        the trap of RiverSwim-like tasks); ``"no_midway_reward"``: as ``"terminal_rewards"``, and also before any
        positive reward (sooner is then the nearest unknown)
    :param stay_unknown_pseudo_count: ``w_s >= 0``; in the exploring plan, a tried pair whose every try stayed at
        its own state (no other successor, no ending) keeps an unknown mass of at least ``w_s / (N + w_s)``, whatever
        ``explore_unknown`` leaves it (with ``tried_unknown_limited``, as one of the episode's limited bonuses).
        Told nothing, a few tries cannot tell a wall from a rare way out (SixArms' hub, where a learned ``M̂`` reads
        walls). ``0`` (icrl-v1 to v2.8) leaves it out. Measured and not shipped (docs/pretraining.md, "A move that
        only ever stayed put may still leave"): it finds SixArms' rooms and retries the prior's no-ops and walls
    :param stay_unknown_when: ``"always"``, or ``"midway_reward"``: that floor only in an MDP where some pair with a
        positive mean reward never ended an episode (an agent may settle there on a small known source)
    :param stay_unknown_unpaid_only: ``True``: that floor only for stays whose mean reward is at most 0 (a stay that
        paid is a known source, not a closed door)
    :param stay_unknown_moving_actions_only: ``True``: that floor only for an action that did not stay put on some
        try, at some state (an action that stayed put wherever it was tried is a no-op)
    :param stay_unknown_max_tries: ``None``, or ``K >= 1``: that floor only while the pair was tried at most ``K``
        times (after ``K`` quiet tries a stay is taken for a wall)
    :param count_bonuses_taken: ``False`` (icrl-v2.5 to v2.8): the agent reads ``Q^n``, the plan with every limited
        bonus left, at every step, so a bonus it just took is on offer again at the next step (and a plan remade
        mid-episode starts with all ``n``). ``True``: the plan also returns every layer ``Q^j`` and where taking the
        pair's bonus is what ``Q^j`` counts on (:attr:`ModelOutput.q_by_bonuses_left`,
        :attr:`ModelOutput.takes_bonus`); the agent keeps, per stream of episodes, how many bonuses are left, acts
        on that layer, and takes one off when it takes a pair whose bonus its layer counted on. So an episode
        collects at most ``n`` limited bonuses, as the plan assumes. Needs ``spread_bonus_per_episode``; the
        pretraining rollouts still read ``Q^n``
    :param scale_head: how the reward-scale estimate (in units of the largest reward seen) is made:
        ``"gain"`` (icrl-v1) ``1 + gain * softplus(linear(g))``; ``"quantile"`` ``exp(gain * softplus(mlp(g)))``,
        the MLP trained on a quantile of ``log(largest |R| / largest seen)`` (see
        :func:`icrl_agent.pretraining.train.scale_loss`); ``gain`` is the stage-2 constant ``log_scale_gain``
    :param scale_inputs: what the scale head reads: ``"embedding"`` (the global embedding ``g``) or
        ``"embedding_and_features"`` (``g`` and the global input features beside it: reward sizes met, the
        share of pairs tried, counts, horizon; the raw statistics, before three rounds of attention mix them)
    """

    d_model: int = 64
    n_heads: int = 4
    n_rounds: int = 6
    head: str = "vi"
    max_horizon: int = 10_000
    max_pseudo_count: float = 10.0
    init_bonus: float = 0.01
    init_unknown_mass: float = 1.0
    init_kappa: float = 1.0
    min_temperature: float = 0.01
    scale_head: str = "gain"
    scale_inputs: str = "embedding"
    encoder: str = "gat"
    exploit_untried: str = "known_mean"
    exploit_unknown: str = "all_pairs"
    optimism_horizon: int | None = None
    optimism_horizon_max: int | None = None
    optimism_horizon_max_when: str = "always"
    explore_unknown: str = "all_pairs"
    spread_bonus: float = 0.0
    spread_bonus_per_episode: int | None = None
    spread_bonus_limited_terms: str = "both"
    tried_unknown_limited: bool = False
    tried_unknown_worth_after_goal: str = "per_step"
    value_cap: bool = False
    unknown_worth_after_goal: str = "per_step"
    exploit_spread_penalty: float = 0.0
    explore_near_tie_tolerance: float = 0.0
    explore_near_tie_when: str = "always"
    stay_unknown_pseudo_count: float = 0.0
    stay_unknown_when: str = "always"
    stay_unknown_unpaid_only: bool = False
    stay_unknown_moving_actions_only: bool = False
    stay_unknown_max_tries: int | None = None
    count_bonuses_taken: bool = False

    def __post_init__(self) -> None:
        for name in ("optimism_horizon", "optimism_horizon_max", "spread_bonus_per_episode", "stay_unknown_max_tries"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"ModelConfig.{name} must be None or a positive int, got {value!r}")
        for name in ("d_model", "n_heads", "n_rounds", "max_horizon"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"ModelConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        choices = {
            "head": HEADS, "exploit_untried": EXPLOIT_UNTRIED, "exploit_unknown": EXPLOIT_UNKNOWN,
            "explore_unknown": EXPLORE_UNKNOWN, "encoder": ENCODERS, "scale_head": SCALE_HEADS,
            "scale_inputs": SCALE_INPUTS, "optimism_horizon_max_when": CEILING_WHEN,
            "unknown_worth_after_goal": UNKNOWN_WORTH_AFTER_GOAL, "spread_bonus_limited_terms": SPREAD_LIMITED_TERMS,
            "tried_unknown_worth_after_goal": UNKNOWN_WORTH_AFTER_GOAL, "explore_near_tie_when": NEAR_TIE_WHEN,
            "stay_unknown_when": STAY_UNKNOWN_WHEN,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("spread_bonus", "exploit_spread_penalty", "stay_unknown_pseudo_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"ModelConfig.{name} must be a number >= 0, got {value!r}")
        tolerance = self.explore_near_tie_tolerance
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
            raise ValueError(f"ModelConfig.explore_near_tie_tolerance must be a number in [0, 1), got {tolerance!r}")
        for name in (
            "value_cap", "tried_unknown_limited", "stay_unknown_unpaid_only", "stay_unknown_moving_actions_only",
            "count_bonuses_taken",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelConfig.{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("max_pseudo_count", "init_bonus", "init_unknown_mass", "init_kappa", "min_temperature"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"ModelConfig.{name} must be a number > 0, got {value!r}")
        self._check_rule_combinations()

    def _check_rule_combinations(self) -> None:
        """Refuse planning rules that cannot be set together."""
        for name in ("unknown_worth_after_goal", "tried_unknown_worth_after_goal"):
            if getattr(self, name) != "per_step" and (
                self.optimism_horizon is not None or self.optimism_horizon_max is not None
            ):
                raise ValueError(
                    f"ModelConfig.{name}={getattr(self, name)!r} sets the unknown successor's worth after a goal itself: "
                    "leave optimism_horizon and optimism_horizon_max at None"
                )
        if self.tried_unknown_worth_after_goal != "per_step" and not self.tried_unknown_limited:
            raise ValueError(
                "ModelConfig.tried_unknown_worth_after_goal sets the worth in a tried pair's limited bonus: set "
                "tried_unknown_limited true, or leave it at 'per_step'"
            )
        if self.optimism_horizon is not None and self.optimism_horizon_max is not None:
            raise ValueError(
                "ModelConfig.optimism_horizon and optimism_horizon_max are two rules for the same worth: set one"
            )
        if self.spread_bonus_per_episode is not None and not self.spread_bonus > 0:
            raise ValueError(
                "ModelConfig.spread_bonus_per_episode limits the spread bonus, which is off: set spread_bonus > 0 "
                "or leave spread_bonus_per_episode at None"
            )
        if self.tried_unknown_limited and (
            self.spread_bonus_per_episode is None or self.explore_unknown == "untried_only"
        ):
            raise ValueError(
                "ModelConfig.tried_unknown_limited counts a tried pair's unknown mass among the episode's limited "
                "bonuses: set spread_bonus_per_episode and an explore_unknown other than 'untried_only', or leave it "
                "false"
            )

        if self.count_bonuses_taken and self.spread_bonus_per_episode is None:
            raise ValueError(
                "ModelConfig.count_bonuses_taken counts the episode's limited bonuses, and there are none: set "
                "spread_bonus_per_episode, or leave it false"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from a plain dict, rejecting unknown keys by name.

        :param data: field names to values (missing fields keep their defaults)
        :return: the validated config
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


@dataclass
class ModelOutput:
    """What the model says about a batch of MDPs.

    :param q: ``[B, Hmax, S, A]`` in the units of the input rewards; ``q[:, k-1]`` is Q with ``k`` steps
        to go (meaningful for ``k <= horizon[b]``); 0 on invalid actions and padded states
    :param temperature: ``[B, S]`` > 0, per-state softmax temperature in the units of ``q``
    :param reward_scale: ``[B]`` the model's estimate of how large rewards may be, in input units
    :param state_mask: ``[B, S]`` the real states
    :param action_mask: ``[B, A]`` the real actions
    :param q_by_bonuses_left: with :attr:`ModelConfig.count_bonuses_taken` (exploring plan only), ``[B, n + 1,
        Hmax, S, A]``: ``[:, j]`` is the plan with ``j`` limited bonuses left (``[:, n]`` is ``q``); else ``None``
    :param takes_bonus: bool, shaped as ``q_by_bonuses_left``: the plan with ``j`` left counts on taking the
        pair's bonus (its successors then have ``j - 1`` left); never with ``j = 0``
    """

    q: torch.Tensor
    temperature: torch.Tensor
    reward_scale: torch.Tensor
    state_mask: torch.Tensor
    action_mask: torch.Tensor
    q_by_bonuses_left: torch.Tensor | None = None
    takes_bonus: torch.Tensor | None = None

    def logits(self, steps_to_go: torch.Tensor | int) -> torch.Tensor:
        """Policy logits ``q[b, k_b - 1] / temperature``, ``-inf`` on invalid actions.

        :param steps_to_go: ``k`` per MDP, long ``[B]`` (or one int for all), ``1 <= k <= Hmax``
        :return: ``[B, S, A]`` (padded states get 0 on every valid action)
        """
        batch, horizon = self.q.shape[0], self.q.shape[1]
        k = torch.as_tensor(steps_to_go, device=self.q.device).long().expand(batch)
        if bool(((k < 1) | (k > horizon)).any()):
            raise ValueError(f"steps_to_go must be in [1, {horizon}], got {k.tolist()}")
        q_k = self.q[torch.arange(batch, device=self.q.device), k - 1]
        out = q_k / self.temperature.unsqueeze(-1)
        return out.masked_fill(~self.action_mask[:, None, :], float("-inf"))


class SparseStatsLike(Protocol):
    """What :meth:`IcrlModel.forward_sparse` reads (``icrl_agent.stats.SparseStats`` fits), read-only."""

    @property
    def counts(self) -> np.ndarray: ...

    @property
    def reward_mean(self) -> np.ndarray: ...

    @property
    def reward_var(self) -> np.ndarray: ...

    @property
    def terminal_counts(self) -> np.ndarray: ...

    @property
    def initial_counts(self) -> np.ndarray: ...

    @property
    def src(self) -> np.ndarray: ...

    @property
    def dst(self) -> np.ndarray: ...

    @property
    def count(self) -> np.ndarray: ...


class _DenseGraph:
    """Successor operations on padded transition counts ``[B, S, A, S]``.

    Attention keys are the ``S`` states followed by the two extra nodes (unexplored, terminal); the
    attention bias ``[B, S*A, S+2]`` is fixed for a forward pass and built once.
    """

    def __init__(self, transitions: torch.Tensor, counts: torch.Tensor) -> None:
        batch, n_states, n_actions, _ = transitions.shape
        observed = transitions > 0
        p_hat = transitions / counts.clamp_min(1.0).unsqueeze(-1)  # (B, S, A, S), terminal mass left out
        self.transitions = solvers.DenseTransitions(p_hat)
        bias = torch.log(transitions.clamp_min(1e-30) / (counts + 1.0).unsqueeze(-1))
        self.edge_bias = bias.masked_fill(~observed, float("-inf"))
        self.n_succ = observed.sum(-1).to(counts.dtype)
        self._successor_counts = transitions  # kept for squared_counts (the spread bonus), not copied
        self.shape = (batch, n_states, n_actions)
        self.bias: torch.Tensor | None = None

    def attach_extra_bias(self, extra_bias: torch.Tensor) -> None:
        """Complete the attention bias with the extra nodes' ``[B, S, A, 2]``."""
        self.bias = torch.cat([self.edge_bias, extra_bias], -1).flatten(1, 2).unsqueeze(1)

    def successor_mean(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_s' P̂(s'|s,a) x[s']`` (terminal mass contributes 0), ``[B, S] -> [B, S, A]``."""
        return self.transitions.expect(x)

    def squared_counts(self) -> torch.Tensor:
        """``sum_s' n(s, a, s')^2`` per pair, ``[B, S, A]``: built only when a plan asks for it."""
        return (self._successor_counts * self._successor_counts).sum(-1)

    def self_loop_counts(self) -> torch.Tensor:
        """``n(s, a, s)`` per pair, ``[B, S, A]``: the tries that stayed put."""
        return self._successor_counts.diagonal(dim1=1, dim2=3).transpose(1, 2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of every (s,a) over its successors and the extra nodes.

        :param q: ``[B, S*A, h, dh]``; ``k``, ``v``: ``[B, S+2, h, dh]``
        :return: ``[B, S*A, h, dh]``
        """
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=self.bias
        )
        return out.transpose(1, 2)


class _SparseGraph:
    """The same operations on COO edges ``src = s * A + a -> dst`` of one MDP (cost linear in edges).

    Every (s,a) also gets two edges to the extra nodes ``S`` (unexplored) and ``S + 1`` (terminal).
    """

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, count: torch.Tensor, counts: torch.Tensor):
        n_states, n_actions = counts.shape[1], counts.shape[2]
        n_sa = counts.reshape(-1)
        self.src, self.dst = src, dst
        self.transitions = solvers.SparseTransitions(src, dst, count / n_sa[src].clamp_min(1.0), n_states, n_actions)
        self.edge_bias = torch.log(count / (n_sa[src] + 1.0))
        self.n_succ = torch.zeros_like(n_sa).index_add_(0, src, torch.ones_like(count)).view(counts.shape)
        self._count, self._counts = count, counts  # kept for squared_counts (the spread bonus), not copied
        self.shape = (1, n_states, n_actions)
        self.att_src = self.att_dst = src.new_empty(0)  # completed by attach_extra_bias
        self.bias = count.new_empty(0)

    def attach_extra_bias(self, extra_bias: torch.Tensor) -> None:
        n_states, n_sa = self.shape[1], self.shape[1] * self.shape[2]
        pairs = torch.arange(n_sa, device=self.src.device)
        extra = extra_bias.reshape(n_sa, 2)
        self.att_src = torch.cat([self.src, pairs, pairs])
        self.att_dst = torch.cat(
            [self.dst, torch.full_like(pairs, n_states), torch.full_like(pairs, n_states + 1)]
        )
        self.bias = torch.cat([self.edge_bias, extra[:, 0], extra[:, 1]])

    def successor_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.transitions.expect(x)

    def squared_counts(self) -> torch.Tensor:
        n_sa = self._counts.reshape(-1)
        return torch.zeros_like(n_sa).index_add_(0, self.src, self._count * self._count).view(self._counts.shape)

    def self_loop_counts(self) -> torch.Tensor:
        n_sa = self._counts.reshape(-1)
        stays = (self.dst == self.src // self.shape[2]).to(self._count.dtype)
        return torch.zeros_like(n_sa).index_add_(0, self.src, self._count * stays).view(self._counts.shape)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = q[0], k[0], v[0]
        src, dst = self.att_src, self.att_dst
        logits = (q[src] * k[dst]).sum(-1) / math.sqrt(q.shape[-1]) + self.bias.unsqueeze(-1)  # [E, h]
        # segment softmax over each (s,a)'s edges; the max only keeps exp() in range
        index = src.unsqueeze(-1).expand_as(logits)
        top = torch.full(q.shape[:2], float("-inf"), dtype=q.dtype, device=q.device)
        top = top.scatter_reduce(0, index, logits.detach(), reduce="amax", include_self=True)
        weight = torch.exp(logits - top[src])
        denom = torch.zeros_like(top).index_add_(0, src, weight)
        out = torch.zeros_like(q).index_add_(0, src, weight.unsqueeze(-1) * v[dst])
        return (out / denom.unsqueeze(-1)).unsqueeze(0)


_Graph = _DenseGraph | _SparseGraph


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Mean of ``x`` over ``dims`` where ``mask`` (broadcastable, trailing feature dims kept)."""
    mask = mask.to(x.dtype)
    while mask.dim() < x.dim():
        mask = mask.unsqueeze(-1)
    return (x * mask).sum(dims) / mask.sum(dims).clamp_min(1.0)


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


@dataclass
class _Inputs:
    """Model inputs on one dtype/device, plus the derived features (all in normalized reward units)."""

    counts: torch.Tensor
    reward_norm: torch.Tensor  # empirical mean reward / reward normalizer c
    state_mask: torch.Tensor
    action_mask: torch.Tensor
    sa_mask: torch.Tensor
    horizon: torch.Tensor
    c: torch.Tensor  # [B] largest |reward| seen (|mean| + std over visited pairs), 1 if none
    terminal_counts: torch.Tensor
    # False while the horizon is a guess (no episode has ended): see ModelConfig.optimism_horizon
    horizon_known: bool = True
    # filled by _features: [B, S, A, _N_SA], [B, S, _N_STATE], [B, _N_GLOBAL]
    sa_feats: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    state_feats: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    global_feats: torch.Tensor = field(default_factory=lambda: torch.empty(0))


def _features(inp: _Inputs, reward_var: torch.Tensor, initial: torch.Tensor, graph: _Graph) -> None:
    """Fill the per-(s,a), per-state and global features (scale-free: rewards divided by ``c``)."""
    n, sa_mask = inp.counts, inp.sa_mask
    visited = (n > 0) & sa_mask
    std = reward_var.clamp_min(0.0).sqrt() / inp.c[:, None, None]
    r = inp.reward_norm
    n_state = (n * sa_mask).sum(-1)
    novelty = graph.successor_mean(torch.rsqrt(n_state + 1.0))
    inp.sa_feats = torch.stack(
        [
            torch.log1p(n),
            torch.rsqrt(n + 1.0),
            visited.to(n.dtype),
            r,
            std,
            inp.terminal_counts / n.clamp_min(1.0),
            novelty,
            torch.log1p(graph.n_succ),
        ],
        dim=-1,
    )
    n_valid_actions = inp.action_mask.sum(-1, keepdim=True).to(n.dtype)
    inp.state_feats = torch.stack(
        [
            torch.log1p(n_state),
            (initial > 0).to(n.dtype),
            initial / initial.sum(-1, keepdim=True).clamp_min(1.0),
            visited.sum(-1) / n_valid_actions,
        ],
        dim=-1,
    )
    inp.global_feats = _global_features(inp, visited, initial, n_valid_actions.squeeze(-1))


def _global_features(
    inp: _Inputs, visited: torch.Tensor, initial: torch.Tensor, n_actions: torch.Tensor
) -> torch.Tensor:
    n, r, dtype = inp.counts, inp.reward_norm, inp.counts.dtype
    n_vis = visited.sum((1, 2)).to(dtype)
    n_pairs = inp.sa_mask.sum((1, 2)).to(dtype)
    mag = r.abs()
    bins = [mag <= 1e-8, (mag > 1e-8) & (mag <= 0.05), (mag > 0.05) & (mag <= 0.3), mag > 0.3]
    # a coarse histogram of reward magnitudes: how many distinct sizes of reward were met
    hist = [(b & visited).sum((1, 2)).to(dtype) / n_vis.clamp_min(1.0) for b in bins]
    big = torch.finfo(dtype).max
    r_min = r.masked_fill(~visited, big).amin((1, 2)).where(n_vis > 0, torch.zeros_like(n_vis))
    r_max = r.masked_fill(~visited, -big).amax((1, 2)).where(n_vis > 0, torch.zeros_like(n_vis))
    per_pair = [
        (r * visited).sum((1, 2)) / n_vis.clamp_min(1.0),
        ((inp.terminal_counts > 0) & visited).sum((1, 2)).to(dtype) / n_vis.clamp_min(1.0),
        ((r < 0) & visited).sum((1, 2)).to(dtype) / n_vis.clamp_min(1.0),
    ]
    return torch.stack(
        [
            torch.log(inp.horizon.to(dtype)),
            torch.log1p((n * inp.sa_mask).sum((1, 2))),
            n_vis / n_pairs,
            torch.log(inp.state_mask.sum(-1).to(dtype)),
            torch.log(n_actions),
            *hist,
            r_min,
            r_max,
            *per_pair,
            torch.log1p(initial.sum(-1)),
        ],
        dim=-1,
    )


class _Round(nn.Module):
    """One weight-tied propagation round: successor attention, action pooling, global feedback."""

    def __init__(self, d: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d // n_heads
        self.query = nn.Linear(d, d)
        self.key_value = nn.Linear(d, 2 * d)
        self.extra_nodes = nn.Parameter(0.1 * torch.randn(2, d))  # the "unexplored" and "terminal" nodes
        self.extra_context = nn.Linear(d, 2 * d)
        # the (s,a) update's first layer, split so state and global context are added once per state
        self.sa_in = nn.Linear(2 * d, d)
        self.sa_context = nn.Linear(2 * d, d, bias=False)
        self.sa_out = nn.Linear(d, d)
        self.pool_score = nn.Linear(d, n_heads)
        self.state_update = _mlp(3 * d, d, d)
        self.global_update = _mlp(3 * d, d, d)
        self.norms = nn.ModuleList([nn.LayerNorm(d) for _ in range(3)])

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:-1], self.n_heads, self.d_head)

    def forward(
        self, h_sa: torch.Tensor, h_s: torch.Tensor, g: torch.Tensor, graph: _Graph, inp: _Inputs
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, n_states, n_actions, d = h_sa.shape
        extra = self.extra_nodes + self.extra_context(g).view(batch, 2, d)
        k, v = self.key_value(torch.cat([h_s, extra], 1)).chunk(2, dim=-1)
        q = self._heads(self.query(h_sa).view(batch, n_states * n_actions, d))
        msg = graph.attend(q, self._heads(k), self._heads(v)).reshape(batch, n_states, n_actions, d)
        g_s = g[:, None].expand(-1, n_states, -1)
        context = self.sa_context(torch.cat([h_s, g_s], -1)).unsqueeze(2)
        h_sa = self.norms[0](h_sa + self.sa_out(F.gelu(self.sa_in(torch.cat([h_sa, msg], -1)) + context)))
        score = self.pool_score(h_sa).masked_fill(~inp.action_mask[:, None, :, None], float("-inf"))
        # each head pools its own slice of h_sa (a value projection would be absorbed by state_update)
        pooled = torch.einsum("bsah,bsahd->bshd", score.softmax(2), self._heads(h_sa))
        h_s = self.norms[1](
            h_s + self.state_update(torch.cat([h_s, pooled.reshape(batch, n_states, d), g_s], -1))
        )
        pooled_g = [_masked_mean(h_s, inp.state_mask, (1,)), _masked_mean(h_sa, inp.sa_mask, (1, 2))]
        g = self.norms[2](g + self.global_update(torch.cat([g, *pooled_g], -1)))
        return h_sa, h_s, g


class IcrlModel(nn.Module):
    """The in-context RL foundation model (see the module docstring).

    Scale-free: rewards are divided by ``c``, the largest ``|mean reward| + std`` over the visited pairs of
    each MDP (1 if none was nonzero), and Q, temperature and reward scale are multiplied back by ``c``.
    The adjusted MDP, per (s, a) with ``N`` visits and ``k`` steps to go (normalized units):

    - reward ``(N r̂ + w_r r0) / (N + w_r)``, ``0 <= w_r <= max_pseudo_count``, prior ``r0`` in [-1, 1];
    - bonus ``c_b k scale / sqrt(N + 1)`` (optimism only), ``c_b <= 2 exp(log_bonus_gain)``; with
      ``config.spread_bonus`` ``c_v > 0``, plus ``c_v f (sqrt(Var_P̂[V_{k-1}] / (N + 1)) + sqrt(rho) range / (N + 1))``
      on a tried pair (see :class:`ModelConfig`); with ``config.value_cap`` the exploring plan reads every
      successor value capped at ``(k - 1) max(1, kappa scale)``;
    - a mass ``m = w / (N + w)`` goes to an unknown successor worth ``kappa scale (k - 1)`` (optimism) or
      the mean value of the known states (exploitation); the rest follows ``P̂``; terminal mass is worth 0;
    - ``scale >= 1`` the per-MDP estimate of how large unseen rewards may be;
    - with ``config.exploit_untried="floor"``, the exploitation plan values an untried pair at most
      ``k min(0, smallest normalized reward seen)`` (no higher than plain VI or VI-LCB would);
    - with ``config.explore_unknown="untried_only"``, the exploring plan gives only untried pairs the mass ``m``
      (as optimistic VI does); a tried pair follows ``P̂`` plus its bonus; with ``"impurity_weighted"`` a tried
      pair keeps ``rho m``, ``rho`` the MDP's share of visit pairs with different outcomes;
    - with ``config.exploit_unknown="non_terminal"`` (icrl-v2.1), the exploitation plan takes a tried pair's
      unknown mass from its non-terminal outcomes only (``"untried_only"``: a tried pair gets none).

    Every correction vanishes as ``N`` grows, so Q tends to plain VI on the empirical MDP.

    :param config: the architecture
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.embed_sa = _mlp(_N_SA + _N_STATE + _N_GLOBAL, d, d)
        self.embed_state = _mlp(_N_STATE + _N_GLOBAL, d, d)
        self.embed_global = _mlp(_N_GLOBAL, d, d)
        self.round = _Round(d, config.n_heads)
        d_scale = d + (_N_GLOBAL if config.scale_inputs == "embedding_and_features" else 0)
        self.scale_head = nn.Linear(d_scale, 1) if config.scale_head == "gain" else _mlp(d_scale, d, 1)
        if config.head == "vi":
            self.sa_head = _mlp(3 * d, d, 4)  # reward pseudo-count, prior reward, bonus, unknown mass
            self.temperature_head = nn.Linear(2 * d, 1)
            self.log_bonus_gain = nn.Parameter(torch.tensor(math.log(config.init_bonus)))
            self.log_unknown_gain = nn.Parameter(torch.tensor(math.log(config.init_unknown_mass)))
            self.kappa_raw = nn.Parameter(torch.tensor(_softplus_inverse(config.init_kappa)))
            self.log_scale_gain = nn.Parameter(torch.tensor(0.0))
            self._init_sa_head()
            if config.explore_unknown == "learned_missing_mass":
                self.missing_mass_head = nn.Linear(3 * d + _N_MISSING, 1)
        else:
            self.policy_head = _mlp(3 * d, d, 1)

    def _init_sa_head(self) -> None:
        last = cast(nn.Linear, self.sa_head[-1])
        with torch.no_grad():
            last.weight.mul_(0.1)
            # start near w_r = 1 pseudo-count (half the cap if that is lower), the other terms at their midpoints
            cap = self.config.max_pseudo_count
            start = min(1.0, cap / 2)
            last.bias.copy_(torch.tensor([math.log(start / (cap - start)), 0.0, 0.0, 0.0]))

    def optimism_parameters(self) -> list[nn.Parameter]:
        """The few global constants stage-2 evolution strategies tune (empty for ``head="gat_policy"``).

        :return: ``[log_bonus_gain, log_unknown_gain, kappa_raw, log_scale_gain]``
        """
        if self.config.head != "vi":
            return []
        return [self.log_bonus_gain, self.log_unknown_gain, self.kappa_raw, self.log_scale_gain]

    def es_parameters(self, scope: str = "constants") -> list[nn.Parameter]:
        """What stage-2 evolution strategies move.

        :param scope: ``"constants"``: :meth:`optimism_parameters` only (icrl-v1); ``"heads"``: also the
            last layers of the per-(s, a) head (pseudo-count, prior reward, bonus, unknown mass) and of the
            reward-scale head, so the optimism depends on the context (about 170 numbers at d_model 32).
            With ``encoder="none"`` those layers see zero embeddings, so only their biases are moved.
        :return: the parameters, in a fixed order
        """
        if scope not in ES_SCOPES:
            raise ValueError(f"unknown ES scope {scope!r}; expected one of {ES_SCOPES}")
        params = self.optimism_parameters()
        if scope == "heads" and params:
            layers = [cast(nn.Linear, self.sa_head[-1]), cast(nn.Linear, _last_linear(self.scale_head))]
            for layer in layers:
                weights = [layer.bias] if self.config.encoder == "none" else [layer.weight, layer.bias]
                params += cast(list[nn.Parameter], weights)
        return params

    def optimism_constants(self) -> dict[str, float]:
        """The four optimism constants in natural units, keyed by :data:`OPTIMISM_CONSTANTS`: the bonus and
        unknown-mass gains, kappa, and the scale gain (``exp`` of the log gains, ``softplus`` of kappa's raw value).

        :return: ``{"bonus", "unknown", "kappa", "scale_gain"}``; empty for ``head="gat_policy"``
        """
        values = [float(p.detach()) for p in self.optimism_parameters()]
        if not values:
            return {}
        log_bonus, log_unknown, kappa_raw, log_scale = values
        kappa = float(F.softplus(torch.tensor(kappa_raw, dtype=torch.float64)))
        return {"bonus": math.exp(log_bonus), "unknown": math.exp(log_unknown), "kappa": kappa,
                "scale_gain": math.exp(log_scale)}

    def set_optimism_constants(self, values: dict[str, float]) -> None:
        """Set some of the optimism constants, given in natural units (see :meth:`optimism_constants`).

        :param values: new values (> 0) keyed by names in :data:`OPTIMISM_CONSTANTS`
        :raises ValueError: an unknown name, a value that is not > 0, or a model without the constants
        """
        unknown = sorted(set(values) - set(OPTIMISM_CONSTANTS))
        if unknown:
            raise ValueError(f"unknown optimism constants {unknown}; known: {list(OPTIMISM_CONSTANTS)}")
        params = dict(zip(OPTIMISM_CONSTANTS, self.optimism_parameters(), strict=False))
        if values and not params:
            raise ValueError(f"a head={self.config.head!r} model has no optimism constants to set")
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"optimism constant {name} must be a number > 0, got {value!r}")
        with torch.no_grad():
            for name, value in values.items():
                raw = _softplus_inverse(float(value)) if name == "kappa" else math.log(value)
                params[name].fill_(raw)

    def forward(self, batch: StatsBatch, optimism: bool = True, corrections: bool = True) -> ModelOutput:
        """Q, temperatures and reward scale for a dense padded batch.

        :param batch: statistics of ``B`` MDPs (float tensors are cast to the model's dtype)
        :param optimism: False gives the exploitation model: no bonus, and the unknown successor is
            worth the mean value of the known states instead of ``kappa * steps * scale``
        :param corrections: False switches every learned correction off (``w_r = w = 0``, no bonus): the
            in-model VI is then plain VI on the empirical MDP (a reference and a test hook)
        :return: the :class:`ModelOutput`
        """
        inp, graph = self._dense_inputs(batch)
        return self._run(inp, graph, optimism, corrections)

    def reward_scale(self, batch: StatsBatch) -> torch.Tensor:
        """The reward-scale estimate alone, equal to ``forward(batch).reward_scale`` without the planning.

        The encoder runs without gradient (``g`` is detached), so only the scale head (and
        ``log_scale_gain``) can learn from a loss on it: what the pretraining scale stage trains.

        :param batch: statistics of ``B`` MDPs, as for :meth:`forward`
        :return: ``[B]`` in the units of the input rewards
        """
        inp, graph = self._dense_inputs(batch)
        with torch.no_grad():
            _, _, g = self._encode(inp, graph)
        return self._scale(g, inp) * inp.c

    def _dense_inputs(self, batch: StatsBatch) -> tuple[_Inputs, _DenseGraph]:
        self._check_batch(batch)
        dtype, device = self._dtype_device()
        f = {
            name: getattr(batch, name).to(device=device, dtype=dtype)
            for name in (
                "counts",
                "reward_mean",
                "reward_var",
                "transitions",
                "terminal_counts",
                "initial_counts",
            )
        }
        state_mask, action_mask = batch.state_mask.to(device).bool(), batch.action_mask.to(device).bool()
        # whatever padded slots hold, they must not reach the real ones
        sa_mask = (state_mask.unsqueeze(-1) & action_mask.unsqueeze(1)).to(dtype)
        f["counts"] = f["counts"] * sa_mask
        f["transitions"] = f["transitions"] * sa_mask.unsqueeze(-1) * state_mask[:, None, None, :].to(dtype)
        graph = _DenseGraph(f["transitions"], f["counts"])
        return self._inputs(f, state_mask, action_mask, batch.horizon.to(device).long(), graph), graph

    def forward_sparse(
        self,
        stats: SparseStatsLike,
        horizon: int,
        optimism: bool = True,
        corrections: bool = True,
        horizon_known: bool = True,
    ) -> ModelOutput:
        """The same model on one MDP's observed transitions only (B = 1, every state and action real).

        :param stats: arrays ``counts, reward_mean, reward_var, terminal_counts`` ``[S, A]``,
            ``initial_counts`` ``[S]`` and COO edges ``src`` (= ``s * A + a``), ``dst``, ``count``
        :param horizon: planning horizon (>= 1)
        :param optimism: as in :meth:`forward`
        :param corrections: as in :meth:`forward`
        :param horizon_known: False when ``horizon`` is a guess (no episode has ended and no hint was
            given): horizon-aware optimism (:attr:`ModelConfig.optimism_horizon`) then keeps the unknown
            successor's per-step worth at ``kappa * scale``, as if the horizon were ``optimism_horizon``
        :return: the :class:`ModelOutput` with ``B = 1``
        """
        dtype, device = self._dtype_device()
        f = {
            name: torch.tensor(np.asarray(getattr(stats, name)), dtype=dtype, device=device).unsqueeze(0)
            for name in ("counts", "reward_mean", "reward_var", "terminal_counts", "initial_counts")
        }
        if f["counts"].dim() != 3 or f["counts"].shape[1] < 1 or f["counts"].shape[2] < 1:
            raise ValueError(
                f"stats.counts must be [S, A] with S, A >= 1, got {tuple(f['counts'].shape[1:])}"
            )
        _, n_states, n_actions = f["counts"].shape
        src, dst, count = _coalesce_edges(stats, n_states, n_actions, dtype, device)
        graph = _SparseGraph(src, dst, count, f["counts"])
        state_mask = torch.ones(1, n_states, dtype=torch.bool, device=device)
        action_mask = torch.ones(1, n_actions, dtype=torch.bool, device=device)
        horizon_t = torch.tensor([int(horizon)], device=device)
        self._check_horizon(horizon_t)
        inp = self._inputs(f, state_mask, action_mask, horizon_t, graph)
        inp.horizon_known = bool(horizon_known)
        return self._run(inp, graph, optimism, corrections)

    def _dtype_device(self) -> tuple[torch.dtype, torch.device]:
        p = next(self.parameters())
        return p.dtype, p.device

    def _check_horizon(self, horizon: torch.Tensor) -> None:
        low, high = int(horizon.min()), int(horizon.max())
        if low < 1 or high > self.config.max_horizon:
            raise ValueError(
                f"horizons must be in [1, {self.config.max_horizon}] (ModelConfig.max_horizon), got "
                f"{low}..{high}; pass the episode length, or raise max_horizon"
            )

    def _check_batch(self, batch: StatsBatch) -> None:
        b, s, a = batch.counts.shape
        expected = {
            "reward_mean": (b, s, a),
            "reward_var": (b, s, a),
            "transitions": (b, s, a, s),
            "terminal_counts": (b, s, a),
            "initial_counts": (b, s),
            "state_mask": (b, s),
            "action_mask": (b, a),
            "horizon": (b,),
        }
        for name, shape in expected.items():
            if tuple(getattr(batch, name).shape) != shape:
                raise ValueError(
                    f"StatsBatch.{name} has shape {tuple(getattr(batch, name).shape)}, expected {shape}"
                )
        if not bool(batch.action_mask.any(-1).all()) or not bool(batch.state_mask.any(-1).all()):
            raise ValueError("every MDP in a StatsBatch needs at least one real state and one real action")
        self._check_horizon(batch.horizon)

    def _inputs(
        self,
        f: dict[str, torch.Tensor],
        state_mask: torch.Tensor,
        action_mask: torch.Tensor,
        horizon: torch.Tensor,
        graph: _Graph,
    ) -> _Inputs:
        sa_mask = state_mask.unsqueeze(-1) & action_mask.unsqueeze(1)
        counts = f["counts"] * sa_mask
        visited = (counts > 0) & sa_mask
        size = f["reward_mean"].abs() + f["reward_var"].clamp_min(0.0).sqrt()
        c = (size * visited).amax((1, 2))
        c = torch.where(c > 0, c, torch.ones_like(c))
        inp = _Inputs(
            counts=counts,
            reward_norm=f["reward_mean"] * visited / c[:, None, None],
            state_mask=state_mask,
            action_mask=action_mask,
            sa_mask=sa_mask,
            horizon=horizon,
            c=c,
            terminal_counts=f["terminal_counts"] * sa_mask,
        )
        _features(inp, f["reward_var"], f["initial_counts"] * state_mask, graph)
        return inp

    def _encode(self, inp: _Inputs, graph: _Graph) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, n_states, n_actions, _ = inp.sa_feats.shape
        if self.config.encoder == "none":
            d, like = self.config.d_model, inp.counts
            return like.new_zeros(batch, n_states, n_actions, d), like.new_zeros(batch, n_states, d), like.new_zeros(batch, d)
        gf, sf = inp.global_feats, inp.state_feats
        h_sa = self.embed_sa(
            torch.cat(
                [
                    inp.sa_feats,
                    sf.unsqueeze(2).expand(-1, -1, n_actions, -1),
                    gf[:, None, None].expand(-1, n_states, n_actions, -1),
                ],
                -1,
            )
        )
        h_s = self.embed_state(torch.cat([sf, gf[:, None].expand(-1, n_states, -1)], -1))
        g = self.embed_global(gf)
        n = inp.counts
        terminal_bias = torch.log(inp.terminal_counts.clamp_min(1e-30) / (n + 1.0))
        graph.attach_extra_bias(
            torch.stack(
                [-torch.log1p(n), terminal_bias.masked_fill(inp.terminal_counts <= 0, float("-inf"))], dim=-1
            )
        )
        for _ in range(self.config.n_rounds):
            h_sa, h_s, g = self.round(h_sa, h_s, g, graph, inp)
        return h_sa, h_s, g

    def _run(self, inp: _Inputs, graph: _Graph, optimism: bool, corrections: bool) -> ModelOutput:
        h_sa, h_s, g = self._encode(inp, graph)
        scale = self._scale(g, inp)
        h_all = _pair_context(h_sa, h_s, g)
        horizon_max = int(inp.horizon.max())
        layered: _BonusLayers | None = None
        if self.config.head == "vi":
            q_norm, layered = self._plan(
                inp, graph, self.sa_head(h_all), scale, horizon_max, optimism, corrections, h_all
            )
            temperature = self._temperature(inp, q_norm, h_s, g, scale)
        else:
            score = self.policy_head(h_all).squeeze(-1)
            q_norm = score.unsqueeze(1).expand(-1, horizon_max, -1, -1) / inp.c[:, None, None, None]
            temperature = torch.ones_like(score[..., 0])
        invalid = ~inp.sa_mask.unsqueeze(1)
        q = q_norm.masked_fill(invalid, 0.0) * inp.c[:, None, None, None]
        q_by_left = takes = None
        if layered is not None:
            q_by_left = layered.q.masked_fill(invalid.unsqueeze(1), 0.0) * inp.c[:, None, None, None, None]
            takes = layered.takes & ~invalid.unsqueeze(1)
        return ModelOutput(
            q=q,
            temperature=temperature,
            reward_scale=scale * inp.c,
            state_mask=inp.state_mask,
            action_mask=inp.action_mask,
            q_by_bonuses_left=q_by_left,
            takes_bonus=takes,
        )

    def missing_mass(self, batch: StatsBatch) -> torch.Tensor:
        """The missing-mass head's estimate ``M̂(s, a)``, ``[B, S, A]``: the chance that the next try of a pair
        leads to something it has not shown yet, an outcome not seen from it or a state not met, whichever
        ``python -m icrl_agent.pretraining missing-mass --target`` trained it for (only meaningful for tried pairs). The encoder runs
        without gradient, so a loss on it trains the head alone.

        :param batch: statistics of ``B`` MDPs, as for :meth:`forward`
        :raises ValueError: a model without the head (``explore_unknown`` is not ``"learned_missing_mass"``)
        """
        if not hasattr(self, "missing_mass_head"):
            raise ValueError("this model has no missing-mass head: build it with explore_unknown='learned_missing_mass'")
        inp, graph = self._dense_inputs(batch)
        with torch.no_grad():
            h_all = _pair_context(*self._encode(inp, graph))
        return self._missing_mass(inp, h_all, _outcome_impurity(inp, graph))

    def _missing_mass(self, inp: _Inputs, h_all: torch.Tensor, impurity: torch.Tensor) -> torch.Tensor:
        """``M̂`` of every pair from its embedding, its count and the MDP's outcome impurity ``[B]``: ``[B, S, A]``."""
        n = inp.counts
        extra = torch.stack([torch.log1p(n), torch.rsqrt(n + 1.0), impurity[:, None, None].expand_as(n)], -1)
        return torch.sigmoid(self.missing_mass_head(torch.cat([h_all, extra], -1)).squeeze(-1))

    def _scale(self, g: torch.Tensor, inp: _Inputs) -> torch.Tensor:
        """How large unseen rewards may be, in units of the largest seen (``c``): ``[B]``, >= 1."""
        if self.config.scale_inputs == "embedding_and_features":
            g = torch.cat([g, inp.global_feats], -1)
        raw = F.softplus(self.scale_head(g).squeeze(-1))  # (B,)
        gain = self.log_scale_gain.exp() if self.config.head == "vi" else raw.new_ones(())
        if self.config.scale_head == "quantile":
            return torch.exp((gain * raw).clamp(max=_MAX_LOG_SCALE))
        return 1.0 + gain * raw

    def _adjusted_mdp(
        self, inp: _Inputs, raw: torch.Tensor, scale: torch.Tensor, optimism: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Corrected reward, per-step bonus, unknown-successor mass, and spread-bonus factor of every (s, a)."""
        n = inp.counts
        w_r = self.config.max_pseudo_count * torch.sigmoid(raw[..., 0])
        prior_reward = torch.tanh(raw[..., 1])
        reward = inp.reward_norm + w_r / (n + w_r) * (prior_reward - inp.reward_norm)
        w = self.log_unknown_gain.exp() * 2.0 * torch.sigmoid(raw[..., 3])
        unknown_mass = w / (n + w)
        bonus = spread = torch.zeros_like(reward)
        if optimism:
            factor = 2.0 * torch.sigmoid(raw[..., 2])
            bonus = self.log_bonus_gain.exp() * factor * scale[:, None, None] * torch.rsqrt(n + 1.0)
            spread = self.config.spread_bonus * factor * torch.rsqrt(n + 1.0)
        return reward, bonus, unknown_mass, spread

    def _plan(
        self,
        inp: _Inputs,
        graph: _Graph,
        raw: torch.Tensor,
        scale: torch.Tensor,
        horizon_max: int,
        optimism: bool,
        corrections: bool,
        h_all: torch.Tensor,
    ) -> tuple[torch.Tensor, _BonusLayers | None]:
        """Exact finite-horizon VI on the adjusted MDP, in normalized units: ``[B, Hmax, S, A]``, and its layers by
        limited bonuses left with :attr:`ModelConfig.count_bonuses_taken` (else ``None``).

        ``Q_k = base + k * slope + (1 - m) P̂ V_{k-1}`` (plus ``m * mean V_{k-1}`` without optimism, or
        ``m (1 - t̂) * mean V_{k-1}`` with ``exploit_unknown="non_terminal"``, ``t̂`` the pair's share of
        terminations seen), with ``V_0 = 0``; terminal mass is left out of ``P̂`` so it is worth 0. Invalid
        actions hold ``-inf``.
        """
        zeros = torch.zeros_like(inp.reward_norm)
        if corrections:
            reward, bonus, unknown_mass, spread = self._adjusted_mdp(inp, raw, scale, optimism)
        else:
            reward, bonus, unknown_mass, spread = inp.reward_norm, zeros, zeros, zeros
        base, slope = reward, bonus
        spread_terms = self._spread_terms(inp, graph, spread, optimism) if corrections else None
        tried_unknown = None  # a tried pair's unknown mass, when it is one of the episode's limited bonuses
        if corrections and optimism:
            unknown_mass, tried_unknown = self._exploring_unknown_mass(inp, graph, unknown_mass, spread_terms, h_all)
        cap = kappa_scale = None
        if optimism:
            kappa_scale = F.softplus(self.kappa_raw) * scale  # (B,)
            if corrections and self.config.value_cap:
                cap = kappa_scale.clamp_min(1.0)[:, None]  # (B, 1), per step
            worth = unknown_mass * self._unknown_worth_per_step(inp, kappa_scale)[:, None, None]
            base, slope = base - worth, slope + worth
        neutral = corrections and not optimism
        if neutral and self.config.exploit_unknown == "untried_only":
            unknown_mass = unknown_mass.masked_fill(inp.counts > 0, 0.0)
        base = base.masked_fill(~inp.action_mask[:, None, :], float("-inf"))
        known = graph.transitions.scaled(1.0 - unknown_mass)  # the unknown successor takes mass m
        continuing = unknown_mass  # the unknown successor's mass (exploitation)
        if neutral and self.config.exploit_unknown == "non_terminal":
            # the terminations seen are kept: only the non-terminal share of m continues
            terminal_share = inp.terminal_counts / inp.counts.clamp_min(1.0)
            continuing = unknown_mass * (1.0 - terminal_share)

        floor = None
        if neutral and self.config.exploit_untried == "floor":
            visited = (inp.counts > 0) & inp.sa_mask.bool()
            lowest = inp.reward_norm.masked_fill(~visited, 0.0).amin((1, 2)).clamp(max=0.0)  # (B,)
            floor = (visited, lowest[:, None, None])

        # The spread's arithmetic is kept in the order icrl-v2.2's committed results were measured with: a cheaper
        # order (P̂'s mean from the known part's sum, fused adds) changes the last bits and so some trajectories.
        def backup(k: int, v: torch.Tensor) -> torch.Tensor:  # (B, S) -> (B, S, A)
            if cap is not None:
                v = torch.minimum(v, (k - 1) * cap)
            q_k = known.expect(v, torch.add(base, slope, alpha=k))
            if spread_terms is not None:
                q_k = q_k + spread_terms.both(v[None])[0]
            if neutral:
                q_k = q_k + continuing * _masked_mean(v, inp.state_mask, (1,))[:, None, None]
            if floor is not None:
                q_k = torch.where(floor[0], q_k, torch.minimum(q_k, k * floor[1]))
            return q_k

        layers = self.config.spread_bonus_per_episode if optimism else None
        if layers is None or spread_terms is None:
            return solvers.backward_induction(backup, horizon_max, zeros[..., 0]), None
        without_spread: solvers.Backup = partial(_linear_backups, known, base, slope)
        limited_terms = spread_terms.both_and_mean
        if self.config.spread_bonus_limited_terms == "variance":  # the range term stays on every step
            without_spread = partial(_plus_term, without_spread, spread_terms.range)
            limited_terms = spread_terms.variance_and_mean
        bonus_of = self._limited_bonuses(inp, limited_terms, tried_unknown, kappa_scale)
        every_layer = self.config.count_bonuses_taken
        return _limited_bonus_induction(without_spread, bonus_of, layers, cap, horizon_max, zeros[..., 0], every_layer)

    def _limited_bonuses(
        self,
        inp: _Inputs,
        terms: _TermsAndMean,
        tried_unknown: torch.Tensor | None,
        kappa_scale: torch.Tensor | None,
    ) -> solvers.Backup:
        """What the exploring plan counts on at most ``spread_bonus_per_episode`` steps: the limited spread
        ``terms`` (with ``P̂ V``), plus a tried pair's unknown-successor term with ``tried_unknown_limited``
        (its worth per step from ``kappa_scale`` and ``tried_unknown_worth_after_goal``)."""
        if tried_unknown is None or kappa_scale is None:
            return partial(_spread_only, terms)
        worth_per_step = self._unknown_worth_per_step(inp, kappa_scale, self.config.tried_unknown_worth_after_goal)
        return partial(_with_tried_unknown, terms, tried_unknown, worth_per_step)

    def _exploring_unknown_mass(
        self,
        inp: _Inputs,
        graph: _Graph,
        unknown_mass: torch.Tensor,
        spread_terms: _SpreadTerms | None,
        h_all: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The exploring plan's unknown masses: ``(on every step, as a limited bonus)``. ``explore_unknown`` sets a
        tried pair's; with ``tried_unknown_limited`` it moves to the second (``None`` without the rule)."""
        if self.config.explore_unknown != "all_pairs":
            unknown_mass = self._tried_pairs_unknown_mass(inp, graph, unknown_mass, spread_terms, h_all)
        unknown_mass = self._stay_floor(inp, graph, unknown_mass)
        if not self.config.tried_unknown_limited:
            return unknown_mass, None
        tried = inp.counts > 0
        return unknown_mass.masked_fill(tried, 0.0), unknown_mass.masked_fill(~tried, 0.0)

    def _tried_pairs_unknown_mass(
        self,
        inp: _Inputs,
        graph: _Graph,
        unknown_mass: torch.Tensor,
        spread_terms: _SpreadTerms | None,
        h_all: torch.Tensor,
    ) -> torch.Tensor:
        """The exploring plan's unknown mass with ``explore_unknown`` applied: a tried pair gets none
        (``untried_only``), ``rho m`` (``impurity_weighted``) or the head's ``M̂`` read from the pair context
        ``h_all`` (``learned_missing_mass``); an untried pair keeps ``m``. The impurity both rules read comes from
        the spread terms when the plan has them, so it is computed once per plan."""
        tried = inp.counts > 0
        if self.config.explore_unknown == "untried_only":
            return unknown_mass.masked_fill(tried, 0.0)
        impurity = spread_terms.impurity if spread_terms is not None else _outcome_impurity(inp, graph)
        if self.config.explore_unknown == "learned_missing_mass":
            return torch.where(tried, self._missing_mass(inp, h_all, impurity), unknown_mass)
        rho = impurity.square()
        return torch.where(tried, unknown_mass * rho[:, None, None], unknown_mass)

    def _stay_floor(self, inp: _Inputs, graph: _Graph, mass: torch.Tensor) -> torch.Tensor:
        """With ``stay_unknown_pseudo_count`` ``w_s > 0``, a tried pair whose every try stayed at its own state keeps
        an unknown mass of at least ``w_s / (N + w_s)``: told nothing, a few tries cannot tell a wall from a rare
        way out (SixArms' hub), and the count of tries is all the evidence there is."""
        w_s = self.config.stay_unknown_pseudo_count
        if not w_s > 0:
            return mass
        n, loops = inp.counts, graph.self_loop_counts()
        stayed_only = (n > 0) & (loops >= n)
        if self.config.stay_unknown_max_tries is not None:
            stayed_only = stayed_only & (n <= self.config.stay_unknown_max_tries)
        if self.config.stay_unknown_moving_actions_only:  # an action that stayed put wherever tried is a no-op
            stayed_only = stayed_only & ((n - loops).sum(1, keepdim=True) > 0)
        if self.config.stay_unknown_unpaid_only:
            stayed_only = stayed_only & (inp.reward_norm <= 0)
        if self.config.stay_unknown_when == "midway_reward":
            midway = _reward_seen(inp) & ~_goal_rewards_only(inp)
            stayed_only = stayed_only & midway[:, None, None]
        return torch.where(stayed_only, torch.maximum(mass, w_s / (n + w_s)), mass)

    def _spread_terms(
        self, inp: _Inputs, graph: _Graph, spread: torch.Tensor, optimism: bool
    ) -> _SpreadTerms | None:
        """The spread bonus (exploring plan) or penalty (exploitation plan) of every pair; ``None`` when the plan
        has neither."""
        coefficient = self._spread_coefficient(inp, spread, optimism)
        if coefficient is None:
            return None
        padding = None if bool(inp.state_mask.all()) else ~inp.state_mask  # the sparse path has none
        return _SpreadTerms(coefficient, graph.transitions, _outcome_impurity(inp, graph),
                            torch.rsqrt(inp.counts + 1.0), padding)

    def _spread_coefficient(self, inp: _Inputs, spread: torch.Tensor, optimism: bool) -> torch.Tensor | None:
        """Per tried pair, what multiplies the spread of its successors' values: the spread bonus ``c_v f /
        sqrt(N + 1)`` in the exploring plan, minus ``c_p / sqrt(N + 1)`` (``exploit_spread_penalty``) in the
        exploitation plan; ``None`` when the plan has neither. An untried pair gets 0."""
        untried = inp.counts == 0
        if optimism and self.config.spread_bonus > 0:
            return spread.masked_fill(untried, 0.0)  # an untried pair has its unknown mass
        if not optimism and self.config.exploit_spread_penalty > 0:
            return (-self.config.exploit_spread_penalty * torch.rsqrt(inp.counts + 1.0)).masked_fill(untried, 0.0)
        return None

    def _unknown_worth_per_step(
        self, inp: _Inputs, kappa_scale: torch.Tensor, after_goal: str | None = None
    ) -> torch.Tensor:
        """What the unknown successor is worth per step to go, in normalized units: ``[B]``, from
        ``kappa_scale`` (``kappa * scale``, its worth at any horizon) and the horizon rules.

        It is reached after one step, so with ``k`` steps to go it is worth this times ``k - 1``. ``after_goal``
        replaces ``config.unknown_worth_after_goal`` (a tried pair's limited bonus has its own).
        """
        after_goal = self.config.unknown_worth_after_goal if after_goal is None else after_goal
        per_step = kappa_scale
        if not inp.horizon_known:  # a guessed horizon must not make the first episode less optimistic
            return per_step
        horizon = inp.horizon.to(kappa_scale.dtype)
        if self.config.optimism_horizon is not None:
            per_step = per_step * self.config.optimism_horizon / horizon
        if self.config.optimism_horizon_max is not None:
            shrink = (self.config.optimism_horizon_max / horizon).clamp(max=1.0)
            when = self.config.optimism_horizon_max_when
            if when != "always":
                applies = _goal_rewards_only(inp) if when == "terminal_rewards" else _reward_seen(inp)
                shrink = torch.where(applies, shrink, torch.ones_like(shrink))
            per_step = per_step * shrink
        if after_goal != "per_step":
            # it is reached after one step, so at most H - 1 steps count: a whole episode gives it kappa * scale
            once = kappa_scale
            if after_goal != "once":
                once = torch.maximum(once, horizon * _typical_move_cost(inp))
            if after_goal == "once_or_goal_or_episode_cost":
                once = torch.maximum(once, _largest_goal_seen(inp))
            once = once / (horizon - 1.0).clamp_min(1.0)
            per_step = torch.where(_goal_rewards_only(inp), once, per_step)
        return per_step

    def _temperature(
        self, inp: _Inputs, q_norm: torch.Tensor, h_s: torch.Tensor, g: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        """Per-state temperature: a learned factor times the state's first-step Q gap (input units)."""
        batch = q_norm.shape[0]
        q_first = q_norm[torch.arange(batch, device=q_norm.device), inp.horizon - 1]
        valid = inp.action_mask[:, None, :]
        gap = q_first.masked_fill(~valid, float("-inf")).amax(-1) - q_first.masked_fill(
            ~valid, float("inf")
        ).amin(-1)
        # detached: the temperature follows the plan, CE must not bend Q to shape its own temperature
        gap = gap.detach() + _GAP_FLOOR * scale[:, None]
        factor = self.config.min_temperature + F.softplus(
            self.temperature_head(torch.cat([h_s, g[:, None].expand_as(h_s)], -1)).squeeze(-1)
        )
        return factor * gap * inp.c[:, None]


def _pair_context(h_sa: torch.Tensor, h_s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Each pair's embedding beside its state's and the MDP's: ``[B, S, A, 3 d]``, what the per-pair heads read."""
    return torch.cat([h_sa, h_s.unsqueeze(2).expand_as(h_sa), g[:, None, None].expand_as(h_sa)], -1)


def _linear_backups(
    known: solvers.Transitions, base: torch.Tensor, slope: torch.Tensor, k: int, values: torch.Tensor
) -> torch.Tensor:
    """``base + k slope + P V_{k-1}`` for each of the stacked ``values [L, B, S]``: ``[L, B, S, A]``."""
    return known.expect_each(values, torch.add(base, slope, alpha=k))


@dataclass(frozen=True)
class _SpreadTerms:
    """The spread terms of every pair as functions of stacked successor values ``V_{k-1}`` ``[L, B, S]``, each
    ``[L, B, S, A]``: ``coefficient`` times the spread of the successors' values (``variance``), times the value
    range weighted by the outcome impurity (``range``), or both, from one computation of what they share. The
    ``*_and_mean`` forms also return ``P̂ V_{k-1}``, which the spread computes anyway."""

    coefficient: torch.Tensor
    transitions: solvers.Transitions
    impurity: torch.Tensor
    count_decay: torch.Tensor
    padding: torch.Tensor | None

    def _unseen(self, v: torch.Tensor) -> torch.Tensor:
        return (self.impurity * _value_range(v, self.padding))[..., None, None] * self.count_decay

    def both(self, v: torch.Tensor) -> torch.Tensor:
        return self.both_and_mean(v)[0]

    def both_and_mean(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spread, mean = _successor_spread(self.transitions, v)
        return self.coefficient * (spread + self._unseen(v)), mean

    def variance_and_mean(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spread, mean = _successor_spread(self.transitions, v)
        return self.coefficient * spread, mean

    def range(self, v: torch.Tensor) -> torch.Tensor:
        return self.coefficient * self._unseen(v)


def _plus_term(
    backup: solvers.Backup, term: Callable[[torch.Tensor], torch.Tensor], k: int, v: torch.Tensor
) -> torch.Tensor:
    return backup(k, v) + term(v)


def _spread_only(terms: _TermsAndMean, k: int, v: torch.Tensor) -> torch.Tensor:
    return terms(v)[0]


def _with_tried_unknown(
    terms: _TermsAndMean,
    mass: torch.Tensor,
    worth_per_step: torch.Tensor,
    k: int,
    v: torch.Tensor,
) -> torch.Tensor:
    """The limited spread terms plus a tried pair's unknown-successor term ``M (U_{k-1} - P̂ V_{k-1})`` for stacked
    values ``v [L, B, S]``: ``[L, B, S, A]``. ``terms`` returns the spread terms and ``P̂ V``; ``mass`` (``M``) is
    0 on untried pairs, ``U_{k-1}`` is ``(k - 1) worth_per_step``. The term is negative where the known outcomes
    are worth more, and then lowers what taking the pair's bonus is worth."""
    unknown_value = ((k - 1) * worth_per_step)[:, None, None]  # (B, 1, 1)
    bonus, mean = terms(v)
    return bonus + mass * (unknown_value - mean)


@dataclass
class _BonusLayers:
    """A plan by limited bonuses left: ``q [B, n + 1, H, S, A]`` and ``takes`` (bool, same shape), where ``Q^j``
    counts on taking the pair's bonus."""

    q: torch.Tensor
    takes: torch.Tensor


def _limited_bonus_induction(
    without_bonus: solvers.Backup,
    bonus_of: solvers.Backup,
    layers: int,
    cap: torch.Tensor | None,
    horizon: int,
    v0: torch.Tensor,
    every_layer: bool,
) -> tuple[torch.Tensor, _BonusLayers | None]:
    """Backward induction where at most ``layers`` steps of an episode count a bonus: ``[B, H, S, A]``, the Q of
    the plan with every bonus left, and with ``every_layer`` every layer's Q and where it takes the bonus
    (``None`` without).

    ``V^j`` holds the value with ``j`` bonuses left; ``Q^0_k = without_bonus(k, V^0_{k-1})`` and
    ``Q^j_k = max(without_bonus(k, V^{j-1}_{k-1}) + bonus_of(V^{j-1}_{k-1}), without_bonus(k, V^j_{k-1}))``: take
    the bonus now (its pair then leads to values with one fewer left) or keep it. ``bonus_of`` reads the values
    capped at ``(k - 1) cap`` when there is a cap, as ``without_bonus`` then reads them. Both take the layers'
    values stacked, ``[layers + 1, B, S] -> [layers + 1, B, S, A]``, so a step costs one backup on the sparse
    path, not one per layer.
    """
    fewer = torch.stack([v0] * layers)  # V^j, j < layers, k - 1 steps to go; the induction carries V^layers
    every_q: list[torch.Tensor] = []
    every_take: list[torch.Tensor] = []

    def backup(k: int, v: torch.Tensor) -> torch.Tensor:
        nonlocal fewer
        values = torch.cat([fewer, v[None]])  # [layers + 1, B, S]: every layer's values in one backup
        if cap is not None:
            values = torch.minimum(values, (k - 1) * cap)
        plain = without_bonus(k, values)
        taken = plain[:-1] + bonus_of(k, values[:-1])
        q = torch.cat([plain[:1], torch.maximum(taken, plain[1:])])
        fewer = q[:layers].amax(-1)
        if every_layer:
            every_q.append(q)
            # a tie keeps the bonus: both ways are worth the same, and keeping it leaves more for later
            every_take.append(torch.cat([torch.zeros_like(plain[:1], dtype=torch.bool), taken > plain[1:]]))
        return q[layers]

    q = solvers.backward_induction(backup, horizon, v0)
    if not every_layer:
        return q, None
    # [H, layers + 1, B, S, A] -> [B, layers + 1, H, S, A]
    return q, _BonusLayers(torch.stack(every_q).permute(2, 1, 0, 3, 4), torch.stack(every_take).permute(2, 1, 0, 3, 4))


def _rewarded_pairs(inp: _Inputs) -> torch.Tensor:
    """Tried pairs with a positive mean reward, ``[B, S * A]``."""
    return ((inp.reward_norm > 0) & (inp.counts > 0)).flatten(1)


def _reward_seen(inp: _Inputs) -> torch.Tensor:
    """``[B]``: some tried pair's mean reward is positive."""
    return _rewarded_pairs(inp).any(-1)


def _goal_rewards_only(inp: _Inputs) -> torch.Tensor:
    """``[B]``: some tried pair's mean reward is positive, and every such pair has ended an episode (the rewards of
    a goal, paid as the episode ends; pair statistics cannot tell which of a pair's outcomes paid)."""
    rewarded = _rewarded_pairs(inp)
    ended = (inp.terminal_counts > 0).flatten(1)
    return rewarded.any(-1) & (ended | ~rewarded).all(-1)


def _largest_goal_seen(inp: _Inputs) -> torch.Tensor:
    """``[B]``, normalized: the largest reward total per ending over the pairs that ended an episode with a positive
    mean reward, ``N r̂ / T`` (``T`` the pair's endings); 0 where there is none. A goal entered only by slips has a
    small mean reward but a full reward per ending (less the costs of the visits that did not end)."""
    goals = _rewarded_pairs(inp) & (inp.terminal_counts > 0).flatten(1)
    per_ending = (inp.counts * inp.reward_norm).flatten(1) / inp.terminal_counts.flatten(1).clamp_min(1.0)
    return per_ending.masked_fill(~goals, 0.0).amax(-1)


def _typical_move_cost(inp: _Inputs) -> torch.Tensor:
    """``[B]``, normalized: minus the mean reward of the tried pairs that never ended an episode, where that is
    negative (what a move costs, goals and terminal penalties left out), else 0."""
    moves = ((inp.counts > 0) & inp.sa_mask & (inp.terminal_counts == 0)).to(inp.reward_norm.dtype)
    mean = (inp.reward_norm * moves).flatten(1).sum(-1) / moves.flatten(1).sum(-1).clamp_min(1.0)
    return (-mean).clamp_min(0.0)


def _successor_spread(transitions: solvers.Transitions, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sqrt(Var_P̂[v]), P̂ v)`` per pair for each of the stacked values ``v [L, B, S]``: each ``[L, B, S, A]`` (a
    terminal outcome counts as worth 0; an untried pair gets 0)."""
    mean, second = transitions.expect_each(torch.cat([v, v * v])).chunk(2)
    # the floor keeps sqrt's gradient finite where every outcome is worth the same
    return torch.sqrt((second - mean * mean).clamp_min(1e-12)), mean


_N_MISSING = 3  # the missing-mass head's inputs besides the embeddings: log1p(N), 1 / sqrt(N + 1), sqrt(rho)


def _outcome_impurity(inp: _Inputs, graph: _Graph) -> torch.Tensor:
    """``sqrt(rho)`` per MDP ``[B]``: ``rho`` the chance that two visits of one pair had different outcomes
    (a terminal outcome counts as one), pooled over the pairs, ``(D + 1) / (T + 1)`` with ``T`` the ordered
    pairs of visits and ``D`` those with different outcomes. ``rho`` is 1 before any pair was tried twice, falls
    fast to 0 in an MDP whose moves all proved deterministic (DeepSea), and nears 0.32 where every move slips
    with probability 0.2 (Chain). Rewards do not count: a pair whose reward varies but whose successor does not
    adds to ``T`` only."""
    n = inp.counts * inp.sa_mask
    squared = (graph.squared_counts() + inp.terminal_counts * inp.terminal_counts) * inp.sa_mask
    total = (n * (n - 1.0)).clamp_min(0.0).sum((1, 2))
    different = (n * n - squared).sum((1, 2))
    return torch.sqrt((different + 1.0) / (total + 1.0))


def _value_range(v: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
    """``max - min`` of ``v [B, S]`` over each MDP's real states (``padding``: ``[B, S]`` true on the others)."""
    if padding is None:
        bottom, top = torch.aminmax(v, dim=-1)
    else:
        top = v.masked_fill(padding, float("-inf")).amax(-1)
        bottom = v.masked_fill(padding, float("inf")).amin(-1)
    return top - bottom


def _last_linear(module: nn.Module) -> nn.Module:
    """The module itself if it is a linear layer, else the last layer of a sequential head."""
    return module[-1] if isinstance(module, nn.Sequential) else module


def _softplus_inverse(y: float) -> float:
    return y + math.log(-math.expm1(-y))


def _coalesce_edges(
    stats: SparseStatsLike, n_states: int, n_actions: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges as tensors, with duplicates summed and empty ones dropped; validated against the shapes."""
    src = torch.tensor(np.asarray(stats.src), dtype=torch.long, device=device).reshape(-1)
    dst = torch.tensor(np.asarray(stats.dst), dtype=torch.long, device=device).reshape(-1)
    count = torch.tensor(np.asarray(stats.count), dtype=dtype, device=device).reshape(-1)
    if not src.shape == dst.shape == count.shape:
        raise ValueError(f"edge arrays src/dst/count differ in length: {len(src)}, {len(dst)}, {len(count)}")
    if len(src) and (
        int(src.min()) < 0
        or int(src.max()) >= n_states * n_actions
        or int(dst.min()) < 0
        or int(dst.max()) >= n_states
    ):
        raise ValueError(f"edges out of range for S={n_states}, A={n_actions}: src must be s*A+a, dst < S")
    key, inverse = torch.unique(src * n_states + dst, return_inverse=True)
    summed = torch.zeros(len(key), dtype=dtype, device=device).index_add_(0, inverse, count)
    keep = summed > 0
    return key[keep] // n_states, key[keep] % n_states, summed[keep]
