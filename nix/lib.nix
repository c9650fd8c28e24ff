# What nix/module.nix accepts and what it writes, as pure functions of builtins only, so
# that nix/check.sh evaluates them (and feeds their output to a real shell and a real
# systemd-tmpfiles) on a machine without nixpkgs. See docs/nix.md.
let
  inherit (builtins)
    any
    elem
    filter
    isString
    match
    replaceStrings
    split
    stringLength
    substring
    ;
  hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
  # Whether `p` is `dir` or below it.
  under = dir: p: p == dir || hasPrefix "${dir}/" p;
  firstProblem = problems: if problems == [ ] then null else builtins.head problems;
  check = cond: problem: if cond then [ problem ] else [ ];
in
rec {
  # The option defaults that systemd parses (nix/check.sh has systemd-analyze parse them).
  defaults = {
    janitorInterval = "*:0/10";
    gcInterval = "daily";
    randomizedDelaySec = "0"; # as nix.gc and virtualisation.docker.autoPrune
  };

  # cc-ci's own run-app pattern (RUN_APP_RE in its harness, ../shared/spec/cc-ci.md).
  runAppRegex = ''^[a-z0-9]{1,4}-[0-9a-f]{6}\.ci\.commoninternet\.net$'';

  # Directories of the system's own: no option may name one of them. A tmpfiles `d` rule
  # for one would reset its mode (/run/lock is 1777 on some systems, 0755 on others),
  # ReadWritePaths= would open all of it to the units, and `ccci-rundir gc` sweeps its
  # runs dir. /run/lock itself is allowed as the lock dir and as the old layer's lock dir
  # (the old cc-ci layer's directory, which a switch shares) and gets no tmpfiles rule.
  sharedDirs = [
    "/"
    "/boot"
    "/dev"
    "/etc"
    "/home"
    "/media"
    "/mnt"
    "/nix"
    "/opt"
    "/proc"
    "/root"
    "/run"
    "/run/lock"
    "/run/user"
    "/srv"
    "/sys"
    "/tmp"
    "/usr"
    "/var"
    "/var/cache"
    "/var/lib"
    "/var/lock"
    "/var/log"
    "/var/run"
    "/var/tmp"
  ];

  # Where a writable path makes ProtectHome=true impossible (it would hide the path).
  homeDirs = [
    "/home"
    "/root"
    "/run/user"
  ];

  # Why `p` cannot be a path option's value, or null. Path options land in a tmpfiles rule
  # (fields split on whitespace, `%` starts a specifier), in ReadWritePaths= (a list split on
  # whitespace, `-`/`+` prefixes) and in the tools' environment.
  pathProblem =
    p:
    if !isString p then
      "is not a string"
    else if substring 0 1 p != "/" then
      "is not an absolute path"
    else if match "(/[A-Za-z0-9._@+-]+)+" p == null then
      "must be /-separated names of letters, digits and . _ - + @ only (no whitespace, %, quotes or backslashes, no // and no trailing /)"
    else if any (c: c == "." || c == "..") (filter isString (split "/" p)) then
      "has a . or .. component"
    else if under builtins.storeDir p then
      "is in the Nix store, which is read-only"
    else
      null;

  # Why `p` cannot be where a unit reads or writes, or null: a path option's checks, then
  # the places a hardened unit does not share with the host.
  unitPathProblem =
    p:
    let
      syntax = pathProblem p;
    in
    if syntax != null then
      syntax
    else if under "/tmp" p || under "/var/tmp" p then
      "is under /tmp or /var/tmp, which each unit sees privately (PrivateTmp) and systemd-tmpfiles age-cleans"
    else
      null;

  # The checks of the three directories, the metrics file and the old layer's lock dir
  # (null when the host is not switching) together: null, or the first problem as
  # `option: why`.
  dirsProblem =
    {
      lockDir,
      runsDir,
      canonicalAbraDir,
      metricsFile ? null,
      legacyLockDir ? null,
    }:
    let
      named = name: p: problem: if problem == null then [ ] else [ "services.ccci.${name} = \"${p}\" ${problem}" ];
      own = name: p: check (elem p sharedDirs) "services.ccci.${name} = \"${p}\" is a directory of the system's own: give ccci a directory of its own below it";
      apart = a: an: b: bn: check (under a b || under b a) "services.ccci.${an} = \"${a}\" and services.ccci.${bn} = \"${b}\" must not be one inside the other";
    in
    firstProblem (
      named "lockDir" lockDir (unitPathProblem lockDir)
      ++ named "runsDir" runsDir (unitPathProblem runsDir)
      ++ named "canonicalAbraDir" canonicalAbraDir (unitPathProblem canonicalAbraDir)
      ++ (if metricsFile == null then [ ] else named "janitor.metricsFile" metricsFile (unitPathProblem metricsFile))
      ++ (if legacyLockDir == null then [ ] else named "legacyLockDir" legacyLockDir (unitPathProblem legacyLockDir))
      ++ (if lockDir == "/run/lock" then [ ] else own "lockDir" lockDir)
      ++ own "runsDir" runsDir
      ++ own "canonicalAbraDir" canonicalAbraDir
      ++ (
        if metricsFile == null then
          [ ]
        else
          check (elem (dirOf metricsFile) sharedDirs) "services.ccci.janitor.metricsFile = \"${metricsFile}\" is in a directory of the system's own, which the janitor unit would be allowed to write: put it in a directory of its own"
      )
      ++ apart lockDir "lockDir" runsDir "runsDir"
      ++ apart lockDir "lockDir" canonicalAbraDir "canonicalAbraDir"
      ++ apart runsDir "runsDir" canonicalAbraDir "canonicalAbraDir"
      ++ (
        if legacyLockDir == null then
          [ ]
        else
          check (
            legacyLockDir != "/run/lock" && elem legacyLockDir sharedDirs
          ) "services.ccci.legacyLockDir = \"${legacyLockDir}\" is a directory of the system's own, which the janitor unit would be allowed to write: the old layer's lock dir is /run/lock"
          # Both layers name a domain's lockfile cc-ci-app-<domain>.lock: in one directory
          # they are one file, which a ccci run would wait on behind its own lock forever.
          ++ check (legacyLockDir == lockDir) "services.ccci.legacyLockDir = \"${legacyLockDir}\" is the lock dir itself, where the old layer's lockfiles are ccci's own: leave legacyLockDir null with that lock dir"
          ++ apart legacyLockDir "legacyLockDir" runsDir "runsDir"
          ++ apart legacyLockDir "legacyLockDir" canonicalAbraDir "canonicalAbraDir"
      )
    );

  # Why `re` cannot be a regex option's value, or null. The tools compile it themselves
  # (Rust regex syntax, which Nix cannot check: a pattern that does not compile makes the
  # janitor exit at once, naming it); what Nix can check is checked here.
  regexProblem =
    re:
    if !isString re then
      "is not a string"
    else if re == "" then
      "is empty, which matches every domain"
    else if match "[^\n\r]*" re == null then
      "spans more than one line, which no domain does"
    else
      null;

  # A pattern that is not anchored at the start matches a run-like name anywhere in a
  # domain, an infra stack's included.
  unanchored = re: !(hasPrefix "^" re);

  # Environment= values: NixOS quotes them with builtins.toJSON (so `"` and `\` survive)
  # but systemd still expands `%` specifiers in them; `%%` is a literal `%`.
  systemdEnvironment = builtins.mapAttrs (_: replaceStrings [ "%" ] [ "%%" ]);

  # environment.variables values: NixOS writes `export NAME="value"` into
  # /etc/set-environment, so inside double quotes `\`, `"`, `$` and a backquote are the
  # shell's; escaped, every shell gets the value the units get.
  shellEnvironment = builtins.mapAttrs (
    _:
    replaceStrings
      [ "\\" "\"" "$" "`" ]
      [ "\\\\" "\\\"" "\\$" "\\`" ]
  );

  # The directories the module creates: `d` adjusts the mode and owner of an existing
  # directory, so never one of the system's own (the lock dir may be /run/lock, which is
  # then left alone). No age field: systemd-tmpfiles must never age-clean a lockfile.
  tmpfilesRules =
    { lockDir, runsDir }:
    map (dir: "d ${dir} 0755 root root -") (
      filter (dir: !(elem dir sharedDirs)) [
        lockDir
        runsDir
      ]
    );

  # ProtectHome= for a unit that writes `writable`: hide the home directories unless a
  # writable path is below one (the abra tree is /root/.abra by default); then make them
  # read-only, under which ReadWritePaths= still opens that path.
  protectHome = writable: if any (p: any (h: under h p) homeDirs) writable then "read-only" else true;

  # The argument vectors of the two units (ExecStart=, escaped by the module).
  janitorArgs =
    {
      staleAfter,
      metricsFile,
      extraArgs,
      ...
    }:
    [
      "--stale-after"
      staleAfter
    ]
    ++ (
      if metricsFile == null then
        [ ]
      else
        [
          "--metrics-file"
          metricsFile
        ]
    )
    ++ extraArgs;

  gcArgs =
    { olderThan, resultsOlderThan, ... }:
    [
      "gc"
      "--older-than"
      olderThan
    ]
    ++ (
      if resultsOlderThan == null then
        [ ]
      else
        [
          "--results-older-than"
          resultsOlderThan
        ]
    );
}
