//! A borrowing decode of stored envelopes, for the verifier and the domain invariants: no
//! allocation per field (ids stay `&str` into the stored bytes; hashes, numbers and times are
//! parsed in place), a third to a quarter of the owned decode's cost.
//!
//! [`decode_body`] reads only the exact shape the log writes (compact JSON, the envelope's fields
//! in wire order, `data` in its type's field order, no escapes in strings) for the event types
//! of a busy log, and answers `None` for anything else: another shape, another event type, an
//! invalid value, a string with an escape. The caller then decodes with
//! [`Envelope::decode_body`], which stays the reference for every verdict and every error. So
//! the rule this module keeps is one-sided: **whatever it accepts, the owned decode accepts too,
//! with the same values** (its validators are the owned types' rules or stricter; the tests hold
//! it against the owned decode over whole fixture logs, mutated bodies and random ids).
//!
//! What it keeps of an event ([`EnvelopeRef`], [`DataRef`]) is what the verifier and
//! [`crate::invariants`] read; [`EnvelopeRef::from_owned`] makes the same view of an owned
//! [`Envelope`], so both decodes feed one set of checks.
//!
//! A decoded envelope is lifetime-free ([`Decoded`]: byte ranges of the body, [`Span`]), so it
//! can be made on one thread and kept beside the row it came from; [`Decoded::view`] turns it
//! back into `&str`s over the same bytes.

use std::cell::RefCell;
use std::net::{Ipv4Addr, Ipv6Addr};

use authkeys_events::{
    ActorType, Envelope, Event, EventType, Hash, LogId, NodeAddresses, NodeSigned, Role, Seq,
    TailnetLockEnabled, Timestamp, TrustedLockKeysChanged,
};

/// An envelope as the checks read it: the envelope's fields and what the invariants need of its
/// data. `S` is how a string is held: `&str` ([`EnvelopeRef`]) or a byte range ([`Span`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeRef<'a, S = &'a str> {
    /// Global position.
    pub seq: Seq,
    /// The event id.
    pub id: S,
    /// The event type.
    pub ty: EventType,
    /// What the invariants read of `data`.
    pub data: DataRef<'a, S>,
    /// The tailnet.
    pub tailnet: S,
    /// When it was committed.
    pub time: Timestamp,
    /// The actor's type.
    pub actor_type: ActorType,
    /// The actor's id.
    pub actor_id: S,
    /// The command that produced it.
    pub command_id: S,
    /// The previous event's hash.
    pub prev_hash: Hash,
}

