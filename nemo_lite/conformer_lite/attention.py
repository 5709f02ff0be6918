"""NeMo's `RelPositionMultiHeadAttention` (Transformer-XL scores with untied per-layer biases)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nemo_lite.config import EncoderConfig

INF_VAL = 10000.0  # NeMo fills masked scores with -INF_VAL, not -inf


def rel_shift(x: Tensor) -> Tensor:
    """Scores against positions T-1..-(T-1) (B, H, T, 2T-1) -> entry [i, j] at position i - j."""
    b, h, t, p = x.shape
    x = nn.functional.pad(x, (1, 0))  # (B, H, T, 2T)
    x = x.view(b, h, p + 1, t)[:, :, 1:]
    return x.reshape(b, h, t, p)


class RelPositionMultiHeadAttention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        n_feat, n_head = config.d_model, config.n_heads
        if n_feat % n_head:
            raise ValueError(f"d_model {n_feat} is not divisible by n_heads {n_head}")
        self.h = n_head
        self.d_k = n_feat // n_head
        self.linear_q = nn.Linear(n_feat, n_feat)
        self.linear_k = nn.Linear(n_feat, n_feat)
        self.linear_v = nn.Linear(n_feat, n_feat)
        self.linear_out = nn.Linear(n_feat, n_feat)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(n_head, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(n_head, self.d_k))

    def forward(self, x: Tensor, pos_emb: Tensor, mask: Tensor | None) -> Tensor:
        """x (B, T, d); pos_emb (1, 2T-1, d); mask (B, T, T), True where attention is blocked."""
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.h, self.d_k)
        k = self.linear_k(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(pos_emb.shape[0], -1, self.h, self.d_k).transpose(1, 2)
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, H, T, d_k)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        scale = 1.0 / math.sqrt(self.d_k)
        bd = rel_shift(torch.matmul(q_v, p.transpose(-2, -1)))[:, :, :, :t] * scale
        if mask is not None:
            bd = bd.masked_fill(mask.unsqueeze(1), -INF_VAL)
        out = nn.functional.scaled_dot_product_attention(q_u, k, v, attn_mask=bd, scale=scale)
        if mask is not None:
            # Padded query rows see no key; NeMo zeroes them instead of averaging.
            out = out.masked_fill(mask.all(dim=-1)[:, None, :, None], 0.0)
        return self.linear_out(out.transpose(1, 2).reshape(b, t, self.h * self.d_k))
