//! The janitor's unlink race. A waiter blocked on a lockfile's inode when the holder
//! (by the janitor's rule: while holding, after its work is done — so its `leave` mark
//! comes before the unlink) unlinks the name wakes holding a dead inode,
//! while a newcomer holds a fresh inode under the same name. ccci-lock must notice
//! (identity check), reopen, and never hold D together with the newcomer.
//! flock(1) has exactly this race.

use super::{D, hold};
use crate::support::{Background, Sandbox, assert_no_overlap, sh_with};

/// A holder script that marks its entry with the inode it holds, then waits on `gate`.
fn marked(name: &str, log: &str, gate: &str) -> String {
    format!(
        "echo \"enter {name} $(stat -L -c %i /proc/$$/fd/$CCCI_LOCK_FD)\" >> '{log}'; \
         read x < '{gate}'; echo \"leave {name}\" >> '{log}'"
    )
}

#[test]
fn a_waiter_woken_on_an_unlinked_inode_never_overlaps_the_newcomer() {
    let sb = Sandbox::new();
    let log = sb.path("log").display().to_string();
    for round in 0..20 {
        let gate = |name: &str| sb.fifo(&format!("{name}{round}"));
        let (ga, ga2, gb, gc) = (gate("a"), gate("a2-"), gate("b"), gate("c"));
        let p = |g: &crate::support::Gate| g.path.display().to_string();

        // Phase 1: A holds D.
        let a_script = format!(
            "echo \"enter A{round} $(stat -L -c %i /proc/$$/fd/$CCCI_LOCK_FD)\" >> '{log}'; \
             read x < '{}'; echo \"leave A{round}\" >> '{log}'; \
             rm \"$CCCI_LOCK_FILE\"; echo unlinked >&2; read x < '{}'",
            p(&ga),
            p(&ga2)
        );
        let mut a = hold(&sb, D, &[], &a_script);

        // Phase 2: B blocks on A's inode.
        let mut b = sb.cmd("ccci-lock");
        b.args([
            D,
            "--",
            "sh",
            "-c",
            &marked(&format!("B{round}"), &log, &p(&gb)),
        ]);
        let mut b = Background::spawn(b);
        b.wait_for("— waiting ==");

        // Phase 3: A, still holding, unlinks the name.
        ga.release();
        a.wait_for("unlinked");

        // Phase 4: C, started after the unlink, creates and holds a fresh inode; A holds
        // the dead one still, so C waits for A to end (step 6) — holding its own lock.
        let mut c = sb.cmd("ccci-lock");
        c.args([
            D,
            "--",
            "sh",
            "-c",
            &marked(&format!("C{round}"), &log, &p(&gc)),
        ]);
        let mut c = Background::spawn(c);
        let line = c.wait_for("removed by hand — waiting for it to end ==");
        assert!(
            line.contains(&format!("held by pid {} (sh)", a.pid())),
            "{line}"
        );

        // Phase 5: A exits; B wakes on the dead inode. It must notice and reopen, never
        // enter on it. Then B and C both want the fresh inode (C waited for A without
        // holding it, see step 6): whichever enters first, the other waits for it.
        ga2.release();
        assert!(a.finish().0.success());
        let (which, line) = b.wait_for_any(&["reopening", "== app lock: acquired"]);
        assert_eq!(
            which, 0,
            "round {round}: B acquired without noticing the unlink: {line}"
        );
        let first = first_to_enter(
            &log,
            &[&format!("enter B{round} "), &format!("enter C{round} ")],
        );
        let (first, mut second, first_gate, second_gate) = if first == 0 {
            (b, c, gb, gc)
        } else {
            (c, b, gc, gb)
        };
        let line = second.wait_for("— waiting ==");
        assert!(
            line.contains(&format!("(pid {}", first.pid())),
            "round {round}: {line}"
        );

        // Phase 6: the first leaves, then the second holds the same fresh inode.
        first_gate.release();
        let (status, lines) = first.finish();
        assert!(status.success(), "{lines:?}");
        second_gate.release();
        let (status, lines) = second.finish();
        assert!(status.success(), "{lines:?}");
    }
    let log = std::fs::read_to_string(sb.path("log")).unwrap();
    assert_eq!(assert_no_overlap(&log), 60);
    // Every round: B and C held the same, new inode; A's was another.
    let inode = |who: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("enter {who} ")))
            .unwrap_or_else(|| panic!("{who} never entered"))
            .to_owned()
    };
    for round in 0..20 {
        assert_eq!(
            inode(&format!("B{round}")),
            inode(&format!("C{round}")),
            "round {round}"
        );
        assert_ne!(
            inode(&format!("A{round}")),
            inode(&format!("B{round}")),
            "round {round}"
        );
    }
}

#[test]
fn holders_that_unlink_on_the_way_out_never_overlap_under_load() {
    // Four workers, each taking D 25 times; every holder unlinks the lockfile before it
    // leaves, as the janitor does. Any interleaving must keep them apart.
    let sb = Sandbox::new();
    let log = sb.path("log").display().to_string();
    let script = format!(
        "i=0; while [ $i -lt 25 ]; do \"$0\" -q {D} -- sh -c \
         'echo \"enter $$\" >> {log}; echo \"leave $$\" >> {log}; rm \"$CCCI_LOCK_FILE\"' || exit 1; \
         i=$((i+1)); done"
    );
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let mut w = sh_with("ccci-lock", &script);
            w.env("CCCI_APP_LOCK_DIR", sb.lock_dir());
            Background::spawn(w)
        })
        .collect();
    for w in workers {
        let (status, lines) = w.finish();
        assert!(status.success(), "{lines:?}");
    }
    assert_eq!(
        assert_no_overlap(&std::fs::read_to_string(sb.path("log")).unwrap()),
        100
    );
}

#[test]
fn a_shared_probe_never_makes_a_run_think_the_domain_is_busy() {
    // --status and the janitor's dry run hold LOCK_SH for an instant. A tight loop of
    // such probes must not turn `ccci-lock -n` into a false "held".
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.lock_dir()).unwrap();
    std::fs::write(sb.lockfile(D), "").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (stop, path) = (Arc::clone(&stop), sb.lockfile(D));
        std::thread::spawn(move || {
            let mut probes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let f = std::fs::File::open(&path).unwrap();
                if f.try_lock_shared().is_ok() {
                    probes += 1;
                }
            }
            probes
        })
    };
    for _ in 0..50 {
        sb.assert("ccci-lock")
            .args(["-n", D, "--", "true"])
            .assert()
            .code(0);
    }
    stop.store(true, Ordering::Relaxed);
    assert!(prober.join().unwrap() > 0);
}

/// Wait until one of `marks` is in the log (a line a holder wrote on entering); which.
fn first_to_enter(log: &str, marks: &[&str]) -> usize {
    let end = std::time::Instant::now() + crate::support::PATIENCE;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(i) = marks.iter().position(|m| text.contains(m)) {
            return i;
        }
        assert!(std::time::Instant::now() < end, "none of {marks:?} entered");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
