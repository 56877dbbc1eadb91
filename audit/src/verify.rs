//! The streaming verifier: one event at a time, in seq order, from whatever source.
//!
//! [`Verifier::new`] takes the checkpoints as stored and the auditor's saved [`AuditState`];
//! [`Verifier::push`] takes each event's stored hash and exact body bytes; [`Verifier::finish`]
//! says either what was verified ([`Summary`]) or the first bad seq and what is wrong there
//! ([`Problem`]). Nothing here does IO, so the file and the NATS source share every check.
//!
//! What is checked, and where a failure is reported:
//! - every event: seqs contiguous from 1 (a gap is reported at the missing seq); the stored hash
//!   equals `chain_hash(previous hash, seq, body)`; the body decodes, names its own seq, links to
//!   the previous hash and carries this log's event id for its seq; times never go backwards;
//!   the domain invariants of [`crate::invariants`] hold.
//! - every checkpoint: it decodes, is stored under the seq it names, names this log and is signed
//!   by the pinned key (reported at its seq); the chain's hash at its seq equals the signed one
//!   (reported at that seq); a checkpoint past the last event means events were cut off
//!   (reported at the first missing seq).
//! - the state file, the auditor's memory of an earlier run: it names the same log; every
//!   checkpoint seen then is still there, with the same hash (checkpoints only grow and never
//!   disagree); the chain still passes through every checkpoint and the head seen then. A history
//!   rewritten and re-signed with the real key is caught at the first such anchor at or after the
//!   rewrite: the resolution is the checkpoint interval, because nothing finer was ever signed.
//!
//! Memory: the checkpoints and anchors (one per `checkpoint_events_max` events) and the domain
//! state (one entry per tailnet, user, token, key and live node); events are not kept.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use authkeys_events::{
    Checkpoint, DecodeError, Envelope, EventId, Hash, LogId, Seq, Timestamp, chain_hash,
};
use authkeys_log::store::is_event_id;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::borrowed::{self, EnvelopeRef};
use crate::invariants::Invariants;

/// A stored row's hash and body; a row too short to hold a hash gets a zero hash, which no
/// chain hash equals.
pub use authkeys_projections::file_log::split_row;

/// Decodes a stored row's body the owned way (the reference decode).
pub fn decode_row(row: &[u8]) -> Result<Envelope, DecodeError> {
    let (hash, body) = split_row(row);
    Envelope::decode_body(body, hash)
}

/// Decodes a stored row's body as the verifier does: the borrowing decode
/// ([`borrowed::decode_body`]) where it takes the body, else the owned one. `true` if it
/// decoded.
pub fn decode_row_for_verify(row: &[u8]) -> bool {
    let (hash, body) = split_row(row);
    match Body::decode(body, hash) {
        Body::Borrowed(_) => true,
        Body::Owned(r) => r.is_ok(),
    }
}

/// A body decoded ahead: borrowed (byte ranges into the body) where the borrowing decode takes
/// it, else owned (the reference, errors included).
#[derive(Debug)]
enum Body {
    Borrowed(borrowed::Decoded),
    /// Boxed: rare, and large.
    Owned(Box<Result<Envelope, DecodeError>>),
}

impl Body {
    fn decode(body: &[u8], hash: Hash) -> Self {
        match borrowed::decode_body(body) {
            Some(d) => Body::Borrowed(d),
            None => Body::Owned(Box::new(Envelope::decode_body(body, hash))),
        }
    }
}

/// Whether `id` is this log's event id for `seq`. A "no" from the allocation-free check is
/// confirmed by the log's own check ([`is_event_id`]), so every refusal is the reference's.
fn event_id_ok(id: &str, log_id: &LogId, seq: Seq) -> bool {
    borrowed::is_event_id(id, log_id, seq)
        || EventId::parse(id).is_ok_and(|id| is_event_id(&id, log_id, seq))
}

/// The first thing found wrong: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first bad seq (0 when the log as a whole is wrong, e.g. another log's id).
    pub seq: u64,
    /// What is wrong there.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq {}: {}", self.seq, self.what)
    }
}

