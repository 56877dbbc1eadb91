//! The wire contract of authkeys (SPEC §5), typed end to end: every NATS name, every payload
//! and every object a client sees, for every role on both ends of each subject.
//!
//! - [`access`]: the NATS roles, their inboxes and least permissions (SPEC §6).
//! - [`subject`]: every subject, queue group, stream name and header. No other crate spells one.
//! - [`error`]: [`ErrorCode`], `{ok: false, error}` ([`ErrorReply`]), [`Reply`], and [`decode`],
//!   which reads a request naming the first bad field ([`WireError`]).
//! - [`command`]: the command subjects' requests, their parsing into the domain's types, and
//!   their replies.
//! - [`object`]: [`Device`], [`Key`], the user and settings objects, each with its one builder.
//! - [`query`]: the views' queries and answers (`authkeys.query.*`).
//! - [`lock`]: tailnet lock's subjects (R04): requests with a user's token, [`lock::LockStatus`].
//! - [`log`]: `authkeys.log.read` and `authkeys.log.checkpoints` pages.
//! - [`status`]: `authkeys.status` and `authkeys.timers.status`.
//! - [`nats`]: [`nats::connect`] and [`nats::Responder`], the one bounded request/reply loop.
//!
//! Every command type derives `schemars::JsonSchema`; `authkeys-schemas` publishes them under
//! `schemas/commands/`. Request schemas borrow the validated types' schemas (`with = "NodeKey"`),
//! so the published schema says what `parse` checks.
//!
//! Invariant: nothing here decides. Parsing validates shapes into the domain's types; the rules
//! stay in `authkeys-domain`. Mint pass through (an auth key in a registration, a new key's
//! text in a reply) but no `Debug` here prints one.

/// `Debug` for a type that carries secrets: prints the named fields, and each secret field as
/// `<redacted>` whatever it holds, so no log line or panic message can show one.
macro_rules! debug_redacting {
    ($ty:ident { $($field:ident),* } secrets { $($secret:ident),* }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    $(.field(stringify!($secret), &"<redacted>"))*
                    .finish_non_exhaustive()
            }
        }
    };
}

/// Declares an admin request (in `command` and `webhook`): `commandId`, `tailnet`, `actor` and the op's own fields.
macro_rules! admin_request {
    (
        $(#[doc = $doc:literal])*
        $name:ident { $($(#[$fattr:meta])* $field:ident : $ty:ty),* $(,)? }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            /// Idempotency key, unique within the tailnet: a retry with the same id gets the
            /// first answer and writes nothing.
            #[schemars(with = "CommandId")]
            pub command_id: String,
            /// The tailnet's id.
            #[schemars(with = "TailnetId")]
            pub tailnet: String,
            /// The acting user's id, as authenticated by the caller.
            #[schemars(with = "UserId")]
            pub actor: String,
            $($(#[$fattr])* pub $field: $ty,)*
        }
    };
}

pub mod access;
pub mod command;
pub mod error;
pub mod lock;
pub mod log;
pub mod nats;
pub mod object;
pub mod query;
pub mod status;
pub mod subject;
pub mod webhook;

pub use command::*;
pub use error::{
    ErrorBody, ErrorCode, ErrorReply, False, Reply, True, WireError, decode, reply_bytes,
};
pub use object::*;

/// The largest request payload a service reads.
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024;
/// The most tags one request may carry.
pub const TAGS_MAX: usize = 64;
/// The longest `os` a registrar may report.
pub const OS_BYTES_MAX: usize = 128;
/// What `expires` says of a device whose key expiry is disabled (Tailscale's zero time).
pub const NEVER_EXPIRES: &str = "0001-01-01T00:00:00Z";

/// Characters of randomness after an id's prefix (16 base62 ≈ 95 bits).
pub const ID_RANDOM_LEN: usize = 16;

/// `prefix` and [`ID_RANDOM_LEN`] random base62 characters, by rejection sampling (no bias):
/// the ids the command service mints and the request ids clients send.
pub fn random_id(prefix: char) -> Result<String, getrandom::Error> {
    const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(1 + ID_RANDOM_LEN);
    out.push(prefix);
    let mut buf = [0u8; 32];
    while out.len() < 1 + ID_RANDOM_LEN {
        getrandom::fill(&mut buf)?;
        for b in buf {
            // 248 = 4 × 62: bytes at or above it would bias the first characters.
            if b < 248 && out.len() < 1 + ID_RANDOM_LEN {
                out.push(char::from(BASE62[usize::from(b) % 62]));
            }
        }
    }
    Ok(out)
}
