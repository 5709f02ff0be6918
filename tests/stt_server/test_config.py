from __future__ import annotations

import pytest

from stt_server.cli import parse_settings
from stt_server.config import SessionSettings
from stt_server.protocol import ErrorCode, ProtocolError


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
    assert (s.host, s.port, s.engine, s.model) == ("0.0.0.0", 15751, "canary-qwen", None)


def test_cli_rejects_inconsistent_session_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STT_DEVICE", "cpu")
    with pytest.raises(SystemExit):
        parse_settings(["--small-gap", "3", "--large-gap", "1"])
