"""NeMo's `ConvSubsampling`, `dw_striding` form: 8x fewer frames, frequency folded into channels.

Layout of `conv` (factor 8): [Conv2d(1->C, 3, s2), ReLU, then twice: depthwise Conv2d(C, 3, s2),
pointwise Conv2d(C, 1), ReLU]. Like NeMo's `MaskedConvSequential`, frames past each clip's length
are zeroed before every layer, so a clip gives the same output alone or in a padded batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nemo_lite.config import EncoderConfig

KERNEL = 3
STRIDE = 2
PADDING = 1


def subsampled_length(lengths: Tensor, factor: int) -> Tensor:
    """Frames left after `log2(factor)` stride-2, kernel-3, padding-1 convolutions."""
    for _ in range(int(math.log2(factor))):
        lengths = torch.div(lengths + 2 * PADDING - KERNEL, STRIDE, rounding_mode="floor") + 1
    return lengths


class ConvSubsampling(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        factor = config.subsampling_factor
        steps = int(math.log2(factor))
        if 2**steps != factor or steps < 1:
            raise ValueError(f"subsampling_factor must be a power of 2 >= 2, got {factor}")
        # NeMo: a non-positive channel count means "as many as d_model".
        channels = config.subsampling_conv_channels
        conv_channels = channels if channels > 0 else config.d_model
        layers: list[nn.Module] = [
            nn.Conv2d(1, conv_channels, KERNEL, stride=STRIDE, padding=PADDING),
            nn.ReLU(),
        ]
        for _ in range(steps - 1):
            layers += [
                nn.Conv2d(
                    conv_channels, conv_channels, KERNEL, STRIDE, PADDING, groups=conv_channels
                ),
                nn.Conv2d(conv_channels, conv_channels, 1),
                nn.ReLU(),
            ]
        self.conv = nn.Sequential(*layers)
        freq = config.feat_in
        for _ in range(steps):
            freq = (freq + 2 * PADDING - KERNEL) // STRIDE + 1
        self.out = nn.Linear(conv_channels * freq, config.d_model)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, feat_in) -> (B, T', d_model), T' = subsampled_length(T)."""
        h = x.unsqueeze(1)  # (B, 1, T, F)
        lengths = lengths.to(torch.long)
        for layer in self.conv:
            h = h * _time_mask(h, lengths)
            h = layer(h)
            if isinstance(layer, nn.Conv2d) and layer.stride[0] > 1:
                lengths = subsampled_length(lengths, 2)
        h = h * _time_mask(h, lengths)
        b, c, t, f = h.shape
        return self.out(h.transpose(1, 2).reshape(b, t, c * f)), lengths


def _time_mask(h: Tensor, lengths: Tensor) -> Tensor:
    valid = torch.arange(h.shape[2], device=h.device)[None, :] < lengths[:, None]
    return valid[:, None, :, None].to(h.dtype)