/// A position and the chain hash there: a checkpoint or a head the auditor verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Anchor {
    /// The seq.
    pub seq: u64,
    /// The chain hash at `seq`.
    pub hash: Hash,
}

/// What an auditor keeps between runs (`--state FILE`): the log it verified, the head it saw
/// and every signed checkpoint it saw. The next run must find a history that extends this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditState {
    /// Format of this file.
    pub version: u32,
    /// The log verified.
    pub log_id: LogId,
    /// The last event verified.
    pub head: Anchor,
    /// Every checkpoint verified, in seq order.
    pub checkpoints: Vec<Anchor>,
}

impl AuditState {
    /// The format this build writes and reads.
    pub const VERSION: u32 = 1;
}

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The log verified.
    pub log_id: LogId,
    /// Events verified (the head's seq).
    pub events: u64,
    /// Signed checkpoints verified.
    pub checkpoints: u64,
    /// The last event.
    pub head: Anchor,
    /// The highest signed checkpoint.
    pub last_checkpoint: Option<Anchor>,
    /// The last event's time.
    pub last_time: Option<Timestamp>,
    /// The state to save for the next run.
    pub state: AuditState,
}

/// An event's checks that need no earlier event, done ahead (on any thread) by
/// [`Prepared::new`] and finished in order by [`Verifier::push_prepared`].
#[derive(Debug)]
pub struct Prepared {
    /// The previous hash assumed and whether the stored hash is the chain hash over it and the
    /// body; used only if the assumed hash is the chain's.
    chain: Option<(Hash, bool)>,
    /// The log id assumed and whether the event id is that log's id for the seq the event is
    /// stored under; used only if the assumed log is the verifier's.
    id_ok: Option<(LogId, bool)>,
    decoded: Body,
}

impl Prepared {
    /// Decodes the row stored under `stored_at` and checks its hash, assuming the event before
    /// it has the stored hash `prev`, and its event id.
    pub fn new(log_id: &LogId, prev: &Hash, stored_at: u64, row: &[u8]) -> Self {
        let (hash, body) = split_row(row);
        let seq = Seq::new(stored_at).ok();
        let chain = seq.map(|s| (*prev, chain_hash(prev, s, body) == hash));
        let decoded = Body::decode(body, hash);
        let id = match &decoded {
            Body::Borrowed(d) => d.view(body).map(|env| env.id),
            Body::Owned(decoded) => decoded.as_ref().as_ref().ok().map(|env| env.id.as_str()),
        };
        let id_ok = match (id, seq) {
            (Some(id), Some(s)) => Some((*log_id, event_id_ok(id, log_id, s))),
            _ => None,
        };
        Self {
            chain,
            id_ok,
            decoded,
        }
    }
}

/// The streaming verifier. See the module docs.
#[derive(Debug)]
pub struct Verifier {
    log_id: LogId,
    /// Valid signed checkpoints: seq → hash.
    checkpoints: BTreeMap<u64, Hash>,
    /// What the state file says the chain passes through: seq → hash.
    anchors: BTreeMap<u64, Hash>,
    problem: Option<Problem>,
    head: Anchor,
    last_time: Option<Timestamp>,
    invariants: Invariants,
}

impl Verifier {
    /// Checks `checkpoint_rows` (`(stored key, stored bytes)`, in any order) under `key` and
    /// against `state`, and is ready for event 1.
    pub fn new(
        key: &VerifyingKey,
        log_id: LogId,
        checkpoint_rows: &[(u64, Vec<u8>)],
        state: Option<&AuditState>,
    ) -> Self {
        let mut v = Self {
            log_id,
            checkpoints: BTreeMap::new(),
            anchors: BTreeMap::new(),
            problem: None,
            head: Anchor {
                seq: 0,
                hash: Hash::ZERO,
            },
            last_time: None,
            invariants: Invariants::default(),
        };
        for (stored_at, bytes) in checkpoint_rows {
            let at = *stored_at;
            match Checkpoint::from_bytes(bytes) {
                Err(e) => v.note(at, format!("checkpoint: {e}")),
                Ok(cp) if cp.seq.get() != at => v.note(
                    at,
                    format!("the checkpoint stored at seq {at} names seq {}", cp.seq),
                ),
                Ok(cp) if cp.log_id != log_id => v.note(
                    at,
                    format!("the checkpoint names another log ({})", cp.log_id),
                ),
                Ok(cp) => match cp.verify(key) {
                    Err(_) => v.note(
                        at,
                        "the checkpoint's signature does not verify under the trusted key",
                    ),
                    Ok(()) => {
                        v.checkpoints.insert(at, cp.hash);
                    }
                },
            }
        }
        if let Some(state) = state {
            v.remember(state);
        }
        v
    }

