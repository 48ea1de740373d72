"""Checkpoint contract: where a save goes, the model card's field names (the file format), and the exact
diagnosis in every refusal message."""

from __future__ import annotations

import json
import pathlib
import pickle
import re

import pytest
import safetensors.torch
import torch

from icrl_agent.checkpoint import checkpoint_paths, checkpoint_sha256, load_checkpoint, save_checkpoint
from icrl_agent.model import IcrlModel, ModelConfig

CONFIG = ModelConfig(d_model=16, n_heads=2, n_rounds=2)


def small_model() -> IcrlModel:
    torch.manual_seed(0)
    return IcrlModel(CONFIG)


@pytest.mark.parametrize("suffix", [".safetensors", ".json"])
def test_saving_to_either_file_path_writes_the_pair_with_that_stem(tmp_path, suffix):
    weights = save_checkpoint(tmp_path / f"run{suffix}", small_model(), {}, {})
    assert weights == tmp_path / "run.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.safetensors"]
    load_checkpoint(tmp_path / "run")


def test_saving_into_a_directory_that_does_not_exist_yet_creates_it(tmp_path):
    weights = save_checkpoint(tmp_path / "a" / "b" / "ckpt", small_model(), {}, {})
    assert weights == tmp_path / "a" / "b" / "ckpt.safetensors"
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["ckpt.json", "ckpt.safetensors"]


def test_saving_into_an_existing_directory_uses_the_default_stem(tmp_path):
    weights = save_checkpoint(tmp_path, small_model(), {}, {})
    assert weights == tmp_path / "model.safetensors" and (tmp_path / "model.json").is_file()


def test_the_model_card_field_names_are_the_file_format(tmp_path):
    model = small_model()
    weights = save_checkpoint(tmp_path / "ckpt", model, {"lr": 0.5}, {"seed": 3})
    text = (tmp_path / "ckpt.json").read_text()
    card = json.loads(text)
    assert sorted(card) == sorted(
        [
            "format",
            "format_version",
            "weights_file",
            "sha256",
            "model_config",
            "tensors",
            "config",
            "training",
        ]
    )
    assert card["format"] == "icrl_agent-checkpoint" and card["format_version"] == 1
    assert card["weights_file"] == "ckpt.safetensors"
    assert card["sha256"] == checkpoint_sha256(weights)
    assert card["config"] == {"lr": 0.5} and card["training"] == {"seed": 3}
    assert card["model_config"] == json.loads(json.dumps(vars(CONFIG)))
    state = model.state_dict()
    assert sorted(card["tensors"]) == sorted(state)
    for name, entry in card["tensors"].items():
        assert entry == {"shape": list(state[name].shape), "dtype": "float32"}, name
    assert text.endswith("}\n") and text == json.dumps(card, indent=2, sort_keys=True) + "\n"
    assert not list(tmp_path.glob("*.tmp"))
    meta = safetensors.safe_open(str(weights), "pt").metadata()
    assert meta == {"format": "icrl_agent-checkpoint", "format_version": "1"}


