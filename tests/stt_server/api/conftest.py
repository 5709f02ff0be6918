"""A real server (uvicorn, whisper-base) for the OpenAI-compatible API tests, with an API key
and small upload limits so the limit errors are cheap to provoke."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stt_server.app import create_app
from stt_server.engines.whisper import WhisperEngine
from stt_server.settings import ServerSettings
from tests.conftest import serve
from tests.stt_server.speech import PAUSES, SENTENCES, Recording, make_recording

API_KEY = "sk-test"
MAX_UPLOAD_BYTES = 3 << 20
MAX_UPLOAD_SECONDS = 60.0


@pytest.fixture(scope="session")
def openai_server(whisper_engine: WhisperEngine) -> Iterator[str]:
    settings = ServerSettings(
        engine="whisper",
        device="cpu",
        api_key=API_KEY,
        max_upload_bytes=MAX_UPLOAD_BYTES,
        max_upload_seconds=MAX_UPLOAD_SECONDS,
    )
    with serve(create_app(settings, engine=whisper_engine)) as address:
        yield address


@pytest.fixture(scope="session")
def short_recording() -> Recording:
    """Two sentences (about 7 s): cheap enough to transcribe in every format."""
    return make_recording(SENTENCES[:2], (0.5, 1.0))


@pytest.fixture(scope="session")
def full_recording() -> Recording:
    return make_recording(SENTENCES, PAUSES)
