//! What every tool's process shares, one concern a module: parsing its command line
//! (`parse`), writing its output (`output`), and starting and ending it (`process`).
//! The items are re-exported here, the paths the tools use.

pub mod output;
pub mod parse;
pub mod process;

pub use output::{emit, emit_bytes, say_line};
pub use parse::{duration_arg, parse_or_exit, regex_arg};
pub use process::{open_standard_fds, parent_at_start, record_parent, run_tool};
