//! A run: its id ([`runid`]), its own directory ([`rundir`], `docs/rundir.md`), and the
//! removal of directories no run uses any more ([`rungc`]).

pub mod rundir;
pub mod rungc;
pub mod runid;
