//! The targets, by the crate whose decoder they drive.

use std::borrow::Cow;
use std::fmt::Debug;

use authkeys_protocol::{PAYLOAD_BYTES_MAX, decode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Reached, Target};

pub mod commands;
pub mod envelope;
pub mod gateway;
pub mod ids;
pub mod log;
pub mod queries;
pub mod replies;
pub mod secret;
pub mod webhook;

/// Every target, in report order.
pub fn all() -> Vec<Target> {
    [
        commands::targets(),
        queries::targets(),
        replies::targets(),
        log::targets(),
        envelope::targets(),
        secret::targets(),
        ids::targets(),
        gateway::targets(),
        webhook::targets(),
    ]
    .concat()
}

/// The input as text, as a service that reads a `String` would see it.
pub(crate) fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The first byte (a selector) and the rest.
pub(crate) fn split_selector(bytes: &[u8]) -> (u8, &[u8]) {
    match bytes.split_first() {
        Some((s, rest)) => (*s, rest),
        None => (0, bytes),
    }
}

/// A request DTO that [`decode`] accepted serializes, and what it serializes to decodes to the
/// same value (the two ends of a subject share the type).
pub(crate) fn request_round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = serde_json::to_vec(value).expect("a decoded request serializes");
    if bytes.len() <= PAYLOAD_BYTES_MAX {
        let back: T = decode(&bytes).expect("a re-encoded request decodes");
        assert_eq!(&back, value, "a request changed through encode and decode");
    }
}

/// Decodes a request DTO (`Refused` if [`decode`] refuses it), checks its round trip, and hands
/// it to `then`.
pub(crate) fn decoded_request<T>(bytes: &[u8], then: impl FnOnce(T) -> Reached) -> Reached
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(dto) = decode::<T>(bytes) else {
        return Reached::Refused;
    };
    request_round_trip(&dto);
    then(dto)
}

/// A decoded request DTO (see [`decoded_request`]) that `parse` validates (`Decoded` if it
/// refuses a field); `check` asserts the invariants of the parsed value.
pub(crate) fn parsed_request<T, P, E>(
    bytes: &[u8],
    parse: impl FnOnce(&T) -> Result<P, E>,
    check: impl FnOnce(&T, P),
) -> Reached
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    decoded_request(bytes, |dto: T| {
        let Ok(p) = parse(&dto) else {
            return Reached::Decoded;
        };
        check(&dto, p);
        Reached::Accepted
    })
}

/// A reply or answer that decoded serializes, and decodes back to the same value.
pub(crate) fn reply_round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = serde_json::to_vec(value).expect("a decoded reply serializes");
    let back: T = serde_json::from_slice(&bytes).expect("a re-encoded reply decodes");
    assert_eq!(&back, value, "a reply changed through encode and decode");
}
