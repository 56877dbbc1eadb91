//! Validated identifiers and small value types.
//!
//! Every type here is constructed only through `parse` (or `TryFrom` during deserialization), so
//! a value that exists is a valid one. Parsing never panics, whatever the input.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Why a value was refused; carries the field's type name so that callers can name it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {why}")]
pub struct InvalidId {
    /// Which type refused the value (e.g. `KeyId`).
    pub what: &'static str,
    /// Human-readable reason.
    pub why: String,
}

impl InvalidId {
    fn new(what: &'static str, why: impl Into<String>) -> Self {
        Self {
            what,
            why: why.into(),
        }
    }
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A JSON Schema pattern for "no character that `char::is_whitespace` or `char::is_control`
/// accepts": the Unicode `White_Space` characters and the C0/C1 controls, listed out because
/// ECMA-262 patterns without the `u` flag know neither property.
const NO_SPACE_OR_CONTROL: &str =
    r"^[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$";

/// The description a manual `JsonSchema` impl gives: the type's doc comment, lines joined the way
/// `#[derive(JsonSchema)]` joins them, so that hand-written and derived schemas read alike.
pub(crate) fn schema_description(doc_lines: &[&str]) -> String {
    doc_lines
        .iter()
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// Declares a string newtype whose only constructor is `parse`, with serde going through it.
///
/// `$schema` is the JSON Schema keywords (`pattern`, `minLength`, …) that say in JSON what
/// `$check` says in Rust; `"type": "string"` and the doc comment as `description` are added.
/// The schemas crate's tests hold the two to agreement.
macro_rules! string_id {
    ($(#[doc = $doc:literal])* $name:ident, $schema:tt, $check:expr) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates; the only way to make one.
            pub fn parse(s: impl Into<String>) -> Result<Self, InvalidId> {
                let s: String = s.into();
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s).map_err(|why| InvalidId::new(stringify!($name), why))?;
                Ok(Self(s))
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn schema_id() -> Cow<'static, str> {
                concat!(module_path!(), "::", stringify!($name)).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let mut schema = json_schema!($schema);
                schema.insert("type".into(), "string".into());
                schema.insert(
                    "description".into(),
                    schema_description(&[$($doc),*]).into(),
                );
                schema
            }
        }
    };
}

/// Checks `<prefix><1..=max base62 chars>`.
fn prefixed_base62(s: &str, prefix: &str, max: usize) -> Result<(), String> {
    let rest = s
        .strip_prefix(prefix)
        .ok_or_else(|| format!("must start with '{prefix}'"))?;
    if rest.is_empty() || rest.len() > max {
        return Err(format!(
            "must be '{prefix}' followed by 1 to {max} letters or digits"
        ));
    }
    if !is_base62(rest) {
        return Err("only letters and digits are allowed".into());
    }
    Ok(())
}

string_id!(
    /// An auth key's public identifier, `k` followed by letters and digits. It is the middle part
    /// of `tskey-auth-<keyId>-<secret>` and is not secret.
    KeyId,
    { "pattern": "^k[A-Za-z0-9]{1,40}$", "minLength": 2, "maxLength": 41 },
    |s| prefixed_base62(s, "k", 40)
);
string_id!(
    /// A node's stable identifier (`n…`), assigned at its first registration.
    NodeId,
    { "pattern": "^n[A-Za-z0-9]{1,40}$", "minLength": 2, "maxLength": 41 },
    |s| prefixed_base62(s, "n", 40)
);
string_id!(
    /// A user's identifier (`u…`); login names may change, this does not.
    UserId,
    { "pattern": "^u[A-Za-z0-9]{1,40}$", "minLength": 2, "maxLength": 41 },
    |s| prefixed_base62(s, "u", 40)
);
string_id!(
    /// An API token's public identifier (`t…`), the middle part of `tskey-api-<tokenId>-<secret>`.
    TokenId,
    { "pattern": "^t[A-Za-z0-9]{1,40}$", "minLength": 2, "maxLength": 41 },
    |s| prefixed_base62(s, "t", 40)
);
string_id!(
    /// A tailnet's identifier. It appears in NATS subjects, so it is restricted to characters that
    /// are safe there: letters, digits, `_` and `-`.
    TailnetId,
    { "pattern": "^[A-Za-z0-9_-]{1,64}$", "minLength": 1, "maxLength": 64 },
    |s| {
        if s.is_empty() || s.len() > 64 {
            return Err("must be 1 to 64 characters".into());
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err("only letters, digits, '_' and '-' are allowed".into());
        }
        Ok(())
    }
);
string_id!(
    /// A tailnet's display name, such as `example.com`.
    TailnetName,
    { "pattern": "^[A-Za-z0-9._@-]{1,253}$", "minLength": 1, "maxLength": 253 },
    |s| {
        if s.is_empty() || s.len() > 253 {
            return Err("must be 1 to 253 characters".into());
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'))
        {
            return Err("only letters, digits, '.', '-', '_' and '@' are allowed".into());
        }
        Ok(())
    }
);
string_id!(
    /// A node's WireGuard public key as the registrar reports it: `nodekey:` and 64 lowercase hex
    /// digits. Registering again with the same node key re-authenticates the same node (R16).
    NodeKey,
    { "pattern": "^nodekey:[0-9a-f]{64}$", "minLength": 72, "maxLength": 72 },
    |s| {
        let hex = s.strip_prefix("nodekey:").ok_or("must start with 'nodekey:'")?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("must be 'nodekey:' followed by 64 lowercase hex digits".into());
        }
        Ok(())
    }
);
string_id!(
    /// An ACL tag, `tag:` followed by lowercase letters, digits and `-` (R05).
    TagName,
    { "pattern": "^tag:[a-z0-9-]{1,63}$", "minLength": 5, "maxLength": 67 },
    |s| {
        let name = s
            .strip_prefix("tag:")
            .ok_or("must start with 'tag:' (for example 'tag:server')")?;
        if name.is_empty() || name.len() > 63 {
            return Err("the name after 'tag:' must be 1 to 63 characters".into());
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("only lowercase letters, digits and '-' may follow 'tag:'".into());
        }
        Ok(())
    }
);
string_id!(
    /// The caller's idempotency key for a command. A command retried with the same id gets the
    /// first result and writes nothing new.
    CommandId,
    { "pattern": "^[A-Za-z0-9._:-]{1,128}$", "minLength": 1, "maxLength": 128 },
    |s| {
        if s.is_empty() || s.len() > 128 {
            return Err("must be 1 to 128 characters".into());
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return Err("only letters, digits, '.', '_', ':' and '-' are allowed".into());
        }
        Ok(())
    }
);
string_id!(
    /// An event's unique id (`e` and 32 hex digits); used as `Nats-Msg-Id` for de-duplication.
    EventId,
    { "pattern": "^e[0-9a-f]{32}$", "minLength": 33, "maxLength": 33 },
    |s| {
        let hex = s.strip_prefix('e').ok_or("must start with 'e'")?;
        if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err("must be 'e' followed by 32 lowercase hex digits".into());
        }
        Ok(())
    }
);
string_id!(
    /// A user's login name (an email address or similar): 1 to 254 bytes of UTF-8, no whitespace
    /// or control characters.
    LoginName,
    { "pattern": NO_SPACE_OR_CONTROL, "minLength": 1, "maxLength": 254 },
    |s| {
        if s.is_empty() || s.len() > 254 {
            return Err("must be 1 to 254 characters".into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace or control characters".into());
        }
        Ok(())
    }
);
string_id!(
    /// A key's description: at most 50 letters, digits, spaces and hyphens (SPEC §5).
    Description,
    { "pattern": "^[A-Za-z0-9 -]*$", "maxLength": 50 },
    |s| {
        if s.chars().count() > 50 {
            return Err("must be at most 50 characters".into());
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-') {
            return Err("only letters, digits, spaces and hyphens are allowed".into());
        }
        Ok(())
    }
);
string_id!(
    /// A node's host name as reported at registration: 1 to 253 bytes of UTF-8, no whitespace or
    /// control characters.
    Hostname,
    { "pattern": NO_SPACE_OR_CONTROL, "minLength": 1, "maxLength": 253 },
    |s| {
        if s.is_empty() || s.len() > 253 {
            return Err("must be 1 to 253 characters".into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace or control characters".into());
        }
        Ok(())
    }
);

impl StreamId {
    /// The stream of one aggregate: `kind/id`.
    pub fn of(kind: StreamKind, id: &str) -> Result<Self, InvalidId> {
        Self::parse(format!("{}/{id}", kind.as_str()))
    }

    /// The aggregate kind named by the stream's prefix.
    pub fn kind(&self) -> StreamKind {
        let prefix = self.0.split('/').next().unwrap_or_default();
        StreamKind::parse(prefix).expect("a parsed StreamId has a known kind")
    }
}

/// The kinds of aggregate that own an event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Tailnet settings.
    Tailnet,
    /// A user and their role.
    User,
    /// An API token.
    Token,
    /// An auth key.
    Key,
    /// A node (device).
    Node,
}

impl StreamKind {
    /// The prefix as written in a [`StreamId`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tailnet => "tailnet",
            Self::User => "user",
            Self::Token => "token",
            Self::Key => "key",
            Self::Node => "node",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tailnet" => Self::Tailnet,
            "user" => Self::User,
            "token" => Self::Token,
            "key" => Self::Key,
            "node" => Self::Node,
            _ => return None,
        })
    }
}

