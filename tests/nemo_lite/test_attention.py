"""Relative-position attention against the Transformer-XL formula written out per (query, key)."""

from __future__ import annotations

import math

import torch

from nemo_lite.config import EncoderConfig
from nemo_lite.conformer_lite.attention import RelPositionMultiHeadAttention
from nemo_lite.conformer_lite.pos_encoding import RelPositionalEncoding, relative_sinusoids


def sinusoid(position: int, d_model: int) -> torch.Tensor:
    """pe(r)[2k] = sin(r / 10000^(2k/d)), pe(r)[2k+1] = cos(same), computed one value at a time."""
    values = []
    for k in range(d_model // 2):
        angle = position / 10000 ** (2 * k / d_model)
        values += [math.sin(angle), math.cos(angle)]
    return torch.tensor(values, dtype=torch.float64)


def direct_attention(
    attn: RelPositionMultiHeadAttention, x: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """score(i, j) = [(q_i + u) . k_j + (q_i + v) . W_pos pe(i - j)] / sqrt(d_k), padded keys
    excluded, padded query rows zero before the output projection."""
    b, t, d = x.shape
    h, dk = attn.h, attn.d_k
    out = torch.zeros(b, t, d, dtype=x.dtype)
    for n in range(b):
        q = attn.linear_q(x[n]).view(t, h, dk)
        k = attn.linear_k(x[n]).view(t, h, dk)
        v = attn.linear_v(x[n]).view(t, h, dk)
        for i in range(t):
            if not valid[n, i]:
                continue
            for head in range(h):
                scores = []
                for j in range(t):
                    p = attn.linear_pos(sinusoid(i - j, d)).view(h, dk)[head]
                    content = (q[i, head] + attn.pos_bias_u[head]) @ k[j, head]
                    position = (q[i, head] + attn.pos_bias_v[head]) @ p
                    score = (content + position) / math.sqrt(dk)
                    scores.append(score if valid[n, j] else torch.tensor(-10000.0, dtype=x.dtype))
                weights = torch.softmax(torch.stack(scores), dim=0)
                context = (weights[:, None] * v[:, head]).sum(dim=0)
                out[n, i, head * dk : (head + 1) * dk] = context
    return attn.linear_out(out)


def test_matches_direct_formula_with_padding() -> None:
    torch.manual_seed(0)
    attn = RelPositionMultiHeadAttention(EncoderConfig(d_model=8, n_heads=2)).double()
    with torch.no_grad():
        attn.pos_bias_u.normal_()
        attn.pos_bias_v.normal_()
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    lengths = torch.tensor([6, 4])
    valid = torch.arange(6)[None, :] < lengths[:, None]
    mask = ~(valid[:, None, :] & valid[:, :, None])
    pos_emb = relative_sinusoids(6, 8).double()
    with torch.no_grad():
        got = attn(x, pos_emb, mask)
        want = direct_attention(attn, x, valid)
    torch.testing.assert_close(got[0], want[0], atol=1e-6, rtol=0)  # pe is float32
    torch.testing.assert_close(got[1, :4], want[1, :4], atol=1e-6, rtol=0)
    # Padded query rows: zero context, so only linear_out's bias comes out.
    torch.testing.assert_close(got[1, 4:], attn.linear_out.bias.expand(2, 8), atol=1e-12, rtol=0)


def test_position_table_order_and_xscaling() -> None:
    table = relative_sinusoids(5, 6)
    assert table.shape == (1, 9, 6)
    for index, position in enumerate(range(4, -5, -1)):
        torch.testing.assert_close(
            table[0, index].double(), sinusoid(position, 6), atol=1e-6, rtol=0
        )
    x = torch.ones(1, 5, 16)
    scaled, _ = RelPositionalEncoding(EncoderConfig(d_model=16, xscaling=True))(x)
    plain, _ = RelPositionalEncoding(EncoderConfig(d_model=16, xscaling=False))(x)
    assert torch.equal(scaled, x * 4.0)
    assert torch.equal(plain, x)
