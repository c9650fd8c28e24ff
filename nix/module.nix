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
  inherit (lib)
    mkEnableOption
    mkIf
    mkOption
    mkPackageOption
    types
    ;

  # What every tool reads. Set host-wide and in each unit, so an interactive shell, a Drone
  # step and the janitor all look in the same lock directory.
  environment = {
    CCCI_APP_LOCK_DIR = toString cfg.lockDir;
    CCCI_RUNS_DIR = toString cfg.runsDir;
    CCCI_CANONICAL_ABRA_DIR = toString cfg.canonicalAbraDir;
    CCCI_RUN_APP_RE = cfg.runAppRegex;
    CCCI_PROTECT_RE = cfg.protectRegex;
  };

  # Hardening shared by both units. They run as root: the janitor speaks to the docker
  # socket (root's) and both handle lockfiles owned by root. Everything is read-only but
  # the paths each unit names in ReadWritePaths; `-` ignores a path that does not exist yet.
  hardening = {
    ProtectSystem = "strict";
    PrivateTmp = true;
    PrivateDevices = true;
    NoNewPrivileges = true;
    # The docker socket is a filesystem socket; the tools use no network themselves.
    RestrictAddressFamilies = [ "AF_UNIX" ];
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    LockPersonality = true;
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    SystemCallArchitectures = "native";
    UMask = "0022";
    # Not set, on purpose: ProtectHome (the abra tree is /root/.abra by default),
    # ProtectProc (the janitor names the processes holding a stale lock from /proc/*/fd),
    # PrivateUsers and a narrowed CapabilityBoundingSet (root's lockfiles and /proc).
  };
in
{
  options.services.ccci = {
    enable = mkEnableOption "the ccci tools for cc-ci (app locks, run guards, run dirs, deploys, janitor)";

    package = mkPackageOption pkgs "ccci" { };

    lockDir = mkOption {
      type = types.path;
      default = "/run/lock/cc-ci";
      description = ''
        Directory of the app lockfiles (`CCCI_APP_LOCK_DIR`). Every process on the host must
        agree on it: a janitor looking elsewhere would see every live run as an orphan.
        Created by systemd-tmpfiles, mode 0755, and never age-cleaned.
      '';
    };

    runsDir = mkOption {
      type = types.path;
      default = "/var/lib/cc-ci-runs";
      description = "Parent of the per-run directories of `ccci-rundir` (`CCCI_RUNS_DIR`), created mode 0755.";
    };

    canonicalAbraDir = mkOption {
      type = types.path;
      default = "/root/.abra";
      description = "The host's shared abra tree (`CCCI_CANONICAL_ABRA_DIR`), where the janitor looks for `servers/*/<domain>.env`.";
    };

    runAppRegex = mkOption {
      type = types.str;
      default = ''^[a-z0-9]{1,4}-[0-9a-f]{6}\.'';
      description = "Allowlist (`CCCI_RUN_APP_RE`): only domains matching it are ephemeral run apps the janitor may reap.";
    };

    protectRegex = mkOption {
      type = types.str;
      default = "^warm-";
      description = "Denylist (`CCCI_PROTECT_RE`), wins over the allowlist: domains the janitor never touches.";
    };

    janitor = {
      enable = mkOption {
        type = types.bool;
        default = cfg.enable;
        defaultText = lib.literalExpression "config.services.ccci.enable";
        description = "Whether to run `ccci-janitor` on a timer.";
      };

      interval = mkOption {
        type = types.str;
        default = "*:0/10";
        example = "hourly";
        description = "When the janitor runs, as a systemd calendar event (`OnCalendar`, see {manpage}`systemd.time(7)`).";
      };

      staleAfter = mkOption {
        type = types.str;
        default = "120m";
        description = "`--stale-after`: a lock held longer than this is warned about (and counted in the metrics), never stolen.";
      };

      metricsFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/var/lib/prometheus-node-exporter-text-files/ccci-janitor.prom";
        description = "`--metrics-file`: where to write Prometheus metrics for node_exporter's textfile collector. Its directory must exist.";
      };

      extraArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "--timeout" "5m" ];
        description = "Further arguments to `ccci-janitor`.";
      };
    };

    gc = {
      enable = mkOption {
        type = types.bool;
        default = cfg.enable;
        defaultText = lib.literalExpression "config.services.ccci.enable";
        description = "Whether to run `ccci-rundir gc` on a timer.";
      };

      olderThan = mkOption {
        type = types.str;
        default = "7d";
        description = "`--older-than`: run directories nobody holds and older than this are removed.";
      };

      interval = mkOption {
        type = types.str;
        default = "daily";
        description = "When the gc runs, as a systemd calendar event (`OnCalendar`).";
      };
    };
  };

  config = mkIf cfg.enable (lib.mkMerge [
    {
      environment.systemPackages = [ cfg.package ];
      environment.variables = environment;

      # No age field: systemd-tmpfiles must never age-clean the lock dir (a lockfile unlinked
      # under a live run would let a second run in).
      systemd.tmpfiles.rules = [
        "d ${toString cfg.lockDir} 0755 root root -"
        "d ${toString cfg.runsDir} 0755 root root -"
      ];
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
        inherit environment;
        path = [ config.virtualisation.docker.package ];
        # A pass in flight is never cut short by a switch; the next timer tick uses the new unit.
        restartIfChanged = false;
        serviceConfig = hardening // {
          Type = "oneshot";
          ExecStart = utils.escapeSystemdExecArgs (
            [
              (lib.getExe' cfg.package "ccci-janitor")
              "--stale-after"
              cfg.janitor.staleAfter
            ]
            ++ lib.optionals (cfg.janitor.metricsFile != null) [
              "--metrics-file"
              (toString cfg.janitor.metricsFile)
            ]
            ++ cfg.janitor.extraArgs
          );
          ReadWritePaths = [
            (toString cfg.lockDir)
            (toString cfg.runsDir)
            "-${toString cfg.canonicalAbraDir}"
          ]
          ++ lib.optional (cfg.janitor.metricsFile != null) "-${dirOf (toString cfg.janitor.metricsFile)}";
        };
      };

      systemd.timers.ccci-janitor = {
        description = "Run ccci-janitor periodically";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnCalendar = cfg.janitor.interval;
          Persistent = true;
          RandomizedDelaySec = "1m";
        };
      };
    })

    (mkIf cfg.gc.enable {
      systemd.services.ccci-rundir-gc = {
        description = "ccci-rundir gc: remove old cc-ci run directories nobody holds";
        inherit environment;
        restartIfChanged = false;
        serviceConfig = hardening // {
          Type = "oneshot";
          ExecStart = utils.escapeSystemdExecArgs [
            (lib.getExe' cfg.package "ccci-rundir")
            "gc"
            "--older-than"
            cfg.gc.olderThan
          ];
          ReadWritePaths = [
            (toString cfg.runsDir)
            (toString cfg.lockDir)
          ];
        };
      };

      systemd.timers.ccci-rundir-gc = {
        description = "Run ccci-rundir gc periodically";
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnCalendar = cfg.gc.interval;
          Persistent = true;
          RandomizedDelaySec = "1h";
        };
      };
    })
  ]);
}
