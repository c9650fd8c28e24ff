//! End-to-end tests: every tool run as a real process, against real flocks held by real
//! processes. One test binary, so the suite links once.

mod chain;
mod deploy;
mod guard;
mod janitor;
mod lock;
mod procs;
mod rundir;
mod support;
mod swarm;
