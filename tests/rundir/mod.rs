//! ccci-rundir end to end (../shared/spec/rundir.md, "What the tests must show").

mod domain;
mod gc;
mod retention;
mod run;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::support::{Background, Gate, Sandbox, exists};

/// Make a run dir look idle since `when` (`touch -d`): the directory and its `state/`,
/// which gc judges a run's age by, links not followed.
pub fn age(run: &Path, when: &str) {
    for p in [run.to_owned(), run.join("state")]
        .iter()
        .filter(|p| exists(p))
    {
        let ok = Command::new("touch")
            .args(["-h", "-d", when])
            .arg(p)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

/// The `KEY=VALUE` lines a command printed (`env`), for the variables rundir sets.
pub fn vars(stdout: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("CCCI_") || *k == "ABRA_DIR")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `ccci-rundir --run-id ID -- sh -c 'read x < gate'` in the background, once its run dir
/// is laid out and its run lock held: a run in progress until `gate` is released.
pub fn run_holding(sb: &Sandbox, id: &str, gate: &Gate) -> Background {
    let mut cmd = sb.cmd("ccci-rundir");
    cmd.args(["--run-id", id, "--", "sh", "-c"])
        .arg(format!("read x < '{}'", gate.path.display()));
    let mut run = Background::spawn(cmd);
    run.wait_for("== run dir:");
    run
}