/// What the invariants read of an event's data; [`DataRef::Opaque`] for the types whose data
/// they do not read (the type is in [`EnvelopeRef::ty`]). The tailnet-lock events are rare and
/// carry keys and signatures: only the owned decode makes them, and they are borrowed whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataRef<'a, S> {
    /// Nothing read.
    Opaque,
    /// `UserAdded`.
    UserAdded {
        /// Who.
        user_id: S,
        /// Their role.
        role: Role,
    },
    /// `UserRoleChanged`.
    UserRoleChanged {
        /// Whose role.
        user_id: S,
        /// The role before.
        previous_role: Role,
        /// The role now.
        role: Role,
    },
    /// `UserRemoved`, `UserSuspended`, `UserRestored`.
    User {
        /// Who.
        user_id: S,
    },
    /// `ApiTokenIssued`.
    ApiTokenIssued {
        /// The token.
        token_id: S,
        /// Its owner.
        user_id: S,
    },
    /// `ApiTokenRevoked`.
    ApiTokenRevoked {
        /// The token.
        token_id: S,
    },
    /// `KeyGenerated`.
    KeyGenerated {
        /// The key.
        key_id: S,
        /// R01.
        reusable: bool,
        /// R08.
        expires: Timestamp,
    },
    /// `KeyUsed`.
    KeyUsed {
        /// The key.
        key_id: S,
        /// The node it registered.
        node_id: S,
        /// Uses including this one.
        uses: u64,
    },
    /// `KeyRevoked`, `KeyExpired`.
    Key {
        /// The key.
        key_id: S,
    },
    /// `NodeRegistered`.
    NodeRegistered {
        /// The node.
        node_id: S,
        /// The key it registered with.
        auth_key_id: S,
        /// Whether it carries a tailnet lock error.
        lock_error: bool,
        /// R17.
        addresses: Option<NodeAddresses>,
    },
    /// `NodeReauthenticated`.
    NodeReauthenticated {
        /// The key used.
        auth_key_id: S,
    },
    /// `NodeDeleted`.
    NodeDeleted {
        /// The node.
        node_id: S,
    },
    /// `NodeSigned` (owned decode only).
    NodeSigned(&'a NodeSigned),
    /// `TailnetLockEnabled` (owned decode only).
    TailnetLockEnabled(&'a TailnetLockEnabled),
    /// `TrustedLockKeysChanged` (owned decode only).
    TrustedLockKeysChanged(&'a TrustedLockKeysChanged),
}

/// A string of a stored body, as a byte range (so that a decoded envelope borrows nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

/// A body decoded by [`decode_body`]: ranges into that body.
pub type Decoded = EnvelopeRef<'static, Span>;

impl<'a, S: Copy> DataRef<'a, S> {
    fn map<T>(self, mut f: impl FnMut(S) -> Option<T>) -> Option<DataRef<'a, T>> {
        Some(match self {
            DataRef::Opaque => DataRef::Opaque,
            DataRef::UserAdded { user_id, role } => DataRef::UserAdded {
                user_id: f(user_id)?,
                role,
            },
            DataRef::UserRoleChanged {
                user_id,
                previous_role,
                role,
            } => DataRef::UserRoleChanged {
                user_id: f(user_id)?,
                previous_role,
                role,
            },
            DataRef::User { user_id } => DataRef::User {
                user_id: f(user_id)?,
            },
            DataRef::ApiTokenIssued { token_id, user_id } => DataRef::ApiTokenIssued {
                token_id: f(token_id)?,
                user_id: f(user_id)?,
            },
            DataRef::ApiTokenRevoked { token_id } => DataRef::ApiTokenRevoked {
                token_id: f(token_id)?,
            },
            DataRef::KeyGenerated {
                key_id,
                reusable,
                expires,
            } => DataRef::KeyGenerated {
                key_id: f(key_id)?,
                reusable,
                expires,
            },
            DataRef::KeyUsed {
                key_id,
                node_id,
                uses,
            } => DataRef::KeyUsed {
                key_id: f(key_id)?,
                node_id: f(node_id)?,
                uses,
            },
            DataRef::Key { key_id } => DataRef::Key { key_id: f(key_id)? },
            DataRef::NodeRegistered {
                node_id,
                auth_key_id,
                lock_error,
                addresses,
            } => DataRef::NodeRegistered {
                node_id: f(node_id)?,
                auth_key_id: f(auth_key_id)?,
                lock_error,
                addresses,
            },
            DataRef::NodeReauthenticated { auth_key_id } => DataRef::NodeReauthenticated {
                auth_key_id: f(auth_key_id)?,
            },
            DataRef::NodeDeleted { node_id } => DataRef::NodeDeleted {
                node_id: f(node_id)?,
            },
            DataRef::NodeSigned(e) => DataRef::NodeSigned(e),
            DataRef::TailnetLockEnabled(e) => DataRef::TailnetLockEnabled(e),
            DataRef::TrustedLockKeysChanged(e) => DataRef::TrustedLockKeysChanged(e),
        })
    }
}

impl Decoded {
    /// The `&str`s of `body`, which must be the body this was decoded from (`None` if it cannot
    /// be: then decode it the owned way).
    pub fn view<'a>(&self, body: &'a [u8]) -> Option<EnvelopeRef<'a>> {
        let s = |sp: Span| {
            let bytes = body.get(sp.start as usize..sp.end as usize)?;
            std::str::from_utf8(bytes).ok()
        };
        Some(EnvelopeRef {
            seq: self.seq,
            id: s(self.id)?,
            ty: self.ty,
            data: self.data.map(s)?,
            tailnet: s(self.tailnet)?,
            time: self.time,
            actor_type: self.actor_type,
            actor_id: s(self.actor_id)?,
            command_id: s(self.command_id)?,
            prev_hash: self.prev_hash,
        })
    }
}

