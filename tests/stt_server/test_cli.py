"""The two entry points as real processes: start-up, health, and start-up failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, server_process

STT_SERVER = str(Path(sys.executable).with_name("stt-server"))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "STT_DEVICE": "cpu"}
    return subprocess.run(
        [STT_SERVER, *args, "--port", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_server_py_starts_and_reports_health(whisper_model_dir: Path) -> None:
    command = [sys.executable, "stt_server/server.py", "--engine", "whisper"]
    with server_process(*command, "--model", str(whisper_model_dir)) as address:
        body = httpx.get(f"http://{address}/health").json()
    assert body == {
        "status": "healthy",
        "engine": "whisper",
        "model": str(whisper_model_dir),
        "device": "cpu",
        "sessions": 0,
    }


@pytest.mark.parametrize("model", ["/nonexistent/whisper-base", None])
def test_missing_whisper_model_exits_with_advice(model: str | None) -> None:
    args = ["--engine", "whisper"] + (["--model", model] if model else [])
    result = run_cli(*args)
    assert result.returncode == 2
    assert "cannot start" in result.stderr
    assert "stt_server.engines.whisper_assets" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_canary_weights_exit_with_advice(tmp_path: Path) -> None:
    result = run_cli("--engine", "canary-qwen", "--model", str(tmp_path / "no-checkpoint"))
    assert result.returncode == 2
    assert "cannot load Canary-Qwen weights" in result.stderr
    for advice in ("--model /path/to/checkpoint", "HF_HOME", "--engine whisper"):
        assert advice in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_hub_id_offline_exits_with_advice() -> None:
    result = run_cli("--model", "nobody/no-such-model")
    assert result.returncode == 2
    assert "cannot load Canary-Qwen weights from 'nobody/no-such-model'" in result.stderr
