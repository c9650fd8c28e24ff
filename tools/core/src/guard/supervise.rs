//! The guard's event loop: one command, a deadline, a grace period, and nothing left
//! behind.
//!
//! Single-threaded, and it waits in exactly one place: `poll(2)` on a `signalfd(2)`
//! (plus, during the final sweep, the leftovers' pidfds), with the next timer — the
//! deadline or the end of the grace period — as the timeout. Every signal the guard acts
//! on is blocked (`pthread_sigmask(3)`) *before* the command is forked, so a TERM or a
//! SIGCHLD that arrives during start-up waits in the signalfd instead of being lost or
//! killing the guard; reading a signal fills a `signalfd_siginfo` on the stack, so
//! nothing is allocated per signal.
//!
//! Signals the caller ignored (`nohup`'s HUP, a background job's INT and QUIT) are left
//! ignored rather than blocked: the guard does not act on what its caller asked it to
//! ignore. TERM is the exception: it is how a runner asks the guard to stop, and a guard
//! deaf to it could only be SIGKILLed, which skips the command's teardown. So is the
//! guard's own parent-death signal ([`parent_death_signal`]).
//! SIGPIPE is blocked so that a log line written to a closed stderr fails with EPIPE
//! instead of killing the guard mid-teardown. A caller that ignored SIGCHLD would make
//! the kernel reap our children behind our back (`waitpid(2)`, NOTES), so SIGCHLD goes
//! back to its default in the guard — and back to ignored in the command.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::child::Ended;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{Pid, getpid, getppid};

use crate::child::{self, Inherited, Leftover, Signo, SpawnError, Sweep, signal_group};
use crate::duration::{Human, format as human};
pub use crate::guard::ending::{Cause, Ending, Termination};
use crate::timefmt;

pub const TOOL: &str = "ccci-guard";

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

