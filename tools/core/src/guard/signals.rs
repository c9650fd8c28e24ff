//! Which signals the guard blocks and reads from its signalfd, and blocking them.
//!
//! Every signal the guard acts on is blocked (`pthread_sigmask(3)`) *before* the command
//! is forked, so a TERM or a SIGCHLD that arrives during start-up waits in the signalfd
//! instead of being lost or killing the guard.
//!
//! Signals the caller ignored (`nohup`'s HUP, a background job's INT and QUIT) are left
//! ignored rather than blocked: the guard does not act on what its caller asked it to
//! ignore. TERM is the exception: it is how a runner asks the guard to stop, and a guard
//! deaf to it could only be SIGKILLed, which skips the command's teardown. So is the
//! guard's own parent-death signal (`parent::death_signal`).
//! SIGPIPE is blocked so that a log line written to a closed stderr fails with EPIPE
//! instead of killing the guard mid-teardown.

use nix::sys::signal::{SigSet, Signal};

use crate::child::Inherited;
use crate::guard::parent;

/// Requests to end the command: the first is forwarded and starts the grace clock.
pub(super) const REQUESTS: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];
/// Signals passed on to the command as they come.
pub(super) const FORWARDED: [Signal; 4] = [
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// The signals the guard blocks and reads: those it acts on, and every other
/// asynchronous one it was not told to ignore. `parent_death`: the guard's own
/// parent-death signal is watched even if the caller ignored it.
pub(super) fn watched(inherited: &Inherited, parent_death: bool) -> SigSet {
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
        if !inherited.ignores_signo(signo) || (parent_death && signo == parent::death_signal()) {
            add_signo(&mut raw, signo);
        }
    }
    // SAFETY: a valid set with bits added for signals this system has.
    unsafe { SigSet::from_sigset_t_unchecked(raw) }
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
pub(super) fn block(set: &SigSet) -> Result<(), nix::errno::Errno> {
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
