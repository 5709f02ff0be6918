"""Deepgram's `/v1/listen`: the query mapping, each message both ways, and each refusal, against a
real server (uvicorn on loopback, real Silero) with the scripted engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from stt_server.app import create_app
from stt_server.audio import encode_pcm16, resample
from stt_server.dialects.deepgram import (
    MAX_ENDPOINTING,
    MIN_ENDPOINTING,
    open_deepgram,
    plain_word,
    spread_words,
)
from stt_server.errors import ErrorCode, ProtocolError
from stt_server.settings import ServerSettings, SessionSettings
from tests.conftest import serve
from tests.stt_server.speech import make_recording
from tests.support.engines import ScriptedEngine

KEY = "sesame"
BASE = "encoding=linear16&sample_rate=16000"
# What each client sends (captured in the client research notes).
SDK_QUERY = (
    "channels=1&encoding=linear16&interim_results=true&keyterm=foo&keyterm=bar&language=en"
    "&model=nova-3&punctuate=true&sample_rate=16000&smart_format=false&utterance_end_ms=1000"
    "&vad_events=true"
)
PIPECAT_QUERY = (
    "channels=1&detect_entities=false&diarize=false&dictation=false&encoding=linear16"
    "&interim_results=true&language=en&model=nova-3-general&multichannel=false&numerals=false"
    "&punctuate=true&sample_rate=16000&smart_format=false"
)
LIVEKIT_QUERY = (
    "model=nova-3&punctuate=true&smart_format=false&no_delay=true&interim_results=true"
    "&encoding=linear16&vad_events=true&sample_rate=16000&channels=1&endpointing=25"
    "&filler_words=true&profanity_filter=false&numerals=false&mip_opt_out=false&language=en-US"
)
TIMEOUT = 30.0  # seconds a test waits for a message the server must send


def parse(query: str) -> dict[str, str]:
    return dict(httpx.QueryParams(query).items())


DEFAULTS = SessionSettings()


@pytest.mark.parametrize("query", [SDK_QUERY, PIPECAT_QUERY, LIVEKIT_QUERY])
def test_what_the_clients_send_is_accepted(query: str) -> None:
    settings, _ = open_deepgram(parse(query), DEFAULTS)
    assert settings.sample_rate == 16000
    assert settings.channels == 1


@pytest.mark.parametrize(
    ("query", "large_gap"),
    [
        (BASE, DEFAULTS.large_gap),  # no endpointing: the server's own turn gap
        (f"{BASE}&endpointing=800", 0.8),
        (f"{BASE}&endpointing=25", MIN_ENDPOINTING),  # LiveKit's default, raised to the floor
        (f"{BASE}&endpointing=false", MAX_ENDPOINTING),
        (f"{BASE}&endpointing=0", MAX_ENDPOINTING),
        (f"{BASE}&endpointing=120000", MAX_ENDPOINTING),
        (f"{BASE}&utterance_end_ms=1000", 1.0),
        (f"{BASE}&endpointing=false&utterance_end_ms=2000", 2.0),
        (f"{BASE}&endpointing=700&utterance_end_ms=2000", 0.7),
    ],
)
def test_endpointing_sets_the_turn_gap(query: str, large_gap: float) -> None:
    settings, _ = open_deepgram(parse(query), DEFAULTS)
    assert settings.large_gap == pytest.approx(large_gap)
    assert settings.large_gap > settings.small_gap


def test_floor_stays_above_a_long_small_gap() -> None:
    defaults = SessionSettings(small_gap=0.8, large_gap=2.0)
    settings, _ = open_deepgram(parse(f"{BASE}&endpointing=25"), defaults)
    assert settings.large_gap > 0.8


def test_format_and_interims() -> None:
    settings, _ = open_deepgram(parse("encoding=LINEAR16&sample_rate=48000&channels=2"), DEFAULTS)
    assert (settings.sample_rate, settings.channels) == (48000, 2)
    assert settings.interim_interval == 0  # Deepgram's default: no interim results
    settings, _ = open_deepgram(parse(f"{BASE}&interim_results=true"), DEFAULTS)
    assert settings.interim_interval == DEFAULTS.interim_interval


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("sample_rate=16000", "encoding is required"),
        ("encoding=mulaw&sample_rate=8000", "encoding 'mulaw' is not supported"),
        ("encoding=opus&sample_rate=48000", "use linear16"),
        ("encoding=linear16", "sample_rate is required"),
        (f"{BASE}&language=de", "language 'de' is not supported"),
        (f"{BASE}&language=multi", "language 'multi'"),
        (f"{BASE}&diarize=true", "diarization"),
        (f"{BASE}&multichannel=true", "multichannel"),
        (f"{BASE}&redact=pci", "redact"),
        (f"{BASE}&detect_entities=true", "entity"),
        (f"{BASE}&dictation=true", "dictation"),
        (f"{BASE}&profanity_filter=true", "profanity"),
        (f"{BASE}&search=fox", "search"),
        (f"{BASE}&replace=fox:cat", "replace"),
        (f"{BASE}&callback=https://example.com/", "callback"),
        ("encoding=linear16&sample_rate=fast", "sample_rate must be an integer"),
        ("encoding=linear16&sample_rate=96000", "sample_rate"),
        (f"{BASE}&channels=9", "channels"),
        (f"{BASE}&channels=0", "channels"),
        (f"{BASE}&interim_results=maybe", "interim_results must be true or false"),
        (f"{BASE}&endpointing=-5", "endpointing must not be negative"),
        (f"{BASE}&endpointing=soon", "endpointing must be a number"),
        (f"{BASE}&utterance_end_ms=x", "utterance_end_ms must be a number"),
    ],
)
def test_refusals_name_the_parameter(query: str, says: str) -> None:
    with pytest.raises(ProtocolError) as info:
        open_deepgram(parse(query), DEFAULTS)
    assert info.value.code is ErrorCode.INVALID_CONFIG
    assert says in info.value.message


def test_words_share_the_span_by_length() -> None:
    words = spread_words(["Hi,", "there", "friend."], 1.0, 2.2, punctuate=True)
    assert [w.word for w in words] == ["hi", "there", "friend"]
    assert [w.punctuated_word for w in words] == ["Hi,", "there", "friend."]
    # 3 + 5 + 7 characters over 1.2 s.
    assert [(w.start, w.end) for w in words] == [(1.0, 1.24), (1.24, 1.64), (1.64, 2.2)]
    assert spread_words(["a"], 0.0, 1.0, punctuate=False)[0].punctuated_word is None


@pytest.mark.parametrize(
    ("word", "plain"), [("Hello,", "hello"), ("don't", "don't"), ("(yes)", "yes"), ("—", "")]
)
def test_plain_word(word: str, plain: str) -> None:
    assert plain_word(word) == plain


# --- against a real server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> ScriptedEngine:
    return ScriptedEngine()  # "hello world" for every clip


@pytest.fixture(scope="module")
def server(engine: ScriptedEngine) -> Iterator[str]:
    settings = ServerSettings(engine="fixed-cost", api_key=KEY, session=SessionSettings())
    with serve(create_app(settings, engine=engine)) as address:
        yield address


@pytest.fixture(scope="module")
def speech() -> bytes:
    """One spoken sentence with silence around it, as 16 kHz PCM."""
    recording = make_recording(("The quick brown fox jumps over the lazy dog.",), (0.5,))
    return encode_pcm16(recording.audio)


def listen_url(address: str, query: str = BASE) -> str:
    return f"ws://{address}/v1/listen?{query}"


def connect(address: str, query: str = BASE, **kwargs: Any) -> websockets.connect:
    headers = kwargs.pop("additional_headers", {"Authorization": f"Token {KEY}"})
    return websockets.connect(listen_url(address, query), additional_headers=headers, **kwargs)


async def send_audio(ws: ClientConnection, pcm: bytes, chunk: int = 3200) -> None:
    for i in range(0, len(pcm), chunk):
        await ws.send(pcm[i : i + chunk])


async def receive_until(ws: ClientConnection, done: Any) -> list[dict[str, Any]]:
    """Messages up to and including the first for which `done(message)` holds."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            raw = await ws.recv()
            assert isinstance(raw, str), "the server sends text only"
            messages.append(json.loads(raw))
            if done(messages[-1]):
                return messages


