//! ccci-rundir end to end (../shared/spec/rundir.md, "What the tests must show").

mod gc;
mod run;

use std::collections::BTreeMap;

/// The `KEY=VALUE` lines a command printed (`env`), for the variables rundir sets.
pub fn vars(stdout: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("CCCI_") || *k == "ABRA_DIR")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
