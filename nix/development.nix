# Development shells. `default`: Python with the runtime and test dependencies plus the project's
# tools; `strops`: the Rust toolchain for strops-rs/.
{ pkgs }:

let
  deps = import ./packages/python-deps.nix;
  python = pkgs.python3;
  # strops needs a Cargo.lock (see nix/packages/strops.nix); without one the shell still opens
  # and `maturin develop` (inside a venv) or scripts/setup.sh builds it instead.
  hasStrops =
    builtins.pathExists ../strops-rs/Cargo.lock && python.pkgs ? strops;
  pythonEnv = python.withPackages (
    ps:
    map (name: ps.${name}) (deps.runtime ++ deps.test)
    ++ ps.uvicorn.optional-dependencies.standard
    ++ pkgs.lib.optional hasStrops ps.strops
  );
in
{
  default = pkgs.mkShell {
    name = "stt-server";
    packages = [
      pythonEnv
      pkgs.ruff
      pkgs.basedpyright
      pkgs.maturin
      pkgs.cargo
      pkgs.rustc
      pkgs.espeak-ng
      pkgs.sox
      pkgs.py-spy
    ];
    # pyo3 0.17 knows CPython up to 3.11; strops is an abi3 build.
    PYO3_USE_ABI3_FORWARD_COMPATIBILITY = "1";
    shellHook = pkgs.lib.optionalString (!hasStrops) ''
      echo "stt-server shell: strops is not in this shell (no strops-rs/Cargo.lock); build it with maturin." >&2
    '';
  };

  strops = pkgs.mkShell {
    name = "strops";
    packages = [
      pkgs.cargo
      pkgs.rustc
      pkgs.rustfmt
      pkgs.clippy
      pkgs.rust-analyzer
      pkgs.maturin
      python
    ];
    # pyo3 0.17 knows CPython up to 3.11; strops is an abi3 build.
    PYO3_USE_ABI3_FORWARD_COMPATIBILITY = "1";
  };
}
