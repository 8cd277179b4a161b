//! Request bodies read whole: bounded, JSON media types, and parsed once with the gateway's
//! JSON reader. Shared by the exchange path, `/validate`, the admin routes and the certificate
//! issuer's answers.

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use crate::problem::ExchangeError;
use xgate_core::json::JsonError;

/// Reads a JSON request body: `application/json` or `application/*+json` (415 otherwise), at
/// most `limit` bytes (413), refused early when `Content-Length` already says it is too large.
pub(crate) async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ExchangeError> {
    if !is_json_media_type(headers) {
        return Err(ExchangeError::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    read_bounded(headers, body, limit).await
}

/// Reads a whole body of at most `limit` bytes.
pub(crate) async fn read_bounded(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ExchangeError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ExchangeError::PayloadTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ExchangeError::PayloadTooLarge { limit })
        }
        // The caller's framing broke (a malformed chunk, a connection closed short of its
        // length): no JSON was sent at all.
        Err(_) => Err(ExchangeError::MalformedRequest),
    }
}

/// Whether `Content-Type` is `application/json` or `application/<x>+json`, with no charset
/// other than UTF-8.
pub(crate) fn is_json_media_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    let utf8 = parts.all(|parameter| match parameter.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    json && utf8
}

/// Parses a JSON body with the gateway's reader ([`xgate_core::json`]: UTF-8, nesting bounded by
/// serde_json's recursion limit of 128, numbers kept exactly, duplicate keys refused).
pub fn parse_json(bytes: &[u8]) -> Result<Value, ExchangeError> {
    xgate_core::json::parse(bytes).map_err(|error| match error {
        JsonError::Syntax(error) => ExchangeError::MalformedJson {
            reason: error.to_string(),
        },
        JsonError::DuplicateKey { pointer } => ExchangeError::DuplicateKey { pointer },
    })
}
