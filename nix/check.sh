#!/usr/bin/env bash
# What of the Nix files can be checked without nixpkgs (docs/nix.md): every .nix file
# parses — which with Nix also means no undefined variable — and the expressions that need
# no nixpkgs evaluate. The build, the checks and the VM test need nixpkgs (and KVM).
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t files < <(git ls-files '*.nix' 2>/dev/null || find . -name '*.nix' -not -path './target/*')
[ "${#files[@]}" -gt 0 ] || { echo "nix/check.sh: no .nix files found" >&2; exit 1; }
for f in "${files[@]}"; do
  nix-instantiate --parse "$f" >/dev/null
done
echo "parsed ${#files[@]} files: ${files[*]}"

eval_() { nix-instantiate --eval --strict -E "$1"; }
expect() { # expression, expected value
  local got
  got=$(eval_ "$1")
  [ "$got" = "$2" ] || { echo "nix/check.sh: $1 is $got, expected $2" >&2; exit 1; }
}
# The flake's one input, pinned to a release branch.
expect '(import ./flake.nix).inputs.nixpkgs.url' '"github:NixOS/nixpkgs/nixos-25.11"'
expect 'builtins.attrNames (import ./flake.nix).inputs' '[ "nixpkgs" ]'
# The VM test is a test module: a name, one node, a script.
expect 'let t = import ./nix/tests/janitor.nix { module = { }; }; in [ t.name (builtins.attrNames t.nodes) (builtins.isFunction t.testScript) ]' \
  '[ "ccci-janitor" [ "machine" ] true ]'
# Its Python script, rendered with a stand-in package path and the module's defaults, compiles.
script=$(nix-instantiate --eval --strict --json -E 'let t = import ./nix/tests/janitor.nix { module = { }; }; l = import ./nix/lib.nix; in t.testScript { nodes.machine.system.build.toplevel = "/nix/store/00000000000000000000000000000000-nixos-system"; nodes.machine.services.ccci = { package = "/nix/store/00000000000000000000000000000000-ccci"; lockDir = "/run/lock/ccci-vm"; runsDir = "/var/lib/cc-ci-runs"; canonicalAbraDir = "/root/.abra"; runAppRegex = l.runAppRegex; protectRegex = "^warm-|^keep-%n-$HOME"; }; }')
if command -v python3 >/dev/null; then
  python3 -c 'import json, sys; compile(json.loads(sys.argv[1]), "nix/tests/janitor.nix testScript", "exec")' "$script"
fi

# nix/lib.nix, what the module accepts and writes: nix/tests/lib.nix's cases, then what
# they render, run through the real programs that read it.
expect '(import ./nix/tests/lib.nix).failures' '[ ]'
checks=$(nix-instantiate --eval --strict --json -E 'let t = import ./nix/tests/lib.nix; in { inherit (t) shell tmpfiles calendars timespans; }')
python3 - "$checks" <<'PY'
import json, os, shutil, stat, subprocess, sys, tempfile
checks = json.loads(sys.argv[1])

# environment.variables: a real sh, sourcing the exports as NixOS writes them, gets every
# value back as the units get it.
for name, value in checks["shell"]["values"].items():
    got = subprocess.run(["sh", "-c", checks["shell"]["script"] + '\nprintf %s "$' + name + '"'],
                         capture_output=True, text=True, check=True).stdout
    assert got == value, f"nix/check.sh: sh has {name}={got!r}, the units {value!r}"

# The defaults systemd parses, parsed by systemd.
if shutil.which("systemd-analyze"):
    for cal in checks["calendars"]:
        subprocess.run(["systemd-analyze", "calendar", cal], check=True, stdout=subprocess.DEVNULL)
    for span in checks["timespans"]:
        subprocess.run(["systemd-analyze", "timespan", span], check=True, stdout=subprocess.DEVNULL)
else:
    print("nix/check.sh: no systemd-analyze: the calendar defaults were not parsed", file=sys.stderr)

