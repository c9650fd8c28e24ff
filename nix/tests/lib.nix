# The checks of nix/lib.nix, the part of the module that needs no nixpkgs. nix/check.sh
# asserts `failures` is empty and feeds the rest to real programs: `shell` to sh,
# `tmpfiles` to systemd-tmpfiles, `calendars` and `timespans` to systemd-analyze.
let
  l = import ../lib.nix;
  defaults = {
    lockDir = "/run/lock/cc-ci";
    runsDir = "/var/lib/cc-ci-runs";
    canonicalAbraDir = "/root/.abra";
  };
  dirs = overrides: l.dirsProblem (defaults // overrides);
  own = option: p: "services.ccci.${option} = \"${p}\" is a directory of the system's own: give ccci a directory of its own below it";
  privateTmp = option: p: "services.ccci.${option} = \"${p}\" is under /tmp or /var/tmp, which each unit sees privately (PrivateTmp) and systemd-tmpfiles age-cleans";
  nested = a: an: b: bn: "services.ccci.${an} = \"${a}\" and services.ccci.${bn} = \"${b}\" must not be one inside the other";
  badPaths = [
    "run/lock"
    "/a b"
    "/a\tb"
    "/a\nb"
    "/a%h"
    "/a/"
    "//a"
    "/a//b"
    "/a/./b"
    "/a/../b"
    "/"
    "/nix/store/abc-x"
    "/nix/store"
    "/a\"b"
    "/a'b"
    "/a\\b"
    "/a:b"
    ""
  ];

  cases = {
    # Path options: absolute, one name per component, nothing a tmpfiles rule or
    # ReadWritePaths= would split or expand, not in the store.
    goodPaths = {
      got = map l.pathProblem [
        "/run/lock/cc-ci"
        "/var/lib/cc-ci-runs"
        "/root/.abra"
        "/var/lib/a_b-c+d@e.f"
      ];
      expected = [
        null
        null
        null
        null
      ];
    };
    badPaths = {
      got = builtins.filter (p: l.pathProblem p == null) badPaths;
      expected = [ ];
    };

    # Their places: the defaults and /run/lock as the lock dir pass; /tmp, the system's
    # own directories and one inside another do not, each saying why.
    defaultDirs = {
      got = dirs { };
      expected = null;
    };
    runLockAsLockDir = {
      got = dirs { lockDir = "/run/lock"; };
      expected = null;
    };
    metricsDir = {
      got = dirs { metricsFile = "/var/lib/prometheus-node-exporter-text-files/ccci-janitor.prom"; };
      expected = null;
    };
    lockDirInTmp = {
      got = dirs { lockDir = "/tmp/ccci-locks"; };
      expected = privateTmp "lockDir" "/tmp/ccci-locks";
    };
    runsDirInVarTmp = {
      got = dirs { runsDir = "/var/tmp/runs"; };
      expected = privateTmp "runsDir" "/var/tmp/runs";
    };
    lockDirRun = {
      got = dirs { lockDir = "/run"; };
      expected = own "lockDir" "/run";
    };
    lockDirVarLock = {
      got = dirs { lockDir = "/var/lock"; };
      expected = own "lockDir" "/var/lock";
    };
    runsDirRunLock = {
      got = dirs { runsDir = "/run/lock"; };
      expected = own "runsDir" "/run/lock";
    };
    runsDirVarLib = {
      got = dirs { runsDir = "/var/lib"; };
      expected = own "runsDir" "/var/lib";
    };
    abraDirRoot = {
      got = dirs { canonicalAbraDir = "/root"; };
      expected = own "canonicalAbraDir" "/root";
    };
    runsInLocks = {
      got = dirs { runsDir = "/run/lock/cc-ci/runs"; };
      expected = nested "/run/lock/cc-ci" "lockDir" "/run/lock/cc-ci/runs" "runsDir";
    };
    abraInRuns = {
      got = dirs { canonicalAbraDir = "/var/lib/cc-ci-runs/abra"; };
      expected = nested "/var/lib/cc-ci-runs" "runsDir" "/var/lib/cc-ci-runs/abra" "canonicalAbraDir";
    };
    runsDirSpace = {
      got = dirs { runsDir = "/var/lib/cc ci"; };
      expected = "services.ccci.runsDir = \"/var/lib/cc ci\" must be /-separated names of letters, digits and . _ - + @ only (no whitespace, %, quotes or backslashes, no // and no trailing /)";
    };
    abraDirStore = {
      got = dirs { canonicalAbraDir = "/nix/store/abc-abra"; };
      expected = "services.ccci.canonicalAbraDir = \"/nix/store/abc-abra\" is in the Nix store, which is read-only";
    };
    # The old layer's lock dir (while switching): /run/lock, or a directory of no one else;
    # never ccci's own lock dir (one file for both lockfiles), nor /tmp, nor nested.
    legacyRunLock = {
      got = dirs { legacyLockDir = "/run/lock"; };
      expected = null;
    };
    legacyOwnDir = {
      got = dirs { legacyLockDir = "/var/lib/old-cc-ci-locks"; };
      expected = null;
    };
    legacyVarLock = {
      got = dirs { legacyLockDir = "/var/lock"; };
      expected = "services.ccci.legacyLockDir = \"/var/lock\" is a directory of the system's own, which the janitor unit would be allowed to write: the old layer's lock dir is /run/lock";
    };
    legacyRun = {
      got = dirs { legacyLockDir = "/run"; };
      expected = "services.ccci.legacyLockDir = \"/run\" is a directory of the system's own, which the janitor unit would be allowed to write: the old layer's lock dir is /run/lock";
    };
    legacyInTmp = {
      got = dirs { legacyLockDir = "/tmp"; };
      expected = privateTmp "legacyLockDir" "/tmp";
    };
    legacyIsLockDir = {
      got = dirs {
        lockDir = "/run/lock";
        legacyLockDir = "/run/lock";
      };
      expected = "services.ccci.legacyLockDir = \"/run/lock\" is the lock dir itself, where the old layer's lockfiles are ccci's own: leave legacyLockDir null with that lock dir";
    };
    legacyInRuns = {
      got = dirs { legacyLockDir = "/var/lib/cc-ci-runs/locks"; };
      expected = nested "/var/lib/cc-ci-runs/locks" "legacyLockDir" "/var/lib/cc-ci-runs" "runsDir";
    };
    legacySpace = {
      got = dirs { legacyLockDir = "/run/lock "; };
      expected = "services.ccci.legacyLockDir = \"/run/lock \" must be /-separated names of letters, digits and . _ - + @ only (no whitespace, %, quotes or backslashes, no // and no trailing /)";
    };

    metricsInSystemDir = {
      got = dirs { metricsFile = "/var/lib/ccci.prom"; };
      expected = "services.ccci.janitor.metricsFile = \"/var/lib/ccci.prom\" is in a directory of the system's own, which the janitor unit would be allowed to write: put it in a directory of its own";
    };

    # Regexes: cc-ci's pattern passes; empty and multi-line do not; unanchored is warned.
    runAppRegex = {
      got = l.runAppRegex;
      expected = "^[a-z0-9]{1,4}-[0-9a-f]{6}\\.ci\\.commoninternet\\.net$";
    };
    goodRegexes = {
      got = map l.regexProblem [
        l.runAppRegex
        "^warm-"
      ];
      expected = [
        null
        null
      ];
    };
    badRegexes = {
      got = map (re: l.regexProblem re == null) [
        ""
        "^a\nb"
        "^a\r"
      ];
      expected = [
        false
        false
        false
      ];
    };
    unanchored = {
      got = map l.unanchored [
        l.runAppRegex
        "-[0-9a-f]{6}\\."
      ];
      expected = [
        false
        true
      ];
    };

    # Environment=: a % is written %% (systemd expands specifiers there), nothing else.
    systemdEnvironment = {
      got = l.systemdEnvironment {
        A = "^a%n-%%-$HOME\\.";
        B = "/run/lock/cc-ci";
      };
      expected = {
        A = "^a%%n-%%%%-$HOME\\.";
        B = "/run/lock/cc-ci";
      };
    };

    # tmpfiles: the lock dir and the runs dir, 0755, no age; none for /run/lock itself.
    tmpfiles = {
      got = l.tmpfilesRules { inherit (defaults) lockDir runsDir; };
      expected = [
        "d /run/lock/cc-ci 0755 root root -"
        "d /var/lib/cc-ci-runs 0755 root root -"
      ];
    };
    tmpfilesRunLock = {
      got = l.tmpfilesRules {
        lockDir = "/run/lock";
        inherit (defaults) runsDir;
      };
      expected = [ "d /var/lib/cc-ci-runs 0755 root root -" ];
    };

    # ProtectHome=: hidden, unless a writable path is below a home directory.
    protectHome = {
      got = map l.protectHome [
        [
          "/run/lock/cc-ci"
          "/var/lib/cc-ci-runs"
        ]
        [
          "/run/lock/cc-ci"
          "/root/.abra"
        ]
        [ "/home/ci/abra" ]
        [ "/rootfs/x" ]
      ];
      expected = [
        true
        "read-only"
        "read-only"
        true
      ];
    };

    # The units' argument vectors; --results-older-than only when set.
    janitorArgs = {
      got = l.janitorArgs {
        staleAfter = "120m";
        metricsFile = null;
        extraArgs = [ ];
      };
      expected = [
        "--stale-after"
        "120m"
      ];
    };
    janitorArgsAll = {
      got = l.janitorArgs {
        staleAfter = "120m";
        metricsFile = "/m/j.prom";
        extraArgs = [
          "--timeout"
          "5m"
        ];
      };
      expected = [
        "--stale-after"
        "120m"
        "--metrics-file"
        "/m/j.prom"
        "--timeout"
        "5m"
      ];
    };
    gcArgs = {
      got = l.gcArgs {
        olderThan = "7d";
        resultsOlderThan = null;
      };
      expected = [
        "gc"
        "--older-than"
        "7d"
      ];
    };
    gcArgsResults = {
      got = l.gcArgs {
        olderThan = "7d";
        resultsOlderThan = "90d";
      };
      expected = [
        "gc"
        "--older-than"
        "7d"
        "--results-older-than"
        "90d"
      ];
    };
  };

  # What the shell must get back as written: every character the shell treats specially
  # inside double quotes, and the real patterns.
  shellValues = {
    RUN = l.runAppRegex;
    PROTECT = "^warm-|^keep-%n-$HOME";
    ODD = "^a\\\\b\\-\"q\"-`id`-$(id)-\${HOME}-$HOME-%n-'s-\\$-$";
    DIR = "/run/lock/cc-ci";
  };
  exported = l.shellEnvironment shellValues;
in
{
  failures = builtins.filter (c: c != null) (
    map (
      name:
      let
        c = cases.${name};
      in
      if c.got == c.expected then
        null
      else
        {
          inherit name;
          inherit (c) got expected;
        }
    ) (builtins.attrNames cases)
  );

  # /etc/set-environment as NixOS writes it (`export NAME="value"`), and what each must be.
  shell = {
    script = builtins.concatStringsSep "\n" (
      map (n: "export ${n}=\"${exported.${n}}\"") (builtins.attrNames exported)
    );
    values = shellValues;
  };

  # The module's tmpfiles rules for a lock dir of its own and for /run/lock.
  tmpfiles = map (lockDir: {
    inherit lockDir;
    inherit (defaults) runsDir;
    rules = builtins.concatStringsSep "\n" (
      l.tmpfilesRules {
        inherit lockDir;
        inherit (defaults) runsDir;
      }
    );
  }) [ defaults.lockDir "/run/lock" ];

  # The option defaults systemd parses, and the VM test's intervals.
  calendars = [
    l.defaults.janitorInterval
    l.defaults.gcInterval
    "yearly"
  ];
  timespans = [ l.defaults.randomizedDelaySec ];
}
