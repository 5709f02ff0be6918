"""The full-size architecture, built on the meta device, against the real checkpoint's tensor list.

`data/canary_qwen_2.5b_keys.txt` lists every tensor of nvidia/canary-qwen-2.5b's model.safetensors
with its shape. It was written once by `data/make_canary_qwen_keys.py`, which enumerates the keys
from the rules in shared/spec/canary-qwen.md (prefixes, per-layer names, sizes), not from nemo_lite.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from peft.tuners.lora import Linear as LoraLinear

from nemo_lite.config import CanaryQwenConfig
from nemo_lite.model import CanaryQwen, load_tokenizer
from nemo_lite.presets import AUDIO_LOCATOR_TAG, CANARY_QWEN_2_5B, QWEN3_1_7B
from nemo_lite.qwen.llm import qwen_model, rebuild_rotary

KEYS_FILE = Path(__file__).with_name("data") / "canary_qwen_2.5b_keys.txt"
BUFFER_SUFFIXES = (".window", ".fb", ".running_mean", ".running_var", ".num_batches_tracked")


def _expected() -> dict[str, torch.Size]:
    shapes: dict[str, torch.Size] = {}
    for line in KEYS_FILE.read_text().splitlines():
        name, _, dims = line.partition(" ")
        shapes[name] = torch.Size(int(d) for d in dims.split(",") if d)
    return shapes


@pytest.fixture(scope="module")
def full_model(tiny_checkpoint: Path) -> CanaryQwen:
    # The tokenizer only fixes the prompt ids; the tiny one spares a download.
    tokenizer = load_tokenizer(tiny_checkpoint, AUDIO_LOCATOR_TAG)
    with torch.device("meta"):
        return CanaryQwen(CanaryQwenConfig.from_dict(CANARY_QWEN_2_5B), QWEN3_1_7B, tokenizer)


def test_key_names_and_shapes_equal_the_checkpoint(full_model: CanaryQwen) -> None:
    expected = _expected()
    assert len(expected) == 1718
    assert full_model.checkpoint_shapes() == expected


def test_parameter_count(full_model: CanaryQwen) -> None:
    expected = sum(
        shape.numel() for name, shape in _expected().items() if not name.endswith(BUFFER_SUFFIXES)
    )
    counted = sum(p.numel() for p in full_model.parameters())  # tied embedding counted once
    assert counted == expected
    assert 2.5e9 < counted < 3.0e9
    lora = sum(p.numel() for n, p in full_model.named_parameters() if "lora_" in n)
    assert lora == 28 * 128 * (2048 + 2048 + 2048 + 1024)


def test_llm_settings_from_the_configs(full_model: CanaryQwen) -> None:
    """RoPE base 1e6 (a silently wrong base would still run), LoRA scale alpha / r = 2."""
    rebuild_rotary(full_model.llm, torch.device("cpu"))
    inner = qwen_model(full_model.llm)
    inv_freq = inner.model.rotary_emb.inv_freq
    assert inv_freq.shape == (64,)
    assert math.isclose(float(inv_freq[-1]), 1e6 ** (-126 / 128), rel_tol=1e-5)
    q_proj = inner.get_submodule("model.layers.0.self_attn.q_proj")
    assert isinstance(q_proj, LoraLinear)
    assert q_proj.scaling["default"] == 2.0
    assert inner.config.tie_word_embeddings
