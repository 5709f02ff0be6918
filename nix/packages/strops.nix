# The strops Python extension (Rust, pyo3), built from strops-rs/ by maturin.
#
# rustPlatform.importCargoLock needs a Cargo.lock with crates.io checksums. The repository does
# not commit one (CI builds offline against Debian's packaged crates, whose lock entries carry no
# usable checksums), so the lock is an input: by default strops-rs/Cargo.lock, which must be made
# with `cargo generate-lockfile` on a machine that reaches crates.io and be visible to the flake
# (`git add -f strops-rs/Cargo.lock`, or build from `path:.`). Override with
# `strops.override { cargoLockFile = ./Cargo.lock; }`.
{
  lib,
  buildPythonPackage,
  rustPlatform,
  cargo,
  rustc,
  cargoLockFile ? ../../strops-rs/Cargo.lock,
}:

let
  lockFile =
    if builtins.pathExists cargoLockFile then
      cargoLockFile
    else
      throw ''
        strops: no Cargo.lock at ${toString cargoLockFile}.
        Run `cargo generate-lockfile --manifest-path strops-rs/Cargo.toml` on a machine that
        reaches crates.io, then `git add -f strops-rs/Cargo.lock` (flakes only see tracked files)
        or build with `nix build 'path:.#stt-server'`.
      '';
in
buildPythonPackage {
  pname = "strops";
  version = "0.1.0";
  pyproject = true;

  src = lib.fileset.toSource {
    root = ../../strops-rs;
    fileset = lib.fileset.unions [
      ../../strops-rs/Cargo.toml
      ../../strops-rs/pyproject.toml
      ../../strops-rs/src
      ../../strops-rs/python
    ];
  };

  cargoDeps = rustPlatform.importCargoLock { inherit lockFile; };

  # Runs before cargoSetupHook compares the source's lock with the vendored one.
  postPatch = ''
    cp ${lockFile} Cargo.lock
  '';

  nativeBuildInputs = [
    rustPlatform.cargoSetupHook
    rustPlatform.maturinBuildHook
    cargo
    rustc
  ];

  # pyo3 0.17 knows CPython up to 3.11; the abi3-py311 build is valid on newer interpreters.
  env.PYO3_USE_ABI3_FORWARD_COMPATIBILITY = "1";

  pythonImportsCheck = [ "strops" ];

  meta = {
    description = "Word-sequence merging by semi-global alignment (Rust, pyo3)";
    license = lib.licenses.mit;
  };
}
