"""services.stt-server: option defaults against README.md, and the unit it generates.

The module is evaluated by nix-instantiate with small stand-ins for nixpkgs' lib
(fixtures/stubs.nix), since nixpkgs itself is not reachable offline.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import pytest

from tests.nix.nixtools import ROOT, Nix


def evaluate(nix: Nix, **settings: Any) -> dict[str, Any]:
    return nix.module(**settings)


def service(nix: Nix, **settings: Any) -> dict[str, Any]:
    return evaluate(nix, enable=True, **settings)["config"]["systemd"]["services"]["stt-server"]


def nix_literal(value: Any) -> str:
    """A JSON value written the way the README table writes Nix defaults."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if value == []:
        return "[ ]"
    if value == {}:
        return "{ }"
    raise AssertionError(f"no README form for default {value!r}")


def readme_option_table() -> dict[str, str]:
    """option name -> default, from the table after 'Options of `services.stt-server`'."""
    text = (ROOT / "README.md").read_text()
    start = text.index("Options of `services.stt-server`")
    rows: dict[str, str] = {}
    in_table = False
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if in_table:
                break
            continue
        in_table = True
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "option" or set(cells[0]) <= {"-", " "}:
            continue
        name = re.fullmatch(r"`([A-Za-z]+)`", cells[0])
        default = re.fullmatch(r"`(.*)`", cells[1])
        assert name, f"README option row without a `name`: {line}"
        assert default, f"README option row without a `default`: {line}"
        rows[name.group(1)] = default.group(1)
    return rows


def test_readme_documents_every_option_with_its_default(nix: Nix) -> None:
    options = evaluate(nix)["options"]
    from_module = {
        name: option["defaultText"] or nix_literal(option["default"])
        for name, option in options.items()
    }
    assert readme_option_table() == from_module


def test_options_and_defaults_asked_for(nix: Nix) -> None:
    options = evaluate(nix)["options"]
    defaults = {name: option["default"] for name, option in options.items()}
    assert defaults == {
        "enable": False,
        "package": "/nix/store/stt-server",  # the stub pkgs.stt-server
        "host": "0.0.0.0",
        "port": 15751,
        "device": "cuda",
        "engine": "canary-qwen",
        "model": None,
        "openFirewall": False,
        "extraArgs": [],
        "environment": {},
    }
    assert options["device"]["type"] == {"enum": ["cuda", "cpu"]}
    assert options["engine"]["type"] == {"enum": ["canary-qwen", "whisper"]}
    assert options["port"]["type"] == "port"
    assert options["model"]["type"] == {"nullOr": "str"}
    assert options["package"]["defaultText"] == "pkgs.stt-server"


def test_disabled_service_configures_nothing(nix: Nix) -> None:
    assert evaluate(nix)["config"] == {}


def test_exec_start_defaults(nix: Nix) -> None:
    argv = shlex.split(service(nix)["serviceConfig"]["ExecStart"])
    assert argv == [
        "/nix/store/stt-server/bin/stt-server",
        *["--host", "0.0.0.0", "--port", "15751"],
        *["--engine", "canary-qwen", "--device", "cuda"],
    ]


def test_exec_start_carries_every_setting(nix: Nix) -> None:
    unit = service(
        nix,
        host="127.0.0.1",
        port=9000,
        engine="whisper",
        device="cpu",
        model="/srv/models/whisper base",
        extraArgs=["--log-level", "debug"],
    )
    argv = shlex.split(unit["serviceConfig"]["ExecStart"])
    assert argv == [
        "/nix/store/stt-server/bin/stt-server",
        *["--host", "127.0.0.1", "--port", "9000", "--engine", "whisper", "--device", "cpu"],
        *["--model", "/srv/models/whisper base", "--log-level", "debug"],
    ]
    assert unit["environment"]["STT_DEVICE"] == "cpu"


def test_model_weights_cached_under_var_cache(nix: Nix) -> None:
    unit = service(nix)
    config = unit["serviceConfig"]
    assert config["DynamicUser"] is True
    assert config["CacheDirectory"] == "stt-server"
    assert config["Restart"] == "on-failure"
    env = unit["environment"]
    for name in ("HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "NUMBA_CACHE_DIR"):
        assert env[name].startswith("/var/cache/stt-server"), name


def test_environment_option_adds_and_overrides(nix: Nix) -> None:
    env = service(nix, environment={"HF_HOME": "/srv/hf", "HF_HUB_OFFLINE": "1"})["environment"]
    assert env["HF_HOME"] == "/srv/hf"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["XDG_CACHE_HOME"] == "/var/cache/stt-server"


def test_cpu_gets_private_devices(nix: Nix) -> None:
    config = service(nix, device="cpu")["serviceConfig"]
    assert config["PrivateDevices"] is True
    assert "DeviceAllow" not in config


def test_cuda_allows_only_nvidia_devices(nix: Nix) -> None:
    config = service(nix, device="cuda")["serviceConfig"]
    assert config["PrivateDevices"] is False
    assert config["DevicePolicy"] == "closed"
    assert config["DeviceAllow"] == [
        "char-nvidia-frontend rw",
        "char-nvidia-uvm rw",
        "char-nvidia-caps rw",
    ]


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_hardening_present(nix: Nix, device: str) -> None:
    config = service(nix, device=device)["serviceConfig"]
    assert config["ProtectSystem"] == "strict"
    assert config["RestrictAddressFamilies"] == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert config["SystemCallArchitectures"] == "native"
    for flag in (
        "PrivateTmp",
        "NoNewPrivileges",
        "ProtectHome",
        "ProtectKernelModules",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "RestrictSUIDSGID",
        "LockPersonality",
    ):
        assert config[flag] is True, flag
    assert config["CapabilityBoundingSet"] == ""


@pytest.mark.parametrize("open_firewall", [True, False])
def test_open_firewall(nix: Nix, open_firewall: bool) -> None:
    config = evaluate(nix, enable=True, port=8123, openFirewall=open_firewall)["config"]
    ports = config["networking"]["firewall"]["allowedTCPPorts"]
    assert ports == ([8123] if open_firewall else [])
