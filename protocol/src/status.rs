//! The status subjects' replies (`authkeys.status`, `authkeys.timers.status`), which the
//! gateway's `/metrics` asks for, best effort. Requests are `{}` (any payload).

use serde::{Deserialize, Serialize};

/// What the command service reports on `authkeys.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandStatus {
    /// The last committed seq.
    pub head: u64,
    /// The last seq the relay durably recorded as published (up to a flush interval behind).
    pub relay_cursor: u64,
    /// Commands answered since the service started.
    pub commands: u64,
    /// Events appended since the service started.
    pub events: u64,
    /// Write transactions (fsyncs) since the service started.
    pub transactions: u64,
    /// Checkpoints written since the service started.
    pub checkpoints: u64,
    /// Why the log writer refuses every command, once a commit failed (disk full, I/O error,
    /// read-only file); absent while it is healthy. Not healthy while set: every write answers
    /// `unavailable` until the command role is restarted after the cause is fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_failure: Option<String>,
}

/// What the timers report on `authkeys.timers.status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimersStatus {
    /// The last event applied to the schedule.
    pub seq: u64,
    /// Entries scheduled (due or not).
    pub scheduled: u64,
    /// Timer commands answered since the timers started.
    pub fired: u64,
    /// How long past its deadline the most overdue entry of the last fired batch was, in ms.
    pub last_late_ms: u64,
}
