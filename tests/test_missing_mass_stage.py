"""``python -m icrl_agent.pretraining missing-mass``: the true missing mass of a pair, and a copy whose only new part
is the head."""

from __future__ import annotations

import importlib
import math
import pathlib
from types import SimpleNamespace

import pytest
import torch

from icrl_agent.checkpoint import checkpoint_sha256, load_checkpoint, save_checkpoint
from icrl_agent.model import IcrlModel, ModelConfig
from icrl_agent.pretraining import missing_mass as tool
from icrl_agent.pretraining.__main__ import main as pretraining_main
from icrl_agent.pretraining.config import load_config
from icrl_agent.stats import SufficientStats

ROOT = pathlib.Path(__file__).resolve().parents[1]
train_module = importlib.import_module("icrl_agent.pretraining.train")  # the package exports a function named train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def one_pair_batch(seen_states: list[int], terminal_seen: bool) -> SimpleNamespace:
    """One MDP, one pair: P = 0.5 to state 1, 0.3 to state 2, 0.1 to each of the terminal states 3 and 4."""
    probabilities = torch.tensor([0.0, 0.5, 0.3, 0.1, 0.1])
    transitions = torch.zeros(1, 1, 1, 5)
    transitions[0, 0, 0, seen_states] = 1.0  # seen once is seen
    mdps = SimpleNamespace(P=probabilities.view(1, 1, 1, 5),
                           terminal=torch.tensor([[False, False, False, True, True]]))
    stats = SimpleNamespace(transitions=transitions, terminal_counts=torch.full((1, 1, 1), float(terminal_seen)))
    return SimpleNamespace(mdps=mdps, stats=stats)


@pytest.mark.parametrize(
    ("seen", "terminal_seen", "expected"),
    [([1], False, 0.5), ([1], True, 0.3), ([1, 2], False, 0.2), ([1, 2], True, 0.0), ([], False, 1.0)],
)
def test_true_missing_mass_is_the_probability_of_the_outcomes_not_seen(seen, terminal_seen, expected):
    """Every terminal state counts as one outcome: a pair that ended an episode once has shown all of them."""
    missing = tool.true_missing_mass(one_pair_batch(seen, terminal_seen))
    assert missing.shape == (1, 1, 1)
    assert float(missing) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("known", "expected"), [([0, 1, 2], 0.0), ([0, 1], 0.3), ([0], 0.8)])
def test_true_unknown_state_mass_is_the_probability_of_a_non_terminal_state_not_met(known, expected):
    """Terminal states are never the unknown successor, and seen outcomes do not matter, only met states."""
    batch = one_pair_batch([1], terminal_seen=False)
    state_mask = torch.zeros(1, 5, dtype=torch.bool)
    state_mask[0, known] = True
    batch.stats.state_mask = state_mask
    batch.mdps.state_mask = torch.ones(1, 5, dtype=torch.bool)
    assert float(tool.true_unknown_state_mass(batch)) == pytest.approx(expected, abs=1e-6)


def small_source(tmp_path: pathlib.Path, **config) -> tuple[IcrlModel, pathlib.Path]:
    torch.manual_seed(0)
    model = IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2, **config))
    return model, save_checkpoint(tmp_path / "src", model, {"seed": 0, "model": {"d_model": 16}}, {"seed": 0})


