"""Checkpoints: exact round trip, and every corrupt, mismatched or pickled file refused clearly."""

from __future__ import annotations

import json
import pathlib
import pickle

import numpy as np
import pytest
import safetensors.torch
import torch

from icrl_agent.checkpoint import checkpoint_paths, checkpoint_sha256, load_checkpoint, save_checkpoint
from icrl_agent.model import IcrlModel, ModelConfig
from icrl_agent.model_inputs import StatsBatch

CONFIG = ModelConfig(d_model=16, n_heads=2, n_rounds=2)


def small_model(**overrides) -> IcrlModel:
    torch.manual_seed(0)
    return IcrlModel(ModelConfig(**{**vars(CONFIG), **overrides}))


def tiny_batch() -> StatsBatch:
    rng = np.random.default_rng(0)
    transitions = torch.as_tensor(rng.integers(0, 3, (1, 4, 2, 4)), dtype=torch.float32)
    counts = transitions.sum(-1)
    return StatsBatch(
        counts=counts,
        reward_mean=torch.as_tensor(rng.normal(size=(1, 4, 2)), dtype=torch.float32),
        reward_var=torch.zeros(1, 4, 2),
        transitions=transitions,
        terminal_counts=torch.zeros(1, 4, 2),
        initial_counts=torch.tensor([[1.0, 0, 0, 0]]),
        state_mask=torch.ones(1, 4, dtype=torch.bool),
        action_mask=torch.ones(1, 2, dtype=torch.bool),
        horizon=torch.tensor([5]),
    )


@pytest.fixture
def saved(tmp_path) -> tuple[pathlib.Path, IcrlModel]:
    model = small_model()
    save_checkpoint(tmp_path / "ckpt", model, {"lr": 1e-3}, {"seed": 0, "steps": 10, "metrics": {"acc": 0.5}})
    return tmp_path / "ckpt", model


def test_round_trip_is_exact(saved):
    stem, model = saved
    loaded, card = load_checkpoint(stem)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.config == model.config and not loaded.training
    torch.testing.assert_close(loaded(tiny_batch()).q, model(tiny_batch()).q, atol=0, rtol=0)
    assert card["config"] == {"lr": 1e-3} and card["training"]["steps"] == 10
    assert card["sha256"] == checkpoint_sha256(stem) and card["format_version"] == 1
    assert card["model_config"]["d_model"] == 16


def test_every_path_form_finds_the_same_checkpoint(tmp_path, saved):
    stem, _ = saved
    for form in (stem, f"{stem}.safetensors", f"{stem}.json"):
        assert checkpoint_paths(form) == (pathlib.Path(f"{stem}.safetensors"), pathlib.Path(f"{stem}.json"))
        load_checkpoint(form)
    save_checkpoint(tmp_path, small_model(), {}, {})  # a directory gets model.safetensors + model.json
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "model.json").is_file()
    load_checkpoint(tmp_path)


def test_a_run_directory_with_one_named_checkpoint_loads(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "icrl-custom", small_model(), {}, {})  # what a pretraining out_dir holds
    assert checkpoint_paths(run) == (run / "icrl-custom.safetensors", run / "icrl-custom.json")
    load_checkpoint(run)
    save_checkpoint(run / "another", small_model(), {}, {})  # two candidates: ambiguous, no guess
    with pytest.raises(FileNotFoundError):
        load_checkpoint(run)


def test_float64_model_round_trips_in_float64(tmp_path):
    model = small_model().double()
    save_checkpoint(tmp_path / "d", model, {}, {})
    loaded, _ = load_checkpoint(tmp_path / "d")
    assert next(loaded.parameters()).dtype == torch.float64


def test_corrupt_bytes_are_detected(saved):
    stem, _ = saved
    weights = pathlib.Path(f"{stem}.safetensors")
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # inside the tensor data: the header still parses
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt.*sha256.*re-download"):
        load_checkpoint(stem)


