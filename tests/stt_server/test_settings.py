from __future__ import annotations

import pytest

from stt_server.cli import parse_settings
from stt_server.protocol import ErrorCode, ProtocolError
from stt_server.settings import SessionSettings


def test_defaults_match_the_design() -> None:
    s = SessionSettings()
    assert (s.speech_threshold, s.silence_threshold) == (0.5, 0.35)
    assert (s.small_gap, s.min_chunk, s.large_gap) == (0.3, 1.0, 1.5)
    assert (s.max_buffer, s.max_leading_silence, s.overlap) == (20.0, 3.0, 5.0)


def test_query_overrides_use_camel_case_names() -> None:
    s = SessionSettings().with_overrides(
        {"largeGap": "0.8", "sampleRate": "48000", "channels": "2"}
    )
    assert (s.large_gap, s.sample_rate, s.channels) == (0.8, 48000, 2)
    assert s.small_gap == 0.3


@pytest.mark.parametrize(
    "query",
    [
        {"largeGap": "soon"},
        {"largeGap": "-1"},
        {"smallGap": "2", "largeGap": "1"},
        {"speechThreshold": "0.3", "silenceThreshold": "0.4"},
        {"sampleRate": "96000"},
        {"channels": "0"},
        {"noSuchSetting": "1"},
    ],
)
def test_bad_overrides_are_invalid_config(query: dict[str, str]) -> None:
    with pytest.raises(ProtocolError) as info:
        SessionSettings().with_overrides(query)
    assert info.value.code is ErrorCode.INVALID_CONFIG


def test_cli_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STT_DEVICE", "cpu")
    monkeypatch.setenv("STT_LARGE_GAP", "2.5")
    monkeypatch.setenv("STT_PORT", "9999")
    s = parse_settings(["--engine", "whisper", "--model", "m", "--small-gap", "0.2", "--port", "1"])
    assert (s.engine, s.model, s.device, s.port) == ("whisper", "m", "cpu", 1)
    assert (s.session.small_gap, s.session.large_gap) == (0.2, 2.5)


def test_cli_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STT_DEVICE", "cpu")
    s = parse_settings([])
    assert (s.host, s.port, s.engine, s.model) == ("0.0.0.0", 15751, "auto", None)


def test_cli_rejects_inconsistent_session_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STT_DEVICE", "cpu")
    with pytest.raises(SystemExit):
        parse_settings(["--small-gap", "3", "--large-gap", "1"])


def test_limits_and_access_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STT_DEVICE", "cpu")
    monkeypatch.setenv("STT_IDLE_TIMEOUT", "12.5")
    monkeypatch.setenv("STT_API_KEY", "from-env")
    monkeypatch.setenv("STT_ALLOWED_ORIGINS", "https://a.example, http://localhost:15751")
    flags = "--max-sessions 7 --max-session-seconds 0 --send-timeout 3 --drain-timeout 9"
    s = parse_settings(flags.split())
    assert (s.max_sessions, s.idle_timeout, s.max_session_seconds) == (7, 12.5, 0.0)
    assert (s.send_timeout, s.drain_timeout) == (3.0, 9.0)
    assert s.api_key == "from-env"
    assert s.allowed_origins == ("https://a.example", "http://localhost:15751")
    assert parse_settings(["--api-key", "flag"]).api_key == "flag"


def test_access_is_open_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STT_DEVICE", "cpu")
    monkeypatch.delenv("STT_API_KEY", raising=False)
    monkeypatch.delenv("STT_ALLOWED_ORIGINS", raising=False)
    s = parse_settings([])
    assert (s.api_key, s.allowed_origins) == (None, ())
    assert (s.max_sessions, s.idle_timeout, s.send_timeout) == (100, 30.0, 10.0)


@pytest.mark.parametrize(
    "flags", [["--max-sessions", "0"], ["--idle-timeout", "-1"], ["--send-timeout", "-0.5"]]
)
def test_cli_rejects_impossible_limits(monkeypatch: pytest.MonkeyPatch, flags: list[str]) -> None:
    monkeypatch.setenv("STT_DEVICE", "cpu")
    with pytest.raises(SystemExit):
        parse_settings(flags)


def test_help_lists_every_flag_with_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    """`stt-server --help` exits 0 (a `%` in a description once crashed argparse's formatter)."""
    with pytest.raises(SystemExit) as exited:
        parse_settings(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag, variable in [
        ("--max-backlog", "STT_MAX_BACKLOG"),
        ("--whisper-padding", "STT_WHISPER_PADDING"),
        ("--overlap", "STT_OVERLAP"),
    ]:
        assert flag in text
        assert variable in text
    assert "90% busy" in text