async def receive_to_close(ws: ClientConnection) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT):
        async for raw in ws:
            assert isinstance(raw, str)
            messages.append(json.loads(raw))
    return messages


def is_final(message: dict[str, Any]) -> bool:
    return message["type"] == "Results" and message["is_final"]


def check_results(message: dict[str, Any]) -> None:
    """Every field the SDKs require (LiveKit indexes most of them with [])."""
    assert message["type"] == "Results"
    assert message["channel_index"] == [0, 1]
    assert isinstance(message["start"], float)
    assert message["duration"] >= 0
    for key in ("is_final", "speech_final", "from_finalize"):
        assert isinstance(message[key], bool)
    metadata = message["metadata"]
    assert metadata["request_id"]
    assert metadata["model_uuid"]
    assert set(metadata["model_info"]) == {"name", "version", "arch"}
    (alternative,) = message["channel"]["alternatives"]
    assert isinstance(alternative["transcript"], str)
    assert isinstance(alternative["confidence"], float)
    words = alternative["words"]
    assert len(words) == len(alternative["transcript"].split())
    end = message["start"] + message["duration"]
    for word in words:
        assert message["start"] - 1e-3 <= word["start"] <= word["end"] <= end + 1e-3
        assert set(word) >= {"word", "start", "end", "confidence"}
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)


