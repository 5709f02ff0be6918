"""Mel features against an independent NumPy + librosa computation (float64), padded batches too."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from nemo_lite import AudioPreprocessor
from nemo_lite.config import PreprocessorConfig

SR, N_FFT, WIN, HOP, MELS = 16000, 512, 400, 160, 128


def reference_log_mel(
    audio: np.ndarray, fb: np.ndarray | None = None, hann: np.ndarray | None = None
) -> np.ndarray:
    """NeMo's recipe written out: pre-emphasis, zero-padded centred frames of a symmetric
    Hann window zero-padded to n_fft, |rfft|^2, slaney mel, log(+2^-24), z-score (ddof 1).
    Only the len // hop valid frames: NeMo counts the centred STFT's last frame as padding."""
    x = np.asarray(audio, dtype=np.float64)
    x = np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]])
    x = np.pad(x, (N_FFT // 2, N_FFT // 2))
    frames = len(audio) // HOP
    window = np.zeros(N_FFT)
    start = (N_FFT - WIN) // 2
    if hann is None:
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / (WIN - 1))
    window[start : start + WIN] = hann
    stack = np.stack([x[t * HOP : t * HOP + N_FFT] * window for t in range(frames)], axis=1)
    power = np.abs(np.fft.rfft(stack, axis=0)) ** 2
    if fb is None:
        fb = librosa.filters.mel(
            sr=SR, n_fft=N_FFT, n_mels=MELS, fmin=0.0, fmax=SR / 2, norm="slaney"
        )
    mel = np.log(fb.astype(np.float64) @ power + 2.0**-24)
    return (mel - mel.mean(axis=1, keepdims=True)) / (mel.std(axis=1, ddof=1, keepdims=True) + 1e-5)


@pytest.fixture(scope="module")
def pre() -> AudioPreprocessor:
    return AudioPreprocessor(PreprocessorConfig())


def _speechlike(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (tone + 0.05 * rng.standard_normal(n)).astype(np.float32)


def test_matches_numpy_reference_in_a_padded_batch(pre: AudioPreprocessor) -> None:
    clips = [_speechlike(16000, 0), _speechlike(9123, 1), _speechlike(4000, 2)]
    audio = torch.zeros(3, 16000)
    for i, clip in enumerate(clips):
        audio[i, : len(clip)] = torch.from_numpy(clip)
    mel, mel_len = pre(audio, torch.tensor([len(c) for c in clips]))
    assert mel.dtype == torch.float32
    assert mel.shape == (3, MELS, 101)
    assert mel_len.tolist() == [100, 57, 25]
    for i, clip in enumerate(clips):
        ref = reference_log_mel(clip)
        n = ref.shape[1]
        np.testing.assert_allclose(mel[i, :, :n].numpy(), ref, atol=5e-4, rtol=0)
        assert mel[i, :, n:].eq(0).all()


def test_clip_alone_equals_clip_in_batch(pre: AudioPreprocessor) -> None:
    short, long = _speechlike(7000, 3), _speechlike(15000, 4)
    batch = torch.zeros(2, 15000)
    batch[0, :7000] = torch.from_numpy(short)
    batch[1] = torch.from_numpy(long)
    batched, _ = pre(batch, torch.tensor([7000, 15000]))
    alone, alone_len = pre(torch.from_numpy(short)[None], torch.tensor([7000]))
    n = int(alone_len[0])
    torch.testing.assert_close(batched[0, :, :n], alone[0, :, :n], atol=1e-5, rtol=0)


def test_stored_filterbank_is_used() -> None:
    """The checkpoint's bf16-rounded buffers, once loaded, are what the features are made from."""
    pre = AudioPreprocessor(PreprocessorConfig())
    pre.featurizer.fb.copy_(pre.featurizer.fb.to(torch.bfloat16).float())
    pre.featurizer.window.copy_(pre.featurizer.window.to(torch.bfloat16).float())
    clip = _speechlike(8000, 5)
    mel, _ = pre(torch.from_numpy(clip)[None], torch.tensor([8000]))
    fb = pre.featurizer.fb[0].double().numpy()
    hann = pre.featurizer.window.double().numpy()
    ref = reference_log_mel(clip, fb, hann)
    np.testing.assert_allclose(mel[0, :, : ref.shape[1]].numpy(), ref, atol=5e-4, rtol=0)
    assert mel[0, :, ref.shape[1] :].eq(0).all()
    fresh, _ = AudioPreprocessor(PreprocessorConfig())(
        torch.from_numpy(clip)[None], torch.tensor([8000])
    )
    assert not torch.equal(mel, fresh)


def test_frame_counts_follow_the_centred_stft() -> None:
    pre = AudioPreprocessor(PreprocessorConfig())
    lengths = torch.tensor([160 * 50, 160 * 50 + 159, 1, 161])
    _, mel_len = pre(torch.zeros(4, 160 * 51), lengths)
    assert mel_len.tolist() == [50, 50, 0, 1]
