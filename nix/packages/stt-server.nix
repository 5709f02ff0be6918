# The stt-server application: the `stt-server` and `stt-client` programs with the stt_server and
# nemo_lite packages. Call with python3Packages.callPackage from a package set that has `strops`
# (nix/overlay.nix adds it). CUDA comes from the package set: with nixpkgs.config.cudaSupport the
# same expression gets nixpkgs' CUDA builds of torch and onnxruntime.
{
  lib,
  python3Packages,
}:

let
  deps = import ./python-deps.nix;
  fromNames = map (name: python3Packages.${name});
  extras = lib.concatLists (
    lib.mapAttrsToList (
      name: wanted: lib.concatMap (extra: python3Packages.${name}.optional-dependencies.${extra}) wanted
    ) deps.extras
  );
in
python3Packages.buildPythonApplication {
  pname = "stt-server";
  version = "0.1.0";
  pyproject = true;

  src = lib.fileset.toSource {
    root = ../..;
    fileset = lib.fileset.unions [
      ../../pyproject.toml
      ../../README.md
      ../../LICENSE
      ../../stt_server
      ../../nemo_lite
    ];
  };

  build-system = [
    python3Packages.setuptools
    python3Packages.wheel
  ];

  # pyproject.toml does not list strops (scripts/setup.sh builds it separately), but the server
  # imports it.
  dependencies = fromNames deps.runtime ++ extras ++ [ python3Packages.strops ];

  # nixpkgs' versions may trail the lower bounds pyproject.toml asks for; the code is what counts.
  pythonRelaxDeps = true;

  # The test suite needs model weights, espeak-ng and sockets; it runs in CI, not in the sandbox.
  doCheck = false;
  pythonImportsCheck = [
    "stt_server"
    "nemo_lite"
    "strops"
  ];

  meta = {
    description = "Self-hosted real-time speech-to-text WebSocket server (Canary-Qwen-2.5B)";
    license = lib.licenses.mit;
    mainProgram = "stt-server";
    platforms = lib.platforms.linux;
  };
}