async def test_a_whole_session(server: str, speech: bytes) -> None:
    query = f"{BASE}&interim_results=true&vad_events=true&utterance_end_ms=1000&punctuate=true"
    async with connect(server, query) as ws:
        await ws.send(json.dumps({"type": "KeepAlive"}))
        await send_audio(ws, speech)
        await ws.send(json.dumps({"type": "Finalize"}))
        messages = await receive_until(ws, is_final)
        await ws.send(json.dumps({"type": "CloseStream"}))
        rest = await receive_to_close(ws)
        assert ws.close_code == 1000
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "SpeechStarted"
    assert messages[0]["channel"] == [0]
    assert 0.3 < messages[0]["timestamp"] < 0.7  # the sentence starts at 0.5 s
    final = messages[-1]
    for message in messages[1:]:
        check_results(message)
    assert final["channel"]["alternatives"][0]["transcript"] == "hello world"
    assert final["channel"]["alternatives"][0]["words"][0]["punctuated_word"] == "hello"
    assert final["speech_final"] is True
    # Finalize came before the turn's silence ended it, so this final answers it.
    assert final["from_finalize"] is True
    # The words lie on the speech, not on the leading silence.
    assert final["channel"]["alternatives"][0]["words"][0]["start"] >= messages[0]["timestamp"]
    # Then the utterance ends, and CloseStream brings the metadata before the close.
    assert [m["type"] for m in rest] == ["UtteranceEnd", "Metadata"]
    end, metadata = rest
    assert end["last_word_end"] == pytest.approx(final["start"] + final["duration"], abs=2e-3)
    assert metadata["request_id"] == final["metadata"]["request_id"]
    assert metadata["duration"] == pytest.approx(len(speech) / 2 / 16000, abs=1e-3)
    assert metadata["channels"] == 1
    assert metadata["models"] == [final["metadata"]["model_uuid"]]


async def test_interims_belong_to_the_turn(server: str, speech: bytes) -> None:
    async with connect(server, f"{BASE}&interim_results=true") as ws:
        await send_audio(ws, speech)
        await ws.send(json.dumps({"type": "Finalize"}))
        messages = await receive_until(ws, is_final)
    *interims, final = messages
    assert interims, "a tentative comes after each chunk"
    assert all(not m["is_final"] and not m["speech_final"] for m in interims)
    assert all(m["start"] == final["start"] for m in interims)


async def test_no_interims_unless_asked(server: str, speech: bytes) -> None:
    async with connect(server) as ws:
        await send_audio(ws, speech)
        await ws.send(json.dumps({"type": "Finalize"}))
        messages = await receive_until(ws, is_final)
    assert [m["type"] for m in messages] == ["Results"]  # no SpeechStarted without vad_events
    # Without punctuate, words are plain (Deepgram's default formatting).
    assert "punctuated_word" not in messages[0]["channel"]["alternatives"][0]["words"][0]


