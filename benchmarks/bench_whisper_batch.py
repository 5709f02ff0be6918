"""whisper-base on CPU: a `WhisperModel.transcribe` per clip vs one encode and one generate a batch.

Reads the real-speech clips (16 kHz mono WAV, references in refs.json) from a directory outside
the repository. For each batch size, the first `--clips` clips are cut into consecutive batches
and run through both paths of the same engine, alternating, `--repeats` times; the table shows
the median time per batch, audio seconds per second of wall time, CPU seconds per wall second
(how many cores were busy) and the speed-up. Then the phases are timed apart (fastest of
`--repeats`, per window): the encoder given the whole batch in one call, the encoder one window
per call (what the engine does on CPU), and the batched generate. Last, every clip is
transcribed by both paths in batches of 8 and the word error rates are printed.

    .venv/bin/python benchmarks/bench_whisper_batch.py [--speech-dir DIR] [--sizes 1 2 4 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import ctranslate2
import jiwer
import numpy as np
import numpy.typing as npt
import soundfile

from stt_server.engines.whisper import WhisperEngine
from stt_server.engines.whisper_assets import assemble
from tests.stt_server.speech import normalise

REPO = Path(__file__).resolve().parent.parent
Clip = npt.NDArray[np.float32]
Transcribe = Callable[[list[Clip]], list[str]]


def load(speech_dir: Path) -> tuple[list[str], list[Clip], dict[str, str]]:
    refs: dict[str, str] = json.loads((speech_dir / "refs.json").read_text())
    names = sorted(refs)
    clips: list[Clip] = []
    for name in names:
        audio, rate = soundfile.read(speech_dir / name, dtype="float32", always_2d=False)
        if rate != 16000:
            raise SystemExit(f"{name}: {rate} Hz, expected 16 kHz")
        clips.append(np.asarray(audio, dtype=np.float32))
    return names, clips, refs


def timed(call: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def fastest(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    return min((timed(call) for _ in range(repeats)), key=lambda t: t[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speech-dir", type=Path, default=Path("/work/shared/real-speech"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--clips", type=int, default=8, help="clips timed per batch size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cpu-threads", type=int, default=0, help="0: OpenMP's default")
    args = parser.parse_args()

    names, clips, refs = load(args.speech_dir)
    engine = WhisperEngine(
        str(assemble(REPO / "models" / "whisper-base")), cpu_threads=args.cpu_threads
    )
    paths: dict[str, Transcribe] = {
        "per-clip": engine._transcribe_per_clip,
        "batched": engine.transcribe,
    }
    timed_clips = clips[: args.clips]
    engine.transcribe(timed_clips[:1])  # warm-up: first call allocates CTranslate2's buffers

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus; whisper-base int8, beam 2, "
        f"cpu_threads {args.cpu_threads}; {len(timed_clips)} clips, "
        f"{sum(c.size for c in timed_clips) / 16000:.1f} s of audio per size"
    )
    print(
        f"{'batch':>5} {'audio s':>8} {'per-clip s':>10} {'batched s':>9} "
        f"{'per-clip x':>10} {'batched x':>9} {'cores old/new':>15} {'speed-up':>8}"
    )
    for size in args.sizes:
        batches = [timed_clips[i : i + size] for i in range(0, len(timed_clips), size)]
        walls: dict[str, list[float]] = {name: [] for name in paths}
        cpus: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.repeats):
            for batch in batches:
                for name, path in paths.items():
                    wall, cpu = timed(partial(path, batch))
                    walls[name].append(wall)
                    cpus[name].append(cpu)
        audio_s = statistics.mean(sum(c.size for c in b) / 16000 for b in batches)
        old, new = (statistics.median(walls[name]) for name in paths)
        cores = "/".join(f"{sum(cpus[n]) / sum(walls[n]):.2f}" for n in paths)
        print(
            f"{size:>5} {audio_s:>8.1f} {old:>10.2f} {new:>9.2f} {audio_s / old:>10.1f} "
            f"{audio_s / new:>9.1f} {cores:>15} {old / new:>7.2f}x"
        )

    print("\nby phase, seconds per window, wall (CPU), fastest of the repeats:")
    print(f"{'batch':>5} {'encode 1 call':>14} {'encode per win':>14} {'generate':>14}")
    model = engine._whisper.model
    windows = [engine._windows(clip)[0] for clip in timed_clips]
    for size in args.sizes:
        # As the engine pads (--whisper-padding); the clips' lengths differ, so to one length here.
        frames = max(engine._padded_length(w.shape[1]) for w in windows[:size])
        batch = [engine._pad(w, frames) for w in windows[:size]]
        features = ctranslate2.StorageView.from_array(np.stack(batch))
        encoded = engine._encode(batch)
        prompts = [engine._prompt] * size
        options = engine._generate_options(engine._max_length(frames))
        phases = [
            fastest(partial(model.encode, features), args.repeats),
            fastest(partial(engine._encode, batch), args.repeats),
            fastest(
                partial(model.generate, encoded, prompts, beam_size=2, **options), args.repeats
            ),
        ]
        cells = [f"{wall / size:.3f} ({cpu / size:.3f})" for wall, cpu in phases]
        print(f"{size:>5} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14}")

    references = [normalise(refs[name]) for name in names]
    total_s = sum(c.size for c in clips) / 16000
    print(f"\nWER on all {len(clips)} clips ({total_s:.1f} s), batches of 8:")
    texts: dict[str, list[str]] = {}
    for name, path in paths.items():
        texts[name] = [t for i in range(0, len(clips), 8) for t in path(clips[i : i + 8])]
        hypotheses = [normalise(t) for t in texts[name]]
        print(f"  {name:>8}: {jiwer.wer(references, hypotheses):.4f}")
    same = sum(a == b for a, b in zip(texts["per-clip"], texts["batched"], strict=True))
    print(f"  identical texts: {same} of {len(clips)}")
    for name, a, b in zip(names, texts["per-clip"], texts["batched"], strict=True):
        if a != b:
            print(f"  {name}: per-clip {a!r}\n  {' ' * len(name)}  batched  {b!r}")


if __name__ == "__main__":
    main()
