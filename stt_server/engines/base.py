"""The engine interface and the factory that picks an engine by name."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

Audio = npt.NDArray[np.float32]

ENGINES = ("canary-qwen", "whisper", "fixed-cost")


class EngineError(Exception):
    """Transcription of one request failed; fails only the session that sent it."""


class EngineLoadError(Exception):
    """The model could not be loaded at start-up; the message says how to fix it."""


class Engine(Protocol):
    """Batch-first ASR: one text per input array (float32, mono, 16 kHz)."""

    name: str
    model: str
    device: str

    def transcribe(self, batch: list[Audio]) -> list[str]: ...


def load_engine(name: str, model: str | None, device: str) -> Engine:
    """Load an engine by name; raises `EngineLoadError` with advice when weights are missing."""
    if name == "whisper":
        from stt_server.engines.whisper import WhisperEngine

        if model is None:
            raise EngineLoadError(
                "the whisper engine needs --model DIR: a CTranslate2 Whisper model directory "
                "(assemble whisper-base with `python -m stt_server.engines.whisper_assets DIR`)"
            )
        return WhisperEngine(model, device=device)
    if name == "canary-qwen":
        from stt_server.engines.canary_qwen import DEFAULT_MODEL, CanaryQwenEngine

        return CanaryQwenEngine(model or DEFAULT_MODEL, device=device)
    if name == "fixed-cost":
        from stt_server.engines.fixed_cost import FixedCostEngine

        return FixedCostEngine(model, device=device)
    raise EngineLoadError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
