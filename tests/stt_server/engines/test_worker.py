from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import pytest

from stt_server.engines.base import Audio, EngineError
from stt_server.engines.worker import InferenceWorker
from tests.support.engines import ScriptedEngine


def by_length(clip: Audio) -> str:
    """Answers with each input's length; fails on an input that starts with -1."""
    if clip[0] == -1:
        raise RuntimeError("cannot transcribe this")
    return f"len={clip.size}"


def FakeEngine(delay: float = 0.0) -> ScriptedEngine:
    return ScriptedEngine(by_length, delay=delay)


def audio(n: int, first: float = 0.0) -> np.ndarray:
    a = np.zeros(n, dtype=np.float32)
    a[0] = first
    return a


async def test_concurrent_requests_are_batched_up_to_the_maximum() -> None:
    engine = FakeEngine(delay=0.05)
    worker = InferenceWorker(engine, max_batch_size=4, max_wait_ms=100)
    worker.start()
    try:
        results = await asyncio.gather(*(worker.transcribe(audio(10 + i)) for i in range(6)))
    finally:
        worker.stop(5)
    assert results == [f"len={10 + i}" for i in range(6)]
    assert engine.batches == [4, 2]
    assert list(worker.batch_sizes) == [4, 2]
    assert engine.threads == {"inference:scripted"}  # never on the event loop's thread


async def test_a_lone_request_is_not_held_longer_than_the_wait() -> None:
    worker = InferenceWorker(FakeEngine(), max_batch_size=8, max_wait_ms=20)
    worker.start()
    try:
        started = time.monotonic()
        assert await worker.transcribe(audio(5)) == "len=5"
        assert time.monotonic() - started < 1.0
    finally:
        worker.stop(5)


async def test_a_failing_request_fails_alone() -> None:
    engine = FakeEngine(delay=0.02)
    worker = InferenceWorker(engine, max_batch_size=8, max_wait_ms=100)
    worker.start()
    try:
        results = await asyncio.gather(
            worker.transcribe(audio(3)),
            worker.transcribe(audio(4, first=-1)),
            worker.transcribe(audio(5)),
            return_exceptions=True,
        )
    finally:
        worker.stop(5)
    assert results[0] == "len=3"
    assert isinstance(results[1], EngineError)
    assert "cannot transcribe this" in str(results[1])
    assert results[2] == "len=5"


async def test_cancelled_requests_are_skipped_and_the_worker_goes_on() -> None:
    engine = FakeEngine(delay=0.2)
    worker = InferenceWorker(engine, max_batch_size=1, max_wait_ms=0)
    worker.start()
    try:
        busy = asyncio.create_task(worker.transcribe(audio(1)))
        await asyncio.sleep(0.05)
        doomed = asyncio.create_task(worker.transcribe(audio(2)))
        await asyncio.sleep(0.01)
        doomed.cancel()
        assert await busy == "len=1"
        assert await worker.transcribe(audio(3)) == "len=3"
    finally:
        worker.stop(5)
    assert engine.batches == [1, 1]


async def test_a_stopped_worker_refuses_requests() -> None:
    worker = InferenceWorker(FakeEngine())
    worker.start()
    worker.stop(5)
    with pytest.raises(EngineError):
        await worker.transcribe(audio(1))


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 (set by the worker thread)
            await asyncio.sleep(0.005)


async def test_batch_work_runs_after_waiting_finals_and_before_interims() -> None:
    order: list[int] = []

    def record(clip: Audio) -> str:
        order.append(clip.size)
        return f"len={clip.size}"

    engine = ScriptedEngine(record)
    engine.gate.clear()
    worker = InferenceWorker(engine, max_batch_size=1, max_wait_ms=0)
    worker.start()
    try:
        running = asyncio.create_task(worker.transcribe(audio(1)))
        await wait_until(lambda: engine.calls == 1)  # in the engine, held by the gate
        batch = [asyncio.create_task(worker.transcribe_batch(audio(n))) for n in (10, 11)]
        await wait_until(lambda: worker.load == 3)
        final = asyncio.create_task(worker.transcribe(audio(2)))
        await wait_until(lambda: worker.load == 4)
        # Queued batch work makes the worker busy: an interim is skipped, not queued.
        assert await worker.try_transcribe(audio(3)) is None
        engine.gate.set()
        assert await running == "len=1"
        assert await final == "len=2"
        assert await asyncio.gather(*batch) == ["len=10", "len=11"]
    finally:
        engine.gate.set()
        worker.stop(5)
    assert order == [1, 2, 10, 11]


async def test_an_idle_worker_serves_batch_and_interim_requests() -> None:
    worker = InferenceWorker(FakeEngine(), max_batch_size=4, max_wait_ms=0)
    worker.start()
    try:
        assert await worker.transcribe_batch(audio(7)) == "len=7"
        assert await worker.try_transcribe(audio(8)) == "len=8"
    finally:
        worker.stop(5)
