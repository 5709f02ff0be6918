"""Inference workers: one thread per engine (per device) serving the chunks of every session.

A batch engine gets batches: the thread takes the waiting requests, finals first, collects more
until `max_batch_size` or `max_wait_ms`, and runs them as one call. A stepped engine
(`SteppedEngine`) gets continuous batching: between decode steps the thread admits whatever has
arrived, and each request is answered the step it finishes.

Three priorities: finals (a live turn's chunks), then batch work (chunks of an uploaded file),
then interims. Batch requests queue like finals but only run when no final waits, so a long
file never delays a live session's finals. Interim requests (tentative text while someone is
still talking) never wait behind the engine: `try_transcribe` returns None at once when the
worker is busy, or (a batch engine) when finals kept it busy most of the last seconds, so under
load interims thin out and finals stay fast.

Each worker measures its backlog (what a new final would wait) and its utilisation (how much of
the engine the finals kept busy lately): admission reads both.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from stt_server import metrics
from stt_server.audio import SAMPLE_RATE, Audio
from stt_server.engines.base import Engine, EngineError, SteppedEngine

log = logging.getLogger(__name__)

_STOPPED = "the inference worker has stopped"

# On an engine that runs one batch at a time (a CPU) an interim is a whole decode that cannot be
# interrupted: started the moment the engine is idle, it holds the engine when the next final
# comes. Once finals kept the engine busy for more than INTERIM_BUSY_LIMIT of the last
# INTERIM_WINDOW seconds, the next final would likely come during it (at a share f of busy time,
# with probability about 1 - e^-f), so interims stop until the load falls. A stepped engine needs
# no such rule: an interim there takes a free row and leaves the finals' rows alone.
INTERIM_WINDOW = 10.0
INTERIM_BUSY_LIMIT = 0.5


class Priority(StrEnum):
    """Served in this order; the values are the queue-wait metric's labels."""

    FINAL = "final"
    BATCH = "batch"
    INTERIM = "interim"


@dataclass
class _Request:
    audio: Audio
    future: asyncio.Future[str]
    loop: asyncio.AbstractEventLoop
    priority: Priority
    queued_at: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def _finals(requests: list[_Request]) -> int:
    return sum(r.priority is Priority.FINAL for r in requests)