def test_the_copy_moves_only_the_head_and_records_how_it_was_made(tmp_path):
    source_model, source = small_source(tmp_path, explore_unknown="untried_only", spread_bonus=0.3,
                                        spread_bonus_per_episode=3)
    out = tmp_path / "copy"
    argv = ["missing-mass", str(source), str(out), "--config", str(ROOT / "configs" / "tiny.yaml"),
            "--steps", "3", "--batch-size", "4", "--eval-batches", "1", "--lr", "0.1", "--target", "unknown_states",
            "--model", "tried_unknown_limited=true"]
    assert pretraining_main(argv) == 0
    model, card = load_checkpoint(out)
    assert model.config.explore_unknown == "learned_missing_mass"
    assert model.config.tried_unknown_limited is True
    trained = card["training"]["missing_mass_head"]
    assert trained["source_sha256"] == checkpoint_sha256(source)
    assert trained["target"] == "unknown_states"
    assert trained["steps"] == 3 and trained["held_out_after"]["bce"] != trained["held_out_before"]["bce"]
    assert trained["model"] == {"tried_unknown_limited": True}
    assert card["training"]["command"] == "python -m icrl_agent.pretraining " + " ".join(argv)
    copied = model.state_dict()
    for name, tensor in source_model.state_dict().items():
        torch.testing.assert_close(copied[name], tensor, rtol=0, atol=0)
    assert model.missing_mass_head.bias.item() != pytest.approx(-2.1972246, abs=1e-6)  # moved from M̂ = 0.1

    from gymnasium import spaces
    stats = SufficientStats(spaces.Discrete(3), spaces.Discrete(2))
    for s, a, r, s2 in [(0, 0, 0.0, 1), (1, 0, 1.0, 2), (2, 1, 0.0, 0), (0, 1, 0.5, 0)]:
        stats.update(s, a, r, s2, False, False)
    with torch.no_grad():
        exploit = model.forward_sparse(stats.sparse(), 10, optimism=False).q
        exploit_source = source_model.forward_sparse(stats.sparse(), 10, optimism=False).q
    torch.testing.assert_close(exploit, exploit_source, rtol=0, atol=0)


def test_a_source_that_does_not_fit_is_refused(tmp_path):
    model = IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2, head="gat_policy"))
    source = save_checkpoint(tmp_path / "gat", model, {"seed": 0}, {"seed": 0})
    with pytest.raises(ValueError, match="does not fit"):
        tool.model_with_head(str(source))


def test_a_source_that_has_the_head_already_is_refused(tmp_path):
    model = IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2, explore_unknown="learned_missing_mass"))
    source = save_checkpoint(tmp_path / "with_head", model, {"seed": 0}, {"seed": 0})
    with pytest.raises(ValueError, match="already has a missing-mass head"):
        tool.model_with_head(str(source))


def test_bucket_names():
    assert [tool.bucket_name(lo, hi) for lo, hi in tool.COUNT_BUCKETS] == ["n1", "n2-3", "n4-9", "n10+"]


@pytest.mark.parametrize(("option", "message"), [
    ("explore_unknown=all_pairs", "--model explore_unknown is set by this command"),
    ("tried_unknown_limited=1", "tried_unknown_limited must be true or false"),
    ("no_such_key=1", "unknown ModelConfig keys"),
    ("tried_unknown_limited", "--model takes key=value"),
])
def test_a_bad_model_option_is_refused_by_name_and_writes_nothing(tmp_path, capsys, option, message):
    _, source = small_source(tmp_path, explore_unknown="untried_only", spread_bonus=0.3, spread_bonus_per_episode=3)
    out = tmp_path / "copy"
    argv = ["missing-mass", str(source), str(out), "--config", str(ROOT / "configs" / "tiny.yaml"), "--steps", "1",
            "--model", option]
    assert pretraining_main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("copy*"))


def test_an_existing_copy_is_refused_before_training_and_kept_unless_forced(tmp_path, capsys):
    """OUT naming weights that exist (shipped ones, e.g. ``icrl_agent/weights/icrl-v2.6``, whose stem has a dot)
    stops the run with an error naming ``--force``, and leaves both files as they were."""
    _, source = small_source(tmp_path, explore_unknown="untried_only", spread_bonus=0.3, spread_bonus_per_episode=3)
    out = tmp_path / "weights-v2.6"
    argv = ["missing-mass", str(source), str(out), "--config", str(ROOT / "configs" / "tiny.yaml"), "--steps", "1",
            "--batch-size", "4", "--eval-batches", "1"]
    assert pretraining_main(argv) == 0
    written = {path: path.read_bytes() for path in tmp_path.glob("weights-v2.6.*")}
    assert len(written) == 2
    assert pretraining_main(argv + ["--lr", "0.5"]) == 2
    assert "--force" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in tmp_path.glob("weights-v2.6.*")} == written
    assert pretraining_main(argv + ["--lr", "0.5", "--force"]) == 0
    assert load_checkpoint(out)[1]["training"]["missing_mass_head"]["lr"] == 0.5


def _last_action_planner(stats):
    """A planner whose greedy action is the last one everywhere."""
    b, s, a = stats.counts.shape
    return torch.arange(a, dtype=torch.float32).expand(b, int(stats.horizon.max()), s, a).clone()


