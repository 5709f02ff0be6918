"""Streamed vs whole-file WER on the real recordings, clean and degraded; false ends of turn.

Starts `stt-server --engine whisper` (whisper-base, int8, CPU) as its own process and streams
each of the 21 recordings of shared/real-speech over its own connection in binary 20 ms frames
(as fast as the socket takes them: the VAD decides on the audio's own clock, so chunking is the
same as at real-time pace), then `{"type": "end"}`, and joins the finals. The same audio, whole,
goes once through the same engine in this process. Versions of the audio (`--versions`):

* clean;
* noise14: pink noise (1/f power, seeded) added at 14 dB SNR against the speech's RMS
  (within the Silero speech span);
* phone8k: band-limited to 300–3400 Hz and resampled to 8 kHz (soxr HQ), streamed at 8 kHz
  (`sampleRate=8000`; the server resamples), whole-file after resampling back to 16 kHz;
* quiet28: attenuated by 28 dB.

`--large-gaps 1.5 1.0 0.8 0.6 0.5` instead streams the clean audio once per largeGap (smallGap
0.3, or --small-gap) and reports WER and false ends of turn: recordings (each one utterance)
that got more than one final.

    .venv/bin/python benchmarks/bench_real_speech_wer.py [--versions clean noise14 ...]
    .venv/bin/python benchmarks/bench_real_speech_wer.py --large-gaps 1.5 1.0 0.8 0.6 0.5

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import numpy.typing as npt
import websockets

from benchmarks.real_speech import Utterance, corpus_wer, load_utterances
from stt_server.audio import SAMPLE_RATE, encode_pcm16, resample
from stt_server.engines.whisper import WhisperEngine
from stt_server.engines.whisper_assets import assemble
from tests.conftest import REPO, server_process

Audio = npt.NDArray[np.float32]
PHONE_RATE = 8000
PHONE_BAND = (300.0, 3400.0)
NOISE_SNR_DB = 14.0
QUIET_DB = -28.0


def pink_noise(n: int, rng: np.random.Generator) -> Audio:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(freqs[1:])  # power ∝ 1/f
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return (noise / np.sqrt(np.mean(noise**2))).astype(np.float32)


def with_noise(u: Utterance, seed: int) -> Audio:
    span = u.audio[int(u.speech_start * SAMPLE_RATE) : int(u.speech_end * SAMPLE_RATE)]
    speech_rms = float(np.sqrt(np.mean(span**2)))
    noise = pink_noise(len(u.audio), np.random.default_rng(seed))
    return (u.audio + noise * speech_rms * 10 ** (-NOISE_SNR_DB / 20)).astype(np.float32)


def telephone(audio: Audio) -> Audio:
    """300–3400 Hz, at 8 kHz."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    spectrum[(freqs < PHONE_BAND[0]) | (freqs > PHONE_BAND[1])] = 0
    return resample(np.fft.irfft(spectrum, len(audio)).astype(np.float32), SAMPLE_RATE, PHONE_RATE)


# version → (audio as streamed, its rate)
VERSIONS: dict[str, Callable[[Utterance, int], tuple[Audio, int]]] = {
    "clean": lambda u, _: (u.audio, SAMPLE_RATE),
    "noise14": lambda u, i: (with_noise(u, i), SAMPLE_RATE),
    "phone8k": lambda u, _: (telephone(u.audio), PHONE_RATE),
    "quiet28": lambda u, _: ((u.audio * 10 ** (QUIET_DB / 20)).astype(np.float32), SAMPLE_RATE),
}


async def stream_file(url: str, audio: Audio, rate: int) -> list[str]:
    """All of `audio` in 20 ms binary frames, then end of stream; the finals' texts."""
    step = rate // 50
    finals: list[str] = []
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:

        async def receive() -> None:
            async for raw in ws:
                message = json.loads(raw)
                if "code" in message:
                    raise RuntimeError(f"server error: {message}")
                if message.get("isFinal"):
                    finals.append(message["text"])

        receiver = asyncio.create_task(receive())
        for offset in range(0, len(audio), step):
            await ws.send(encode_pcm16(audio[offset : offset + step]))
        await ws.send(json.dumps({"type": "end"}))
        await asyncio.wait_for(receiver, 300)
    return finals


