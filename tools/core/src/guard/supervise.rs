//! The guard's event loop: one command, a deadline, a grace period, and nothing left
//! behind.
//!
//! Single-threaded, and it waits in exactly one place: `poll(2)` on a `signalfd(2)`
//! (plus, during the final sweep, the leftovers' pidfds), with the next timer — the
//! deadline or the end of the grace period — as the timeout. The signals it reads are
//! blocked before the command is forked (`guard/signals.rs` says which, and why);
//! reading a signal fills a `signalfd_siginfo` on the stack, so nothing is allocated per
//! signal. The parent's death is told from a thread's end in `guard/parent.rs`.
//!
//! A caller that ignored SIGCHLD would make the kernel reap our children behind our back
//! (`waitpid(2)`, NOTES), so SIGCHLD goes back to its default in the guard — and back to
//! ignored in the command.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::child::Ended;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{Pid, getpid};

use crate::child::{self, Inherited, Leftover, Signo, SpawnError, Sweep, signal_group};
use crate::duration::{Human, format as human};
use crate::guard::TOOL;
pub use crate::guard::ending::{Cause, Ending, Termination};
use crate::guard::parent::{self, ParentWatch};
use crate::guard::signals::{self, FORWARDED, REQUESTS};
use crate::timefmt;

/// What to run and how long it may take.
#[derive(Clone, Debug)]
pub struct Plan {
    pub command: Vec<OsString>,
    /// `None`: no deadline.
    pub deadline: Option<Duration>,
    pub grace: Duration,
    pub deadline_signal: Signo,
    pub parent_death: bool,
    pub quiet: bool,
}

pub use crate::guard::log::say;

/// Run the plan to the end: spawn, supervise, sweep, reap. `Err` only when the command
/// could not be started.
pub fn supervise(plan: &Plan) -> Result<Ending, SpawnError> {
    // First: without a /proc of its own the guard could neither find nor sweep the
    // command's leftovers (it would wait for them forever, or signal strangers).
    child::tree::check_proc().map_err(|problem| SpawnError::Proc {
        program: plan
            .command
            .first()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        problem,
    })?;
    let inherited = Inherited::record();
    let watched = signals::watched(&inherited, plan.parent_death);
    let setup = |what, errno| SpawnError::Setup {
        program: TOOL.into(),
        what,
        errno,
    };
    signals::block(&watched).map_err(|e| setup("blocking signals", e))?;
    if inherited.ignores(Signal::SIGCHLD) {
        // SAFETY: SIG_DFL installs no handler code.
        let _ = unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) };
    }
    let signals = SignalFd::with_flags(&watched, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| setup("signalfd", e))?;
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| setup("PR_SET_CHILD_SUBREAPER", e))?;
    let mut orphaned = None;
    let mut parent = None;
    if plan.parent_death {
        let (watch, gone) = ParentWatch::arm().map_err(|e| setup("PR_SET_PDEATHSIG", e))?;
        orphaned = gone.then_some(watch.parent);
        parent = Some(watch);
    }

    let pid = child::spawn(&plan.command, &inherited)?;
    let start = Instant::now();
    let started_at = timefmt::now_millis();
    let mut run = Run {
        plan,
        pid,
        start,
        termination: None,
        grace_end: None,
        kill_sent: false,
        parent,
    };
    if orphaned.is_some() {
        // As if the parent-death signal had come: the same TERM, the same grace. Signal
        // first — before even the start line — and log after.
        run.request(Signal::SIGTERM);
    }
    if !plan.quiet {
        let deadline = match plan.deadline {
            Some(d) => format!("deadline {} at {}", human(d), timefmt::seconds_from_now(d)),
            None => "no deadline".to_owned(),
        };
        say(format_args!(
            "{TOOL}: running '{}' as pid {pid} ({deadline}, grace {})",
            joined(&plan.command),
            human(plan.grace)
        ));
    }
    if let Some(parent) = orphaned {
        say(format_args!(
            "{TOOL}: parent pid {parent} died before the guard could watch it; sending TERM to process group {pid}"
        ));
    }
    let status = run.until_the_command_exits(&signals);
    let ran_for = start.elapsed();
    // Decided before the sweep: a KILL the sweep sends to leftovers says nothing about
    // how the command died.
    // A KILL the guard sent is either the end of the grace period or the deadline signal
    // itself (`-s KILL`): both are 137, as `timeout -s KILL` reports it.
    let kill_by_deadline = run
        .termination
        .is_some_and(|t| t.cause == Cause::Deadline && t.signal == Signo::from(Signal::SIGKILL));
    let killed =
        (run.kill_sent || kill_by_deadline) && status == Ended::Signaled(Signal::SIGKILL as i32);
    let leftovers = run.sweep(&signals);
    Ok(Ending {
        pid,
        started_at,
        ran_for,
        killed,
        status,
        termination: run.termination,
        leftovers,
    })
}

