//! The shared library of the ccci tools.
//!
//! Every tool is a thin `main.rs` over these modules, one concern each, so that the
//! lock protocol, the exit statuses and the names of the environment variables exist in
//! exactly one place: two tools that disagreed about any of them would not exclude each
//! other. A folder per concern (docs/decisions.md "Where things live"):
//!
//! * [`lock`]: the app lock — its protocol, directory, owner rule, probe, and what the
//!   kernel says about who holds it;
//! * [`run`]: run ids, run directories and their gc;
//! * [`guard`]: supervising one command to a deadline, and reporting how it ended;
//! * [`child`]: starting, bounding, finding and killing child processes;
//! * [`swarm`]: the docker CLI and what exists on the swarm;
//! * [`deploy`]: deploying an app, waiting for convergence, tearing it down;
//! * [`janitor`]: one reaping pass and its report;
//! * [`abra`]: the abra tree's layout (`servers/*/<domain>.env`, `recipes/`);
//! * [`files`]: careful file-system operations (atomic writes, contained removal,
//!   shared directories);
//! * and the command-line edge every tool shares: [`cli`], [`env`](mod@env), [`exit`],
//!   [`domain`], [`duration`], [`timefmt`].

pub mod abra;
pub mod child;
pub mod cli;
pub mod deploy;
pub mod domain;
pub mod duration;
pub mod env;
pub mod exit;
pub mod files;
pub mod guard;
pub mod janitor;
pub mod lock;
pub mod run;
pub mod swarm;
pub mod timefmt;
