"""espeak-ng turns as benchmark utterances: synthetic speech beside the real recordings.

Three sets of five sentences (a test recording's, a restaurant booking, smart-home commands),
grouped into turns the way the streaming tests group them: sentences 0.5 s apart stay in one
turn (the pause cuts a chunk), 2 s apart end it. Each turn is one utterance with 0.5 s of
silence in front, spoken in two voices (en-us at 150 words a minute, en-gb at 175). Speech start
and end come from Silero, as for the real recordings (`benchmarks/real_speech.py`).
"""

from __future__ import annotations

import numpy as np

from benchmarks.real_speech import Utterance, speech_span
from stt_server.audio import SAMPLE_RATE
from stt_server.stages.silero import SileroModel
from tests.stt_server.speech import SENTENCES, speak

# (sentences, pause after each): a pause of 1.5 s or more ends a turn.
TURN_SETS: list[tuple[tuple[str, ...], tuple[float, ...]]] = [
    (SENTENCES, (0.5, 2.0, 0.5, 2.0, 2.0)),
    (
        (
            "Good morning, I would like to book a table for four people tonight.",
            "Do you have anything available around seven thirty?",
            "Also, one of us is allergic to peanuts.",
            "Could the kitchen prepare something without them?",
            "Thank you very much, see you this evening.",
        ),
        (0.5, 2.0, 0.5, 2.0, 2.0),
    ),
    (
        (
            "Turn on the lights in the living room.",
            "Set a timer for twenty minutes and remind me to check the oven.",
            "What is the capital city of Australia?",
            "Play some relaxing music at a low volume.",
            "Then lock the front door and turn off the heating.",
        ),
        (2.0, 0.5, 2.0, 0.5, 2.0),
    ),
]
VOICES = (("en-us", 150), ("en-gb", 175))
LEAD = 0.5  # s of silence before each turn
INSIDE = 0.5  # s between the sentences of one turn


def turns() -> list[tuple[str, ...]]:
    """The sentences of every turn of `TURN_SETS`, in order."""
    grouped: list[tuple[str, ...]] = []
    for sentences, pauses in TURN_SETS:
        current: list[str] = []
        for sentence, pause in zip(sentences, pauses, strict=True):
            current.append(sentence)
            if pause >= 1.5:
                grouped.append(tuple(current))
                current = []
    return grouped


def espeak_utterances() -> list[Utterance]:
    model = SileroModel()
    utterances = []
    gap = np.zeros(int(INSIDE * SAMPLE_RATE), np.float32)
    for voice, speed in VOICES:
        for index, sentences in enumerate(turns()):
            parts = [np.zeros(int(LEAD * SAMPLE_RATE), np.float32)]
            for i, sentence in enumerate(sentences):
                if i:
                    parts.append(gap)
                parts.append(0.5 * speak(sentence, voice=voice, speed=speed))
            audio = np.concatenate(parts).astype(np.float32)
            start, end = speech_span(audio, model)
            name = f"espeak_{voice}_{index:02d}"
            utterances.append(Utterance(name, audio, " ".join(sentences), start, end))
    return utterances
