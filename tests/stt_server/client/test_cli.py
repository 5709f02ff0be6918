"""`stt-client` against the real server (whisper engine): files of every format, JSON output,
binary framing, the microphone path with a fake sounddevice, and clear failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from stt_server.app import create_app
from stt_server.audio import SAMPLE_RATE, resample
from stt_server.client import cli as stt_client
from stt_server.engines.whisper import WhisperEngine
from stt_server.settings import ServerSettings
from tests.conftest import serve
from tests.stt_server.speech import (
    Recording,
    make_recording,
    word_error_rate,
    write_audio_file,
)

# Whisper-base on espeak-ng's synthetic voice, streamed in chunks and merged. Measured on these
# two turns (24 words): 0.04-0.17 over all formats, framings and rates (the second turn's
# opening "The weather today" is the usual slip). 0.25 overall fails on a lost or duplicated
# turn (each is half the words); a single turn may slip more, but never by half.
MAX_WER = 0.25
MAX_TURN_WER = 0.5


def assert_transcribed(turns: list[str], finals: list[str]) -> None:
    assert len(finals) == len(turns), finals
    assert word_error_rate(" ".join(turns), " ".join(finals)) <= MAX_WER, (turns, finals)
    for spoken, heard in zip(turns, finals, strict=True):
        assert word_error_rate(spoken, heard) <= MAX_TURN_WER, (spoken, heard)


@pytest.fixture(scope="module")
def short_recording() -> Recording:
    """Two turns: one sentence, a 2 s pause, another sentence."""
    return make_recording(
        (
            "Please call Stella and ask her to bring these things from the store.",
            "The weather today is sunny with a light breeze from the west.",
        ),
        (2.0, 0.5),
    )


def run_client(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stt_server.client.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def final_lines(stdout: str) -> list[str]:
    """LineDisplay prints `[n] text` per final turn."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    for n, line in enumerate(lines, start=1):
        assert line.startswith(f"[{n}] "), stdout
    return [line.split("] ", 1)[1] for line in lines]


@pytest.mark.parametrize(
    ("name", "rate", "channels"),
    [
        ("turns.wav", 16000, 1),
        ("turns.flac", 44100, 2),
        ("turns.ogg", 48000, 1),
        ("turns.mp3", 22050, 1),
    ],
)
def test_file_formats_transcribe(
    whisper_server: str,
    short_recording: Recording,
    tmp_path: Path,
    name: str,
    rate: int,
    channels: int,
) -> None:
    path = tmp_path / name
    write_audio_file(path, short_recording.audio, rate, channels)

    result = run_client(str(path), "--url", f"ws://{whisper_server}/ws/transcribe", "--speed", "0")

    assert result.returncode == 0, result.stderr
    assert_transcribed(short_recording.turns, final_lines(result.stdout))


def test_json_output_is_every_message_in_protocol_order(
    whisper_server: str, short_recording: Recording, tmp_path: Path
) -> None:
    path = tmp_path / "turns.wav"
    write_audio_file(path, short_recording.audio, SAMPLE_RATE, 1)

    result = run_client(
        str(path), "--url", f"ws://{whisper_server}/ws/transcribe", "--speed", "0", "--json"
    )

    assert result.returncode == 0, result.stderr
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(set(m) == {"text", "isFinal", "isEndOfTurn"} for m in messages), messages
    # Each turn: at least one tentative, then exactly one final that ends the turn.
    turns: list[list[dict[str, Any]]] = [[]]
    for message in messages:
        turns[-1].append(message)
        if message["isFinal"]:
            assert message["isEndOfTurn"]
            turns.append([])
    assert turns[-1] == []
    turns.pop()
    assert len(turns) == len(short_recording.turns)
    for turn in turns:
        assert not turn[0]["isFinal"]


def test_binary_frames_at_real_time_pace(
    whisper_server: str, short_recording: Recording, tmp_path: Path
) -> None:
    path = tmp_path / "turns.wav"
    write_audio_file(path, short_recording.audio, SAMPLE_RATE, 1)
    duration = len(short_recording.audio) / SAMPLE_RATE
    started = time.monotonic()

    result = run_client(
        str(path), "--url", f"ws://{whisper_server}/ws/transcribe", "--binary", "--speed", "4"
    )

    assert result.returncode == 0, result.stderr
    # --speed 4 paces frames: the stream cannot finish faster than a quarter of real time.
    assert time.monotonic() - started >= duration / 4
    assert_transcribed(short_recording.turns, final_lines(result.stdout))


def test_unreachable_server_fails_clearly(tmp_path: Path, short_recording: Recording) -> None:
    path = tmp_path / "turns.wav"
    write_audio_file(path, short_recording.audio, SAMPLE_RATE, 1)
    result = run_client(str(path), "--url", "ws://127.0.0.1:9/ws/transcribe", timeout=60)
    assert result.returncode == 2
    assert "cannot connect to ws://127.0.0.1:9/ws/transcribe" in result.stderr