    fn remember(&mut self, state: &AuditState) {
        if state.log_id != self.log_id {
            self.note(
                0,
                format!(
                    "this is log {}, the state file is of log {}",
                    self.log_id, state.log_id
                ),
            );
            return;
        }
        for seen in &state.checkpoints {
            match self.checkpoints.get(&seen.seq) {
                Some(now) if *now != seen.hash => self.note(
                    seen.seq,
                    format!(
                        "two checkpoints disagree on seq {}: the one signed now says {now}, the one \
                         verified before said {}",
                        seen.seq, seen.hash
                    ),
                ),
                Some(_) => {}
                None => self.note(
                    seen.seq,
                    format!(
                        "the signed checkpoint at seq {} that this auditor verified before is gone",
                        seen.seq
                    ),
                ),
            }
            self.anchors.insert(seen.seq, seen.hash);
        }
        if state.head.seq > 0 {
            self.anchors.insert(state.head.seq, state.head.hash);
        }
    }

    /// Keeps the earliest problem.
    fn note(&mut self, seq: u64, what: impl Into<String>) {
        if self.problem.as_ref().is_none_or(|p| seq < p.seq) {
            self.problem = Some(Problem {
                seq,
                what: what.into(),
            });
        }
    }

    /// The next seq due.
    pub fn next_seq(&self) -> u64 {
        self.head.seq + 1
    }

    /// [`Verifier::push_decoded`] for a row as the log file stores it (hash (32 bytes) ‖ body)
    /// and its [`decode_row`].
    pub fn push_row(
        &mut self,
        stored_at: u64,
        row: &[u8],
        decoded: Result<Envelope, DecodeError>,
    ) -> ControlFlow<()> {
        let (hash, body) = split_row(row);
        self.push_decoded(stored_at, &hash, body, decoded)
    }

    /// Checks the event stored under `stored_at` with its stored `hash` and `body`. Breaks once a
    /// problem at or before this seq is known: nothing later can change the answer.
    pub fn push(&mut self, stored_at: u64, hash: &Hash, body: &[u8]) -> ControlFlow<()> {
        let prepared = Prepared {
            chain: None,
            id_ok: None,
            decoded: Body::decode(body, *hash),
        };
        self.push_prepared(stored_at, hash, body, &prepared)
    }

    /// [`Verifier::push`] with the body already decoded (elsewhere, e.g. on another thread):
    /// `decoded` must be `Envelope::decode_body(body, hash)`.
    pub fn push_decoded(
        &mut self,
        stored_at: u64,
        hash: &Hash,
        body: &[u8],
        decoded: Result<Envelope, DecodeError>,
    ) -> ControlFlow<()> {
        let prepared = Prepared {
            chain: None,
            id_ok: None,
            decoded: Body::Owned(Box::new(decoded)),
        };
        self.push_prepared(stored_at, hash, body, &prepared)
    }

    /// [`Verifier::push`] with the work that needs no earlier event done already, e.g. on another
    /// thread: see [`Prepared::new`]. Borrows it, so that whoever made it can free it.
    pub fn push_prepared(
        &mut self,
        stored_at: u64,
        hash: &Hash,
        body: &[u8],
        prepared: &Prepared,
    ) -> ControlFlow<()> {
        let seq = self.next_seq();
        if self.problem.as_ref().is_some_and(|p| p.seq <= seq) {
            return ControlFlow::Break(());
        }
        match self.check(seq, stored_at, hash, body, prepared) {
            Ok(()) => ControlFlow::Continue(()),
            Err(what) => {
                self.note(seq, what);
                ControlFlow::Break(())
            }
        }
    }

