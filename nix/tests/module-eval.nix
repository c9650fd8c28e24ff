# nix/module.nix evaluated without nixpkgs, for nix/check.sh: against a small stand-in of
# the nixpkgs lib functions it calls, with its own option defaults (and `settings` over
# them) as the configuration. It catches a misspelt name or attribute path, an option
# docs/nix.md does not list, and units that do not say what the module means; it does not
# check option types the way the module system does (the stand-in only runs each type's
# check on the value given), nor how NixOS renders the units: `nixos-rebuild build` and the
# VM test, with nixpkgs, do that.
{
  settings ? { },
}:
let
  inherit (builtins)
    attrNames
    concatMap
    filter
    isAttrs
    mapAttrs
    ;
  isOption = v: isAttrs v && v._type or null == "option";
  # `b` over `a`, attribute sets merged all the way down.
  update =
    a: b:
    a
    // mapAttrs (n: v: if isAttrs v && isAttrs (a.${n} or null) && !(v ? _type) then update a.${n} v else v) b;

  lib = rec {
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption =
      name:
      mkOption {
        default = false;
        type = types.bool;
        description = "Whether to enable ${name}.";
      };
    mkPackageOption =
      pkgs: name: _:
      mkOption {
        default = pkgs.${name};
        type = types.package;
      };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    optional = cond: x: if cond then [ x ] else [ ];
    optionalAttrs = cond: attrs: if cond then attrs else { };
    getExe' = pkg: exe: "${pkg}/bin/${exe}";
    types =
      let
        type = name: check: { inherit name check; };
      in
      {
        bool = type "bool" builtins.isBool;
        str = type "str" builtins.isString;
        singleLineStr = type "singleLineStr" (s: builtins.isString s && builtins.match "[^\n\r]*\n?" s != null);
        path = type "path" (p: (builtins.isString p || builtins.isPath p) && builtins.substring 0 1 (toString p) == "/");
        package = type "package" (_: true);
        nullOr = t: type "nullOr ${t.name}" (v: v == null || t.check v);
        listOf = t: type "listOf ${t.name}" (vs: builtins.isList vs && builtins.all t.check vs);
        addCheck = t: check: t // { check = v: t.check v && check v; };
      };
  };

  # nixpkgs' utils.escapeSystemdExecArgs, for strings.
  utils.escapeSystemdExecArgs = args: builtins.concatStringsSep " " (map (a: builtins.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON a)) args);
  pkgs.ccci = "/nix/store/00000000000000000000000000000000-ccci";

  module = import ../module.nix {
    inherit config lib utils pkgs;
  };
  defaultsOf = mapAttrs (_: v: if isOption v then v.default else defaultsOf v);
  config = {
    services.ccci = update (defaultsOf module.options.services.ccci) settings;
    virtualisation.docker = {
      enable = true;
      package = "/nix/store/00000000000000000000000000000000-docker";
    };
  };

  # The definitions in force: mkIf and mkMerge resolved.
  active =
    def:
    if def._type or null == "if" then
      (if def.condition then active def.content else [ ])
    else if def._type or null == "merge" then
      concatMap active def.contents
    else
      [ def ];
  defs = active module.config;
  collect = f: concatMap f defs;
  merged = f: builtins.foldl' (a: b: a // b) { } (map f defs);

  # Every option, as `services.ccci.<path>`, with the value it has here.
  optionList =
    prefix: opts:
    concatMap (
      n:
      if isOption opts.${n} then
        [
          {
            name = "${prefix}.${n}";
            option = opts.${n};
          }
        ]
      else
        optionList "${prefix}.${n}" opts.${n}
    ) (attrNames opts);
  valueAt = path: builtins.foldl' (a: n: a.${n}) config (filter builtins.isString (builtins.split "\\." path));
  options = optionList "services.ccci" module.options.services.ccci;

  # The unit files, written the way NixOS's systemd-lib writes them (one line per list
  # element, booleans as true/false, each Environment= entry JSON-quoted), for
  # `systemd-analyze verify`.
  value = v: if v == true then "true" else if v == false then "false" else toString v;
  section =
    attrs:
    builtins.concatStringsSep "" (
      concatMap (n: map (v: "${n}=${value v}\n") (if builtins.isList attrs.${n} then attrs.${n} else [ attrs.${n} ])) (
        attrNames attrs
      )
    );
  unitSection =
    def:
    "[Unit]\n"
    + section (
      {
        Description = def.description;
      }
      // (if def ? after then { After = def.after; } else { })
      // (if def ? requires then { Requires = def.requires; } else { })
      // def.unitConfig or { }
    );
  services = merged (d: d.systemd.services or { });
  timers = merged (d: d.systemd.timers or { });
  unitFiles =
    mapAttrs (
      _: def:
      unitSection def
      + "[Service]\n"
      + builtins.concatStringsSep "" (
        map (n: "Environment=${builtins.toJSON "${n}=${def.environment.${n}}"}\n") (attrNames def.environment)
      )
      + section def.serviceConfig
    ) services
    // builtins.listToAttrs (
      map (n: {
        name = "${n}.timer";
        value = unitSection timers.${n} + "[Timer]\n" + section timers.${n}.timerConfig;
      }) (attrNames timers)
    );
in
{
  # Names, and whether the value here passes the option's check.
  options = map (o: o.name) options;
  badValues = map (o: o.name) (filter (o: !(o.option.type.check (valueAt o.name))) options);
  failedAssertions = map (a: a.message) (filter (a: !a.assertion) (collect (d: d.assertions or [ ])));
  warnings = collect (d: d.warnings or [ ]);
  variables = merged (d: d.environment.variables or { });
  tmpfiles = collect (d: d.systemd.tmpfiles.rules or [ ]);
  inherit services timers;
  units = builtins.listToAttrs (
    map (n: {
      name = if builtins.match ".*\\.timer" n != null then n else "${n}.service";
      value = unitFiles.${n};
    }) (attrNames unitFiles)
  );
}
