"""Running Debian's nix-instantiate and systemd-analyze for the tests in this directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


class NixEvalError(Exception):
    """nix-instantiate failed; the message is its stderr."""


def ensure_tool(command: str, package: str) -> str:
    """Path of `command`, installing Debian's `package` first when missing and we are root."""
    found = shutil.which(command)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
            check=True,
            env=env,
        )
        found = shutil.which(command)
    if found is None:
        pytest.fail(f"{command} is missing: install the Debian package {package}")
    return found


def nix_env() -> dict[str, str]:
    # Debian's nix.conf names a build-users group that need not exist; nothing is built here.
    return {**os.environ, "NIX_CONFIG": "build-users-group ="}


class Nix:
    """nix-instantiate without a store or network: parse files, evaluate expressions to JSON."""

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def parse(self, path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.executable, "--parse", str(path)],
            capture_output=True,
            text=True,
            env=nix_env(),
        )

    def eval(self, expr: str, **argstr: str) -> Any:
        cmd = [self.executable, "--readonly-mode", "--eval", "--strict", "--json", "-E", expr]
        for name, value in argstr.items():
            cmd += ["--argstr", name, value]
        done = subprocess.run(cmd, capture_output=True, text=True, env=nix_env(), cwd=ROOT)
        if done.returncode != 0:
            raise NixEvalError(done.stderr)
        return json.loads(done.stdout)

    def module(self, **settings: Any) -> dict[str, Any]:
        """nix/modules/stt-server.nix evaluated against fixtures/stubs.nix: its `options` and, for
        `settings` over the option defaults, its `config`."""
        expr = (
            f"{{ settings }}: import {FIXTURES / 'eval_module.nix'} "
            f"{{ module = {ROOT / 'nix' / 'modules' / 'stt-server.nix'}; inherit settings; }}"
        )
        return self.eval(expr, settings=json.dumps(settings))
