"""Who may connect: the API key (in any form a client can send it) and browser Origins."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from stt_server.errors import ErrorCode, ProtocolError

# Schemes that carry the bare key: Bearer (OpenAI, ours) and Token (Deepgram's SDKs).
_SCHEMES = frozenset({"bearer", "token"})
# A browser cannot set headers on a WebSocket; Deepgram's way is the subprotocol pair
# `Sec-WebSocket-Protocol: token, KEY`, which the server answers by accepting `token`.
TOKEN_SUBPROTOCOL = "token"


def offered_keys(headers: Mapping[str, str], query: Mapping[str, str]) -> list[str]:
    """Every key the request carries: `Authorization: Bearer|Token KEY`, `?token=KEY`, or the
    `token, KEY` subprotocol pair."""
    offered: list[str] = []
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() in _SCHEMES:
            offered.append(credentials.strip())
    if (token := query.get("token")) is not None:
        offered.append(token)
    protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    if len(protocols) == 2 and protocols[0].lower() == TOKEN_SUBPROTOCOL:
        offered.append(protocols[1])
    return offered


def authorized(api_key: str | None, offered: list[str]) -> bool:
    """Compared in constant time, so response timing does not reveal how much of a guess
    matched."""
    if api_key is None:
        return True
    expected = api_key.encode()
    return any(hmac.compare_digest(expected, key.encode()) for key in offered)


def access_error(
    api_key: str | None,
    allowed_origins: tuple[str, ...],
    headers: Mapping[str, str],
    query: Mapping[str, str],
) -> ProtocolError | None:
    """Why this request may not use the server, if it may not."""
    origin = headers.get("origin")
    # Browsers always send Origin (and scripts cannot change it); other clients need not send
    # one and could claim any, so the list only guards against foreign web pages.
    if allowed_origins and origin is not None and origin not in allowed_origins:
        return ProtocolError(ErrorCode.ORIGIN_NOT_ALLOWED, f"origin {origin!r} is not allowed")
    if not authorized(api_key, offered_keys(headers, query)):
        return ProtocolError(ErrorCode.UNAUTHORIZED, "missing or wrong API key")
    return None