# The tmpfiles rules, applied by a real systemd-tmpfiles on a root of its own with a
# /run/lock of another mode than theirs: it stays as it was.
mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)
if shutil.which("systemd-tmpfiles") and os.geteuid() == 0:
    for case in checks["tmpfiles"]:
        root = tempfile.mkdtemp()
        try:
            os.makedirs(f"{root}/run/lock")
            os.chmod(f"{root}/run/lock", 0o1777)
            with open(f"{root}/ccci.conf", "w") as f:
                f.write(case["rules"] + "\n")
            subprocess.run(["systemd-tmpfiles", "--create", f"--root={root}", f"{root}/ccci.conf"], check=True)
            assert mode(f"{root}/run/lock") == 0o1777, f"nix/check.sh: lockDir = {case['lockDir']}: /run/lock is now {oct(mode(root + '/run/lock'))}"
            for d in {case["lockDir"], case["runsDir"]} - {"/run/lock"}:
                assert mode(root + d) == 0o755, f"nix/check.sh: {d} is {oct(mode(root + d))}, not 0755"
        finally:
            shutil.rmtree(root)
else:
    print("nix/check.sh: not root or no systemd-tmpfiles: the tmpfiles rules were not applied", file=sys.stderr)
PY

# The module itself, evaluated against a stand-in of the nixpkgs lib (nix/tests/module-eval.nix:
# it catches misspelt names and paths, not what only the module system and NixOS check).
eval_module() { # settings, expression over nix/tests/module-eval.nix's attributes
  nix-instantiate --eval --strict --json -E "with import ./nix/tests/module-eval.nix { settings = { enable = true; } // $1; }; $2"
}
module_expect() { # settings, expression, expected JSON
  local got
  got=$(eval_module "$1" "$2")
  [ "$got" = "$3" ] || { echo "nix/check.sh: module with $1: $2 is $got, expected $3" >&2; exit 1; }
}
# Every option is in docs/nix.md's table, and every row of the table is an option.
python3 - "$(eval_module '{ }' options)" <<'PY'
import json, re, sys
options = set(json.loads(sys.argv[1]))
documented = set(re.findall(r"^\| `(services\.ccci\.[A-Za-z.]+)` \|", open("docs/nix.md").read(), re.M))
assert options == documented, f"nix/check.sh: options not in docs/nix.md's table: {sorted(options - documented)}; rows that are no option: {sorted(documented - options)}"
PY
# The run-app pattern the table shows is the module's default and the tools' own, exactly.
python3 - "$(eval_ '(import ./nix/lib.nix).runAppRegex')" <<'PY'
import json, re, sys
nix = json.loads(sys.argv[1])
shown = re.search(r"^\| `services\.ccci\.runAppRegex` \| single-line str, `([^`]*)` \|", open("docs/nix.md").read(), re.M).group(1)
rust = re.search(r'pub const RUN_APP_RE: &str = r"([^"]*)";', open("tools/core/src/env.rs").read()).group(1)
assert nix == shown == rust, f"nix/check.sh: runAppRegex: module {nix!r}, docs/nix.md {shown!r}, tools {rust!r}"
PY
# The defaults pass their own types and assertions, without a warning.
module_expect '{ }' 'badValues' '[]'
module_expect '{ }' 'failedAssertions' '[]'
module_expect '{ }' 'warnings' '[]'
# A newline in anything that lands in a unit directive, whitespace or a store path in a
# path, fails the option's type.
module_expect '{ janitor.interval = "daily\nOnCalendar=minutely"; gc.interval = "daily\nx"; janitor.randomizedDelaySec = "0\nx"; gc.randomizedDelaySec = "0\nx"; runAppRegex = "^a\nb"; protectRegex = "^a\nb"; }' 'badValues' \
  '["services.ccci.gc.interval","services.ccci.gc.randomizedDelaySec","services.ccci.janitor.interval","services.ccci.janitor.randomizedDelaySec","services.ccci.protectRegex","services.ccci.runAppRegex"]'
