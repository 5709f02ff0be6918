"""Fixtures of the server tests."""

from __future__ import annotations

import pytest

from tests.stt_server.speech import Recording, make_recording


@pytest.fixture(scope="module")
def speech() -> Recording:
    """One sentence: the turn every limit test opens (and a limit then finishes)."""
    return make_recording(("Open the window please, then close the door behind you.",), (0.5,))
