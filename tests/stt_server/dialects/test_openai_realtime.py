"""/v1/realtime transcription sessions through the official openai SDK's realtime client (and
LiveKit's and Pipecat's realtime STT), against a real server with whisper-base."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import openai
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from stt_server.audio import SAMPLE_RATE, encode_pcm16, resample
from tests.stt_server.api.conftest import API_KEY
from tests.stt_server.speech import Recording, word_error_rate

MAX_WER = 0.2
TIMEOUT = 120.0  # seconds for all transcripts of a test to arrive (2 shared CPU cores)


def pcm(audio: np.ndarray, rate: int = 24000) -> bytes:
    return encode_pcm16(resample(audio, SAMPLE_RATE, rate))


def session(rate: int = 24000, turn_detection: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": rate},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": ""},
                "turn_detection": turn_detection,
            }
        },
    }


SERVER_VAD = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 1000,
}


async def append(conn: AsyncRealtimeConnection, data: bytes, rate: int = 24000) -> None:
    step = rate // 10 * 2  # 100 ms, as the SDK's examples send
    for i in range(0, len(data), step):
        await conn.input_audio_buffer.append(audio=base64.b64encode(data[i : i + step]).decode())


def connect(address: str) -> Any:
    api = openai.AsyncOpenAI(api_key=API_KEY, base_url=f"http://{address}/v1")
    return api.realtime.connect(extra_query={"intent": "transcription"})


async def events_until(
    conn: AsyncRealtimeConnection, completed: int, seen: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Read events into `seen` until `completed` more transcripts completed; returns those."""
    done: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT):
        async for event in _events(conn):
            seen.append(event)
            if event["type"] == "conversation.item.input_audio_transcription.completed":
                done.append(event)
                if len(done) == completed:
                    return done
    raise AssertionError(f"the connection ended after {len(done)} transcripts")


async def _events(conn: AsyncRealtimeConnection) -> AsyncIterator[dict[str, Any]]:
    async for event in conn:
        yield event.model_dump()


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_server_vad_turns(openai_server: str, full_recording: Recording) -> None:
    seen: list[dict[str, Any]] = []
    async with connect(openai_server) as conn:
        await conn.session.update(session=session(turn_detection=SERVER_VAD))  # pyright: ignore[reportArgumentType]
        await append(conn, pcm(full_recording.audio))
        completed = await events_until(conn, 3, seen)
    assert types(seen)[:2] == ["session.created", "session.updated"]
    updated = seen[1]["session"]["audio"]["input"]
    assert updated["turn_detection"]["silence_duration_ms"] == 1000
    assert updated["format"] == {"type": "audio/pcm", "rate": 24000}
    assert "error" not in types(seen)
    previous = None
    for item, expected in zip(completed, full_recording.turns, strict=True):
        mine = [e for e in seen if e.get("item_id") == item["item_id"]]
        kinds = types(mine)
        assert kinds[0] == "input_audio_buffer.speech_started"
        assert kinds[-1] == "conversation.item.input_audio_transcription.completed"
        stopped = kinds.index("input_audio_buffer.speech_stopped")
        assert stopped + 1 == kinds.index("input_audio_buffer.committed")
        deltas = [e["delta"] for e in mine if e["type"].endswith("transcription.delta")]
        assert deltas, kinds
        committed = next(e for e in mine if e["type"] == "input_audio_buffer.committed")
        assert committed["previous_item_id"] == previous
        previous = item["item_id"]
        wer = word_error_rate(expected, item["transcript"])
        assert wer <= MAX_WER, f"WER {wer:.3f}: {item['transcript']!r}"


