# NixOS VM test: the module's janitor unit against a real single-node swarm.
#
# An orphan (deployed through the real chain, then its run gone: lock free, stack and
# .env left) must be reaped; an app whose lock a live process holds must be left alone.
# The commands are the end-to-end suite's (tests/janitor, tests/rig/swarm.sh): the swarm
# and image set up as the rig does, deploys through
# `ccci-rundir -- ccci-lock D -- sh -c '"$DEPLOY" up D ...'` with the stand-in abra.
# Then the switch from the old layer: the machine switches to a specialisation with
# `legacyLockDir = "/run/lock"`, where the janitor leaves a run of the old layer (its
# lockfile in /run/lock held by flock(1)) and reaps an orphan, unlinking its old lockfile
# (so the unit may write there); and back, where nothing of it stays and /run/lock has the
# mode it had at boot.
#
#   nix build .#checks.x86_64-linux.janitor-vm      (needs KVM)
{ module }:

let
  lockDir = "/run/lock/ccci-vm"; # not the tools' default: the unit must get it from the module
  # cc-ci's shape, so that the module's default run-app pattern (cc-ci's own) matches them.
  orphan = "j1-0a1b2c.ci.commoninternet.net";
  held = "j2-3d4e5f.ci.commoninternet.net";
  # The switch: an orphan deployed by a ccci run that held the old lockfile too, and a
  # live run of the old layer.
  switchOrphan = "j3-6a7b8c.ci.commoninternet.net";
  oldRun = "j4-9d0e1f.ci.commoninternet.net";
  legacyLockDir = "/run/lock";
  stack = builtins.replaceStrings [ "." ] [ "_" ];
  metrics = "/var/lib/ccci-metrics/janitor.prom";
