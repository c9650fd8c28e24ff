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
script=$(nix-instantiate --eval --strict --json -E 'let t = import ./nix/tests/janitor.nix { module = { }; }; l = import ./nix/lib.nix; in t.testScript { nodes.machine.services.ccci = { package = "/nix/store/00000000000000000000000000000000-ccci"; lockDir = "/run/lock/ccci-vm"; runsDir = "/var/lib/cc-ci-runs"; canonicalAbraDir = "/root/.abra"; runAppRegex = l.runAppRegex; protectRegex = "^warm-|^keep-%n-$HOME"; }; }')
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
echo "evaluated what needs no nixpkgs"
