"""Silero VAD across sessions: one batched ONNX run per tick instead of one run per window.

Every session keeps its own recurrent state (`SileroStream`); the network takes a batch with a
per-row state, so the windows that several sessions submit at about the same moment go through
one run (`benchmarks/bench_vad.py`: same probabilities, 2.7x less CPU at 50 sessions) and one
worker-thread hop instead of one per session. A lone session is a batch of one.

Batches form by themselves: the first request starts a run on the next loop iteration; requests
that arrive while a run is in the worker thread wait for the next one. A lone session therefore
waits for nothing, and a busy server runs fewer, larger batches. The runtime creates the batcher
with the inference workers and stops it with them.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import onnxruntime

from stt_server import metrics
from stt_server.audio import SAMPLE_RATE

WINDOW = 512  # samples per Silero window at 16 kHz (32 ms)
WINDOW_SECONDS = WINDOW / SAMPLE_RATE
CONTEXT = 64  # samples of the previous window Silero expects in front of each window
STATE_SHAPE = (2, 1, 128)  # Silero v5's recurrent state per stream


class SileroModel:
    """The Silero VAD ONNX network, loaded once and shared; it holds no per-session state."""

    def __init__(self) -> None:
        path = importlib.resources.files("silero_vad") / "data" / "silero_vad.onnx"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )


class SileroStream:
    """One session's recurrent state and the context carried from its previous window."""

    def __init__(self) -> None:
        self.state = np.zeros(STATE_SHAPE, dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)


@dataclass
class _Request:
    stream: SileroStream
    windows: npt.NDArray[np.float32]  # (n, WINDOW)
    future: asyncio.Future[list[float]]
    probabilities: list[float] = field(default_factory=list)


class VadBatcher:
    """Serves `await batcher.probabilities(stream, windows)` for every session of one event
    loop. Create it inside the loop that will use it; `stop()` ends its runner."""

    def __init__(self, model: SileroModel) -> None:
        self._session = model.session
        self._rate = np.array(SAMPLE_RATE, dtype=np.int64)
        self._pending: list[_Request] = []
        self._runner: asyncio.Task[None] | None = None
        self._stopped = False
        self.batch_sizes: list[int] = []  # rows per ONNX run, most recent last (bounded)

    async def probabilities(
        self, stream: SileroStream, windows: npt.NDArray[np.float32]
    ) -> list[float]:
        """Speech probability of each row of `windows` (shape (n, 512)) for this stream."""
        if len(windows) == 0:
            return []
        if self._stopped:
            raise RuntimeError("the VAD batcher has stopped")
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(stream, windows, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="vad-batcher")
        return await future

    async def stop(self) -> None:
        """Fail what is pending and wait for the run in progress to end."""
        self._stopped = True
        for request in self._pending:
            if not request.future.done():
                request.future.set_exception(RuntimeError("the VAD batcher has stopped"))
        self._pending = []
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    async def _run(self) -> None:
        # Ends by itself once no request is pending; failures go to the requests' futures.
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
            started = time.perf_counter()
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
            metrics.VAD_BATCH_SIZE.observe(len(rows))
            metrics.VAD_SECONDS.observe(time.perf_counter() - started)
        del self.batch_sizes[:-1024]