def test_unreadable_file_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "readme.mp3"
    path.write_text("not audio")
    result = run_client(str(path), timeout=60)
    assert result.returncode == 2
    assert "not a readable audio file" in result.stderr
    result = run_client(str(tmp_path / "absent.wav"), timeout=60)
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_server_errors_give_a_failing_exit_code(whisper_server: str, tmp_path: Path) -> None:
    """A per-session setting the server refuses comes back as an error; the client says so."""
    path = tmp_path / "tone.wav"
    soundfile.write(path, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    result = run_client(
        str(path), "--url", f"ws://{whisper_server}/ws/transcribe?largeGap=-1", "--speed", "0"
    )
    assert result.returncode != 0
    assert "INVALID_CONFIG" in result.stderr


class FakeInputStream:
    """Plays an array through the callback like PortAudio would, at 10x real time, then
    presses Ctrl-C."""

    def __init__(self, audio: np.ndarray, **kwargs: Any) -> None:
        self.audio = audio
        self.kwargs = kwargs
        self.thread = threading.Thread(target=self.play, daemon=True)

    def play(self) -> None:
        block = self.kwargs["blocksize"]
        callback = self.kwargs["callback"]
        for start in range(0, len(self.audio), block):
            chunk = self.audio[start : start + block].reshape(-1, 1)
            callback(chunk, len(chunk), None, None)
            time.sleep(block / self.kwargs["samplerate"] / 10)
        os.kill(os.getpid(), signal.SIGINT)

    def __enter__(self) -> FakeInputStream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(5)


def fake_sounddevice(audio_48k: np.ndarray) -> types.ModuleType:
    module = types.ModuleType("sounddevice")
    devices = [
        {"name": "speaker", "max_input_channels": 0, "default_samplerate": 48000.0},
        {"name": "fake mic", "max_input_channels": 1, "default_samplerate": 48000.0},
        {"name": "fake headset", "max_input_channels": 2, "default_samplerate": 48000.0},
    ]

    def query_devices(index: int | None = None) -> Any:
        return devices if index is None else devices[index]

    module.query_devices = query_devices  # pyright: ignore[reportAttributeAccessIssue]
    module.default = types.SimpleNamespace(device=(1, 0))  # pyright: ignore[reportAttributeAccessIssue]
    module.InputStream = lambda **kw: FakeInputStream(audio_48k, **kw)  # pyright: ignore[reportAttributeAccessIssue]
    return module


def test_microphone_path_with_a_fake_device(
    whisper_server: str,
    short_recording: Recording,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    audio_48k = resample(short_recording.audio, SAMPLE_RATE, 48000)
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(audio_48k))

    code = stt_client.main(["--url", f"ws://{whisper_server}/ws/transcribe", "--device", "2"])

    out = capsys.readouterr()
    assert code == 0, out.err
    assert_transcribed(short_recording.turns, final_lines(out.out))


def test_microphone_device_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from stt_server.client.microphone import MicrophoneError, choose_device

    sd = fake_sounddevice(np.zeros(10, np.float32))
    assert choose_device(sd, 2, None) == 2
    assert choose_device(sd, None, None) == 1  # the system default input
    answers = iter(["7", "x", "2"])
    assert choose_device(sd, None, lambda _prompt: next(answers)) == 2
    with pytest.raises(MicrophoneError, match="not an input device"):
        choose_device(sd, 0, None)
    sd.query_devices = lambda index=None: [{"name": "out", "max_input_channels": 0}]  # pyright: ignore[reportAttributeAccessIssue]
    with pytest.raises(MicrophoneError, match="no audio input device"):
        choose_device(sd, None, None)


def test_end_of_stream_finishes_the_last_turn_without_trailing_silence(
    whisper_server: str, short_recording: Recording, tmp_path: Path
) -> None:
    """The recording ends 0.5 s after the last word, less than the pause that ends a turn:
    only `{"type": "end"}` makes the server finish that turn, and the client waits for it."""
    path = tmp_path / "turns.wav"
    write_audio_file(path, short_recording.audio, SAMPLE_RATE, 1)

    result = run_client(
        str(path),
        "--url",
        f"ws://{whisper_server}/ws/transcribe",
        "--speed",
        "0",
        "--trailing-silence",
        "0",
    )

    assert result.returncode == 0, result.stderr
    assert_transcribed(short_recording.turns, final_lines(result.stdout))


@pytest.fixture(scope="module")
def keyed_server(whisper_engine: WhisperEngine) -> Iterator[str]:
    settings = ServerSettings(engine="whisper", device="cpu", api_key="client-test-key")
    with serve(create_app(settings, engine=whisper_engine)) as address:
        yield address


def test_api_key_is_sent_as_a_bearer_header(
    keyed_server: str, short_recording: Recording, tmp_path: Path
) -> None:
    path = tmp_path / "turns.wav"
    write_audio_file(path, short_recording.audio, SAMPLE_RATE, 1)
    endpoint = f"ws://{keyed_server}/ws/transcribe"

    accepted = run_client(
        str(path), "--url", endpoint, "--speed", "0", "--api-key", "client-test-key"
    )
    refused = run_client(str(path), "--url", endpoint, "--speed", "0", "--api-key", "wrong")

    assert accepted.returncode == 0, accepted.stderr
    assert_transcribed(short_recording.turns, final_lines(accepted.stdout))
    assert refused.returncode != 0
    assert "UNAUTHORIZED" in refused.stderr
