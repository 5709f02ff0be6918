"""Fixtures for the Nix and systemd checks. The tools are installed with apt-get when missing
and we are root (as scripts/setup.sh does); otherwise the fixtures fail naming the package."""

from __future__ import annotations

import pytest

from tests.nix.nixtools import Nix, ensure_tool


@pytest.fixture(scope="session")
def nix() -> Nix:
    return Nix(ensure_tool("nix-instantiate", "nix-bin"))


@pytest.fixture(scope="session")
def systemd_analyze() -> str:
    return ensure_tool("systemd-analyze", "systemd")
