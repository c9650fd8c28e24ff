//! The run's deploy counter (`CCCI_DEPLOY_COUNT_FILE`): one JSON line per deploy, read back
//! by `ccci-deploy count`.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::domain::Domain;
use crate::exit::Failure;
use crate::timefmt;

/// One line of the deploy count file.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeployRecord {
    pub domain: String,
    pub at: String,
    pub pid: u32,
}

/// Record one deploy of `domain`: one JSON line appended with a single `write(2)` on an
/// `O_APPEND` descriptor, so concurrent writers never interleave or overwrite.
pub fn record_deploy(count_file: &Path, domain: &Domain) -> io::Result<()> {
    let record = DeployRecord {
        domain: domain.to_string(),
        at: timefmt::now_seconds(),
        pid: std::process::id(),
    };
    let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(count_file)?;
    file.write_all(&line)
}

/// The number of deploys recorded (of `domain` only, if given). A missing file is 0; a
/// line that is not a record is not a deploy.
pub fn deploys(count_file: &Path, domain: Option<&Domain>) -> io::Result<usize> {
    let text = match fs::read(count_file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<DeployRecord>(l).ok())
        .filter(|r| domain.is_none_or(|d| r.domain == d.as_str()))
        .count())
}

/// `ccci-deploy count`: the deploys recorded in this run's count file (see [`deploys`]).
pub fn deploys_in_run(domain: Option<&Domain>) -> Result<usize, Failure> {
    let file = super::rules::count_file()?;
    Ok(deploys(&file, domain).with_context(|| format!("cannot read {}", file.display()))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploys_are_counted_per_domain() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("deploys");
        let (a, b) = (
            Domain::parse("a.b").unwrap(),
            Domain::parse("a.b.c").unwrap(),
        );
        assert_eq!(deploys(&file, None).unwrap(), 0);
        record_deploy(&file, &a).unwrap();
        record_deploy(&file, &b).unwrap();
        record_deploy(&file, &a).unwrap();
        assert_eq!(deploys(&file, None).unwrap(), 3);
        assert_eq!(deploys(&file, Some(&a)).unwrap(), 2);
        assert_eq!(deploys(&file, Some(&b)).unwrap(), 1);
        let line: serde_json::Value =
            serde_json::from_str(fs::read_to_string(&file).unwrap().lines().next().unwrap())
                .unwrap();
        assert_eq!(line["domain"], "a.b");
        assert_eq!(line["pid"], std::process::id());
    }
}