impl<'a> EnvelopeRef<'a> {
    /// The same view of an owned envelope (what the checks read of it).
    pub fn from_owned(env: &'a Envelope) -> Self {
        let data = match &env.event {
            Event::UserAdded(e) => DataRef::UserAdded {
                user_id: e.user_id.as_str(),
                role: e.role,
            },
            Event::UserRoleChanged(e) => DataRef::UserRoleChanged {
                user_id: e.user_id.as_str(),
                previous_role: e.previous_role,
                role: e.role,
            },
            Event::UserRemoved(e) => DataRef::User {
                user_id: e.user_id.as_str(),
            },
            Event::UserSuspended(e) => DataRef::User {
                user_id: e.user_id.as_str(),
            },
            Event::UserRestored(e) => DataRef::User {
                user_id: e.user_id.as_str(),
            },
            Event::ApiTokenIssued(e) => DataRef::ApiTokenIssued {
                token_id: e.token_id.as_str(),
                user_id: e.user_id.as_str(),
            },
            Event::ApiTokenRevoked(e) => DataRef::ApiTokenRevoked {
                token_id: e.token_id.as_str(),
            },
            Event::KeyGenerated(e) => DataRef::KeyGenerated {
                key_id: e.key_id.as_str(),
                reusable: e.reusable,
                expires: e.expires,
            },
            Event::KeyUsed(e) => DataRef::KeyUsed {
                key_id: e.key_id.as_str(),
                node_id: e.node_id.as_str(),
                uses: e.uses,
            },
            Event::KeyRevoked(e) => DataRef::Key {
                key_id: e.key_id.as_str(),
            },
            Event::KeyExpired(e) => DataRef::Key {
                key_id: e.key_id.as_str(),
            },
            Event::NodeRegistered(e) => DataRef::NodeRegistered {
                node_id: e.node_id.as_str(),
                auth_key_id: e.auth_key_id.as_str(),
                lock_error: e.tailnet_lock_error.is_some(),
                addresses: e.addresses,
            },
            Event::NodeReauthenticated(e) => DataRef::NodeReauthenticated {
                auth_key_id: e.auth_key_id.as_str(),
            },
            Event::NodeDeleted(e) => DataRef::NodeDeleted {
                node_id: e.node_id.as_str(),
            },
            Event::NodeSigned(e) => DataRef::NodeSigned(e),
            Event::TailnetLockEnabled(e) => DataRef::TailnetLockEnabled(e),
            Event::TrustedLockKeysChanged(e) => DataRef::TrustedLockKeysChanged(e),
            _ => DataRef::Opaque,
        };
        EnvelopeRef {
            seq: env.seq,
            id: env.id.as_str(),
            ty: env.event_type(),
            data,
            tailnet: env.tailnet.as_str(),
            time: env.time,
            actor_type: env.actor.actor_type,
            actor_id: env.actor.id.as_str(),
            command_id: env.command_id.as_str(),
            prev_hash: env.prev_hash,
        }
    }
}

