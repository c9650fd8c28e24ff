//! ccci-rundir: give the run its own abra tree and run-keyed state files, then exec.
#![no_main]

mod cli;

use std::ffi::{OsStr, OsString};
use std::time::Duration;

use ccci_core::child::exec;
use ccci_core::cli::{emit, emit_bytes, parse_or_exit, regex_arg, run_tool};
use ccci_core::env::{EnvVars, canonical_abra_dir};
use ccci_core::exit::{Exit, Failure};
use ccci_core::run::appdomain::{self, BuildParams};
use ccci_core::run::rundir::{RunDir, RunsDir};
use ccci_core::run::rungc::{self, GcEntry, Retention};
use ccci_core::run::runid::RunId;
use ccci_core::{diag, duration, say, wrapper_main};
use cli::{Cli, Sub, TOOL};

wrapper_main!(rundir_main);

fn rundir_main() -> i32 {
    let cli: Cli = parse_or_exit(TOOL, Exit::ToolFailed);
    let result = match cli.sub {
        Some(Sub::Gc {
            older_than,
            results_older_than,
            dry_run,
            json,
            ref runs,
        }) => {
            let retention = Retention {
                older_than,
                results_older_than,
            };
            gc(&runs.runs_dir, &retention, dry_run, json)
        }
        Some(Sub::Domain {
            ref recipe,
            ref pr,
            ref git_ref,
            ref suffix,
            ref run_app_re,
        }) => domain(
            // Missing ones are refused by name (RECIPE, PR, REF) in `derive`.
            &BuildParams {
                recipe: recipe.as_deref().unwrap_or_default(),
                pr: pr.as_deref().unwrap_or_default(),
                git_ref: git_ref.as_deref().unwrap_or_default(),
            },
            suffix,
            run_app_re,
        ),
        None => run(cli),
    };
    run_tool(TOOL, Exit::ToolFailed, result.map_err(Failure::from))
}

/// `domain`: print the run's app domain, or refuse one the janitor would not know.
fn domain(params: &BuildParams<'_>, suffix: &str, run_app_re: &str) -> anyhow::Result<i32> {
    let domain = appdomain::derive(params, suffix)?;
    let pattern = regex_arg(run_app_re, "--run-app-re", EnvVars::CCCI_RUN_APP_RE)?;
    if !pattern.is_match(domain.as_str()) {
        anyhow::bail!(
            "the derived domain {domain} does not match the run-app pattern {run_app_re} ({}): the janitor would never reap what a crashed run left — fix --suffix / {} or the pattern",
            EnvVars::CCCI_RUN_APP_RE,
            EnvVars::CCCI_DOMAIN_SUFFIX
        );
    }
    emit(&format!("{domain}\n"))?;
    Ok(Exit::Success.code())
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    if cli.print != cli.command.is_empty() {
        anyhow::bail!(match cli.print {
            true => "--print takes no command",
            false => "no command given after `--` (usage: ccci-rundir [OPTIONS] -- <COMMAND>...)",
        });
    }
    let id = match RunId::or_drone_build(cli.run_id)? {
        Some(id) => id,
        None => RunId::parse(&manual_run_id())?,
    };
    let canonical = canonical_abra_dir(cli.abra_dir).map_err(anyhow::Error::msg)?;
    let run = RunDir::prepare(&RunsDir::new(cli.runs.runs_dir), id, &canonical)?;
    let vars = run.vars();
    if cli.print {
        print_vars(&vars, cli.json)?;
        return Ok(Exit::Success.code());
    }
    say!(
        "== run dir: {} (ABRA_DIR={}) ==",
        run.path.display(),
        run.abra_dir().display()
    );
    run.into_inherited_fd()?;
    let env: Vec<(&str, &OsStr)> = vars.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    let err = exec::exec(&cli.command, &env);
    diag!(TOOL, "{err}");
    Ok(err.status.code())
}

fn manual_run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("manual-{secs}-{}", std::process::id())
}

fn print_vars(vars: &[(&str, OsString)], json: bool) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if json {
        let mut doc = serde_json::Map::new();
        doc.insert("version".into(), 1.into());
        for (k, v) in vars {
            let Some(v) = v.to_str() else {
                anyhow::bail!(
                    "{k} is not valid UTF-8 ({v:?}), which JSON cannot carry: use --print without --json"
                );
            };
            doc.insert((*k).into(), v.into());
        }
        emit(&format!("{}\n", serde_json::Value::Object(doc)))?;
    } else {
        let mut lines = Vec::new();
        for (k, v) in vars {
            lines.extend_from_slice(format!("{k}=").as_bytes());
            lines.extend(shell_quote(v.as_bytes()));
            lines.push(b'\n');
        }
        emit_bytes(&lines)?;
    }
    Ok(())
}

/// Single-quote for POSIX sh, byte for byte, so `eval "$(ccci-rundir --print)"` gives
/// back exactly the path, whatever it contains.
fn shell_quote(s: &[u8]) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in s {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

fn gc(
    runs_dir: &std::path::Path,
    retention: &Retention,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<i32> {
    let report = rungc::gc(&RunsDir::new(runs_dir), retention, dry_run)?;
    if json {
        emit(&format!("{}\n", serde_json::to_string(&report)?))?;
    } else {
        let would = if dry_run { "would " } else { "" };
        let line = |verb: &str, run: &GcEntry, tail: String| {
            let idle = duration::format(Duration::from_secs(run.idle_s));
            format!(
                "{would}{verb} run {} ({}, idle {idle}){tail}\n",
                run.run_id, run.path
            )
        };
        let mut lines = String::new();
        for run in &report.removed {
            let with = match run.results.is_empty() {
                true => String::new(),
                false => format!(", results included: {}", run.results.join(", ")),
            };
            lines += &line(if dry_run { "remove" } else { "removed" }, run, with);
        }
        for run in &report.pruned {
            let kept = format!(": kept {}", run.results.join(", "));
            lines += &line(if dry_run { "prune" } else { "pruned" }, run, kept);
        }
        emit(&lines)?;
    }
    for run in &report.failed {
        diag!(
            TOOL,
            "cannot remove run {} ({}): {}",
            run.run_id,
            run.path,
            run.reason.as_deref().unwrap_or("?")
        );
    }
    Ok(if report.failed.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    }
    .code())
}
