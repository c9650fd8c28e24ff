//! A run: its app domain ([`appdomain`]), its id ([`runid`]), its own directory ([`rundir`], `docs/rundir.md`), and the
//! removal of directories no run uses any more ([`rungc`]).

// The runs dir's own names, here so that rundir (which lays runs out) and rungc (which
// removes them) both read them from their parent rather than from each other.

/// Each run dir's lockfile: held by the run for its whole life, taken by gc to remove it.
pub const RUN_LOCK: &str = ".run.lock";
/// The `tool` in the metadata gc writes into a run lock it holds: a run of the same id
/// that finds it waits for the removal instead of reporting "already in progress".
pub const GC_TOOL: &str = "ccci-rundir gc";
/// Held (shared: gcs may sweep side by side) by every gc for its whole sweep, so that a
/// run can tell from the kernel's lock table that the holder of its lock is a gc. Not a
/// valid run id, so never taken for a run. Nothing ever holds it exclusively.
pub const GC_LOCK: &str = ".gc~.lock";
/// The run's private abra tree (`ABRA_DIR`) and its state files (`CCCI_STATE_DIR`).
pub const ABRA: &str = "abra";
pub const STATE: &str = "state";
/// Everything rundir lays out at the top of a run dir. Anything else there was written
/// by the run's command (the harness's `results.json`, lint output, screenshots, which
/// the dashboard serves): gc keeps it unless told to remove whole runs.
pub const LAID_OUT: [&str; 3] = [RUN_LOCK, ABRA, STATE];

pub mod appdomain;
pub mod rundir;
pub mod rungc;
pub mod runid;
