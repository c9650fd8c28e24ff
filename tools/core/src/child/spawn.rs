//! Starting the command: fork, set the child up, exec, and learn whether the exec worked.
//!
//! Why not `std::process::Command`: std empties the signal mask in the child and may reset
//! SIGPIPE, and a supervisor must hand its command exactly the mask and dispositions its
//! own caller gave it (as tini does). So the guard records both at start
//! ([`Inherited::record`], before it blocks anything), forks itself (`fork(2)`, from its
//! only thread, so the child may allocate and call anything), and in the child:
//!
//! 1. `setsid(2)`: a session and process group of its own, so the pgid is the pid and one
//!    `killpg(2)` reaches the whole command;
//! 2. `prctl(PR_SET_PDEATHSIG, SIGTERM)` (`PR_SET_PDEATHSIG(2const)`): if the guard is
//!    SIGKILLed, the command still hears about it;
//! 3. `getppid(2)` against the guard's pid: a guard that died before step 2 would never
//!    send that signal, so the child gives up at once (125);
//! 4. the caller's dispositions, then the caller's mask (`sigaction(2)`,
//!    `pthread_sigmask(3)`): the guard blocks signals *before* the fork so nothing
//!    arriving during start-up is lost, and must not let that leak into the command;
//! 5. `execvp(3)`.
//!
//! Failures travel back through a pipe created `O_CLOEXEC` (`pipe2(2)`): a successful
//! exec closes it unseen, so the guard's read returns 0 bytes on success and an errno on
//! failure — the only reliable way to tell "exec failed" from "the command exited 127".

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, execvp, fork, getpid, getppid, pipe2, read, setsid};

use crate::exit::Exit;

/// The signal mask and the ignored signals of the guard's caller, recorded before the
/// guard changes either. Handlers cannot be inherited across exec, so a disposition is
/// either "ignored" or "default" — one bit per signal is the whole state.
#[derive(Clone, Debug)]
pub struct Inherited {
    mask: SigSet,
    ignored: u64,
}

impl Inherited {
    /// What this process was started with. Call it first thing, before blocking anything.
    pub fn record() -> Inherited {
        let mask = SigSet::thread_get_mask().unwrap_or_else(|_| SigSet::empty());
        let mut ignored = 0;
        for signo in 1..=max_signal() {
            // SAFETY: a query (null new action) into a zeroed out-parameter.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            let queried = unsafe { libc::sigaction(signo, std::ptr::null(), &mut old) } == 0;
            if queried && old.sa_sigaction == libc::SIG_IGN {
                ignored |= 1u64 << (signo - 1);
            }
        }
        Inherited { mask, ignored }
    }

    /// Did the caller ignore `signal`? (`nohup` ignores HUP; a non-interactive shell's
    /// `cmd &` ignores INT and QUIT.)
    pub fn ignores(&self, signal: Signal) -> bool {
        self.ignores_signo(signal as i32)
    }

    /// [`Inherited::ignores`] by number, for the real-time signals `Signal` lacks.
    pub fn ignores_signo(&self, signo: i32) -> bool {
        (1..=64).contains(&signo) && self.ignored & (1u64 << (signo - 1)) != 0
    }

    /// Did the caller block `signal`?
    pub fn blocks(&self, signal: Signal) -> bool {
        self.mask.contains(signal)
    }

    /// In the forked child: every disposition and the mask back to the caller's.
    fn restore(&self) -> Result<(), Errno> {
        for signo in 1..=max_signal() {
            if signo == libc::SIGKILL || signo == libc::SIGSTOP {
                continue;
            }
            let handler = if self.ignored & (1u64 << (signo - 1)) != 0 {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            };
            // SAFETY: installing IGN/DFL (no handler code) in the single-threaded child;
            // the few numbers libc reserves for itself fail with EINVAL, which is fine.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler;
                libc::sigaction(signo, &action, std::ptr::null_mut());
            }
        }
        self.mask.thread_set_mask()
    }
}

fn max_signal() -> i32 {
    libc::SIGRTMAX().min(64)
}