def test_a_pickle_is_diagnosed_as_a_pickle(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert f"checkpoint {path} is not a safetensors file (it looks like a Python pickle); " in message
    assert "pickled checkpoints are refused and never unpickled: save weights with " in message
    assert "icrl_agent.checkpoint.save_checkpoint, or re-download the checkpoint or retrain with " in message
    assert message.endswith("`python -m icrl_agent.pretraining --config FILE`")


def test_a_zip_archive_is_diagnosed_as_torch_save_output(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"x": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match=re.escape("(it looks like a zip archive, e.g. torch.save output)")):
        load_checkpoint(path)


def test_an_unknown_header_is_named_unrecognized(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"PK\x03\x05" + b"\x00" * 40)  # not quite a zip, and no pickle opcode first
    with pytest.raises(ValueError, match=re.escape("is not a safetensors file (unrecognized header)")):
        load_checkpoint(path)
    path.write_bytes(b"\x7f" + b"\x00" * 40)
    with pytest.raises(ValueError, match=re.escape("(unrecognized header)")):
        load_checkpoint(path)


def test_an_unreadable_header_is_called_corrupt(tmp_path):
    path = tmp_path / "w.safetensors"
    body = b"{not json}"
    path.write_bytes(len(body).to_bytes(8, "little") + body + b"\x00" * 16)
    with pytest.raises(ValueError, match=re.escape("is corrupt (unreadable safetensors header)")):
        load_checkpoint(path)


def _rewrite(stem: pathlib.Path, tensors: dict[str, torch.Tensor], list_in_card: bool = True) -> None:
    weights, card_path = checkpoint_paths(stem)
    safetensors.torch.save_file(tensors, str(weights))
    card = json.loads(card_path.read_text())
    card["sha256"] = checkpoint_sha256(weights)
    if list_in_card:
        card["tensors"] = {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in tensors.items()}
    card_path.write_text(json.dumps(card))


def test_the_mismatch_message_lists_unexpected_and_missing_tensors(tmp_path):
    stem = tmp_path / "ckpt"
    save_checkpoint(stem, small_model(), {}, {})
    tensors = safetensors.torch.load_file(f"{stem}.safetensors")
    tensors["extra.b"] = torch.zeros(1)
    tensors["extra.a"] = torch.zeros(1)
    missing = [k for k in sorted(tensors) if not k.startswith("extra.")][:2]
    for k in missing:
        del tensors[k]
    _rewrite(stem, tensors)
    with pytest.raises(ValueError) as info:
        load_checkpoint(stem)
    message = str(info.value)
    model_config = json.loads(pathlib.Path(f"{stem}.json").read_text())["model_config"]
    assert f"checkpoint {stem}.safetensors does not match its ModelConfig {model_config}: " in message
    assert f"unexpected tensors ['extra.a', 'extra.b']; missing tensors {missing}: " in message
    assert "listed in the model card" not in message


def test_only_unexpected_or_only_missing_is_reported(tmp_path):
    stem = tmp_path / "ckpt"
    save_checkpoint(stem, small_model(), {}, {})
    full = safetensors.torch.load_file(f"{stem}.safetensors")
    _rewrite(stem, {**full, "extra": torch.zeros(1)})
    with pytest.raises(
        ValueError, match=re.escape("ModelConfig") + r".*: unexpected tensors \['extra'\]: re-"
    ):
        load_checkpoint(stem)
    name = sorted(full)[-1]
    _rewrite(stem, {k: v for k, v in full.items() if k != name})
    with pytest.raises(ValueError, match=r": missing tensors \[" + re.escape(repr(name)) + r"\]: re-"):
        load_checkpoint(stem)


def test_tensors_that_differ_from_the_card_listing_are_refused(tmp_path):
    stem = tmp_path / "ckpt"
    save_checkpoint(stem, small_model(), {}, {})
    _, card_path = checkpoint_paths(stem)
    card = json.loads(card_path.read_text())
    del card["tensors"][sorted(card["tensors"])[0]]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"\}: the tensors differ from those listed in the model card: re-"):
        load_checkpoint(stem)


def test_at_most_five_problems_are_listed(tmp_path):
    stem = tmp_path / "ckpt"
    save_checkpoint(stem, small_model(), {}, {})
    full = safetensors.torch.load_file(f"{stem}.safetensors")
    wrong = {k: torch.zeros(tuple(d + 1 for d in v.shape)) if v.dim() else v for k, v in full.items()}
    assert len(wrong) > 5
    _rewrite(stem, wrong, list_in_card=False)
    with pytest.raises(ValueError) as info:
        load_checkpoint(stem)
    assert str(info.value).count(" has shape ") == 5 and "missing tensors" not in str(info.value)
    assert "listed in the model card" not in str(info.value)


# ----------------------------------------------------------------- the six gaps the first mutation run named