def test_online_examples_are_the_models_own_episodes_and_the_rest_the_configs_data(monkeypatch):
    """``--online-prob``: that share of a step's MDPs holds only 1..``--online-episodes`` episodes of the planner
    (here always its last action, so every count sits there); the others hold ``--config``'s data."""
    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    cfg.data.min_episodes, cfg.data.max_episodes, cfg.data.zero_data_prob = 20, 32, 0.0
    monkeypatch.setattr(train_module, "greedy_planner", lambda model: _last_action_planner)
    random_part, online = tool.step_batches(cfg, None, 8, 0.25, 2, torch.Generator().manual_seed(0))
    assert (random_part.mdps.batch_size, online.mdps.batch_size) == (6, 2)
    assert bool((random_part.stats.initial_counts.sum(-1) >= 20).all())
    episodes = online.stats.initial_counts.sum(-1)
    assert bool(((episodes >= 1) & (episodes <= 2)).all())
    last = online.mdps.action_mask.sum(-1) - 1
    counts = online.stats.counts
    on_last = counts.gather(2, last[:, None, None].expand(-1, counts.shape[1], 1)).sum((1, 2))
    assert bool((on_last == counts.sum((1, 2))).all()) and bool((on_last > 0).all())


def test_without_online_examples_a_step_draws_what_it_drew_before_the_option():
    """``--online-prob 0`` (the default, the shipped icrl-v2.6's command) keeps the draws of one batch."""
    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    (only,) = tool.step_batches(cfg, None, 8, 0.0, 16, torch.Generator().manual_seed(3))
    (expected,) = tool.batches(cfg, 1, 8, torch.Generator().manual_seed(3))
    assert torch.equal(only.mdps.R, expected.mdps.R) and torch.equal(only.stats.counts, expected.stats.counts)


def test_a_steps_loss_weighs_each_batch_by_its_share_of_the_mdps(monkeypatch):
    losses = {3: torch.tensor(1.0), 1: torch.tensor(5.0)}
    monkeypatch.setattr(tool, "head_loss", lambda model, batch, target: losses[len(batch.mdps.P)])
    step = [SimpleNamespace(mdps=SimpleNamespace(P=torch.zeros(n, 2))) for n in (3, 1)]
    assert float(tool.step_loss(None, step, "unknown_states")) == pytest.approx(0.75 * 1.0 + 0.25 * 5.0)


def test_a_copy_trained_on_its_own_episodes_records_them(tmp_path):
    _, source = small_source(tmp_path, explore_unknown="untried_only", spread_bonus=0.3, spread_bonus_per_episode=3)
    out = tmp_path / "copy"
    argv = ["missing-mass", str(source), str(out), "--config", str(ROOT / "configs" / "tiny.yaml"), "--steps", "2",
            "--batch-size", "4", "--eval-batches", "1", "--online-prob", "0.5", "--online-episodes", "3"]
    assert pretraining_main(argv) == 0
    trained = load_checkpoint(out)[1]["training"]["missing_mass_head"]
    assert (trained["online_prob"], trained["online_episodes"]) == (0.5, 3)


@pytest.mark.parametrize(("option", "message"), [
    (["--online-prob", "1.5"], "--online-prob is a share of each step's MDPs, between 0 and 1"),
    (["--online-episodes", "0"], "--online-episodes must each be at least 1"),
])
def test_a_bad_online_option_is_refused_by_name_and_writes_nothing(tmp_path, capsys, option, message):
    _, source = small_source(tmp_path, explore_unknown="untried_only", spread_bonus=0.3, spread_bonus_per_episode=3)
    argv = ["missing-mass", str(source), str(tmp_path / "copy"), "--config", str(ROOT / "configs" / "tiny.yaml"),
            *option]
    with pytest.raises(SystemExit):
        pretraining_main(argv)
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("copy*"))


def test_the_tried_pairs_are_the_real_pairs_of_known_states_with_a_count():
    """Padded states and actions never count, nor an untried pair, and one try is enough."""
    counts = torch.tensor([[[0.0, 1.0, 3.0], [2.0, 0.0, 5.0], [4.0, 1.0, 0.0]]])
    stats = SimpleNamespace(counts=counts, state_mask=torch.tensor([[True, True, False]]),
                            action_mask=torch.tensor([[True, True, False]]))
    expected = torch.tensor([[[False, True, False], [True, False, False], [False, False, False]]])
    assert torch.equal(tool.tried_pairs(SimpleNamespace(stats=stats)), expected)


