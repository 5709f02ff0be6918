"""nemo_lite.FastConformerEncoder against NeMo's ConformerEncoder, random weights, tiny sizes.

NeMo's `state_dict()` loads as is (`strict=True`, no key mapping). The full-size encoder is compared
inside the perception module (test_perception.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from nemo.collections.asr.modules import ConformerEncoder

from nemo_lite import FastConformerEncoder
from nemo_lite.config import EncoderConfig
from nemo_lite.presets import CANARY_QWEN_2_5B
from tests.parity.errors import compare
from tests.parity.random_weights import randomize_

# Float32, a few layers ending in LayerNorm (outputs O(1)..O(10)); the two sides differ in
# attention kernels (NeMo: matmul + softmax, nemo_lite: scaled_dot_product_attention) and the
# order of a few sums, i.e. rounding at ~1e-7 relative per op.
ATOL = 1e-4

TINY = {
    k: v
    for k, v in CANARY_QWEN_2_5B["perception"]["encoder"].items()
    if not k.startswith("dropout") and k != "_target_"
} | {"feat_in": 80, "n_layers": 3, "d_model": 32, "n_heads": 4, "subsampling_conv_channels": 16}
CASES: dict[str, dict[str, Any]] = {
    "x8 xscaling": TINY | {"xscaling": True},
    "x8 no xscaling": TINY | {"xscaling": False},
    "x8 128 mels 256 channels": TINY | {"feat_in": 128, "subsampling_conv_channels": 256},
    "x4 xscaling": TINY | {"subsampling_factor": 4, "xscaling": True},
}


@pytest.mark.parametrize("case", list(CASES))
def test_encoder_matches_nemo(case: str) -> None:
    config = CASES[case]
    torch.manual_seed(0)
    nemo = randomize_(ConformerEncoder(**config), seed=1).eval()
    lite = FastConformerEncoder(EncoderConfig.from_dict(config)).eval()
    lite.load_state_dict(nemo.state_dict(), strict=True)

    lengths = torch.tensor([300, 301, 177, 64, 9])
    generator = torch.Generator().manual_seed(2)
    mel = torch.randn(len(lengths), config["feat_in"], int(lengths.max()), generator=generator)
    with torch.no_grad():  # the padding is left random: both sides must mask it
        ref, ref_len = nemo(audio_signal=mel, length=lengths)  # (B, d_model, T')
        got, got_len = lite(mel, lengths)  # (B, T', d_model)
    assert got_len.tolist() == ref_len.tolist()
    ref = ref.transpose(1, 2)
    assert got.shape == ref.shape
    valid = torch.arange(ref.shape[1])[None, :] < ref_len[:, None]
    result = compare("encoder", case, ref[valid], got[valid])
    assert result.max_abs < ATOL, result
