//! ccci-gen: write the man pages and shell completions of the five tools, from the clap
//! definitions the tools themselves parse with. A build step (README, nix/package.nix),
//! not an installed tool: it keeps clap_mangen and clap_complete out of the tools.

mod tools;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Command, Parser};
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, roman};

const AFTER_HELP: &str = "\
WRITES:
  DIR/man/man1/ccci-<tool>.1, and ccci-<tool>-<subcommand>.1 for each subcommand
  DIR/completions/bash/ccci-<tool>
  DIR/completions/zsh/_ccci-<tool>
  DIR/completions/fish/ccci-<tool>.fish
  Files already there are overwritten; nothing else in DIR is touched.

EXIT STATUS:
  0   everything was written
  1   a directory or file could not be written (the message names it)
  2   usage error";

/// Write the man pages and shell completions of the ccci tools.
#[derive(Parser, Debug)]
#[command(name = "ccci-gen", version, after_help = AFTER_HELP)]
struct Cli {
    /// Directory to write into, created if missing (e.g. target/share)
    #[arg(value_name = "DIR")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match generate(&cli.out) {
        Ok(written) => {
            println!(
                "ccci-gen: wrote {written} files under {}",
                cli.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("ccci-gen: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every tool's pages and completions; how many files were written.
fn generate(out: &Path) -> anyhow::Result<usize> {
    let mut written = 0;
    for cmd in tools::commands() {
        written += man_pages(cmd.clone(), &out.join("man/man1"))?;
        written += completions(cmd, &out.join("completions"))?;
    }
    Ok(written)
}

/// A page for the tool and one for each of its subcommands, which the tool's page lists
/// as ccci-deploy-up(1) and so on.
fn man_pages(cmd: Command, dir: &Path) -> anyhow::Result<usize> {
    // `help` is clap's subcommand, not the tool's: it gets no page.
    let mut cmd = cmd.disable_help_subcommand(true);
    // Gives the subcommands their page names (ccci-deploy-up) and usage (ccci-deploy up).
    cmd.build();
    // The footer of every page names the tool and its version, a subcommand's too.
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    write_pages(&cmd, &source, dir)
}

fn write_pages(cmd: &Command, source: &str, dir: &Path) -> anyhow::Result<usize> {
    let mut written = 0;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += write_pages(sub, source, dir)?;
    }
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    write(
        &dir.join(format!("{name}.1")),
        render_page(cmd, source)?.as_bytes(),
    )?;
    Ok(written + 1)
}

/// clap_mangen's page, except for the after-help text (EXIT STATUS, ENVIRONMENT, ...):
/// clap_mangen puts it all in one EXTRA section as filled text, which runs the tables
/// together; here each of its headings is a section, its lines kept as they are.
fn render_page(cmd: &Command, source: &str) -> io::Result<String> {
    let man = Man::new(cmd.clone()).source(source);
    let mut w = Vec::new();
    // Not man.render_title: it writes the empty date as nothing at all, which makes the
    // source the date, the footer's middle, and leaves its left empty (clap-rs/clap#6040).
    let title = cmd.get_display_name().unwrap_or(cmd.get_name());
    Roff::new()
        .control("TH", [title, "1", "\"\"", source])
        .to_writer(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    man.render_options_section(&mut w)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut w)?;
    }
    if let Some(text) = cmd.get_after_help() {
        after_help_sections(&text.to_string()).to_writer(&mut w)?;
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut w)?;
    }
    // Each part starts with the same preamble (what comes before .TH): once is enough.
    let page = String::from_utf8_lossy(&w);
    let preamble = &page[..page.find(".TH").unwrap_or(0)];
    Ok(format!("{preamble}{}", page.replace(preamble, "")))
}

fn after_help_sections(text: &str) -> Roff {
    let mut roff = Roff::new();
    let mut in_section = false;
    let mut blank = false;
    for line in text.lines() {
        if line.trim().is_empty() {
            blank = true;
            continue;
        }
        if let Some(heading) = heading(line) {
            if in_section {
                roff.control("fi", []);
            }
            roff.control("SH", [heading]).control("nf", []);
            (in_section, blank) = (true, false);
            continue;
        }
        if !in_section {
            roff.control("SH", ["NOTES"]).control("nf", []);
            in_section = true;
        }
        if blank {
            roff.control("sp", []);
            blank = false;
        }
        // The section indents its body already.
        roff.text([roman(line.strip_prefix("  ").unwrap_or(line))]);
    }
    if in_section {
        roff.control("fi", []);
    }
    roff
}

/// `EXIT STATUS:` at the start of a line.
fn heading(line: &str) -> Option<&str> {
    let h = line.strip_suffix(':')?;
    let upper = h.chars().all(|c| c.is_ascii_uppercase() || c == ' ');
    (upper && h.starts_with(|c: char| c.is_ascii_uppercase())).then_some(h)
}

/// Each shell's script, under the file name that shell looks for.
fn completions(mut cmd: Command, dir: &Path) -> anyhow::Result<usize> {
    let name = cmd.get_name().to_owned();
    let scripts = [
        (Shell::Bash, format!("bash/{name}")),
        (Shell::Zsh, format!("zsh/_{name}")),
        (Shell::Fish, format!("fish/{name}.fish")),
    ];
    for (shell, file) in &scripts {
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut cmd, &name, &mut script);
        if *shell == Shell::Bash {
            script = fix_bash_states(&name, &String::from_utf8_lossy(&script)).into_bytes();
        }
        if *shell == Shell::Zsh {
            script = fix_zsh_last(&cmd, &String::from_utf8_lossy(&script)).into_bytes();
        }
        write(&dir.join(file), &script)?;
    }
    Ok(scripts.len())
}

