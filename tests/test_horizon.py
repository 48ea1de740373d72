"""Horizon inference (``TabularAgent.horizon``, icrl_agent/base.py) as episodes come in, and plans that use it.

The rule: the ``horizon=`` hint; else the longest truncated episode when no episode ran longer (a time
limit); else twice the longest episode; else ``DEFAULT_HORIZON`` before any episode ended.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from icrl_agent.agent import Agent
from icrl_agent.base import DEFAULT_HORIZON
from icrl_agent.baselines import PSRL, UCBVI, VILCB, OptimisticVI, QLearning, Random
from icrl_agent.model import IcrlModel, ModelConfig

CONFIG = ModelConfig(d_model=16, n_heads=2, n_rounds=2)
AGENTS = ["Agent", "OptimisticVI", "PSRL", "UCBVI", "VILCB", "QLearning", "Random"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class PlainVIModel(IcrlModel):
    """The network with every correction off: its Q is exact VI on the empirical MDP."""

    def forward_sparse(self, stats, horizon, optimism=True, corrections=True, horizon_known=True):
        return super().forward_sparse(
            stats, horizon, optimism=optimism, corrections=False, horizon_known=horizon_known
        )


def make(name: str, n_states: int = 5, **kwargs):
    obs, act = spaces.Discrete(n_states), spaces.Discrete(2)
    if name == "Agent":
        torch.manual_seed(0)
        return Agent(obs, act, seed=0, model=PlainVIModel(CONFIG).double(), **kwargs)
    classes = {c.__name__: c for c in (OptimisticVI, PSRL, UCBVI, VILCB, QLearning, Random)}
    return classes[name](obs, act, seed=0, **kwargs)


def episode(agent, length: int, end: str, start: int = 0) -> None:
    """``length`` steps along a ring of 5 states (action 0), ended as ``end`` says (or left open)."""
    s = start
    for t in range(length):
        last = t == length - 1
        agent.observe(s, 0, 0.0, (s + 1) % 5, last and end == "terminated", last and end == "truncated")
        s = (s + 1) % 5


@pytest.mark.parametrize("name", AGENTS)
def test_horizon_follows_longer_episodes_and_truncations(name):
    agent = make(name)
    assert agent.horizon == DEFAULT_HORIZON
    episode(agent, 3, "open")
    assert agent.horizon == DEFAULT_HORIZON  # nothing ended yet
    agent.reset_episode()  # abandoned: not an episode that ended
    assert agent.horizon == DEFAULT_HORIZON
    expected = [
        (3, "terminated", 6),  # twice the longest episode: room for longer paths
        (5, "terminated", 10),  # a longer episode later: the estimate grows
        (4, "terminated", 10),  # a shorter one: it does not shrink
        (7, "truncated", 7),  # a truncation no episode outran: a time limit
        (2, "truncated", 7),  # a shorter cut: still 7
        (9, "terminated", 18),  # an episode longer than the truncation: it was no limit
        (12, "truncated", 12),  # the longest truncation again caps it
        (12, "terminated", 12),
        (13, "terminated", 26),
    ]
    for length, end, horizon in expected:
        episode(agent, length, end)
        assert agent.horizon == horizon, (name, length, end)
        assert agent.step_of(0) == 0
        agent.act(0)  # acting (and planning) in between must not freeze the estimate


@pytest.mark.parametrize("name", AGENTS)
def test_the_horizon_hint_wins(name):
    agent = make(name, horizon=9)
    episode(agent, 30, "truncated")
    episode(agent, 40, "terminated")
    assert agent.horizon == 9


def chain_episode(agent, moves: list[tuple[int, int]], truncated: bool = True) -> None:
    """Observed steps ``(s, a)`` of a 5-state chain: 0 left (0.05 at state 0), 1 right (1.0 at state 4)."""
    for t, (s, a) in enumerate(moves):
        reward = (0.05 if s == 0 else 0.0) if a == 0 else (1.0 if s == 4 else 0.0)
        s_next = max(s - 1, 0) if a == 0 else min(s + 1, 4)
        agent.observe(s, a, reward, s_next, False, truncated and t == len(moves) - 1)


def exact_q(agent, horizon: int) -> np.ndarray:
    """Exact VI of the agent's empirical MDP: ``[H, S, A]``, row ``k - 1`` with ``k`` steps to go."""
    dense = agent.stats.dense()
    p_hat = dense.transitions / np.maximum(dense.counts, 1)[..., None]
    v, out = np.zeros(p_hat.shape[0]), []
    for _ in range(horizon):
        q = dense.reward_mean + p_hat @ v
        out.append(q)
        v = q.max(-1)
    return np.stack(out)


