//! A hung docker or abra call ends `up` and `down` by their timeout, and a killed deploy
//! leaves no child of abra holding the domain lock.

use std::time::Duration;

use crate::support::{DEPLOY_PATIENCE, stack};
use crate::swarm::{self, App};

/// A docker or abra call that hangs, and what it must do to `ccci-deploy`.
struct Hang<'a> {
    run: &'a str,
    domain: &'a str,
    script: String,
    /// The stand-in is abra (else docker).
    abra: bool,
    /// `HANG_ON` and `HANG_AFTER` of `tests/fixtures/hang`.
    on: &'a str,
    after: u32,
    /// What the error must name.
    command: String,
}

#[test]
fn a_hung_docker_or_abra_ends_up_and_down_by_their_timeout_naming_the_command() {
    // Issue 17: a `docker service ls` that hangs made `--timeout` meaningless.
    if !swarm::available(
        "a_hung_docker_or_abra_ends_up_and_down_by_their_timeout_naming_the_command",
    ) {
        return;
    }
    let mut app = App::new();
    let (a, b, c) = (app.domain("t10a"), app.domain("t10b"), app.domain("t10c"));
    let cases = [
        // The teardown's first listing.
        Hang {
            run: "10a",
            domain: &a,
            script: format!("\"$DEPLOY\" down {a} --timeout 5s"),
            abra: false,
            on: "service ls*",
            after: 0,
            command: "service ls --format {{json .}}`".into(),
        },
        // abra deploying.
        Hang {
            run: "10b",
            domain: &b,
            script: format!("\"$DEPLOY\" up {b} --recipe two-services --timeout 10s"),
            abra: true,
            on: "app deploy *",
            after: 0,
            command: format!("app deploy {b} --chaos --offline --no-converge-checks --no-input`"),
        },
        // The second convergence poll, after a real deploy and a first poll.
        Hang {
            run: "10c",
            domain: &c,
            script: format!("\"$DEPLOY\" up {c} --recipe two-services --timeout 15s"),
            abra: false,
            on: "service ls*",
            after: 1,
            command: format!(
                "service ls --filter label=com.docker.stack.namespace={}",
                stack(&c)
            ),
        },
    ];
    for case in cases {
        let mut cmd = app.chain(case.run, case.domain, &case.script);
        let (var, real) = if case.abra {
            ("CCCI_ABRA", swarm::abra())
        } else {
            ("CCCI_DOCKER", "docker".into())
        };
        let mark = app.sb.path(&format!("hang-{}.mark", case.run));
        cmd.env(var, swarm::hang())
            .env("HANG_REAL", real)
            .env("HANG_MARK", &mark)
            .env("HANG_ON", case.on)
            .env("HANG_AFTER", case.after.to_string());
        // Generous: the bound is the tool's --timeout; far past it is a hang.
        let (status, lines) =
            crate::support::Background::spawn(cmd).finish_within(Duration::from_secs(90));
        let run = case.run;
        assert_eq!(status.code(), Some(1), "{run}: {lines:?}");
        assert!(
            lines.iter().any(|l| l.starts_with("ccci-deploy: `")
                && l.contains(&case.command)
                && l.contains(" did not finish within ")
                && l.contains("— killed")),
            "{run}: {lines:?}"
        );
        let mark = std::fs::read_to_string(&mark).unwrap_or_default();
        assert!(mark.starts_with("hung "), "{run}: {mark:?}");
        for pid in mark.split_whitespace().skip(1) {
            assert!(!swarm::running(pid), "{run}: {pid} ({mark:?}) still runs");
        }
    }
}

#[test]
fn a_killed_deploy_leaves_no_child_of_abra_holding_the_domain_lock() {
    // ccci-deploy is killed (a cancelled job) while a hung abra runs: abra dies with it
    // (parent-death signal), but what abra started lives on in its own process group
    // until something sweeps it (ccci-guard does). It must not hold the domain's lock:
    // docker and abra never get the lock descriptor ccci-lock handed down.
    if !swarm::available("a_killed_deploy_leaves_no_child_of_abra_holding_the_domain_lock") {
        return;
    }
    let mut app = App::new();
    let d = app.domain("tk");
    let mark = app.sb.path("hang-k.mark");
    let up = format!("\"$DEPLOY\" up {d} --recipe two-services --timeout 2m");
    let mut cmd = app.chain("k1", &d, &up);
    cmd.env("CCCI_ABRA", swarm::hang())
        .env("HANG_REAL", swarm::abra())
        .env("HANG_MARK", &mark)
        .env("HANG_ON", "app deploy *");
    let bg = crate::support::Background::spawn(cmd);
    let end = std::time::Instant::now() + DEPLOY_PATIENCE;
    let hung = loop {
        let m = std::fs::read_to_string(&mark).unwrap_or_default();
        if m.starts_with("hung ") {
            break m;
        }
        assert!(std::time::Instant::now() < end, "abra never hung");
        std::thread::sleep(Duration::from_millis(20));
    };
    let pids: Vec<String> = hung.split_whitespace().skip(1).map(str::to_owned).collect();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pids[0])).unwrap();
    let deploy: i32 = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(deploy),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let (status, lines) = bg.finish_within(DEPLOY_PATIENCE);
    assert!(!status.success(), "{lines:?}");
    // Whatever of abra's still runs, the domain is free for the next run.
    let lockfile = app.sb.lockfile(&d);
    let end = std::time::Instant::now() + crate::support::PATIENCE;
    while std::fs::File::open(&lockfile)
        .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
    {
        let alive: Vec<&String> = pids.iter().filter(|p| swarm::running(p)).collect();
        assert!(
            std::time::Instant::now() < end,
            "the domain lock is still held by what abra left: {alive:?} of {hung:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in pids.iter().filter(|p| swarm::running(p)) {
        let _ = std::process::Command::new("kill")
            .args(["-9", p.as_str()])
            .status();
    }
}