async def test_silence_turn_end_then_finalize_gets_an_empty_final(
    server: str, speech: bytes
) -> None:
    silence = encode_pcm16(np.zeros(16000 * 2, np.float32))
    async with connect(server, f"{BASE}&endpointing=600") as ws:
        await send_audio(ws, speech + silence)
        first = await receive_until(ws, is_final)
        assert first[-1]["from_finalize"] is False
        assert first[-1]["speech_final"] is True
        await ws.send(json.dumps({"type": "Finalize"}))
        (answer,) = await receive_until(ws, is_final)
    assert answer["from_finalize"] is True
    assert answer["channel"]["alternatives"][0] == {
        "transcript": "",
        "confidence": 1.0,
        "words": [],
    }


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", ErrorCode.INVALID_JSON),
        ('{"type": "Configure", "keyterms": ["fox"]}', ErrorCode.UNSUPPORTED_MESSAGE_TYPE),
        ('{"kind": "Finalize"}', ErrorCode.INVALID_MESSAGE),
        ("[1, 2]", ErrorCode.INVALID_MESSAGE),
        (b"\x00\x01\x02", ErrorCode.INVALID_AUDIO),
    ],
)
async def test_bad_messages_get_an_error_and_the_session_goes_on(
    server: str, speech: bytes, message: str | bytes, code: ErrorCode
) -> None:
    async with connect(server) as ws:
        await ws.send(message)
        (error,) = await receive_until(ws, lambda m: m["type"] == "Error")
        assert error["code"] == code.value
        assert error["description"]
        assert error["variant"] == "error"
        await send_audio(ws, speech)
        await ws.send(json.dumps({"type": "CloseStream"}))
        rest = await receive_to_close(ws)
        assert ws.close_code == 1000
    assert [m["type"] for m in rest] == ["Results", "Metadata"]
    assert rest[0]["channel"]["alternatives"][0]["transcript"] == "hello world"


@pytest.mark.parametrize(
    ("query", "headers", "status", "says"),
    [
        ("encoding=mulaw&sample_rate=8000", None, 400, "encoding 'mulaw' is not supported"),
        (f"{BASE}&interim_results=yes", None, 400, "interim_results must be true or false"),
        (f"{BASE}&language=fr", None, 400, "this server transcribes English"),
        (BASE, {"Authorization": "Token wrong"}, 401, "missing or wrong API key"),
        (BASE, {}, 401, "missing or wrong API key"),
    ],
)
async def test_refused_handshakes_are_http_errors_and_the_server_goes_on(
    server: str, speech: bytes, query: str, headers: dict[str, str] | None, status: int, says: str
) -> None:
    kwargs = {} if headers is None else {"additional_headers": headers}
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(server, query, **kwargs):
            pass
    response = info.value.response
    assert response.status_code == status
    body = json.loads(response.body or b"{}")
    assert says in body["err_msg"]
    assert says in response.headers["dg-error"]
    async with connect(server) as ws:  # the next client is served
        await send_audio(ws, speech)
        await ws.send(json.dumps({"type": "CloseStream"}))
        assert [m["type"] for m in await receive_to_close(ws)] == ["Results", "Metadata"]


@pytest.mark.parametrize(
    ("headers", "subprotocols", "query"),
    [
        ({"Authorization": f"bearer {KEY}"}, None, BASE),  # deepgram-sdk with access_token=
        ({}, ["token", KEY], BASE),  # browsers
        ({}, None, f"{BASE}&token={KEY}"),
    ],
)
async def test_every_way_to_send_the_key(
    server: str, headers: dict[str, str], subprotocols: list[str] | None, query: str
) -> None:
    async with connect(server, query, additional_headers=headers, subprotocols=subprotocols) as ws:
        if subprotocols:
            assert ws.subprotocol == "token"
        await ws.send(json.dumps({"type": "Finalize"}))
        (answer,) = await receive_until(ws, is_final)
    assert answer["from_finalize"] is True


async def test_other_rates_and_stereo(server: str, speech: bytes) -> None:
    mono = (np.frombuffer(speech, "<i2") / 32768).astype(np.float32)
    stereo = np.repeat(resample(mono, 16000, 48000)[:, None], 2, axis=1)
    pcm = encode_pcm16(stereo)
    async with connect(server, "encoding=linear16&sample_rate=48000&channels=2") as ws:
        await send_audio(ws, pcm, chunk=19200)
        await ws.send(json.dumps({"type": "CloseStream"}))
        results, metadata = await receive_to_close(ws)
    assert results["channel"]["alternatives"][0]["transcript"] == "hello world"
    assert metadata["duration"] == pytest.approx(len(mono) / 16000, abs=1e-3)
    assert metadata["channels"] == 2