/// Whether `id` is the log's event id for `seq` (`e` and the 32 lowercase hex digits of the
/// first 16 bytes of the digest `authkeys_log::store::event_id` spells), without allocating.
/// The tests hold it to `event_id`.
pub fn is_event_id(id: &str, log_id: &LogId, seq: Seq) -> bool {
    let Some(hex) = id.strip_prefix('e') else {
        return false;
    };
    if hex.len() != 32 {
        return false;
    }
    // One call over the 44 bytes (the same digest as hashing them in parts).
    let mut input = [0u8; 44];
    input[..20].copy_from_slice(b"authkeys/event-id/v1");
    input[20..36].copy_from_slice(&log_id.0);
    input[36..].copy_from_slice(&seq.get().to_le_bytes());
    let digest = blake3::hash(&input);
    hex.as_bytes()
        .chunks_exact(2)
        .zip(&digest.as_bytes()[..16])
        .all(|(pair, byte)| {
            pair[0] == HEX_DIGITS[usize::from(byte >> 4)]
                && pair[1] == HEX_DIGITS[usize::from(byte & 0x0f)]
        })
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Each byte's value as a lowercase hex digit, or `0xff`.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 16 {
        t[HEX_DIGITS[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Decodes a stored body of the log's own shape, or answers `None` (decode it the owned way).
/// See the module docs: what this accepts, [`Envelope::decode_body`] accepts with the same values.
pub fn decode_body(body: &[u8]) -> Option<Decoded> {
    // A body is far shorter than 4 GiB; spans are u32.
    if body.len() > u32::MAX as usize {
        return None;
    }
    let mut c = Cur { b: body, i: 0 };
    c.lit(b"{\"seq\":")?;
    let seq = Seq::new(c.num()?).ok()?;
    c.lit(b",\"id\":\"")?;
    let id = c.str_with(event_id_ok)?;
    c.lit(b",\"type\":\"")?;
    let ty_span = c.str_with(<[u8]>::is_ascii)?;
    let ty = EventType::parse(c.text(ty_span))?;
    c.lit(b",\"version\":")?;
    if c.num()? != u64::from(ty.version()) {
        return None;
    }
    c.lit(b",\"tailnet\":\"")?;
    let tailnet = c.str_with(tailnet_id_ok)?;
    c.lit(b",\"stream\":\"")?;
    c.str_with(stream_id_ok)?;
    c.lit(b",\"streamVersion\":")?;
    c.num()?;
    c.lit(b",\"time\":\"")?;
    let time = c.time()?;
    c.lit(b",\"actor\":{\"type\":\"")?;
    let actor_type = match c.str_with(|_| true).map(|sp| c.bytes(sp))? {
        b"user" => ActorType::User,
        b"registrar" => ActorType::Registrar,
        b"system" => ActorType::System,
        b"oauth" => ActorType::Oauth,
        _ => return None,
    };
    c.lit(b",\"id\":\"")?;
    let actor_id = c.str_with(|_| true)?;
    if c.lit(b",\"loginName\":\"").is_some() {
        c.str_with(visible_name_ok)?;
    }
    c.lit(b"},\"commandId\":\"")?;
    let command_id = c.str_with(command_id_ok)?;
    c.lit(b",\"data\":")?;
    let data = c.data(ty)?;
    c.lit(b",\"prevHash\":\"")?;
    let prev_hash = c.hash()?;
    c.lit(b"}")?;
    if c.i != body.len() {
        return None;
    }
    Some(EnvelopeRef {
        seq,
        id,
        ty,
        data,
        tailnet,
        time,
        actor_type,
        actor_id,
        command_id,
        prev_hash,
    })
}

/// A cursor over a body; every reader answers `None` where the bytes are not exactly what the
/// log writes.
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    /// Consumes `lit`.
    fn lit(&mut self, lit: &[u8]) -> Option<()> {
        let end = self.i.checked_add(lit.len())?;
        if self.b.get(self.i..end)? == lit {
            self.i = end;
            Some(())
        } else {
            None
        }
    }

    /// A JSON integer as serde writes a `u64`: no sign, no leading zero, no fraction or
    /// exponent (the next literal would not match), at most 19 digits (so it fits).
    fn num(&mut self) -> Option<u64> {
        let start = self.i;
        let mut n: u64 = 0;
        while let Some(&d) = self.b.get(self.i) {
            if !d.is_ascii_digit() {
                break;
            }
            if self.i - start == 19 {
                return None;
            }
            n = n * 10 + u64::from(d - b'0');
            self.i += 1;
        }
        let len = self.i - start;
        if len == 0 || (len > 1 && self.b[start] == b'0') {
            return None;
        }
        Some(n)
    }

    /// `true` or `false`.
    fn bool(&mut self) -> Option<bool> {
        if self.lit(b"true").is_some() {
            Some(true)
        } else if self.lit(b"false").is_some() {
            Some(false)
        } else {
            None
        }
    }

    /// The rest of a string whose opening quote is consumed, through its closing quote: no
    /// escape, no control character (which JSON refuses raw), valid UTF-8 and `ok`.
    fn str_with(&mut self, ok: impl Fn(&[u8]) -> bool) -> Option<Span> {
        let start = self.i;
        let mut high = 0u8;
        loop {
            let &b = self.b.get(self.i)?;
            if b == b'"' {
                break;
            }
            if b == b'\\' || b < 0x20 {
                return None;
            }
            high |= b;
            self.i += 1;
        }
        let end = self.i;
        self.i += 1;
        let s = &self.b[start..end];
        // ASCII is UTF-8; anything else is checked.
        if high >= 0x80 && std::str::from_utf8(s).is_err() {
            return None;
        }
        if !ok(s) {
            return None;
        }
        // `decode_body` refused bodies of 4 GiB or more.
        Some(Span {
            start: start as u32,
            end: end as u32,
        })
    }

    /// A span's bytes.
    fn bytes(&self, sp: Span) -> &'a [u8] {
        &self.b[sp.start as usize..sp.end as usize]
    }

    /// A span's text (only for spans this cursor made, which are valid UTF-8).
    fn text(&self, sp: Span) -> &'a str {
        std::str::from_utf8(&self.b[sp.start as usize..sp.end as usize]).unwrap_or("")
    }

    /// A string whose opening quote is consumed, as a [`Timestamp`].
    fn time(&mut self) -> Option<Timestamp> {
        let sp = self.str_with(|_| true)?;
        parse_time(self.bytes(sp))
    }

    /// A string whose opening quote is consumed, as a [`Hash`] (64 lowercase hex digits).
    fn hash(&mut self) -> Option<Hash> {
        let sp = self.str_with(|_| true)?;
        let digits: &[u8; 64] = self.bytes(sp).try_into().ok()?;
        // As `Hash::from_hex`: 64 lowercase hex digits.
        let mut out = [0u8; 32];
        let mut bad = 0u8;
        for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let (hi, lo) = (
                HEX_VALUE[usize::from(pair[0])],
                HEX_VALUE[usize::from(pair[1])],
            );
            bad |= hi | lo;
            *o = (hi << 4) | (lo & 0x0f);
        }
        (bad & 0xf0 == 0).then_some(Hash(out))
    }

    /// `null` or a string (opening quote included) read by `read`.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.lit(b"null").is_some() {
            return Some(None);
        }
        self.lit(b"\"")?;
        read(self).map(Some)
    }

    /// A role, opening quote consumed.
    fn role(&mut self) -> Option<Role> {
        let sp = self.str_with(|_| true)?;
        Some(match self.bytes(sp) {
            b"owner" => Role::Owner,
            b"admin" => Role::Admin,
            b"it-admin" => Role::ItAdmin,
            b"network-admin" => Role::NetworkAdmin,
            b"member" => Role::Member,
            b"auditor" => Role::Auditor,
            b"billing-admin" => Role::BillingAdmin,
            _ => return None,
        })
    }

    /// A tag list: `[]` or `["tag:…",…]`, each a valid tag (the owned decode sorts and
    /// deduplicates; nothing here keeps them).
    fn tags(&mut self) -> Option<()> {
        self.lit(b"[")?;
        if self.lit(b"]").is_some() {
            return Some(());
        }
        loop {
            self.lit(b"\"")?;
            self.str_with(tag_ok)?;
            if self.lit(b"]").is_some() {
                return Some(());
            }
            self.lit(b",")?;
        }
    }

    /// `data` of type `ty`, in its fields' order (every field, as the log writes them).
    fn data(&mut self, ty: EventType) -> Option<DataRef<'static, Span>> {
        Some(match ty {
            EventType::KeyGenerated => {
                self.lit(b"{\"keyId\":\"")?;
                let key_id = self.str_with(|s| base62_ok(s, b'k'))?;
                self.lit(b",\"userId\":\"")?;
                self.str_with(|s| base62_ok(s, b'u'))?;
                self.lit(b",\"description\":\"")?;
                self.str_with(description_ok)?;
                self.lit(b",\"reusable\":")?;
                let reusable = self.bool()?;
                self.lit(b",\"ephemeral\":")?;
                self.bool()?;
                self.lit(b",\"preauthorized\":")?;
                self.bool()?;
                self.lit(b",\"tags\":")?;
                self.tags()?;
                self.lit(b",\"expirySeconds\":")?;
                // `ExpirySeconds`: 1 to 90 days.
                if !(1..=7_776_000).contains(&self.num()?) {
                    return None;
                }
                self.lit(b",\"expires\":\"")?;
                let expires = self.time()?;
                self.lit(b",\"secretHash\":\"")?;
                self.hash()?;
                self.lit(b"}")?;
                DataRef::KeyGenerated {
                    key_id,
                    reusable,
                    expires,
                }
            }
            EventType::KeyUsed => {
                self.lit(b"{\"keyId\":\"")?;
                let key_id = self.str_with(|s| base62_ok(s, b'k'))?;
                self.lit(b",\"nodeId\":\"")?;
                let node_id = self.str_with(|s| base62_ok(s, b'n'))?;
                self.lit(b",\"nodeKey\":\"")?;
                self.str_with(node_key_ok)?;
                self.lit(b",\"uses\":")?;
                let uses = self.num()?;
                self.lit(b"}")?;
                DataRef::KeyUsed {
                    key_id,
                    node_id,
                    uses,
                }
            }
            EventType::KeyRevoked => {
                self.lit(b"{\"keyId\":\"")?;
                let key_id = self.str_with(|s| base62_ok(s, b'k'))?;
                self.lit(b"}")?;
                DataRef::Key { key_id }
            }
            EventType::KeyExpired => {
                self.lit(b"{\"keyId\":\"")?;
                let key_id = self.str_with(|s| base62_ok(s, b'k'))?;
                self.lit(b",\"expiredAt\":\"")?;
                self.time()?;
                self.lit(b"}")?;
                DataRef::Key { key_id }
            }
            EventType::NodeRegistered => {
                self.lit(b"{\"nodeId\":\"")?;
                let node_id = self.str_with(|s| base62_ok(s, b'n'))?;
                self.lit(b",\"nodeKey\":\"")?;
                self.str_with(node_key_ok)?;
                self.lit(b",\"hostname\":\"")?;
                self.str_with(|s| visible_name_ok(s) && s.len() <= 253)?;
                self.lit(b",\"name\":\"")?;
                self.str_with(|_| true)?;
                self.lit(b",\"os\":\"")?;
                self.str_with(|_| true)?;
                self.lit(b",\"userId\":\"")?;
                self.str_with(|s| base62_ok(s, b'u'))?;
                self.lit(b",\"tags\":")?;
                self.tags()?;
                self.lit(b",\"authKeyId\":\"")?;
                let auth_key_id = self.str_with(|s| base62_ok(s, b'k'))?;
                self.lit(b",\"ephemeral\":")?;
                self.bool()?;
                self.lit(b",\"authorized\":")?;
                self.bool()?;
                self.lit(b",\"keyExpiryDisabled\":")?;
                self.bool()?;
                self.lit(b",\"expires\":")?;
                self.nullable(Self::time)?;
                self.lit(b",\"tailnetLockError\":")?;
                let lock_error = self.nullable(|c| c.str_with(|_| true))?.is_some();
                let addresses = if self.lit(b",\"addresses\":{\"ipv4\":\"").is_some() {
                    let v4 = self.str_with(<[u8]>::is_ascii)?;
                    let ipv4: Ipv4Addr = self.text(v4).parse().ok()?;
                    self.lit(b",\"ipv6\":\"")?;
                    let v6 = self.str_with(<[u8]>::is_ascii)?;
                    let ipv6: Ipv6Addr = self.text(v6).parse().ok()?;
                    self.lit(b"}")?;
                    Some(NodeAddresses { ipv4, ipv6 })
                } else {
                    None
                };
                self.lit(b"}")?;
                DataRef::NodeRegistered {
                    node_id,
                    auth_key_id,
                    lock_error,
                    addresses,
                }
            }
            EventType::NodeConnected | EventType::NodeDisconnected => {
                self.lit(b"{\"nodeId\":\"")?;
                self.str_with(|s| base62_ok(s, b'n'))?;
                self.lit(b"}")?;
                DataRef::Opaque
            }
            EventType::NodeAuthorized => {
                self.lit(b"{\"nodeId\":\"")?;
                self.str_with(|s| base62_ok(s, b'n'))?;
                self.lit(b",\"authorized\":")?;
                self.bool()?;
                self.lit(b"}")?;
                DataRef::Opaque
            }
            EventType::TagsChanged => {
                self.lit(b"{\"nodeId\":\"")?;
                self.str_with(|s| base62_ok(s, b'n'))?;
                self.lit(b",\"previousTags\":")?;
                self.tags()?;
                self.lit(b",\"tags\":")?;
                self.tags()?;
                self.lit(b"}")?;
                DataRef::Opaque
            }
            EventType::NodeDeleted => {
                self.lit(b"{\"nodeId\":\"")?;
                let node_id = self.str_with(|s| base62_ok(s, b'n'))?;
                self.lit(b",\"reason\":\"")?;
                self.str_with(|s| s == b"admin" || s == b"ephemeral-inactive")?;
                self.lit(b"}")?;
                DataRef::NodeDeleted { node_id }
            }
            EventType::ApiTokenIssued => {
                self.lit(b"{\"tokenId\":\"")?;
                let token_id = self.str_with(|s| base62_ok(s, b't'))?;
                self.lit(b",\"userId\":\"")?;
                let user_id = self.str_with(|s| base62_ok(s, b'u'))?;
                self.lit(b",\"secretHash\":\"")?;
                self.hash()?;
                self.lit(b",\"expires\":\"")?;
                self.time()?;
                self.lit(b"}")?;
                DataRef::ApiTokenIssued { token_id, user_id }
            }
            EventType::ApiTokenRevoked => {
                self.lit(b"{\"tokenId\":\"")?;
                let token_id = self.str_with(|s| base62_ok(s, b't'))?;
                self.lit(b"}")?;
                DataRef::ApiTokenRevoked { token_id }
            }
            EventType::UserAdded => {
                self.lit(b"{\"userId\":\"")?;
                let user_id = self.str_with(|s| base62_ok(s, b'u'))?;
                self.lit(b",\"loginName\":\"")?;
                self.str_with(visible_name_ok)?;
                self.lit(b",\"role\":\"")?;
                let role = self.role()?;
                self.lit(b"}")?;
                DataRef::UserAdded { user_id, role }
            }
            EventType::UserRoleChanged => {
                self.lit(b"{\"userId\":\"")?;
                let user_id = self.str_with(|s| base62_ok(s, b'u'))?;
                self.lit(b",\"previousRole\":\"")?;
                let previous_role = self.role()?;
                self.lit(b",\"role\":\"")?;
                let role = self.role()?;
                self.lit(b"}")?;
                DataRef::UserRoleChanged {
                    user_id,
                    previous_role,
                    role,
                }
            }
            EventType::UserRemoved | EventType::UserSuspended | EventType::UserRestored => {
                self.lit(b"{\"userId\":\"")?;
                let user_id = self.str_with(|s| base62_ok(s, b'u'))?;
                self.lit(b"}")?;
                DataRef::User { user_id }
            }
            // Rare, or with data the owned types check in ways not repeated here.
            _ => return None,
        })
    }
}

