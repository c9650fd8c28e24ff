//! Watching the guard's parent (`--no-parent-death` turns it off): the parent-death
//! signal, and telling a parent that died from one of its threads that ended.

use nix::errno::Errno;
use nix::unistd::{Pid, getppid};

use crate::child;
use crate::guard::TOOL;
use crate::guard::log::say;

/// The guard's own parent-death signal (`PR_SET_PDEATHSIG(2const)`). Not TERM: the
/// kernel sends it when the *thread* that forked the guard exits, though the rest of the
/// parent process may live on (a launcher's worker thread: Python `threading`, Go, Java),
/// and it comes with exactly the siginfo of a `kill(2)` from the parent (`SI_USER`,
/// `si_pid` the parent's pid, not the thread's — checked on Linux 6.18), so a TERM from
/// a thread's end could not be told from a TERM the parent sent on purpose. A signal of
/// its own always means "the thread that was our parent is gone", and the guard then
/// asks whether the process went with it ([`ParentWatch::thread_ended`]). The last
/// real-time signal: nothing sends it by convention, and real-time signals queue.
pub(super) fn death_signal() -> i32 {
    nix::libc::SIGRTMAX()
}

fn arm_death_signal() -> Result<(), Errno> {
    // SAFETY: prctl(2) with an option and a signal number; no memory is involved. nix's
    // `set_pdeathsig` takes only the signals its `Signal` has, no real-time one.
    let rc = unsafe {
        nix::libc::prctl(
            nix::libc::PR_SET_PDEATHSIG,
            death_signal() as nix::libc::c_ulong,
        )
    };
    Errno::result(rc).map(drop)
}

/// The parent whose death ends the command, and what has been said about it.
pub(super) struct ParentWatch {
    pub(super) parent: Pid,
    /// "lives on" has been logged: once is news, a line per thread end is noise.
    said_lives_on: bool,
    /// The parent's death has been acted on (or logged).
    died: bool,
}

impl ParentWatch {
    /// Arm the parent-death signal for the parent the process started with. `true`
    /// beside the watch: that parent is gone already, and no signal will come for it.
    pub(super) fn arm() -> Result<(ParentWatch, bool), Errno> {
        // The parent as the process started, before argument parsing and set-up: a
        // parent that died in between would otherwise go unnoticed.
        let parent = crate::cli::parent_at_start().unwrap_or_else(getppid);
        arm_death_signal()?;
        // The parent may have died before the signal was armed: then none will come.
        let orphaned = getppid() != parent;
        let watch = ParentWatch {
            parent,
            said_lives_on: false,
            died: false,
        };
        Ok((watch, orphaned))
    }

    /// The parent-death signal came: the thread that forked the guard has ended. `true`
    /// when that is news of the parent's death, the first time: the guard then acts on
    /// it.
    ///
    /// By now the kernel has moved the guard to its new parent, and `getppid()` tells the
    /// two cases apart. Another thread of the same process (the parent lives on: a
    /// launcher's worker thread ended) shows as the same pid, and the signal stays armed
    /// for that thread. A subreaper or init shows as another pid: the parent died, which
    /// ends the command as a TERM would. A recycled pid cannot fool this: the new parent
    /// is always one that was alive together with the old one (an ancestor, or init), so
    /// it cannot have the old one's pid.
    ///
    /// `sender` is the siginfo's pid: the kernel sends the signal as if from the parent
    /// itself, so a parent that lives on and another sender is a stray `kill -RTMAX`,
    /// dropped as any real-time signal is. A parent in another pid namespace (the guard
    /// as a container's pid 1) shows as pid 0, both as the parent and as the sender,
    /// before its death and after: there is no telling then, and the kernel's signal
    /// counts as a death.
    pub(super) fn thread_ended(&mut self, sender: i32) -> bool {
        let parent = self.parent;
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
            return false;
        }
        // The same death again: signals its other threads' ends queued (real-time
        // signals queue), read only now. Said once already.
        !std::mem::replace(&mut self.died, true)
    }
}
