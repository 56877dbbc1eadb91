//! The event catalogue of authkeys: everything that is ever written to the log.
//!
//! - [`ids`]: validated identifiers (`KeyId`, `NodeKey`, `TagName`, `Seq`, …). A value of these
//!   types is valid by construction; parsing is the only way in.
//! - [`time`]: [`Timestamp`], UTC milliseconds, serialized as RFC 3339 with exactly three digits.
//! - [`catalogue`]: the data of every event type and the [`Event`] enum over them.
//! - [`envelope`]: the [`Envelope`] every event travels in, and its exact stored encoding.
//! - [`chain`]: the blake3 hash chain and ed25519-signed [`Checkpoint`]s.
//! - [`lock`]: tailnet lock keys, signatures and the statements they sign (R04).
//! - [`decision`]: the seams between the rules and the log ([`Aggregate`], [`Decision`]) and the
//!   [`Clock`] every role injects.
//!
//! Invariant: this crate does no IO, reads no clock (it only defines the [`Clock`] seam and the
//! system clock roles inject) and draws no randomness. Callers pass time
//! and identifiers in; the same inputs always give the same bytes.

pub mod catalogue;
pub mod chain;
pub mod decision;
pub mod envelope;
pub mod ids;
pub mod lock;
pub mod scope;
pub mod time;
pub mod webhook;

pub use catalogue::*;
pub use chain::{Checkpoint, CheckpointError, Hash, LogId, chain_hash};
pub use decision::{Aggregate, Clock, Decision, Expected, Proposed};
pub use envelope::{Actor, ActorType, DecodeError, Envelope, Peek};
pub use ids::*;
pub use lock::{LockKey, LockSignature, PreSignature};
pub use scope::Scope;
pub use time::Timestamp;
pub use webhook::{
    EndpointUrl, ProviderType, WebhookCreated, WebhookDeleted, WebhookSecretRotated, WebhookType,
    WebhookUpdated,
};
