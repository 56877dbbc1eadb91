//! The envelope every event travels in, and its exact byte encoding.
//!
//! The log stores the envelope **without** its `hash` field (the "body"); the hash is computed
//! over those exact bytes ([`crate::chain_hash`]) and stored beside them. The full JSON envelope
//! (with `hash`) is the body with `,"hash":"…"` spliced in before the closing brace, so serving an
//! event never re-serializes it.

use schemars::JsonSchema;
use serde::de::Error as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::catalogue::{Event, EventType};
use crate::chain::{Hash, chain_hash};
use crate::ids::{CommandId, EventId, LoginName, Seq, StreamId, TailnetId};
use crate::time::Timestamp;

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActorType {
    /// A person, through the API or console.
    User,
    /// A node registrar, on behalf of a node.
    Registrar,
    /// authkeys itself (timers, bootstrap).
    System,
    /// An OAuth client.
    Oauth,
}

/// The actor of an event: `{type, id, loginName?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Actor {
    /// What kind of actor.
    #[serde(rename = "type")]
    pub actor_type: ActorType,
    /// Its id (a user id, a registrar's name, `timers`, …).
    pub id: String,
    /// A user's login name at the time, for auditors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_name: Option<LoginName>,
}

impl Actor {
    /// authkeys itself, e.g. a timer or bootstrap.
    pub fn system(id: &str) -> Self {
        Self {
            actor_type: ActorType::System,
            id: id.to_owned(),
            login_name: None,
        }
    }
}

/// Why bytes did not decode as an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not an envelope at all (bad JSON, missing or unknown field).
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// `type` names no event.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// A version this build cannot read.
    #[error("{ty} version {version} is not supported")]
    UnsupportedVersion {
        /// The event type.
        ty: &'static str,
        /// The version found.
        version: u16,
    },
    /// `data` does not match the type's schema.
    #[error("{ty} data: {reason}")]
    Data {
        /// The event type.
        ty: &'static str,
        /// What serde said.
        reason: String,
    },
}

/// An event with its position, identity, provenance and chain links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Global position, gapless from 1.
    pub seq: Seq,
    /// Unique id (`Nats-Msg-Id`).
    pub id: EventId,
    /// The event (`type`, `version` and `data` on the wire).
    pub event: Event,
    /// The tailnet it belongs to.
    pub tailnet: TailnetId,
    /// Its stream.
    pub stream: StreamId,
    /// Position within the stream, from 1.
    pub stream_version: u64,
    /// When it was committed.
    pub time: Timestamp,
    /// Who caused it.
    pub actor: Actor,
    /// The command that produced it.
    pub command_id: CommandId,
    /// The previous event's hash (zero for seq 1).
    pub prev_hash: Hash,
    /// This event's hash, [`crate::chain_hash`] over the body.
    pub hash: Hash,
}

/// The envelope fields in wire order; `hash` last and optional so the body omits it.
struct Wire<'a> {
    env: &'a Envelope,
    with_hash: bool,
}

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.env;
        let ty = e.event.event_type();
        let mut st = s.serialize_struct("Envelope", if self.with_hash { 13 } else { 12 })?;
        st.serialize_field("seq", &e.seq)?;
        st.serialize_field("id", &e.id)?;
        st.serialize_field("type", ty.as_str())?;
        st.serialize_field("version", &ty.version())?;
        st.serialize_field("tailnet", &e.tailnet)?;
        st.serialize_field("stream", &e.stream)?;
        st.serialize_field("streamVersion", &e.stream_version)?;
        st.serialize_field("time", &e.time)?;
        st.serialize_field("actor", &e.actor)?;
        st.serialize_field("commandId", &e.command_id)?;
        st.serialize_field("data", &Data(&e.event))?;
        st.serialize_field("prevHash", &e.prev_hash)?;
        if self.with_hash {
            st.serialize_field("hash", &e.hash)?;
        }
        st.end()
    }
}

/// An event's `data`, serialized in place.
struct Data<'a>(&'a Event);

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_data(s)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEnvelope<'a> {
    seq: Seq,
    id: EventId,
    #[serde(rename = "type")]
    ty: std::borrow::Cow<'a, str>,
    version: u16,
    tailnet: TailnetId,
    stream: StreamId,
    stream_version: u64,
    time: Timestamp,
    actor: Actor,
    command_id: CommandId,
    #[serde(borrow)]
    data: &'a RawValue,
    prev_hash: Hash,
    #[serde(default)]
    hash: Option<Hash>,
}

