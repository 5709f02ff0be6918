"""A tiny random Canary-Qwen checkpoint in the exact layout of the real one (tests, the server).

`write_tiny_checkpoint(directory)` writes:
    config.json              SALM config as nvidia/canary-qwen-2.5b has it, with tiny sizes
    model.safetensors        every tensor under its real key name, bf16
    tokenizer.json, tokenizer_config.json, vocab.json, merges.txt
                             a small byte-level BPE with Qwen's special tokens
    llm_backbone/config.json Qwen3 config with tiny sizes
`nemo_lite.CanaryQwen.from_pretrained(directory)` loads it with no network.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from nemo_lite.config import CanaryQwenConfig
from nemo_lite.model import ALIASES, CanaryQwen, load_tokenizer
from nemo_lite.presets import AUDIO_LOCATOR_TAG, CANARY_QWEN_2_5B, QWEN3_1_7B

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TINY_VOCAB = 320  # > tokenizer length + placeholder, like Qwen's padded 151936
_CORPUS = [
    "Transcribe the following: hello world.",
    "user\nassistant\nThe quick brown fox jumps over the lazy dog.",
    "Speech to text, with punctuation and capitalisation!",
]


def tiny_salm_config(mid: bool = False) -> dict[str, Any]:
    """Tiny sizes, or with `mid` sizes where batching effects (padding, cache joins) show."""
    config = copy.deepcopy(CANARY_QWEN_2_5B)
    config["lora"].update(r=8 if mid else 4, lora_alpha=16 if mid else 8)
    perception = config["perception"]
    d_model = 64 if mid else 16
    perception["output_dim"] = 128 if mid else 32
    perception["encoder"].update(
        n_layers=2,
        d_model=d_model,
        n_heads=4 if mid else 2,
        subsampling_conv_channels=16 if mid else 4,
        conv_kernel_size=9,
    )
    perception["modality_adapter"]["d_model"] = d_model
    return config


def tiny_qwen3_config(mid: bool = False) -> dict[str, Any]:
    return {
        **QWEN3_1_7B,
        "head_dim": 32 if mid else 8,
        "hidden_size": 128 if mid else 32,
        "intermediate_size": 384 if mid else 64,
        "max_window_layers": 4 if mid else 2,
        "num_attention_heads": 4,
        "num_hidden_layers": 4 if mid else 2,
        "num_key_value_heads": 2,
        "vocab_size": TINY_VOCAB,
        "bos_token_id": None,
        "eos_token_id": None,
    }


def write_tiny_tokenizer(directory: Path) -> None:
    """Byte-level BPE (any text encodes) with Qwen's three special tokens, saved as Qwen's files."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # pyright: ignore[reportAttributeAccessIssue]
    tokenizer.decoder = decoders.ByteLevel()  # pyright: ignore[reportAttributeAccessIssue]
    trainer = trainers.BpeTrainer(  # pyright: ignore[reportCallIssue]
        vocab_size=290, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer)
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer.model.save(str(directory))  # vocab.json, merges.txt
    tokenizer_config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "add_prefix_space": False,
        "split_special_tokens": False,
        "model_max_length": 40960,
        "clean_up_tokenization_spaces": False,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))


def _randomize(model: CanaryQwen) -> None:
    """Non-trivial values everywhere (LoRA B and position biases start at zero otherwise)."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or name.startswith("perception.preprocessor."):
                continue
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif "norm" in name and name.endswith("weight"):
                tensor.normal_(1.0, 0.1)
            elif tensor.dim() >= 2 and "pos_bias" not in name:
                tensor.normal_(0.0, (tensor.numel() / tensor.shape[0]) ** -0.5)  # 1/sqrt(fan_in)
            else:
                tensor.normal_(0.0, 0.1)


def write_tiny_checkpoint(directory: Path, *, seed: int = 0, mid: bool = False) -> Path:
    """Write a tiny (or, with `mid`, mid-size) random Canary-Qwen checkpoint into `directory`
    (made if needed), return it."""
    directory.mkdir(parents=True, exist_ok=True)
    write_tiny_tokenizer(directory)
    config = tiny_salm_config(mid)
    llm_config = tiny_qwen3_config(mid)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "llm_backbone").mkdir(exist_ok=True)
    (directory / "llm_backbone" / "config.json").write_text(json.dumps(llm_config, indent=2))
    tokenizer = load_tokenizer(directory, AUDIO_LOCATOR_TAG)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CanaryQwen(CanaryQwenConfig.from_dict(config), llm_config, tokenizer)
        _randomize(model)
    state = {
        key: value.detach()
        .to(torch.bfloat16 if value.is_floating_point() else value.dtype)
        .contiguous()
        for key, value in model.state_dict().items()
        if key not in ALIASES
    }
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory
