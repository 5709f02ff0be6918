"""What the client shows for a sequence of server messages."""

from __future__ import annotations

import io
import json

from rich.console import Console

from stt_server.client.display import JsonDisplay, LineDisplay, LiveDisplay


def feed(display: LiveDisplay | LineDisplay | JsonDisplay) -> None:
    for text, final in [("hello", False), ("hello there", False), ("Hello there.", True)]:
        message = {"text": text, "isFinal": final, "isEndOfTurn": final}
        display.raw(message)
        display.segment(text, final, final)
    display.raw({"text": "and", "isFinal": False, "isEndOfTurn": False})
    display.segment("and", False, False)


def test_line_display_prints_numbered_finals_only() -> None:
    out, err = io.StringIO(), io.StringIO()
    display = LineDisplay(out, err)
    feed(display)
    display.error("INVALID_JSON", "message is not valid JSON")
    assert out.getvalue() == "[1] Hello there.\n"
    assert err.getvalue() == "server error INVALID_JSON: message is not valid JSON\n"


def test_json_display_prints_every_message() -> None:
    out = io.StringIO()
    feed(JsonDisplay(out))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [m["text"] for m in lines] == ["hello", "hello there", "Hello there.", "and"]


def test_live_display_replaces_tentative_text_in_place() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=80, color_system="standard")
    display = LiveDisplay(console)
    display.segment("hello", False, False)
    display.segment("hello there", False, False)
    display.segment("Hello there.", True, True)
    display.segment("and then", False, False)
    rendered = display._render()  # pyright: ignore[reportPrivateUsage]
    display.close()
    assert rendered.plain == "[1] Hello there.\n[2] and then"
    # The tentative part is dimmed, the final is not.
    dim_spans = [span for span in rendered.spans if "dim" in str(span.style)]
    tentative_start = rendered.plain.index("and then")
    assert any(span.start <= tentative_start < span.end for span in dim_spans)
    final_start = rendered.plain.index("Hello there.")
    final_end = final_start + len("Hello there.")
    assert not any(span.start < final_end and span.end > final_start for span in dim_spans)
    # The terminal saw the updates (escape sequences redraw the same lines).
    assert "hello there" in buffer.getvalue()
