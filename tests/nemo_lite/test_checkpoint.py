"""Loading the tiny checkpoint: round trip, layout, strict key accounting, missing sources."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nemo_lite import CanaryQwen, CheckpointError, CheckpointNotFoundError
from tests.support.tiny_canary import write_tiny_checkpoint


def test_round_trip_every_tensor_equal(tiny_checkpoint: Path, tiny_model: CanaryQwen) -> None:
    stored = load_file(str(tiny_checkpoint / "model.safetensors"))
    state = tiny_model.state_dict()
    assert set(stored) == set(tiny_model.checkpoint_shapes())
    for key, tensor in stored.items():
        assert torch.equal(state[key], tensor.to(state[key].dtype)), key
    assert tiny_model.dtype == torch.float32
    assert tiny_model.device == torch.device("cpu")


def test_real_layout_files_and_prefixes(tiny_checkpoint: Path) -> None:
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert (tiny_checkpoint / "llm_backbone" / "config.json").is_file()
    stored = load_file(str(tiny_checkpoint / "model.safetensors"))
    assert all(t.dtype == torch.bfloat16 for k, t in stored.items() if "num_batches" not in k)
    assert "embed_tokens.weight" in stored
    assert not any(
        "lm_head" in k or k.startswith("llm.base_model.model.model.embed") for k in stored
    )
    prefixes = {k.split(".")[0] for k in stored}
    assert prefixes == {"perception", "embed_tokens", "llm"}
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["audio_locator_tag"] == "<|audioplaceholder|>"


def test_embedding_tied_to_lm_head(tiny_model: CanaryQwen) -> None:
    inner = tiny_model.llm.base_model.model
    assert inner.lm_head.weight is tiny_model.embed_tokens.weight  # pyright: ignore[reportAttributeAccessIssue]
    assert inner.model.embed_tokens is tiny_model.embed_tokens  # pyright: ignore[reportAttributeAccessIssue]


def test_placeholder_is_added_after_the_vocabulary(tiny_model: CanaryQwen) -> None:
    tokenizer = tiny_model.tokenizer
    assert tiny_model.placeholder_id == len(tokenizer) - 1
    assert tiny_model.placeholder_id < tiny_model.embed_tokens.num_embeddings


def _copy_with(tiny_checkpoint: Path, tmp_path: Path, edit: str) -> Path:
    target = tmp_path / "edited"
    shutil.copytree(tiny_checkpoint, target)
    tensors = load_file(str(target / "model.safetensors"))
    if edit == "remove":
        del tensors["perception.encoder.layers.1.self_attn.pos_bias_v"]
    elif edit == "add":
        tensors["perception.encoder.layers.1.self_attn.surplus"] = torch.zeros(3)
    else:
        tensors["perception.proj.bias"] = torch.zeros(5)
    save_file(tensors, str(target / "model.safetensors"))
    return target


def test_missing_key_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(
        CheckpointError, match=r"missing keys \(1\):.*layers\.1\.self_attn\.pos_bias_v"
    ):
        CanaryQwen.from_pretrained(_copy_with(tiny_checkpoint, tmp_path, "remove"))


def test_unexpected_key_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\):.*self_attn\.surplus"):
        CanaryQwen.from_pretrained(_copy_with(tiny_checkpoint, tmp_path, "add"))


def test_wrong_shape_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(
        CheckpointError, match=r"shape mismatches.*perception\.proj\.bias \(file \(5,\)"
    ):
        CanaryQwen.from_pretrained(_copy_with(tiny_checkpoint, tmp_path, "shape"))


def test_stored_position_table_is_accepted(tiny_checkpoint: Path, tmp_path: Path) -> None:
    target = tmp_path / "with_pe"
    shutil.copytree(tiny_checkpoint, target)
    tensors = load_file(str(target / "model.safetensors"))
    tensors["perception.encoder.pos_enc.pe"] = torch.zeros(1, 9, 16)
    save_file(tensors, str(target / "model.safetensors"))
    assert CanaryQwen.from_pretrained(target).embed_tokens.num_embeddings > 0


def test_unavailable_source_says_how_to_provide_weights(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="HF_HUB_OFFLINE") as info:
        CanaryQwen.from_pretrained(tmp_path / "nowhere")
    assert isinstance(info.value, FileNotFoundError)
    assert "config.json and model.safetensors" in str(info.value)


def test_uncached_hub_id_offline_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nvidia/canary-qwen-2\.5b"):
        CanaryQwen.from_pretrained("nvidia/canary-qwen-2.5b", cache_dir=tmp_path / "cache")


def test_directory_without_weights_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointNotFoundError, match=r"model\.safetensors"):
        CanaryQwen.from_pretrained(tmp_path)


def test_writer_is_deterministic(tmp_path: Path) -> None:
    a = load_file(str(write_tiny_checkpoint(tmp_path / "a", seed=3) / "model.safetensors"))
    b = load_file(str(write_tiny_checkpoint(tmp_path / "b", seed=3) / "model.safetensors"))
    c = load_file(str(write_tiny_checkpoint(tmp_path / "c", seed=4) / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["embed_tokens.weight"], c["embed_tokens.weight"])


def test_tokenizer_in_llm_backbone_layout(tiny_checkpoint: Path, tmp_path: Path) -> None:
    target = tmp_path / "nested"
    shutil.copytree(tiny_checkpoint, target)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (target / name).rename(target / "llm_backbone" / name)
    model = CanaryQwen.from_pretrained(target)
    reference = CanaryQwen.from_pretrained(tiny_checkpoint)
    assert model.prompt_before == reference.prompt_before
    assert model.placeholder_id == reference.placeholder_id


def test_missing_llm_files_offline_names_the_llm_repo(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    target = tmp_path / "bare"
    target.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_checkpoint / name, target / name)
    with pytest.raises(CheckpointNotFoundError, match=r"Qwen/Qwen3-1\.7B"):
        CanaryQwen.from_pretrained(target, cache_dir=tmp_path / "cache")


def test_config_without_perception_is_a_checkpoint_error(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    target = tmp_path / "badconfig"
    shutil.copytree(tiny_checkpoint, target)
    config = json.loads((target / "config.json").read_text())
    del config["perception"]
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="perception"):
        CanaryQwen.from_pretrained(target)
