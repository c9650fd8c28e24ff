# services.ccci: the ccci tools host-wide, the one lock directory every process agrees on,
# and the janitor and run-dir gc on systemd timers. See docs/nix.md.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:

let
  cfg = config.services.ccci;
  # The checks and renderings that need no nixpkgs (nix/check.sh evaluates them).
  ccci = import ./lib.nix;
  inherit (lib)
    mkEnableOption
    mkIf
    mkOption
    mkPackageOption
    types
    ;

  # A directory or file the units read or write: it lands in a tmpfiles rule, in
  # ReadWritePaths= and in the tools' environment, which whitespace, `%` (a specifier
  # there), a relative path or a store path would break. Where it may not be (/tmp, the
  # system's own directories) the assertions below say.
  pathType =
    types.addCheck types.path (p: ccci.pathProblem (toString p) == null)
    // {
      description = "absolute path outside the Nix store, of /-separated names of letters, digits and . _ - + @";
    };

  lockDir = toString cfg.lockDir;
  runsDir = toString cfg.runsDir;
  canonicalAbraDir = toString cfg.canonicalAbraDir;
  metricsFile = if cfg.janitor.metricsFile == null then null else toString cfg.janitor.metricsFile;
  legacyLockDir = if cfg.legacyLockDir == null then null else toString cfg.legacyLockDir;

  # What every tool reads. The units and login shells get the same values, each escaped for
  # where it is written (`%` for systemd, `\ " $` and backquote for the shell). Drone steps
  # get none of them: drone-runner-exec passes a step only PATH and USER from the host, so
  # .drone.yml names the directories itself (docs/nix.md).
  environment = {
    CCCI_APP_LOCK_DIR = lockDir;
    CCCI_RUNS_DIR = runsDir;
    CCCI_CANONICAL_ABRA_DIR = canonicalAbraDir;
    CCCI_RUN_APP_RE = cfg.runAppRegex;
    CCCI_PROTECT_RE = cfg.protectRegex;
  };
  # Read by ccci-lock and ccci-janitor only, and only while the host switches from the old
  # layer: absent otherwise, so that nothing of the switch stays once it is over.
  legacyEnvironment = lib.optionalAttrs (legacyLockDir != null) {
    CCCI_LEGACY_LOCK_DIR = legacyLockDir;
  };

  # Hardening shared by both units. They run as root: the janitor speaks to the docker
  # socket (root's) and both handle lockfiles owned by root. Everything is read-only but
  # the paths each unit names in ReadWritePaths; `-` ignores a path that does not exist yet.
  hardening = {
    ProtectSystem = "strict";
    PrivateTmp = true;
    PrivateDevices = true;
    PrivateMounts = true;
    NoNewPrivileges = true;
    # The docker socket is a filesystem socket, reachable from a network namespace of the
    # unit's own; the tools and the docker CLI use no network.
    PrivateNetwork = true;
    IPAddressDeny = "any";
    RestrictAddressFamilies = [ "AF_UNIX" ];
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
    ];
    # A call outside the filter fails instead of killing the pass halfway through a reap.
    SystemCallErrorNumber = "EPERM";
    # Not set, on purpose: ProtectProc and ProcSubset (the janitor reads /proc/locks and
    # names the processes holding a stale lock from /proc/*/fd), PrivateUsers (root's
    # lockfiles, root's docker socket).
  };

  timerOptions = what: {
    randomizedDelaySec = mkOption {
      default = ccci.defaults.randomizedDelaySec;
      type = types.singleLineStr;
      example = "45min";
      description = ''
        Add a randomized delay before each ${what}.
        The delay will be chosen between zero and this value.
        This value must be a time span in the format specified by
        {manpage}`systemd.time(7)`
      '';
    };

    persistent = mkOption {
      default = true;
      type = types.bool;
      example = false;
      description = ''
        Takes a boolean argument. If true, the time when the service
        unit was last triggered is stored on disk. When the timer is
        activated, the service unit is triggered immediately if it
        would have been triggered at least once during the time when
        the timer was inactive. Such triggering is nonetheless
        subject to the delay imposed by RandomizedDelaySec=. This is
        useful to catch up on missed runs of the service when the
        system was powered down.
      '';
    };
  };

  # The old layer's lock dir is writable only while switching: the janitor takes and, after
  # a reap, unlinks the old lockfiles there (/run/lock: never created, never chmod-ed).
  janitorWritable = [
    lockDir
    runsDir
    canonicalAbraDir
  ]
  ++ lib.optional (metricsFile != null) (dirOf metricsFile)
  ++ lib.optional (legacyLockDir != null) legacyLockDir;
  gcWritable = [
    runsDir
    lockDir
  ];

  problem = name: value: why: {
    assertion = why == null;
    message = "services.ccci.${name} = ${builtins.toJSON value} ${toString why}.";
  };
  dirsProblem = ccci.dirsProblem {
    inherit
      lockDir
      runsDir
      canonicalAbraDir
      metricsFile
      legacyLockDir
      ;
  };
