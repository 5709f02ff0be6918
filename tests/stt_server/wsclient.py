"""A minimal streaming WebSocket client for tests and benchmarks."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import websockets

from stt_server.audio import encode_pcm16


@dataclass(frozen=True)
class Received:
    message: dict[str, Any]
    at: float  # seconds since the first frame was sent

    @property
    def is_final(self) -> bool:
        return bool(self.message.get("isFinal"))


@dataclass
class StreamResult:
    received: list[Received] = field(default_factory=list)
    sent_frames: int = 0
    close_code: int | None = None

    @property
    def segments(self) -> list[dict[str, Any]]:
        return [r.message for r in self.received if "text" in r.message]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [r.message for r in self.received if "code" in r.message]

    @property
    def finals(self) -> list[Received]:
        return [r for r in self.received if r.is_final]


def json_frame(pcm: bytes, sample_rate: int, channels: int) -> str:
    samples = base64.b64encode(pcm).decode("ascii")
    return json.dumps({"samples": samples, "sampleRate": sample_rate, "channels": channels})


async def stream_audio(
    url: str,
    audio: npt.NDArray[np.floating],
    *,
    sample_rate: int = 16000,
    frame_ms: float = 20.0,
    realtime: bool = False,
    binary: bool = False,
    expected_finals: int | None = None,
    idle_timeout: float = 20.0,
) -> StreamResult:
    """Send `audio` ((n,) or (n, channels) floats) in frames; collect what the server sends.

    Returns once `expected_finals` final segments arrived, or the server has been silent for
    `idle_timeout` seconds passed after the last frame, or the server closed the connection.
    """
    frames = np.asarray(audio)
    channels = 1 if frames.ndim == 1 else frames.shape[1]
    step = max(1, int(sample_rate * frame_ms / 1000))
    result = StreamResult()
    async with websockets.connect(url, max_size=None) as ws:
        start = time.monotonic()

        async def send() -> None:
            for i, offset in enumerate(range(0, len(frames), step)):
                pcm = encode_pcm16(frames[offset : offset + step])
                await ws.send(pcm if binary else json_frame(pcm, sample_rate, channels))
                result.sent_frames += 1
                if realtime:
                    await asyncio.sleep(
                        max(0.0, start + (i + 1) * frame_ms / 1000 - time.monotonic())
                    )

        async def receive() -> None:
            while expected_finals is None or len(result.finals) < expected_finals:
                raw = await ws.recv()
                result.received.append(Received(json.loads(raw), time.monotonic() - start))

        sender = asyncio.create_task(send())
        receiver = asyncio.create_task(receive())
        try:
            await sender
            await asyncio.wait_for(asyncio.shield(receiver), idle_timeout)
        except (TimeoutError, websockets.ConnectionClosed):
            pass
        finally:
            sender.cancel()
            receiver.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
        result.close_code = ws.close_code
    return result
