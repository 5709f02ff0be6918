"""How the client shows what the server says: live on a terminal, lines on a pipe, or JSON."""

from __future__ import annotations

import json
import sys
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text


class Display(Protocol):
    def segment(self, text: str, is_final: bool, is_end_of_turn: bool) -> None: ...
    def error(self, code: str, message: str) -> None: ...
    def raw(self, message: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class JsonDisplay:
    """Every server message as one JSON line on stdout, for scripts."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout

    def segment(self, text: str, is_final: bool, is_end_of_turn: bool) -> None:
        pass

    def error(self, code: str, message: str) -> None:
        pass

    def raw(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message, ensure_ascii=False) + "\n")
        self._out.flush()

    def close(self) -> None:
        pass


class LineDisplay:
    """One line per final turn (`[n] text`), errors on stderr: for pipes and logs."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._turn = 0

    def segment(self, text: str, is_final: bool, is_end_of_turn: bool) -> None:
        if is_final:
            self._turn += 1
            self._out.write(f"[{self._turn}] {text}\n")
            self._out.flush()

    def error(self, code: str, message: str) -> None:
        self._err.write(f"server error {code}: {message}\n")

    def raw(self, message: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class LiveDisplay:
    """A terminal view: numbered final turns accumulate; the current tentative text is shown
    dimmed below them and replaced in place as it updates."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console()
        self._finals: list[str] = []
        self._tentative = ""
        self._live = Live(self._render(), console=self._console, auto_refresh=False)
        self._live.start()

    def _render(self) -> Text:
        view = Text()
        for n, text in enumerate(self._finals, start=1):
            view.append(f"[{n}] ", style="bold cyan")
            view.append(text + "\n")
        if self._tentative:
            view.append(f"[{len(self._finals) + 1}] ", style="dim cyan")
            view.append(self._tentative, style="dim")
        return view

    def segment(self, text: str, is_final: bool, is_end_of_turn: bool) -> None:
        if is_final:
            self._finals.append(text)
            self._tentative = ""
        else:
            self._tentative = text
        self._live.update(self._render(), refresh=True)

    def error(self, code: str, message: str) -> None:
        self._live.console.print(f"[red]server error {code}:[/red] {message}")

    def raw(self, message: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        self._live.stop()
