//! The log's read subjects (`authkeys.log.read`, `authkeys.log.checkpoints`): the request, the
//! page as written (envelopes' stored bytes verbatim, so a reader can check them) and as read
//! ([`RawPage`]), and the checkpoints page. Both ends use this module, so the two cannot drift.

use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::Client;
use authkeys_events::{Envelope, Hash, LogId, Seq, chain_hash};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::ErrorBody;

/// Events one `authkeys.log.read` request may ask for at most.
pub const LOG_READ_EVENTS_MAX: u32 = 1_000;
/// Checkpoints in one `authkeys.log.checkpoints` reply at most (~260 bytes each).
pub const CHECKPOINTS_PAGE_MAX: u32 = 1_000;

/// `{"fromSeq": <integer ≥ 1>, "limit": <integer 1..=max>}`, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogReadRequest {
    /// The first seq wanted.
    pub from_seq: Seq,
    /// How many at most.
    pub limit: u32,
}

impl LogReadRequest {
    /// The request's bytes.
    pub fn to_bytes(self) -> Vec<u8> {
        format!(
            r#"{{"fromSeq":{},"limit":{}}}"#,
            self.from_seq.get(),
            self.limit
        )
        .into_bytes()
    }

    /// Parses a request whose `limit` may be at most `limit_max`; the error names the field and
    /// what it must be.
    pub fn parse(payload: &[u8], limit_max: u32) -> Result<Self, String> {
        let shape = format!(
            "expected {{\"fromSeq\": <integer ≥ 1>, \"limit\": <integer 1..={limit_max}>}}"
        );
        let value: Value = serde_json::from_slice(payload)
            .map_err(|e| format!("the request is not valid JSON ({e}); {shape}"))?;
        let Value::Object(fields) = value else {
            return Err(format!(
                "the request must be a JSON object with fromSeq and limit; {shape}"
            ));
        };
        if let Some(unknown) = fields.keys().find(|k| *k != "fromSeq" && *k != "limit") {
            let name: String = unknown.chars().take(64).collect();
            return Err(format!("unknown field `{name}`; {shape}"));
        }
        let from_seq = field(&fields, "fromSeq", u64::MAX, "an integer ≥ 1")?;
        let limit = field(
            &fields,
            "limit",
            u64::from(limit_max),
            &format!("an integer from 1 to {limit_max}"),
        )?;
        Ok(Self {
            from_seq: Seq::new(from_seq).expect("field() refuses 0"),
            limit: u32::try_from(limit).expect("field() caps it at limit_max, a u32"),
        })
    }
}

/// An integer field in `1..=max`; the error names the field and says what it must be (`what`).
fn field(fields: &Map<String, Value>, name: &str, max: u64, what: &str) -> Result<u64, String> {
    let value = fields
        .get(name)
        .ok_or_else(|| format!("{name} is required: {what}"))?;
    match value.as_u64() {
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(format!("{name} is {n}; it must be {what}")),
        None => Err(format!("{name} must be {what}")),
    }
}

/// `{"ok":true,"events":[`
const PAGE_OPEN: &[u8] = b"{\"ok\":true,\"events\":[";
/// `],"head":` + at most 20 digits + `}`.
pub const PAGE_CLOSE_BYTES_MAX: usize = 9 + 20 + 1;

/// The bytes a page adds around its events.
pub const PAGE_FRAME_BYTES: usize = PAGE_OPEN.len() + PAGE_CLOSE_BYTES_MAX;

/// `{"ok":true,"events":[e1,e2,…],"head":N}` from the envelopes' stored JSON, verbatim.
pub fn page_bytes(events: &[Vec<u8>], head: u64) -> Vec<u8> {
    let body: usize = events.iter().map(|e| e.len() + 1).sum();
    let mut out = Vec::with_capacity(PAGE_FRAME_BYTES + body);
    out.extend_from_slice(PAGE_OPEN);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.extend_from_slice(b"],\"head\":");
    out.extend_from_slice(head.to_string().as_bytes());
    out.push(b'}');
    out
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
    pub error: Option<ErrorBody>,
}

