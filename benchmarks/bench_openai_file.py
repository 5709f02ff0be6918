"""A long file through `POST /v1/audio/transcriptions`, against faster-whisper run directly.

Builds one long recording from the real human speech in /work/shared/real-speech/ (21
utterances, 124.6 s, cycled with pauses of 0.8, 1.5 and 3 s until the target length), posts it
as a WAV with the openai SDK to an in-process server (whisper engine: whisper-base, int8, CPU),
and transcribes the same audio with faster-whisper's WhisperModel on the same model directory
in the same process, without and with its own VAD: that is the ceiling the endpoint is measured
against. Prints real-time factors, their ratio and WER against refs.json; asserts nothing.

    .venv/bin/python benchmarks/bench_openai_file.py [--minutes 10] [--speech DIR]
"""

from __future__ import annotations

import argparse
import datetime
import io
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stt_server.app import create_app
from stt_server.audio import SAMPLE_RATE
from stt_server.engines.whisper import WhisperEngine
from stt_server.engines.whisper_assets import assemble
from stt_server.settings import ServerSettings
from tests.conftest import REPO, serve
from tests.stt_server.speech import word_error_rate

PAUSES = (0.8, 1.5, 3.0)


def long_recording(speech: Path, seconds: float) -> tuple[np.ndarray, str]:
    """Utterances in file-name order, cycled with pauses, until `seconds`; and their text."""
    refs: dict[str, str] = json.loads((speech / "refs.json").read_text())
    names = sorted(refs)
    parts: list[np.ndarray] = []
    texts: list[str] = []
    total = 0
    for name, pause in zip(itertools.cycle(names), itertools.cycle(PAUSES)):
        if total >= seconds * SAMPLE_RATE:
            break
        audio, rate = soundfile.read(speech / name, dtype="float32")
        assert rate == SAMPLE_RATE, name
        silence = np.zeros(int(pause * SAMPLE_RATE), np.float32)
        parts += [audio, silence]
        texts.append(refs[name])
        total += len(audio) + len(silence)
    return np.concatenate(parts), " ".join(texts)


def via_endpoint(engine: WhisperEngine, wav: bytes) -> tuple[str, float, int]:
    import openai

    settings = ServerSettings(engine="whisper", device="cpu", max_upload_seconds=0)
    with serve(create_app(settings, engine=engine)) as address:
        api = openai.OpenAI(api_key="x", base_url=f"http://{address}/v1", timeout=3600)
        started = time.perf_counter()
        result = api.audio.transcriptions.create(
            file=("long.wav", wav, "audio/wav"), model="whisper-1", response_format="verbose_json"
        )
        elapsed = time.perf_counter() - started
    return result.text, elapsed, len(result.segments or [])


def direct(model_dir: Path, audio: np.ndarray, vad_filter: bool) -> tuple[str, float, int]:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", local_files_only=True)
    started = time.perf_counter()
    segments, _ = model.transcribe(audio, language="en", beam_size=2, vad_filter=vad_filter)
    texts = [s.text.strip() for s in segments]  # the generator decodes as it is read
    return " ".join(texts), time.perf_counter() - started, len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="a long file through the OpenAI endpoint vs faster-whisper"
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--speech", type=Path, default=Path("/work/shared/real-speech"))
    args = parser.parse_args()

    model_dir = assemble(REPO / "models" / "whisper-base")
    audio, reference = long_recording(args.speech, args.minutes * 60)
    duration = len(audio) / SAMPLE_RATE
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    wav = buffer.getvalue()
    engine = WhisperEngine(str(model_dir), device="cpu")

    rows: list[tuple[str, str, float, int]] = []
    text, elapsed, segments = via_endpoint(engine, wav)
    rows.append(("POST /v1/audio/transcriptions", text, elapsed, segments))
    for vad_filter in (False, True):
        text, elapsed, segments = direct(model_dir, audio, vad_filter)
        rows.append((f"faster-whisper, vad_filter={vad_filter}", text, elapsed, segments))

    print(f"# bench_openai_file  {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(
        f"host: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs (shared); whisper-base int8 CPU, beam 2"
    )
    print(f"file: {duration:.1f} s ({len(wav) / 1e6:.1f} MB WAV) of real speech\n")
    print("| run | seconds | RTF | segments | WER |")
    print("|---|---|---|---|---|")
    for name, text, elapsed, segments in rows:
        wer = word_error_rate(reference, text)
        print(f"| {name} | {elapsed:.1f} | {elapsed / duration:.3f} | {segments} | {wer:.3f} |")
    best = min(r[2] for r in rows[1:])
    print(f"\nendpoint time / best faster-whisper time: {rows[0][2] / best:.2f}")


if __name__ == "__main__":
    main()
