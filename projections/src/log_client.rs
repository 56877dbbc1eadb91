//! Pages of the log over `authkeys.log.read`, decoded and checked: the source of backfills, tail
//! checks and rebuilds. JetStream is fan-out; the log is the record.
//!
//! Check both ends: the log-read service checks its chain before replying; here every event of
//! a page is checked again — seqs contiguous from the requested one, each hash recomputed over
//! the exact bytes received, each `prevHash` equal to the hash before ([`Chain`]).

use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::Client;
use authkeys_events::{Envelope, chain_hash};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::store::Checkpoint;

/// A reader of the log over NATS.
#[derive(Debug, Clone)]
pub struct LogClient {
    client: Client,
    subject: String,
    events_max: u32,
    wait: Duration,
}

/// A page: events from the requested seq on (possibly none), and the log's head then.
#[derive(Debug)]
pub struct Page {
    /// Checked envelopes, contiguous from the requested seq, each with its hash recomputed.
    pub events: Vec<Envelope>,
    /// The log's last seq when the page was read.
    pub head: u64,
}

/// An `authkeys.log.read` reply as sent: the envelopes still raw, so a reader can check their
/// bytes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPage<'a> {
    /// Whether the read was answered.
    pub ok: bool,
    /// The envelopes, verbatim.
    #[serde(default, borrow)]
    pub events: Vec<&'a RawValue>,
    /// The log's head when read.
    #[serde(default)]
    pub head: u64,
    /// Why not, when `ok` is false.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

impl LogClient {
    /// Reads `subject` at most `events_max` events a request, each request bounded by `wait`.
    pub fn new(client: Client, subject: String, events_max: u32, wait: Duration) -> Self {
        Self {
            client,
            subject,
            events_max,
            wait,
        }
    }

    /// Up to `limit` (capped at `events_max`) events from `from` on.
    pub async fn read(&self, from: u64, limit: u64) -> anyhow::Result<Page> {
        let limit = limit.clamp(1, u64::from(self.events_max));
        let body = format!(r#"{{"fromSeq":{from},"limit":{limit}}}"#);
        let reply = tokio::time::timeout(
            self.wait,
            self.client.request(self.subject.clone(), body.into()),
        )
        .await
        .with_context(|| format!("{} from {from}: no reply in {:?}", self.subject, self.wait))?
        .with_context(|| format!("{} from {from}", self.subject))?;
        let parsed: RawPage<'_> = serde_json::from_slice(&reply.payload)
            .with_context(|| format!("{} reply from {from} is malformed", self.subject))?;
        if !parsed.ok {
            bail!("{} from {from} refused: {:?}", self.subject, parsed.error);
        }
        let mut events = Vec::with_capacity(parsed.events.len());
        for (raw, expected) in parsed.events.iter().zip(from..) {
            let env = decode_checked(raw.get().as_bytes())
                .with_context(|| format!("event {expected} from the log"))?;
            if env.seq.get() != expected {
                bail!("the log sent seq {} where {expected} was due", env.seq);
            }
            events.push(env);
        }
        if u64::try_from(events.len()).unwrap_or(u64::MAX) > limit {
            bail!("the log sent more events than asked for");
        }
        Ok(Page {
            events,
            head: parsed.head,
        })
    }
}

/// Decodes a full JSON envelope and checks that its `hash` is the chain hash of the bytes
/// received (the stored body is the JSON with the trailing `,"hash":"…"` removed).
pub fn decode_checked(json: &[u8]) -> anyhow::Result<Envelope> {
    let env = Envelope::from_json(json).context("decode envelope")?;
    let computed = match split_stored(json) {
        Some((_, body)) => chain_hash(&env.prev_hash, env.seq, &body),
        // Not spliced by the log (whitespace, field order): fall back to the canonical bytes.
        None => env.compute_hash(),
    };
    if computed != env.hash {
        bail!("event {}: hash does not match its bytes", env.seq);
    }
    Ok(env)
}

/// `{…,"hash":"<64 hex>"}` → (the hash, `{…}`): the stored body and hash of an envelope the log
/// spliced, or `None` if `json` does not end that way.
pub fn split_stored(json: &[u8]) -> Option<(authkeys_events::Hash, Vec<u8>)> {
    const SUFFIX_BYTES: usize = 9 + 64 + 2; // ,"hash":" + hex + "}
    let start = json.len().checked_sub(SUFFIX_BYTES)?;
    let tail = &json[start..];
    if !tail.starts_with(b",\"hash\":\"") || !tail.ends_with(b"\"}") {
        return None;
    }
    let hash = authkeys_events::Hash::from_hex(std::str::from_utf8(&tail[9..9 + 64]).ok()?).ok()?;
    let mut body = Vec::with_capacity(start + 1);
    body.extend_from_slice(&json[..start]);
    body.push(b'}');
    Some((hash, body))
}

/// Where the chain of applied events stands; [`Chain::link`] accepts only the next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain(pub Checkpoint);

impl Chain {
    /// Whether `env` is the event right after the chain's end and links to it. Its own hash is
    /// checked where it was decoded ([`decode_checked`]).
    pub fn links(&self, env: &Envelope) -> bool {
        env.seq.get() == self.0.seq + 1 && env.prev_hash == self.0.hash
    }

    /// Moves the end to `env` (which must link).
    pub fn advance(&mut self, env: &Envelope) {
        self.0 = Checkpoint {
            seq: env.seq.get(),
            hash: env.hash,
        };
    }

    /// The next seq due.
    pub fn next_seq(&self) -> u64 {
        self.0.seq + 1
    }
}
