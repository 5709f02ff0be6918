"""NeMo's `qwen` prompt format with Canary-Qwen's transcription instruction (the model card's)."""

from __future__ import annotations

INSTRUCTION = "Transcribe the following: "


def transcription_prompt(audio_locator_tag: str) -> str:
    """One user turn holding the audio placeholder, then the open assistant turn."""
    return f"<|im_start|>user\n{INSTRUCTION}{audio_locator_tag}<|im_end|>\n<|im_start|>assistant\n"
