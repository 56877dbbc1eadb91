//! The rules of authkeys: the command side's pure core.
//!
//! - [`state`]: [`State`], what the rules need to know, folded from events by [`State::apply`]
//!   (it is the log's [`authkeys_events::Aggregate`], so the log's writer keeps it current).
//! - [`command`]: every [`Command`] and the [`Rejection`]s.
//! - [`decide()`]: the rules R01–R17; the only place a command is refused.
//! - [`addresses`]: R17, the per-tailnet [`addresses::AddressPool`] `decide` picks a new node's
//!   addresses from.
//! - [`secret`]: the text form, checksum and keyed hash of auth keys and API tokens (R10).
//!
//! The wire contract (requests, replies, the objects clients see) is `authkeys-protocol`.
//!
//! Invariant: no IO, no clock, no randomness. `now`, new ids and secret hashes come in with the
//! command; the same state and command always give the same decision.

pub mod addresses;
pub mod command;
pub mod decide;
pub mod lock;
pub mod secret;
pub mod state;
pub mod webhook;

pub use command::{AdminOp, Command, Due, KeyRequest, NewToken, Rejection};
pub use decide::decide;
pub use state::State;
