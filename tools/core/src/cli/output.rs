//! A tool's output: data on stdout, progress and diagnostic lines on stderr, each
//! written in one piece. (The guard has its own, never-stalling writer: `guard/log.rs`.)

use std::io::{self, Write};

/// Write one line to stderr in a single `write(2)`, so lines of processes sharing a CI
/// log never interleave mid-line (`eprintln!` writes piecemeal). A diagnostic that
/// cannot be written is dropped: it must never turn into a failure of its own.
pub fn say_line(line: &str) {
    write_stderr(&format!("{line}\n"));
}

pub(super) fn write_stderr(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// Data on stdout, in one piece; a failure to write it (a full disk, a closed pipe) is
/// the tool's failure, which the caller reports.
pub fn emit(text: &str) -> io::Result<()> {
    emit_bytes(text.as_bytes())
}

/// As [`emit`], for data that need not be UTF-8 (paths).
pub fn emit_bytes(data: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(data)?;
    out.flush()
}

/// A progress or log line on stderr (`== app lock: ... ==`), written in one piece.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::say_line(&format!($($arg)*))
    };
}

/// A diagnostic line on stderr, prefixed with the tool's name, written in one piece.
#[macro_export]
macro_rules! diag {
    ($tool:expr, $($arg:tt)*) => {
        $crate::cli::say_line(&format!("{}: {}", $tool, format_args!($($arg)*)))
    };
}
