from __future__ import annotations

from pathlib import Path

import pytest

from nemo_lite import CanaryQwen
from tests.support.tiny_canary import write_tiny_checkpoint


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "canary", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint: Path) -> CanaryQwen:
    return CanaryQwen.from_pretrained(tiny_checkpoint, device="cpu", dtype=None)
