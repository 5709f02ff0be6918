"""`python -m nemo_lite transcribe FILE... [--model SOURCE] [--device DEVICE]`.

Prints one line per file, `FILE<TAB>TRANSCRIPT`, in the order given. Files are read with
soundfile, mixed to mono and resampled to 16 kHz with soxr, then transcribed as one batch.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import soundfile
import soxr

from nemo_lite.model import CanaryQwen
from nemo_lite.weights import CheckpointError

DEFAULT_MODEL = "nvidia/canary-qwen-2.5b"
SAMPLE_RATE = 16000


def read_audio(path: str) -> np.ndarray:
    """float32 mono 16 kHz samples of an audio file."""
    data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE)
    return np.ascontiguousarray(mono, dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nemo_lite")
    commands = parser.add_subparsers(dest="command", required=True)
    transcribe = commands.add_parser("transcribe", help="print the transcript of each audio file")
    transcribe.add_argument("files", nargs="+", metavar="FILE")
    transcribe.add_argument("--model", default=DEFAULT_MODEL, help="checkpoint directory or hub id")
    transcribe.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    args = parser.parse_args(argv)

    try:
        audios = [read_audio(path) for path in args.files]
    except (OSError, RuntimeError) as error:  # soundfile raises LibsndfileError (a RuntimeError)
        print(f"error: cannot read audio: {error}", file=sys.stderr)
        return 1
    try:
        model = CanaryQwen.from_pretrained(args.model, device=args.device)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path, text in zip(args.files, model.transcribe(audios), strict=True):
        print(f"{path}\t{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
