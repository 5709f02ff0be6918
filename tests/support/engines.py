"""The one scripted engine of the tests: answers each clip with a function of its audio.

Tests pin the server's behaviour at the engine boundary with it: what it answers (or raises)
per clip, how long a batch takes, and a gate that holds inference back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from stt_server.audio import Audio


def hello(_: Audio) -> str:
    return "hello world"


class ScriptedEngine:
    """An `Engine`: `answer(clip)` for each clip of a batch (an exception fails the batch)."""

    name = "scripted"
    model = "scripted"
    device = "cpu"

    def __init__(self, answer: Callable[[Audio], str] = hello, *, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.calls = 0  # clips answered
        self.batches: list[int] = []  # size of each batch
        self.threads: set[str] = set()
        self.gate = threading.Event()  # inference waits for it (in the worker's thread)
        self.gate.set()

    def transcribe(self, batch: list[Audio]) -> list[str]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(len(batch))
        self.gate.wait(30)
        time.sleep(self.delay)
        texts: list[str] = []
        for audio in batch:
            self.calls += 1
            texts.append(self.answer(audio))
        return texts


class ScriptedInference:
    """What the ASR stage calls (the inference workers' face): scripted texts in order.

    `busy=True` makes every interim request be skipped, as a busy worker would; `hold` delays
    each answer (seconds), so tests can make events overtake a decode in flight.
    """

    def __init__(self, *texts: str | Exception, busy: bool = False, hold: float = 0.0) -> None:
        self.texts = list(texts)
        self.busy = busy
        self.hold = hold
        self.calls: list[Audio] = []
        self.interims: list[Audio] = []

    async def transcribe(self, audio: Audio) -> str:
        self.calls.append(audio)
        answer = self.texts.pop(0)
        if self.hold:
            await asyncio.sleep(self.hold)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def try_transcribe(self, audio: Audio) -> str | None:
        if self.busy:
            return None
        self.interims.append(audio)
        return await self.transcribe(audio)