module_expect '{ lockDir = "/run/lock/cc ci"; runsDir = "relative"; canonicalAbraDir = "/nix/store/x-abra"; janitor.metricsFile = "/var/lib/m/%h.prom"; }' 'badValues' \
  '["services.ccci.canonicalAbraDir","services.ccci.janitor.metricsFile","services.ccci.lockDir","services.ccci.runsDir"]'
# Places and patterns the types cannot judge fail an assertion that says why, or warn.
module_expect '{ lockDir = "/tmp/ccci"; }' 'failedAssertions' \
  '["services.ccci.lockDir = \"/tmp/ccci\" is under /tmp or /var/tmp, which each unit sees privately (PrivateTmp) and systemd-tmpfiles age-cleans."]'
module_expect '{ runAppRegex = ""; }' 'failedAssertions' '["services.ccci.runAppRegex = \"\" is empty, which matches every domain."]'
module_expect '{ runAppRegex = "-[0-9a-f]{6}"; }' 'warnings' \
  '["services.ccci.runAppRegex = \"-[0-9a-f]{6}\" does not start with ^: it matches a run-like name anywhere in a domain, an infra stack'"'"'s included."]'
# The lock dir /run/lock gets no tmpfiles rule.
module_expect '{ lockDir = "/run/lock"; }' 'tmpfiles' '["d /var/lib/cc-ci-runs 0755 root root -"]'
# The switch from the old layer (legacyLockDir): a path like the others, /run/lock allowed,
# never ccci's own lock dir.
module_expect '{ legacyLockDir = "/run/lock/old locks"; }' 'badValues' '["services.ccci.legacyLockDir"]'
module_expect '{ legacyLockDir = "run/lock"; }' 'badValues' '["services.ccci.legacyLockDir"]'
module_expect '{ legacyLockDir = "/nix/store/x-locks"; }' 'badValues' '["services.ccci.legacyLockDir"]'
module_expect '{ legacyLockDir = "/run/lock"; }' '[ badValues failedAssertions warnings ]' '[[],[],[]]'
module_expect '{ legacyLockDir = "/var/lock"; }' 'failedAssertions' \
  '["services.ccci.legacyLockDir = \"/var/lock\" is a directory of the system'"'"'s own, which the janitor unit would be allowed to write: the old layer'"'"'s lock dir is /run/lock."]'
module_expect '{ lockDir = "/run/lock"; legacyLockDir = "/run/lock"; }' 'failedAssertions' \
  '["services.ccci.legacyLockDir = \"/run/lock\" is the lock dir itself, where the old layer'"'"'s lockfiles are ccci'"'"'s own: leave legacyLockDir null with that lock dir."]'
# Set: the variable in the janitor's unit and host-wide, /run/lock writable for the janitor
# (it unlinks old lockfiles there after a reap) and for no other unit, and no tmpfiles rule
# for it — the same rules as without it.
module_expect '{ legacyLockDir = "/run/lock"; }' \
  '[ services.ccci-janitor.environment.CCCI_LEGACY_LOCK_DIR variables.CCCI_LEGACY_LOCK_DIR services.ccci-janitor.serviceConfig.ReadWritePaths services.ccci-rundir-gc.serviceConfig.ReadWritePaths tmpfiles ]' \
  '["/run/lock","/run/lock",["/run/lock/cc-ci","/var/lib/cc-ci-runs","-/root/.abra","-/run/lock"],["/var/lib/cc-ci-runs","/run/lock/cc-ci"],["d /run/lock/cc-ci 0755 root root -","d /var/lib/cc-ci-runs 0755 root root -"]]'