impl RawEnvelope<'_> {
    fn into_envelope(self, hash: Hash) -> Result<Envelope, DecodeError> {
        let event = Event::decode(&self.ty, self.version, self.data.get())?;
        Ok(Envelope {
            seq: self.seq,
            id: self.id,
            event,
            tailnet: self.tailnet,
            stream: self.stream,
            stream_version: self.stream_version,
            time: self.time,
            actor: self.actor,
            command_id: self.command_id,
            prev_hash: self.prev_hash,
            hash,
        })
    }
}

/// The one-pass decode: the envelope's fields read in order, and `data` straight into its
/// event type, which `type` and `version` (written before `data` in every envelope the log
/// makes) already named. It gives up (`None`) on anything else — another field order, an unknown
/// type or version, a field missing, twice or unknown, bad JSON, the array form — and the caller
/// then decodes the two-pass way ([`RawEnvelope`]: `data` kept raw, then decoded), whose answer,
/// error included, is the reference. So this only ever answers what that path would, faster:
/// `data` is scanned once instead of twice.
fn decode_one_pass(bytes: &[u8]) -> Option<(Envelope, Option<Hash>)> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let out = serde::Deserializer::deserialize_map(&mut de, OnePass).ok()?;
    de.end().ok()?;
    Some(out)
}

/// The envelope's fields, for [`decode_one_pass`].
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Field {
    Seq,
    Id,
    Type,
    Version,
    Tailnet,
    Stream,
    StreamVersion,
    Time,
    Actor,
    CommandId,
    Data,
    PrevHash,
    Hash,
}

/// Reads `data` as the event type `type` and `version` named.
struct DataSeed(EventType);

impl<'de> serde::de::DeserializeSeed<'de> for DataSeed {
    type Value = Event;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
        Event::deserialize_data(self.0, d)
    }
}

struct OnePass;

/// Sets `slot` once; a second time is an error (as the derived decode says of a duplicate).
fn once<'de, T: Deserialize<'de>, A: serde::de::MapAccess<'de>>(
    slot: &mut Option<T>,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(A::Error::custom("duplicate field"));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> serde::de::Visitor<'de> for OnePass {
    type Value = (Envelope, Option<Hash>);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an envelope")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut seq, mut id, mut ty, mut version, mut tailnet, mut stream) = (
            None,
            None,
            None::<std::borrow::Cow<'de, str>>,
            None::<u16>,
            None,
            None,
        );
        let (mut stream_version, mut time, mut actor, mut command_id, mut event) =
            (None, None, None, None, None);
        let (mut prev_hash, mut hash) = (None, None::<Option<Hash>>);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Seq => once(&mut seq, &mut map)?,
                Field::Id => once(&mut id, &mut map)?,
                Field::Type => once(&mut ty, &mut map)?,
                Field::Version => once(&mut version, &mut map)?,
                Field::Tailnet => once(&mut tailnet, &mut map)?,
                Field::Stream => once(&mut stream, &mut map)?,
                Field::StreamVersion => once(&mut stream_version, &mut map)?,
                Field::Time => once(&mut time, &mut map)?,
                Field::Actor => once(&mut actor, &mut map)?,
                Field::CommandId => once(&mut command_id, &mut map)?,
                Field::PrevHash => once(&mut prev_hash, &mut map)?,
                Field::Hash => once(&mut hash, &mut map)?,
                Field::Data => {
                    let et = match (ty.as_deref().and_then(EventType::parse), version) {
                        (Some(et), Some(v)) if v == et.version() && event.is_none() => et,
                        _ => return Err(A::Error::custom("not the one-pass order")),
                    };
                    event = Some(map.next_value_seed(DataSeed(et))?);
                }
            }
        }
        let missing = || A::Error::custom("missing field");
        let env = Envelope {
            seq: seq.ok_or_else(missing)?,
            id: id.ok_or_else(missing)?,
            event: event.ok_or_else(missing)?,
            tailnet: tailnet.ok_or_else(missing)?,
            stream: stream.ok_or_else(missing)?,
            stream_version: stream_version.ok_or_else(missing)?,
            time: time.ok_or_else(missing)?,
            actor: actor.ok_or_else(missing)?,
            command_id: command_id.ok_or_else(missing)?,
            prev_hash: prev_hash.ok_or_else(missing)?,
            hash: Hash::ZERO,
        };
        Ok((env, hash.flatten()))
    }
}

