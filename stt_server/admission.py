"""The open sessions: who may start one now (limits, backlog, drain), and the drain itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

from stt_server.errors import ErrorCode, ProtocolError
from stt_server.session.session import InputEnd, Session


class Sessions:
    """Admission against the session limit and the engine's backlog, and the drain on shutdown.

    `backlog` (seconds of engine work queued now) comes from the runtime once it is loaded: past
    `max_backlog`, a new session would get its finals late, so it is refused and sent elsewhere.
    """

    def __init__(self, limit: int, *, max_backlog: float = 0.0) -> None:
        self.limit = limit
        self.max_backlog = max_backlog
        self.backlog: Callable[[], float] = lambda: 0.0
        self.draining = False
        self._open: set[Session] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._open)

    def refusal(self) -> ProtocolError | None:
        """Why a new session cannot start now, if it cannot."""
        if self.draining:
            return ProtocolError(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
        if len(self._open) >= self.limit:
            return ProtocolError(
                ErrorCode.TOO_MANY_SESSIONS, f"the server is at its limit of {self.limit} sessions"
            )
        if self.max_backlog and (backlog := self.backlog()) > self.max_backlog:
            return ProtocolError(
                ErrorCode.TOO_MANY_SESSIONS,
                f"the server is at capacity (engine backlog {backlog:.1f} s); try another replica",
            )
        return None

    def readiness(self) -> str:
        """`ready`, or why not (`draining`, `full`, `busy`): what /ready reports."""
        refusal = self.refusal()
        if refusal is None:
            return "ready"
        if refusal.code is ErrorCode.SHUTTING_DOWN:
            return "draining"
        return "full" if len(self._open) >= self.limit else "busy"

    @contextlib.contextmanager
    def hold(self, session: Session) -> Iterator[None]:
        self._open.add(session)
        self._idle.clear()
        try:
            yield
        finally:
            self._open.discard(session)
            if not self._open:
                self._idle.set()

    async def drain(self, seconds: float) -> bool:
        """Refuse new sessions and have every open one finish its input and close (1001);
        True when all closed within `seconds`."""
        self.draining = True
        for session in list(self._open):
            session.stop(InputEnd.SHUTDOWN)
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
