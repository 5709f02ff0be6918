"""Log-mel features as NeMo's `AudioToMelSpectrogramPreprocessor` computes them at inference.

The STFT window and the mel filterbank are buffers (`featurizer.window`, `featurizer.fb`) as the
checkpoint stores them (bf16-rounded); loading those stored values is what makes the features equal
NeMo's on the real checkpoint. A fresh module computes them from the config instead.
"""

from __future__ import annotations

import librosa
import torch
from torch import Tensor, nn

from nemo_lite.config import PreprocessorConfig

NORMALIZE_EPS = 1e-5  # NeMo's CONSTANT added to the per-feature standard deviation


def mel_filterbank(config: PreprocessorConfig) -> Tensor:
    """Slaney-normalised mel filterbank from librosa, shape (1, features, n_fft // 2 + 1)."""
    fb = librosa.filters.mel(
        sr=config.sample_rate,
        n_fft=config.n_fft,
        n_mels=config.features,
        fmin=config.lowfreq,
        fmax=config.highfreq or config.sample_rate / 2,
    )
    return torch.tensor(fb, dtype=torch.float32).unsqueeze(0)


def frame_count(audio_len: Tensor, config: PreprocessorConfig) -> Tensor:
    """Valid mel frames for `audio_len` samples: len // hop, as NeMo's `get_seq_len` counts them.

    The centred STFT yields one frame more; NeMo treats that last one (centred past the clip's end)
    as padding: it is left out of the normalisation statistics and set to `pad_value`.
    """
    pad = config.n_fft // 2 * 2
    frames = torch.div(audio_len + pad - config.n_fft, config.hop_length, rounding_mode="floor")
    return torch.where(audio_len == 0, 0, frames).to(torch.long)


def normalize_per_feature(x: Tensor, lengths: Tensor) -> Tensor:
    """Per-utterance, per-mel-bin standardisation over valid frames only (unbiased std + 1e-5)."""
    valid = (torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]).unsqueeze(1)
    count = lengths.to(x.dtype)[:, None]
    mean = torch.where(valid, x, 0.0).sum(dim=2) / count
    centred = torch.where(valid, x - mean.unsqueeze(2), 0.0)
    std = torch.sqrt(centred.pow(2).sum(dim=2) / (count - 1.0))
    std = std.masked_fill(std.isnan(), 0.0) + NORMALIZE_EPS
    return (x - mean.unsqueeze(2)) / std.unsqueeze(2)


class FilterbankFeatures(nn.Module):
    """Holds the two buffers under NeMo's names; `AudioPreprocessor` does the computing."""

    window: Tensor
    fb: Tensor

    def __init__(self, config: PreprocessorConfig) -> None:
        super().__init__()
        if config.window != "hann":
            raise ValueError(f"only the hann window is supported, got {config.window!r}")
        self.register_buffer("window", torch.hann_window(config.win_length, periodic=False))
        self.register_buffer("fb", mel_filterbank(config))


class AudioPreprocessor(nn.Module):
    """`mel, mel_len = pre(audio, audio_len)`: audio (B, T) float32 16 kHz -> mel (B, F, frames).

    Frames past a clip's length are 0, so a clip gives the same features alone or in a padded batch.
    Always computed in float32, as NeMo does (autocast off), whatever the model's dtype.
    """

    def __init__(self, config: PreprocessorConfig | None = None) -> None:
        super().__init__()
        config = config or PreprocessorConfig()
        if config.normalize != "per_feature" or not config.log or config.frame_splicing != 1:
            raise ValueError("only normalize=per_feature, log=True, frame_splicing=1 are supported")
        self.config = config
        self.featurizer = FilterbankFeatures(config)

    @torch.no_grad()
    def forward(self, audio: Tensor, audio_len: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.config
        x = audio.float()
        mel_len = frame_count(audio_len, cfg)
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < audio_len[:, None]
        x = torch.cat((x[:, :1], x[:, 1:] - cfg.preemph * x[:, :-1]), dim=1)
        x = x.masked_fill(~valid, 0.0)
        spec = torch.stft(
            x,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=self.featurizer.window.float(),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        mag = torch.view_as_real(spec).pow(2).sum(-1).sqrt()  # (B, n_fft // 2 + 1, frames)
        power = mag.pow(cfg.mag_power)
        mel = torch.matmul(self.featurizer.fb.float(), power)
        mel = torch.log(mel + cfg.log_zero_guard_value)
        mel = normalize_per_feature(mel, mel_len)
        pad = torch.arange(mel.shape[2], device=mel.device)[None, :] >= mel_len[:, None]
        mel = mel.masked_fill(pad.unsqueeze(1), cfg.pad_value)
        if cfg.pad_to > 0 and mel.shape[2] % cfg.pad_to:
            extra = cfg.pad_to - mel.shape[2] % cfg.pad_to
            mel = nn.functional.pad(mel, (0, extra), value=cfg.pad_value)
        return mel, mel_len