/// What routing an event needs from its stored bytes, read in place, without decoding `data`
/// and without allocating: position, id, type, tailnet, time, command, the raw `data` and the
/// chain link. It reads the one encoding the log writes ([`Envelope::encode_body`]: every field
/// in order, no whitespace) and checks every id as its type does, the type and version as ones
/// this build knows, and the time. The full decode ([`Envelope::decode_body`]) stays the
/// reference: [`Peek::body`] answers `None` for anything else (another order, whitespace, an
/// escaped string, an unknown field or type), and a caller then decodes the whole envelope, which
/// either succeeds or names the error. `data` is not read: a peek says nothing of whether it
/// decodes as its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek<'a> {
    /// Global position.
    pub seq: u64,
    /// Event id.
    pub id: &'a str,
    /// Its type (at the version this build writes).
    pub event_type: EventType,
    /// Its tailnet.
    pub tailnet: &'a str,
    /// When it was committed.
    pub time: Timestamp,
    /// The command that produced it.
    pub command_id: &'a str,
    /// Its `data`, as stored (decode with [`Event::decode`]).
    pub data: &'a str,
    /// The previous event's hash.
    pub prev_hash: Hash,
}

/// A cursor over the exact bytes [`Envelope::encode_body`] writes.
struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    /// Consumes `lit` exactly.
    fn lit(&mut self, lit: &[u8]) -> Option<()> {
        let end = self.at.checked_add(lit.len())?;
        (self.bytes.get(self.at..end)? == lit).then(|| self.at = end)
    }

    /// A decimal integer without sign or leading zeros (as serde_json writes one).
    fn uint(&mut self) -> Option<u64> {
        let digits = self.bytes[self.at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let text = std::str::from_utf8(&self.bytes[self.at..self.at + digits]).ok()?;
        if digits == 0 || (digits > 1 && text.starts_with('0')) {
            return None;
        }
        self.at += digits;
        text.parse().ok()
    }

    /// A string's contents up to its closing quote, which is consumed; `None` if it holds an
    /// escape or a control character (the full decode reads those).
    fn plain_str(&mut self) -> Option<&'a str> {
        let rest = &self.bytes[self.at..];
        let len = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        let text = std::str::from_utf8(&rest[..len]).ok()?;
        self.at += len + 1;
        Some(text)
    }

    /// Skips one flat JSON object of strings (the actor), honouring escapes within strings.
    fn flat_object(&mut self) -> Option<()> {
        self.lit(b"{")?;
        let mut in_string = false;
        let mut escaped = false;
        for (i, &b) in self.bytes[self.at..].iter().enumerate() {
            match (in_string, escaped, b) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (_, false, b'"') => in_string = !in_string,
                (false, _, b'{' | b'[') => return None,
                (false, _, b'}') => {
                    self.at += i + 1;
                    return Some(());
                }
                _ => {}
            }
        }
        None
    }
}

/// How a stored body ends: `,"prevHash":"<64 hex digits>"}`.
const PREV_HASH_TAIL: usize = b",\"prevHash\":\"".len() + 64 + 2;