in
{
  options.services.ccci = {
    enable = mkEnableOption "the ccci tools for cc-ci (app locks, run guards, run dirs, deploys, janitor)";

    package = mkPackageOption pkgs "ccci" { };

    lockDir = mkOption {
      type = pathType;
      default = "/run/lock/cc-ci";
      description = ''
        Directory of the app lockfiles (`CCCI_APP_LOCK_DIR`). Every process on the host must
        agree on it: a janitor looking elsewhere would see every live run as an orphan.
        Created by systemd-tmpfiles, mode 0755, and never age-cleaned. It may be `/run/lock`
        itself (the old cc-ci layer's directory, shared during a switch), which the module
        then leaves as the system made it; no other directory of the system's own, and
        nothing under /tmp or /var/tmp.
      '';
    };

    legacyLockDir = mkOption {
      type = types.nullOr pathType;
      default = null;
      example = "/run/lock";
      description = ''
        Only while the host switches from the old cc-ci layer (its builds still running
        beside ccci's): that layer's lock dir, `/run/lock` (`CCCI_LEGACY_LOCK_DIR`). ccci runs
        then hold and the janitor honours the old lockfiles too, so that neither janitor
        reaps the other's live runs. Set in the janitor's unit (which may then write there)
        and host-wide; `.drone.yml` must name it too, a Drone step sees no host variable.
        The directory is the old layer's: the module neither creates it nor changes its
        mode. Back to `null` once no old build is in flight (docs/migrating.md).
      '';
    };

    runsDir = mkOption {
      type = pathType;
      default = "/var/lib/cc-ci-runs";
      description = "Parent of the per-run directories of `ccci-rundir` (`CCCI_RUNS_DIR`), created mode 0755.";
    };

    canonicalAbraDir = mkOption {
      type = pathType;
      default = "/root/.abra";
      description = "The host's shared abra tree (`CCCI_CANONICAL_ABRA_DIR`), where the janitor looks for `servers/*/<domain>.env`.";
    };

    runAppRegex = mkOption {
      type = types.singleLineStr;
      default = ccci.runAppRegex;
      description = ''
        Allowlist (`CCCI_RUN_APP_RE`, a Rust regex): only domains matching it are ephemeral
        run apps the janitor may reap. The default is cc-ci's own pattern; it should start
        with `^`. A run whose domain it does not match is refused by `ccci-rundir domain`,
        so a host that changes the suffix of its runs' domains (`CCCI_DOMAIN_SUFFIX` in
        .drone.yml) changes this with it.
      '';
    };

    protectRegex = mkOption {
      type = types.singleLineStr;
      default = "^warm-";
      description = "Denylist (`CCCI_PROTECT_RE`, a Rust regex), wins over the allowlist: domains the janitor never touches.";
    };

    janitor = {
      enable = mkOption {
        type = types.bool;
        default = cfg.enable;
        defaultText = lib.literalExpression "config.services.ccci.enable";
        description = "Whether to run `ccci-janitor` on a timer.";
      };

      interval = mkOption {
        type = types.singleLineStr;
        default = ccci.defaults.janitorInterval;
        example = "hourly";
        description = "When the janitor runs, as a systemd calendar event (`OnCalendar`, see {manpage}`systemd.time(7)`).";
      };

      staleAfter = mkOption {
        type = types.singleLineStr;
        default = "120m";
        description = "`--stale-after`: a lock held longer than this is warned about (and counted in the metrics), never stolen.";
      };

      metricsFile = mkOption {
        type = types.nullOr pathType;
        default = null;
        example = "/var/lib/prometheus-node-exporter-text-files/ccci-janitor.prom";
        description = "`--metrics-file`: where to write Prometheus metrics for node_exporter's textfile collector. Its directory must exist; the janitor unit may write there.";
      };

      extraArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [
          "--timeout"
          "5m"
        ];
        description = "Further arguments to `ccci-janitor`.";
      };
    }
    // timerOptions "janitor pass";

    gc = {
      enable = mkOption {
        type = types.bool;
        default = cfg.enable;
        defaultText = lib.literalExpression "config.services.ccci.enable";
        description = "Whether to run `ccci-rundir gc` on a timer.";
      };

      olderThan = mkOption {
        type = types.singleLineStr;
        default = "7d";
        description = "`--older-than`: what ccci laid out in a run directory nobody holds (its abra tree, its state files) is removed once the run is older than this.";
      };

      resultsOlderThan = mkOption {
        type = types.nullOr types.singleLineStr;
        default = null;
        example = "90d";
        description = ''
          `--results-older-than`: removes run results too (what the harness wrote into a run
          directory: `results.json`, lint output, screenshots the dashboard serves) once the
          run is older than this. `null`, the default, keeps them forever.
        '';
      };

      interval = mkOption {
        type = types.singleLineStr;
        default = ccci.defaults.gcInterval;
        description = "When the gc runs, as a systemd calendar event (`OnCalendar`, see {manpage}`systemd.time(7)`).";
      };
    }
    // timerOptions "run-dir gc";
  };

  config = mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions = [
          {
            assertion = dirsProblem == null;
            message = "${toString dirsProblem}.";
          }
          (problem "runAppRegex" cfg.runAppRegex (ccci.regexProblem cfg.runAppRegex))
          (problem "protectRegex" cfg.protectRegex (ccci.regexProblem cfg.protectRegex))
        ];

        warnings = lib.optional (ccci.unanchored cfg.runAppRegex) "services.ccci.runAppRegex = ${builtins.toJSON cfg.runAppRegex} does not start with ^: it matches a run-like name anywhere in a domain, an infra stack's included.";

        environment.systemPackages = [ cfg.package ];
        # Login shells: `ccci-janitor --dry-run` or `ccci-lock` by hand see what the units see.
        environment.variables = ccci.shellEnvironment (environment // legacyEnvironment);

        systemd.tmpfiles.rules = ccci.tmpfilesRules { inherit lockDir runsDir; };
      }

      (mkIf cfg.janitor.enable {
        assertions = [
          {
            assertion = config.virtualisation.docker.enable;
            message = "services.ccci.janitor needs virtualisation.docker.enable (it reaps apps from the swarm).";
          }
        ];

        systemd.services.ccci-janitor = {
          description = "ccci-janitor: reap the apps of crashed cc-ci runs";
          after = [ "docker.service" ];
          requires = [ "docker.service" ];
          environment = ccci.systemdEnvironment (environment // legacyEnvironment);
          path = [ config.virtualisation.docker.package ];
          # A pass in flight is never cut short by a switch, nor by a switch that removes
          # the unit; the next timer tick uses the new unit.
          restartIfChanged = false;
          unitConfig.X-StopOnRemoval = false;
          serviceConfig = hardening // {
            Type = "oneshot";
            ExecStart = utils.escapeSystemdExecArgs (
              [ (lib.getExe' cfg.package "ccci-janitor") ]
              ++ ccci.janitorArgs (cfg.janitor // { inherit metricsFile; })
            );
            ReadWritePaths = [
              lockDir
              runsDir
              "-${canonicalAbraDir}"
            ]
            ++ lib.optional (metricsFile != null) "-${dirOf metricsFile}"
            # `-`: a missing one is the janitor's to name (it exits 125, naming the variable).
            ++ lib.optional (legacyLockDir != null) "-${legacyLockDir}";
            ProtectHome = ccci.protectHome janitorWritable;
            # The metrics file must be readable for node_exporter.
            UMask = "0022";
            # /proc/<pid>/fd of a lock holder with more capabilities than the janitor (any
            # root process) needs CAP_SYS_PTRACE; everything else it touches is root's own.
            CapabilityBoundingSet = [ "CAP_SYS_PTRACE" ];
          };
        };

        systemd.timers.ccci-janitor = {
          description = "Run ccci-janitor periodically";
          wantedBy = [ "timers.target" ];
          timerConfig = {
            OnCalendar = cfg.janitor.interval;
            Persistent = cfg.janitor.persistent;
            RandomizedDelaySec = cfg.janitor.randomizedDelaySec;
          };
        };
      })

      (mkIf cfg.gc.enable {
        systemd.services.ccci-rundir-gc = {
          description = "ccci-rundir gc: remove old cc-ci run directories nobody holds";
          environment = ccci.systemdEnvironment environment;
          restartIfChanged = false;
          unitConfig.X-StopOnRemoval = false;
          serviceConfig = hardening // {
            Type = "oneshot";
            ExecStart = utils.escapeSystemdExecArgs (
              [ (lib.getExe' cfg.package "ccci-rundir") ] ++ ccci.gcArgs cfg.gc
            );
            ReadWritePaths = gcWritable;
            ProtectHome = ccci.protectHome gcWritable;
            UMask = "0077";
            # A run directory holds what containers wrote through bind mounts (other owners,
            # sticky directories, read-only directories): removing it needs these two.
            CapabilityBoundingSet = [
              "CAP_DAC_OVERRIDE"
              "CAP_FOWNER"
            ];
          };
        };

        systemd.timers.ccci-rundir-gc = {
          description = "Run ccci-rundir gc periodically";
          wantedBy = [ "timers.target" ];
          timerConfig = {
            OnCalendar = cfg.gc.interval;
            Persistent = cfg.gc.persistent;
            RandomizedDelaySec = cfg.gc.randomizedDelaySec;
          };
        };
      })
    ]
  );
}
