"""What every planning agent shares: the plan cache and THE replanning rule.

:class:`PlanningAgent` is the base of the pretrained :class:`~icrl_agent.agent.Agent` and of the planning
baselines (OptimisticVI, UCB-VI, PSRL, VI-LCB). A subclass only says how it makes a plan
(:meth:`PlanningAgent._make_plan`: a finite-horizon ``Q`` by steps to go, the convention of
:mod:`icrl_agent.solvers`); when to make one, how to read it at an elapsed step and how to save it are
decided here, once.

The rule:

- The **exploring** plan (``act(obs)``) is made at an episode start when the statistics changed since the
  last plan (so exploration is committed for the episode, PSRL-like), after ``fit`` or a load, when the
  horizon estimate changed, and mid-episode on news — a state the plan does not know was reached, or the
  count of a pair just taken doubled since the plan (UCRL2's rule) — but at most every ``max(1, H // 20)``
  steps, so that ``act`` stays cheap while a large env is being discovered. A state met since the plan
  was made scores every action the same (all its actions are untried) until the next plan.
- The **exploitation** plan (``act(obs, deterministic=True)``) is redone whenever the statistics changed,
  so it is a function of the statistics. Its greedy action breaks near ties (``Q`` within
  :data:`EXPLOIT_TIE_TOLERANCE` of the plan's largest ``|Q|``) towards the reward that comes sooner: the
  highest mean of ``Q`` over 1..k steps to go, then the first action. Undiscounted, with more steps to go
  than needed (a horizon inferred as twice the longest episode when no episode hit a time limit), every
  action that can still reach the goal is worth the same; without this rule a float32 rounding picks one,
  e.g. walking into a wall at every step until the real time limit runs out.
- The exploring plan's actions tie only exactly (uniform among them), unless a subclass gives a near-tie
  tolerance (:meth:`PlanningAgent._explore_tie_tolerance`, the pretrained agent's from its weights): then its
  near ties break towards sooner reward as the exploitation plan's do (uniform among actions that tie there too).
- An exploring plan made with layers by limited bonuses left (:class:`BonusLayers`, the pretrained agent's with
  ``count_bonuses_taken``) is read at the layer of the bonuses the stream's episode has left: all of them at an
  episode start, one fewer after each observed transition whose pair's bonus that layer counted on. A plan
  remade mid-episode is read at the same count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from icrl_agent.base import TabularAgent, Transition
from icrl_agent.solvers import to_go_index

EXPLOIT_TIE_TOLERANCE = 1e-5
"""Exploitation actions whose ``Q`` is this close to the best, relative to the plan's largest ``|Q|``, are
near ties (float32 planning leaves ~1e-7 of rounding; relative, so the rule ignores the reward unit)."""


@dataclass
class BonusLayers:
    """An exploring plan by the number of limited bonuses an episode has left.

    :param q: float64 ``Q[n + 1, H, S, A]``: ``q[j]`` the plan with ``j`` bonuses left, indexed by steps to go
    :param takes_bonus: bool, shaped as ``q``: ``q[j]`` counts on taking the pair's bonus (never for ``j = 0``)
    """

    q: np.ndarray
    takes_bonus: np.ndarray

    @property
    def most(self) -> int:
        """``n``, the bonuses an episode starts with."""
        return self.q.shape[0] - 1


class Plan:
    """A cached plan and what it was made from, to know when to redo it.

    :param q: float64 ``Q[H, S, A]`` indexed by steps to go, over the states known when it was made (with
        ``layers``, the plan with every bonus left)
    :param version: the statistics' version when it was made
    :param horizon: the horizon ``H`` it was made for
    :param counts: ``N[s, a]`` when it was made (a pair whose count doubled since triggers a new plan)
    :param tie_tolerance: the exploring plan's near-tie tolerance, decided from the statistics it was made from
    :param layers: the plan by limited bonuses left, or ``None`` (one plan for every step)
    """

    def __init__(
        self,
        q: np.ndarray,
        version: int,
        horizon: int,
        counts: np.ndarray,
        tie_tolerance: float,
        layers: BonusLayers | None = None,
    ):
        self.q = q
        self.version = version
        self.horizon = horizon
        self.counts = counts
        self.tie_tolerance = tie_tolerance
        self.layers = layers
        self._tie_break: dict[int | None, tuple[np.ndarray, float]] = {}  # by layer, made on its first near-tie read

    def _q(self, left: int | None) -> np.ndarray:
        return self.q if left is None or self.layers is None else self.layers.q[left]

    def scores(self, state: int, step: int, left: int | None = None) -> np.ndarray:
        """``Q`` of ``state``'s actions at elapsed ``step`` (the one conversion from elapsed steps).

        :param left: the limited bonuses left, for a plan with layers (``None``: the plan with every bonus left)
        """
        return self._q(left)[to_go_index(self.horizon, step), state]

    def takes_bonus(self, state: int, step: int, action: int, left: int) -> bool:
        """The plan with ``left`` bonuses left counts on taking ``(state, action)``'s bonus at elapsed ``step``
        (``False`` for a plan without layers or a state it does not know)."""
        if self.layers is None or state >= self.q.shape[1]:
            return False
        return bool(self.layers.takes_bonus[left, to_go_index(self.horizon, step), state, action])

    def sooner_first(self, state: int, step: int) -> int:
        """The greedy action of ``state`` at elapsed ``step``, near ties broken towards sooner reward.

        :return: among the actions within :data:`EXPLOIT_TIE_TOLERANCE` of the best ``Q``, the one with the
            highest mean ``Q`` over 1..k steps to go (``k`` = steps to go at ``step``); the first if tied
        """
        return int(self.sooner_first_actions(state, step, EXPLOIT_TIE_TOLERANCE)[0])

    def sooner_first_actions(
        self, state: int, step: int, tolerance: float, left: int | None = None
    ) -> np.ndarray:
        """The actions of ``state`` at elapsed ``step`` that :meth:`sooner_first` ranks first, all of them.

        :param tolerance: actions whose ``Q`` is within this share of the plan's largest ``|Q|`` of the best are
            near ties
        :param left: as in :meth:`scores`
        :return: among the near ties, those with the highest mean ``Q`` over 1..k steps to go, ascending
        """
        q = self._q(left)
        if left not in self._tie_break:
            # Q summed over 1..k steps to go: k times the mean, so the same order among one state's actions
            self._tie_break[left] = (np.cumsum(q, axis=0), float(np.abs(q).max()))
        sum_to_go, largest = self._tie_break[left]
        k = to_go_index(self.horizon, step)
        scores = q[k, state]
        near = scores >= scores.max() - tolerance * largest
        sums = np.where(near, sum_to_go[k, state], -np.inf)
        return np.flatnonzero(sums >= sums.max())


class PlanningAgent(TabularAgent):
    """A tabular agent greedy in a finite-horizon plan, replanned by the module's rule.

    Subclasses implement :meth:`_make_plan`. Constructor arguments are :class:`TabularAgent`'s.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[bool, Plan | None] = {True: None, False: None}  # keyed by "exploring"
        self._replan_requested = True  # at the next act: each episode start, after fit, after a load
        self._news_since_plan = False  # a new state or a doubled count since the exploring plan was made
        self._steps_since_plan = 0
        self._bonuses_left: dict[int, int] = {}  # stream -> limited bonuses its episode has left (absent: all)
        self._explored: dict[int, bool] = {}  # stream -> its last action came from the exploring plan
        self._acting_stream = 0  # the stream whose action is being chosen (the layer the exploring plan reads)

    def _make_plan(self, horizon: int, optimistic: bool) -> np.ndarray | BonusLayers:
        """A plan from the current statistics.

        :param horizon: steps to plan for
        :param optimistic: the exploring plan (True) or the exploitation plan (False)
        :return: float64 ``Q[H, S, A]`` indexed by steps to go, over the currently known states; or, for an
            exploring plan that limits an episode's bonuses, the plan by bonuses left (:class:`BonusLayers`)
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ reading and refreshing plans

    def _act(self, obs: Any, deterministic: bool, stream: int) -> int:
        self._acting_stream = stream
        self._explored[stream] = not deterministic
        return super()._act(obs, deterministic, stream)

    def policy(self, step: int | None = None, deterministic: bool = False) -> np.ndarray:
        """Action probabilities of every known state, in state-id order (``agent.stats.state_id(obs)``).

        :param step: elapsed step (default: the current step of stream 0), clamped to ``horizon - 1``
        :param deterministic: the exploitation policy instead of the exploring one (the exploring one is read at
            the limited bonuses stream 0's episode has left)
        :return: float64 ``[S, A]``, rows sum to 1
        """
        self._acting_stream = 0
        return super().policy(step, deterministic)

    def _left(self, plan: Plan, stream: int) -> int | None:
        """The bonuses ``stream``'s episode has left, in ``plan``'s layers (``None`` for a plan without)."""
        return None if plan.layers is None else self._bonuses_left.get(stream, plan.layers.most)

    def _action_scores(self, state: int, step: int, deterministic: bool) -> np.ndarray:
        plan = self._plan_for(optimistic=not deterministic)
        if state >= plan.q.shape[1]:
            return np.zeros(self.n_actions)  # met since the plan was made: every action ties until the next
        return plan.scores(state, step, self._left(plan, self._acting_stream))

    def _action_probabilities(self, state: int, step: int, deterministic: bool) -> np.ndarray:
        probs = np.zeros(self.n_actions)
        if deterministic:  # the exploitation plan is never stale: it knows every known state
            probs[self._plan_for(optimistic=False).sooner_first(state, step)] = 1.0
            return probs
        plan = self._plan_for(optimistic=True)
        if plan.tie_tolerance == 0 or state >= plan.q.shape[1]:
            return super()._action_probabilities(state, step, deterministic)
        best = plan.sooner_first_actions(state, step, plan.tie_tolerance, self._left(plan, self._acting_stream))
        probs[best] = 1.0 / len(best)
        return probs

    def _explore_tie_tolerance(self) -> float:
        """Near ties of the exploring plan, as a share of its largest ``|Q|``; 0: exact ties only (the baselines).
        Read when a plan is made, from the statistics it is made from (not at every act: cheap)."""
        return 0.0

    def _plan_for(self, optimistic: bool) -> Plan:
        plan = self._plans[optimistic]
        if plan is None or self._stale(plan, optimistic):
            plan = self._plans[optimistic] = self._new_plan(optimistic)
        return plan

    def _stale(self, plan: Plan, optimistic: bool) -> bool:
        if plan.version == self.stats.version:
            return False
        if not optimistic or plan.horizon != self.horizon or self._replan_requested:
            return True
        return self._news_since_plan and self._steps_since_plan >= max(1, plan.horizon // 20)

    def _new_plan(self, optimistic: bool) -> Plan:
        horizon = self.horizon
        made = self._make_plan(horizon, optimistic)
        layers = made if isinstance(made, BonusLayers) else None
        q = made.q[-1] if isinstance(made, BonusLayers) else made
        if optimistic:
            self._replan_requested = self._news_since_plan = False
            self._steps_since_plan = 0
        tolerance = self._explore_tie_tolerance() if optimistic else 0.0
        return Plan(q, self.stats.version, horizon, self.stats.sparse().counts.copy(), tolerance, layers)

    def _on_update(self, transition: Transition) -> None:
        plan = self._plans[True]
        self._steps_since_plan += 1
        self._count_bonus_taken(plan, transition)
        if transition.terminated or transition.truncated or plan is None:
            self._replan_requested = True
            return
        s, a, known = transition.state, transition.action, plan.counts.shape[0]
        planned = plan.counts[s, a] if s < known else 0
        new_state = transition.next_state is not None and transition.next_state >= known
        if new_state or self.stats.count(s, a) >= max(2 * planned, 1):
            self._news_since_plan = True

    def _on_fit(self, dataset: Any) -> None:
        self._replan_requested = True

    def _count_bonus_taken(self, plan: Plan | None, transition: Transition) -> None:
        """One bonus fewer for the stream's episode if its exploring layer counted on the pair just taken; all
        of them again once the episode ends."""
        stream = transition.stream
        if transition.terminated or transition.truncated:
            self._bonuses_left.pop(stream, None)
            return
        if plan is None or not self._explored.get(stream, False):
            return
        left = self._left(plan, stream)
        if left and plan.takes_bonus(transition.state, transition.step, transition.action, left):
            self._bonuses_left[stream] = left - 1

    def reset_episode(self, stream: int = 0) -> None:
        """End the open episode of ``stream`` (the next ``act`` starts a new one at step 0)."""
        super().reset_episode(stream)
        self._bonuses_left.pop(stream, None)
        self._replan_requested = True

    def q_values(self, deterministic: bool = False) -> np.ndarray:
        """The plan the agent acts on, made now if it is out of date.

        :param deterministic: the exploitation plan instead of the exploring one
        :return: float64 ``Q[H, S, A]`` indexed by steps to go (``[H - 1 - t]`` at elapsed step ``t``); an exploring
            plan with layers by limited bonuses left gives the layer with every bonus left
        """
        if self.stats.n_states == 0:
            return np.zeros((self.horizon, 0, self.n_actions))
        return self._plan_for(optimistic=not deterministic).q

    # ------------------------------------------------------------------ save / load

    def plan_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The plans and the replanning state as arrays + JSON-able metadata (for exact save/load)."""
        arrays, plans = {}, {}
        for optimistic, plan in self._plans.items():
            if plan is not None:
                tag = "explore" if optimistic else "exploit"
                arrays[f"plan/{tag}/q"] = plan.q
                arrays[f"plan/{tag}/counts"] = plan.counts
                if plan.layers is not None:
                    arrays[f"plan/{tag}/q_by_bonuses_left"] = plan.layers.q
                    arrays[f"plan/{tag}/takes_bonus"] = plan.layers.takes_bonus
                plans[tag] = {"version": plan.version, "horizon": plan.horizon, "tie_tolerance": plan.tie_tolerance}
        meta = {
            "replan": [self._replan_requested, self._news_since_plan, self._steps_since_plan],
            "plans": plans,
            # JSON keys are strings
            "bonuses_left": {str(stream): left for stream, left in self._bonuses_left.items()},
            "explored": {str(stream): explored for stream, explored in self._explored.items()},
        }
        return arrays, meta

    def load_plan_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Restore what :meth:`plan_state` returned."""
        self._replan_requested, self._news_since_plan, self._steps_since_plan = meta["replan"]
        for tag, info in meta["plans"].items():
            layers = None
            if f"plan/{tag}/q_by_bonuses_left" in arrays:
                layers = BonusLayers(arrays[f"plan/{tag}/q_by_bonuses_left"], arrays[f"plan/{tag}/takes_bonus"])
            plan = Plan(arrays[f"plan/{tag}/q"], info["version"], info["horizon"], arrays[f"plan/{tag}/counts"],
                        info.get("tie_tolerance", 0.0), layers)  # files written before the rule have none
            self._plans[tag == "explore"] = plan
        # files written before the limited bonuses were counted have neither
        self._bonuses_left = {int(stream): int(left) for stream, left in meta.get("bonuses_left", {}).items()}
        self._explored = {int(stream): bool(explored) for stream, explored in meta.get("explored", {}).items()}
