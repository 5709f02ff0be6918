"""The LLM half: `transformers`' Qwen3ForCausalLM wrapped by `peft` LoRA, built without weights."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import Qwen3Config, Qwen3ForCausalLM
from transformers.models.qwen3.modeling_qwen3 import Qwen3RotaryEmbedding


def build_llm(llm_config: dict[str, Any], lora: dict[str, Any]) -> PeftModel:
    """Qwen3 from its `config.json` dict, LoRA from SALM's `lora` dict (a peft LoraConfig).

    Built on the current default device (use `torch.device("meta")` before loading weights).
    State-dict keys come out as SALM saves them: `base_model.model.model.layers.{i}...`.
    """
    config = Qwen3Config.from_dict({**llm_config, "attn_implementation": "sdpa"})
    model = Qwen3ForCausalLM(config)
    lora_config = LoraConfig(**{"task_type": "CAUSAL_LM", **lora})
    with warnings.catch_warnings():
        # peft calls a transformers method deprecated in v5; nothing for a caller to act on.
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)
        peft_model = get_peft_model(model, lora_config)
    peft_model.eval()
    return peft_model


def qwen_model(llm: PeftModel | Qwen3ForCausalLM) -> Qwen3ForCausalLM:
    """The Qwen3ForCausalLM inside the peft wrapper (its LoRA layers in place), or itself once
    the LoRA is merged."""
    inner = llm if isinstance(llm, Qwen3ForCausalLM) else llm.base_model.model
    assert isinstance(inner, Qwen3ForCausalLM)
    return inner


def merge_lora(llm: PeftModel) -> Qwen3ForCausalLM:
    """Qwen3 with each LoRA folded into its base weight (W + alpha/r * B A) and the adapter gone:
    one matmul per adapted projection instead of three, for serving a single fixed adapter."""
    merged = llm.merge_and_unload()
    assert isinstance(merged, Qwen3ForCausalLM)
    return merged


def rebuild_rotary(llm: PeftModel | Qwen3ForCausalLM, device: torch.device) -> None:
    """Recompute RoPE frequencies: non-persistent buffers are not in the checkpoint."""
    inner = qwen_model(llm)
    with torch.device(device):
        inner.model.rotary_emb = Qwen3RotaryEmbedding(config=inner.config)
