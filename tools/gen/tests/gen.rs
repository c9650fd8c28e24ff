//! ccci-gen run as a real process: what it writes, read back as man(1) and the shells
//! would read it.

#[path = "../tools.rs"]
mod tools;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TOOLS: [&str; 5] = [
    "ccci-lock",
    "ccci-guard",
    "ccci-rundir",
    "ccci-deploy",
    "ccci-janitor",
];

fn gen_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ccci-gen"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run")
}

/// Everything ccci-gen writes, in a fresh directory.
fn generated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(gen_cmd().arg(dir.path()));
    assert!(
        out.status.success(),
        "ccci-gen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The text of a roff page with its escapes and font changes undone, as a reader sees it.
fn man_text(roff: &str) -> String {
    roff.replace("\\-", "-")
        .replace("\\*(Aq", "'")
        .replace("\\&", "")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\\\", "\\")
}

/// The `.SH` headings of a roff page.
fn sections(roff: &str) -> Vec<String> {
    roff.lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .map(|h| h.trim_matches('"').to_owned())
        .collect()
}

/// Each command and subcommand, with the name of its page (`ccci-deploy-up`).
fn pages(cmd: &clap::Command, name: &str) -> Vec<(String, clap::Command)> {
    let mut all = vec![(name.to_owned(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        all.extend(pages(sub, &format!("{name}-{}", sub.get_name())));
    }
    all
}

#[test]
fn every_tool_gets_a_man_page_and_three_completions() {
    let dir = generated();
    let names: Vec<String> = tools::commands()
        .iter()
        .map(|c| c.get_name().to_owned())
        .collect();
    assert_eq!(names, TOOLS, "the tools ccci-gen knows");
    for tool in TOOLS {
        for file in [
            format!("man/man1/{tool}.1"),
            format!("completions/bash/{tool}"),
            format!("completions/zsh/_{tool}"),
            format!("completions/fish/{tool}.fish"),
        ] {
            let path = dir.path().join(&file);
            assert!(
                fs::metadata(&path).is_ok_and(|m| m.len() > 0),
                "{file} missing or empty"
            );
        }
    }
    // A page for each subcommand, and none for clap's `help` subcommand.
    let mut written: Vec<String> = fs::read_dir(dir.path().join("man/man1"))
        .expect("man1")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut expected: Vec<String> = TOOLS.iter().map(|t| format!("{t}.1")).collect();
    expected.extend(
        [
            "ccci-deploy-count",
            "ccci-deploy-down",
            "ccci-deploy-status",
            "ccci-deploy-up",
            "ccci-rundir-domain",
            "ccci-rundir-gc",
        ]
        .map(|p| format!("{p}.1")),
    );
    expected.sort();
    assert_eq!(written, expected);
}

#[test]
fn man_pages_name_every_option_subcommand_and_after_help_section() {
    let dir = generated();
    for cmd in tools::commands() {
        let tool = cmd.get_name().to_owned();
        let version = cmd.get_version().expect("version").to_owned();
        for (page, cmd) in pages(&cmd, &tool) {
            let roff = read(&dir.path().join(format!("man/man1/{page}.1")));
            let text = man_text(&roff);
            assert!(
                roff.starts_with(".ie") || roff.starts_with(".TH"),
                "{page}.1 is not roff:\n{roff}"
            );
            // Title, section, date (none), and the source the footer's left names: an
            // argument left out would move the source into the date's place.
            let th = roff
                .lines()
                .find(|l| l.starts_with(".TH "))
                .unwrap_or_default();
            assert_eq!(th, format!(".TH {page} 1 \"\" \"{tool} {version}\""));
            // Hidden ones (ccci-lock's --keeper, its own internal use) are in no page.
            let shown = cmd.get_arguments().filter(|a| !a.is_hide_set());
            for long in shown.filter_map(|a| a.get_long()) {
                assert!(
                    text.contains(&format!("--{long}")),
                    "{page}.1 does not name --{long}:\n{text}"
                );
            }
            for sub in cmd.get_subcommands() {
                let reference = format!("{page}-{}(1)", sub.get_name());
                assert!(
                    text.contains(&reference),
                    "{page}.1 does not list {reference}"
                );
            }
            let Some(after_help) = cmd.get_after_help() else {
                continue;
            };
            let headings = sections(&roff);
            for line in after_help.to_string().lines() {
                match line.strip_suffix(':').filter(|_| !line.starts_with(' ')) {
                    Some(heading) => assert!(
                        headings.iter().any(|h| h == heading),
                        "{page}.1 has no section {heading}: {headings:?}"
                    ),
                    None => assert!(
                        text.contains(line.trim()),
                        "{page}.1 lacks the line {:?}:\n{text}",
                        line.trim()
                    ),
                }
            }
        }
    }
    // What a reader looks up, spelled out so that the test does not only agree with itself.
    for tool in TOOLS {
        let roff = read(&dir.path().join(format!("man/man1/{tool}.1")));
        for section in ["SYNOPSIS", "OPTIONS", "EXIT STATUS", "ENVIRONMENT"] {
            assert!(
                sections(&roff).iter().any(|h| h == section),
                "{tool}.1 has no {section} section"
            );
        }
    }
    let lock = man_text(&read(&dir.path().join("man/man1/ccci-lock.1")));
    for text in [
        "--conflict-exit-code",
        "75                  not acquired",
        "CCCI_APP_LOCK_DIR   the lock dir",
    ] {
        assert!(lock.contains(text), "ccci-lock.1 lacks {text:?}:\n{lock}");
    }
}

/// A page as groff renders it for a terminal 200 columns wide, each line trimmed; None
/// where there is no groff. Any warning of groff's (all enabled) fails.
fn rendered(page: &Path) -> Option<Vec<String>> {
    let out = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-P-cbou", "-rLL=200n", "-ww"])
        .arg(page)
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "groff {}: {stderr}",
        page.display()
    );
    let text = String::from_utf8_lossy(&out.stdout).replace('\u{2212}', "-");
    Some(text.lines().map(|l| l.trim().to_owned()).collect())
}

#[test]
fn after_help_renders_line_for_line() {
    let dir = generated();
    for cmd in tools::commands() {
        let page = dir.path().join(format!("man/man1/{}.1", cmd.get_name()));
        let Some(lines) = rendered(&page) else {
            skip_outside_ci("no groff");
            return;
        };
        let after_help = cmd.get_after_help().expect("after help").to_string();
        // Every line as it is, none run into another: a heading, or a line of a table.
        for raw in after_help.lines().filter(|l| !l.trim().is_empty()) {
            let line = match raw.strip_suffix(':') {
                Some(heading) if !raw.starts_with(' ') => heading,
                _ => raw.trim(),
            };
            assert!(
                lines.iter().any(|l| l == line),
                "{} does not show the line {line:?}:\n{}",
                page.display(),
                lines.join("\n")
            );
        }
    }
}

/// Bash with programmable completion, as an interactive shell has it. Some builds lack
/// it (Nix's non-interactive bash): there the test skips, except in CI.
fn bash_completes() -> bool {
    let out = run(Command::new("bash").args(["-c", "type -t complete"]));
    if String::from_utf8_lossy(&out.stdout).trim() == "builtin" {
        return true;
    }
    skip_outside_ci("this bash has no programmable completion");
    false
}

/// A tool this test needs is missing: skip, except in CI (tests/run.sh installs them all
/// there), where a skip would hide a failure.
fn skip_outside_ci(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}, and CI must run this test (tests/run.sh installs what it needs)"
    );
    eprintln!("skipping: {why}");
}

