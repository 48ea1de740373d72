"""A rejected input changes nothing, for ``Agent`` and every baseline (API.md: "leaves the agent's statistics
as they were").

Each rejected ``observe`` comes with a new but valid observation (so a half-done update would index it),
a large valid reward where the reward is not the fault (so a reward-scale estimate updated too early
shows), a ``truncated`` flag (so an episode ended too early shows in the horizon), and happens in the middle
of an episode. After each: the statistics, the reward-scale estimates, the known states, the horizon and
the RNG are as before, and the agent then acts exactly as a twin that never saw the bad calls.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from icrl_agent.agent import Agent
from icrl_agent.baselines import PSRL, UCBVI, VILCB, OptimisticVI, QLearning, Random
from icrl_agent.model import IcrlModel, ModelConfig

OBS_SPACE = spaces.Discrete(6, start=1)  # observations 1..6
ACT_SPACE = spaces.Discrete(3, start=-1)  # actions -1, 0, 1
NEW_OBS = 5  # valid, never seen before the bad calls
BASELINES = (OptimisticVI, PSRL, UCBVI, VILCB, QLearning, Random)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2)).eval()


def make(name: str, small_model: IcrlModel):
    if name == "Agent":
        return Agent(OBS_SPACE, ACT_SPACE, seed=3, model=small_model)
    return {cls.__name__: cls for cls in BASELINES}[name](OBS_SPACE, ACT_SPACE, seed=3)


def history(agent) -> None:
    """Two 4-step episodes (truncated: the horizon is 4), then an open episode 2 steps in."""
    for _ in range(2):
        for t, (s, a, r, s_next) in enumerate([(1, 0, 0.5, 2), (2, 1, -0.25, 3), (3, -1, 0.0, 1), (1, 1, 0.0, 2)]):
            agent.act(s)
            agent.observe(s, a, r, s_next, False, t == 3)
    agent.observe(1, 1, 0.0, 2, False, False)
    agent.observe(2, 0, 0.25, 3, False, False)


BAD_CALLS = {
    "invalid action": (NEW_OBS, 2, 1000.0, 1, False, True),
    "non-integer action": (NEW_OBS, 0.5, 1000.0, 1, False, True),
    "NaN reward": (NEW_OBS, 0, float("nan"), 1, False, True),
    "infinite reward": (NEW_OBS, 0, float("inf"), 1, False, True),
    "next_obs outside the space": (NEW_OBS, 0, 1000.0, 7, False, True),
    "next_obs outside the space, terminated": (NEW_OBS, 0, 1000.0, 0, True, False),
    "obs outside the space": (0, 0, 1000.0, NEW_OBS, False, True),
    "flag not a bool": (NEW_OBS, 0, 1000.0, 1, "yes", True),
}


def snapshot(agent) -> dict:
    arrays, meta = agent.stats.state_dict()
    return {
        "arrays": {k: v.copy() for k, v in arrays.items()},
        "meta": meta,
        "reward_min_seen": agent.reward_min_seen,
        "reward_max_seen": agent.reward_max_seen,
        "reward_scale": agent.reward_scale,
        "reward_span": agent.reward_span,
        "n_states": agent.stats.n_states,
        "new_obs_known": agent.stats.state_id(NEW_OBS) is not None,
        "horizon": agent.horizon,
        "step": agent.step_of(0),
        "rng": agent.rng.bit_generator.state,
    }


def assert_same(after: dict, before: dict, what: str) -> None:
    for key, value in before.items():
        if key == "arrays":
            assert after[key].keys() == value.keys(), what
            for name, array in value.items():
                np.testing.assert_array_equal(after[key][name], array, err_msg=f"{what}: stats {name}")
        else:
            assert after[key] == value, f"{what}: {key} was {value!r}, now {after[key]!r}"


def play(agent, steps: int = 12) -> list:
    """A fixed sequence of transitions after the bad calls; the actions the agent chose along the way."""
    actions = []
    for i in range(steps):
        s = 1 + i % 5
        actions.append((agent.act(s), agent.act(s, deterministic=True)))
        agent.observe(s, (i % 3) - 1, float(i % 4 == 0), 1 + (i + 1) % 5, False, i % 6 == 5)
    return actions


@pytest.mark.parametrize("name", ["Agent"] + [cls.__name__ for cls in BASELINES])
def test_rejected_observe_changes_nothing(name, small_model):
    agent, twin = make(name, small_model), make(name, small_model)
    history(agent)
    history(twin)
    assert agent.horizon == 4 and agent.reward_scale == 0.5 and agent.stats.n_states == 3
    before = snapshot(agent)
    for what, call in BAD_CALLS.items():
        with pytest.raises(ValueError):
            agent.observe(*call)
        assert_same(snapshot(agent), before, f"{name}, {what}")
    # the agent's later behaviour is that of a twin that never saw the bad calls
    assert play(agent) == play(twin)
    np.testing.assert_array_equal(agent.policy(), twin.policy())


@pytest.mark.parametrize("name", ["Agent"] + [cls.__name__ for cls in BASELINES])
def test_rejected_act_predict_and_fit_change_nothing(name, small_model):
    agent = make(name, small_model)
    history(agent)
    before = snapshot(agent)
    bad_dataset = {
        "observations": np.array([NEW_OBS, 1]),
        "actions": np.array([0, 0]),
        "rewards": np.array([1000.0, np.nan]),
        "next_observations": np.array([1, 2]),
        "terminations": np.array([False, True]),
    }
    calls = {
        "act outside the space": lambda: agent.act(7),
        "predict with a bad row": lambda: agent.predict(np.array([NEW_OBS, 9]), episode_start=np.array([True, True])),
        "fit with a NaN reward": lambda: agent.fit(bad_dataset),
        "fit with an action outside the space": lambda: agent.fit({**bad_dataset, "rewards": np.zeros(2),
                                                                   "actions": np.array([0, 4])}),
    }
    for what, call in calls.items():
        with pytest.raises(ValueError):
            call()
        assert_same(snapshot(agent), before, f"{name}, {what}")
