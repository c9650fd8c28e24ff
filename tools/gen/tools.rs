//! The five tools' command lines, compiled from the same `cli.rs` files the tools parse
//! with, so a page or a completion can never describe an option the tool lacks.

// The tools read the parsed fields; here only the definitions are wanted.
#![allow(dead_code)]

use clap::{Command, CommandFactory};

#[path = "../deploy/cli.rs"]
mod deploy;
#[path = "../guard/cli.rs"]
mod guard;
#[path = "../janitor/cli.rs"]
mod janitor;
#[path = "../lock/cli.rs"]
mod lock;
#[path = "../rundir/cli.rs"]
mod rundir;

pub fn commands() -> [Command; 5] {
    [
        lock::Cli::command(),
        guard::Cli::command(),
        rundir::Cli::command(),
        deploy::Cli::command(),
        janitor::Cli::command(),
    ]
}
