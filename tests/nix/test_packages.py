"""nix/packages: the Python dependency list follows pyproject.toml, and the stt-server and strops
derivations (evaluated against fixtures/stubs.nix) are put together as the README says."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from stt_server.settings import ServerSettings
from tests.nix.nixtools import FIXTURES, ROOT, Nix, NixEvalError

PACKAGES = ROOT / "nix" / "packages"


def requirement(spec: str) -> tuple[str, list[str]]:
    """PEP 503 normalised name and extras of a requirement like 'uvicorn[standard]>=0.29'."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", spec)
    assert match, spec
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    extras = [extra.strip() for extra in (match.group(2) or "").split(",") if extra.strip()]
    return name, extras


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def python_deps(nix: Nix) -> dict[str, Any]:
    return nix.eval(f"import {PACKAGES / 'python-deps.nix'}")


def test_runtime_dependencies_follow_pyproject(nix: Nix) -> None:
    wanted = [requirement(spec) for spec in pyproject()["project"]["dependencies"]]
    deps = python_deps(nix)
    packaged = deps["runtime"] + deps["runtimeNotInNixpkgs"]
    assert sorted(packaged) == sorted(name for name, _ in wanted)
    assert not set(deps["runtime"]) & set(deps["runtimeNotInNixpkgs"])
    assert deps["extras"] == {name: extras for name, extras in wanted if extras}


def test_test_dependencies_follow_pyproject(nix: Nix) -> None:
    test_extra = pyproject()["project"]["optional-dependencies"]["test"]
    wanted = {requirement(spec)[0] for spec in test_extra}
    deps = python_deps(nix)
    assert set(deps["test"]) | set(deps["notInNixpkgs"]) == wanted
    assert not set(deps["test"]) & set(deps["notInNixpkgs"])


def test_requirement_parser() -> None:
    assert requirement("uvicorn[standard]>=0.29") == ("uvicorn", ["standard"])
    assert requirement("huggingface_hub>=0.23") == ("huggingface-hub", [])


def stt_server(nix: Nix) -> dict[str, Any]:
    return nix.eval(
        f"""
        let stubs = import {FIXTURES / "stubs.nix"};
        in import {PACKAGES / "stt-server.nix"} {{
          inherit (stubs) lib python3Packages;
        }}
        """
    )


def test_stt_server_package(nix: Nix) -> None:
    package = stt_server(nix)
    runtime = python_deps(nix)["runtime"]
    assert sorted(package["dependencies"]) == sorted(
        [f"python3Packages.{name}" for name in runtime]
        + ["uvicorn-standard-extra", "python3Packages.strops"]
    )
    assert package["pname"] == "stt-server"
    assert package["version"] == pyproject()["project"]["version"]
    assert package["pythonImportsCheck"] == ["stt_server", "nemo_lite", "strops"]
    assert package["meta"]["mainProgram"] == "stt-server"
    sources = {Path(path).relative_to(ROOT).as_posix() for path in package["src"]["fileset"]}
    assert {"pyproject.toml", "stt_server", "nemo_lite"} <= sources
    # The programs the package installs are pyproject's console scripts.
    assert set(pyproject()["project"]["scripts"]) == {"stt-server", "stt-client"}


def strops(nix: Nix, lock: Path) -> dict[str, Any]:
    return nix.eval(
        f"""
        let stubs = import {FIXTURES / "stubs.nix"};
        in import {PACKAGES / "strops.nix"} {{
          inherit (stubs) lib rustPlatform;
          inherit (stubs.python3Packages) buildPythonPackage;
          cargo = "cargo";
          rustc = "rustc";
          cargoLockFile = {lock};
        }}
        """
    )


def test_strops_package_vendors_crates_from_the_given_lock(nix: Nix, tmp_path: Path) -> None:
    lock = tmp_path / "Cargo.lock"
    lock.write_text("version = 3\n")
    package = strops(nix, lock)
    assert package["cargoDeps"] == {"importedLock": str(lock)}
    # The lock is copied into the store and from there into the source tree.
    copy = r"cp /nix/store/[0-9a-z]{32}-Cargo\.lock Cargo\.lock\s*"
    assert re.fullmatch(copy, package["postPatch"])
    assert package["nativeBuildInputs"] == ["cargoSetupHook", "maturinBuildHook", "cargo", "rustc"]
    assert package["pyproject"] is True
    assert package["env"]["PYO3_USE_ABI3_FORWARD_COMPATIBILITY"] == "1"
    assert package["src"]["root"] == str(ROOT / "strops-rs")
    assert package["pythonImportsCheck"] == ["strops"]


