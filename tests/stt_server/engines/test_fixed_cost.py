"""The fixed-cost stand-in engine: its cost spec, its timing and its deterministic text."""

from __future__ import annotations

import time

import numpy as np
import pytest

from stt_server.engines import ENGINES, EngineLoadError, load_engine
from stt_server.engines.fixed_cost import FixedCostEngine, parse_cost, words_for


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("50ms", (0.05, 0.0)),
        ("0ms", (0.0, 0.0)),
        ("20ms+5ms/s", (0.02, 0.005)),
        ("1.5ms", (0.0015, 0.0)),
    ],
)
def test_cost_spec(spec: str, expected: tuple[float, float]) -> None:
    assert parse_cost(spec) == pytest.approx(expected)


@pytest.mark.parametrize("spec", ["", "50", "fast", "50s", "-5ms", "50ms+10ms"])
def test_bad_cost_spec_is_a_load_error_with_advice(spec: str) -> None:
    with pytest.raises(EngineLoadError, match="--model 50ms"):
        parse_cost(spec)


def test_one_numbered_word_per_0_4_s_at_least_one() -> None:
    assert words_for(np.zeros(4 * 16000, np.float32)) == " ".join(f"w{i}" for i in range(1, 11))
    assert words_for(np.zeros(int(1.2 * 16000), np.float32)) == "w1 w2 w3"
    assert words_for(np.zeros(100, np.float32)) == "w1"


def test_registered_and_batch_costs_its_time() -> None:
    assert "fixed-cost" in ENGINES
    engine = load_engine("fixed-cost", "30ms+100ms/s", "cpu")
    assert isinstance(engine, FixedCostEngine)
    assert (engine.name, engine.model) == ("fixed-cost", "30ms+100ms/s")
    batch = [np.zeros(8000, np.float32), np.zeros(16000, np.float32)]  # 1.5 s of audio
    start = time.monotonic()
    texts = engine.transcribe(batch)
    assert time.monotonic() - start >= 0.03 + 0.15
    assert texts == ["w1", "w1 w2"]  # round(0.5 / 0.4) = 1, round(1.0 / 0.4) = 2 (half to even)


def test_default_cost() -> None:
    assert load_engine("fixed-cost", None, "cpu").model == "50ms"