class Utilisation:
    """The engine time finals took lately: the worker thread marks when each batch (or decode
    step) begins and ends, the event loop asks how much engine time the last seconds held.

    A batch or a decode step counts for the share of the worker's rows (`max_batch_size`) that
    finals fill: a free row is capacity a new session's chunk can still take, at about the cost
    of the rows already there on a GPU. (On a CPU a row costs about as much as a batch of one,
    so a half-full batch is busier than it looks; the backlog rule covers that.) Interims and
    uploaded files give way to finals (an interim is skipped, a file's chunk waits), so the
    engine time they take is not time a new session would lack.
    """

    def __init__(self, keep: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep = keep
        self._clock = clock
        self._spans: deque[tuple[float, float, float]] = deque()  # (start, end, share), by end
        self._current: tuple[float, float] | None = None  # (start, share) of the running batch
        self._lock = threading.Lock()

    def begin(self, start: float, share: float = 1.0) -> None:
        """The engine starts work at `start` (a time from `clock`), `share` of it for finals:
        the fraction of the worker's rows that finals fill."""
        with self._lock:
            self._current = (start, min(max(share, 0.0), 1.0))

    def end(self, end: float) -> None:
        """The work begun last ended at `end`."""
        with self._lock:
            if self._current is None:
                return
            (start, share), self._current = self._current, None
            if share > 0 and end > start:
                self._spans.append((start, end, share))
            while self._spans and self._spans[0][1] < end - self.keep:
                self._spans.popleft()

    def busy_seconds(self, window: float) -> float:
        """Engine seconds spent on finals within the last `window` seconds (at most `keep`),
        the running batch's so far included."""
        now = self._clock()
        since = now - min(window, self.keep)
        with self._lock:
            spans = list(self._spans)
            if self._current is not None:
                start, share = self._current
                spans.append((start, now, share))
        return sum((end - max(start, since)) * share for start, end, share in spans if end > since)


class InferenceWorker:
    """Serves `await worker.transcribe(audio)` from any session and any event loop."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 5.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.engine = engine
        self.device = engine.device
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.batch_sizes: deque[int] = deque(maxlen=1024)  # recent batches, for stats
        self._queues: dict[Priority, deque[_Request]] = {p: deque() for p in Priority}
        self._running: dict[int, _Request] = {}  # in the engine now
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"inference:{engine.name}")
        # Engine seconds per audio second, smoothed: how fast this worker works off a backlog.
        self._cost = 0.0
        self.utilisation = Utilisation()
        # Wall time of the batches that held a final, whatever their size: what an interim on a
        # batch engine would have been in the way of.
        self.final_time = Utilisation()

    # --- the session side (event loop) ---

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    async def transcribe(self, audio: Audio) -> str:
        """The text of `audio`; waits its turn however busy the engine is."""
        return await self._submit(audio, Priority.FINAL)

    async def transcribe_batch(self, audio: Audio) -> str:
        """The text of `audio`, served after every waiting final (uploaded files)."""
        return await self._submit(audio, Priority.BATCH)

    async def try_transcribe(self, audio: Audio) -> str | None:
        """The text of `audio`, or None at once if the engine is busy or, for a batch engine,
        was kept busy by finals lately (interims only)."""
        with self._cond:
            busy = self._busy()
        if not busy and not isinstance(self.engine, SteppedEngine):
            busy = (
                self.final_time.busy_seconds(INTERIM_WINDOW) > INTERIM_BUSY_LIMIT * INTERIM_WINDOW
            )
        if busy:
            metrics.INTERIMS_SKIPPED.inc()
            return None
        return await self._submit(audio, Priority.INTERIM)

    @property
    def load(self) -> int:
        """Requests waiting or in the engine: the pool sends new work to the least loaded."""
        with self._cond:
            return self._waiting() + len(self._running)

    def backlog_seconds(self) -> float:
        """Estimated engine time a new final waits: the finals queued and what is running
        (queued batch and interim work waits behind it)."""
        with self._cond:
            finals = self._queues[Priority.FINAL]
            pending = sum(r.seconds for r in (*finals, *self._running.values()))
        return pending * self._cost

    async def _submit(self, audio: Audio, priority: Priority) -> str:
        loop = asyncio.get_running_loop()
        request = _Request(audio, loop.create_future(), loop, priority)
        with self._cond:
            if self._stopped:
                raise EngineError(_STOPPED)
            self._queues[priority].append(request)
            self._cond.notify()
        return await request.future

    def _waiting(self) -> int:
        """Requests queued, not yet in the engine (call with the lock held)."""
        return sum(len(q) for q in self._queues.values())

    def _busy(self) -> bool:
        if self._waiting():
            return True
        if isinstance(self.engine, SteppedEngine):
            return len(self._running) >= self.max_batch_size
        return bool(self._running)

    # --- the worker thread ---

    def _take(self, count: int) -> list[_Request]:
        """Up to `count` live requests in priority order (call with the lock held)."""
        taken: list[_Request] = []
        for source in self._queues.values():
            while source and len(taken) < count:
                request = source.popleft()
                if not request.future.done():  # its session may have been cancelled
                    taken.append(request)
        return taken

    def _run(self) -> None:
        try:
            if isinstance(self.engine, SteppedEngine):
                self._run_stepped(self.engine)
            else:
                self._run_batches()
        finally:
            self._drain()

    def _wait_for_work(self) -> bool:
        """Block until a request is waiting; False once stopped (call with the lock held)."""
        while not self._waiting() and not self._stopped:
            self._cond.wait()
        return not self._stopped

    def _run_batches(self) -> None:
        while True:
            with self._cond:
                if not self._wait_for_work():
                    return
                deadline = time.monotonic() + self.max_wait_s
                while (
                    self._waiting() < self.max_batch_size
                    and (left := deadline - time.monotonic()) > 0
                    and not self._stopped
                ):
                    self._cond.wait(left)
                batch = self._take(self.max_batch_size)
                for request in batch:
                    self._running[id(request)] = request
            if batch:
                self._serve(batch)  # takes the batch off `_running` before waking its callers

    def _serve(self, batch: list[_Request]) -> None:
        started = time.monotonic()
        self._observe_start(batch, started)
        finals = _finals(batch)
        self.utilisation.begin(started, finals / self.max_batch_size)
        self.final_time.begin(started, 1.0 if finals else 0.0)
        try:
            texts = self.engine.transcribe([r.audio for r in batch])
            if len(texts) != len(batch):
                raise EngineError(f"engine returned {len(texts)} texts for {len(batch)} inputs")
        except Exception as exc:
            self.utilisation.end(time.monotonic())
            self.final_time.end(time.monotonic())
            if len(batch) > 1:  # retry alone, so only the failing request gets the error
                for request in batch:
                    self._serve([request])
                return
            log.exception("engine %s failed on a request", self.engine.name)
            self._leave(batch)
            self._resolve(batch[0], EngineError(f"{type(exc).__name__}: {exc}"))
            return
        ended = time.monotonic()
        self.utilisation.end(ended)
        self.final_time.end(ended)
        self._observe_end(sum(r.seconds for r in batch), ended - started)
        self._leave(batch)
        for request, text in zip(batch, texts, strict=True):
            self._resolve(request, text)

    def _leave(self, batch: list[_Request]) -> None:
        """The batch is out of the engine before its callers wake: an interim asked for the
        moment a final came back must find the engine idle, not still holding that batch."""
        with self._cond:
            for request in batch:
                self._running.pop(id(request), None)

    def _run_stepped(self, engine: SteppedEngine) -> None:
        while True:
            with self._cond:
                if not self._running and not self._wait_for_work():
                    return
                if self._stopped:
                    return
                new = self._take(self.max_batch_size - len(self._running))
                ids = {next(self._ids): r for r in new}
                self._running.update(ids)
                gone = [i for i, r in self._running.items() if r.future.done()]
            for request_id in gone:
                engine.abort(request_id)
                with self._cond:
                    self._running.pop(request_id, None)
            started = time.monotonic()
            if ids:
                self._observe_start(list(ids.values()), started)
                try:
                    engine.admit([(i, r.audio) for i, r in ids.items()])
                except Exception as exc:
                    log.exception("engine %s failed to admit requests", engine.name)
                    self._fail(ids, exc)
            if not engine.active:
                continue
            with self._cond:
                finals = _finals(list(self._running.values()))
            self.utilisation.begin(started, finals / self.max_batch_size)
            try:
                finished = engine.step()
            except Exception as exc:
                self.utilisation.end(time.monotonic())
                log.exception("engine %s failed in a decode step", engine.name)
                with self._cond:
                    failed = dict(self._running)
                for request_id in failed:
                    engine.abort(request_id)
                self._fail(failed, exc)
                continue
            elapsed = time.monotonic() - started
            self.utilisation.end(started + elapsed)
            metrics.ENGINE_SECONDS.labels(self.device).observe(elapsed)
            for request_id, text in finished:
                with self._cond:
                    request = self._running.pop(request_id, None)
                if request is not None:
                    self._observe_end(request.seconds, 0.0)
                    self._resolve(request, text)

    def _fail(self, requests: dict[int, _Request], exc: Exception) -> None:
        with self._cond:
            for request_id in requests:
                self._running.pop(request_id, None)
        for request in requests.values():
            self._resolve(request, EngineError(f"{type(exc).__name__}: {exc}"))

    def _observe_start(self, batch: list[_Request], now: float) -> None:
        self.batch_sizes.append(len(batch))
        metrics.BATCHES.labels(self.device).inc()
        metrics.BATCH_SIZE.labels(self.device).observe(len(batch))
        for request in batch:
            metrics.QUEUE_WAIT.labels(request.priority.value).observe(now - request.queued_at)

    def _observe_end(self, audio_seconds: float, elapsed: float) -> None:
        if elapsed > 0:
            metrics.ENGINE_SECONDS.labels(self.device).observe(elapsed)
            if audio_seconds > 0:
                cost = elapsed / audio_seconds
                self._cost = cost if self._cost == 0 else 0.8 * self._cost + 0.2 * cost

    def _drain(self) -> None:
        with self._cond:
            self._stopped = True
            left = [r for q in self._queues.values() for r in q]
            left += self._running.values()
            for queue in self._queues.values():
                queue.clear()
            self._running.clear()
        for request in left:
            self._resolve(request, EngineError(_STOPPED))

    @staticmethod
    def _resolve(request: _Request, outcome: str | BaseException) -> None:
        def settle() -> None:
            if request.future.done():  # the session was cancelled meanwhile
                return
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)

        # RuntimeError: that session's event loop is already closed.
        with contextlib.suppress(RuntimeError):
            request.loop.call_soon_threadsafe(settle)


class InferencePool:
    """One worker per device; each request goes to the least loaded one."""

    def __init__(self, workers: list[InferenceWorker]) -> None:
        if not workers:
            raise ValueError("an inference pool needs at least one worker")
        self.workers = workers

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self, timeout: float | None = None) -> None:
        for worker in self.workers:
            worker.stop(timeout)

    def _pick(self) -> InferenceWorker:
        return min(self.workers, key=lambda w: w.load)

    async def transcribe(self, audio: Audio) -> str:
        return await self._pick().transcribe(audio)

    async def transcribe_batch(self, audio: Audio) -> str:
        return await self._pick().transcribe_batch(audio)

    async def try_transcribe(self, audio: Audio) -> str | None:
        return await self._pick().try_transcribe(audio)

    def backlog_seconds(self) -> float:
        """Estimated time until a new final would start: the least busy worker's backlog."""
        return min(w.backlog_seconds() for w in self.workers)

    def busy_seconds(self, window: float) -> float:
        """Engine seconds finals took within the last `window` seconds, per worker: divided by
        `window`, the share of the pool's capacity in use (each chunk goes to the least loaded
        worker, so the workers share the load)."""
        return sum(w.utilisation.busy_seconds(window) for w in self.workers) / len(self.workers)