def stream_all(address: str, query: str, items: list[tuple[Audio, int]]) -> list[list[str]]:
    async def run() -> list[list[str]]:
        results = []
        for audio, rate in items:
            url = f"ws://{address}/ws/transcribe?sampleRate={rate}&{query}"
            results.append(await stream_file(url, audio, rate))
        return results

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--versions", nargs="+", choices=list(VERSIONS), default=list(VERSIONS))
    parser.add_argument("--large-gaps", nargs="+", type=float)
    parser.add_argument("--small-gap", type=float, default=0.3)
    parser.add_argument("--query", default="", help="extra session settings (a=1&b=2)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N recordings")
    parser.add_argument(
        "--server-args",
        default="",
        help="extra server flags (--whisper-padding 5); whole files stay at Whisper's 30 s window",
    )
    args = parser.parse_args()

    utterances = load_utterances()
    if args.limit:
        utterances = utterances[: args.limit]
    refs = [u.reference for u in utterances]
    model_dir = assemble(REPO / "models" / "whisper-base")
    command = [sys.executable, "-m", "stt_server", "--engine", "whisper", "--model", str(model_dir)]
    command += args.server_args.split()
    print(
        f"date: {datetime.datetime.now():%Y-%m-%d %H:%M}  machine: {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}"
    )
    print(f"engine: whisper-base (CTranslate2 int8, CPU); {len(utterances)} real recordings")
    print(f"server flags: {args.server_args or '(defaults)'}\n")

    if args.large_gaps:
        clean = [(u.audio, SAMPLE_RATE) for u in utterances]
        print("| largeGap | smallGap | WER | recordings with >1 final | finals | time (s) | load |")
        print("|---|---|---|---|---|---|---|")
        with server_process(*command, device="auto") as address:
            for gap in args.large_gaps:
                started = time.monotonic()
                query = f"largeGap={gap}&smallGap={min(args.small_gap, gap / 2)}&{args.query}"
                finals = stream_all(address, query, clean)
                wer = corpus_wer(refs, [" ".join(f) for f in finals])
                split = sum(len(f) > 1 for f in finals)
                print(
                    f"| {gap} | {min(args.small_gap, gap / 2):g} | {wer:.3f} | "
                    f"{split}/{len(finals)} | {sum(map(len, finals))} | "
                    f"{time.monotonic() - started:.0f} | {os.getloadavg()[0]:.2f} |",
                    flush=True,
                )
        return 0

    versions = {
        name: [VERSIONS[name](u, i) for i, u in enumerate(utterances)] for name in args.versions
    }
    engine = WhisperEngine(str(model_dir), device="cpu")
    whole = {
        name: [engine.transcribe([resample(audio, rate)])[0] for audio, rate in items]
        for name, items in versions.items()
    }
    del engine
    print("| version | whole-file WER | streamed WER | streamed − whole | >1 final | load |")
    print("|---|---|---|---|---|---|")
    with server_process(*command, device="auto") as address:
        for name, items in versions.items():
            finals = stream_all(address, args.query, items)
            whole_wer = corpus_wer(refs, whole[name])
            streamed_wer = corpus_wer(refs, [" ".join(f) for f in finals])
            split = sum(len(f) > 1 for f in finals)
            print(
                f"| {name} | {whole_wer:.3f} | {streamed_wer:.3f} | "
                f"{streamed_wer - whole_wer:+.3f} | {split}/{len(finals)} | "
                f"{os.getloadavg()[0]:.2f} |",
                flush=True,
            )
            if os.environ.get("BENCH_WER_VERBOSE"):
                for u, w, f in zip(utterances, whole[name], finals, strict=True):
                    print(f"  {u.name}\n    whole:    {w}\n    streamed: {' | '.join(f)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
