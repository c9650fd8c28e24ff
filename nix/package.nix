{
  lib,
  rustPlatform,
  util-linux,
}:

let
  root = ../.;
in
rustPlatform.buildRustPackage {
  pname = "ccci";
  version = (lib.importTOML ../Cargo.toml).workspace.package.version;

  # Only what the build and its tests read: a change to the docs or to nix/ rebuilds nothing.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../tools
      ../tests
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The stand-in abra and the rig are `#!/usr/bin/env bash`, which the sandbox lacks.
  postPatch = ''
    patchShebangs tests
  '';

  # Unit tests of ccci-core and the end-to-end suite. In the sandbox there is no docker and
  # the build user is not root: those tests check their environment and skip (they fail
  # only under CI=true, which the sandbox does not set). The interop tests run flock(1).
  doCheck = true;
  nativeCheckInputs = [ util-linux ];
  cargoTestFlags = [ "--workspace" ];

  meta = {
    description = "Concurrency and cleanup tools for cc-ci: app locks, run guards, run dirs, swarm deploys, janitor";
    homepage = "https://git.coopcloud.tech/toolshed/cc-ci";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "ccci-lock";
  };
}