/// What bash offers for the last of `words`, with the script sourced as bash-completion
/// sources it and called through the function `complete -p` names.
fn bash_complete(script: &Path, words: &[&str]) -> (String, Vec<String>) {
    const DRIVER: &str = r#"
        script=$1; shift
        source "$script" || exit 1
        spec=$(complete -p "$1") || exit 1
        echo "$spec"
        fn=${spec##*-F }; fn=${fn%% *}
        COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
        "$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let out = run(Command::new("bash")
        .args(["-c", DRIVER, "driver"])
        .arg(script)
        .args(words));
    assert!(
        out.status.success(),
        "completing {words:?} with {} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = stdout.lines().map(str::to_owned);
    let spec = lines.next().unwrap_or_default();
    (spec, lines.filter(|l| !l.is_empty()).collect())
}

#[test]
fn bash_completions_parse_register_and_complete() {
    let dir = generated();
    let script = |tool: &str| dir.path().join(format!("completions/bash/{tool}"));
    for tool in TOOLS {
        let out = run(Command::new("bash").arg("-n").arg(script(tool)));
        assert!(
            out.status.success(),
            "{tool}'s bash completion does not parse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !bash_completes() {
        return;
    }
    for tool in TOOLS {
        let (spec, _) = bash_complete(&script(tool), &[tool, ""]);
        assert!(
            spec.starts_with("complete ") && spec.ends_with(&format!(" {tool}")),
            "complete -p {tool}: {spec}"
        );
    }
    // Options of the tool, and of the subcommands of the two tools that have some.
    for (words, expected) in [
        (&["ccci-lock", "--lock"][..], "--lock-dir"),
        (&["ccci-deploy", "up", "--re"][..], "--recipe"),
        (&["ccci-rundir", "gc", "--older"][..], "--older-than"),
    ] {
        let (_, offered) = bash_complete(&script(words[0]), words);
        assert_eq!(offered, [expected], "completing {words:?}");
    }
}

#[test]
fn zsh_and_fish_completions_are_for_their_tool() {
    let dir = generated();
    for tool in TOOLS {
        let zsh = read(&dir.path().join(format!("completions/zsh/_{tool}")));
        assert!(
            zsh.starts_with(&format!("#compdef {tool}\n")),
            "_{tool}: {}",
            zsh.lines().next().unwrap_or_default()
        );
        let fish = read(&dir.path().join(format!("completions/fish/{tool}.fish")));
        assert!(
            fish.contains(&format!("complete -c {tool} ")),
            "{tool}.fish:\n{fish}"
        );
    }
}

/// What an interactive zsh offers for `line`, with the completion functions in `fpath`
/// loaded by compinit: the shell runs in a pseudo-terminal (zsh/zpty), a TAB is typed,
/// and `compadd` prints every match. None where there is no zsh with zsh/zpty.
fn zsh_complete(fpath: &Path, line: &str) -> Option<Vec<String>> {
    const DRIVER: &str = r#"
        zmodload zsh/zpty || exit 3
        zpty z zsh -f -i
        zpty -w z "PROMPT=; RPROMPT=; fpath=(${(q)1} \$fpath); autoload -U compinit; compinit -u -D"
        zpty -w z 'compadd() { local -a m; builtin compadd -O m "$@"; print -rl -- "<${^m[@]}>"; builtin compadd "$@" }'
        zpty -w z 'nul() { print -n $'"'"'\0\n'"'"' }; compprefuncs=(nul); comppostfuncs=(nul exit)'
        zpty -w z 'bindkey "^I" complete-word'
        zpty -n -w z "$2"$'\t'
        integer seen=0
        while zpty -r z line; do
          if [[ $line == *$'\0'* ]]; then (( seen++ )) && exit 0; continue; fi
          (( seen )) && print -r -- $line
        done
        exit 4
    "#;
    let out = Command::new("timeout")
        .args(["60", "zsh", "-f", "-c", DRIVER, "driver"])
        .arg(fpath)
        .arg(line)
        .output()
        .ok()?;
    if out.status.code() == Some(127) || out.status.code() == Some(3) {
        skip_outside_ci("no zsh with zsh/zpty");
        return None;
    }
    assert!(out.status.success(), "zsh completing {line:?}: {out:?}");
    let mut offered: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix('<')?.strip_suffix('>'))
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    offered.sort();
    offered.dedup();
    Some(offered)
}

#[test]
fn zsh_completes_the_options_of_a_subcommand() {
    let dir = generated();
    let fpath = dir.path().join("completions/zsh");
    // ccci-rundir's `-- COMMAND` must not take the place of its subcommand.
    let rundir = read(&fpath.join("_ccci-rundir"));
    assert!(
        !rundir.contains("'::command") && rundir.contains("case $line[1] in"),
        "_ccci-rundir:\n{rundir}"
    );
    for (line, expected) in [
        (
            "ccci-rundir gc --",
            &[
                "--dry-run",
                "--help",
                "--json",
                "--older-than",
                "--results-older-than",
                "--runs-dir",
            ][..],
        ),
        ("ccci-rundir gc --ol", &["--older-than"]),
        ("ccci-deploy up --re", &["--recipe"]),
        ("ccci-lock --lock", &["--lock-dir"]),
    ] {
        let Some(offered) = zsh_complete(&fpath, line) else {
            return;
        };
        assert_eq!(offered, expected, "zsh completing {line:?}");
    }
}

fn assert_fails_naming(out: &Output, path: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.starts_with("ccci-gen: ") && stderr.contains(&path.display().to_string()),
        "the message does not name {}: {stderr}",
        path.display()
    );
}