def test_truncated_file_and_broken_card_are_detected(saved):
    stem, _ = saved
    card = pathlib.Path(f"{stem}.json")
    card.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(stem)
    weights = pathlib.Path(f"{stem}.safetensors")
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ValueError, match="safetensors"):
        load_checkpoint(stem)


def test_wrong_shapes_are_refused(saved):
    stem, _ = saved
    weights, card_path = checkpoint_paths(stem)
    tensors = safetensors.torch.load_file(str(weights))
    name = "round.query.weight"
    tensors[name] = torch.zeros(8, 16)
    safetensors.torch.save_file(tensors, str(weights))
    card = json.loads(card_path.read_text())
    card["sha256"] = checkpoint_sha256(weights)  # a consistent file, just the wrong architecture
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"does not match.*round\.query\.weight has shape \(8, 16\)"):
        load_checkpoint(stem)


def test_config_that_does_not_match_the_weights_is_refused(saved):
    stem, _ = saved
    _, card_path = checkpoint_paths(stem)
    card = json.loads(card_path.read_text())
    card["model_config"]["d_model"] = 32
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(stem)
    card["model_config"]["width"] = 3
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match="unknown ModelConfig keys.*width"):
        load_checkpoint(stem)


def test_missing_card_is_refused(saved):
    stem, _ = saved
    pathlib.Path(f"{stem}.json").unlink()
    with pytest.raises(ValueError, match="no model card"):
        load_checkpoint(stem)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(stem.parent / "nothing_here")


class _Trap:
    """Unpickling this creates the sentinel file: proof that something was unpickled."""

    def __init__(self, sentinel: pathlib.Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (pathlib.Path.touch, (self.sentinel,))


@pytest.mark.parametrize("name", ["evil.pkl", "evil.safetensors", "evil.pt"])
def test_pickle_is_refused_without_being_unpickled(tmp_path, name):
    sentinel = tmp_path / "was_unpickled"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(_Trap(sentinel)))
    (tmp_path / "evil.json").write_text(json.dumps({"format": "icrl_agent-checkpoint", "format_version": 1}))
    with pytest.raises(ValueError, match="not a safetensors file.*pickle.*never unpickled"):
        load_checkpoint(path)
    assert not sentinel.exists()
    pickle.loads(path.read_bytes())  # the trap works: the test above could have failed
    assert sentinel.exists()


def test_torch_save_output_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(small_model().state_dict(), path)
    with pytest.raises(ValueError, match="zip archive.*never unpickled"):
        load_checkpoint(path)


def test_non_json_training_info_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="card must be plain JSON"):
        save_checkpoint(tmp_path / "x", small_model(), {}, {"loss": float("nan")})
    assert not list(tmp_path.iterdir())


def test_canonical_header_sorts_the_metadata_and_keeps_the_file_readable():
    """safetensors orders its metadata by a per-process hash map: two runs of one training command wrote the
    same tensors with different bytes (sha256). The saved header is made canonical."""
    import safetensors.torch
    import torch

    from icrl_agent.checkpoint import _canonical_header

    tensors = {"b": torch.arange(3.0), "a": torch.ones(2, 2)}
    raw = safetensors.torch.save(tensors, metadata={"zeta": "1", "alpha": "2", "mid": "3"})
    n = int.from_bytes(raw[:8], "little")
    head = json.loads(raw[8 : 8 + n])
    reordered = {"__metadata__": {"mid": "3", "zeta": "1", "alpha": "2"}} | {k: v for k, v in head.items() if k != "__metadata__"}
    text = json.dumps(reordered, separators=(",", ":")).encode()
    shuffled = raw[:8] + text + b" " * (n - len(text)) + raw[8 + n :]
    out = _canonical_header(shuffled)
    assert out == _canonical_header(raw) and len(out) == len(raw)
    assert list(json.loads(out[8 : 8 + n])["__metadata__"]) == ["alpha", "mid", "zeta"]
    loaded = safetensors.torch.load(out)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
