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
    pub(crate) fn new(what: &'static str, why: impl Into<String>) -> Self {
        Self {
            what,
            why: why.into(),
        }
    }
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Unicode general category `Cf` (format characters, Unicode 16): invisible characters that
/// change how the text around them is shown — bidi overrides and isolates (U+202A..U+202E,
/// U+2066..U+2069), zero-width spaces and joiners (U+200B..U+200D), the byte order mark
/// (U+FEFF), tag characters (U+E0020..U+E007F), … A name holding one can pass for another name
/// (`admin\u{202e}gpj.exe`), so human-visible names refuse them.
const FORMAT_CHARS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Is `c` a format character (Unicode category `Cf`, see [`FORMAT_CHARS`])?
pub fn is_format_char(c: char) -> bool {
    FORMAT_CHARS.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

/// Is `c` refused in a human-visible name: whitespace, a control or a format character?
pub fn is_hidden_char(c: char) -> bool {
    c.is_whitespace() || c.is_control() || is_format_char(c)
}

/// A JSON Schema pattern for "no character that [`is_hidden_char`] refuses": the Unicode
/// `White_Space` characters, the C0/C1 controls and the format characters of the Basic
/// Multilingual Plane, listed out because ECMA-262 patterns without the `u` flag know no
/// property. (Without the `u` flag a pattern cannot name a character beyond U+FFFF; the parser
/// also refuses the few format characters there, e.g. the tag characters U+E0020..U+E007F.)
const NO_SPACE_OR_CONTROL: &str = concat!(
    r"^[^\u0000-\u0020\u007f-\u00a0\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891",
    r"\u08e2\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ufeff",
    r"\ufff9-\ufffb]+$"
);

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
                Self::check(&s)?;
                Ok(Self(s))
            }

            /// Whether `s` is valid, without making one (nothing is allocated on success).
            pub fn check(s: &str) -> Result<(), InvalidId> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(s).map_err(|why| InvalidId::new(stringify!($name), why))
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

/// Checks that a human-visible name shows what it is: no whitespace, control or format character
/// ([`is_hidden_char`]); the error names the first one by its code point.
fn visible_name(s: &str) -> Result<(), String> {
    match s.chars().find(|c| is_hidden_char(*c)) {
        None => Ok(()),
        Some(c) if is_format_char(c) => Err(format!(
            "must not contain invisible formatting characters (bidi or zero-width; found U+{:04X})",
            u32::from(c)
        )),
        Some(c) => Err(format!(
            "must not contain whitespace or control characters (found U+{:04X})",
            u32::from(c)
        )),
    }
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
    /// A webhook endpoint's identifier (`w…`, R23), drawn by the command service from the
    /// creating command's id, so a retried create names the same endpoint.
    EndpointId,
    { "pattern": "^w[A-Za-z0-9]{1,40}$", "minLength": 2, "maxLength": 41 },
    |s| prefixed_base62(s, "w", 40)
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
    /// A user's login name (an email address or similar): 1 to 254 bytes of UTF-8, no whitespace,
    /// control or format (bidi, zero-width) characters.
    LoginName,
    { "pattern": NO_SPACE_OR_CONTROL, "minLength": 1, "maxLength": 254 },
    |s| {
        if s.is_empty() || s.len() > 254 {
            return Err("must be 1 to 254 characters".into());
        }
        visible_name(s)
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
    /// A node's host name as reported at registration: 1 to 253 bytes of UTF-8, no whitespace,
    /// control or format (bidi, zero-width) characters.
    Hostname,
    { "pattern": NO_SPACE_OR_CONTROL, "minLength": 1, "maxLength": 253 },
    |s| {
        if s.is_empty() || s.len() > 253 {
            return Err("must be 1 to 253 characters".into());
        }
        visible_name(s)
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
    /// A webhook endpoint (R23).
    Webhook,
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
            Self::Webhook => "webhook",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tailnet" => Self::Tailnet,
            "user" => Self::User,
            "token" => Self::Token,
            "key" => Self::Key,
            "node" => Self::Node,
            "webhook" => Self::Webhook,
            _ => return None,
        })
    }
}

string_id!(
    /// The stream an event belongs to, `kind/id` (e.g. `key/k123`); optimistic concurrency is per
    /// stream.
    StreamId,
    {
        "pattern": "^(tailnet|user|token|key|node|webhook)/[A-Za-z0-9_-]{1,64}$",
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

/// What each role may change (R07, R21): the one table `decide` enforces and auditors check.
impl Role {
    /// R07, R21: Owner, Admin, IT admin and Network admin generate and revoke auth keys.
    pub fn may_manage_keys(self) -> bool {
        matches!(
            self,
            Self::Owner | Self::Admin | Self::ItAdmin | Self::NetworkAdmin
        )
    }

    /// R21: Owner, Admin and IT admin manage devices (a Network admin reads them only).
    pub fn may_manage_devices(self) -> bool {
        matches!(self, Self::Owner | Self::Admin | Self::ItAdmin)
    }

    /// R21: Owner, Admin and IT admin manage users, their roles and their tokens.
    pub fn may_manage_users(self) -> bool {
        matches!(self, Self::Owner | Self::Admin | Self::ItAdmin)
    }

    /// Tailnet settings: Owner and Admin.
    pub fn may_manage_settings(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
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

    #[test]
    fn finding_10_names_refuse_bidi_and_zero_width_characters() {
        // Security review, finding 10: a host or login name may not carry an invisible format
        // character (Unicode Cf) that makes it look like another name.
        for c in [
            '\u{202E}',
            '\u{202A}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{061C}',
            '\u{2060}',
            '\u{E0041}',
            '\u{E0001}',
        ] {
            let spoof = format!("admin{c}gpj.exe");
            let host = Hostname::parse(spoof.as_str()).expect_err("format char in a hostname");
            assert!(host.why.contains("invisible"), "{c:?}: {}", host.why);
            assert!(host.why.contains(&format!("U+{:04X}", u32::from(c))));
            let login = format!("alice{c}@example.com");
            assert!(LoginName::parse(login).is_err(), "{c:?} in a login name");
            assert!(Description::parse(format!("web{c}")).is_err());
            // Deserialization takes the same path.
            let json = serde_json::to_string(&spoof).expect("a JSON string");
            assert!(serde_json::from_str::<Hostname>(&json).is_err());
        }
        // Visible non-ASCII names still pass.
        assert!(Hostname::parse("ünïcödé-host").is_ok());
        assert!(LoginName::parse("ünïcödé@example.com").is_ok());
        assert!(Hostname::parse("web\u{2009}1").is_err());
    }

    #[test]
    fn format_char_table_is_sorted_and_covers_cf() {
        // The table is sorted, with no overlaps, and each range is what it says.
        for w in FORMAT_CHARS.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:?}");
        }
        for (c, cf) in [
            ('a', false),
            ('\u{00A0}', false),
            ('\u{200A}', false),
            ('\u{200B}', true),
            ('\u{200F}', true),
            ('\u{2010}', false),
            ('\u{2065}', false),
            ('\u{206F}', true),
            ('\u{E007F}', true),
            ('\u{E0080}', false),
        ] {
            assert_eq!(is_format_char(c), cf, "{c:?}");
        }
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