string_id!(
    /// The stream an event belongs to, `kind/id` (e.g. `key/k123`); optimistic concurrency is per
    /// stream.
    StreamId,
    {
        "pattern": "^(tailnet|user|token|key|node)/[A-Za-z0-9_-]{1,64}$",
        "minLength": 5,
        "maxLength": 72
    },
    |s| {
        let (kind, id) = s.split_once('/').ok_or("must be 'kind/id'")?;
        StreamKind::parse(kind)
            .ok_or("kind must be one of tailnet, user, token, key, node")?;
        if id.is_empty() || id.len() > 64 {
            return Err("id must be 1 to 64 characters".into());
        }
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err("id may hold only letters, digits, '_' and '-'".into());
        }
        Ok(())
    }
);

/// A global log position, from 1, gapless. Hashed as a fixed-width little-endian `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Seq(u64);

impl Seq {
    /// The first position in every log.
    pub const FIRST: Seq = Seq(1);

    /// Refuses 0: positions start at 1.
    pub fn new(n: u64) -> Result<Self, InvalidId> {
        if n == 0 {
            return Err(InvalidId::new("Seq", "positions start at 1"));
        }
        Ok(Self(n))
    }

    /// The position as a number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The position after this one.
    pub fn next(self) -> Seq {
        Seq(self
            .0
            .checked_add(1)
            .expect("the log cannot hold 2^64 events"))
    }
}

