"""Reading an audio file of any common format as 16 kHz mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from stt_server.audio import SAMPLE_RATE, Audio, downmix, resample


class AudioFileError(Exception):
    """The file is missing, unreadable or not audio; the message says which."""


def load_audio(path: Path) -> Audio:
    """Decodes `path` (WAV, FLAC, OGG with soundfile; MP3 and anything else with PyAV),
    down-mixes to mono and resamples to 16 kHz."""
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    try:
        frames, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        frames, rate = _read_with_av(path)
    if frames.shape[0] == 0:
        raise AudioFileError(f"{path}: contains no audio samples")
    return resample(downmix(np.ascontiguousarray(frames, dtype=np.float32)), int(rate), SAMPLE_RATE)


def _read_with_av(path: Path) -> tuple[np.ndarray, int]:
    import av  # imported here: only files soundfile cannot read need FFmpeg
    import av.error

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioFileError(f"{path}: has no audio stream")
            stream = container.streams.audio[0]
            # Convert every decoded frame to planar float so frames of any codec stack.
            resampler = av.AudioResampler(format="fltp", layout=stream.layout.name)
            planes: list[np.ndarray] = []
            rate = stream.rate
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    planes.append(converted.to_ndarray())
                    rate = converted.sample_rate
            for converted in resampler.resample(None):
                planes.append(converted.to_ndarray())
    except av.error.FFmpegError as exc:
        raise AudioFileError(f"{path}: not a readable audio file ({exc})") from exc
    if not planes:
        raise AudioFileError(f"{path}: contains no audio samples")
    # (channels, samples) planes → (samples, channels)
    return np.concatenate(planes, axis=1).T.astype(np.float32), int(rate)
