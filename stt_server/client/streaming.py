"""One client session: send audio frames, receive and show segments, finish cleanly."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import urllib.parse
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from stt_server.audio import SAMPLE_RATE, Audio, encode_pcm16
from stt_server.client.display import Display
from stt_server.protocol import AudioFrame, EndOfStream

FRAME_SAMPLES = SAMPLE_RATE * 20 // 1000  # 20 ms, what a voice agent's audio callback delivers


class ClientError(Exception):
    """A failure the user can act on (server unreachable, connection lost)."""


@dataclass
class SessionResult:
    finals: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    messages: int = 0


async def file_frames(audio: Audio, *, speed: float = 1.0) -> AsyncIterator[Audio]:
    """20 ms frames of `audio`, paced at `speed`× real time (0: as fast as the server takes)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k, offset in enumerate(range(0, len(audio), FRAME_SAMPLES)):
        if speed > 0:
            delay = start + k * (FRAME_SAMPLES / SAMPLE_RATE) / speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        yield audio[offset : offset + FRAME_SAMPLES]


async def then_silence(frames: AsyncIterator[Audio], seconds: float) -> AsyncIterator[Audio]:
    """`frames`, then `seconds` of silent frames so the server's VAD sees the last turn end."""
    async for frame in frames:
        yield frame
    silence = np.zeros(FRAME_SAMPLES, np.float32)
    for _ in range(round(seconds * SAMPLE_RATE / FRAME_SAMPLES)):
        yield silence


def session_url(url: str, *, binary: bool) -> str:
    """Binary frames carry no header, so their format travels in the query string."""
    if not binary:
        return url
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    query += [("sampleRate", str(SAMPLE_RATE)), ("channels", "1")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def encode_frame(frame: Audio, *, binary: bool) -> str | bytes:
    pcm = encode_pcm16(frame)
    if binary:
        return pcm
    samples = base64.b64encode(pcm).decode("ascii")
    return AudioFrame(samples=samples, sample_rate=SAMPLE_RATE, channels=1).to_json()


END_OF_STREAM = EndOfStream().to_json()


async def run_session(
    url: str,
    frames: AsyncIterator[Audio],
    display: Display,
    *,
    binary: bool = False,
    settle_seconds: float = 3.0,
    final_timeout: float = 60.0,
    api_key: str | None = None,
) -> SessionResult:
    """Streams `frames` to the server at `url` while showing its messages.

    When the frames run out, sends end of stream (`{"type": "end"}`) and waits, `final_timeout`
    at most, for the server to transcribe the rest and close. A server too old to know `end`
    says UNSUPPORTED_MESSAGE_TYPE; then the client waits until the server has been quiet for
    `settle_seconds` with no turn left open instead, and closes itself."""
    result = SessionResult()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    try:
        ws = await connect(
            session_url(url, binary=binary),
            open_timeout=10,
            max_size=2**22,
            additional_headers=headers,
        )
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        raise ClientError(f"cannot connect to {url}: {exc}") from exc
    state = _ReceiveState()
    receiver = asyncio.create_task(_receive(ws, display, result, state))
    try:
        async for frame in frames:
            if receiver.done():
                break
            await ws.send(encode_frame(frame, binary=binary))
        if not receiver.done():
            state.end_sent = True
            await ws.send(END_OF_STREAM)
            await _wait_for_close(state, receiver, settle_seconds, final_timeout)
    except ConnectionClosed as exc:
        raise ClientError(f"connection to {url} lost: {exc}") from exc
    finally:
        await ws.close()
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
    if state.closed_error is not None:
        raise ClientError(state.closed_error)
    return result


@dataclass
class _ReceiveState:
    open_turn: bool = False
    last_message: float = 0.0
    closed_error: str | None = None
    end_sent: bool = False
    end_unsupported: asyncio.Event = field(default_factory=asyncio.Event)


async def _receive(
    ws: ClientConnection, display: Display, result: SessionResult, state: _ReceiveState
) -> None:
    loop = asyncio.get_running_loop()
    state.last_message = loop.time()
    try:
        async for raw in ws:
            state.last_message = loop.time()
            result.messages += 1
            try:
                message = json.loads(raw)
            except ValueError:
                message = None
            if not isinstance(message, dict):
                result.errors.append(("BAD_SERVER_MESSAGE", repr(raw)[:200]))
                display.error("BAD_SERVER_MESSAGE", repr(raw)[:200])
                continue
            if state.end_sent and message.get("code") == "UNSUPPORTED_MESSAGE_TYPE":
                state.end_unsupported.set()  # an older server: not an error of this session
                continue
            display.raw(message)
            if "error" in message:
                code, text = str(message.get("code", "")), str(message["error"])
                result.errors.append((code, text))
                display.error(code, text)
            elif "text" in message:
                is_final = bool(message.get("isFinal", False))
                display.segment(
                    str(message["text"]), is_final, bool(message.get("isEndOfTurn", False))
                )
                state.open_turn = not is_final
                if is_final:
                    result.finals.append(str(message["text"]))
    except ConnectionClosed as exc:
        if exc.rcvd is not None and exc.rcvd.code not in (1000, 1001):
            state.closed_error = (
                f"server closed the connection: code {exc.rcvd.code} {exc.rcvd.reason}".strip()
            )


async def _wait_for_close(
    state: _ReceiveState, receiver: asyncio.Task[None], settle_seconds: float, limit: float
) -> None:
    """After end of stream: until the server closes, or falls back to `_settle` if it did not
    understand `end`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    fallback = asyncio.create_task(state.end_unsupported.wait())
    try:
        await asyncio.wait({receiver, fallback}, timeout=limit, return_when=FIRST_COMPLETED)
    finally:
        fallback.cancel()
        await asyncio.gather(fallback, return_exceptions=True)
    if state.end_unsupported.is_set() and not receiver.done():
        await _settle(state, receiver, settle_seconds, max(0.0, deadline - loop.time()))


async def _settle(
    state: _ReceiveState, receiver: asyncio.Task[None], settle_seconds: float, limit: float
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    quiet_since = loop.time()
    while not receiver.done() and loop.time() < deadline:
        quiet_since = max(quiet_since, state.last_message)
        if not state.open_turn and loop.time() - quiet_since >= settle_seconds:
            return
        await asyncio.sleep(0.05)