impl TryFrom<u64> for Seq {
    type Error = InvalidId;
    fn try_from(n: u64) -> Result<Self, InvalidId> {
        Self::new(n)
    }
}

impl From<Seq> for u64 {
    fn from(s: Seq) -> u64 {
        s.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl JsonSchema for Seq {
    fn schema_name() -> Cow<'static, str> {
        "Seq".into()
    }

    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::Seq").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A global log position, from 1, gapless.",
            "type": "integer",
            "format": "uint64",
            "minimum": 1,
        })
    }
}

/// A set of ACL tags: each valid, deduplicated and sorted (R05), so equal sets serialize equally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<TagName>", into = "Vec<TagName>")]
pub struct Tags(Vec<TagName>);

impl Tags {
    /// Sorts and deduplicates.
    pub fn new(mut tags: Vec<TagName>) -> Self {
        tags.sort();
        tags.dedup();
        Self(tags)
    }

    /// Parses each tag, then sorts and deduplicates.
    pub fn parse<S: AsRef<str>>(tags: &[S]) -> Result<Self, InvalidId> {
        let parsed = tags
            .iter()
            .map(|t| TagName::parse(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(parsed))
    }

    /// No tags: an untagged key or node.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tags in order.
    pub fn iter(&self) -> impl Iterator<Item = &TagName> {
        self.0.iter()
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl TryFrom<Vec<TagName>> for Tags {
    type Error = InvalidId;
    fn try_from(tags: Vec<TagName>) -> Result<Self, InvalidId> {
        Ok(Self::new(tags))
    }
}

impl From<Tags> for Vec<TagName> {
    fn from(t: Tags) -> Self {
        t.0
    }
}

impl JsonSchema for Tags {
    fn schema_name() -> Cow<'static, str> {
        "Tags".into()
    }

    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::Tags").into()
    }

    /// Written sorted and without duplicates, so the serialize-side schema says `uniqueItems`;
    /// a reader sorts and deduplicates what it is given, so the deserialize side does not.
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let items = generator.subschema_for::<TagName>();
        let mut schema = json_schema!({
            "description": "A set of ACL tags (R05), written sorted and without duplicates.",
            "type": "array",
            "items": items,
        });
        if generator.contract().is_serialize() {
            schema.insert("uniqueItems".into(), true.into());
        }
        schema
    }
}

