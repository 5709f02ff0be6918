"""The audio placeholder's id with a tokenizer laid out like Qwen3's: the row SALM trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from nemo_lite import CheckpointError
from nemo_lite.config import CanaryQwenConfig
from nemo_lite.model import CanaryQwen, load_tokenizer
from nemo_lite.presets import AUDIO_LOCATOR_TAG, CANARY_QWEN_2_5B, QWEN3_1_7B
from nemo_lite.qwen.prompt import transcription_prompt
from tests.support.tiny_canary import tiny_qwen3_config

# Qwen3's tokenizer: 151643 byte-level BPE tokens, then these added tokens (ids 151643..151668),
# the first 14 special, as Qwen/Qwen3-1.7B's tokenizer.json and tokenizer_config.json list them.
QWEN3_BASE_TOKENS = 151643
QWEN3_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
QWEN3_PLAIN = [
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
]
CANARY_PLACEHOLDER_ID = 151669  # the row of embed_tokens that Canary-Qwen-2.5B reads as audio


def write_qwen3_layout_tokenizer(
    directory: Path, extra: list[tuple[int, str]] | None = None
) -> Path:
    """Qwen3's id layout with made-up BPE pieces; `extra` adds (id, token) special tokens after."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    while len(vocab) < QWEN3_BASE_TOKENS:
        vocab[f"Ġpiece{len(vocab)}"] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # pyright: ignore[reportAttributeAccessIssue]
    tokenizer.decoder = decoders.ByteLevel()  # pyright: ignore[reportAttributeAccessIssue]
    added = [(t, True) for t in QWEN3_SPECIAL] + [(t, False) for t in QWEN3_PLAIN]
    tokenizer.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in added])
    data = json.loads(tokenizer.to_str())
    for token_id, content in extra or []:
        entry = {**data["added_tokens"][0], "id": token_id, "content": content, "special": True}
        data["added_tokens"].append(entry)
    (directory / "tokenizer.json").write_text(json.dumps(data))
    decoder = {
        str(entry["id"]): {k: v for k, v in entry.items() if k != "id"}
        for entry in data["added_tokens"]
    }
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": decoder,
        "additional_special_tokens": QWEN3_SPECIAL[1:],
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "split_special_tokens": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 40960,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def test_qwen3_layout_gives_the_trained_placeholder_id(tmp_path: Path) -> None:
    tokenizer = load_tokenizer(write_qwen3_layout_tokenizer(tmp_path), AUDIO_LOCATOR_TAG)
    assert tokenizer.convert_tokens_to_ids("</think>") == 151668
    assert tokenizer.convert_tokens_to_ids(AUDIO_LOCATOR_TAG) == CANARY_PLACEHOLDER_ID
    ids = tokenizer(transcription_prompt(AUDIO_LOCATOR_TAG), add_special_tokens=False)["input_ids"]
    assert ids.count(CANARY_PLACEHOLDER_ID) == 1  # pyright: ignore[reportAttributeAccessIssue]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")  # pyright: ignore[reportIndexIssue]
    # Generated text drops the chat markers and the placeholder, as NeMo's decoding does.
    text = tokenizer.decode([151644, 300, CANARY_PLACEHOLDER_ID, 151645], skip_special_tokens=True)
    assert text == f" piece{300}"


def test_full_size_model_reads_the_trained_row(tmp_path: Path) -> None:
    tokenizer = load_tokenizer(write_qwen3_layout_tokenizer(tmp_path), AUDIO_LOCATOR_TAG)
    config = CanaryQwenConfig.from_dict(CANARY_QWEN_2_5B)
    with torch.device("meta"):  # the real shapes, no memory
        model = CanaryQwen(config, QWEN3_1_7B, tokenizer)
    assert model.placeholder_id == CANARY_PLACEHOLDER_ID
    assert model.embed_tokens.num_embeddings == 151936
    assert model.eos_id == 151645
    assert model.prompt_before[0] == 151644
    model.check_trained_placeholder()  # what from_pretrained runs: no error


def test_tokenizer_already_holding_the_tag_elsewhere_is_refused(tmp_path: Path) -> None:
    extra = [(151669, AUDIO_LOCATOR_TAG), (151670, "<|another|>")]
    directory = write_qwen3_layout_tokenizer(tmp_path, extra)
    with pytest.raises(CheckpointError, match=r"id 151669.*at id 151670"):
        load_tokenizer(directory, AUDIO_LOCATOR_TAG)


def test_tokenizer_saved_with_the_tag_last_is_accepted(tmp_path: Path) -> None:
    directory = write_qwen3_layout_tokenizer(tmp_path, [(151669, AUDIO_LOCATOR_TAG)])
    tokenizer = load_tokenizer(directory, AUDIO_LOCATOR_TAG)
    assert tokenizer.convert_tokens_to_ids(AUDIO_LOCATOR_TAG) == CANARY_PLACEHOLDER_ID


def test_qwen3_checkpoint_with_a_longer_tokenizer_is_refused(tmp_path: Path) -> None:
    directory = write_qwen3_layout_tokenizer(tmp_path, [(151669, "<|extra|>")])
    tokenizer = load_tokenizer(directory, AUDIO_LOCATOR_TAG)  # appended, at 151670
    config = CanaryQwenConfig.from_dict(CANARY_QWEN_2_5B)
    with torch.device("meta"):
        model = CanaryQwen(config, QWEN3_1_7B, tokenizer)
    with pytest.raises(CheckpointError, match=r"151670.*trained.*151669"):
        model.check_trained_placeholder()


def test_placeholder_outside_the_embedding_is_refused(tmp_path: Path) -> None:
    tokenizer = load_tokenizer(write_qwen3_layout_tokenizer(tmp_path), AUDIO_LOCATOR_TAG)
    config = CanaryQwenConfig.from_dict(CANARY_QWEN_2_5B)
    llm_config = {**tiny_qwen3_config(), "vocab_size": CANARY_PLACEHOLDER_ID}
    with torch.device("meta"), pytest.raises(CheckpointError, match="outside the LLM"):
        CanaryQwen(config, llm_config, tokenizer)
