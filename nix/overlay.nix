# Adds `stt-server` and the `strops` Python package (for every Python package set) to nixpkgs.
final: prev: {
  pythonPackagesExtensions = prev.pythonPackagesExtensions ++ [
    (pyFinal: _pyPrev: {
      strops = pyFinal.callPackage ./packages/strops.nix { };
    })
  ];

  stt-server = final.callPackage ./packages/stt-server.nix { };
}
