"""One inference worker per model: a thread that batches requests from all sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

from stt_server.engines.base import Audio, Engine, EngineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Request:
    audio: Audio
    future: asyncio.Future[str]
    loop: asyncio.AbstractEventLoop


class InferenceWorker:
    """Serves `await worker.transcribe(audio)` from any session and any event loop.

    The thread takes the first waiting request, then collects more until `max_batch_size`
    requests or `max_wait_ms` have passed, whichever comes first, and runs them as one batch.
    If a batch fails, each request is retried alone so only the failing one gets an error.
    """

    def __init__(self, engine: Engine, *, max_batch_size: int = 8, max_wait_ms: float = 5.0):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.batch_sizes: deque[int] = deque(maxlen=1024)  # recent batches, for stats
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"inference:{engine.name}")
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        with self._lock:
            self._stopped = True
        self._queue.put(None)
        self._thread.join(timeout)

    async def transcribe(self, audio: Audio) -> str:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        with self._lock:
            if self._stopped:
                raise EngineError("the inference worker has stopped")
            self._queue.put(_Request(audio, future, loop))
        return await future

    def _run(self) -> None:
        running = True
        while running:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    running = False
                    break
                batch.append(item)
            live = [r for r in batch if not r.future.done()]
            if live:
                self.batch_sizes.append(len(live))
                self._serve(live)
        self._drain()

    def _serve(self, batch: list[_Request]) -> None:
        try:
            texts = self.engine.transcribe([r.audio for r in batch])
            if len(texts) != len(batch):
                raise EngineError(f"engine returned {len(texts)} texts for {len(batch)} inputs")
        except Exception as exc:
            if len(batch) > 1:
                for request in batch:
                    self._serve([request])
                return
            log.exception("engine %s failed on a request", self.engine.name)
            self._resolve(batch[0], EngineError(f"{type(exc).__name__}: {exc}"))
            return
        for request, text in zip(batch, texts, strict=True):
            self._resolve(request, text)

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._resolve(item, EngineError("the inference worker has stopped"))

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
