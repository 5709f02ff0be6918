"""Terminal stage: hands each transcript and speech event to the session's dialect to send."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from stt_server import metrics
from stt_server.pipeline import DEFAULT_QUEUE_SIZE, Stage
from stt_server.stages.asr import AsrOutput, Transcript, record_final

Send = Callable[[AsrOutput], Awaitable[None]]


class SinkStage(Stage[AsrOutput, None]):
    def __init__(self, send: Send, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        super().__init__(queue_size=queue_size)
        self._send = send
        self.sent = 0

    async def handle(self, item: AsrOutput) -> None:
        await self._send(item)
        if isinstance(item, Transcript):
            self.sent += 1
            kind = "final" if item.is_final else "interim" if item.interim else "tentative"
            metrics.SEGMENTS.labels(kind).inc()
            record_final(item)
