//! The read side of authkeys: views built from the event log, and the workers that keep them.
//!
//! - [`views`]: pure views (keys page, machines, identity): `apply(&mut View, &Envelope)`, row
//!   change tracking, loading from rows, and a state hash for convergence checks.
//! - [`store`]: one redb file per view holding its rows and its checkpoint (last applied seq and
//!   its hash), always written in the same transaction.
//! - [`log_client`]: [`log_client::Chain`], where a reader of the log stands (pages come from
//!   `authkeys_protocol::log::LogClient`).
//! - [`file_log`]: the log file read directly by a reader beside it, its per-row work (chain
//!   hash, decode) spread over the cores: a view's rebuild without `authkeys.log.read`, and
//!   `authkeys audit verify`'s reader.
//! - [`worker`]: consumes a durable JetStream pull consumer, skips redeliveries, backfills gaps
//!   from the log, commits rows and checkpoint together, then acks; rebuilds from seq 1.
//! - [`query`]: the views' NATS request/reply subjects, with bounded read-your-writes waits, and
//!   [`Views`], the projection role (`authkeys project`): every view with its worker and the
//!   query responder.
//! - [`timers`]: the expiry timers: a schedule kept from the events like a view, and a loop that
//!   sends what falls due to the command service.
//!
//! Invariant: views know nothing of NATS, redb or the clock; only `store`, `log_client`,
//! `file_log`, `worker` and `query` do IO.

pub mod config;
pub mod file_log;
pub mod fixtures;
pub mod log_client;
pub mod query;
pub mod store;
pub mod timers;
pub mod views;
pub mod worker;

pub use config::ProjectionConfig;
pub use file_log::rebuild_from_file;
pub use query::Views;
pub use views::{IdentityView, KeysView, MachinesView, View};
pub use worker::{Sink, ViewHandle, ViewSink, ViewWorker, Worker, WorkerError, rebuild_from_log};