/// The RFC 3339 instants of a log repeat (the events of one commit share a time; keys share
/// expiries): each thread remembers the last few it parsed. The parse itself is the owned one.
fn parse_time(s: &[u8]) -> Option<Timestamp> {
    const SLOTS: usize = 4;
    type Memo = ([([u8; 24], Timestamp); SLOTS], usize);
    thread_local! {
        static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
    }
    let parse = |s: &[u8]| Timestamp::parse(std::str::from_utf8(s).ok()?).ok();
    let Ok(key) = <[u8; 24]>::try_from(s) else {
        return parse(s);
    };
    MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        if let Some((slots, _)) = memo.as_ref()
            && let Some((_, t)) = slots.iter().find(|(k, _)| *k == key)
        {
            return Some(*t);
        }
        let t = parse(s)?;
        match memo.as_mut() {
            Some((slots, next)) => {
                slots[*next] = (key, t);
                *next = (*next + 1) % SLOTS;
            }
            None => *memo = Some(([(key, t); SLOTS], 1)),
        }
        Some(t)
    })
}

// The validators: each accepts only what the owned type's `parse` accepts (the same rules as
// `authkeys_events::ids`, or stricter); the tests hold them to `parse`.

/// `KeyId`, `NodeId`, `UserId`, `TokenId`: the prefix and 1 to 40 ASCII letters or digits.
fn base62_ok(s: &[u8], prefix: u8) -> bool {
    s.split_first().is_some_and(|(&p, rest)| {
        p == prefix && (1..=40).contains(&rest.len()) && rest.iter().all(u8::is_ascii_alphanumeric)
    })
}