@pytest.mark.parametrize("name", ["Agent", "OptimisticVI", "PSRL", "UCBVI"])
def test_plans_use_the_refreshed_horizon(name):
    """In the chain the far reward needs 5 steps from state 0: with a horizon of 4 the small reward on the
    left is best at the first step, with 12 the far one. A plan kept with the old horizon picks left."""
    agent = make(name)
    for start in (0, 1, 2, 3):  # time limit 4: every pair tried, the far reward seen
        chain_episode(agent, [(start, 1), (min(start + 1, 4), 1), (min(start + 2, 4), 1), (min(start + 3, 4), 0)])
    chain_episode(agent, [(4, 1), (4, 1), (4, 0), (3, 0)])
    chain_episode(agent, [(0, 0), (0, 0), (0, 1), (1, 0)])
    assert agent.horizon == 4
    assert agent.act(0, deterministic=True) == 0
    if name == "Agent":
        assert agent.act(0) == 0  # the exploring plan: no corrections, the same exact VI
    q_short = exact_q(agent, 4)
    assert q_short[3, 0].argmax() == 0  # 4 steps to go: left
    # one longer episode cut by the time limit: the limit is 12 now
    chain_episode(agent, [(0, 0)] * 12)
    assert agent.horizon == 12
    q_long = exact_q(agent, 12)
    assert q_long[11, 0].argmax() == 1  # 12 steps to go: right
    assert agent.act(0, deterministic=True) == 1
    for t in range(12):  # and at every later step, the steps to go count from the new horizon
        expected = (q_long[11 - t] >= q_long[11 - t].max(-1, keepdims=True) - 1e-9).argmax(-1)
        np.testing.assert_array_equal(agent.policy(step=t, deterministic=True).argmax(-1), expected, err_msg=str(t))
    if name == "Agent":
        assert agent.act(0) == 1


@pytest.mark.parametrize("name", AGENTS)
def test_the_horizon_is_known_once_an_episode_ended_or_hinted(name):
    agent = make(name)
    assert not agent.horizon_known
    episode(agent, 3, "open")
    agent.reset_episode()  # abandoned: not an episode that ended
    assert not agent.horizon_known
    episode(agent, 4, "terminated")
    assert agent.horizon_known
    assert make(name, horizon=9).horizon_known


class RecordingModel(IcrlModel):
    """Records the horizon and whether it is known, at each plan the agent makes."""

    calls: list[tuple[int, bool]]

    def forward_sparse(self, stats, horizon, optimism=True, corrections=True, horizon_known=True):
        self.calls.append((horizon, horizon_known))
        return super().forward_sparse(stats, horizon, optimism=optimism, corrections=corrections,
                                      horizon_known=horizon_known)


@pytest.mark.parametrize("hint", [None, 9])
def test_the_agent_tells_its_model_when_the_horizon_is_a_guess(hint):
    """Horizon-aware optimism (``ModelConfig.optimism_horizon``) must not read the guessed horizon as
    the episode length: before an episode ends, the agent plans with ``horizon_known=False``."""
    torch.manual_seed(0)
    model = RecordingModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2, optimism_horizon=4)).double()
    model.calls = []
    agent = Agent(spaces.Discrete(5), spaces.Discrete(2), seed=0, model=model, horizon=hint)
    episode(agent, 3, "open")
    agent.act(1)
    agent.act(1, deterministic=True)
    guessed = [(DEFAULT_HORIZON, False)] if hint is None else [(hint, True)]
    assert model.calls == guessed * 2
    episode(agent, 3, "truncated", start=3)  # ends the open episode: 6 steps, truncated
    agent.act(0)
    assert model.calls[-1] == (6 if hint is None else hint, True)