/// `{…,"hash":"<64 hex>"}` → (the hash, `{…}`): the stored body and hash of an envelope the log
/// spliced, or `None` if `json` does not end that way.
pub fn split_stored(json: &[u8]) -> Option<(Hash, Vec<u8>)> {
    const SUFFIX_BYTES: usize = 9 + 64 + 2; // ,"hash":" + hex + "}
    let start = json.len().checked_sub(SUFFIX_BYTES)?;
    let tail = &json[start..];
    if !tail.starts_with(b",\"hash\":\"") || !tail.ends_with(b"\"}") {
        return None;
    }
    let hash = Hash::from_hex(std::str::from_utf8(&tail[9..9 + 64]).ok()?).ok()?;
    let mut body = Vec::with_capacity(start + 1);
    body.extend_from_slice(&json[..start]);
    body.push(b'}');
    Some((hash, body))
}

/// One stored checkpoint row as `authkeys.log.checkpoints` sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointRow {
    /// The seq it is stored under.
    pub at: u64,
    /// Its stored bytes, hex.
    pub bytes: String,
}

/// An `authkeys.log.checkpoints` reply: `{ok: true, logId, checkpoints}` or a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointsPage {
    /// Whether the read was answered.
    pub ok: bool,
    /// The log's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<LogId>,
    /// Up to `limit` checkpoints from `fromSeq` on (empty past the last one).
    #[serde(default)]
    pub checkpoints: Vec<CheckpointRow>,
    /// Why not, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl CheckpointsPage {
    /// The page of `all` that `request` asks for.
    pub fn of(log_id: LogId, all: &[authkeys_events::Checkpoint], request: LogReadRequest) -> Self {
        let checkpoints = all
            .iter()
            .filter(|cp| cp.seq >= request.from_seq)
            .take(request.limit as usize)
            .map(|cp| CheckpointRow {
                at: cp.seq.get(),
                bytes: hex::encode(cp.to_bytes()),
            })
            .collect();
        Self {
            ok: true,
            log_id: Some(log_id),
            checkpoints,
            error: None,
        }
    }
}

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
        let Ok(from_seq) = Seq::new(from) else {
            bail!("{} from 0: seqs start at 1", self.subject);
        };
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let body = LogReadRequest { from_seq, limit }.to_bytes();
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
        if events.len() > limit as usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<LogReadRequest, String> {
        LogReadRequest::parse(s.as_bytes(), 1_000)
    }

    #[test]
    fn parse_accepts_a_valid_request_and_round_trips() {
        let r = parse_str(r#"{"fromSeq": 3, "limit": 1000}"#);
        assert_eq!(
            r,
            Ok(LogReadRequest {
                from_seq: Seq::new(3).expect("nonzero"),
                limit: 1000
            })
        );
        let r = r.expect("valid");
        assert_eq!(LogReadRequest::parse(&r.to_bytes(), 1_000), Ok(r));
    }

    #[test]
    fn parse_errors_name_the_field() {
        let cases = [
            ("{}", "fromSeq"),
            (r#"{"fromSeq": 0, "limit": 1}"#, "fromSeq"),
            (r#"{"fromSeq": -1, "limit": 1}"#, "fromSeq"),
            (r#"{"fromSeq": 1.5, "limit": 1}"#, "fromSeq"),
            (r#"{"fromSeq": "1", "limit": 1}"#, "fromSeq"),
            (r#"{"fromSeq": 1}"#, "limit"),
            (r#"{"fromSeq": 1, "limit": 0}"#, "limit"),
            (r#"{"fromSeq": 1, "limit": 1001}"#, "limit"),
            (r#"{"fromSeq": 1, "limit": 99999999999999999999}"#, "limit"),
            (r#"{"fromSeq": 1, "limit": 1, "x": 1}"#, "`x`"),
            (r#""junk""#, "fromSeq"),
            ("junk", "fromSeq"),
            ("", "fromSeq"),
            ("[1,2]", "fromSeq"),
        ];
        for (input, field) in cases {
            let err = parse_str(input).expect_err(input);
            assert!(err.contains(field), "{input}: {err}");
        }
    }

    #[test]
    fn page_bytes_are_valid_json_with_the_bytes_in_place() {
        let events = vec![br#"{"a":1}"#.to_vec(), br#"{"b":[2]}"#.to_vec()];
        let reply = page_bytes(&events, 7);
        assert_eq!(
            &reply[..],
            br#"{"ok":true,"events":[{"a":1},{"b":[2]}],"head":7}"#
        );
        let empty = page_bytes(&[], u64::MAX);
        let page: RawPage<'_> = serde_json::from_slice(&empty).expect("valid JSON");
        assert_eq!(page.head, u64::MAX);
        assert!(empty.len() <= PAGE_FRAME_BYTES);
    }
}
