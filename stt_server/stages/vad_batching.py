"""Silero across sessions: one batched ONNX run per tick instead of one run per session window.

Every session keeps its own recurrent state (`SileroStream`); the network takes a batch with a
per-row state, so the windows that several sessions submit at about the same moment go through
one run (`benchmarks/bench_vad.py`: same probabilities, 2.7x less CPU at 50 sessions) and one
worker-thread hop instead of one per session.

Batches form by themselves: the first request starts a run on the next loop iteration; requests
that arrive while a run is in the worker thread wait for the next one. A lone session therefore
waits for nothing, and a busy server runs fewer, larger batches.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import onnxruntime

from stt_server.audio import SAMPLE_RATE

WINDOW = 512  # samples per Silero window at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window Silero expects in front of each window


class SileroStream:
    """One session's recurrent state and the context carried from its previous window."""

    def __init__(self) -> None:
        self.state = np.zeros((2, 1, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)


# One batcher per event loop and model: futures and tasks belong to one loop.
_BATCHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, VadBatcher]] = (
    weakref.WeakKeyDictionary()
)


@dataclass
class _Request:
    stream: SileroStream
    windows: npt.NDArray[np.float32]  # (n, WINDOW)
    future: asyncio.Future[list[float]]
    probabilities: list[float] = field(default_factory=list)


class VadBatcher:
    """Serves `await batcher.probabilities(stream, windows)` for every session of one event
    loop; get it with `VadBatcher.for_loop(session)`."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self._session = session
        self._rate = np.array(SAMPLE_RATE, dtype=np.int64)
        self._pending: list[_Request] = []
        self._runner: asyncio.Task[None] | None = None
        self.batch_sizes: list[int] = []  # rows per ONNX run, most recent last (bounded)

    @classmethod
    def for_loop(cls, session: onnxruntime.InferenceSession) -> VadBatcher:
        """The batcher of this model in the running event loop (created on first use)."""
        batchers = _BATCHERS.setdefault(asyncio.get_running_loop(), {})
        # Keyed by id: the batcher holds the session, so the id is not reused while it lives.
        if id(session) not in batchers:
            batchers[id(session)] = cls(session)
        return batchers[id(session)]

    async def probabilities(
        self, stream: SileroStream, windows: npt.NDArray[np.float32]
    ) -> list[float]:
        """Speech probability of each row of `windows` (shape (n, 512)) for this stream."""
        if len(windows) == 0:
            return []
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(stream, windows, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="vad-batcher")
        return await future

    async def _run(self) -> None:
        # Owned by the batcher: it ends by itself once no request is pending, and failures go
        # to the requests' futures, never to the task.
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._compute, batch)
            except Exception as exc:
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            for request in batch:
                if not request.future.done():  # its session may have been cancelled
                    request.future.set_result(request.probabilities)

    def _compute(self, batch: list[_Request]) -> None:
        """Step t runs window t of every request that has one, all rows in one ONNX call."""
        for step in range(max(len(r.windows) for r in batch)):
            rows = [r for r in batch if len(r.windows) > step]
            x = np.stack([np.concatenate([r.stream.context, r.windows[step]]) for r in rows])
            state = np.concatenate([r.stream.state for r in rows], axis=1)  # (2, rows, 128)
            out, new_state = self._session.run(None, {"input": x, "state": state, "sr": self._rate})
            out = np.asarray(out).reshape(len(rows), -1)
            new_state = np.asarray(new_state, dtype=np.float32)
            for i, request in enumerate(rows):
                request.stream.state = new_state[:, i : i + 1, :].copy()
                request.stream.context = x[i, -CONTEXT:].copy()
                request.probabilities.append(float(out[i, 0]))
            self.batch_sizes.append(len(rows))
        del self.batch_sizes[:-1024]
