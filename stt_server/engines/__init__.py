"""ASR engines and the registry that picks one by name (`auto` picks what this host can run)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from stt_server.engines.base import Engine, EngineError, EngineLoadError, SteppedEngine

__all__ = [
    "ENGINES",
    "Engine",
    "EngineError",
    "EngineLoadError",
    "SteppedEngine",
    "choose_engine",
    "load_engine",
    "resolve_device",
]

ENGINES = ("auto", "canary-qwen", "whisper", "fixed-cost")
CANARY_MODEL = "nvidia/canary-qwen-2.5b"

log = logging.getLogger("stt_server")


def cache_dir() -> Path:
    """Where models assembled on first use are kept: `$STT_CACHE_DIR`, else the XDG cache."""
    if configured := os.environ.get("STT_CACHE_DIR"):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stt-server"


def resolve_device(device: str) -> str:
    """`auto` → `cuda` where torch sees a GPU, else `cpu`."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def _canary_in_cache(model: str) -> bool:
    if Path(model).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(model, "model.safetensors")
    return isinstance(found, str)


def choose_engine(engine: str, model: str | None, device: str) -> tuple[str, str]:
    """The engine `auto` stands for on this host, and why (for the one start-up log line)."""
    if engine != "auto":
        return engine, "chosen with --engine"
    if model is not None:
        if (Path(model) / "model.bin").is_file():
            return "whisper", f"{model} is a CTranslate2 Whisper directory"
        return "canary-qwen", f"--model {model} names a Canary-Qwen checkpoint"
    if device.startswith("cuda"):
        return "canary-qwen", f"device {device}"
    if _canary_in_cache(model or CANARY_MODEL):
        return "canary-qwen", f"{model or CANARY_MODEL} found in the local cache"
    return "whisper", "no CUDA device and no Canary-Qwen weights in the cache"


def load_engine(
    name: str,
    model: str | None,
    device: str,
    *,
    whisper_padding: float | None = None,
    cpu_threads: int = 0,
) -> Engine:
    """Load an engine by name (`auto` resolved first); raises `EngineLoadError` with advice.

    `whisper_padding`: see `WhisperEngine`; None keeps the engine's own default (the whole 30 s
    window). The server passes its `--whisper-padding` setting, whose default differs."""
    device = resolve_device(device)
    chosen, why = choose_engine(name, model, device)
    if name == "auto":
        log.info("engine auto: %s (%s)", chosen, why)
    if chosen == "whisper":
        from stt_server.engines.whisper import WhisperEngine
        from stt_server.engines.whisper_assets import assemble

        if model is None:
            model = str(assemble(cache_dir() / "whisper-base"))
        if whisper_padding is None:
            return WhisperEngine(model, device=device, cpu_threads=cpu_threads)
        return WhisperEngine(model, device=device, padding=whisper_padding, cpu_threads=cpu_threads)
    if chosen == "canary-qwen":
        from stt_server.engines.canary_qwen import CanaryQwenEngine

        return CanaryQwenEngine(model or CANARY_MODEL, device=device)
    if chosen == "fixed-cost":
        from stt_server.engines.fixed_cost import FixedCostEngine

        return FixedCostEngine(model, device=device)
    raise EngineLoadError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
