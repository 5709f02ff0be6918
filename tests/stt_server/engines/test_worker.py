from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import pytest

from stt_server.engines.base import Audio, EngineError
from stt_server.engines.worker import InferencePool, InferenceWorker, Utilisation
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


# --- utilisation ----------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def span(busy: Utilisation, start: float, end: float, share: float = 1.0) -> None:
    busy.begin(start, share)
    busy.end(end)


def test_utilisation_counts_the_engine_time_within_the_window() -> None:
    clock = Clock()
    busy = Utilisation(keep=60.0, clock=clock)
    assert busy.busy_seconds(10) == 0.0
    span(busy, 80.0, 82.0)  # before the window
    span(busy, 89.0, 91.0)  # half in it
    span(busy, 95.0, 96.0)
    span(busy, 97.0, 98.0, share=0.25)  # a quarter of a batch's rows were finals
    assert busy.busy_seconds(10) == pytest.approx(1.0 + 1.0 + 0.25)
    assert busy.busy_seconds(30) == pytest.approx(2.0 + 2.0 + 1.0 + 0.25)
    busy.begin(99.0)  # running now: counts so far
    assert busy.busy_seconds(10) == pytest.approx(2.25 + 1.0)
    clock.now = 200.0
    busy.end(200.0)
    assert busy.busy_seconds(10) == pytest.approx(10.0)
    clock.now = 300.0
    assert busy.busy_seconds(10) == 0.0


def test_utilisation_forgets_what_is_older_than_it_keeps() -> None:
    clock = Clock()
    busy = Utilisation(keep=10.0, clock=clock)
    span(busy, 50.0, 60.0)
    span(busy, 99.0, 100.0)
    span(busy, 100.0, 100.0)  # nothing
    span(busy, 99.0, 100.0, share=0.0)  # no finals: nothing
    busy.end(100.0)  # nothing begun
    # The window is capped at what is kept.
    assert busy.busy_seconds(100) == pytest.approx(1.0)


async def test_a_worker_measures_the_engine_time_of_finals_only() -> None:
    engine = FakeEngine(delay=0.05)
    worker = InferenceWorker(engine, max_batch_size=1, max_wait_ms=0)
    pool = InferencePool([worker])
    worker.start()
    try:
        await worker.transcribe_batch(audio(5))
        await worker.try_transcribe(audio(6))
        assert pool.busy_seconds(60) == 0.0
        await worker.transcribe(audio(7))
        await worker.transcribe(audio(8))
    finally:
        worker.stop(5)
    assert 0.1 <= pool.busy_seconds(60) < 5.0


async def test_interims_stop_while_finals_kept_a_batch_engine_busy() -> None:
    engine = FakeEngine()
    worker = InferenceWorker(engine, max_batch_size=1, max_wait_ms=0)
    worker.start()
    try:
        assert await worker.transcribe(audio(1)) == "len=1"
        now = time.monotonic()
        # Finals held the engine 6 of the last 10 s: an interim now would likely be in the way
        # of the next one, so it is skipped though the engine is idle this moment.
        span(worker.final_time, now - 8.0, now - 2.0)
        assert worker.load == 0
        assert await worker.try_transcribe(audio(2)) is None
        assert engine.calls == 1
        # Once they are older than the window, interims run again.
        worker.final_time = Utilisation()
        span(worker.final_time, now - 16.0, now - 11.0)
        span(worker.final_time, now - 4.0, now - 1.0)  # 3 of the last 10 s
        assert await worker.try_transcribe(audio(3)) == "len=3"
    finally:
        worker.stop(5)


class CountdownEngine:
    """A stepped engine: each request takes as many 10 ms steps as its audio has samples."""

    name = "countdown"
    model = "test"
    device = "cpu"

    def __init__(self) -> None:
        self.left: dict[int, int] = {}

    def transcribe(self, batch: list[Audio]) -> list[str]:
        raise NotImplementedError

    def admit(self, requests: list[tuple[int, Audio]]) -> None:
        self.left.update((i, clip.size) for i, clip in requests)

    def step(self) -> list[tuple[int, str]]:
        time.sleep(0.01)
        self.left = {i: n - 1 for i, n in self.left.items()}
        done = [i for i, n in self.left.items() if n == 0]
        for i in done:
            del self.left[i]
        return [(i, "done") for i in done]

    def abort(self, request_id: int) -> None:
        self.left.pop(request_id, None)

    @property
    def active(self) -> int:
        return len(self.left)


async def test_a_stepped_worker_counts_each_step_for_its_share_of_final_rows() -> None:
    worker = InferenceWorker(CountdownEngine(), max_batch_size=4)
    worker.start()
    try:
        assert await worker.try_transcribe(audio(5)) == "done"
        assert worker.utilisation.busy_seconds(60) == 0.0  # interims do not count
        started = time.monotonic()
        await asyncio.gather(worker.transcribe(audio(10)), worker.transcribe(audio(10)))
        elapsed = time.monotonic() - started
    finally:
        worker.stop(5)
    # Two of four rows at most: at most half the time.
    assert 0.0 < worker.utilisation.busy_seconds(60) <= elapsed / 2
