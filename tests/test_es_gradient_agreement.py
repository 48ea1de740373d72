"""tools/es_gradient_agreement.py: how much of an ES gradient estimate is signal."""

from __future__ import annotations

import json
import math
import pathlib

import pytest
import torch
import yaml
from conftest import load_script

from icrl_agent.pretraining import distributed
from icrl_agent.pretraining.config import load_config
from icrl_agent.pretraining.train import build_model, es_gradient

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "es_gradient_agreement.py"
tool = load_script(TOOL)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_identical_estimates_are_all_signal_and_orthogonal_ones_none():
    g = torch.randn(50, generator=torch.Generator().manual_seed(0))
    same = tool.agreement(torch.stack([g, 2 * g, 0.5 * g]))
    assert same["cosine_mean"] == pytest.approx(1.0) and same["noise_to_signal"] == pytest.approx(0.0, abs=1e-6)
    apart = tool.agreement(torch.eye(4))
    assert apart["cosine_mean"] == 0.0 and apart["signal_share"] == 0.0 and math.isinf(apart["noise_to_signal"])


def test_a_gradient_plus_as_much_independent_noise_is_half_signal():
    gen = torch.Generator().manual_seed(1)
    n = 20000
    g = torch.randn(n, generator=gen)
    grads = torch.stack([g + torch.randn(n, generator=gen) for _ in range(6)])
    out = tool.agreement(grads)
    assert out["cosine_mean"] == pytest.approx(0.5, abs=0.02)
    assert out["noise_to_signal"] == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ValueError, match="at least 2 estimates"):
        tool.agreement(grads[:1])


@pytest.fixture
def config(tmp_path) -> pathlib.Path:
    cfg = {
        "seed": 0, "log_dir": "", "model": {"d_model": 16, "n_heads": 2, "n_rounds": 2},
        "prior": {"family_weights": {"garnet": 1, "river": 1}, "held_out": [], "max_states": 6,
                  "max_actions": 3, "min_horizon": 4, "max_horizon": 6},
        "stage1": {"steps": 0},
        "es": {"generations": 1, "pairs": 2, "mdps": 4, "episodes": 4, "max_horizon": 6, "parameters": "heads",
               "sigma": 0.5},
    }
    path = tmp_path / "es.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_estimates_come_from_independent_draws_and_leave_the_weights(config):
    cfg = load_config(config)
    grads = tool.gradient_estimates(cfg, 3)
    n_params = sum(p.numel() for p in build_model(cfg, torch.device("cpu")).es_parameters("heads"))
    assert grads.shape == (3, n_params) and torch.isfinite(grads).all()
    assert not torch.equal(grads[0], grads[1]) and not torch.equal(grads[1], grads[2])
    torch.testing.assert_close(tool.gradient_estimates(cfg, 3), grads, rtol=0, atol=0)  # reproducible
    model = build_model(cfg, torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    info = distributed.DistInfo()  # one process, on the CPU
    torch.testing.assert_close(es_gradient(cfg, model, 1, info)[0], grads[1], rtol=0, atol=0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the estimate moves nothing


def test_the_cli_reports_json_and_refuses_one_estimate(config, capsys):
    tool.main(["--config", str(config), "--estimates", "2", "--pairs", "3", "--sigma", "0.2"])
    report = json.loads(capsys.readouterr().out)
    assert report["pairs"] == 3 and report["sigma"] == 0.2 and report["mdps"] == 4 and report["estimates"] == 2
    assert -1.0 <= report["cosine_mean"] <= 1.0
    with pytest.raises(SystemExit):
        tool.main(["--config", str(config), "--estimates", "1"])
    assert "--estimates must be at least 2" in capsys.readouterr().err