module_expect '{ legacyLockDir = "/run/lock"; }' 'services.ccci-rundir-gc.environment ? CCCI_LEGACY_LOCK_DIR' 'false'
# Null, the default: nothing of it anywhere, and /run/lock itself writable by no unit.
python3 - "$(eval_module '{ }' '{ inherit units variables tmpfiles; rw = builtins.mapAttrs (_: s: s.serviceConfig.ReadWritePaths) services; }')" <<'PY'
import json, sys
got = json.loads(sys.argv[1])
assert "LEGACY" not in sys.argv[1], f"nix/check.sh: legacyLockDir null, yet: {sys.argv[1]}"
for unit, paths in got["rw"].items():
    for p in paths:
        assert p.lstrip("-+") not in ("/", "/run", "/run/lock", "/var/lock"), f"nix/check.sh: {unit} may write {p}"
PY
# What the units say, besides the hardening: not stopped by a switch, the options reach them.
module_expect '{ }' 'services.ccci-janitor.restartIfChanged' 'false'
module_expect '{ }' 'services.ccci-janitor.unitConfig' '{"X-StopOnRemoval":false}'
module_expect '{ }' 'services.ccci-rundir-gc.unitConfig' '{"X-StopOnRemoval":false}'
module_expect '{ janitor.persistent = false; janitor.randomizedDelaySec = "5m"; gc.randomizedDelaySec = "1h"; }' \
  '[ timers.ccci-janitor.timerConfig timers.ccci-rundir-gc.timerConfig ]' \
  '[{"OnCalendar":"*:0/10","Persistent":false,"RandomizedDelaySec":"5m"},{"OnCalendar":"daily","Persistent":true,"RandomizedDelaySec":"1h"}]'
module_expect '{ package = "/p"; gc.resultsOlderThan = "90d"; }' 'services.ccci-rundir-gc.serviceConfig.ExecStart' \
  '"\"/p/bin/ccci-rundir\" \"gc\" \"--older-than\" \"7d\" \"--results-older-than\" \"90d\""'
module_expect '{ protectRegex = "^keep-%n"; }' 'services.ccci-janitor.environment.CCCI_PROTECT_RE' '"^keep-%%n"'
module_expect '{ protectRegex = "^keep-%n"; }' 'variables.CCCI_PROTECT_RE' '"^keep-%n"'
# The unit files, written as NixOS writes them, load in a real systemd without a warning
# (an unknown or misspelt directive would be ignored, and its hardening with it).
if command -v systemd-analyze >/dev/null; then
  units=$(mktemp -d)
  mkdir "$units/bin"
  for tool in ccci-janitor ccci-rundir; do ln -s "$(type -P true)" "$units/bin/$tool"; done
  # With every optional path set, so that each directive the module can write is verified.
  python3 - "$units" "$(eval_module "{ package = \"$units\"; janitor.metricsFile = \"/var/lib/ccci-metrics/janitor.prom\"; legacyLockDir = \"/run/lock\"; }" units)" <<'PY'
import json, subprocess, sys
units, files = sys.argv[1], json.loads(sys.argv[2])
for name, text in files.items():
    with open(f"{units}/{name}", "w") as f:
        f.write(text)
out = subprocess.run(["systemd-analyze", "verify", *[f"{units}/{n}" for n in files]],
                     capture_output=True, text=True)
assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), \
    f"nix/check.sh: systemd-analyze verify of the module's units: {out.stdout}{out.stderr}"
# systemd's own measure of their exposure (0 to 10, lower is better), held where the
# hardening has it: a directive lost or weakened raises it.
import re
for name, ceiling in {"ccci-janitor.service": 1.4, "ccci-rundir-gc.service": 1.2}.items():
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", f"{units}/{name}"],
                         capture_output=True, text=True).stdout
    level = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    assert level <= ceiling, f"nix/check.sh: {name}: exposure {level} > {ceiling}:\n{out}"
PY
  rm -rf "$units"
  echo "systemd-analyze: the module's units load without a warning, exposure within bounds"
fi
echo "evaluated what needs no nixpkgs"