/// A user's role in a tailnet, spelled as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Created with the tailnet; every permission.
    Owner,
    /// Manages keys, machines and users.
    Admin,
    /// Manages keys and machines.
    ItAdmin,
    /// Manages keys and machines.
    NetworkAdmin,
    /// Uses the tailnet; may not generate keys (R07).
    Member,
    /// Reads configuration and the audit log.
    Auditor,
    /// Manages billing only.
    BillingAdmin,
}

impl Role {
    /// R07: only these roles may generate or revoke auth keys.
    pub fn may_manage_keys(self) -> bool {
        matches!(
            self,
            Self::Owner | Self::Admin | Self::ItAdmin | Self::NetworkAdmin
        )
    }
}

/// The node-key lifetime of a tailnet's untagged nodes, 1–180 days (R14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct KeyDurationDays(u16);

impl KeyDurationDays {
    /// The default when a tailnet is created.
    pub const DEFAULT: KeyDurationDays = KeyDurationDays(180);

    /// Refuses anything outside 1–180.
    pub fn new(days: u16) -> Result<Self, InvalidId> {
        if !(1..=180).contains(&days) {
            return Err(InvalidId::new(
                "KeyDurationDays",
                "must be from 1 to 180 days",
            ));
        }
        Ok(Self(days))
    }

    /// The number of days.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for KeyDurationDays {
    type Error = InvalidId;
    fn try_from(d: u16) -> Result<Self, InvalidId> {
        Self::new(d)
    }
}

impl From<KeyDurationDays> for u16 {
    fn from(d: KeyDurationDays) -> u16 {
        d.0
    }
}

impl JsonSchema for KeyDurationDays {
    fn schema_name() -> Cow<'static, str> {
        "KeyDurationDays".into()
    }

    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::KeyDurationDays").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The node-key lifetime of a tailnet's untagged nodes in days, 1 to 180 (R14).",
            "type": "integer",
            "format": "uint16",
            "minimum": 1,
            "maximum": 180,
        })
    }
}

/// An auth key's lifetime in seconds: 1 to 7,776,000 (90 days) (R08).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct ExpirySeconds(u32);

impl ExpirySeconds {
    /// 90 days, the longest and the default.
    pub const MAX: ExpirySeconds = ExpirySeconds(7_776_000);

    /// Refuses 0 and anything past 90 days.
    pub fn new(secs: u32) -> Result<Self, InvalidId> {
        if !(1..=Self::MAX.0).contains(&secs) {
            return Err(InvalidId::new(
                "ExpirySeconds",
                "must be from 1 to 7776000 (90 days)",
            ));
        }
        Ok(Self(secs))
    }