#[test]
fn an_output_directory_that_cannot_be_written_fails_naming_the_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A regular file where a directory must go stops root too, whom no mode stops.
    let file = tmp.path().join("file");
    fs::write(&file, "").expect("write");
    let out_dir: PathBuf = file.join("share");
    let out = run(gen_cmd().arg(&out_dir));
    assert_fails_naming(&out, &out_dir);

    // A page that cannot be written, in a directory that can.
    let out_dir = tmp.path().join("share");
    let page = out_dir.join("man/man1/ccci-lock.1");
    fs::create_dir_all(&page).expect("mkdir");
    let out = run(gen_cmd().arg(&out_dir));
    assert_fails_naming(&out, &page);

    // And, not as root, a directory without write permission.
    let read_only = tmp.path().join("read-only");
    fs::create_dir(&read_only).expect("mkdir");
    fs::set_permissions(&read_only, fs::Permissions::from_mode(0o555)).expect("chmod");
    if fs::write(read_only.join("probe"), "").is_err() {
        let out = run(gen_cmd().arg(&read_only));
        assert_fails_naming(&out, &read_only);
    }
}

#[test]
fn help_says_what_it_writes_and_usage_errors_exit_2() {
    let out = run(gen_cmd().arg("--help"));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for text in [
        "Usage: ccci-gen <DIR>",
        "DIR/man/man1/ccci-<tool>.1",
        "DIR/completions/bash/ccci-<tool>",
    ] {
        assert!(help.contains(text), "--help lacks {text:?}:\n{help}");
    }
    assert_eq!(run(&mut gen_cmd()).status.code(), Some(2));
}
