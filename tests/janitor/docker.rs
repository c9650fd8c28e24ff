//! When docker fails the janitor: unreachable (69, nothing removed), a call that hangs in
//! a reap (killed, the domain let go at once), a listing that hangs (the pass ends).

use std::fs;
use std::process::Command;

use super::only;
use crate::support::{Background, output_within, stack, text};
use crate::swarm::{self, App, leftovers};

#[test]
fn docker_unreachable_is_69_and_nothing_is_removed() {
    let mut app = App::new();
    let d = app.domain("j8");
    fs::create_dir_all(app.sb.lock_dir()).unwrap();
    fs::write(app.sb.lockfile(&d), "").unwrap();
    app.env_only(&d);
    let mut cmd = app.janitor(&only(&[&d]), &[]);
    cmd.env("DOCKER_HOST", "unix:///nonexistent.sock");
    let out = output_within(cmd);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(app.sb.lockfile(&d).exists() && app.env_file(&d).exists());
}

#[test]
fn a_hung_docker_call_is_killed_and_the_janitor_lets_go_of_the_domain_at_once() {
    // Issue 17: with a docker that hangs on `secret rm`, the janitor hung for ever while
    // holding the orphan's lock, and a new run of that domain waited with it.
    if !swarm::available(
        "a_hung_docker_call_is_killed_and_the_janitor_lets_go_of_the_domain_at_once",
    ) {
        return;
    }
    let mut app = App::new();
    // Probed in this order: the one whose `secret rm` hangs, then one whose `secret rm`
    // waits at a gate, so the test looks while the pass is still going on.
    let (hung, next) = (app.domain("j14a"), app.domain("j14b"));
    let secret = |d: &str| format!("{}_pw_v1", stack(d));
    for d in [&hung, &next] {
        app.env_only(d);
        let create = Command::new("sh")
            .args(["-c", "echo x | docker secret create \"$0\" -", &secret(d)])
            .output()
            .unwrap();
        assert!(create.status.success(), "{}", text(&create.stderr));
    }
    let gate = app.sb.fifo("gate");
    let mark = app.sb.path("hang.mark");
    let mut cmd = app.janitor(&only(&[&hung, &next]), &["--timeout", "10s"]);
    cmd.env("CCCI_DOCKER", swarm::hang())
        .env("HANG_REAL", "docker")
        .env("HANG_MARK", &mark)
        .env("HANG_ON", format!("secret rm {}", secret(&hung)))
        .env("GATE_ON", format!("secret rm {}", secret(&next)))
        .env("GATE", &gate.path);
    let mut janitor = Background::spawn(cmd);
    let (_, line) = janitor.wait_for_any_within(
        std::time::Duration::from_secs(40),
        &[&format!("error reaping {hung}")],
    );
    assert!(
        line.contains(&format!(
            "secret rm {}` did not finish within ",
            secret(&hung)
        )) && line.ends_with("— killed"),
        "{line}"
    );
    // The pass went on to the next domain, and is held there ...
    swarm::wait_for_line(&mark, "gated", crate::support::PATIENCE);
    assert!(
        janitor.child.try_wait().unwrap().is_none(),
        "the pass ended"
    );
    // ... while a new run of the hung domain gets its lock at once.
    let lock = output_within({
        let mut c = app.sb.cmd("ccci-lock");
        c.args(["-n", &hung, "--", "true"]);
        c
    });
    assert!(lock.status.success(), "{}", text(&lock.stderr));
    // Nothing of the hung docker is left running: neither it nor the child it started.
    let hung_line = swarm::wait_for_line(&mark, "hung", crate::support::PATIENCE);
    for pid in hung_line.split_whitespace().skip(1) {
        assert!(!swarm::running(pid), "{pid} of {hung_line:?} still runs");
    }
    gate.release();
    let (status, lines) = janitor.finish();
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("ccci-janitor: reaped {next}"))),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains(", 1 errors in ")),
        "{lines:?}"
    );
    // Left for the next pass: its lockfile, its .env and its secret are still there.
    assert!(app.sb.lockfile(&hung).exists() && app.env_file(&hung).exists());
    assert_eq!(
        leftovers(&stack(&hung)),
        [format!("secret {}", secret(&hung))]
    );
}

#[test]
fn a_docker_listing_that_hangs_ends_the_pass_within_its_bound_touching_nothing() {
    // Outside a reap, each call gets a minute, or --timeout when that is shorter.
    if !swarm::available(
        "a_docker_listing_that_hangs_ends_the_pass_within_its_bound_touching_nothing",
    ) {
        return;
    }
    let mut app = App::new();
    let d = app.domain("j15");
    app.env_only(&d);
    let mut cmd = app.janitor(&only(&[&d]), &["--timeout", "5s"]);
    cmd.env("CCCI_DOCKER", swarm::hang())
        .env("HANG_REAL", "docker")
        .env("HANG_MARK", app.sb.path("hang.mark"))
        .env("HANG_ON", "secret ls*");
    let (status, lines) = Background::spawn(cmd).finish_within(std::time::Duration::from_secs(40));
    assert_eq!(status.code(), Some(1), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("ccci-janitor: `")
            && l.contains(" secret ls --format ")
            && l.ends_with("` did not finish within 5s — killed")),
        "{lines:?}"
    );
    assert!(app.env_file(&d).exists(), "touched after a failed listing");
    assert!(
        !app.sb.lockfile(&d).exists(),
        "probed after a failed listing"
    );
}
