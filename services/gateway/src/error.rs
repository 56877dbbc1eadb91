//! The one error shape of the API: `{"message": "…"}` with the HTTP status of the refusal, and
//! `Retry-After` when the caller should come back (503, 429).

use authkeys_protocol::{ErrorBody, ErrorCode};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Seconds a client is told to wait before retrying an `unavailable` or `rate_limited` answer.
pub const RETRY_AFTER_SECS: u32 = 1;

/// A refused request, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for people.
    pub message: String,
    /// `Retry-After` seconds, for statuses that invite a retry.
    pub retry_after_secs: Option<u32>,
}

impl ApiError {
    /// An error with `status` and `message`; 429 and 503 carry `Retry-After`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let retry_after_secs = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        )
        .then_some(RETRY_AFTER_SECS);
        Self {
            status,
            message: message.into(),
            retry_after_secs,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401, with one message for every failure so that nothing tells a guesser which part
    /// was wrong.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid or missing API token")
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 500; the cause is logged here, once, and not shown to the client.
    pub fn internal(what: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {what}"),
        )
    }

    /// The HTTP answer of a NATS refusal `{code, message}`.
    pub fn from_reply(body: ErrorBody) -> Self {
        match body.code {
            ErrorCode::Internal => Self::internal("a service answered internal", body.message),
            code => Self::new(status_of(code), body.message),
        }
    }
}

/// The HTTP status of a NATS error code (SPEC §5; the table in `command`'s docs).
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        // Registrations only; an API caller never sees it, but if a service said it, the
        // credential presented was not accepted.
        ErrorCode::InvalidKey => StatusCode::UNAUTHORIZED,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        // Timers only; the gateway never sends a timer command.
        ErrorCode::Conflict | ErrorCode::NotDue => StatusCode::CONFLICT,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        // Log reads only: an event larger than a reply may carry.
        ErrorCode::Internal | ErrorCode::TooLarge => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"message": message}` as bytes.
pub fn message_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "message": message }))
        .unwrap_or_else(|_| br#"{"message":"error"}"#.to_vec())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            message_body(&self.message),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_its_status() {
        let cases = [
            (ErrorCode::BadRequest, 400),
            (ErrorCode::InvalidKey, 401),
            (ErrorCode::Forbidden, 403),
            (ErrorCode::NotFound, 404),
            (ErrorCode::Conflict, 409),
            (ErrorCode::RateLimited, 429),
            (ErrorCode::Internal, 500),
            (ErrorCode::Unavailable, 503),
        ];
        for (code, status) in cases {
            assert_eq!(status_of(code).as_u16(), status, "{code}");
        }
    }

    #[test]
    fn unavailable_carries_retry_after_and_message_only() {
        let e = ApiError::from_reply(ErrorBody {
            code: ErrorCode::Unavailable,
            message: "view behind".into(),
        });
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let nf = ApiError::not_found("x").into_response();
        assert!(nf.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(
            message_body("a \"b\""),
            br#"{"message":"a \"b\""}"#.to_vec()
        );
    }

    #[test]
    fn internal_hides_the_cause() {
        let e = ApiError::from_reply(ErrorBody {
            code: ErrorCode::Internal,
            message: "redb exploded at /secret/path".into(),
        });
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("secret"));
    }
}
