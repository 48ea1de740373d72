"""tools/override_constants.py: a checkpoint copy with optimism constants or planning options replaced."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import torch
from conftest import load_script

from icrl_agent.checkpoint import checkpoint_sha256, load_checkpoint, save_checkpoint
from icrl_agent.model import IcrlModel, ModelConfig
from icrl_agent.stats import SufficientStats

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "override_constants.py"
tool = load_script(TOOL)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def source(tmp_path) -> pathlib.Path:
    torch.manual_seed(0)
    model = IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2, init_kappa=2.0, init_bonus=0.003))
    config = {"seed": 0, "model": {"d_model": 16, "n_heads": 2, "n_rounds": 2}}
    return save_checkpoint(tmp_path / "src", model, config, {"seed": 0})


def explore_q(model: IcrlModel, horizon: int = 30) -> np.ndarray:
    """The exploring plan after a few steps of play in a 3-state, 2-action world."""
    from gymnasium import spaces

    stats = SufficientStats(spaces.Discrete(3), spaces.Discrete(2))
    for s, a, r, s2 in [(0, 0, 0.0, 1), (1, 0, 1.0, 2), (2, 1, 0.0, 0), (0, 1, 0.5, 0)]:
        stats.update(s, a, r, s2, False, False)
    with torch.no_grad():
        return model.forward_sparse(stats.sparse(), horizon).q.numpy()


def test_the_copy_has_the_new_constants_and_options_and_every_other_tensor(source, tmp_path):
    before = checkpoint_sha256(source)
    out = tool.override(source, tmp_path / "copy", {"kappa": 10.0, "bonus": 0.05}, {"optimism_horizon": 20})
    original, _ = load_checkpoint(source)
    copy, card = load_checkpoint(out)
    after = copy.optimism_constants()
    assert after["kappa"] == pytest.approx(10.0, rel=1e-6)
    assert after["bonus"] == pytest.approx(0.05, rel=1e-6)
    kept = original.optimism_constants()
    assert after["unknown"] == kept["unknown"] and after["scale_gain"] == kept["scale_gain"]
    assert copy.config.optimism_horizon == 20 and original.config.optimism_horizon is None
    assert card["config"]["model"]["optimism_horizon"] == 20  # the run config stays in step
    changed = {"log_bonus_gain", "kappa_raw"}
    theirs = original.state_dict()
    for name, tensor in copy.state_dict().items():
        assert torch.equal(tensor, theirs[name]) != (name in changed), name
    record = card["training"]["override"]
    assert record["source_sha256"] == before and record["constants"] == {"kappa": 10.0, "bonus": 0.05}
    assert record["model"] == {"optimism_horizon": 20}
    assert card["training"]["command"] == (
        f"python tools/override_constants.py {source} {tmp_path / 'copy'} --kappa 10 --bonus 0.05 "
        "--model optimism_horizon=20"
    )
    assert checkpoint_sha256(source) == before  # the source is untouched
    assert np.abs(explore_q(copy) - explore_q(original)).max() > 1e-3  # and the plan moves


def test_no_override_gives_a_copy_that_plans_the_same(source, tmp_path):
    copy, _ = load_checkpoint(tool.override(source, tmp_path / "copy", {}, {}))
    original, _ = load_checkpoint(source)
    np.testing.assert_array_equal(explore_q(copy), explore_q(original))


def test_the_stored_kappa_is_softplus_inverse_and_the_gains_are_logs(source):
    model, _ = load_checkpoint(source)
    model.set_optimism_constants({"kappa": 3.0, "bonus": 0.1, "scale_gain": 8.0})
    assert model.kappa_raw.item() == pytest.approx(math.log(math.expm1(3.0)))
    assert model.log_bonus_gain.item() == pytest.approx(math.log(0.1))
    assert model.log_scale_gain.item() == pytest.approx(math.log(8.0))
    assert model.optimism_constants() == pytest.approx(
        {"bonus": 0.1, "unknown": math.exp(model.log_unknown_gain.item()), "kappa": 3.0, "scale_gain": 8.0}
    )


@pytest.mark.parametrize(
    ("constants", "options", "message"),
    [
        ({"kapa": 1.0}, {}, "unknown optimism constants \\['kapa'\\]"),
        ({"kappa": 0.0}, {}, "optimism constant kappa must be a number > 0"),
        ({"scale_gain": -1.0}, {}, "optimism constant scale_gain must be a number > 0"),
        ({}, {"optimism_horizon": 0}, "optimism_horizon must be None or a positive int"),
        ({}, {"optimism": 1}, "unknown ModelConfig keys \\['optimism'\\]"),
    ],
)
def test_bad_overrides_are_refused_by_name_and_nothing_is_written(source, tmp_path, constants, options, message):
    with pytest.raises(ValueError, match=message):
        tool.override(source, tmp_path / "copy", constants, options)
    assert not list(tmp_path.glob("copy*"))


def test_writing_over_the_source_is_refused(source):
    with pytest.raises(ValueError, match="is the source checkpoint"):
        tool.override(source, source.with_suffix(""), {"kappa": 3.0}, {})


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("optimism_horizon=20", ("optimism_horizon", 20)), ("optimism_horizon=null", ("optimism_horizon", None)),
     ("exploit_unknown=non_terminal", ("exploit_unknown", "non_terminal"))],
)
def test_model_options_are_read_as_json_else_as_strings(text, parsed):
    assert tool.parse_model_option(text) == parsed


@pytest.mark.parametrize("text", ["optimism_horizon", "=3"])
def test_a_model_option_without_key_and_value_is_refused(text):
    with pytest.raises(ValueError, match="--model takes key=value"):
        tool.parse_model_option(text)


def test_the_command_line_passes_every_constant_and_option(source, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli"
    argv = ["override_constants.py", str(source), str(out), "--bonus", "0.02", "--unknown", "0.5", "--kappa", "4",
            "--scale-gain", "1.5", "--model", "optimism_horizon=30", "--model", "exploit_unknown=non_terminal"]
    monkeypatch.setattr("sys.argv", argv)
    tool.main()
    copy, card = load_checkpoint(out)
    assert copy.optimism_constants() == pytest.approx({"bonus": 0.02, "unknown": 0.5, "kappa": 4.0, "scale_gain": 1.5})
    assert copy.config.optimism_horizon == 30 and copy.config.exploit_unknown == "non_terminal"
    assert "kappa 4" in capsys.readouterr().out


def test_the_copy_can_take_a_constants_ablations_per_pair_outputs_for_every_pair(source, tmp_path):
    """``--pair-outputs-from``: the per-pair head's last layer outputs the ablation's four numbers whatever it reads;
    every other tensor is the source's, and the card records the ablation and its outputs."""
    torch.manual_seed(1)
    ablation = IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2, encoder="none"))
    with torch.no_grad():
        ablation.sa_head[-1].bias.copy_(torch.tensor([0.5, -1.0, 2.0, 0.25]))
    ablation_path = save_checkpoint(tmp_path / "ablation", ablation, {"seed": 0}, {"seed": 0})
    out = tool.override(source, tmp_path / "copy", {}, {}, pair_outputs_from=ablation_path)
    copy, card = load_checkpoint(out)
    with torch.no_grad():
        expected = ablation.sa_head(torch.zeros(1, 48))[0]
        for _ in range(3):
            torch.testing.assert_close(copy.sa_head(torch.randn(5, 48)), expected.expand(5, 4))
    original = load_checkpoint(source)[0].state_dict()
    for name, tensor in copy.state_dict().items():
        assert torch.equal(tensor, original[name]) != name.startswith("sa_head.2."), name
    record = card["training"]["override"]["pair_outputs_from"]
    assert record["sha256"] == checkpoint_sha256(ablation_path)
    assert record["outputs"] == pytest.approx(expected.tolist())
    assert card["training"]["command"].endswith(f"--pair-outputs-from {ablation_path}")


