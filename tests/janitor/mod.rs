//! ccci-janitor against a real swarm (../shared/spec/janitor.md).
//!
//! The swarm is shared with every other test running at the same time, each with its own
//! lock dir: a janitor here must only ever be eligible for this test's own domains, so
//! every test passes an allowlist naming exactly them.

mod docker;
mod live;
mod reap;
mod switch;
mod unlinked;
mod untraced;

use std::process::Command;

use crate::support::{DEPLOY_PATIENCE, output_in, stack, text};
use crate::swarm::App;

/// An allowlist naming exactly these domains.
fn only(domains: &[&str]) -> String {
    let alts: Vec<String> = domains.iter().map(|d| regex_escape(d)).collect();
    format!("^({})$", alts.join("|"))
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

impl App {
    /// Deploy `domain` through the real chain and leave it up, as a crashed run would.
    fn orphan(&self, run: &str, domain: &str) {
        let up = format!("\"$DEPLOY\" up {domain} --recipe two-services --timeout 2m");
        let out = output_in(self.chain(run, domain, &up), DEPLOY_PATIENCE);
        assert!(
            out.status.success(),
            "deploy of {domain}: {}",
            text(&out.stderr)
        );
    }

    fn janitor(&self, allow: &str, args: &[&str]) -> Command {
        let mut cmd = self.sb.cmd("ccci-janitor");
        cmd.env("CCCI_RUN_APP_RE", allow).args(args);
        cmd
    }

    fn env_file(&self, domain: &str) -> std::path::PathBuf {
        self.sb
            .abra_dir()
            .join(format!("servers/default/{domain}.env"))
    }
}

/// A janitor pass to its end: a reap waits for the stack's containers to stop, which on a
/// loaded machine takes longer than the suite's usual patience.
fn pass_within(cmd: Command) -> std::process::Output {
    crate::support::output_in(cmd, crate::support::DEPLOY_PATIENCE)
}
