"""Access: the API key in each form, and browser Origins."""

from __future__ import annotations

import httpx
import pytest

from tests.stt_server.limited import (
    limited_server,
    session_outcome,
)

# --- access: API key, allowed origins ------------------------------------------------------------

KEY = "s3cret-key"


@pytest.mark.parametrize(
    ("query", "headers", "outcome"),
    [
        ("", {"Authorization": f"Bearer {KEY}"}, ([], 1000)),
        ("", {"Authorization": f"bearer {KEY}"}, ([], 1000)),
        ("", {"Authorization": f"Token {KEY}"}, ([], 1000)),  # Deepgram's SDKs send this form
        (f"?token={KEY}", None, ([], 1000)),
        # The token is not taken for a session setting; real settings still apply.
        (f"?token={KEY}&largeGap=2.0", None, ([], 1000)),
        (f"?token={KEY}&largeGap=never", None, (["INVALID_CONFIG"], 1008)),
        ("", None, (["UNAUTHORIZED"], 1008)),
        ("", {"Authorization": "Bearer wrong"}, (["UNAUTHORIZED"], 1008)),
        ("", {"Authorization": f"Basic {KEY}"}, (["UNAUTHORIZED"], 1008)),
        ("?token=wrong", None, (["UNAUTHORIZED"], 1008)),
        (f"?token={KEY}x", None, (["UNAUTHORIZED"], 1008)),
    ],
)
async def test_api_key(
    query: str, headers: dict[str, str] | None, outcome: tuple[list[str], int]
) -> None:
    with limited_server(api_key=KEY) as address:
        assert await session_outcome(address, query, headers) == outcome
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{address}/health")).status_code == 200


async def test_without_a_key_any_client_may_connect() -> None:
    with limited_server() as address:
        assert await session_outcome(address) == ([], 1000)
        assert await session_outcome(address, "?token=anything") == ([], 1000)


@pytest.mark.parametrize(
    ("origin", "outcome"),
    [
        ("https://app.example.com", ([], 1000)),
        ("http://localhost:15751", ([], 1000)),
        (None, ([], 1000)),  # not a browser
        ("https://evil.example.net", (["ORIGIN_NOT_ALLOWED"], 1008)),
        ("https://app.example.com.evil.net", (["ORIGIN_NOT_ALLOWED"], 1008)),
    ],
)
async def test_allowed_origins(origin: str | None, outcome: tuple[list[str], int]) -> None:
    origins = ("https://app.example.com", "http://localhost:15751")
    with limited_server(allowed_origins=origins) as address:
        assert await session_outcome(address, origin=origin) == outcome