def test_per_pair_outputs_are_taken_only_from_a_constants_ablation(source, tmp_path):
    with pytest.raises(ValueError, match="give a constants ablation"):
        tool.override(source, tmp_path / "copy", {}, {}, pair_outputs_from=source)
    assert not list(tmp_path.glob("copy*"))


def test_the_copy_can_take_a_constants_ablations_count_only_missing_mass(tmp_path):
    """``--missing-mass-from``: the copy's ``M̂`` is the ablation's function of count and impurity, whatever the
    embeddings; only the head's tensors change."""
    torch.manual_seed(0)
    with_head = {"d_model": 16, "n_heads": 2, "n_rounds": 2, "explore_unknown": "learned_missing_mass"}
    network = IcrlModel(ModelConfig(**with_head))
    source = save_checkpoint(tmp_path / "src", network, {"seed": 0}, {"seed": 0})
    ablation = IcrlModel(ModelConfig(**with_head, encoder="none"))
    with torch.no_grad():
        ablation.missing_mass_head.weight.normal_()
        ablation.missing_mass_head.bias.fill_(-1.5)
    ablation_path = save_checkpoint(tmp_path / "ablation", ablation, {"seed": 0}, {"seed": 0})
    copy, card = load_checkpoint(tool.override(source, tmp_path / "copy", {}, {}, missing_mass_from=ablation_path))
    inputs = torch.randn(6, 48 + 3)
    zero_embeddings = inputs.clone()
    zero_embeddings[:, :48] = 0.0
    with torch.no_grad():
        torch.testing.assert_close(copy.missing_mass_head(inputs), ablation.missing_mass_head(zero_embeddings))
    for name, tensor in copy.state_dict().items():
        assert torch.equal(tensor, network.state_dict()[name]) != name.startswith("missing_mass_head."), name
    assert card["training"]["override"]["missing_mass_from"]["sha256"] == checkpoint_sha256(ablation_path)


def test_a_count_only_missing_mass_needs_a_constants_ablation_and_two_heads(source, tmp_path):
    with pytest.raises(ValueError, match="give a constants ablation"):
        tool.override(source, tmp_path / "copy", {}, {}, missing_mass_from=source)
    ablation = IcrlModel(ModelConfig(d_model=16, n_heads=2, n_rounds=2, encoder="none"))
    ablation_path = save_checkpoint(tmp_path / "ablation", ablation, {"seed": 0}, {"seed": 0})
    with pytest.raises(ValueError, match="both checkpoints need a missing-mass head"):
        tool.override(source, tmp_path / "copy", {}, {}, missing_mass_from=ablation_path)
    assert not list(tmp_path.glob("copy*"))


def test_an_ablation_of_another_width_is_refused_by_name(source, tmp_path):
    ablation = IcrlModel(ModelConfig(d_model=8, n_heads=2, n_rounds=2, encoder="none"))
    ablation_path = save_checkpoint(tmp_path / "narrow", ablation, {"seed": 0}, {"seed": 0})
    with pytest.raises(ValueError, match="d_model 8, this model 16"):
        tool.override(source, tmp_path / "copy", {}, {}, pair_outputs_from=ablation_path)
    assert not list(tmp_path.glob("copy*"))
