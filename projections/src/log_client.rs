//! Where a reader of the log stands: [`Chain`] accepts only the event right after the last one
//! applied. Pages themselves come from [`authkeys_protocol::log::LogClient`].

use authkeys_events::Envelope;

use crate::store::Position;

/// Where the chain of applied events stands; [`Chain::link`] accepts only the next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain(pub Position);

impl Chain {
    /// Whether `env` is the event right after the chain's end and links to it. Its own hash is
    /// checked where it was decoded ([`decode_checked`]).
    pub fn links(&self, env: &Envelope) -> bool {
        env.seq.get() == self.0.seq + 1 && env.prev_hash == self.0.hash
    }

    /// Moves the end to `env` (which must link).
    pub fn advance(&mut self, env: &Envelope) {
        self.0 = Position {
            seq: env.seq.get(),
            hash: env.hash,
        };
    }

    /// The next seq due.
    pub fn next_seq(&self) -> u64 {
        self.0.seq + 1
    }
}