def test_a_config_that_is_not_json_is_named_config(tmp_path):
    with pytest.raises(ValueError, match=re.escape("save_checkpoint: config must be plain JSON data")):
        save_checkpoint(tmp_path / "run", small_model(), {"bad": object()}, {})
    with pytest.raises(ValueError, match=re.escape("save_checkpoint: card must be plain JSON data")):
        save_checkpoint(tmp_path / "run", small_model(), {}, {"loss": float("nan")})
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_stem_with_a_dot_keeps_its_suffix(tmp_path):
    weights = save_checkpoint(tmp_path / "run.v1", small_model(), {}, {})
    assert weights == tmp_path / "run.v1.safetensors" and (tmp_path / "run.v1.json").is_file()


def test_a_json_card_of_another_format_is_refused(tmp_path):
    save_checkpoint(tmp_path / "run", small_model(), {}, {})
    card_path = tmp_path / "run.json"
    card = json.loads(card_path.read_text())
    card["format"] = "someone-else"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match="is not an icrl_agent model card"):
        load_checkpoint(tmp_path / "run")


def test_the_corrupt_message_shows_both_sha256_prefixes(tmp_path):
    save_checkpoint(tmp_path / "run", small_model(), {}, {})
    card_path = tmp_path / "run.json"
    card = json.loads(card_path.read_text())
    actual = card["sha256"]
    card["sha256"] = "0123456789abcdef" + "0" * 48
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError) as info:
        load_checkpoint(tmp_path / "run")
    assert f"its sha256 {actual[:16]}... does not match the model card's 0123456789abcdef..." in str(info.value)


def test_a_card_without_a_tensor_listing_is_refused(tmp_path):
    save_checkpoint(tmp_path / "run", small_model(), {}, {})
    card_path = tmp_path / "run.json"
    card = json.loads(card_path.read_text())
    del card["tensors"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match="the tensors differ from those listed in the model card"):
        load_checkpoint(tmp_path / "run")


def test_a_safetensors_file_without_metadata_is_written_unchanged_by_the_canonical_header():
    from icrl_agent.checkpoint import _canonical_header

    data = safetensors.torch.save({"w": torch.zeros(2)})
    assert _canonical_header(data) == data
    with_metadata = safetensors.torch.save({"w": torch.zeros(2)}, metadata={"b": "2", "a": "1"})
    n = int.from_bytes(with_metadata[:8], "little")
    header = json.loads(_canonical_header(with_metadata)[8 : 8 + n])
    assert list(header) == ["__metadata__", "w"] and list(header["__metadata__"]) == ["a", "b"]


REMEDY = "re-download the checkpoint or retrain with `python -m icrl_agent.pretraining --config FILE`"


@pytest.mark.parametrize("version", [2, "1", None, "missing"])
def test_a_newer_or_non_integer_format_version_is_refused_with_upgrade_advice(tmp_path, version):
    """Only integer format versions up to this release's are read; the message names the version found."""
    save_checkpoint(tmp_path / "run", small_model(), {}, {})
    card_path = tmp_path / "run.json"
    card = json.loads(card_path.read_text())
    if version == "missing":
        del card["format_version"]
    else:
        card["format_version"] = version
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError) as err:
        load_checkpoint(tmp_path / "run")
    found = None if version == "missing" else version
    assert str(err.value) == (
        f"checkpoint {card_path} has format version {found!r}, this version reads up to 1: upgrade icrl_agent "
        f"or {REMEDY}"
    )


def test_missing_weights_or_card_messages_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_checkpoint(tmp_path / "nothing")
    assert str(err.value) == (
        f"no checkpoint weights at {tmp_path / 'nothing.safetensors'}: give a directory, a stem or the "
        ".safetensors file"
    )
    weights = save_checkpoint(tmp_path / "run", small_model(), {}, {})
    (tmp_path / "run.json").unlink()
    with pytest.raises(ValueError) as err:
        load_checkpoint(weights)
    assert str(err.value) == f"checkpoint {weights} has no model card run.json next to it: {REMEDY}"


def test_the_smallest_safetensors_files_pass_the_header_check(tmp_path):
    """A header of 2 bytes (``{}``) and a header that fills the file (no tensor data) are valid
    safetensors: the header check lets them through and the next problem, the missing card, is named."""
    minimal = (2).to_bytes(8, "little") + b"{}"
    no_tensors = safetensors.torch.save({}, metadata={"format": "icrl_agent-checkpoint"})
    assert int.from_bytes(no_tensors[:8], "little") == len(no_tensors) - 8
    for data in (minimal, no_tensors):
        path = tmp_path / "w.safetensors"
        path.write_bytes(data)
        with pytest.raises(ValueError) as err:
            load_checkpoint(path)
        assert str(err.value) == f"checkpoint {path} has no model card w.json next to it: {REMEDY}"


