"""deploy/stt-server.service and deploy/stt-server.env: systemd accepts them, and they agree
with the NixOS module (same hardening, same defaults)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from tests.nix.nixtools import ROOT, Nix

UNIT = ROOT / "deploy" / "stt-server.service"
ENV_FILE = ROOT / "deploy" / "stt-server.env"
INSTALLED_BINARY = "/opt/stt-server/.venv/bin/stt-server"

# Directives that say what to run rather than how it is confined.
NOT_HARDENING = {"ExecStart", "EnvironmentFile", "Environment"}


def unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> directive -> values (one per line, in order)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def tokens(value: Any) -> list[str]:
    """A directive's value as systemd reads it, whether written in Nix or in a unit file."""
    if isinstance(value, bool):
        return ["yes" if value else "no"]
    if isinstance(value, list):
        return [token for item in value for token in tokens(item)]
    return str(value).split()


def installable_unit(tmp_path: Path) -> Path:
    """The unit with its ExecStart binary pointing at a stub that exists on this machine."""
    binary = tmp_path / "stt-server"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    text = UNIT.read_text()
    assert INSTALLED_BINARY in text
    unit = tmp_path / "stt-server.service"
    unit.write_text(text.replace(INSTALLED_BINARY, str(binary)))
    return unit


def verify(systemd_analyze: str, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        cwd=unit.parent,
    )


def test_systemd_verifies_unit_without_a_warning(systemd_analyze: str, tmp_path: Path) -> None:
    done = verify(systemd_analyze, installable_unit(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


def test_verify_catches_a_misspelt_directive(systemd_analyze: str, tmp_path: Path) -> None:
    unit = installable_unit(tmp_path)
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystm=strict"))
    done = verify(systemd_analyze, unit)
    assert "ProtectSystm" in done.stdout + done.stderr


def test_systemd_rates_exposure_ok(systemd_analyze: str, tmp_path: Path) -> None:
    unit = installable_unit(tmp_path)
    done = subprocess.run(
        [systemd_analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", done.stdout)
    assert level, done.stdout[-2000:]
    assert float(level.group(1)) <= 2.0
    assert level.group(2) == "OK"


def module_service(nix: Nix, device: str) -> dict[str, Any]:
    return nix.module(enable=True, device=device)["config"]["systemd"]["services"]["stt-server"]


def test_hardening_equals_the_nixos_modules_for_cuda(nix: Nix) -> None:
    service = unit_sections(UNIT.read_text())["Service"]
    from_unit = {key: tokens(values) for key, values in service.items() if key not in NOT_HARDENING}
    module = module_service(nix, "cuda")["serviceConfig"]
    from_module = {key: tokens(value) for key, value in module.items() if key not in NOT_HARDENING}
    assert from_unit == from_module


def test_environment_and_ordering_equal_the_nixos_modules(nix: Nix) -> None:
    sections = unit_sections(UNIT.read_text())
    module = module_service(nix, "cuda")
    unit_env = dict(item.split("=", 1) for item in sections["Service"]["Environment"])
    # The plain unit takes STT_DEVICE from its env file.
    assert unit_env == {k: v for k, v in module["environment"].items() if k != "STT_DEVICE"}
    assert sections["Unit"]["Wants"] == module["wants"]
    assert sections["Unit"]["After"] == module["after"]
    assert sections["Install"]["WantedBy"] == module["wantedBy"]


def env_file() -> dict[str, str]:
    settings: dict[str, str] = {}
    for raw in ENV_FILE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"env line without '=': {raw}"
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"bad variable name: {raw}"
            settings[key] = value
    return settings


def test_env_file_sets_every_variable_exec_start_uses() -> None:
    exec_start = unit_sections(UNIT.read_text())["Service"]["ExecStart"][0]
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", exec_start))
    assert used == set(env_file())


def test_env_file_defaults_equal_the_modules(nix: Nix) -> None:
    result = nix.module()["options"]
    settings = env_file()
    assert settings["STT_HOST"] == result["host"]["default"]
    assert settings["STT_PORT"] == str(result["port"]["default"])
    assert settings["STT_ENGINE"] == result["engine"]["default"]
    assert settings["STT_DEVICE"] == result["device"]["default"]
    assert settings["STT_ARGS"] == ""
