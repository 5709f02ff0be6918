"""Error records of the parity tests; conftest.py prints them all as a table at the end."""

from __future__ import annotations

import dataclasses

from torch import Tensor


@dataclasses.dataclass(frozen=True)
class Comparison:
    component: str
    case: str
    max_abs: float
    max_rel: float  # max |nemo_lite - nemo| / max |nemo|: the error against the output's scale
    scale: float  # max |nemo|


RESULTS: list[Comparison] = []


def compare(component: str, case: str, nemo: Tensor, lite: Tensor) -> Comparison:
    """Record and return how far `lite` is from NeMo's `nemo` (same shape)."""
    assert nemo.shape == lite.shape, f"{component} {case}: {tuple(nemo.shape)} != {lite.shape}"
    reference = nemo.detach().double()
    diff = (lite.detach().double() - reference).abs()
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    max_abs = float(diff.max()) if diff.numel() else 0.0
    result = Comparison(component, case, max_abs, max_abs / scale if scale else 0.0, scale)
    RESULTS.append(result)
    return result