impl<'a> Peek<'a> {
    /// Peeks at a stored body (an envelope without `hash`). `None`: decode it whole instead.
    pub fn body(body: &'a [u8]) -> Option<Self> {
        let data_end = body.len().checked_sub(PREV_HASH_TAIL)?;
        let mut tail = Scan {
            bytes: body,
            at: data_end,
        };
        tail.lit(b",\"prevHash\":\"")?;
        let prev_hash = Hash::from_hex(tail.plain_str()?).ok()?;
        tail.lit(b"}")?;

        let mut s = Scan { bytes: body, at: 0 };
        s.lit(b"{\"seq\":")?;
        let seq = s.uint()?;
        s.lit(b",\"id\":\"")?;
        let id = s.plain_str()?;
        s.lit(b",\"type\":\"")?;
        let ty = s.plain_str()?;
        s.lit(b",\"version\":")?;
        let version = s.uint()?;
        s.lit(b",\"tailnet\":\"")?;
        let tailnet = s.plain_str()?;
        s.lit(b",\"stream\":\"")?;
        s.plain_str()?;
        s.lit(b",\"streamVersion\":")?;
        s.uint()?;
        s.lit(b",\"time\":\"")?;
        let time = Timestamp::parse(s.plain_str()?).ok()?;
        s.lit(b",\"actor\":")?;
        s.flat_object()?;
        s.lit(b",\"commandId\":\"")?;
        let command_id = s.plain_str()?;
        s.lit(b",\"data\":")?;
        let data = std::str::from_utf8(body.get(s.at..data_end)?).ok()?;

        let event_type = EventType::parse(ty).filter(|t| u64::from(t.version()) == version)?;
        EventId::check(id).ok()?;
        TailnetId::check(tailnet).ok()?;
        CommandId::check(command_id).ok()?;
        Some(Peek {
            seq,
            id,
            event_type,
            tailnet,
            time,
            command_id,
            data,
            prev_hash,
        })
    }

    /// Decodes its `data` as its type: the event, without the rest of the envelope.
    pub fn event(&self) -> Result<Event, DecodeError> {
        Event::decode(
            self.event_type.as_str(),
            self.event_type.version(),
            self.data,
        )
    }
}

