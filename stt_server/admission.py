"""The open sessions: who may start one now (limits, engine load, drain), and the drain itself."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator

from stt_server.errors import ErrorCode, ProtocolError
from stt_server.session.session import InputEnd, Session

# Past this share of the engines' capacity, the wait for the engine grows steeply (as
# 1 / (1 - load)) and a moment when many sessions finish a turn at once makes finals late.
CAPACITY_CEILING = 0.9
# How far back the engine time per open session is measured: several turns of each session.
RATE_WINDOW = 15.0
# Session-seconds in the window below which that rate is too young to refuse anyone on.
MIN_HISTORY = 5.0


class Sessions:
    """Admission against the session limit and the engines' load, and the drain on shutdown.

    Two rules keep the open sessions' finals on time, both off with `max_backlog` 0. The
    reactive one: past `max_backlog` seconds of engine work queued now (`backlog`), finals are
    already late. The predictive one: the open sessions took so much engine time lately
    (`busy(window)`: engine seconds per worker within the last `window` seconds) that one more
    session at the same rate would take the engines past `CAPACITY_CEILING`, and the server
    would fall behind. Either way a new session is refused, so a load balancer sends it to
    another replica. The runtime sets `backlog` and `busy` once it is loaded.
    """

    def __init__(
        self,
        limit: int,
        *,
        max_backlog: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.max_backlog = max_backlog
        self.backlog: Callable[[], float] = lambda: 0.0
        self.busy: Callable[[float], float] = lambda window: 0.0
        self.draining = False
        self._clock = clock
        self._open: dict[Session, float] = {}  # when each opened
        self._closed: deque[tuple[float, float]] = deque()  # (opened, closed), by close
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
        if not self.max_backlog:
            return None
        if (backlog := self.backlog()) > self.max_backlog:
            return ProtocolError(
                ErrorCode.TOO_MANY_SESSIONS,
                f"the server is at capacity (engine backlog {backlog:.1f} s); try another replica",
            )
        if (load := self.load_with_one_more()) is not None and load > CAPACITY_CEILING:
            return ProtocolError(
                ErrorCode.TOO_MANY_SESSIONS,
                f"the server is at capacity (one more session would keep the engines {load:.0%} "
                "busy); try another replica",
            )
        return None

    def load_with_one_more(self) -> float | None:
        """The share of the engines' capacity the open sessions and one more would take, each
        at the rate the sessions of the last `RATE_WINDOW` seconds took engine time; None while
        no session is open or the rate rests on under `MIN_HISTORY` session-seconds."""
        if not self._open:
            return None
        now = self._clock()
        seconds = self._session_seconds(now)
        if seconds < MIN_HISTORY:
            return None
        # Per session-second, not per open session: one that opened a moment ago has hardly
        # been served yet and would water the rate down.
        return (len(self._open) + 1) * self.busy(RATE_WINDOW) / seconds

    def _session_seconds(self, now: float) -> float:
        """How long sessions were open in the last `RATE_WINDOW` seconds, summed over sessions."""
        since = self._forget_closed(now)
        spans = [*self._closed, *((opened, now) for opened in self._open.values())]
        return sum(max(0.0, closed - max(opened, since)) for opened, closed in spans)

    def _forget_closed(self, now: float) -> float:
        """Drop the sessions that closed before the window; returns where the window starts."""
        since = now - RATE_WINDOW
        while self._closed and self._closed[0][1] <= since:
            self._closed.popleft()
        return since

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
        self._open[session] = self._clock()
        self._idle.clear()
        try:
            yield
        finally:
            closed = self._clock()
            self._closed.append((self._open.pop(session), closed))
            self._forget_closed(closed)
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