    /// The number of seconds.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for ExpirySeconds {
    type Error = InvalidId;
    fn try_from(s: u32) -> Result<Self, InvalidId> {
        Self::new(s)
    }
}

impl From<ExpirySeconds> for u32 {
    fn from(s: ExpirySeconds) -> u32 {
        s.0
    }
}

impl JsonSchema for ExpirySeconds {
    fn schema_name() -> Cow<'static, str> {
        "ExpirySeconds".into()
    }

    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::ExpirySeconds").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An auth key's lifetime in seconds: 1 to 7776000 (90 days) (R08).",
            "type": "integer",
            "format": "uint32",
            "minimum": 1,
            "maximum": ExpirySeconds::MAX.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn r05_tags_need_prefix_and_lowercase() {
        assert!(TagName::parse("tag:server-1").is_ok());
        assert!(TagName::parse("server").is_err());
        assert!(TagName::parse("tag:Server").is_err());
        assert!(TagName::parse("tag:").is_err());
        assert!(TagName::parse("tag:a_b").is_err());
    }

    #[test]
    fn r05_tags_are_sorted_and_deduplicated() {
        let tags = Tags::parse(&["tag:b", "tag:a", "tag:b"]).expect("valid tags");
        let names: Vec<_> = tags.iter().map(TagName::as_str).collect();
        assert_eq!(names, ["tag:a", "tag:b"]);
        let json = serde_json::to_string(&tags).expect("serializes");
        assert_eq!(json, r#"["tag:a","tag:b"]"#);
        let back: Tags = serde_json::from_str(r#"["tag:b","tag:a"]"#).expect("parses");
        assert_eq!(back, tags);
    }

    #[test]
    fn node_key_is_64_lowercase_hex() {
        let good = format!("nodekey:{}", "ab".repeat(32));
        assert!(NodeKey::parse(good).is_ok());
        assert!(NodeKey::parse(format!("nodekey:{}", "AB".repeat(32))).is_err());
        assert!(NodeKey::parse(format!("nodekey:{}", "ab".repeat(31))).is_err());
        assert!(NodeKey::parse("ab".repeat(32)).is_err());
    }

    #[test]
    fn seq_refuses_zero_also_when_deserialized() {
        assert!(Seq::new(0).is_err());
        assert!(serde_json::from_str::<Seq>("0").is_err());
        assert_eq!(serde_json::from_str::<Seq>("7").expect("parses").get(), 7);
    }

    #[test]
    fn r08_expiry_seconds_bounds() {
        assert!(ExpirySeconds::new(0).is_err());
        assert!(ExpirySeconds::new(1).is_ok());
        assert!(ExpirySeconds::new(7_776_000).is_ok());
        assert!(ExpirySeconds::new(7_776_001).is_err());
    }

    #[test]
    fn stream_id_names_its_kind() {
        let s = StreamId::of(StreamKind::Key, "k123").expect("valid");
        assert_eq!(s.as_str(), "key/k123");
        assert_eq!(s.kind(), StreamKind::Key);
        assert!(StreamId::parse("car/x").is_err());
        assert!(StreamId::parse("key/").is_err());
        assert!(StreamId::parse("key/a.b").is_err());
    }

    #[test]
    fn description_rules() {
        assert!(Description::parse("ci runner 7").is_ok());
        assert!(Description::parse("").is_ok());
        assert!(Description::parse("a".repeat(51)).is_err());
        assert!(Description::parse("semi;colon").is_err());
    }

    proptest! {
        // Parsing arbitrary text never panics, and what parses re-serializes to the same text.
        #[test]
        fn parse_never_panics_and_round_trips(s in ".{0,80}") {
            for ok in [
                KeyId::parse(s.clone()).map(String::from),
                TagName::parse(s.clone()).map(String::from),
                NodeKey::parse(s.clone()).map(String::from),
                StreamId::parse(s.clone()).map(String::from),
                CommandId::parse(s.clone()).map(String::from),
            ].into_iter().flatten() {
                prop_assert_eq!(ok, s.clone());
            }
        }
    }
}
