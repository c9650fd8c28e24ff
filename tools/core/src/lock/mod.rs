//! The app lock: one run per app domain (`docs/lock.md`).
//!
//! [`applock`] is the protocol every tool takes a lock through (a folder: the run's
//! protocol, steps 2–4 on any lockfile, waiting, opening and identity, the read-only
//! probe, who holds a domain already); [`lockdir`] is where the lockfiles are;
//! [`lockowner`] keeps them lockable only by their owner; [`holder`] is what a holder
//! writes into its lockfile; [`proclocks`] is what the kernel says about who holds a
//! flock (a folder: `/proc/locks`, fdinfo, `/proc/*/fd`, device names, lockfiles removed
//! by hand); [`lockstatus`] reports locks without taking them; [`runlocks`] says
//! which locks the run we are in holds (own, above us, or kept); [`keeper`] is the
//! process that keeps a dependency's lock for the rest of a run, and [`for_run`] the
//! `--for-run` that starts one and the keeper's part; [`legacy`] is the old layer's
//! lockfile, honoured while a host switches to ccci; [`session`] is a `ccci-lock` session:
//! taking a lock as its options say, with its lines, and exec'ing the command under it.

pub mod applock;
pub mod for_run;
pub mod holder;
pub mod keeper;
pub mod legacy;
pub mod lockdir;
pub mod lockowner;
pub mod lockstatus;
pub mod proclocks;
pub mod runlocks;
pub mod session;
