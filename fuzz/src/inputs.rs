//! Input generation: random bytes, byte-level mutation, and structure-aware JSON (objects with
//! the right field names and values that are mostly valid, sometimes near misses, sometimes of
//! the wrong JSON type), so that the decoders are exercised past their first check.
//!
//! Every generator draws from one seeded [`fastrand::Rng`]: a run is reproducible from its seed,
//! and a failing case is reported with its bytes, which the target alone reproduces.

use authkeys_domain::secret::{self, SecretKind};

/// The random source of one target's run.
#[derive(Debug)]
pub struct Gen {
    rng: fastrand::Rng,
    /// Inside a "clean" document: invalid values are twenty times rarer, so that whole
    /// documents get past every check often enough to exercise what comes after.
    clean: bool,
}

/// Base62, the alphabet of most ids.
pub const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const HEX: &[u8] = b"0123456789abcdef";

/// Characters that often sit on a parser's boundary.
const TRICKY: &[&str] = &[
    "",
    " ",
    "\t",
    "\n",
    "\r",
    "\0",
    "\u{7f}",
    "\u{80}",
    "\u{a0}",
    "\u{200b}",
    "\u{2028}",
    "\u{feff}",
    "\u{fffd}",
    "é",
    "ß",
    "Ω",
    "日本",
    "😀",
    "-",
    "_",
    ".",
    ":",
    "/",
    "@",
    "\\",
    "\"",
    "'",
    "%",
    "+",
    "=",
    "&",
    "?",
    "#",
    ",",
    "{",
    "}",
    "[",
    "]",
    "tag:",
    "nodekey:",
    "tskey-",
    "tskey-auth-",
    "tskey-api-",
    "k",
    "n",
    "u",
    "t",
    "e",
    "A",
    "z",
    "0",
    "9",
];

/// JSON numbers on a decoder's boundaries.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1e999",
    "-1e999",
    "1.5",
    "1e2",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "4294967296",
    "0.0",
    "1E400",
    "-",
];

/// JSON fragments that often trip a decoder.
const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "null",
    "true",
    "false",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\udc00\\ud800\"",
    "\"\\uDFFF\"",
    "\"\\x\"",
    "{}",
    "[]",
    "\"\"",
    " ",
    "\n",
    "\u{feff}",
    "\u{0}",
    "\"ok\"",
    "\"hash\"",
    "\"events\"",
];

