"""Terminal stage: serialises segments to the client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from stt_server.pipeline import DEFAULT_QUEUE_SIZE, Stage
from stt_server.protocol import TranscriptionSegment

Send = Callable[[TranscriptionSegment], Awaitable[None]]


class SinkStage(Stage[TranscriptionSegment, None]):
    def __init__(self, send: Send, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        super().__init__(queue_size=queue_size)
        self._send = send
        self.sent = 0

    async def handle(self, item: TranscriptionSegment) -> None:
        await self._send(item)
        self.sent += 1
