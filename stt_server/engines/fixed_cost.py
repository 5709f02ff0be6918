"""A stand-in for a GPU model: each batch costs a fixed wall time and yields deterministic text.

For capacity benchmarks and load tests: the server's own overhead (WebSocket, VAD, batching,
merging) can be measured without a real model's cost or its variance. The cost is given as the
model name, `--engine fixed-cost --model 50ms` (50 ms per batch) or `--model 50ms+10ms/s`
(plus 10 ms per second of audio in the batch); the default is 50 ms per batch. The time is
slept, not computed, as a GPU would leave the CPU free while it runs.
"""

from __future__ import annotations

import re
import time

import numpy as np

from stt_server.audio import SAMPLE_RATE
from stt_server.engines.base import Audio, EngineLoadError

DEFAULT_COST = "50ms"
SECONDS_PER_WORD = 0.4

_COST = re.compile(r"^\s*(\d+(?:\.\d+)?)ms(?:\s*\+\s*(\d+(?:\.\d+)?)ms/s)?\s*$")


def parse_cost(spec: str) -> tuple[float, float]:
    """`"50ms"` → (0.05, 0.0); `"50ms+10ms/s"` → (0.05, 0.01): seconds per batch and per audio
    second."""
    match = _COST.match(spec)
    if match is None:
        raise EngineLoadError(
            f"fixed-cost engine: cannot parse cost {spec!r}; use e.g. --model 50ms or "
            "--model 50ms+10ms/s (per batch, plus per second of audio)"
        )
    per_batch, per_second = match.groups()
    return float(per_batch) / 1000, float(per_second or 0) / 1000


def words_for(audio: Audio) -> str:
    """One word per 0.4 s of audio (at least one), numbered: "w1 w2 w3"."""
    count = max(1, round(len(audio) / SAMPLE_RATE / SECONDS_PER_WORD))
    return " ".join(f"w{i}" for i in range(1, count + 1))


class FixedCostEngine:
    name = "fixed-cost"

    def __init__(self, model: str | None = None, *, device: str = "cpu") -> None:
        self.model = model or DEFAULT_COST
        self.device = device
        self.per_batch_s, self.per_audio_second_s = parse_cost(self.model)

    def transcribe(self, batch: list[Audio]) -> list[str]:
        audio_seconds = sum(len(a) for a in batch) / SAMPLE_RATE
        time.sleep(self.per_batch_s + self.per_audio_second_s * audio_seconds)
        return [words_for(np.asarray(a)) for a in batch]
