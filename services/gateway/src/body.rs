//! Reading requests: JSON bodies and query strings, every refusal a 400 (413 for a body over the
//! limit) with `{"message"}` naming the field, instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON request body, decoded with [`authkeys_protocol::decode`] so that a bad field is
/// named (`capabilities.devices.create.tags[0]: …`).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                }
                _ => ApiError::bad_request(format!("request body: {}", e.body_text())),
            })?;
        decode_json(json, &bytes).map(JsonBody)
    }
}

/// An optional JSON body: empty is `T::default()` (e.g. `POST /device/{id}/expire`).
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), format!("request body: {}", e.body_text())))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        decode_json(json, &bytes).map(OptionalJsonBody)
    }
}

/// Decodes a body whose content type was (`json`) or was not JSON.
pub fn decode_json<T: DeserializeOwned>(json: bool, bytes: &[u8]) -> Result<T, ApiError> {
    if !json {
        return Err(ApiError::bad_request(
            "request body: Content-Type must be application/json",
        ));
    }
    authkeys_protocol::decode(bytes).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Whether the body is to be read as JSON: the content type is `application/json` (parameters
/// such as `charset` allowed), or there is none — the `tailscale` CLI's key minting
/// (`client/tailscale/keys.go` in tailscale/tailscale) POSTs its JSON without one, and
/// Tailscale reads it (SPEC §5 "Compatibility") — or it is the form type `curl -d` declares by
/// default for the JSON a user types. Any other declared type is refused.
pub fn is_json(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json")
                    || m.eq_ignore_ascii_case("application/x-www-form-urlencoded")
            }),
    }
}

/// The value of `name` in a query string (no percent-decoding: every parameter of this API is a
/// plain word); the last one wins.
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
        .next_back()
}

/// A boolean query parameter: absent is `false`; `true`/`false`/`1`/`0` otherwise.
pub fn query_bool(query: Option<&str>, name: &str) -> Result<bool, ApiError> {
    match query_param(query, name) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name}: must be true or false, not {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Body {
        authorized: bool,
    }

    #[test]
    fn content_type_must_be_json() {
        let mut h = HeaderMap::new();
        assert!(is_json(&h), "no Content-Type is read as JSON");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert!(
            is_json(&h),
            "curl -d's default type, with the JSON a user typed"
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
        let e = decode_json::<Body>(false, br#"{"authorized":true}"#).expect_err("not json");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("Content-Type"), "{}", e.message);
    }

    #[test]
    fn decode_names_the_field() {
        let b: Body = decode_json(true, br#"{"authorized":true}"#).expect("valid");
        assert!(b.authorized);
        for (body, field) in [
            (&br#"{"authorized":"yes"}"#[..], "authorized"),
            (br#"{}"#, "authorized: is required"),
            (br#"{"authorized":true,"x":1}"#, "x: is not a known field"),
            (b"nope", "request"),
        ] {
            let e = decode_json::<Body>(true, body).expect_err("bad");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.starts_with(field), "{} vs {field}", e.message);
        }
    }

    #[test]
    fn query_parameters() {
        assert_eq!(
            query_param(Some("all=true&fields=all"), "fields"),
            Some("all")
        );
        assert_eq!(query_param(Some("all"), "all"), Some(""));
        assert_eq!(query_param(None, "all"), None);
        assert!(query_bool(Some("all=true"), "all").expect("bool"));
        assert!(!query_bool(Some("x=1"), "all").expect("absent"));
        assert!(!query_bool(Some("all=false"), "all").expect("false"));
        assert_eq!(
            query_bool(Some("all=maybe"), "all")
                .expect_err("bad")
                .status,
            StatusCode::BAD_REQUEST
        );
    }
}
