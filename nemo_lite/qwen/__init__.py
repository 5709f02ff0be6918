"""Qwen3 language model with peft LoRA, and the Qwen chat prompt Canary-Qwen was trained with."""

from nemo_lite.qwen.llm import build_llm
from nemo_lite.qwen.prompt import transcription_prompt

__all__ = ["build_llm", "transcription_prompt"]