def test_the_head_loss_is_the_cross_entropy_over_tried_pairs_with_predictions_kept_off_0_and_1():
    """By default against the unseen outcomes' mass. A prediction of exactly 1 where the truth is 0 (or 0 where it
    is 1) costs ``-log(1e-6)``, not the 100 torch's cross-entropy caps it at; untried pairs do not count."""
    batch = one_pair_batch([1], terminal_seen=False)  # true unseen mass 0.5
    batch.stats.counts = torch.ones(1, 1, 1)
    batch.stats.state_mask = torch.ones(1, 1, dtype=torch.bool)
    batch.stats.action_mask = torch.ones(1, 1, dtype=torch.bool)
    half = SimpleNamespace(missing_mass=lambda stats: torch.full((1, 1, 1), 0.5))
    assert float(tool.head_loss(half, batch)) == pytest.approx(math.log(2.0), rel=1e-6)
    batch.mdps.P = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]).view(1, 1, 1, 5)  # every outcome seen: M = 0
    sure = SimpleNamespace(missing_mass=lambda stats: torch.ones(1, 1, 1))
    assert float(tool.head_loss(sure, batch)) == pytest.approx(-math.log(1e-6), rel=2e-3)  # float32's 1 - 1e-6
    batch.mdps.P = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]).view(1, 1, 1, 5)  # nothing seen of it: M = 1
    never = SimpleNamespace(missing_mass=lambda stats: torch.zeros(1, 1, 1))
    assert float(tool.head_loss(never, batch)) == pytest.approx(-math.log(1e-6), rel=2e-3)  # float32's 1 - 1e-6
    batch.stats.counts = torch.cat([torch.ones(1, 1, 1), torch.zeros(1, 1, 1)], 2)  # a second pair, untried
    batch.stats.action_mask = torch.ones(1, 2, dtype=torch.bool)
    batch.mdps.P = torch.tensor([0.0, 0.5, 0.3, 0.1, 0.1]).view(1, 1, 1, 5).expand(1, 1, 2, 5)
    batch.stats.transitions = batch.stats.transitions.expand(1, 1, 2, 5)
    batch.stats.terminal_counts = torch.zeros(1, 1, 2)
    wrong_on_untried = SimpleNamespace(missing_mass=lambda stats: torch.tensor([[[0.5, 1e-6]]]))
    assert float(tool.head_loss(wrong_on_untried, batch)) == pytest.approx(math.log(2.0), rel=1e-6)


def test_a_step_of_own_episodes_only_draws_one_batch_with_up_to_online_episodes_each(monkeypatch):
    """``--online-prob 1``: no uniform batch at all; ``--online-episodes`` (here 3, the config's DAgger 1) sets how
    many episodes; the same generator seed draws the same step."""
    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    cfg.data.dagger_episodes = 1
    monkeypatch.setattr(train_module, "greedy_planner", lambda model: _last_action_planner)
    (online,) = tool.step_batches(cfg, None, 8, 1.0, 3, torch.Generator().manual_seed(1))
    episodes = online.stats.initial_counts.sum(-1)
    assert online.mdps.batch_size == 8
    assert bool(((episodes >= 1) & (episodes <= 3)).all()) and bool((episodes > 1).any())
    (again,) = tool.step_batches(cfg, None, 8, 1.0, 3, torch.Generator().manual_seed(1))
    assert torch.equal(online.stats.counts, again.stats.counts)


def test_the_targets_stay_in_0_1_when_a_row_of_p_sums_a_rounding_error_above_1():
    """Binary cross-entropy refuses targets outside [0, 1], and float rows of ``P`` may sum to ``1 + eps``."""
    batch = one_pair_batch([1, 2], terminal_seen=True)
    batch.mdps.P = torch.tensor([0.0, 0.5, 0.3, 0.1, 0.1 + 1e-6]).view(1, 1, 1, 5)
    assert float(tool.true_missing_mass(batch)) == 0.0
    batch.stats.state_mask = torch.tensor([[True, False, False, False, False]])
    batch.mdps.state_mask = torch.ones(1, 5, dtype=torch.bool)
    batch.mdps.terminal = torch.zeros(1, 5, dtype=torch.bool)  # every state unmet but the start
    assert float(tool.true_unknown_state_mass(batch)) == 1.0
