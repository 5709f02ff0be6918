"""Canary-Qwen-2.5B through `nemo_lite` (the default engine; GPU recommended)."""

from __future__ import annotations

from stt_server.engines.base import Audio, EngineError, EngineLoadError

DEFAULT_MODEL = "nvidia/canary-qwen-2.5b"


class CanaryQwenEngine:
    name = "canary-qwen"

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "cuda") -> None:
        try:
            import nemo_lite
        except ImportError as exc:
            raise EngineLoadError(f"nemo_lite is not importable: {exc}") from exc
        self.model = model
        self.device = device
        try:
            self._model = nemo_lite.CanaryQwen.from_pretrained(model, device=device)
        except Exception as exc:
            # nemo_lite raises FileNotFoundError / CheckpointError (and hub errors when offline).
            raise EngineLoadError(
                f"cannot load Canary-Qwen weights from {model!r}: {type(exc).__name__}: {exc}\n"
                "Provide them in one of these ways:\n"
                "  * --model /path/to/checkpoint (a local directory with the downloaded files)\n"
                f"  * --model {DEFAULT_MODEL} with network access to the Hugging Face Hub\n"
                "  * pre-fill the Hugging Face cache (HF_HOME) with both repositories the model "
                f"needs, `huggingface-cli download {DEFAULT_MODEL}` and "
                "`huggingface-cli download Qwen/Qwen3-1.7B` (its tokenizer and LLM config), "
                "then HF_HUB_OFFLINE=1 works\n"
                "  * or run on CPU with another engine: --engine whisper --model DIR"
            ) from exc

    def transcribe(self, batch: list[Audio]) -> list[str]:
        texts = self._model.transcribe(list(batch))
        if len(texts) != len(batch):
            raise EngineError(f"nemo_lite returned {len(texts)} texts for {len(batch)} inputs")
        return [text.strip() for text in texts]