async def test_manual_commits_and_a_format_change(
    openai_server: str, full_recording: Recording
) -> None:
    # Split in the middle of the first 2 s pause; the second part goes at 16 kHz.
    cut = round((full_recording.spans[1][1] + 1.0) * SAMPLE_RATE)
    first, second = full_recording.audio[:cut], full_recording.audio[cut:]
    seen: list[dict[str, Any]] = []
    async with connect(openai_server) as conn:
        await conn.session.update(session=session(turn_detection=None))  # pyright: ignore[reportArgumentType]
        await append(conn, pcm(first))
        await conn.input_audio_buffer.commit()
        [one] = await events_until(conn, 1, seen)
        await conn.session.update(session=session(rate=16000, turn_detection=None))  # pyright: ignore[reportArgumentType]
        await append(conn, pcm(second, 16000), 16000)
        await conn.input_audio_buffer.commit()
        [two] = await events_until(conn, 1, seen)
    kinds = types(seen)
    assert "input_audio_buffer.speech_started" not in kinds
    assert "error" not in kinds
    # Without turn detection the 2 s pause inside the second part ends no turn.
    assert kinds.count("input_audio_buffer.committed") == 2
    assert seen[1]["session"]["audio"]["input"]["turn_detection"] is None
    first_text, second_text = full_recording.turns[0], " ".join(full_recording.turns[1:])
    assert word_error_rate(first_text, one["transcript"]) <= MAX_WER, one["transcript"]
    assert word_error_rate(second_text, two["transcript"]) <= MAX_WER, two["transcript"]


async def test_clear_drops_the_buffered_audio(
    openai_server: str, full_recording: Recording
) -> None:
    (s0, e0), (s1, e1) = full_recording.spans[0], full_recording.spans[1]
    fox = full_recording.audio[round(s0 * SAMPLE_RATE) : round(e0 * SAMPLE_RATE)]
    stella = full_recording.audio[round(s1 * SAMPLE_RATE) : round(e1 * SAMPLE_RATE)]
    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    seen: list[dict[str, Any]] = []
    async with connect(openai_server) as conn:
        await conn.session.update(session=session(turn_detection=None))  # pyright: ignore[reportArgumentType]
        await append(conn, pcm(np.concatenate([pause, fox, pause])))
        await conn.input_audio_buffer.clear()
        await append(conn, pcm(np.concatenate([pause, stella, pause])))
        await conn.send({"type": "bogus.event"})
        await conn.input_audio_buffer.commit()
        [done] = await events_until(conn, 1, seen)
    kinds = types(seen)
    assert kinds.count("input_audio_buffer.cleared") == 1
    errors = [e for e in seen if e["type"] == "error"]
    assert [e["error"]["code"] for e in errors] == ["unsupported_message_type"]
    assert word_error_rate(full_recording.sentences[1], done["transcript"]) <= MAX_WER, done


async def test_bad_session_update_is_an_error_and_changes_nothing(openai_server: str) -> None:
    async with connect(openai_server) as conn:
        await conn.session.update(session=session(rate=24000, turn_detection=None))  # pyright: ignore[reportArgumentType]
        await conn.send({"type": "session.update", "session": {**session(), "type": "realtime"}})
        await conn.session.update(
            session={
                "type": "transcription",
                "audio": {"input": {"transcription": {"language": "fr"}}},
            }
        )  # pyright: ignore[reportArgumentType]
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(TIMEOUT):
            async for event in _events(conn):
                seen.append(event)
                if types(seen).count("error") == 2:
                    break
    assert types(seen) == ["session.created", "session.updated", "error", "error"]
    assert all(e["error"]["code"] == "invalid_config" for e in seen[2:])


async def test_a_wrong_key_is_refused(openai_server: str) -> None:
    api = openai.AsyncOpenAI(api_key="wrong", base_url=f"http://{openai_server}/v1")
    async with api.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        event = (await conn.recv()).model_dump()
    assert event["type"] == "error"
    assert event["error"]["code"] == "unauthorized"


