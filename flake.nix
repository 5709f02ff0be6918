{
  description = "stt-server: self-hosted real-time speech-to-text WebSocket server";

  # No flake.lock is committed yet: it could not be generated where this was written (no access
  # to GitHub). The first `nix flake lock` (or any `nix build`/`nix develop`) on a networked
  # machine writes one; commit it to pin nixpkgs. See README.md, section "Nix".
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems =
        f:
        nixpkgs.lib.genAttrs systems (
          system:
          f (
            import nixpkgs {
              inherit system;
              overlays = [ self.overlays.default ];
            }
          )
        );
    in
    {
      overlays.default = import ./nix/overlay.nix;

      nixosModules.default = import ./nix/modules/stt-server.nix;
      nixosModules.stt-server = self.nixosModules.default;

      packages = forAllSystems (
        pkgs:
        {
          stt-server = pkgs.stt-server;
          strops = pkgs.python3Packages.strops;
          default = pkgs.stt-server;
          # A container image (nix/packages/image.nix): `./result | docker load`.
          image = pkgs.callPackage ./nix/packages/image.nix { };
        }
        // nixpkgs.lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") (
          let
            # torch and onnxruntime built against CUDA (unfree; a large build unless cached).
            cudaPkgs = import nixpkgs {
              inherit (pkgs.stdenv.hostPlatform) system;
              overlays = [ self.overlays.default ];
              config = {
                allowUnfree = true;
                cudaSupport = true;
              };
            };
          in
          {
            stt-server-cuda = cudaPkgs.stt-server;
            image-cuda = cudaPkgs.callPackage ./nix/packages/image.nix {
              name = "stt-server-cuda";
            };
          }
        )
      );

      devShells = forAllSystems (pkgs: import ./nix/development.nix { inherit pkgs; });
    };
}
