//! Holder metadata: who holds an app lock, written into the lockfile by the holder.
//!
//! Only the holder writes it, after the lock is held and its identity verified; anyone
//! may read it at any moment, so a reader must survive an empty or half-written file
//! (the holder truncates, then writes) and show "unknown" instead of failing. Unknown
//! fields are ignored, so a newer tool's metadata reads fine in an older one.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{duration, timefmt};

/// The largest metadata document read back; anything longer is not ours.
const MAX_LEN: usize = 64 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub version: u32,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub pid: Option<i32>,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub command: Vec<String>,
    /// For a keeper (`ccci-lock --for-run`): the pid of the run's top it keeps the lock
    /// for, until that process ends. For people to read; the lock rule asks the kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_for: Option<i32>,
}

impl Holder {
    /// Metadata for this process as it takes a lock now.
    pub fn new_for_this_process(
        domain: Option<&str>,
        run_id: Option<&str>,
        tool: &str,
        command: Vec<String>,
    ) -> Holder {
        Holder {
            version: 1,
            domain: domain.map(str::to_owned),
            pid: Some(std::process::id() as i32),
            run_id: run_id.map(str::to_owned),
            host: hostname(),
            started_at: Some(timefmt::now_seconds()),
            tool: Some(tool.to_owned()),
            command,
            kept_for: None,
        }
    }

    /// [`Holder::read`] through a path (`/proc/<pid>/fd/<n>` of another process), opened
    /// read-only and without blocking (a FIFO must not hang us).
    pub fn read_path(path: &std::path::Path) -> Option<Holder> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
            .ok()?;
        file.metadata()
            .ok()?
            .is_file()
            .then(|| Holder::read(&file))?
    }

    /// Read the metadata of an open lockfile; `None` when it is empty, half-written or
    /// not ours.
    pub fn read(file: &File) -> Option<Holder> {
        let mut buf = vec![0; MAX_LEN];
        let mut len = 0;
        while len < buf.len() {
            match file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
        serde_json::from_slice::<Holder>(&buf[..len])
            .ok()
            .map(Holder::sanitized)
    }

    /// Anyone holding the descriptor can write anything into the file, and what we read
    /// ends up in log lines that CI log readers scan: a run id or domain that is not a
    /// valid one, or text with control characters, must not forge a `== ... ==` line.
    fn sanitized(self) -> Holder {
        let text = |s: Option<String>| s.filter(|s| s.len() <= 255 && is_plain_text(s));
        Holder {
            domain: self
                .domain
                .filter(|d| crate::domain::Domain::parse(d).is_ok()),
            run_id: self
                .run_id
                .filter(|r| crate::run::runid::RunId::parse(r).is_ok()),
            host: text(self.host),
            started_at: text(self.started_at),
            tool: text(self.tool),
            ..self
        }
    }

    /// Replace the lockfile's content with this metadata. Only the verified holder calls
    /// this; a failure (ENOSPC, read-only file system) is the caller's warning, never a
    /// reason to give up the lock.
    pub fn write(&self, file: &File) -> io::Result<()> {
        let mut doc = serde_json::to_vec(self).map_err(io::Error::other)?;
        doc.push(b'\n');
        file.set_len(0)?;
        file.write_all_at(&doc, 0)
    }

    pub fn age(&self) -> Option<Duration> {
        self.started_at.as_deref().and_then(timefmt::age)
    }

    /// Whether the holder's process still exists: `None` when that cannot be known here
    /// (no pid, or another host's pid).
    pub fn alive(&self) -> Option<bool> {
        let pid = self.pid.filter(|&p| p > 0)?;
        if self.host.is_some() && self.host != hostname() {
            return None;
        }
        let pid = nix::unistd::Pid::from_raw(pid);
        match nix::sys::signal::kill(pid, None) {
            Ok(()) | Err(nix::errno::Errno::EPERM) => Some(true),
            Err(_) => Some(false),
        }
    }
}

/// Text that cannot break, hide or reorder a log line: no control or format characters
/// (`\p{C}`: newlines, escapes, the bidi overrides U+202A–U+202E and U+2066–U+2069, zero
/// widths) and no line or paragraph separators (U+2028, U+2029). Holder-supplied text
/// (lockfile fields, a process's `comm`) goes into waiters' `==` lines and `--status`.
pub fn is_plain_text(s: &str) -> bool {
    static UNSAFE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let unsafe_chars =
        UNSAFE.get_or_init(|| regex::Regex::new(r"[\p{C}\p{Zl}\p{Zp}]").expect("valid regex"));
    !unsafe_chars.is_match(s)
}

/// `s` as it is when it is plain text, else with every character that is not escaped
/// (`\u{202e}`): for text read from the system, such as a holder's `comm`.
pub fn plain(s: &str) -> String {
    if is_plain_text(s) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            let one = c.to_string();
            if is_plain_text(&one) {
                one
            } else {
                c.escape_unicode().to_string()
            }
        })
        .collect()
}