async def test_beta_event_names(openai_server: str, short_recording: Recording) -> None:
    api = openai.AsyncOpenAI(
        api_key=API_KEY,
        base_url=f"http://{openai_server}/v1",
        websocket_base_url=f"ws://{openai_server}/v1",
    )
    seen: list[dict[str, Any]] = []
    async with api.beta.realtime.connect(
        model="gpt-4o-transcribe", extra_query={"intent": "transcription"}
    ) as conn:
        await conn.transcription_session.update(
            session={"input_audio_format": "pcm16", "turn_detection": None}  # pyright: ignore[reportArgumentType]
        )
        await conn.input_audio_buffer.append(
            audio=base64.b64encode(pcm(short_recording.audio)).decode()
        )
        await conn.input_audio_buffer.commit()
        async with asyncio.timeout(TIMEOUT):
            async for event in conn:
                seen.append(event.model_dump())
                if event.type == "conversation.item.input_audio_transcription.completed":
                    break
    assert types(seen)[:2] == ["session.created", "transcription_session.updated"]
    assert seen[1]["session"]["turn_detection"] is None
    transcript = seen[-1]["transcript"]
    assert word_error_rate(short_recording.text, transcript) <= MAX_WER, transcript


async def test_livekit_openai_stt_realtime(openai_server: str, full_recording: Recording) -> None:
    from livekit import rtc
    from livekit.agents.stt import SpeechEventType
    from livekit.agents.utils import http_context
    from livekit.plugins import openai as livekit_openai

    finals: list[str] = []
    kinds: list[SpeechEventType] = []
    async with http_context.open():
        stt = livekit_openai.STT(
            api_key=API_KEY,
            base_url=f"http://{openai_server}/v1",
            model="gpt-4o-transcribe",
            use_realtime=True,
        )
        stream = stt.stream()
        data = pcm(full_recording.audio)
        step = 24000 // 50 * 2  # 20 ms frames, as a room delivers them
        for i in range(0, len(data), step):
            chunk = data[i : i + step]
            stream.push_frame(
                rtc.AudioFrame(
                    data=chunk,
                    sample_rate=24000,
                    num_channels=1,
                    samples_per_channel=len(chunk) // 2,
                )
            )
        try:
            async with asyncio.timeout(TIMEOUT):
                async for event in stream:
                    kinds.append(event.type)
                    if event.type is SpeechEventType.FINAL_TRANSCRIPT:
                        finals.append(event.alternatives[0].text)
                        if len(finals) == len(full_recording.sentences):
                            break
        finally:
            await stream.aclose()
            await stt.aclose()
    # LiveKit's stream never commits: the server's turn detection ends each turn, after the
    # 350 ms of silence LiveKit asks for, so each sentence is a turn.
    assert kinds.count(SpeechEventType.START_OF_SPEECH) == len(finals)
    assert kinds.count(SpeechEventType.END_OF_SPEECH) == len(finals)
    wer = word_error_rate(full_recording.text, " ".join(finals))
    assert wer <= MAX_WER, finals


async def test_pipecat_openai_realtime_stt(openai_server: str, short_recording: Recording) -> None:
    from pipecat.frames.frames import (
        ErrorFrame,
        InputAudioRawFrame,
        TranscriptionFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.task import PipelineParams
    from pipecat.services.openai.stt import OpenAIRealtimeSTTService
    from pipecat.tests.utils import SleepFrame, run_test

    service = OpenAIRealtimeSTTService(
        api_key=API_KEY, base_url=f"ws://{openai_server}/v1/realtime"
    )
    data = encode_pcm16(short_recording.audio)
    step = SAMPLE_RATE // 50 * 2  # 20 ms frames
    frames: list[object] = [SleepFrame(sleep=1.0), VADUserStartedSpeakingFrame()]
    frames += [
        InputAudioRawFrame(audio=data[i : i + step], sample_rate=SAMPLE_RATE, num_channels=1)
        for i in range(0, len(data), step)
    ]
    # Pipecat commits at the VAD's stop (turn_detection null); the transcript follows.
    frames += [VADUserStoppedSpeakingFrame(), SleepFrame(sleep=15.0)]
    down, up = await run_test(
        service,
        frames_to_send=frames,  # pyright: ignore[reportArgumentType]
        pipeline_params=PipelineParams(audio_in_sample_rate=SAMPLE_RATE),
    )
    assert not [f for f in up if isinstance(f, ErrorFrame)]
    texts = [f.text for f in down if isinstance(f, TranscriptionFrame)]
    assert len(texts) == 1
    assert word_error_rate(short_recording.text, texts[0]) <= MAX_WER, texts
