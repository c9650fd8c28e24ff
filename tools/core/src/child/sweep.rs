//! The final sweep: end every descendant still alive once the command has exited.
//!
//! The sweep is a small state machine the supervisor drives from its one wait: each
//! [`Sweep::step`] walks the tree again (a process may fork between two walks), pins
//! and signals what it had not seen yet, and forgets what has gone. First every leftover
//! gets TERM followed by CONT (a stopped process would not act on TERM until continued);
//! when the grace period runs out, [`Sweep::escalate`] sends SIGKILL to what is left,
//! and from then on newcomers get SIGKILL at once.
//!
//! A TERM can be swallowed: a shell that traps TERM and has just forked a child runs its
//! own handler in that child until the child execs (`fork(2)` keeps handlers, `execve(2)`
//! resets them), so a TERM landing in between only sets a flag in a process that is about
//! to become, say, `sleep 100` — which then never hears of it. So each step also looks
//! for processes whose name changed since they were signalled (they have exec'd) and
//! sends them TERM again, and the supervisor keeps stepping on a short timer while it
//! waits.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::tree::{self, Pinned, descendants};

/// A process the guard ended after the command had exited, with the last signal it sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    pub pid: i32,
    pub comm: String,
    pub signal: Signal,
}

#[derive(Debug)]
pub struct Sweep {
    root: Pid,
    signal: Signal,
    alive: Vec<(Pinned, usize)>,
    /// Pidfds held among `alive`, and how many may be: a descriptor for each, counted
    /// once, so that no pin ever finds none left for its start-time check.
    held: usize,
    holdable: usize,
    pub ended: Vec<Leftover>,
}

impl Sweep {
    /// A sweep of `root`'s descendants that starts with `signal` (TERM, or KILL when the
    /// grace period is already spent).
    pub fn new(root: Pid, signal: Signal) -> Sweep {
        Sweep {
            root,
            signal,
            alive: Vec::new(),
            held: 0,
            holdable: tree::spare_descriptors(),
            ended: Vec::new(),
        }
    }

    /// Forget what has gone, signal what is new, signal again what has exec'd since;
    /// returns how many are still alive.
    pub fn step(&mut self) -> usize {
        let signal = self.signal;
        let ended = &mut self.ended;
        let held = &mut self.held;
        self.alive.retain_mut(|(pinned, index)| {
            let Some(now) = pinned.current() else {
                *held -= usize::from(pinned.pidfd().is_some());
                return false;
            };
            if now.comm != pinned.stat.comm {
                ended[*index].comm.clone_from(&now.comm);
                pinned.stat.comm = now.comm;
                send(pinned, signal);
            }
            true
        });
        for stat in descendants(self.root) {
            let known = self
                .alive
                .iter()
                .any(|(p, _)| p.stat.pid == stat.pid && p.stat.start_time == stat.start_time);
            if known {
                continue;
            }
            let Some(pinned) = Pinned::pin(stat, self.held < self.holdable) else {
                continue;
            };
            self.held += usize::from(pinned.pidfd().is_some());
            self.ended.push(Leftover {
                pid: pinned.stat.pid,
                comm: pinned.stat.comm.clone(),
                signal: self.signal,
            });
            send(&pinned, self.signal);
            self.alive.push((pinned, self.ended.len() - 1));
        }
        self.alive.len()
    }

    /// The grace period is over: SIGKILL everything still alive, and newcomers from now
    /// on. Returns how many were killed.
    pub fn escalate(&mut self) -> usize {
        self.signal = Signal::SIGKILL;
        let held = &mut self.held;
        self.alive.retain(|(p, _)| {
            let gone = p.is_gone();
            *held -= usize::from(gone && p.pidfd().is_some());
            !gone
        });
        for (pinned, index) in &self.alive {
            if pinned.signal(Signal::SIGKILL) {
                self.ended[*index].signal = Signal::SIGKILL;
            }
        }
        self.alive.len()
    }

    /// Send `signal` to every leftover still alive (a USR1 the guard forwards once the
    /// command is gone), each through its pin, so it reaches no one else.
    pub fn forward(&self, signal: Signal) {
        for (pinned, _) in &self.alive {
            pinned.signal(signal);
        }
    }

    pub fn is_killing(&self) -> bool {
        self.signal == Signal::SIGKILL
    }

    /// Pidfds of the processes still alive, for poll(2); `None` in the list means one has
    /// no pidfd (old kernel) and the caller must poll on a timer instead.
    pub fn pidfds(&self) -> impl Iterator<Item = Option<BorrowedFd<'_>>> {
        self.alive
            .iter()
            .map(|(p, _)| p.pidfd().map(|fd| fd.as_fd()))
    }
}

fn send(pinned: &Pinned, signal: Signal) {
    pinned.signal(signal);
    if signal != Signal::SIGKILL {
        pinned.signal(Signal::SIGCONT);
    }
}

/// `4301 (ssh), 4302 (sleep)`, for the finish line.
/// At most this many leftovers are named in a log line (the report lists them all): a
/// line must stay one short write, whatever ran wild.
const NAMED: usize = 20;

pub fn describe(leftovers: &[Leftover]) -> String {
    let mut out = leftovers
        .iter()
        .take(NAMED)
        .map(|l| format!("{} ({})", l.pid, l.comm))
        .collect::<Vec<_>>()
        .join(", ");
    if leftovers.len() > NAMED {
        out.push_str(&format!(" and {} more", leftovers.len() - NAMED));
    }
    out
}