def test_strops_package_without_lock_says_how_to_make_one(nix: Nix, tmp_path: Path) -> None:
    with pytest.raises(NixEvalError, match="cargo generate-lockfile"):
        strops(nix, tmp_path / "missing" / "Cargo.lock")


def test_strops_package_sources_exist() -> None:
    for name in ("Cargo.toml", "pyproject.toml", "src", "python"):
        assert (ROOT / "strops-rs" / name).exists(), name
    maturin = tomllib.loads((ROOT / "strops-rs" / "pyproject.toml").read_text())
    assert maturin["build-system"]["build-backend"] == "maturin"


def image(nix: Nix, **args: str) -> dict[str, Any]:
    """nix/packages/image.nix over the stubs, with the stt-server derivation's own attributes."""
    extra = " ".join(f"{name} = {json.dumps(value)};" for name, value in args.items())
    return nix.eval(
        f"""
        let
          stubs = import {FIXTURES / "stubs.nix"};
          stt-server = import {PACKAGES / "stt-server.nix"} {{
            inherit (stubs) lib python3Packages;
          }} // {{ outPath = "/nix/store/stt-server"; }};
        in import {PACKAGES / "image.nix"} {{
          inherit (stubs) dockerTools;
          inherit stt-server;
          cacert = "/nix/store/cacert";
          {extra}
        }}
        """
    )


def unit_environment() -> dict[str, str]:
    unit = (ROOT / "deploy" / "stt-server.service").read_text()
    return dict(re.findall(r"^Environment=([A-Z_]+)=(.*)$", unit, flags=re.MULTILINE))


def test_image_runs_stt_server(nix: Nix) -> None:
    built = image(nix)
    assert built["name"] == "stt-server"
    assert built["tag"] == pyproject()["project"]["version"]
    assert built["contents"] == ["/nix/store/stt-server", "/nix/store/cacert"]
    config = built["config"]
    assert config["Entrypoint"] == ["/nix/store/stt-server/bin/stt-server"]
    assert "stt-server" in pyproject()["project"]["scripts"]
    assert config["ExposedPorts"] == {f"{ServerSettings().port}/tcp": {}}
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["SSL_CERT_FILE"] == "/nix/store/cacert/etc/ssl/certs/ca-bundle.crt"
    assert env["STT_HOST"] == "0.0.0.0"


def test_image_caches_where_the_systemd_unit_does_and_the_user_may_write(nix: Nix) -> None:
    built = image(nix)
    env = dict(item.split("=", 1) for item in built["config"]["Env"])
    cache_env = unit_environment()
    assert set(cache_env) == {
        "HOME",
        "XDG_CACHE_HOME",
        "HF_HOME",
        "HF_HUB_CACHE",
        "NUMBA_CACHE_DIR",
    }
    assert {name: env[name] for name in cache_env} == cache_env
    cache = cache_env["HOME"]
    assert built["config"]["Volumes"] == {cache: {}}
    uid, gid = built["config"]["User"].split(":")
    commands = built["fakeRootCommands"].split("\n")
    assert f"chown {uid}:{gid} .{cache}" in [line.strip() for line in commands]
    assert "chmod 1777 ./tmp" in [line.strip() for line in commands]


def test_image_user_is_the_kubernetes_one(nix: Nix) -> None:
    user = image(nix)["config"]["User"]
    manifest = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    pod = manifest["spec"]["template"]["spec"]["securityContext"]
    assert user == f"{pod['runAsUser']}:{pod['runAsGroup']}"
    assert pod["runAsUser"] != 0


def test_cuda_image_is_named_apart(nix: Nix) -> None:
    built = image(nix, name="stt-server-cuda")
    assert built["name"] == "stt-server-cuda"
    assert built["config"]["Labels"]["org.opencontainers.image.title"] == "stt-server-cuda"
