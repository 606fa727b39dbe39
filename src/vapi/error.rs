//! Typed Vapi errors: every way a call can fail is kept apart, because each one means a different
//! thing to the controller (fix the spec, fix the key, wait, or try the next pass).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum VapiError {
    /// 400: the request was refused; Vapi's messages, whether it sent an array or a string.
    #[error("Vapi rejected the request (400): {}", messages.join("; "))]
    BadRequest { messages: Vec<String> },
    #[error("Vapi rejected the API key (401): {message}")]
    Unauthorized { message: String },
    #[error("Vapi refused access (403): {message}")]
    Forbidden { message: String },
    #[error("Vapi has no such assistant (404)")]
    NotFound,
    #[error("Vapi refused with a conflict (409 {error}): {message}")]
    Conflict { error: String, message: String },
    /// 413: the body is larger than Vapi accepts. Nothing was applied, and sending it again
    /// cannot succeed: neither retryable nor outcome-unknown.
    #[error("Vapi refused the request as too large (413): {message}")]
    PayloadTooLarge { message: String },
    #[error("Vapi rate limit exceeded (429){}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    #[error("Vapi server error ({status}): {message}")]
    Server { status: u16, message: String },
    #[error("unexpected answer from Vapi ({status}): {message}")]
    UnexpectedStatus { status: u16, message: String },
    #[error("Vapi did not answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("could not reach Vapi: {0}")]
    Transport(String),
    #[error("could not decode Vapi's answer: {0}")]
    Decode(String),
}

impl VapiError {
    /// A bounded label for metrics and status reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad_request",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::UnexpectedStatus { .. } => "unexpected_status",
            Self::Timeout(_) => "timeout",
            Self::Transport(_) => "transport",
            Self::Decode(_) => "decode",
        }
    }

    /// Whether a write that failed this way may nevertheless have been applied by Vapi.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            Self::Server { .. } | Self::Timeout(_) | Self::Transport(_) | Self::Decode(_)
        )
    }

    /// Builds the error for a non-success answer.
    pub(crate) fn from_response(
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let messages = parsed
            .as_ref()
            .map(messages_of)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| vec![snippet(body)]);
        let message = messages.join("; ");
        match status.as_u16() {
            400 => Self::BadRequest { messages },
            401 => Self::Unauthorized { message },
            403 => Self::Forbidden { message },
            404 => Self::NotFound,
            409 => Self::Conflict {
                error: parsed
                    .as_ref()
                    .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "conflict".to_owned()),
                message,
            },
            413 => Self::PayloadTooLarge { message },
            429 => Self::RateLimited { retry_after },
            s @ 500..=599 => Self::Server { status: s, message },
            s => Self::UnexpectedStatus { status: s, message },
        }
    }
}

/// Vapi's `message` is an array for validation errors and a string for business rules.
fn messages_of(body: &Value) -> Vec<String> {
    match body.get("message") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn snippet(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn parse_retry_after(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - now)
        .to_std()
        .ok()
        .or(Some(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_map_to_kinds_with_vapi_messages() {
        let cases: &[(u16, &str, &str, &str)] = &[
            (
                400,
                r#"{"message":["name must be shorter than or equal to 40 characters","property serverUrl should not exist"],"error":"Bad Request","statusCode":400}"#,
                "bad_request",
                "Vapi rejected the request (400): name must be shorter than or equal to 40 characters; property serverUrl should not exist",
            ),
            (
                400,
                r#"{"message":"The Kylie voice is part of a legacy voice set","error":"Bad Request","statusCode":400}"#,
                "bad_request",
                "Vapi rejected the request (400): The Kylie voice is part of a legacy voice set",
            ),
            (
                401,
                r#"{"message":"Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.","error":"Unauthorized","statusCode":401}"#,
                "unauthorized",
                "Vapi rejected the API key (401): Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.",
            ),
            (
                404,
                r#"{"message":"Not Found","error":"Not Found","statusCode":404}"#,
                "not_found",
                "Vapi has no such assistant (404)",
            ),
            (
                409,
                r#"{"error":"assistant_pinned","message":"pinned"}"#,
                "conflict",
                "Vapi refused with a conflict (409 assistant_pinned): pinned",
            ),
            (
                413,
                r#"{"message":"request entity too large","statusCode":413}"#,
                "payload_too_large",
                "Vapi refused the request as too large (413): request entity too large",
            ),
            (
                502,
                "<html>bad gateway</html>",
                "server_error",
                "Vapi server error (502): <html>bad gateway</html>",
            ),
            (
                418,
                "",
                "unexpected_status",
                "unexpected answer from Vapi (418): (empty body)",
            ),
        ];
        for (status, body, kind, display) in cases {
            let err = VapiError::from_response(
                StatusCode::from_u16(*status).expect("status"),
                None,
                body.as_bytes(),
            );
            assert_eq!(err.kind(), *kind, "{status}");
            if *status == 413 {
                assert!(!err.outcome_unknown(), "a refused body created nothing");
            }
            assert_eq!(err.to_string(), *display, "{status}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
            .expect("date")
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sat, 21 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sat, 21 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
