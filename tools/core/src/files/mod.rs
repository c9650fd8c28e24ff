//! Careful file-system operations the tools share: replacing a file atomically
//! ([`atomic`]), removing a tree without reaching outside it ([`removal`]), and refusing
//! shared directories others could plant files in ([`shareddir`]).

pub mod atomic;
pub mod removal;
pub mod shareddir;
