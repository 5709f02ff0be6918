"""The real recordings of shared/real-speech as benchmark utterances, with their speech endpoints.

The audio is read from where it lies (never copied into the repository). Speech start and end
come from Silero VAD (the network the server uses, threshold 0.5) run once over the whole file
with fresh state: the end is the end of the last 32 ms window above 0.5. An energy threshold
(last 30 ms frame above -45 dB relative to the loudest) does not work on these files: their
noise floor lies between -22 and -52 dB relative to the peak, so "speech" would run to the last
sample of most files. Silero's end lags the last phoneme by up to a few windows, so latencies
measured from it are, if anything, slightly flattering.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile

from stt_server.audio import SAMPLE_RATE
from stt_server.stages.silero import CONTEXT, WINDOW, SileroModel

REAL_SPEECH = Path("/work/shared/real-speech")
SPEECH_PROBABILITY = 0.5


@dataclass(frozen=True)
class Utterance:
    name: str
    audio: npt.NDArray[np.float32]  # 16 kHz mono
    reference: str
    speech_start: float  # s from the file's first sample
    speech_end: float

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def speech_span(audio: npt.NDArray[np.float32], model: SileroModel) -> tuple[float, float]:
    """First and last moment of speech (s) by Silero over the whole file."""
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros(CONTEXT, np.float32)
    rate = np.array(SAMPLE_RATE, np.int64)
    speech: list[int] = []
    for i in range(len(audio) // WINDOW):
        window = audio[i * WINDOW : (i + 1) * WINDOW]
        x = np.concatenate([context, window])[None]
        out, state = model.session.run(None, {"input": x, "state": state, "sr": rate})
        context = window[-CONTEXT:]
        if float(np.asarray(out).ravel()[0]) > SPEECH_PROBABILITY:
            speech.append(i)
    if not speech:
        return 0.0, len(audio) / SAMPLE_RATE
    return speech[0] * WINDOW / SAMPLE_RATE, (speech[-1] + 1) * WINDOW / SAMPLE_RATE


def load_utterances(folder: Path = REAL_SPEECH) -> list[Utterance]:
    refs: dict[str, str] = json.loads((folder / "refs.json").read_text())
    model = SileroModel()
    utterances = []
    for name in sorted(refs):
        data, rate = soundfile.read(folder / name, dtype="float32")
        audio = np.asarray(data, dtype=np.float32)
        if rate != SAMPLE_RATE or audio.ndim != 1:
            raise ValueError(f"{name}: expected 16 kHz mono")
        start, end = speech_span(audio, model)
        utterances.append(Utterance(name, audio, refs[name], start, end))
    return utterances


_PUNCTUATION = str.maketrans("", "", string.punctuation.replace("'", ""))


def normalise(text: str) -> str:
    """Lower case, punctuation but apostrophes removed, hyphens and spaces collapsed."""
    return " ".join(text.lower().replace("-", " ").translate(_PUNCTUATION).split())


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate over all utterances together (errors / reference words)."""
    import jiwer

    refs = [normalise(r) for r in references]
    hyps = [normalise(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))
