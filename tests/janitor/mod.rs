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

use std::fs;
use std::process::Command;

use crate::support::{Background, DEPLOY_PATIENCE, Gate, output_in, stack, text};
use crate::swarm::App;
use crate::swarm::only;

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

    /// Only the app's `.env`, as a deploy writes it first: the janitor sees an app of
    /// `domain`, and nothing of it on the swarm is there to wait for.
    fn env_only(&self, domain: &str) {
        fs::write(self.env_file(domain), "TYPE=two-services\n").unwrap();
    }
}

/// A fresh app whose domain (`prefix`, `j<n>`) was deployed by run `<n>` and left up.
fn with_orphan(prefix: &str) -> (App, String) {
    let mut app = App::new();
    let d = app.domain(prefix);
    app.orphan(&prefix[1..], &d);
    (app, d)
}

/// A live run of `domain`: a real process holding its lock until the gate is released.
fn live_run(app: &App, domain: &str, gate: &str) -> (Gate, Background) {
    let gate = app.sb.fifo(gate);
    let holder = crate::lock::hold_until(&app.sb, domain, &gate);
    (gate, holder)
}

/// A janitor pass to its end: a reap waits for the stack's containers to stop, which on a
/// loaded machine takes longer than the suite's usual patience.
fn pass_within(cmd: Command) -> std::process::Output {
    output_in(cmd, DEPLOY_PATIENCE)
}