in
{
  name = "ccci-janitor";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ module ];

      virtualisation = {
        memorySize = 2048;
        diskSize = 4096;
        docker.enable = true;
      };

      services.ccci = {
        enable = true;
        inherit lockDir;
        janitor.metricsFile = metrics;
        # Only the test runs them.
        janitor.interval = "yearly";
        gc.interval = "yearly";
        # A pattern no test domain matches, holding what systemd (`%n`, the unit's name) and
        # the shell (`$HOME`) would expand: both must reach the tools as written.
        protectRegex = "^warm-|^keep-%n-$HOME";
      };

      # The day of the switch, as a configuration to switch to and back from.
      specialisation.switching.configuration.services.ccci = { inherit legacyLockDir; };

      systemd.tmpfiles.rules = [ "d /var/lib/ccci-metrics 0755 root root -" ];

      environment.systemPackages = [ pkgs.util-linux ];

      environment.etc = {
        # The test image without a registry, as tests/rig/swarm.sh makes it.
        "ccci-test/busybox.tar".source = pkgs.runCommand "ccci-test-busybox.tar" { } ''
          mkdir -p root/bin root/tmp root/etc
          cp ${pkgs.pkgsStatic.busybox}/bin/busybox root/bin/busybox
          for applet in sh sleep cat echo ls true false env; do ln -s busybox root/bin/$applet; done
          tar -C root -cf $out .
        '';
        # The stand-in abra and its recipes.
        "ccci-test/fixtures".source = ../../tests/fixtures;
      };
    };

  testScript =
    { nodes, ... }:
    let
      pkg = nodes.machine.services.ccci.package;
      toplevel = nodes.machine.system.build.toplevel;
      # `env`: extra variables of the run, as .drone.yml's step sets CCCI_LEGACY_LOCK_DIR.
      chainWith = env: domain: run: ''
        ${env} CCCI_ABRA=/etc/ccci-test/fixtures/abra DEPLOY=${pkg}/bin/ccci-deploy \
          ${pkg}/bin/ccci-rundir --run-id ${run} -- \
          ${pkg}/bin/ccci-lock ${domain} -- \
          sh -c '"$DEPLOY" up ${domain} --recipe two-services --timeout 2m'
      '';
      chain = chainWith "";
      oldLockfile = domain: "${legacyLockDir}/cc-ci-app-${domain}.lock";
      services = domain: "docker service ls -q --filter label=com.docker.stack.namespace=${stack domain}";
      envFile = domain: "/root/.abra/servers/default/${domain}.env";
      lockfile = domain: "${lockDir}/cc-ci-app-${domain}.lock";
      # What the module must give every tool, as Nix has it (a JSON object is a Python dict).
      expected = builtins.toJSON {
        CCCI_APP_LOCK_DIR = toString nodes.machine.services.ccci.lockDir;
        CCCI_RUNS_DIR = toString nodes.machine.services.ccci.runsDir;
        CCCI_CANONICAL_ABRA_DIR = toString nodes.machine.services.ccci.canonicalAbraDir;
        CCCI_RUN_APP_RE = nodes.machine.services.ccci.runAppRegex;
        CCCI_PROTECT_RE = nodes.machine.services.ccci.protectRegex;
      };
    in
    ''
      import json

      machine.wait_for_unit("docker.service")
      run_lock_mode = machine.succeed("stat -c %a ${legacyLockDir}")

      def janitor_rw():
          # ReadWritePaths= as the manager has it: `-` marks an ignored missing path.
          out = machine.succeed("systemctl show -p ReadWritePaths --value ccci-janitor.service")
          return [p.lstrip("-") for p in out.split()]

      def no_switch_left():
          for unit in ["ccci-janitor.service", "ccci-rundir-gc.service"]:
              machine.fail(f"systemctl show -p Environment {unit} | grep -F CCCI_LEGACY_LOCK_DIR")
          machine.fail("grep -F CCCI_LEGACY_LOCK_DIR /etc/set-environment")
          assert "${legacyLockDir}" not in janitor_rw(), janitor_rw()
          got = machine.succeed("stat -c %a ${legacyLockDir}")
          assert got == run_lock_mode, (got, run_lock_mode)

      with subtest("the module: lock dir 0755 and the same variables host-wide and in the unit"):
          machine.succeed("test \"$(stat -c %a ${lockDir})\" = 755")
          machine.succeed("test \"$CCCI_APP_LOCK_DIR\" = ${lockDir}")
          machine.succeed("systemctl show -p Environment ccci-janitor.service | grep -F CCCI_APP_LOCK_DIR=${lockDir}")
          machine.succeed("systemctl list-timers | grep ccci-janitor.timer")
          machine.succeed("systemctl list-timers | grep ccci-rundir-gc.timer")

      with subtest("every variable, to the character, in both units and in a login shell"):
          expected = ${expected}
          for unit in ["ccci-janitor.service", "ccci-rundir-gc.service"]:
              # Environment= as the manager parsed it (specifiers expanded), as JSON.
              path = "/org/freedesktop/systemd1/unit/" + unit.replace("-", "_2d").replace(".", "_2e")
              got = json.loads(machine.succeed(
                  f"busctl --json=short get-property org.freedesktop.systemd1 {path} "
                  "org.freedesktop.systemd1.Service Environment"
              ))["data"]
              for name, value in expected.items():
                  assert f"{name}={value}" in got, (unit, name, value, got)
          for name, value in expected.items():
              got = machine.succeed(f"printenv {name}")
              assert got == value + "\n", (name, value, got)

      with subtest("the test swarm, as tests/rig/swarm.sh sets it up"):
          machine.succeed("docker swarm init --advertise-addr 127.0.0.1")
          machine.succeed("docker import /etc/ccci-test/busybox.tar ccci-test/busybox:1")
          machine.succeed("mkdir -p /root/.abra/servers/default")

      with subtest("an orphan: deployed through the chain, its run gone"):
          machine.succeed("""${chain orphan "1"}""")
          machine.succeed("test -n \"$(${services orphan})\"")
          machine.succeed("test -e ${envFile orphan}")

      with subtest("a live run: deployed, and its lock held by a running process"):
          machine.succeed("""${chain held "2"}""")
          machine.succeed(
              "systemd-run --unit=ccci-holder --setenv=PATH=\"$PATH\" --setenv=CCCI_APP_LOCK_DIR=${lockDir} "
              "${pkg}/bin/ccci-lock ${held} -- sleep infinity"
          )
          # A shared, non-blocking probe fails once the holder has the exclusive lock.
          machine.wait_until_fails("flock --nonblock --shared ${lockfile held} true")

      with subtest("the janitor unit reaps the orphan and leaves the live run"):
          machine.succeed("systemctl start ccci-janitor.service")
          machine.succeed("test -z \"$(${services orphan})\"")
          machine.succeed("test ! -e ${envFile orphan}")
          machine.succeed("test ! -e ${lockfile orphan}")
          machine.succeed("test -n \"$(${services held})\"")
          machine.succeed("test -e ${envFile held}")
          machine.succeed("systemctl is-active ccci-holder.service")
          journal = machine.succeed("journalctl -u ccci-janitor.service")
          assert "reaped ${orphan}" in journal, journal
          assert "live run, leaving it: ${held}" in journal, journal
          machine.succeed("grep -F 'ccci_janitor_domains{result=\"reaped\"} 1' ${metrics}")

      with subtest("gc runs under its unit's hardening"):
          machine.succeed("systemctl start ccci-rundir-gc.service")

      with subtest("not switching: nothing of the switch in the units, /run/lock read-only to the janitor"):
          no_switch_left()

      with subtest("switching: the variable in the janitor's unit and host-wide, /run/lock writable for it"):
          machine.succeed("${toplevel}/specialisation/switching/bin/switch-to-configuration test")
          machine.succeed("systemctl show -p Environment ccci-janitor.service | grep -F CCCI_LEGACY_LOCK_DIR=${legacyLockDir}")
          machine.succeed("grep -F CCCI_LEGACY_LOCK_DIR /etc/set-environment")
          assert "${legacyLockDir}" in janitor_rw(), janitor_rw()
          got = machine.succeed("stat -c %a ${legacyLockDir}")
          assert got == run_lock_mode, (got, run_lock_mode)

      with subtest("switching: an orphan of a ccci run, and a live run of the old layer"):
          # A ccci run that held the old lockfile too, as .drone.yml's step does while switching.
          machine.succeed("""${chainWith "CCCI_LEGACY_LOCK_DIR=${legacyLockDir}" switchOrphan "3"}""")
          machine.succeed("test -e ${oldLockfile switchOrphan}")
          # The old layer's run: its app deployed, only its own lockfile held (flock(1), as it locks).
          machine.succeed("""${chain oldRun "4"}""")
          machine.succeed("systemd-run --unit=old-layer-run flock ${oldLockfile oldRun} sleep infinity")
          machine.wait_until_fails("flock --nonblock --shared ${oldLockfile oldRun} true")

      with subtest("switching: the janitor leaves the old layer's live run, reaps the orphan, unlinks its old lockfile"):
          machine.succeed("systemctl start ccci-janitor.service")
          machine.succeed("test -z \"$(${services switchOrphan})\"")
          machine.succeed("test ! -e ${oldLockfile switchOrphan}")
          machine.succeed("test ! -e ${lockfile switchOrphan}")
          machine.succeed("test -n \"$(${services oldRun})\"")
          machine.succeed("test -e ${envFile oldRun}")
          journal = machine.succeed("journalctl -u ccci-janitor.service")
          assert "reaped ${switchOrphan}" in journal, journal
          assert "live run of the old layer, leaving it: ${oldRun}" in journal, journal
          machine.succeed("systemctl stop old-layer-run.service")

      with subtest("the switch over: back to legacyLockDir = null, nothing of it stays"):
          machine.succeed("${toplevel}/bin/switch-to-configuration test")
          no_switch_left()
          machine.succeed("systemctl start ccci-janitor.service")
    '';
}