/// Why the command did not start, with the status the guard exits with.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot run '{program}': {reason}")]
    Exec {
        program: String,
        reason: String,
        status: Exit,
    },
    #[error("cannot start '{program}': {what}: {errno}")]
    Setup {
        program: String,
        what: &'static str,
        errno: Errno,
    },
    #[error("cannot start '{program}': the guard's parent changed before exec")]
    Orphaned { program: String },
    /// The sweep could not find the command's leftovers: refused before it runs.
    #[error("cannot start '{program}': {problem}")]
    Proc {
        program: String,
        problem: super::tree::ProcProblem,
    },
}

impl SpawnError {
    pub fn status(&self) -> Exit {
        match self {
            SpawnError::Exec { status, .. } => *status,
            _ => Exit::ToolFailed,
        }
    }
}

/// Steps of the child's set-up, as reported through the pipe.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Step {
    Exec = 0,
    Setsid = 1,
    DeathSignal = 2,
    Orphaned = 3,
    Signals = 4,
}

/// Fork and exec `argv` in a session of its own. Returns the command's pid (= its process
/// group) once the exec has succeeded; on failure the child has been reaped.
pub fn spawn(argv: &[OsString], inherited: &Inherited) -> Result<Pid, SpawnError> {
    let program = argv
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let setup = |what, errno| SpawnError::Setup {
        program: program.clone(),
        what,
        errno,
    };
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| SpawnError::Exec {
            program: program.clone(),
            reason: "an argument contains a NUL byte".into(),
            status: Exit::CannotExecute,
        })?;
    let Some(file) = args.first() else {
        return Err(setup("no command given", Errno::EINVAL));
    };
    let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC).map_err(|e| setup("pipe2", e))?;
    let guard = getpid();
    // SAFETY: the guard is single-threaded, so the child may do anything the parent could.
    match unsafe { fork() }.map_err(|e| setup("fork", e))? {
        ForkResult::Child => {
            drop(report_read);
            child(guard, file, &args, inherited, &report_write)
        }
        ForkResult::Parent { child } => {
            drop(report_write);
            let mut buf = [0u8; 5];
            let got = read_all(&report_read, &mut buf);
            if got < buf.len() {
                return Ok(child);
            }
            let _ = waitpid(child, None);
            let errno = Errno::from_raw(i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]));
            Err(match buf[0] {
                0 => {
                    let (reason, status) = crate::child::exec::failure(&argv[0], errno);
                    SpawnError::Exec {
                        status,
                        reason,
                        program,
                    }
                }
                1 => setup("setsid", errno),
                2 => setup("prctl(PR_SET_PDEATHSIG)", errno),
                3 => SpawnError::Orphaned { program },
                _ => setup("restoring the signal mask", errno),
            })
        }
    }
}

fn read_all(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match read(fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    got
}

/// The forked child: set up, exec, or report why not and `_exit`.
fn child(
    guard: Pid,
    file: &CString,
    args: &[CString],
    inherited: &Inherited,
    report: &OwnedFd,
) -> ! {
    let fail = |step: Step, errno: Errno| -> ! {
        let mut msg = [step as u8, 0, 0, 0, 0];
        msg[1..].copy_from_slice(&(errno as i32).to_ne_bytes());
        // SAFETY: write(2) and _exit(2) are async-signal-safe; nothing else runs after.
        unsafe {
            libc::write(report.as_raw_fd(), msg.as_ptr().cast(), msg.len());
            libc::_exit(match step {
                Step::Exec if errno == Errno::ENOENT => Exit::NotFound.code(),
                Step::Exec => Exit::CannotExecute.code(),
                _ => Exit::ToolFailed.code(),
            })
        }
    };
    if let Err(e) = setsid() {
        fail(Step::Setsid, e);
    }
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM) {
        fail(Step::DeathSignal, e);
    }
    if getppid() != guard {
        fail(Step::Orphaned, Errno::UnknownErrno);
    }
    if let Err(e) = inherited.restore() {
        fail(Step::Signals, e);
    }
    let errno = match execvp(file, args) {
        Err(errno) => errno,
        Ok(never) => match never {},
    };
    fail(Step::Exec, errno)
}