/// Lowercase hex digits.
fn lower_hex(s: &[u8]) -> bool {
    s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `EventId`: `e` and 32 lowercase hex digits.
fn event_id_ok(s: &[u8]) -> bool {
    s.strip_prefix(b"e")
        .is_some_and(|hex| hex.len() == 32 && lower_hex(hex))
}

/// `TailnetId`: 1 to 64 letters, digits, `_` and `-`.
fn tailnet_id_ok(s: &[u8]) -> bool {
    (1..=64).contains(&s.len())
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `StreamId`: a stream kind, `/`, and a tailnet-id-like id.
fn stream_id_ok(s: &[u8]) -> bool {
    let Some(slash) = s.iter().position(|&b| b == b'/') else {
        return false;
    };
    let (kind, id) = (&s[..slash], &s[slash + 1..]);
    matches!(
        kind,
        b"tailnet" | b"user" | b"token" | b"key" | b"node" | b"webhook"
    ) && tailnet_id_ok(id)
}

/// `CommandId`: 1 to 128 letters, digits, `.`, `_`, `:` and `-`.
fn command_id_ok(s: &[u8]) -> bool {
    (1..=128).contains(&s.len())
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// `LoginName` (and, with at most 253 bytes, `Hostname`), stricter: 1 to 254 printable ASCII
/// characters other than space (a name with any other character is left to the owned decode).
fn visible_name_ok(s: &[u8]) -> bool {
    (1..=254).contains(&s.len()) && s.iter().all(u8::is_ascii_graphic)
}

/// `Description`: at most 50 ASCII letters, digits, spaces and hyphens.
fn description_ok(s: &[u8]) -> bool {
    s.len() <= 50
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-')
}

/// `NodeKey`: `nodekey:` and 64 lowercase hex digits.
fn node_key_ok(s: &[u8]) -> bool {
    s.strip_prefix(b"nodekey:")
        .is_some_and(|hex| hex.len() == 64 && lower_hex(hex))
}

/// `TagName`: `tag:` and 1 to 63 lowercase letters, digits and `-`.
fn tag_ok(s: &[u8]) -> bool {
    s.strip_prefix(b"tag:").is_some_and(|name| {
        (1..=63).contains(&name.len())
            && name
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use authkeys_events::{
        CommandId, Description, EventId, Hostname, KeyId, LoginName, NodeId, NodeKey, StreamId,
        TagName, TailnetId, TokenId, UserId,
    };

    /// Random strings near the validators' edges: from an alphabet of the characters ids
    /// use and the ones they refuse, of lengths around their limits.
    fn samples(rng: &mut fastrand::Rng, prefixes: &[&str]) -> Vec<String> {
        let alphabet: Vec<char> = "abcfkntuwexyzAFZ0189-_.:@/ \t\u{7f}\u{e9}\u{200b}\u{a0}"
            .chars()
            .collect();
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let mut s = prefixes[rng.usize(..prefixes.len())].to_owned();
            let len = match rng.u8(..4) {
                0 => rng.usize(..4),
                1 => rng.usize(30..34),
                2 => rng.usize(38..42),
                _ => rng.usize(60..70),
            };
            for _ in 0..len {
                s.push(alphabet[rng.usize(..alphabet.len())]);
            }
            out.push(s);
        }
        for n in [
            0, 1, 32, 40, 41, 50, 51, 63, 64, 65, 128, 129, 253, 254, 255,
        ] {
            out.push("a".repeat(n));
            out.push(format!("k{}", "a".repeat(n)));
            out.push(format!("e{}", "0".repeat(n)));
            out.push(format!("tag:{}", "a".repeat(n)));
            out.push(format!("nodekey:{}", "0".repeat(n)));
            out.push(format!("key/{}", "a".repeat(n)));
        }
        out
    }

    #[test]
    fn each_validator_accepts_only_what_its_owned_type_accepts() {
        // Proves: a string the borrowed decode's validator takes, the owned type's `parse`
        // takes too (the borrowed decode may be stricter, never looser); and for the ids of
        // a fixed alphabet, exactly the same strings.
        let mut rng = fastrand::Rng::with_seed(4);
        let all = samples(
            &mut rng,
            &[
                "", "k", "n", "u", "t", "e", "tag:", "nodekey:", "key/", "node/", "x/",
            ],
        );
        let mut taken = 0;
        for s in &all {
            let s = s.as_str();
            let b = s.as_bytes();
            let pairs: [(bool, bool, bool); 13] = [
                (base62_ok(b, b'k'), KeyId::parse(s).is_ok(), true),
                (base62_ok(b, b'n'), NodeId::parse(s).is_ok(), true),
                (base62_ok(b, b'u'), UserId::parse(s).is_ok(), true),
                (base62_ok(b, b't'), TokenId::parse(s).is_ok(), true),
                (event_id_ok(b), EventId::parse(s).is_ok(), true),
                (tailnet_id_ok(b), TailnetId::parse(s).is_ok(), true),
                (stream_id_ok(b), StreamId::parse(s).is_ok(), true),
                (command_id_ok(b), CommandId::parse(s).is_ok(), true),
                (node_key_ok(b), NodeKey::parse(s).is_ok(), true),
                (tag_ok(b), TagName::parse(s).is_ok(), true),
                (
                    description_ok(b),
                    Description::parse(s).is_ok(),
                    s.is_ascii(),
                ),
                // Stricter: names outside printable ASCII are left to the owned decode.
                (visible_name_ok(b), LoginName::parse(s).is_ok(), false),
                (
                    visible_name_ok(b) && b.len() <= 253,
                    Hostname::parse(s).is_ok(),
                    false,
                ),
            ];
            for (i, (mine, owned, exact)) in pairs.into_iter().enumerate() {
                assert!(
                    !mine || owned,
                    "validator {i} took {s:?}, which parse refuses"
                );
                if exact {
                    assert_eq!(mine, owned, "validator {i} on {s:?}");
                }
                taken += usize::from(mine);
            }
        }
        assert!(
            taken > 1000,
            "the samples exercise acceptance too ({taken})"
        );
    }

    #[test]
    fn event_ids_are_the_logs() {
        // Proves: the allocation-free event-id check answers what the log's `event_id` spells.
        for log in [LogId([7; 16]), LogId([0; 16])] {
            for n in [1u64, 2, 255, 1_000_000, u64::MAX] {
                let seq = Seq::new(n).expect("nonzero");
                let id = authkeys_log::store::event_id(&log, seq);
                assert!(is_event_id(id.as_str(), &log, seq));
                let other = Seq::new(n.wrapping_add(1).max(1)).expect("nonzero");
                assert!(!is_event_id(id.as_str(), &log, other));
                assert!(!is_event_id(id.as_str(), &LogId([9; 16]), seq));
                assert!(!is_event_id(&id.as_str().to_uppercase(), &log, seq));
                assert!(!is_event_id(&id.as_str()[..32], &log, seq));
            }
        }
    }

    #[test]
    fn remembered_times_are_the_parsed_ones() {
        // Proves: the per-thread memo of parsed times answers `Timestamp::parse`, for repeats,
        // evictions and other lengths and offsets.
        let mut rng = fastrand::Rng::with_seed(9);
        let times: Vec<String> = (0..12)
            .map(|i| {
                Timestamp::from_unix_ms(1_796_000_000_000 + i * 1_234_567)
                    .expect("in range")
                    .to_string()
            })
            .chain([
                "2026-11-27T10:00:00.000+01:00".to_owned(),
                "2026-11-27T10:00:00Z".to_owned(),
                "2026-13-27T10:00:00.000Z".to_owned(),
                "1969-12-31T23:59:59.999Z".to_owned(),
            ])
            .collect();
        for _ in 0..2_000 {
            let t = &times[rng.usize(..times.len())];
            assert_eq!(parse_time(t.as_bytes()), Timestamp::parse(t).ok(), "{t}");
        }
    }
}
