//! ccci-deploy against a real swarm (../shared/spec/deploy.md).

mod abra_flags;
mod converge;
mod exits;
mod hangs;
mod lock_rule;
mod recovery;
mod teardown;
mod tree;