impl Gen {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            clean: false,
        }
    }

    /// A number in `0..n` (`n` ≥ 1).
    pub fn below(&mut self, n: usize) -> usize {
        self.rng.usize(..n.max(1))
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.rng.u32(..100) < percent
    }

    /// A deliberate fault, `percent` times in a hundred (twenty times rarer in a clean
    /// document).
    pub fn noise(&mut self, percent: u32) -> bool {
        if self.clean {
            self.rng.u32(..2_000) < percent
        } else {
            self.chance(percent)
        }
    }

    /// Runs `f` as a clean document half of the time.
    pub fn maybe_clean<T>(&mut self, f: impl FnOnce(&mut Gen) -> T) -> T {
        let was = self.clean;
        self.clean = was || self.chance(50);
        let out = f(self);
        self.clean = was;
        out
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.rng.u8(..)
    }

    /// A random `u64`.
    pub fn u64(&mut self) -> u64 {
        self.rng.u64(..)
    }

    /// A random `i64` in `range`.
    pub fn i64_in(&mut self, range: std::ops::RangeInclusive<i64>) -> i64 {
        self.rng.i64(range)
    }

    /// One element of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length, biased to small ones but reaching `max`.
    pub fn len(&mut self, max: usize) -> usize {
        match self.below(4) {
            0 => self.below(4.min(max + 1)),
            1 | 2 => self.below(max.min(64) + 1),
            _ => self.below(max + 1),
        }
    }

    /// `n` random bytes.
    pub fn bytes_n(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        self.rng.fill(&mut out);
        out
    }

    /// Random bytes of a random length up to `max`.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.len(max);
        self.bytes_n(n)
    }

    /// `n` characters of `alphabet`.
    pub fn from_alphabet(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(*self.pick(alphabet)))
            .collect::<String>()
    }

    /// Any text: ASCII, controls, multi-byte characters, boundary tokens.
    pub fn text(&mut self, max: usize) -> String {
        let n = self.len(max);
        let mut s = String::new();
        while s.len() < n {
            match self.below(6) {
                0 => {
                    let t: &&str = self.pick(TRICKY);
                    s.push_str(t);
                }
                1 => s.push(self.rng.char(..)),
                2 => s.push(char::from(self.rng.u8(0..0x80))),
                _ => s.push(char::from(*self.pick(BASE62))),
            }
        }
        s
    }

    /// A near miss of `valid`: one or a few character-level edits, or a length at a boundary.
    pub fn near_miss(&mut self, valid: &str) -> String {
        let mut chars: Vec<char> = valid.chars().collect();
        for _ in 0..=self.below(2) {
            let at = self.below(chars.len() + 1);
            match self.below(7) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 if at < chars.len() => {
                    chars[at] = self.pick(TRICKY).chars().next().unwrap_or('x');
                }
                2 if at < chars.len() => {
                    chars[at] = chars[at].to_ascii_uppercase();
                    if chars[at] == valid.chars().nth(at).unwrap_or(' ') {
                        chars[at] = chars[at].to_ascii_lowercase();
                    }
                }
                3 => {
                    let extra = self.pick(TRICKY).to_owned();
                    for (i, c) in extra.chars().enumerate() {
                        chars.insert(at + i, c);
                    }
                }
                4 => {
                    // Run past a length limit.
                    let c = chars.last().copied().unwrap_or('a');
                    let more = *self.pick(&[1, 2, 40, 64, 128, 254, 300]);
                    chars.extend(std::iter::repeat_n(c, more));
                }
                5 => chars.truncate(at),
                _ => {
                    let c = self.rng.char(..);
                    chars.insert(at, c);
                }
            }
        }
        chars.into_iter().collect()
    }

    /// Byte-level mutations of `data`: flips, inserts, deletions, duplications, truncation and
    /// JSON tokens.
    pub fn mutate(&mut self, data: &mut Vec<u8>) {
        for _ in 0..=self.below(4) {
            let at = self.below(data.len() + 1);
            match self.below(8) {
                0 if at < data.len() => data[at] ^= 1 << self.below(8),
                1 if at < data.len() => data[at] = self.byte(),
                2 => {
                    let token = if self.chance(70) {
                        self.pick(JSON_TOKENS)
                    } else {
                        self.pick(NUMBERS)
                    };
                    let token = token.as_bytes().to_vec();
                    data.splice(at..at, token);
                }
                3 if at < data.len() => {
                    let end = (at + 1 + self.below(16)).min(data.len());
                    data.drain(at..end);
                }
                4 if at < data.len() => {
                    let end = (at + 1 + self.below(32)).min(data.len());
                    let copy = data[at..end].to_vec();
                    let to = self.below(data.len() + 1);
                    data.splice(to..to, copy);
                }
                5 => data.truncate(at),
                6 => {
                    let b = self.byte();
                    data.insert(at, b);
                }
                _ => {
                    let extra = self.bytes(8);
                    data.splice(at..at, extra);
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // JSON

    /// A JSON string literal of `s`.
    pub fn json_str(s: &str) -> String {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
    }

    /// Any JSON value, up to `depth` levels deep.
    pub fn junk_value(&mut self, depth: usize) -> String {
        let kinds = if depth == 0 { 5 } else { 7 };
        match self.below(kinds) {
            0 => "null".to_owned(),
            1 => self.pick(&["true", "false"]).to_string(),
            2 => self.number(),
            3 | 4 => {
                let t = self.text(40);
                Self::json_str(&t)
            }
            5 => {
                let n = self.below(4);
                let items: Vec<String> = (0..n).map(|_| self.junk_value(depth - 1)).collect();
                format!("[{}]", items.join(","))
            }
            _ => {
                let n = self.below(4);
                let items: Vec<String> = (0..n)
                    .map(|_| {
                        let k = self.text(10);
                        format!("{}:{}", Self::json_str(&k), self.junk_value(depth - 1))
                    })
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }

    /// A JSON number, often on a boundary.
    pub fn number(&mut self) -> String {
        match self.below(4) {
            0 => self.pick(NUMBERS).to_string(),
            1 => self.u64().to_string(),
            2 => self.i64_in(-1000..=1000).to_string(),
            _ => self
                .pick(&[
                    "0",
                    "1",
                    "-1",
                    "7776000",
                    "7776001",
                    "180",
                    "181",
                    "1000",
                    "1001",
                    "65535",
                    "65536",
                    "4294967295",
                    "9223372036854775807",
                    "1.0",
                    "1e3",
                    "0.5",
                ])
                .to_string(),
        }
    }

    /// A JSON value for a field whose valid values `valid` makes: mostly a valid one, some
    /// near misses, some of another JSON type.
    pub fn field_str(&mut self, valid: impl FnOnce(&mut Gen) -> String) -> String {
        let v = valid(self);
        if self.clean && !self.chance(2) {
            return Self::json_str(&v);
        }
        match self.below(20) {
            0..=13 => Self::json_str(&v),
            14..=17 => {
                let m = self.near_miss(&v);
                Self::json_str(&m)
            }
            18 => {
                let t = self.text(80);
                Self::json_str(&t)
            }
            _ => self.junk_value(1),
        }
    }

    /// A JSON object of `fields` (name → value generator): fields are now and then missing,
    /// duplicated, reordered, joined by an unknown one, or spaced out.
    pub fn object(&mut self, fields: &[(&str, Field)]) -> String {
        let mut parts: Vec<String> = Vec::with_capacity(fields.len() + 1);
        for (name, value) in fields {
            if self.noise(4) {
                continue;
            }
            let v = value(self);
            if v.is_empty() {
                // An optional field the generator left out.
                continue;
            }
            parts.push(format!("{}:{v}", Self::json_str(name)));
            if self.noise(1) {
                let v = value(self);
                if !v.is_empty() {
                    parts.push(format!("{}:{v}", Self::json_str(name)));
                }
            }
        }
        if self.noise(3) {
            let k = if self.chance(50) {
                self.near_miss(fields.first().map_or("x", |f| f.0))
            } else {
                self.text(12)
            };
            parts.push(format!("{}:{}", Self::json_str(&k), self.junk_value(1)));
        }
        if self.chance(10) {
            self.rng.shuffle(&mut parts);
        }
        let sep = if self.chance(5) { " ,\n " } else { "," };
        if self.chance(5) {
            format!(" {{ {} }} ", parts.join(sep))
        } else {
            format!("{{{}}}", parts.join(sep))
        }
    }

    /// A document: usually `structured`, sometimes mutated, sometimes random bytes or random JSON.
    pub fn document(&mut self, structured: impl FnOnce(&mut Gen) -> String) -> Vec<u8> {
        match self.below(20) {
            0 => self.bytes(256),
            1 => self.junk_value(3).into_bytes(),
            2..=5 => {
                let mut d = structured(self).into_bytes();
                self.mutate(&mut d);
                d
            }
            _ => self.maybe_clean(structured).into_bytes(),
        }
    }

    /// A document of one object with `fields`.
    pub fn document_object(&mut self, fields: &[(&str, Field)]) -> Vec<u8> {
        self.document(|g| g.object(fields))
    }

    /// A document: `{ok:false, error}` `percent`% of the time, else `ok`.
    pub fn document_or_error(
        &mut self,
        percent: u32,
        ok: impl FnOnce(&mut Gen) -> String,
    ) -> Vec<u8> {
        self.document(|g| {
            if g.chance(percent) {
                g.object(&[("ok", field::ok_false), ("error", field::error_body)])
            } else {
                ok(g)
            }
        })
    }

    /// `constant` `percent`% of the time, else `other`.
    pub fn or_const(
        &mut self,
        percent: u32,
        constant: &str,
        other: impl FnOnce(&mut Gen) -> String,
    ) -> String {
        if self.chance(percent) {
            constant.to_owned()
        } else {
            other(self)
        }
    }

    /// `valid`, or `other` when `noise(percent)` says so.
    pub fn unless_noise(
        &mut self,
        percent: u32,
        valid: impl FnOnce(&mut Gen) -> String,
        other: impl FnOnce(&mut Gen) -> String,
    ) -> String {
        if self.noise(percent) {
            other(self)
        } else {
            valid(self)
        }
    }

    /// A JSON array of up to `max` items.
    pub fn array(&mut self, max: usize, mut item: impl FnMut(&mut Gen) -> String) -> String {
        let n = self.len(max);
        let items: Vec<String> = (0..n).map(|_| item(self)).collect();
        format!("[{}]", items.join(","))
    }

    // -----------------------------------------------------------------------------------------
    // Valid values of the wire's fields (as plain text; wrap with `field_str`)

    /// `prefix` + 1 to 40 base62 (`KeyId`, `NodeId`, `UserId`, `TokenId`).
    pub fn prefixed_id(&mut self, prefix: char) -> String {
        let n = 1 + self.len(39);
        format!("{prefix}{}", self.from_alphabet(BASE62, n))
    }

    /// A `CommandId`.
    pub fn command_id(&mut self) -> String {
        let n = 1 + self.len(127);
        self.from_alphabet(
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._:-",
            n,
        )
    }

    /// A `TailnetId`.
    pub fn tailnet(&mut self) -> String {
        let n = 1 + self.len(63);
        self.from_alphabet(
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-",
            n,
        )
    }

    /// A `NodeKey`.
    pub fn node_key(&mut self) -> String {
        format!("nodekey:{}", self.from_alphabet(HEX, 64))
    }

    /// A `Hostname` or `LoginName`: no whitespace or control characters.
    pub fn name(&mut self, max: usize) -> String {
        let n = 1 + self.len(max - 1);
        let mut s = String::new();
        while s.chars().count() < n {
            let c = if self.chance(80) {
                char::from(*self.pick(b"abcdefghijklmnopqrstuvwxyz0123456789-.@_"))
            } else {
                self.rng.char(..)
            };
            if !c.is_whitespace() && !c.is_control() && s.len() + c.len_utf8() <= max {
                s.push(c);
            } else if s.len() >= max - 4 {
                break;
            }
        }
        if s.is_empty() { "a".to_owned() } else { s }
    }

    /// A `TagName`.
    pub fn tag(&mut self) -> String {
        let n = 1 + self.len(62);
        format!(
            "tag:{}",
            self.from_alphabet(b"abcdefghijklmnopqrstuvwxyz0123456789-", n)
        )
    }

    /// A JSON array of tags, mostly valid.
    pub fn tags_json(&mut self) -> String {
        if self.noise(3) {
            return self.junk_value(1);
        }
        let n = if self.noise(2) { 65 } else { self.len(8) };
        let items: Vec<String> = (0..n).map(|_| self.field_str(Gen::tag)).collect();
        format!("[{}]", items.join(","))
    }

    /// A `Description`.
    pub fn description(&mut self) -> String {
        let n = self.len(50);
        self.from_alphabet(
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz -",
            n,
        )
    }

    /// An RFC 3339 instant, mostly in 1970..=9999, in various spellings.
    pub fn timestamp(&mut self) -> String {
        let year = if self.noise(17) {
            *self.pick(&[0, 1, 1969, 1970, 9999, 10000])
        } else {
            self.i64_in(1970..=2200)
        };
        let frac = match self.below(4) {
            0 => String::new(),
            1 => format!(".{:03}", self.below(1000)),
            2 => {
                let n = 1 + self.below(12);
                format!(".{}", self.from_alphabet(b"0123456789", n))
            }
            _ => ".999".to_owned(),
        };
        let offset = match self.below(5) {
            0 => format!("+{:02}:{:02}", self.below(24), self.below(60)),
            1 => format!("-{:02}:{:02}", self.below(24), self.below(60)),
            2 => "z".to_owned(),
            _ => "Z".to_owned(),
        };
        let days = if self.noise(5) { 32 } else { 28 };
        let seconds = if self.noise(5) { 61 } else { 60 };
        format!(
            "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}{offset}",
            1 + self.below(12),
            1 + self.below(days),
            self.below(24),
            self.below(60),
            self.below(seconds),
        )
    }

    /// 64 lowercase hex digits (a `Hash`).
    pub fn hash_hex(&mut self) -> String {
        self.from_alphabet(HEX, 64)
    }

    /// A role as the API spells it.
    pub fn role(&mut self) -> String {
        self.pick(&[
            "owner",
            "admin",
            "it-admin",
            "network-admin",
            "member",
            "auditor",
            "billing-admin",
        ])
        .to_string()
    }

    /// A well-formed secret of `kind` for a valid id, with a correct checksum.
    pub fn secret(&mut self, kind: SecretKind) -> String {
        let id = match kind {
            SecretKind::Auth | SecretKind::Client => self.prefixed_id('k'),
            SecretKind::Api => self.prefixed_id('t'),
        };
        let mut random = [0u8; 32];
        self.rng.fill(&mut random);
        secret::issue(kind, &id, &random, &[7; 32]).text
    }

    /// A presented secret: well-formed, a near miss of one, the other kind, or junk.
    pub fn presented(&mut self, kind: SecretKind) -> String {
        match self.below(10) {
            0..=4 => self.secret(kind),
            5..=7 => {
                let s = self.secret(kind);
                self.near_miss(&s)
            }
            8 => {
                let other = match kind {
                    SecretKind::Auth => SecretKind::Api,
                    SecretKind::Api | SecretKind::Client => SecretKind::Auth,
                };
                self.secret(other)
            }
            _ => {
                let prefix = match kind {
                    SecretKind::Auth => "tskey-auth-",
                    SecretKind::Api => "tskey-api-",
                    SecretKind::Client => "tskey-client-",
                };
                format!("{prefix}{}", self.text(80))
            }
        }
    }
}

/// A generator of one field's JSON value.
pub type Field = fn(&mut Gen) -> String;

/// Field generators for the wire's value types.
pub mod field {
    use super::Gen;
    use authkeys_domain::secret::SecretKind;

    /// A `CommandId` (also `requestId`).
    pub fn command_id(g: &mut Gen) -> String {
        g.field_str(Gen::command_id)
    }
    /// A `TailnetId`.
    pub fn tailnet(g: &mut Gen) -> String {
        g.field_str(Gen::tailnet)
    }
    /// A `UserId`.
    pub fn user_id(g: &mut Gen) -> String {
        g.field_str(|g| g.prefixed_id('u'))
    }
    /// A `KeyId`.
    pub fn key_id(g: &mut Gen) -> String {
        g.field_str(|g| g.prefixed_id('k'))
    }
    /// A `NodeId`.
    pub fn node_id(g: &mut Gen) -> String {
        g.field_str(|g| g.prefixed_id('n'))
    }
    /// A `TokenId`.
    pub fn token_id(g: &mut Gen) -> String {
        g.field_str(|g| g.prefixed_id('t'))
    }
    /// A `NodeKey`.
    pub fn node_key(g: &mut Gen) -> String {
        g.field_str(Gen::node_key)
    }
    /// A `Hostname`.
    pub fn hostname(g: &mut Gen) -> String {
        g.field_str(|g| g.name(253))
    }
    /// A `LoginName`.
    pub fn login_name(g: &mut Gen) -> String {
        g.field_str(|g| g.name(254))
    }
    /// An `os` (≤ 128 bytes, no controls).
    pub fn os(g: &mut Gen) -> String {
        g.field_str(|g| g.name(128))
    }
    /// Any string.
    pub fn any_str(g: &mut Gen) -> String {
        g.field_str(|g| g.text(60))
    }
    /// An auth key.
    pub fn auth_key(g: &mut Gen) -> String {
        let k = g.presented(SecretKind::Auth);
        if g.noise(3) {
            g.junk_value(1)
        } else {
            Gen::json_str(&k)
        }
    }
    /// An API token.
    pub fn api_key(g: &mut Gen) -> String {
        let k = g.presented(SecretKind::Api);
        Gen::json_str(&k)
    }
    /// A role.
    pub fn role(g: &mut Gen) -> String {
        g.field_str(Gen::role)
    }
    /// A `Description`.
    pub fn description(g: &mut Gen) -> String {
        g.field_str(Gen::description)
    }
    /// A `TagName`.
    pub fn tag(g: &mut Gen) -> String {
        g.field_str(Gen::tag)
    }
    /// An array of tags.
    pub fn tags(g: &mut Gen) -> String {
        g.tags_json()
    }
    /// Tags or `null`.
    pub fn tags_or_null(g: &mut Gen) -> String {
        g.or_const(20, "null", Gen::tags_json)
    }
    /// A `Timestamp`.
    pub fn timestamp(g: &mut Gen) -> String {
        g.field_str(Gen::timestamp)
    }
    /// A `Timestamp` or `null`.
    pub fn timestamp_or_null(g: &mut Gen) -> String {
        g.or_const(30, "null", timestamp)
    }
    /// A `Hash`.
    pub fn hash(g: &mut Gen) -> String {
        g.field_str(Gen::hash_hex)
    }
    /// A boolean (or, rarely, something else).
    pub fn boolean(g: &mut Gen) -> String {
        g.unless_noise(
            5,
            |g| g.pick(&["true", "false"]).to_string(),
            |g| g.junk_value(0),
        )
    }
    /// A boolean or `null`.
    pub fn boolean_or_null(g: &mut Gen) -> String {
        g.or_const(15, "null", boolean)
    }
    /// An integer, often on a boundary.
    pub fn integer(g: &mut Gen) -> String {
        g.unless_noise(5, Gen::number, |g| g.junk_value(0))
    }
    /// A small count (limits, days, seconds), mostly in range.
    pub fn small_int(g: &mut Gen) -> String {
        count(g, 0..=200, |g| g.i64_in(1..=7_776_001).to_string())
    }
    /// A seq.
    pub fn seq(g: &mut Gen) -> String {
        count(g, 1..=100, |g| g.u64().to_string())
    }
    /// A count: sometimes any integer, else half the time in `small`, else `large`.
    fn count(
        g: &mut Gen,
        small: std::ops::RangeInclusive<i64>,
        large: impl FnOnce(&mut Gen) -> String,
    ) -> String {
        if g.noise(30) {
            return integer(g);
        }
        if g.chance(50) {
            g.i64_in(small).to_string()
        } else {
            large(g)
        }
    }
    /// `ok: true` mostly.
    pub fn ok_true(g: &mut Gen) -> String {
        g.unless_noise(10, |_| "true".to_owned(), boolean)
    }
    /// `ok: false` mostly.
    pub fn ok_false(g: &mut Gen) -> String {
        g.unless_noise(10, |_| "false".to_owned(), boolean)
    }
    /// An error code.
    pub fn error_code(g: &mut Gen) -> String {
        g.field_str(|g| {
            g.pick(&[
                "bad_request",
                "invalid_key",
                "rate_limited",
                "forbidden",
                "not_found",
                "conflict",
                "unavailable",
                "internal",
                "not_due",
                "too_large",
            ])
            .to_string()
        })
    }
    /// `{code, message}`.
    pub fn error_body(g: &mut Gen) -> String {
        g.object(&[("code", error_code), ("message", any_str)])
    }
    /// A log id (32 hex).
    pub fn log_id(g: &mut Gen) -> String {
        g.field_str(|g| g.from_alphabet(b"0123456789abcdefABCDEF", 32))
    }
}
