//! Refusals and decoding: [`WireError`] (a bad field, named), the [`ErrorCode`]s every reply
//! uses, `{ok: false, error}` ([`ErrorReply`]), [`Reply`] (success or refusal), the `ok`
//! literals, and [`decode`], which reads a request DTO naming the first bad field.

use std::borrow::Cow;
use std::fmt;

use authkeys_domain::Rejection;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::PAYLOAD_BYTES_MAX;

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a request was refused before it became a command: a `bad_request` naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct WireError {
    /// The JSON path of the offending field (`nodeKey`, `capabilities.devices.create.tags[1]`),
    /// or `request` for the payload as a whole.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl WireError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The domain's `bad_request` rejection carrying this error.
    pub fn into_rejection(self) -> Rejection {
        Rejection::BadRequest(self.to_string())
    }
}

/// The error code of a `{ok: false}` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed; the message names the field. Nothing was written.
    BadRequest,
    /// A registration's auth key is malformed, unknown, wrong, expired, revoked or used: one
    /// answer for all (R10).
    InvalidKey,
    /// Too many failed registrations from this registrar or for this key id; try later.
    RateLimited,
    /// The actor's role does not allow it (R07).
    Forbidden,
    /// Unknown, or not the actor's to see (R09).
    NotFound,
    /// The state does not allow it now, or the command id was used for another request.
    Conflict,
    /// The service cannot take commands now (shutting down, log unavailable); retry.
    Unavailable,
    /// An unexpected failure; the service logged it.
    Internal,
    /// A timer fired before its deadline (the timers' clock is ahead of the log's); retry at
    /// the time the message names.
    NotDue,
    /// One event of a log read is larger than a reply may carry.
    TooLarge,
}

impl ErrorCode {
    /// The code as written on the wire (`bad_request`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::InvalidKey => "invalid_key",
            Self::RateLimited => "rate_limited",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::NotDue => "not_due",
            Self::TooLarge => "too_large",
        }
    }

    /// The code of a domain rejection.
    pub fn of(rejection: &Rejection) -> Self {
        match rejection.code() {
            "bad_request" => Self::BadRequest,
            "forbidden" => Self::Forbidden,
            "not_found" => Self::NotFound,
            "conflict" => Self::Conflict,
            "invalid_key" => Self::InvalidKey,
            "not_due" => Self::NotDue,
            _ => Self::Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Reads a request DTO from a payload. Structural errors (not JSON, a missing or unknown field,
/// a wrong JSON type) name the field's path; field values are checked later by `parse`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > PAYLOAD_BYTES_MAX {
        return Err(WireError::new(
            "request",
            format!("larger than {PAYLOAD_BYTES_MAX} bytes"),
        ));
    }
    // serde also reads a struct from an array of its fields; a request is an object only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(WireError::new("request", "must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(path_error)?;
    de.end()
        .map_err(|e| WireError::new("request", without_position(&e)))?;
    Ok(value)
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> WireError {
    let path = match e.path().to_string() {
        // serde_path_to_error's spelling of "no field yet".
        p if p == "?" => ".".to_owned(),
        p => p,
    };
    let message = without_position(e.inner());
    if matches!(
        e.inner().classify(),
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof
    ) {
        return WireError::new("request", format!("not valid JSON: {message}"));
    }
    if let Some(name) = quoted(&message, "missing field `") {
        let field = if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return WireError::new(field, "is required");
    }
    if let Some(name) = quoted(&message, "unknown field `") {
        let field = if path == "." || path.ends_with(name) {
            path.trim_start_matches('.').to_owned()
        } else {
            format!("{path}.{name}")
        };
        let field = if field.is_empty() {
            name.to_owned()
        } else {
            field
        };
        return WireError::new(field, "is not a known field");
    }
    if path == "." {
        return WireError::new("request", format!("not a valid request object: {message}"));
    }
    WireError::new(path, message)
}

/// The name between `prefix` and the next backtick, if `message` starts with `prefix`.
fn quoted<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// serde_json's message without its ` at line L column C` suffix.
fn without_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) if e.line() > 0 => s[..i].to_owned(),
        _ => s,
    }
}

/// A validated id's error as `field: why`, without the type name the id's error carries.
pub(crate) fn id<T>(name: &str, r: Result<T, authkeys_events::InvalidId>) -> Result<T, WireError> {
    r.map_err(|e| WireError::new(name, e.why))
}

// ---------------------------------------------------------------------------------------------
// `ok` literals

macro_rules! bool_literal {
    ($(#[doc = $doc:literal])* $name:ident, $value:literal) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name;

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bool($value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if bool::deserialize(d)? == $value {
                    Ok($name)
                } else {
                    Err(serde::de::Error::custom(concat!("expected ", $value)))
                }
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "boolean", "const": $value })
            }
        }
    };
}

bool_literal!(
    /// `ok: true`.
    True,
    true
);
bool_literal!(
    /// `ok: false`.
    False,
    false
);

// ---------------------------------------------------------------------------------------------
// Replies

/// `{code, message}` of a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// Machine-readable.
    pub code: ErrorCode,
    /// Human-readable; names the field for `bad_request`.
    pub message: String,
}

/// `{ok: false, error: {code, message}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    /// Always `false`.
    pub ok: False,
    /// Why.
    pub error: ErrorBody,
}

impl ErrorReply {
    /// A refusal with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            ok: False,
            error: ErrorBody {
                code,
                message: message.into(),
            },
        }
    }

    /// The reply of a domain rejection.
    pub fn of(rejection: &Rejection) -> Self {
        Self::new(ErrorCode::of(rejection), rejection.to_string())
    }
}

impl From<WireError> for ErrorReply {
    fn from(e: WireError) -> Self {
        Self::new(ErrorCode::BadRequest, e.to_string())
    }
}

/// Every reply: the subject's success object, or a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "{T}OrError")]
pub enum Reply<T> {
    /// `{ok: true, …}`.
    Ok(T),
    /// `{ok: false, error}`.
    Err(ErrorReply),
}

impl<T> Reply<T> {
    /// As a `Result`.
    pub fn into_result(self) -> Result<T, ErrorBody> {
        match self {
            Self::Ok(t) => Ok(t),
            Self::Err(e) => Err(e.error),
        }
    }
}

/// The bytes of a refusal (a fixed `internal` refusal should encoding ever fail).
pub fn reply_bytes(reply: &ErrorReply) -> Vec<u8> {
    serde_json::to_vec(reply).unwrap_or_else(|_| {
        br#"{"ok":false,"error":{"code":"internal","message":"reply encoding failed"}}"#.to_vec()
    })
}
