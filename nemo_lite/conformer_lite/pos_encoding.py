"""Transformer-XL relative positional encoding as NeMo's `RelPositionalEncoding` builds it."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nemo_lite.config import EncoderConfig


def relative_sinusoids(length: int, d_model: int, device: torch.device | None = None) -> Tensor:
    """Sinusoids for relative positions length-1 .. -(length-1): (1, 2*length - 1, d_model).

    Element-wise equal to the slice NeMo takes of its `pos_emb_max_len` table (which NeMo grows for
    longer inputs), so no table and no length limit are kept.
    """
    positions = torch.arange(length - 1, -length, -1, dtype=torch.float32, device=device).unsqueeze(
        1
    )
    div_term = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=device)
        * -(math.log(10000.0) / d_model)
    )
    pe = torch.zeros(positions.shape[0], d_model, device=device)
    pe[:, 0::2] = torch.sin(positions * div_term)
    pe[:, 1::2] = torch.cos(positions * div_term)
    return pe.unsqueeze(0)


class RelPositionalEncoding(nn.Module):
    """Scales the input by sqrt(d_model) when `xscaling` is set and returns the position table."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.d_model = config.d_model
        self.xscale = math.sqrt(config.d_model) if config.xscaling else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.xscale is not None:
            x = x * self.xscale
        pos_emb = relative_sinusoids(x.shape[1], self.d_model, x.device).to(x.dtype)
        return x, pos_emb