struct Run<'a> {
    plan: &'a Plan,
    pid: Pid,
    start: Instant,
    termination: Option<Termination>,
    grace_end: Option<Instant>,
    kill_sent: bool,
    /// The parent whose death ends the command (`None`: `--no-parent-death`).
    parent: Option<ParentWatch>,
}

impl Run<'_> {
    fn until_the_command_exits(&mut self, signals: &SignalFd) -> Ended {
        let deadline = self.plan.deadline.map(|d| self.start + d);
        loop {
            if let Some(status) = child::reap(self.pid).watched {
                return status;
            }
            let now = Instant::now();
            if self.termination.is_none() && deadline.is_some_and(|d| now >= d) {
                self.deadline_reached();
            }
            if !self.kill_sent && self.grace_end.is_some_and(|end| now >= end) {
                self.grace_over();
            }
            let next = match (self.termination, self.kill_sent) {
                (None, _) => deadline,
                (Some(_), false) => self.grace_end,
                (Some(_), true) => None,
            };
            let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            wait(&mut fds, next.map(|t| t.saturating_duration_since(now)));
            self.drain(signals, None);
        }
    }

    fn deadline_reached(&mut self) {
        let signal = self.plan.deadline_signal;
        // Signal first, log after: a log line can block on a full stderr pipe, and the
        // deadline must not wait for whoever reads the log.
        signal_group(self.pid, signal);
        signal_group(self.pid, Signal::SIGCONT);
        self.terminating(Cause::Deadline, signal);
        say(format_args!(
            "== guard: deadline {} reached — sending {} to process group {} ==",
            human(self.plan.deadline.unwrap_or_default()),
            signal.name(),
            self.pid
        ));
    }

    fn terminating(&mut self, cause: Cause, signal: impl Into<Signo>) {
        self.termination = Some(Termination {
            cause,
            signal: signal.into(),
            at: self.start.elapsed(),
        });
        self.grace_end = Some(Instant::now() + self.plan.grace);
    }

    fn grace_over(&mut self) {
        let count = child::tree::descendants(getpid()).len();
        self.kill_sent = true;
        signal_group(self.pid, Signal::SIGKILL);
        Sweep::new(getpid(), Signal::SIGKILL).step();
        say(format_args!(
            "== guard: grace {} over — sending KILL to {count} process{} ==",
            human(self.plan.grace),
            if count == 1 { "" } else { "es" }
        ));
    }

    /// A termination request (TERM, INT, HUP, QUIT to the guard): the first is forwarded
    /// and starts the grace clock; later ones are only logged, so that a second TERM
    /// cannot cut the command's own cleanup short.
    fn request(&mut self, signal: Signal) {
        if self.termination.is_none() {
            signal_group(self.pid, signal);
            // A stopped command would never run its cleanup: wake it, as the deadline does.
            signal_group(self.pid, Signal::SIGCONT);
            self.terminating(Cause::Signal, signal);
        } else {
            self.already_terminating();
        }
    }

    fn already_terminating(&self) {
        match self.grace_end {
            Some(end) if !self.kill_sent => say(format_args!(
                "{TOOL}: already terminating; KILL in {}",
                Human(end.saturating_duration_since(Instant::now()))
            )),
            _ => say(format_args!("{TOOL}: already terminating")),
        }
    }

    /// Act on every signal waiting in the signalfd. `sweep`: the command has been reaped
    /// and these are its leftovers, so a request shortens nothing, and a forwarded signal
    /// goes to them alone, through their pidfds: the command's pid, which was its
    /// process group id, is free now, and a `killpg(2)` could reach whoever got it next.
    fn drain(&mut self, signals: &SignalFd, sweep: Option<&Sweep>) {
        let swept = sweep.is_some();
        while let Ok(Some(info)) = signals.read_signal() {
            if let Some(watch) = self.parent.as_mut()
                && info.ssi_signo as i32 == parent::death_signal()
            {
                let parent = watch.parent;
                if watch.thread_ended(info.ssi_pid as i32) {
                    self.parent_died(parent, swept);
                }
                continue;
            }
            let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match signal {
                Signal::SIGCHLD | Signal::SIGPIPE => {}
                s if REQUESTS.contains(&s) && swept => self.already_terminating(),
                s if REQUESTS.contains(&s) => self.request(s),
                s if FORWARDED.contains(&s) => match sweep {
                    Some(sweep) => sweep.forward(s),
                    // Not reaped yet, even if it has exited: its group id is still its own.
                    None => {
                        signal_group(self.pid, s);
                    }
                },
                // Blocked only so they cannot kill or stop the guard (ALRM, TSTP, ...).
                _ => {}
            }
        }
    }

    /// The parent died ([`ParentWatch::thread_ended`]): that ends the command as a TERM
    /// to the guard would.
    fn parent_died(&mut self, parent: Pid, swept: bool) {
        if swept || self.termination.is_some() {
            self.already_terminating();
        } else {
            self.request(Signal::SIGTERM);
            say(format_args!(
                "{TOOL}: parent pid {parent} died; sending TERM to process group {}",
                self.pid
            ));
        }
    }

    /// The command has exited: end every descendant still alive (TERM, grace, KILL),
    /// reap everything, and return what had to be ended.
    fn sweep(&mut self, signals: &SignalFd) -> Vec<Leftover> {
        let first = if self.kill_sent {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        let mut sweep = Sweep::new(getpid(), first);
        // One grace period per termination: leftovers of a command that was asked to end
        // get what is left of the clock that request started, not a fresh one.
        let grace_end = match (self.termination, self.grace_end) {
            (Some(_), Some(end)) => end,
            _ => Instant::now() + self.plan.grace,
        };
        self.grace_end = Some(grace_end);
        loop {
            let children_left = child::reap(self.pid).children_left;
            let alive = sweep.step();
            if alive == 0 && !children_left {
                return sweep.ended;
            }
            let now = Instant::now();
            if !sweep.is_killing() && now >= grace_end {
                // Signal first, log after, as at the deadline.
                self.kill_sent = true;
                let killed = sweep.escalate();
                say(format_args!(
                    "== guard: grace {} over — sending KILL to {killed} process{} ==",
                    human(self.plan.grace),
                    if killed == 1 { "" } else { "es" }
                ));
            }
            let mut fds: Vec<PollFd<'_>> = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            let mut blind = alive == 0;
            for fd in sweep.pidfds() {
                match fd {
                    Some(fd) => fds.push(PollFd::new(fd, PollFlags::POLLIN)),
                    None => blind = true,
                }
            }
            let mut timeout =
                (!sweep.is_killing()).then(|| grace_end.saturating_duration_since(now));
            if !sweep.is_killing() && alive > 0 {
                // Look again soon for a process that swallowed its TERM before exec.
                timeout = timeout.map(|t| t.min(LOOK_AGAIN));
            }
            if blind {
                // Something we cannot poll for: a process without a pidfd, or a child
                // not yet seen by the walk. Look again soon.
                timeout = Some(timeout.map_or(POLL_AGAIN, |t| t.min(POLL_AGAIN)));
            }
            wait(&mut fds, timeout);
            self.drain(signals, Some(&sweep));
        }
    }
}

/// How soon the sweep looks again when it has nothing to poll on.
const POLL_AGAIN: Duration = Duration::from_millis(10);
/// How often the sweep looks for leftovers that exec'd after their TERM (see
/// `child::sweep`).
const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// The one place the guard waits.
fn wait(fds: &mut [PollFd<'_>], timeout: Option<Duration>) {
    let timeout = match timeout {
        // Rounded up, so a timer less than a millisecond away does not spin.
        Some(t) => PollTimeout::try_from(t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    };
    let _ = poll(fds, timeout);
}

fn joined(command: &[OsString]) -> String {
    command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
