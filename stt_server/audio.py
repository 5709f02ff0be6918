"""Audio facts and pure signal functions: PCM decoding, down-mixing, resampling to 16 kHz mono.

Everything downstream of the client's bytes is 16 kHz mono float32 in [-1, 1]: the rate Silero
and every ASR model we serve were trained on.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

SAMPLE_RATE = 16000  # Hz: the pipeline's one rate
# Input formats a client may send; everything is resampled and down-mixed to the above.
MIN_SAMPLE_RATE = 8000  # telephone band
MAX_SAMPLE_RATE = 48000  # studio / browser device rates
MAX_CHANNELS = 8
SAMPLE_BYTES = 2  # 16-bit little-endian PCM on the wire

Audio = npt.NDArray[np.float32]


class AudioFormatError(ValueError):
    """Input that is not audio in a supported format; `field` says which part is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field  # "sample_rate", "channels" or "pcm"


def check_format(sample_rate: int, channels: int) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioFormatError(
            "sample_rate",
            f"sample rate {sample_rate} is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz",
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioFormatError("channels", f"channels {channels} is outside 1..{MAX_CHANNELS}")


def decode_pcm16(data: bytes, channels: int) -> npt.NDArray[np.float32]:
    """16-bit little-endian interleaved PCM → float32 array of shape (frames, channels)."""
    frame_bytes = SAMPLE_BYTES * channels
    if len(data) % frame_bytes:
        raise AudioFormatError(
            "pcm", f"{len(data)} bytes is not a whole number of {channels}-channel 16-bit frames"
        )
    pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return pcm.reshape(-1, channels)


def downmix(frames: npt.NDArray[np.float32]) -> Audio:
    """(frames, channels) → mono by averaging channels."""
    if frames.ndim == 1:
        return frames.astype(np.float32, copy=False)
    if frames.shape[1] == 1:  # mono: a view, not a mean (every frame of every stream comes here)
        return frames[:, 0].astype(np.float32, copy=False)
    return frames.mean(axis=1, dtype=np.float32)


def resample(audio: Audio, in_rate: int, out_rate: int = SAMPLE_RATE) -> Audio:
    """Whole-signal resampling (soxr, high quality)."""
    if in_rate == out_rate:
        return audio.astype(np.float32, copy=False)
    return soxr.resample(audio, in_rate, out_rate, quality="HQ").astype(np.float32, copy=False)


def encode_pcm16(audio: npt.NDArray[np.floating]) -> bytes:
    """float in [-1, 1] (any shape; interleaved when 2-D) → 16-bit little-endian PCM."""
    clipped = np.clip(np.asarray(audio, dtype=np.float64), -1.0, 32767 / 32768)
    return (np.round(clipped * 32768.0)).astype("<i2").tobytes()


def empty() -> Audio:
    return np.zeros(0, np.float32)


class StreamConverter:
    """One session's stream of PCM messages → 16 kHz mono float32, continuous across messages.

    soxr keeps filter state between calls so message boundaries leave no clicks; a change of
    input rate mid-stream flushes the old resampler and starts a new one. `flush()` at the end of
    the stream returns the resampler's last few milliseconds, which would otherwise be lost.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        self._rate = SAMPLE_RATE
        self._stream: soxr.ResampleStream | None = None
        self._switch(sample_rate)

    def convert(self, data: bytes, sample_rate: int, channels: int) -> Audio:
        check_format(sample_rate, channels)
        mono = downmix(decode_pcm16(data, channels))
        head = self._switch(sample_rate)
        out = mono if self._stream is None else self._stream.resample_chunk(mono)
        return np.concatenate([head, out]) if head.size else out

    def flush(self) -> Audio:
        """The resampler's remaining output; the next message starts a fresh stream."""
        rate = self._rate
        tail = self._switch(SAMPLE_RATE)
        self._switch(rate)
        return tail

    def _switch(self, rate: int) -> Audio:
        if rate == self._rate:
            return empty()
        tail = empty()
        if self._stream is not None:
            tail = self._stream.resample_chunk(empty(), last=True)
        self._rate = rate
        self._stream = (
            None
            if rate == SAMPLE_RATE
            else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )
        return tail.astype(np.float32, copy=False)
