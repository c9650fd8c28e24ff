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
# Its Python script, rendered with a stand-in package path, compiles.
script=$(nix-instantiate --eval --strict --json -E 'let t = import ./nix/tests/janitor.nix { module = { }; }; in t.testScript { nodes.machine.services.ccci.package = "/nix/store/00000000000000000000000000000000-ccci"; }')
if command -v python3 >/dev/null; then
  python3 -c 'import json, sys; compile(json.loads(sys.argv[1]), "nix/tests/janitor.nix testScript", "exec")' "$script"
fi
echo "evaluated what needs no nixpkgs"
