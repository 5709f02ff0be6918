"""Hostile input: random and mutated client messages never take the server down, and each bad
one gets its own error code from the protocol table (never INTERNAL_ERROR, which is for server
bugs and ends the session).

Most cases go straight to the message decoder (what the session runs on every message); a few
hundred go through a live socket while a watcher polls /health.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from stt_server.dialects.native import NativeDialect, parse_text
from stt_server.errors import ErrorCode, ProtocolError
from stt_server.protocol import AudioFrame
from stt_server.settings import SessionSettings
from tests.stt_server.load.conftest import LiveServer

# The codes a single bad message gets; the session carries on after each of them.
MESSAGE_CODES = {
    ErrorCode.INVALID_MESSAGE,
    ErrorCode.INVALID_JSON,
    ErrorCode.INVALID_BASE64,
    ErrorCode.INVALID_AUDIO,
    ErrorCode.UNSUPPORTED_SAMPLE_RATE,
    ErrorCode.UNSUPPORTED_CHANNELS,
    ErrorCode.MESSAGE_TOO_LARGE,
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
}
LIMIT = 4096  # the decoder's message limit in these tests, so MESSAGE_TOO_LARGE comes up

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
pcm = st.binary(max_size=3000)
frames = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.just("audio"), values),
        "samples": st.one_of(pcm.map(lambda b: base64.b64encode(b).decode()), values),
        "sampleRate": st.one_of(st.sampled_from([8000, 11025, 16000, 44100, 48000]), values),
        "channels": st.one_of(st.integers(1, 8), values),
        "extra": values,
    },
)
json_frames = frames.map(json.dumps)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A JSON frame with a cut, an inserted, a replaced or a removed character."""
    text = draw(json_frames)
    at = draw(st.integers(0, len(text)))
    match draw(st.sampled_from(["cut", "insert", "replace", "remove"])):
        case "cut":
            return text[:at]
        case "insert":
            return text[:at] + draw(st.characters()) + text[at:]
        case "replace":
            return text[:at] + draw(st.characters()) + text[at + 1 :]
        case _:
            return text[:at] + text[at + 1 :]


texts = st.one_of(st.text(), json_frames, mutated(), st.binary().map(lambda b: b.decode("latin-1")))
binaries = st.one_of(st.binary(max_size=3000), pcm, st.integers(LIMIT - 2, LIMIT + 2).map(bytes))
messages = st.one_of(texts, binaries)


def decode(decoder: NativeDialect, message: str | bytes, limit: int = LIMIT) -> ErrorCode | None:
    """What the session does with one message: the error code it sends back, or None."""
    if len(message) > limit:
        return ErrorCode.MESSAGE_TOO_LARGE
    try:
        if isinstance(message, bytes):
            commands = decoder.decode(None, message)
        else:
            commands = decoder.decode(message, None)
    except ProtocolError as exc:
        return exc.code
    for audio in commands:
        if isinstance(audio, np.ndarray):
            assert audio.dtype == np.float32
            assert audio.ndim == 1
            assert np.all(np.isfinite(audio))
    return None


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, min_size=1, max_size=4))
def test_any_message_sequence_decodes_or_gets_a_message_error(
    sequence: list[str | bytes],
) -> None:
    decoder = NativeDialect(SessionSettings())  # one per session: it keeps state
    for message in sequence:
        code = decode(decoder, message)
        assert code is None or code in MESSAGE_CODES


@settings(max_examples=1500, deadline=None)
@given(mutated())
def test_mutated_json_frames(text: str) -> None:
    code = decode(NativeDialect(SessionSettings()), text)
    assert code is None or code in MESSAGE_CODES


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,  # nesting deeper than the JSON parser's recursion limit
        '{"samples": "AAAA", "sampleRate": ' + "9" * 5000 + "}",  # over int's digit limit
        '{"samples": "AAAA", "sampleRate": 1e999}',  # parses as infinity
        '{"samples": "AAAA", "sampleRate": NaN}',
    ],
)
def test_pathological_json_is_invalid_json_or_message(text: str) -> None:
    decoder = NativeDialect(SessionSettings())
    assert decode(decoder, text, 1 << 20) in {ErrorCode.INVALID_JSON, ErrorCode.INVALID_MESSAGE}


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=LIMIT), st.integers(8000, 48000), st.integers(1, 8))
def test_raw_pcm_in_any_format(data: bytes, rate: int, channels: int) -> None:
    decoder = NativeDialect(SessionSettings(sample_rate=rate, channels=channels))
    code = decode(decoder, data)
    assert code == (ErrorCode.INVALID_AUDIO if len(data) % (2 * channels) else None)


@pytest.fixture(scope="module")
def health_watch(server: LiveServer) -> Iterator[list[str]]:
    """Polls /health every 50 ms for the module's duration; yields the failures seen."""
    failures: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.wait(0.05):
                try:
                    status = client.get(f"http://{server.address}/health").status_code
                    if status != 200:
                        failures.append(f"status {status}")
                except httpx.TransportError as exc:
                    failures.append(repr(exc))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    yield failures
    stop.set()
    watcher.join()


def exchange(ws: ClientConnection, message: str | bytes, tag: str) -> list[dict[str, Any]]:
    """Send `message`, then a sentinel; the error replies that came before the sentinel's."""
    ws.send(message)
    ws.send(json.dumps({"type": tag}))
    replies: list[dict[str, Any]] = []
    while True:
        reply = json.loads(ws.recv(timeout=10))
        if tag in reply.get("error", ""):
            return replies
        if "code" in reply:
            replies.append(reply)


def test_live_socket_answers_each_bad_message_with_its_code(
    server: LiveServer, health_watch: list[str]
) -> None:
    sentinels = itertools.count()
    sent = bad = 0

    with connect(server.url, max_size=None) as ws:

        @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(messages)
        def one(message: str | bytes) -> None:
            nonlocal sent, bad
            predicted = decode(NativeDialect(SessionSettings()), message, 1 << 20)
            if isinstance(message, str) and predicted is None:
                # A valid control message (end of stream) ends the session: not fuzzed here.
                parsed = parse_text(message)
                assume(isinstance(parsed, AudioFrame))
            # ConnectionClosed fails the test: one session must take every message.
            replies = exchange(ws, message, f"sentinel-{next(sentinels)}")
            assert [r["code"] for r in replies] == ([] if predicted is None else [predicted])
            assert all(r["error"] for r in replies)
            sent += 1
            bad += bool(replies)

        one()
    assert sent >= 200
    assert bad >= 50  # most of them were bad messages
    assert server.healthy()
    assert health_watch == []
