"""Canary-Qwen-2.5B through `nemo_lite` (the default engine; GPU recommended).

Two ways in: `transcribe(batch)` decodes a whole batch and returns when its longest clip is done;
`admit` / `step` / `abort` batch at the level of decode steps (`nemo_lite.scheduler`), for an
inference worker that loops { admit new requests; step(); resolve finished }, so a short clip's
text comes back as soon as it is decoded and new clips join between steps.
"""

from __future__ import annotations

from stt_server.engines.base import Audio, EngineError, EngineLoadError

DEFAULT_MODEL = "nvidia/canary-qwen-2.5b"


class CanaryQwenEngine:
    name = "canary-qwen"

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "cuda") -> None:
        try:
            import nemo_lite
            from nemo_lite.scheduler import ContinuousDecoder
        except ImportError as exc:
            raise EngineLoadError(f"nemo_lite is not importable: {exc}") from exc
        self.model = model
        self.device = device
        try:
            # One fixed adapter: fold the LoRA into the weights once, decode with plain Qwen3.
            self._model = nemo_lite.CanaryQwen.from_pretrained(
                model, device=device, merge_lora=True
            )
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
        self._decoder = ContinuousDecoder(self._model)

    def transcribe(self, batch: list[Audio]) -> list[str]:
        texts = self._model.transcribe(list(batch))
        if len(texts) != len(batch):
            raise EngineError(f"nemo_lite returned {len(texts)} texts for {len(batch)} inputs")
        return [text.strip() for text in texts]

    def admit(self, requests: list[tuple[int, Audio]]) -> None:
        """Encode and prefill new (request id, clip) pairs in one batch; they decode from the next
        `step()`. Ids must be unique among active requests (`ValueError` otherwise)."""
        self._decoder.admit(requests)

    def step(self) -> list[tuple[int, str]]:
        """One decode step for every active request; (id, text) of those finished in it."""
        return self._decoder.step()

    def abort(self, request_id: int) -> None:
        """Forget a request (a closed session) and free its cache; unknown ids are ignored."""
        self._decoder.abort(request_id)

    @property
    def active(self) -> int:
        """Requests admitted and not yet returned by `step()` or aborted."""
        return self._decoder.active