    fn check(
        &mut self,
        seq: u64,
        stored_at: u64,
        hash: &Hash,
        body: &[u8],
        prepared: &Prepared,
    ) -> Result<(), String> {
        if stored_at != seq {
            return Err(format!(
                "event {seq} is missing (the next stored is {stored_at})"
            ));
        }
        let s = Seq::new(seq).map_err(|_| "seq 0 stored".to_owned())?;
        // A hash computed ahead over another previous hash than the chain's says nothing here.
        let chained = match prepared.chain {
            Some((prev, ok)) if prev == self.head.hash => ok,
            _ => chain_hash(&self.head.hash, s, body) == *hash,
        };
        if !chained {
            return Err(
                "the stored hash does not match the stored bytes and the event before".into(),
            );
        }
        let bad_body = |e: &DecodeError| format!("the body: {e}");
        let fallback;
        let env = match &prepared.decoded {
            Body::Borrowed(d) => match d.view(body) {
                Some(env) => env,
                // Not the body it was decoded from: decode this one the owned way.
                None => {
                    fallback = Envelope::decode_body(body, *hash);
                    EnvelopeRef::from_owned(fallback.as_ref().map_err(bad_body)?)
                }
            },
            Body::Owned(decoded) => {
                EnvelopeRef::from_owned(decoded.as_ref().as_ref().map_err(bad_body)?)
            }
        };
        if env.seq != s {
            return Err(format!("the body names seq {}", env.seq));
        }
        if env.prev_hash != self.head.hash {
            return Err("prevHash does not link to the event before".into());
        }
        // `id_ok` was computed for `stored_at`, which is `seq` here.
        let id_ok = match prepared.id_ok {
            Some((log_id, ok)) if log_id == self.log_id => ok,
            _ => event_id_ok(env.id, &self.log_id, s),
        };
        if !id_ok {
            return Err("the event id is not this log's id for this seq".into());
        }
        if let Some(before) = self.last_time
            && env.time < before
        {
            return Err(format!("time goes backwards ({} after {before})", env.time));
        }
        if self.checkpoints.get(&seq).is_some_and(|h| h != hash) {
            return Err("the signed checkpoint at this seq disagrees with the chain".into());
        }
        if self.anchors.get(&seq).is_some_and(|h| h != hash) {
            return Err(
                "the history up to here differs from the one this auditor verified before \
                 (state file): rewritten"
                    .into(),
            );
        }
        self.invariants
            .check_ref(&env)
            .map_err(|what| format!("{} {what}", env.ty))?;
        self.invariants.apply_ref(&env);
        self.last_time = Some(env.time);
        self.head = Anchor { seq, hash: *hash };
        Ok(())
    }

    /// The verdict once the source has no more events.
    pub fn finish(mut self) -> Result<Summary, Problem> {
        let next = self.next_seq();
        if let Some((&seq, _)) = self.checkpoints.range(next..).next() {
            self.note(
                next,
                format!("event {next} is missing: a signed checkpoint covers seq {seq}"),
            );
        }
        if let Some((&seq, _)) = self.anchors.range(next..).next() {
            self.note(
                next,
                format!(
                    "event {next} is missing: this auditor verified the log up to seq {seq} before \
                     (state file)"
                ),
            );
        }
        if let Some(p) = self.problem {
            return Err(p);
        }
        let checkpoints: Vec<Anchor> = self
            .checkpoints
            .iter()
            .map(|(&seq, &hash)| Anchor { seq, hash })
            .collect();
        Ok(Summary {
            log_id: self.log_id,
            events: self.head.seq,
            checkpoints: checkpoints.len() as u64,
            head: self.head,
            last_checkpoint: checkpoints.last().copied(),
            last_time: self.last_time,
            state: AuditState {
                version: AuditState::VERSION,
                log_id: self.log_id,
                head: self.head,
                checkpoints,
            },
        })
    }
}
