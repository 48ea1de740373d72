"""tools/optimism_objectives.py: its teacher is hinted OptimisticVI, and a fit moves only the exploring plan's outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script

from baselines import OptimisticVI
from icrl_agent.agent import shipped_weights_path
from icrl_agent.checkpoint import load_checkpoint
from icrl_agent.env_info import make_env
from icrl_agent.model_inputs import StatsBatch
from icrl_agent.stats import SufficientStats

tool = load_script(Path(__file__).resolve().parents[1] / "tools" / "optimism_objectives.py")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def stats_batch(stats: SufficientStats, horizon: int) -> StatsBatch:
    """One MDP's statistics as a dense batch (every known state real)."""
    dense = stats.dense()
    n_states, n_actions = dense.counts.shape
    as_tensor = lambda x: torch.tensor(np.asarray(x), dtype=torch.float32)[None]  # noqa: E731
    return StatsBatch(
        counts=as_tensor(dense.counts), reward_mean=as_tensor(dense.reward_mean),
        reward_var=as_tensor(dense.reward_var), transitions=as_tensor(dense.transitions),
        terminal_counts=as_tensor(dense.terminal_counts), initial_counts=as_tensor(dense.initial_counts),
        state_mask=torch.ones(1, n_states, dtype=torch.bool), action_mask=torch.ones(1, n_actions, dtype=torch.bool),
        horizon=torch.tensor([horizon]),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_teacher_is_the_plan_of_optimistic_vi_told_horizon_and_reward_max(seed):
    env = make_env("FrozenLake4x4")  # stochastic moves, terminal holes, one rewarding goal
    horizon = env.unwrapped.horizon
    agent = OptimisticVI(env.observation_space, env.action_space, seed=seed, horizon=horizon, reward_max=1.0)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(300):
        action = int(rng.integers(env.action_space.n))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        agent.observe(obs, action, reward, next_obs, terminated, truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
    assert (agent.stats.sparse().counts == 0).any() and agent.stats.sparse().terminal_counts.any()
    expected = agent._make_plan(horizon, optimistic=True)
    q = tool.hinted_optimistic_q(stats_batch(agent.stats, horizon), torch.tensor([1.0]))
    np.testing.assert_allclose(q[0].numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("objective", tool.OBJECTIVES)
def test_a_fit_moves_only_the_exploring_outputs(tmp_path, objective):
    """Kappa, the bonus gain, the bonus row of the per-pair head and the scale head may move; nothing that the
    exploitation plan reads does, and the card records the command."""
    out = tmp_path / "fit"
    argv = ["--objective", objective, "--steps", "2", "--batch", "4", "--online-episodes", "2", "--lr", "0.05",
            "--out", str(out)]
    tool.main(argv)
    before, _ = load_checkpoint(shipped_weights_path())
    after, card = load_checkpoint(out)
    old, new = before.state_dict(), after.state_dict()
    moved = {name for name in old if not torch.equal(old[name], new[name])}
    allowed = {"kappa_raw", "log_bonus_gain", "sa_head.2.weight", "sa_head.2.bias"} | {
        f"scale_head.{n}" for n, _ in before.scale_head.named_parameters()}
    assert moved and moved <= allowed
    for name in ("sa_head.2.weight", "sa_head.2.bias"):
        rows = [r for r in range(4) if not torch.equal(old[name][r], new[name][r])]
        assert rows in ([], [tool.BONUS_ROW])
    assert card["training"]["command"] == "python tools/optimism_objectives.py " + " ".join(argv)


def test_no_scale_head_keeps_the_scale_head_and_explore_untried_is_saved(tmp_path):
    out = tmp_path / "fit"
    tool.main(["--objective", "teacher", "--steps", "1", "--batch", "4", "--online-episodes", "2", "--lr", "0.05",
               "--no-scale-head", "--explore-untried", "--out", str(out)])
    before, _ = load_checkpoint(shipped_weights_path())
    after, _ = load_checkpoint(out)
    assert after.config.explore_unknown == "untried_only"
    for (name, old), new in zip(before.scale_head.named_parameters(), after.scale_head.parameters(), strict=True):
        assert torch.equal(old, new), name
    assert not torch.equal(before.kappa_raw, after.kappa_raw)


@pytest.mark.parametrize("argv", [["--quantile", "1.0"], ["--estimates", "1"], ["--out", "x"], ["--batch", "1"]])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit):
        tool.main(["--objective", "q", *argv])
