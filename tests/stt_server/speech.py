"""Speech recordings made with espeak-ng, for tests and benchmarks (no files in the repository)."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile

from stt_server.audio import SAMPLE_RATE, resample

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things from the store.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags.",
    "The weather today is sunny with a light breeze from the west.",
)
# Pause after each sentence: 0.5 s stays inside a turn, 2 s ends it.
PAUSES = (0.5, 2.0, 0.5, 2.0, 2.0)


@dataclass(frozen=True)
class Recording:
    audio: npt.NDArray[np.float32]  # 16 kHz mono
    sentences: tuple[str, ...]
    pauses: tuple[float, ...]
    # (start, end) of each sentence's speech, in seconds from the start of `audio`.
    spans: tuple[tuple[float, float], ...]

    @property
    def turns(self) -> list[str]:
        """The spoken text grouped into turns (a pause >= 1.5 s ends a turn)."""
        turns: list[str] = []
        current: list[str] = []
        for sentence, pause in zip(self.sentences, self.pauses, strict=True):
            current.append(sentence)
            if pause >= 1.5:
                turns.append(" ".join(current))
                current = []
        if current:
            turns.append(" ".join(current))
        return turns

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def speak(text: str, *, voice: str = "en-us", speed: int = 150) -> npt.NDArray[np.float32]:
    """One utterance from espeak-ng at 16 kHz, leading/trailing silence removed."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text],
            check=True,
            capture_output=True,
        )
        audio, rate = soundfile.read(wav, dtype="float32", always_2d=False)
    audio = resample(np.asarray(audio, dtype=np.float32), int(rate), SAMPLE_RATE)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1] if loud.size else audio


def make_recording(
    sentences: tuple[str, ...] = SENTENCES,
    pauses: tuple[float, ...] = PAUSES,
    *,
    lead: float = 0.5,
    gain: float = 0.5,
) -> Recording:
    """Sentences separated by exact silent pauses, scaled to `gain` peak."""
    parts = [np.zeros(int(lead * SAMPLE_RATE), np.float32)]
    spans: list[tuple[float, float]] = []
    position = lead
    for sentence, pause in zip(sentences, pauses, strict=True):
        voice = speak(sentence)
        voice = voice / max(1e-6, float(np.max(np.abs(voice)))) * gain
        parts.append(voice.astype(np.float32))
        spans.append((position, position + len(voice) / SAMPLE_RATE))
        position += len(voice) / SAMPLE_RATE + pause
        parts.append(np.zeros(int(pause * SAMPLE_RATE), np.float32))
    return Recording(
        audio=np.concatenate(parts).astype(np.float32),
        sentences=tuple(sentences),
        pauses=tuple(pauses),
        spans=tuple(spans),
    )


def normalise(text: str) -> str:
    """Lower case, punctuation removed, single spaces: what word error rate is computed on."""
    kept = "".join(c if c.isalnum() or c.isspace() or c == "'" else " " for c in text.lower())
    return " ".join(kept.replace("'", "").split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))


def write_audio_file(
    path: Path, audio: npt.NDArray[np.float32], rate: int, channels: int = 1
) -> None:
    """Writes 16 kHz mono `audio` as a file at `rate` with `channels` identical channels; the
    format follows the suffix (MP3 through PyAV, the rest through soundfile)."""
    data = resample(audio, SAMPLE_RATE, rate)
    if path.suffix == ".mp3":
        import av

        with av.open(str(path), "w") as container:
            stream = container.add_stream("mp3", rate=rate, layout="mono")
            frame = av.AudioFrame.from_ndarray(
                data[np.newaxis, :].astype(np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate = rate
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                container.mux(packet)
        return
    soundfile.write(path, np.stack([data] * channels, axis=1) if channels > 1 else data, rate)
