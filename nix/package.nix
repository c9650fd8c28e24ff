{
  lib,
  stdenv,
  glibc,
  rustPlatform,
  installShellFiles,
  bashInteractive,
  util-linux,
  # Static-pie on glibc, as the README's install and the test suite build them: the guard
  # runs for a whole build and its peak RSS goal (2 MiB) is met only without ld.so and
  # libgcc_s (docs/performance.md). `ccci.override { staticGlibc = false; }` links
  # dynamically.
  staticGlibc ? stdenv.hostPlatform.isGnu,
}:

let
  root = ../.;
in
rustPlatform.buildRustPackage {
  pname = "ccci";
  version = (lib.importTOML ../Cargo.toml).workspace.package.version;

  # Only what the build and its tests read: a change to docs/ or to nix/ rebuilds nothing.
  # The chain test reads .drone.yml, and the README for the step it shows.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../tools
      ../tests
      ../.drone.yml
      ../README.md
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [ installShellFiles ];

  # buildRustPackage passes --target, so RUSTFLAGS reach the tools and their tests but not
  # the proc macros and build scripts, which must stay dynamic. The static archives are on
  # the search path of those links only: as a build input, glibc.static's libc.a could
  # shadow the shared libc that the proc macros link against.
  env = lib.optionalAttrs staticGlibc {
    RUSTFLAGS = "-C target-feature=+crt-static -L native=${glibc.static}/lib";
  };

  # The stand-in abra and the rig are `#!/usr/bin/env bash`, which the sandbox lacks.
  postPatch = ''
    patchShebangs tests
  '';

  # Unit tests of ccci-core and the end-to-end suite. In the sandbox there is no docker and
  # the build user is not root: those tests check their environment and skip (they fail
  # only under CI=true, which the sandbox does not set). The interop tests run flock(1);
  # ccci-gen's tests source the bash completions in a bash with `complete`, which the
  # stdenv's bash lacks.
  doCheck = true;
  nativeCheckInputs = [
    util-linux
    bashInteractive
  ];
  cargoTestFlags = [ "--workspace" ];

  # ccci-gen (tools/gen) writes the man pages and completions from the tools' own clap
  # definitions; it is a build step, not one of the tools, so it is not installed. Cross
  # builds cannot run it and go without.
  postInstall =
    lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
      $out/bin/ccci-gen target/share
      installManPage target/share/man/man1/*.1
      installShellCompletion \
        --bash target/share/completions/bash/* \
        --zsh target/share/completions/zsh/* \
        --fish target/share/completions/fish/*
    ''
    + ''
      rm $out/bin/ccci-gen
    '';

  meta = {
    description = "Concurrency and cleanup tools for cc-ci: app locks, run guards, run dirs, swarm deploys, janitor";
    homepage = "https://git.coopcloud.tech/toolshed/cc-ci";
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "ccci-lock";
  };
}
