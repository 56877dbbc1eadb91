//! Auditors' tools: everything `authkeys audit …` does, as a library, and the configuration
//! audit log records the HTTP gateway serves.
//!
//! - [`verify`]: the streaming [`Verifier`] (chain from seq 1, checkpoint signatures under a
//!   pinned key, checkpoints that only grow, the auditor's saved [`AuditState`]) reporting the
//!   first bad seq.
//! - [`borrowed`]: the borrowing decode the verifier reads every event with (the owned decode
//!   where it gives up).
//! - [`invariants`]: the domain rules every event must satisfy given the events before it.
//! - [`source`]: where the log comes from: a data dir opened read-only, or a running system over
//!   NATS (`authkeys.log.read`, `authkeys.log.checkpoints`).
//! - [`trust`]: parsing the pinned public key.
//! - [`history`]: every event that touched a key, node or user, and a key's blast radius.
//! - [`replay`]: the keys or machines view as it stood at a seq or a time.
//! - [`records`]: Tailscale's configuration audit log records, derived from events.
//! - [`fixtures`]: a seeded domain workload through the real `decide`, for tests and the bench.
//!
//! Invariant: nothing here writes to the log or its data dir; files are opened read-only.

pub mod borrowed;
pub mod fixtures;
pub mod history;
pub mod invariants;
pub mod records;
pub mod replay;
pub mod source;
pub mod trust;
pub mod verify;

pub use source::{Source, Verdict};
pub use verify::{Anchor, AuditState, Problem, Summary, Verifier};

/// Why an audit tool could not do its work (as opposed to a verdict that the log is bad).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's mistake: a bad key, state file, seq or time, or no log where one was named.
    #[error("{0}")]
    BadInput(String),
    /// The source could not be read (file, NATS).
    #[error("{0}")]
    Unavailable(String),
    /// The log read for history or replay is damaged; `verify` names the first bad seq.
    #[error("the log is damaged: {0}")]
    Corrupt(String),
}