impl Envelope {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.event.event_type()
    }

    /// The stored bytes: the envelope as JSON without `hash`. Deterministic for equal envelopes.
    pub fn encode_body(&self) -> Vec<u8> {
        serde_json::to_vec(&Wire {
            env: self,
            with_hash: false,
        })
        .expect("every field of a valid envelope serializes")
    }

    /// The full JSON envelope, `hash` included.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&Wire {
            env: self,
            with_hash: true,
        })
        .expect("every field of a valid envelope serializes")
    }

    /// The chain hash this envelope should carry, from its own fields.
    pub fn compute_hash(&self) -> Hash {
        chain_hash(&self.prev_hash, self.seq, &self.encode_body())
    }

    /// Decodes a stored body (no `hash` field) whose hash is stored beside it.
    pub fn decode_body(body: &[u8], hash: Hash) -> Result<Self, DecodeError> {
        if let Some((mut env, None)) = decode_one_pass(body) {
            env.hash = hash;
            return Ok(env);
        }
        let raw: RawEnvelope<'_> =
            serde_json::from_slice(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if raw.hash.is_some() {
            return Err(DecodeError::Malformed(
                "a stored body must not carry a hash".into(),
            ));
        }
        raw.into_envelope(hash)
    }

    /// Decodes a full JSON envelope (as published on NATS or served by `authkeys.log.read`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        if let Some((mut env, Some(hash))) = decode_one_pass(bytes) {
            env.hash = hash;
            return Ok(env);
        }
        let raw: RawEnvelope<'_> =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let hash = raw
            .hash
            .ok_or_else(|| DecodeError::Malformed("missing field `hash`".into()))?;
        raw.into_envelope(hash)
    }

    /// Splices `,"hash":"…"` into a stored body to make the full JSON envelope without
    /// re-serializing it. `body` must be a JSON object (as [`Envelope::encode_body`] makes).
    pub fn splice_hash(body: &[u8], hash: &Hash) -> Vec<u8> {
        let end = body.len().saturating_sub(1);
        let mut out = Vec::with_capacity(body.len() + 76);
        out.extend_from_slice(&body[..end]);
        out.extend_from_slice(b",\"hash\":\"");
        out.extend_from_slice(&hash.hex_digits());
        out.extend_from_slice(b"\"}");
        out
    }
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            env: self,
            with_hash: true,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawEnvelope::deserialize(d)?;
        let hash = raw.hash.ok_or_else(|| D::Error::missing_field("hash"))?;
        raw.into_envelope(hash).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{KeyRevoked, NodeConnected};
    use crate::ids::{KeyId, NodeId};

    fn sample() -> Envelope {
        let tailnet = TailnetId::parse("T1").expect("valid");
        let event = Event::from(KeyRevoked {
            key_id: KeyId::parse("kAbc123").expect("valid"),
        });
        let mut env = Envelope {
            seq: Seq::new(3).expect("nonzero"),
            id: EventId::parse(format!("e{}", "0".repeat(32))).expect("valid"),
            stream: event.stream(&tailnet),
            event,
            tailnet,
            stream_version: 2,
            time: Timestamp::from_unix_ms(1_795_819_541_123).expect("in range"),
            actor: Actor::system("test"),
            command_id: CommandId::parse("c-1").expect("valid"),
            prev_hash: Hash([1; 32]),
            hash: Hash::ZERO,
        };
        env.hash = env.compute_hash();
        env
    }

    #[test]
    fn body_and_full_json_round_trip() {
        let env = sample();
        let body = env.encode_body();
        assert!(!body.windows(6).any(|w| w == b"\"hash\""));
        let full = Envelope::splice_hash(&body, &env.hash);
        assert_eq!(full, env.to_json());
        assert_eq!(Envelope::from_json(&full).expect("decodes"), env);
        assert_eq!(
            Envelope::decode_body(&body, env.hash).expect("decodes"),
            env
        );
        assert!(Envelope::decode_body(&full, env.hash).is_err());
        let text = String::from_utf8(full).expect("utf8");
        assert!(text.starts_with(r#"{"seq":3,"id":"e0000"#), "{text}");
        assert!(
            text.contains(r#""type":"KeyRevoked","version":1"#),
            "{text}"
        );
        assert!(text.contains(r#""stream":"key/kAbc123","streamVersion":2"#));
        assert!(text.contains(r#""time":"2026-11-27T22:45:41.123Z""#));
    }

    #[test]
    fn peek_agrees_with_the_full_decode_or_defers_to_it() {
        // Proves: a peek reads exactly the fields the full decode does, and answers None (so
        // the caller decodes whole) for every shape it does not take.
        let env = sample();
        let body = env.encode_body();
        let peek = Peek::body(&body).expect("a body the log wrote peeks");
        assert_eq!(peek.seq, env.seq.get());
        assert_eq!(peek.id, env.id.as_str());
        assert_eq!(peek.event_type, env.event_type());
        assert_eq!(peek.tailnet, env.tailnet.as_str());
        assert_eq!(peek.command_id, env.command_id.as_str());
        assert_eq!(peek.prev_hash, env.prev_hash);
        assert_eq!(peek.time, env.time);
        assert_eq!(peek.event().expect("data decodes"), env.event);

        let text = String::from_utf8(body).expect("utf8");
        for (what, bad) in [
            (
                "the full JSON, with hash",
                String::from_utf8(env.to_json()).expect("utf8"),
            ),
            ("an unknown type", text.replace("KeyRevoked", "KeyStolen")),
            (
                "another version",
                text.replace(r#""version":1"#, r#""version":2"#),
            ),
            (
                "an unknown field",
                text.replacen('{', r#"{"secret":"x","#, 1),
            ),
            (
                "a missing field",
                text.replacen(r#""streamVersion":2,"#, "", 1),
            ),
            (
                "an escaped string",
                text.replacen(r#""tailnet":"T1""#, r#""tailnet":"T\u0031""#, 1),
            ),
            (
                "a tailnet unfit for a subject",
                text.replacen(r#""tailnet":"T1""#, r#""tailnet":"T.>""#, 1),
            ),
            (
                "a bad event id",
                text.replacen(r#""id":"e0"#, r#""id":"x0"#, 1),
            ),
            (
                "whitespace",
                text.replacen(r#""seq":3,"#, r#""seq": 3,"#, 1),
            ),
            (
                "a leading zero",
                text.replacen(r#""seq":3,"#, r#""seq":03,"#, 1),
            ),
            ("a bad time", text.replacen("2026-11-27T", "2026-13-27T", 1)),
            (
                "a short hash",
                text.replacen(r#""prevHash":"01"#, r#""prevHash":""#, 1),
            ),
            (
                "fields reordered",
                text.replacen(r#","commandId":"c-1""#, "", 1).replacen(
                    r#"{"seq""#,
                    r#"{"commandId":"c-1","seq""#,
                    1,
                ),
            ),
        ] {
            assert_ne!(bad, text, "{what}: the mutation applies");
            assert_eq!(Peek::body(bad.as_bytes()), None, "{what}");
        }
        // An actor whose strings hold quotes, braces and backslashes is skipped as a whole.
        let mut odd = sample();
        odd.actor.id = r#"x\"}{,"commandId":"c-2"#.into();
        odd.actor.login_name = Some(LoginName::parse(r#"a"}\b@x"#).expect("visible"));
        let odd_body = odd.encode_body();
        let peek = Peek::body(&odd_body).expect("peeks");
        assert_eq!(peek.command_id, "c-1");
        assert_eq!(peek.event().expect("data decodes"), odd.event);

        // The escaped string is valid JSON for the same envelope: the full decode takes it.
        let escaped = text.replacen(r#""tailnet":"T1""#, r#""tailnet":"T\u0031""#, 1);
        assert_eq!(
            Envelope::decode_body(escaped.as_bytes(), env.hash).expect("decodes"),
            env
        );
    }

    #[test]
    fn refuses_unknown_type_version_and_fields() {
        let env = sample();
        let text = String::from_utf8(env.to_json()).expect("utf8");
        let unknown = text.replace("KeyRevoked", "KeyStolen");
        assert!(matches!(
            Envelope::from_json(unknown.as_bytes()),
            Err(DecodeError::UnknownType(_))
        ));
        let v2 = text.replace(r#""version":1"#, r#""version":2"#);
        assert!(matches!(
            Envelope::from_json(v2.as_bytes()),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        let extra = text.replacen('{', r#"{"secret":"x","#, 1);
        assert!(Envelope::from_json(extra.as_bytes()).is_err());
        assert!(Envelope::from_json(b"[1,2]").is_err());
        assert!(Envelope::from_json(b"").is_err());
    }

    #[test]
    fn one_pass_and_two_pass_decodes_agree() {
        // Proves: the one-pass decode answers exactly what the two-pass decode (the reference)
        // does, and defers to it for every shape it does not take: fields in another order,
        // whitespace, a duplicate field, a null hash, and bad data.
        let env = sample();
        let body = String::from_utf8(env.encode_body()).expect("utf8");
        let full = String::from_utf8(env.to_json()).expect("utf8");
        let two_pass_body = |b: &str| {
            serde_json::from_str::<RawEnvelope<'_>>(b)
                .map_err(|e| DecodeError::Malformed(e.to_string()))
                .and_then(|r| r.into_envelope(env.hash))
        };
        assert!(
            decode_one_pass(body.as_bytes()).is_some(),
            "the log's own order"
        );
        let data_first = body.replacen(r#""type":"KeyRevoked","version":1,"#, r#""version":1,"#, 1);
        let data_first = format!(
            r#"{},"type":"KeyRevoked"}}"#,
            &data_first[..data_first.len() - 1]
        );
        assert!(decode_one_pass(data_first.as_bytes()).is_none());
        assert_eq!(
            Envelope::decode_body(data_first.as_bytes(), env.hash),
            Ok(env.clone())
        );
        let cases = [
            body.clone(),
            body.replace(',', " , "),
            data_first,
            body.replacen('{', r#"{"seq":3,"#, 1),
            body.replacen(r#""commandId""#, r#""hash":null,"commandId""#, 1),
            body.replace("kAbc123", "k/bad"),
            body.replace(r#""version":1"#, r#""version":9"#),
            body.replacen('{', r#"{"extra":1,"#, 1),
            format!("{body} x"),
        ];
        for case in cases {
            assert_eq!(
                Envelope::decode_body(case.as_bytes(), env.hash),
                two_pass_body(&case),
                "{case}"
            );
        }
        assert_eq!(Envelope::from_json(full.as_bytes()), Ok(env.clone()));
        assert!(decode_one_pass(full.as_bytes()).is_some_and(|(_, h)| h == Some(env.hash)));
    }

    #[test]
    fn stream_follows_the_event() {
        let tailnet = TailnetId::parse("T1").expect("valid");
        let e = Event::from(NodeConnected {
            node_id: NodeId::parse("n9").expect("valid"),
        });
        assert_eq!(e.stream(&tailnet).as_str(), "node/n9");
    }
}
