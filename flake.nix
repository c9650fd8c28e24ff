{
  description = "ccci: concurrency and cleanup tools for cc-ci (app locks, run guards, run dirs, swarm deploys, janitor)";

  # nixpkgs only. A release branch whose rustc is at least the crate's rust-version (1.89).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      tools = [
        "ccci-guard"
        "ccci-rundir"
        "ccci-lock"
        "ccci-deploy"
        "ccci-janitor"
      ];
    in
    {
      packages = forAllSystems (pkgs: rec {
        ccci = pkgs.callPackage ./nix/package.nix { };
        default = ccci;
      });

      apps = forAllSystems (
        pkgs:
        lib.genAttrs tools (tool: {
          type = "app";
          program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.default}/bin/${tool}";
          meta.description = "${tool} from ccci";
        })
        // {
          default = self.apps.${pkgs.stdenv.hostPlatform.system}.ccci-lock;
        }
      );

      checks = forAllSystems (
        pkgs:
        let
          ccci = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          # The package's source, vendored dependencies and toolchain, running one cargo
          # command instead of the build: the same inputs as the package, no network.
          cargoCheck =
            name: nativeBuildInputs: command:
            ccci.overrideAttrs (old: {
              pname = "ccci-${name}";
              nativeBuildInputs = old.nativeBuildInputs ++ nativeBuildInputs;
              buildPhase = ''
                runHook preBuild
                ${command}
                runHook postBuild
              '';
              doCheck = false;
              installPhase = "touch $out";
              dontFixup = true;
            });
        in
        {
          # The build with its tests (doCheck): the ones needing docker or root skip themselves.
          package = ccci;
          # `--target`, as the build hooks pass it: the package's RUSTFLAGS (crt-static)
          # would otherwise reach the proc macros, which cannot be built static.
          clippy = cargoCheck "clippy" [
            pkgs.clippy
          ] "cargo clippy --workspace --all-targets --locked --offline --target ${pkgs.stdenv.hostPlatform.rust.rustcTargetSpec} -- -D warnings";
          fmt = cargoCheck "fmt" [ pkgs.rustfmt ] "cargo fmt --all --check";
          janitor-vm = pkgs.testers.runNixOSTest (
            import ./nix/tests/janitor.nix { module = self.nixosModules.default; }
          );
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.cargo
            pkgs.rustc
            pkgs.clippy
            pkgs.rustfmt
            pkgs.docker-client
            pkgs.util-linux
          ];
          RUST_SRC_PATH = "${pkgs.rustPlatform.rustLibSrc}";
        };
      });

      # The module, with `services.ccci.package` defaulting to this flake's build.
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.ccci.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };

      overlays.default = final: _prev: {
        ccci = final.callPackage ./nix/package.nix { };
      };
    };
}
