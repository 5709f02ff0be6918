"""flake.nix, the overlay and the dev shells: every .nix file parses, and the flake evaluated
against a stub nixpkgs (fixtures/stub-nixpkgs.nix) has the outputs the README lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.nix.nixtools import FIXTURES, ROOT, Nix

NIX_FILES = sorted([ROOT / "flake.nix", *(ROOT / "nix").rglob("*.nix"), *FIXTURES.rglob("*.nix")])


def test_expected_nix_files_exist() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in NIX_FILES}
    assert {
        "flake.nix",
        "nix/overlay.nix",
        "nix/development.nix",
        "nix/modules/stt-server.nix",
        "nix/packages/stt-server.nix",
        "nix/packages/strops.nix",
        "nix/packages/python-deps.nix",
        "nix/packages/image.nix",
    } <= names


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_nix_file_parses(nix: Nix, path: Path) -> None:
    done = nix.parse(path)
    assert done.returncode == 0, done.stderr


def test_parse_check_rejects_broken_nix(nix: Nix, tmp_path: Path) -> None:
    broken = tmp_path / "broken.nix"
    broken.write_text("{ a = ; }\n")
    assert nix.parse(broken).returncode != 0


def flake(nix: Nix, body: str) -> Any:
    """Evaluate `body` with `flake` (flake.nix) and `out` (its outputs over the stub nixpkgs)."""
    stubs = FIXTURES / "stubs.nix"
    return nix.eval(
        f"""
        let
          flake = import {ROOT / "flake.nix"};
          nixpkgs = {{ outPath = {FIXTURES / "stub-nixpkgs.nix"}; lib = (import {stubs}).lib; }};
          out = flake.outputs {{ self = out; inherit nixpkgs; }};
        in {body}
        """
    )


def test_flake_outputs(nix: Nix) -> None:
    result = flake(
        nix,
        """{
          top = builtins.attrNames out;
          packages = builtins.mapAttrs (_: builtins.attrNames) out.packages;
          devShells = builtins.mapAttrs (_: builtins.attrNames) out.devShells;
          overlays = builtins.attrNames out.overlays;
          modules = builtins.attrNames out.nixosModules;
          nixpkgs = flake.inputs.nixpkgs.url;
        }""",
    )
    assert result["top"] == ["devShells", "nixosModules", "overlays", "packages"]
    assert result["packages"] == {
        "aarch64-linux": ["default", "image", "strops", "stt-server"],
        "x86_64-linux": [
            "default",
            "image",
            "image-cuda",
            "strops",
            "stt-server",
            "stt-server-cuda",
        ],
    }
    assert result["devShells"] == {
        "aarch64-linux": ["default", "strops"],
        "x86_64-linux": ["default", "strops"],
    }
    assert result["overlays"] == ["default"]
    assert result["modules"] == ["default", "stt-server"]
    assert result["nixpkgs"].startswith("github:NixOS/nixpkgs/")


def test_packages_come_from_the_overlay(nix: Nix) -> None:
    result = flake(
        nix,
        """builtins.mapAttrs (_: p: { inherit (p) calledPackage pkgsConfig; })
          out.packages.x86_64-linux""",
    )
    stt_server = str(ROOT / "nix" / "packages" / "stt-server.nix")
    assert result["stt-server"] == {"calledPackage": stt_server, "pkgsConfig": {}}
    assert result["default"] == result["stt-server"]
    assert result["stt-server-cuda"] == {
        "calledPackage": stt_server,
        "pkgsConfig": {"allowUnfree": True, "cudaSupport": True},
    }
    assert result["strops"]["calledPackage"] == str(ROOT / "nix" / "packages" / "strops.nix")


def test_images_are_called_from_the_same_package_sets(nix: Nix) -> None:
    result = flake(
        nix,
        """builtins.mapAttrs (_: p: { inherit (p) calledPackage args pkgsConfig; }) {
          inherit (out.packages.x86_64-linux) image image-cuda;
        }""",
    )
    image = str(ROOT / "nix" / "packages" / "image.nix")
    assert result["image"] == {"calledPackage": image, "args": {}, "pkgsConfig": {}}
    assert result["image-cuda"] == {
        "calledPackage": image,
        "args": {"name": "stt-server-cuda"},
        "pkgsConfig": {"allowUnfree": True, "cudaSupport": True},
    }


def test_nixos_module_output_is_the_module(nix: Nix) -> None:
    stubs = FIXTURES / "stubs.nix"
    result = flake(
        nix,
        f"""
        let
          evaluated = out.nixosModules.default {{
            inherit (import {stubs}) lib utils;
            pkgs = {{ stt-server = "stt-server"; }};
            config = {{ }};
          }};
        in builtins.attrNames evaluated.options.services.stt-server
        """,
    )
    assert "openFirewall" in result
    assert "device" in result


def test_overlay_adds_stt_server_and_strops_keeping_other_extensions(nix: Nix) -> None:
    result = nix.eval(
        f"""
        let
          overlay = import {ROOT / "nix" / "overlay.nix"};
          callPackage = path: args: toString path;
          prev = {{ pythonPackagesExtensions = [ "an earlier extension" ]; }};
          added = overlay {{ inherit callPackage; }} prev;
          extension = builtins.elemAt added.pythonPackagesExtensions 1;
        in {{
          names = builtins.attrNames added;
          kept = builtins.head added.pythonPackagesExtensions;
          count = builtins.length added.pythonPackagesExtensions;
          stt = added.stt-server;
          python = extension {{ inherit callPackage; }} {{ }};
        }}
        """
    )
    assert result["names"] == ["pythonPackagesExtensions", "stt-server"]
    assert result["kept"] == "an earlier extension"
    assert result["count"] == 2
    assert result["stt"] == str(ROOT / "nix" / "packages" / "stt-server.nix")
    assert result["python"] == {"strops": str(ROOT / "nix" / "packages" / "strops.nix")}


def test_dev_shells(nix: Nix) -> None:
    result = flake(
        nix,
        """{
          default = out.devShells.x86_64-linux.default.shell;
          strops = out.devShells.x86_64-linux.strops.shell.packages;
        }""",
    )
    default = result["default"]
    env = default["packages"][0]["pythonEnvWith"]
    for name in ("torch", "transformers", "fastapi", "pytest", "hypothesis"):
        assert f"python3Packages.{name}" in env
    assert "uvicorn-standard-extra" in env
    for tool in ("pkgs.ruff", "pkgs.basedpyright", "pkgs.maturin", "pkgs.cargo"):
        assert tool in default["packages"]
    for tool in ("pkgs.cargo", "pkgs.rustc", "pkgs.clippy", "pkgs.maturin", "pkgs.python3"):
        assert tool in result["strops"]
    assert default["PYO3_USE_ABI3_FORWARD_COMPATIBILITY"] == "1"


def test_default_shell_has_strops_exactly_when_a_lock_exists(nix: Nix) -> None:
    # strops-rs/Cargo.lock is untracked: cargo writes it on hosts that reach crates.io.
    shell = flake(nix, "out.devShells.x86_64-linux.default.shell")
    strops = {"calledPackage": str(ROOT / "nix" / "packages" / "strops.nix")}
    in_env = [p for p in shell["packages"][0]["pythonEnvWith"] if isinstance(p, dict)]
    has_strops = any(p.get("calledPackage") == strops["calledPackage"] for p in in_env)
    if (ROOT / "strops-rs" / "Cargo.lock").exists():
        assert has_strops
        assert shell["shellHook"] == ""
    else:
        assert not has_strops
        assert "no strops-rs/Cargo.lock" in shell["shellHook"]
