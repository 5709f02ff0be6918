"""ASR engines: batch-first `transcribe(list of float32 16 kHz arrays) -> list[str]`."""

from stt_server.engines.base import Engine, EngineError, EngineLoadError, load_engine

__all__ = ["Engine", "EngineError", "EngineLoadError", "load_engine"]
