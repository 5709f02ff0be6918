"""An uploaded file's bytes (any common container and codec, any rate and channel count) →
16 kHz mono float32.

soundfile (libsndfile) reads WAV, FLAC and OGG/Vorbis/Opus itself; everything else (MP3,
M4A/AAC, WebM, ...) goes through PyAV (FFmpeg). Decoding stops as soon as the audio is longer
than the limit, so a small but very long compressed file cannot fill the memory.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf

from stt_server.audio import SAMPLE_RATE, Audio, downmix, resample


class UndecodableAudio(ValueError):
    """The bytes are not audio any decoder here can read (or hold no samples)."""


class AudioTooLong(ValueError):
    """The audio is longer than the limit."""

    def __init__(self, limit: float) -> None:
        super().__init__(f"the audio is longer than the limit of {limit:g} seconds")
        self.limit = limit


def decode_file(data: bytes, max_seconds: float = 0.0) -> Audio:
    """The audio in `data` as 16 kHz mono float32; `max_seconds` (0: no limit) bounds its
    length. Blocking: call it in a worker thread."""
    if not data:
        raise UndecodableAudio("the file is empty")
    try:
        frames, rate = _read_with_soundfile(data, max_seconds)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        frames, rate = _read_with_av(data, max_seconds)
    if frames.shape[0] == 0:
        raise UndecodableAudio("the file contains no audio samples")
    mono = downmix(np.ascontiguousarray(frames, dtype=np.float32))
    return resample(mono, rate, SAMPLE_RATE)


def _read_with_soundfile(data: bytes, max_seconds: float) -> tuple[npt.NDArray[np.float32], int]:
    with sf.SoundFile(io.BytesIO(data)) as f:
        if max_seconds and f.frames > max_seconds * f.samplerate:
            raise AudioTooLong(max_seconds)
        frames = np.asarray(f.read(dtype="float32", always_2d=True), dtype=np.float32)
        return frames, int(f.samplerate)


def _read_with_av(data: bytes, max_seconds: float) -> tuple[npt.NDArray[np.float32], int]:
    import av  # imported here: only files soundfile cannot read need FFmpeg
    import av.error

    planes: list[npt.NDArray[Any]] = []
    rate = 0
    samples = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise UndecodableAudio("the file has no audio stream")
            stream = container.streams.audio[0]
            # Planar float of one layout, so frames of any codec and layout stack.
            resampler = av.AudioResampler(format="fltp", layout=stream.layout.name)
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    planes.append(converted.to_ndarray())
                    rate = converted.sample_rate
                    samples += converted.samples
                if max_seconds and rate and samples > max_seconds * rate:
                    raise AudioTooLong(max_seconds)
            planes.extend(c.to_ndarray() for c in resampler.resample(None))
    except av.error.FFmpegError as exc:
        raise UndecodableAudio(
            f"the file is not audio in a format this server reads ({exc})"
        ) from exc
    if not planes or not rate:
        raise UndecodableAudio("the file contains no audio samples")
    # (channels, samples) planes → (samples, channels)
    return np.concatenate(planes, axis=1).T.astype(np.float32), int(rate)