/// clap_complete 4.6 spells the state of a hyphenated command's subcommand two ways in
/// bash, `ccci__deploy__subcmd__up` where it sets it and `ccci__subcmd__deploy__subcmd__up`
/// where it matches it, so the options of `ccci-deploy up` and `ccci-rundir gc` would never
/// complete (clap-rs/clap#6421). Once clap_complete is fixed this replaces nothing.
fn fix_bash_states(name: &str, script: &str) -> String {
    let matched = format!("{}__subcmd__", name.replace('-', "__subcmd__"));
    let set = format!("{}__subcmd__", name.replace('-', "__"));
    script.replace(&matched, &set)
}

/// clap_complete 4.6 gives zsh a `last` positional (ccci-rundir's `-- COMMAND`) a place in
/// front of the subcommand, so zsh takes the `gc` of `ccci-rundir gc --<TAB>` for the
/// command and offers ccci-rundir's options, never gc's (clap-rs/clap#6313). Here that spec
/// goes and the subcommand is the first positional again, as the fix proposed upstream has
/// it. The price: right after `ccci-rundir --`, zsh offers the subcommands, not files.
/// Once clap_complete is fixed this changes nothing.
fn fix_zsh_last(cmd: &Command, script: &str) -> String {
    let mut script = script.to_owned();
    if !cmd.has_subcommands() {
        return script;
    }
    // The subcommand's place among the positionals, `$line[N]`, up to the command's `case`.
    let n = cmd.get_positionals().count() + 1;
    let (old, new) = (format!("$line[{n}]"), format!("$line[{}]", n - 1));
    let Some(case) = script.find(&format!("case {old} in")) else {
        return script;
    };
    let (head, tail) = script.split_at(case + format!("case {old} in").len());
    // Clap allows one `last` positional.
    let Some(last) = cmd.get_positionals().find(|a| a.is_last_set()) else {
        return script;
    };
    // `'::command -- help:_default' \`, with one colon if it is required.
    let is_spec = |line: &&str| {
        let spec = line.strip_prefix('\'').unwrap_or_default();
        let rest = spec.trim_start_matches(':');
        spec.len() - rest.len() <= 2
            && (rest.strip_prefix(last.get_id().as_str()))
                .is_some_and(|r| r.starts_with([' ', ':']))
    };
    if let Some(spec) = head.lines().find(is_spec) {
        script = format!(
            "{}{tail}",
            head.replacen(&format!("{spec}\n"), "", 1)
                .replace(&old, &new)
        );
    }
    script
}

fn write(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}