def test_a_header_length_past_the_end_of_the_file_is_refused_by_the_header_check(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes((4).to_bytes(8, "little") + b"{}")  # says 4 header bytes, 2 follow
    with pytest.raises(ValueError, match=re.escape("is not a safetensors file (unrecognized header)")):
        load_checkpoint(path)


def test_the_canonical_header_sorts_a_header_written_without_padding():
    """safetensors pads its header to 8 bytes only when needed; a header already a multiple of 8 long has
    no padding, and its metadata must be sorted all the same (same keys, same length)."""
    from icrl_agent.checkpoint import _canonical_header

    for width in range(8):  # a metadata value length that makes safetensors write no padding
        data = safetensors.torch.save({"w": torch.zeros(2)}, metadata={"b": "x" * width, "a": "1"})
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n])
        if len(json.dumps(header, separators=(",", ":"))) == n:
            break
    else:
        raise AssertionError("no metadata width gave an unpadded header")
    unsorted = {"w": header["w"], "__metadata__": {"b": header["__metadata__"]["b"], "a": "1"}}
    text = json.dumps(unsorted, separators=(",", ":")).encode()
    assert len(text) == n
    written = data[:8] + text + data[8 + n :]  # the writer's order, as a run may produce it
    canonical = _canonical_header(written)
    assert len(canonical) == len(written) and canonical[8 + n :] == data[8 + n :]
    ordered = json.loads(canonical[8 : 8 + n])
    assert list(ordered) == ["__metadata__", "w"] and list(ordered["__metadata__"]) == ["a", "b"]
    assert safetensors.torch.load(canonical)["w"].tolist() == [0.0, 0.0]


def test_a_checkpoint_mixing_float_dtypes_is_not_cast_to_one_of_them(tmp_path):
    """One float dtype throughout: the model is loaded in it. Mixed dtypes name no single dtype: the model
    keeps its own default (float32) and each tensor is converted into it."""
    model = small_model()
    state = model.state_dict()
    names = sorted(k for k, v in state.items() if v.is_floating_point())
    mixed = {k: v.to(torch.float64 if i % 2 else torch.bfloat16) if k in names else v
             for i, (k, v) in enumerate(sorted(state.items()))}
    save_checkpoint(tmp_path / "run", model, {}, {})
    _rewrite(tmp_path / "run", mixed)
    loaded, _ = load_checkpoint(tmp_path / "run")
    assert {v.dtype for v in loaded.state_dict().values() if v.is_floating_point()} == {torch.float32}


def test_checkpoint_paths_of_paths_that_do_not_exist_yet(tmp_path):
    """A stem or a .safetensors / .json path names the pair; a dotted stem keeps its own suffix."""
    for given, stem in (("run.safetensors", "run"), ("run.json", "run"), ("run", "run"), ("run.v1", "run.v1")):
        assert checkpoint_paths(tmp_path / given) == (tmp_path / f"{stem}.safetensors", tmp_path / f"{stem}.json")


def test_a_directorys_default_weights_win_over_its_only_other_pair(tmp_path):
    """In a directory, ``model.safetensors`` is the checkpoint whenever it is there (its missing card is then
    reported); the only complete pair is used only when there is no ``model.safetensors``."""
    save_checkpoint(tmp_path / "run", small_model(), {}, {})
    assert checkpoint_paths(tmp_path) == (tmp_path / "run.safetensors", tmp_path / "run.json")
    (tmp_path / "model.safetensors").write_bytes((tmp_path / "run.safetensors").read_bytes())
    assert checkpoint_paths(tmp_path) == (tmp_path / "model.safetensors", tmp_path / "model.json")
    with pytest.raises(ValueError, match="has no model card model.json next to it"):
        load_checkpoint(tmp_path)
