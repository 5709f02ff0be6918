from __future__ import annotations

from stt_server.files.subtitles import srt, vtt
from stt_server.files.transcribe import Segment

SEGMENTS = [Segment(0.5, 2.25, "Hello there."), Segment(3661.0, 3662.0015, "An hour later.")]


def test_srt() -> None:
    assert srt(SEGMENTS) == (
        "1\n00:00:00,500 --> 00:00:02,250\nHello there.\n"
        "\n"
        "2\n01:01:01,000 --> 01:01:02,002\nAn hour later.\n"
    )


def test_vtt() -> None:
    assert vtt(SEGMENTS) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.500 --> 00:00:02.250\nHello there.\n"
        "\n"
        "01:01:01.000 --> 01:01:02.002\nAn hour later.\n"
    )


def test_no_segments() -> None:
    assert srt([]) == ""
    assert vtt([]) == "WEBVTT\n"