const REQUESTS: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];
const FORWARDED: [Signal; 4] = [
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

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
    let mut watched = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGCHLD, Signal::SIGPIPE] {
        watched.add(signal);
    }
    for signal in REQUESTS.into_iter().chain(FORWARDED) {
        if !inherited.ignores(signal) {
            watched.add(signal);
        }
    }
    // Every other asynchronous signal too, so none can kill or stop the guard and leave
    // the command unsupervised (ALRM, TSTP, VTALRM, ...): they are read and dropped. Not
    // the synchronous ones (a real fault must not be blocked) nor those the caller
    // ignored (blocked, they would queue instead of vanishing).
    for signal in Signal::iterator() {
        let synchronous = matches!(
            signal,
            Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGFPE
                | Signal::SIGILL
                | Signal::SIGTRAP
                | Signal::SIGSYS
        );
        if !synchronous
            && !inherited.ignores(signal)
            && signal != Signal::SIGKILL
            && signal != Signal::SIGSTOP
        {
            watched.add(signal);
        }
    }
    // The real-time signals too, which nix's `Signal` lacks, and 32 and 33, which glibc
    // keeps for its threads (the guard has no other): by default each ends a process.
    let mut raw = *watched.as_ref();
    for signo in 32..=nix::libc::SIGRTMAX() {
        if !inherited.ignores_signo(signo) || (plan.parent_death && signo == parent_death_signal())
        {
            add_signo(&mut raw, signo);
        }
    }
    // SAFETY: a valid set with bits added for signals this system has.
    let watched = unsafe { SigSet::from_sigset_t_unchecked(raw) };
    let setup = |what, errno| SpawnError::Setup {
        program: TOOL.into(),
        what,
        errno,
    };
    block(&watched).map_err(|e| setup("blocking signals", e))?;
    if inherited.ignores(Signal::SIGCHLD) {
        // SAFETY: SIG_DFL installs no handler code.
        let _ = unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) };
    }
    let signals = SignalFd::with_flags(&watched, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| setup("signalfd", e))?;
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| setup("PR_SET_CHILD_SUBREAPER", e))?;
    let mut orphaned = None;
    let mut watched_parent = None;
    if plan.parent_death {
        // The parent as the process started, before argument parsing and set-up: a
        // parent that died in between would otherwise go unnoticed.
        let parent = crate::cli::parent_at_start().unwrap_or_else(getppid);
        arm_parent_death_signal().map_err(|e| setup("PR_SET_PDEATHSIG", e))?;
        // The parent may have died before the signal was armed: then none will come.
        orphaned = (getppid() != parent).then_some(parent);
        watched_parent = Some(parent);
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
        parent: watched_parent,
        said_lives_on: false,
        parent_died: false,
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
    parent: Option<Pid>,
    /// "lives on" has been logged: once is news, a line per thread end is noise.
    said_lives_on: bool,
    /// The parent's death has been acted on (or logged).
    parent_died: bool,
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
            if let Some(parent) = self.parent
                && info.ssi_signo as i32 == parent_death_signal()
            {
                self.parent_thread_ended(parent, info.ssi_pid as i32, swept);
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

    /// The parent-death signal came: the thread that forked the guard has ended. By now
    /// the kernel has moved the guard to its new parent, and `getppid()` tells the two
    /// cases apart. Another thread of the same process (the parent lives on: a launcher's
    /// worker thread ended) shows as the same pid, and the signal stays armed for that
    /// thread. A subreaper or init shows as another pid: the parent died, which ends the
    /// command as a TERM would. A recycled pid cannot fool this: the new parent is always
    /// one that was alive together with the old one (an ancestor, or init), so it cannot
    /// have the old one's pid.
    ///
    /// `sender` is the siginfo's pid: the kernel sends the signal as if from the parent
    /// itself, so a parent that lives on and another sender is a stray `kill -RTMAX`,
    /// dropped as any real-time signal is. A parent in another pid namespace (the guard
    /// as a container's pid 1) shows as pid 0, both as the parent and as the sender,
    /// before its death and after: there is no telling then, and the kernel's signal
    /// counts as a death.
    fn parent_thread_ended(&mut self, parent: Pid, sender: i32, swept: bool) {
        let gone = match parent.as_raw() {
            0 => sender == 0,
            _ => getppid() != parent,
        };
        if !gone {
            // A dying launcher's threads end one by one, each sending this anew while
            // getppid() is still the launcher: not "lives on", and the last thread's end
            // brings the verdict. Whatever slips past that is said once.
            if sender == parent.as_raw()
                && !self.said_lives_on
                && !child::tree::is_exiting(parent.as_raw())
            {
                self.said_lives_on = true;
                say(format_args!(
                    "{TOOL}: parent pid {parent} lives on (the thread that started the guard ended): not a parent death"
                ));
            }
        } else if std::mem::replace(&mut self.parent_died, true) {
            // The same death again: signals its other threads' ends queued (real-time
            // signals queue), read only now. Said once already.
        } else if swept || self.termination.is_some() {
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

/// The guard's own parent-death signal (`PR_SET_PDEATHSIG(2const)`). Not TERM: the
/// kernel sends it when the *thread* that forked the guard exits, though the rest of the
/// parent process may live on (a launcher's worker thread: Python `threading`, Go, Java),
/// and it comes with exactly the siginfo of a `kill(2)` from the parent (`SI_USER`,
/// `si_pid` the parent's pid, not the thread's — checked on Linux 6.18), so a TERM from
/// a thread's end could not be told from a TERM the parent sent on purpose. A signal of
/// its own always means "the thread that was our parent is gone", and the guard then
/// asks whether the process went with it ([`Run::parent_thread_ended`]). The last
/// real-time signal: nothing sends it by convention, and real-time signals queue.
fn parent_death_signal() -> i32 {
    nix::libc::SIGRTMAX()
}

fn arm_parent_death_signal() -> Result<(), nix::errno::Errno> {
    // SAFETY: prctl(2) with an option and a signal number; no memory is involved. nix's
    // `set_pdeathsig` takes only the signals its `Signal` has, no real-time one.
    let rc = unsafe {
        nix::libc::prctl(
            nix::libc::PR_SET_PDEATHSIG,
            parent_death_signal() as nix::libc::c_ulong,
        )
    };
    nix::errno::Errno::result(rc).map(drop)
}

/// Add `signo` to `set` without glibc's `sigaddset`, which refuses 32 and 33.
fn add_signo(set: &mut nix::libc::sigset_t, signo: i32) {
    let bits = 8 * std::mem::size_of::<nix::libc::c_ulong>();
    let bit = (signo - 1) as usize;
    // SAFETY: a sigset_t is an array of unsigned longs (glibc, musl), signal N at bit N-1,
    // and `signo` is at most SIGRTMAX, within it.
    unsafe {
        let words = (set as *mut nix::libc::sigset_t).cast::<nix::libc::c_ulong>();
        *words.add(bit / bits) |= 1 << (bit % bits);
    }
}

/// Block `set` in this thread with the system call itself: glibc's `pthread_sigmask`
/// silently leaves out 32 and 33. (The child's `pthread_sigmask` of the caller's mask
/// unblocks them again.)
fn block(set: &SigSet) -> Result<(), nix::errno::Errno> {
    let size = (nix::libc::SIGRTMAX() as usize).div_ceil(8);
    // SAFETY: rt_sigprocmask(2) reads `size` bytes of the set, writes nothing back.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_rt_sigprocmask,
            nix::libc::SIG_BLOCK,
            set.as_ref() as *const nix::libc::sigset_t,
            std::ptr::null_mut::<nix::libc::sigset_t>(),
            size,
        )
    };
    nix::errno::Errno::result(rc).map(drop)
}

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
