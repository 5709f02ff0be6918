"""POST /v1/audio/transcriptions through the official openai SDK, LiveKit's and Pipecat's
OpenAI STT, against a real server with whisper-base."""

from __future__ import annotations

import asyncio
import io
import json
import re
import wave
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile

from stt_server.audio import SAMPLE_RATE, encode_pcm16
from tests.stt_server.api.conftest import API_KEY, MAX_UPLOAD_BYTES
from tests.stt_server.speech import (
    SENTENCES,
    Recording,
    make_recording,
    word_error_rate,
    write_audio_file,
)
from tests.stt_server.wsclient import stream_audio

# whisper-base on espeak-ng speech, whole file: WER measured 0.0-0.05 here; 0.2 still fails on
# dropped or duplicated chunks and on a wrong rate or channel layout (gibberish, WER near 1).
MAX_WER = 0.2
CUE = re.compile(r"^\d\d:\d\d:\d\d[.,]\d\d\d --> \d\d:\d\d:\d\d[.,]\d\d\d$", re.MULTILINE)


def client(address: str, key: str = API_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=f"http://{address}/v1", max_retries=0)


def make_file(tmp_path: Path, recording: Recording, suffix: str) -> Path:
    """`recording` as a file: WAV 44.1 kHz stereo, MP3 22.05 kHz, OGG/Vorbis 48 kHz,
    OGG/Opus 48 kHz, FLAC 8 kHz."""
    path = tmp_path / f"speech{suffix}"
    if suffix == ".opus":
        audio = soundfile_rate(recording, 48000)
        soundfile.write(path, audio, 48000, format="OGG", subtype="OPUS")
    else:
        rate, channels = {".wav": (44100, 2), ".mp3": (22050, 1), ".ogg": (48000, 1)}.get(
            suffix, (16000, 1)
        )
        write_audio_file(path, recording.audio, rate, channels)
    return path


def soundfile_rate(recording: Recording, rate: int) -> np.ndarray:
    from stt_server.audio import resample

    return resample(recording.audio, SAMPLE_RATE, rate)


def subtitle_text(body: str) -> str:
    """The cue texts of an SRT or VTT body."""
    lines = [line for line in body.splitlines() if line.strip()]
    return " ".join(
        line for line in lines if not CUE.match(line) and not line.isdigit() and line != "WEBVTT"
    )


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".ogg", ".opus"])
@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt", "verbose_json"])
async def test_sdk_transcribes_each_format(
    openai_server: str,
    short_recording: Recording,
    tmp_path: Path,
    suffix: str,
    response_format: str,
) -> None:
    path = make_file(tmp_path, short_recording, suffix)
    async with client(openai_server) as api:
        result = await api.audio.transcriptions.create(  # pyright: ignore[reportCallIssue]
            file=path,
            model="whisper-1",
            language="en",
            prompt="ignored",
            response_format=response_format,  # pyright: ignore[reportArgumentType]
            temperature=0.0,
        )
    duration = len(short_recording.audio) / SAMPLE_RATE
    if response_format in ("text", "srt", "vtt"):
        assert isinstance(result, str)
        if response_format == "text":
            text = result
        else:
            cues = CUE.findall(result)
            assert cues, result
            assert result.startswith("WEBVTT") == (response_format == "vtt")
            text = subtitle_text(result)
    else:
        assert not isinstance(result, str)
        text = result.text
        if response_format == "verbose_json":
            body = result.model_dump()
            assert body["language"] == "english"
            assert body["duration"] == pytest.approx(duration, abs=0.05)
            assert body.get("words") is None
            segments = body["segments"]
            assert segments
            assert " ".join(s["text"] for s in segments) == text
            assert all(0 <= s["start"] < s["end"] <= duration + 0.1 for s in segments)
            assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
    wer = word_error_rate(short_recording.text, text)
    assert wer <= MAX_WER, f"WER {wer:.3f}: {text!r}"


async def test_sdk_streams_deltas_as_the_file_is_transcribed(
    openai_server: str, tmp_path: Path
) -> None:
    # About 36 s of speech in 50 s (under the test server's 60 s limit): more than one request
    # (MAX_REQUEST_SECONDS), so several deltas.
    recording = make_recording(SENTENCES * 2, (1.5,) * len(SENTENCES) * 2)
    path = make_file(tmp_path, recording, ".mp3")
    deltas: list[str] = []
    done: list[str] = []
    async with client(openai_server) as api:
        stream = await api.audio.transcriptions.create(
            file=path, model="gpt-4o-transcribe", stream=True
        )
        async for event in stream:
            if event.type == "transcript.text.delta":
                assert not done, "a delta after done"
                deltas.append(event.delta)
            elif event.type == "transcript.text.done":
                done.append(event.text)
    # Each piece is sent when it is done.
    assert len(deltas) >= 2
    assert done == ["".join(deltas)]
    wer = word_error_rate(recording.text, done[0])
    assert wer <= MAX_WER, f"WER {wer:.3f}: {done[0]!r}"


def post(address: str, parts: dict[str, object], key: str = API_KEY) -> httpx.Response:
    files = {k: v for k, v in parts.items() if isinstance(v, tuple)}
    data = {k: v for k, v in parts.items() if not isinstance(v, tuple)}
    return httpx.post(
        f"http://{address}/v1/audio/transcriptions",
        headers={"Authorization": f"Bearer {key}"},
        files=files,
        data=data,
        timeout=60,
    )