/// How a log line names a holder: `pid 4242, run 279, held 3m12s`, with `unknown` for
/// whatever the metadata does not say, and the tool when it is not a run's `ccci-lock`.
pub fn describe(holder: Option<&Holder>, with_age: bool) -> String {
    let (pid, run) = pid_and_run(holder);
    let mut out = format!("pid {pid}, run {run}");
    if with_age {
        // Whole seconds: `started_at` has no finer precision.
        let age = holder.and_then(Holder::age).map_or_else(
            || UNKNOWN.to_owned(),
            |a| duration::format(Duration::from_secs(a.as_secs())),
        );
        out.push_str(&format!(", held {age}"));
    }
    if let Some(tool) = holder
        .and_then(|h| h.tool.as_deref())
        .filter(|t| *t != "ccci-lock")
    {
        out.push_str(&format!(", by {tool}"));
    }
    if let Some(top) = holder.and_then(|h| h.kept_for) {
        out.push_str(&format!(", kept for pid {top}"));
    }
    out
}

const UNKNOWN: &str = "unknown";

/// The holder's pid and run id as log lines show them, `unknown` when not known.
pub fn pid_and_run(holder: Option<&Holder>) -> (String, String) {
    let pid = holder
        .and_then(|h| h.pid)
        .map_or_else(|| UNKNOWN.to_owned(), |p| p.to_string());
    let run = holder
        .and_then(|h| h.run_id.clone())
        .unwrap_or_else(|| UNKNOWN.to_owned());
    (pid, run)
}

pub fn hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn metadata_round_trips_through_a_file() {
        let file = tempfile::tempfile().unwrap();
        let holder = Holder::new_for_this_process(
            Some("a.b"),
            Some("279"),
            "ccci-lock",
            vec!["sh".into(), "-c".into()],
        );
        holder.write(&file).unwrap();
        assert_eq!(Holder::read(&file), Some(holder.clone()));
        // A shorter document later must not leave the old tail behind.
        let short = Holder {
            command: vec![],
            ..holder
        };
        short.write(&file).unwrap();
        assert_eq!(Holder::read(&file), Some(short));
    }

    #[test]
    fn schema_has_version_and_the_documented_fields() {
        let holder =
            Holder::new_for_this_process(Some("a.b"), None, "ccci-lock", vec!["true".into()]);
        let json: serde_json::Value = serde_json::to_value(&holder).unwrap();
        assert_eq!(json["version"], 1);
        for key in [
            "domain",
            "pid",
            "run_id",
            "host",
            "started_at",
            "tool",
            "command",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
    }

    #[test]
    fn readers_tolerate_empty_half_written_and_foreign_content() {
        for content in [&b""[..], b"{\"version\":1,\"pid\":4", b"garbage", b"[]"] {
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(content).unwrap();
            assert_eq!(Holder::read(&file), None);
        }
        assert_eq!(
            describe(None, true),
            "pid unknown, run unknown, held unknown"
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_ones_are_unknown() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(br#"{"version":1,"pid":42,"future":"x"}"#)
            .unwrap();
        let holder = Holder::read(&file).unwrap();
        assert_eq!(holder.pid, Some(42));
        assert_eq!(describe(Some(&holder), false), "pid 42, run unknown");
    }

    #[test]
    fn forged_fields_read_as_unknown() {
        let mut file = tempfile::tempfile().unwrap();
        let forged = r#"{"version":1,"pid":7,"run_id":"7) ==\n== app lock: acquired x ==","tool":"a\u001b[31m","domain":"../x"}"#;
        file.write_all(forged.as_bytes()).unwrap();
        let holder = Holder::read(&file).unwrap();
        assert_eq!(
            (holder.run_id, holder.tool, holder.domain),
            (None, None, None)
        );
        assert_eq!(holder.pid, Some(7));
    }

    #[test]
    fn format_characters_and_line_separators_read_as_unknown() {
        // U+2028 breaks a line in many log viewers; U+202E reverses what follows it.
        for forged in [
            "run\u{2028}== app lock: acquired ==",
            "x\u{202e}kcol",
            "a\u{2066}b",
            "z\u{200b}w",
        ] {
            let mut file = tempfile::tempfile().unwrap();
            let json = serde_json::json!({"version":1,"pid":7,"tool":forged,"host":forged,"started_at":forged});
            file.write_all(json.to_string().as_bytes()).unwrap();
            let holder = Holder::read(&file).unwrap();
            assert_eq!(
                (holder.tool, holder.host, holder.started_at),
                (None, None, None),
                "{forged:?}"
            );
        }
        assert_eq!(plain("sh\u{202e}x"), "sh\\u{202e}x");
        assert_eq!(plain("ccci-lock"), "ccci-lock");
    }

    #[test]
    fn describe_names_a_janitor_holder() {
        let holder = Holder::new_for_this_process(Some("a.b"), None, "ccci-janitor", vec![]);
        let line = describe(Some(&holder), true);
        assert!(line.ends_with(", by ccci-janitor"), "{line}");
        assert!(line.contains("held 0s"), "{line}");
    }

    #[test]
    fn liveness_of_the_holder_pid() {
        let me = Holder::new_for_this_process(Some("a.b"), None, "ccci-lock", vec![]);
        assert_eq!(me.alive(), Some(true));
        let gone = Holder {
            pid: Some(i32::MAX),
            ..me.clone()
        };
        assert_eq!(gone.alive(), Some(false));
        let elsewhere = Holder {
            host: Some("another-host-xyz".into()),
            ..me
        };
        assert_eq!(elsewhere.alive(), None);
    }
}
