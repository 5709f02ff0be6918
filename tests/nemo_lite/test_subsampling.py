"""dw_striding subsampling: output lengths against NeMo's `calc_length`, masking of padding."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_lite.config import EncoderConfig
from nemo_lite.conformer_lite.subsampling import ConvSubsampling, subsampled_length

CONFIG = EncoderConfig(feat_in=128, d_model=16, subsampling_factor=8, subsampling_conv_channels=4)


def nemo_calc_length(length: int, repeat: int = 3) -> int:
    """NeMo: length = floor((length + all_paddings - kernel) / stride + 1), in floats, per conv."""
    value = float(length)
    for _ in range(repeat):
        value = math.floor((value + 2 - 3) / 2 + 1.0)
    return int(value)


@given(st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=6))
@settings(max_examples=60, deadline=None)
def test_lengths_match_nemo_formula(lengths: list[int]) -> None:
    got = subsampled_length(torch.tensor(lengths), 8).tolist()
    assert got == [nemo_calc_length(n) for n in lengths]


def test_module_output_shape_and_lengths() -> None:
    torch.manual_seed(0)
    sub = ConvSubsampling(CONFIG)
    assert sub.out.in_features == 4 * 16
    lengths = torch.tensor([101, 57, 8, 1])
    y, out_len = sub(torch.randn(4, 101, 128), lengths)
    assert y.shape == (4, nemo_calc_length(101), 16)
    assert out_len.tolist() == [nemo_calc_length(int(n)) for n in lengths]


def test_padding_does_not_leak_into_valid_frames() -> None:
    torch.manual_seed(1)
    sub = ConvSubsampling(CONFIG)
    x = torch.randn(1, 61, 128)
    padded = torch.cat([x, 100 * torch.randn(1, 40, 128)], dim=1)  # garbage past the length
    alone, n = sub(x, torch.tensor([61]))
    batched, m = sub(padded, torch.tensor([61]))
    assert n.tolist() == m.tolist() == [8]
    torch.testing.assert_close(batched[:, :8], alone[:, :8], atol=1e-5, rtol=0)