def wav_bytes(audio: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(encode_pcm16(audio))
    return buffer.getvalue()


def flac_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    silence = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    soundfile.write(buffer, silence, SAMPLE_RATE, format="FLAC")
    return buffer.getvalue()


def bad_requests(short_wav: bytes) -> list[tuple[str, int, dict[str, object], str | None]]:
    """(what, status, request parts, the error's param)."""
    return [
        ("not audio", 400, {"file": ("a.wav", b"this is not audio" * 100), "model": "m"}, "file"),
        ("empty", 400, {"file": ("a.wav", b""), "model": "m"}, "file"),
        ("no file part", 400, {"audio": ("a.wav", short_wav), "model": "m"}, "file"),
        ("not multipart", 400, {"model": "m"}, None),
        (
            "too large",
            413,
            {"file": ("a.wav", b"\0" * (MAX_UPLOAD_BYTES + 1)), "model": "m"},
            "file",
        ),
        ("too long", 400, {"file": ("a.flac", flac_bytes(61.0)), "model": "m"}, "file"),
        (
            "unknown response_format",
            400,
            {"file": ("a.wav", short_wav), "response_format": "mp4"},
            "response_format",
        ),
        (
            "word timestamps",
            400,
            {
                "file": ("a.wav", short_wav),
                "response_format": "verbose_json",
                "timestamp_granularities[]": "word",
            },
            "timestamp_granularities",
        ),
        ("German", 400, {"file": ("a.wav", short_wav), "language": "de"}, "language"),
        ("temperature", 400, {"file": ("a.wav", short_wav), "temperature": "hot"}, "temperature"),
    ]


def check_error(response: httpx.Response, status: int, param: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["param"] == param


async def test_bad_uploads_get_clear_errors_while_a_live_session_goes_on(
    openai_server: str, short_recording: Recording, full_recording: Recording
) -> None:
    short_wav = wav_bytes(short_recording.audio)
    live = asyncio.create_task(
        stream_audio(
            f"ws://{openai_server}/ws/transcribe?token={API_KEY}",
            full_recording.audio,
            realtime=True,
            expected_finals=3,
        )
    )
    for what, status, parts, param in bad_requests(short_wav):
        response = await asyncio.to_thread(post, openai_server, parts)
        assert not live.done(), f"the live session ended during {what!r}"
        check_error(response, status, param)
    result = await live
    assert result.errors == []
    finals = [r.message["text"] for r in result.finals]
    assert len(finals) == 3
    assert word_error_rate(full_recording.text, " ".join(finals)) <= MAX_WER


async def test_the_api_key_is_required(openai_server: str, short_recording: Recording) -> None:
    short_wav = wav_bytes(short_recording.audio)
    response = await asyncio.to_thread(post, openai_server, {"file": ("a.wav", short_wav)}, "wrong")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    async with client(openai_server, key="wrong") as api:
        with pytest.raises(openai.AuthenticationError):
            await api.audio.transcriptions.create(file=("a.wav", short_wav), model="whisper-1")


async def test_a_file_without_speech_has_no_text(openai_server: str) -> None:
    response = await asyncio.to_thread(
        post,
        openai_server,
        {"file": ("quiet.flac", flac_bytes(3.0)), "response_format": "verbose_json"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["text"] == ""
    assert body["segments"] == []
    assert json.loads(response.text)["usage"] == {"type": "duration", "seconds": 3}


async def test_livekit_openai_stt_rest(openai_server: str, short_recording: Recording) -> None:
    from livekit import rtc
    from livekit.agents.stt import SpeechEventType
    from livekit.agents.utils import http_context
    from livekit.plugins import openai as livekit_openai

    pcm = encode_pcm16(short_recording.audio)
    frame = rtc.AudioFrame(
        data=pcm, sample_rate=SAMPLE_RATE, num_channels=1, samples_per_channel=len(pcm) // 2
    )
    async with http_context.open():
        stt = livekit_openai.STT(
            api_key=API_KEY,
            base_url=f"http://{openai_server}/v1",
            model="gpt-4o-transcribe",
            use_realtime=False,
        )
        event = await stt.recognize([frame])
        await stt.aclose()
    assert event.type is SpeechEventType.FINAL_TRANSCRIPT
    text = event.alternatives[0].text
    assert word_error_rate(short_recording.text, text) <= MAX_WER, text


async def test_pipecat_openai_stt_service(openai_server: str, short_recording: Recording) -> None:
    from pipecat.frames.frames import (
        InputAudioRawFrame,
        TranscriptionFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.task import PipelineParams
    from pipecat.services.openai.stt import OpenAISTTService
    from pipecat.tests.utils import SleepFrame, run_test

    service = OpenAISTTService(
        api_key=API_KEY,
        base_url=f"http://{openai_server}/v1",
        settings=OpenAISTTService.Settings(model="gpt-4o-transcribe"),
    )
    pcm = encode_pcm16(short_recording.audio)
    step = SAMPLE_RATE // 50 * 2  # 20 ms frames
    frames: list[object] = [VADUserStartedSpeakingFrame()]
    frames += [
        InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=SAMPLE_RATE, num_channels=1)
        for i in range(0, len(pcm), step)
    ]
    frames += [VADUserStoppedSpeakingFrame(), SleepFrame(sleep=10.0)]
    down, _ = await run_test(
        service,
        frames_to_send=frames,  # pyright: ignore[reportArgumentType]
        pipeline_params=PipelineParams(audio_in_sample_rate=SAMPLE_RATE),
    )
    texts = [f.text for f in down if isinstance(f, TranscriptionFrame)]
    assert len(texts) == 1
    assert word_error_rate(short_recording.text, texts[0]) <= MAX_WER, texts
