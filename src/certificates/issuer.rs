//! Certificate issuers: each type's lookup URL taken apart once at load, and the one call that
//! asks an issuer for a certificate (the I/O edge of lookups), with its answer checked against
//! the type's schema before anything is cached.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use super::cache::{Answer, SharedRecord};
use super::issuers::Issuer;
use crate::admission::{CallerPresence, InFlightPermit};
use crate::body::{is_json_media_type, parse_json};
use crate::gateway::Gateway;
use crate::metrics::IssuerStatus;
use crate::problem::{ExchangeError, TranslationFault};
use crate::snapshot::Snapshot;
use crate::upstream::{UpstreamBodyError, UpstreamError};
use xgate_core::translate::Direction;

/// How much of an issuer's non-200 answer is read (so its connection can be reused).
const DISCARDED_BODY_BYTES: usize = 64 * 1024;

/// What an issuer call needs besides the issuer and the id (owned: the call runs in a task of
/// its own, shared by every lookup it answers).
pub(crate) struct FetchContext {
    /// The upstream client and the metrics.
    pub gateway: Arc<Gateway>,
    /// The configuration and schemas in force when the fetch started.
    pub snapshot: Arc<Snapshot>,
    /// The request id of the lookup that started the call.
    pub request_id: String,
    /// The starting lookup's room under the in-flight bounds, held until the fetch ends: a
    /// fetch runs on when its caller hangs up, and remains that caller's work in flight.
    pub _in_flight: Arc<InFlightPermit>,
    /// The exchange id of the lookup that started the call (`Xgate-Exchange-Id`: the issuer
    /// can match its call to that lookup's audit entry).
    pub exchange_id: String,
}

/// Asks the issuer for `id`: 200 → the certificate, checked against the type's schema and in
/// the shared layout; 404 → not found; anything else, a timeout or a broken connection → the
/// error the caller gets when no stale entry stands in. Counted in
/// `xgate_certificate_issuer_requests_total`.
pub async fn fetch(
    context: FetchContext,
    issuer: Arc<Issuer>,
    id: Arc<str>,
) -> Result<Answer, ExchangeError> {
    let call = call(&context, &issuer, &id);
    let timeout = context.snapshot.config.gateway.upstream_timeout;
    let (status, result) = match tokio::time::timeout(timeout, call).await {
        Ok(outcome) => outcome,
        Err(_) => (IssuerStatus::Timeout, Err(ExchangeError::UpstreamTimeout)),
    };
    let certificate_type = issuer.settings.certificate_type.as_str();
    context
        .gateway
        .metrics
        .certificate_issuer_request(certificate_type, status);
    match result? {
        None => Ok(Answer::NotFound),
        Some(body) => shared_record(&context, &issuer, &body).map(|record| {
            Answer::Found(Arc::new(SharedRecord {
                // Serializing a value that was just parsed cannot fail.
                bytes: Bytes::from(serde_json::to_vec(&record).unwrap_or_default()),
                value: record,
            }))
        }),
    }
}

/// The HTTP exchange with the issuer: `Some(body)` for a 200, `None` for a 404.
async fn call(
    context: &FetchContext,
    issuer: &Issuer,
    id: &str,
) -> (IssuerStatus, Result<Option<Bytes>, ExchangeError>) {
    let certificate_type = issuer.settings.certificate_type.as_str();
    let Ok(target) = issuer.target(id) else {
        // The id passed its format check, so it encodes to a valid target.
        tracing::error!(
            certificate_type,
            "a checked certificate id made no valid target"
        );
        return (IssuerStatus::Error, Err(ExchangeError::Internal));
    };
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = target;
    let headers = request.headers_mut();
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    if let Ok(value) = HeaderValue::from_str(&context.request_id) {
        headers.insert(crate::headers::X_REQUEST_ID, value);
    }
    crate::headers::tag_exchange_id(headers, &context.exchange_id);
    let response = match context
        .gateway
        .upstream
        // Shared by every lookup waiting for this certificate: no one caller can cancel it.
        .send(&issuer.lane, request, &CallerPresence::unwatched())
        .await
    {
        Ok(response) => response,
        Err(UpstreamError::ConnectTimeout) => {
            return (IssuerStatus::Timeout, Err(ExchangeError::UpstreamTimeout));
        }
        Err(error) => {
            tracing::warn!(certificate_type, %error, "certificate issuer call failed");
            return (IssuerStatus::Error, Err(ExchangeError::UpstreamUnavailable));
        }
    };
    let status = IssuerStatus::of(response.status());
    let (parts, body) = response.into_parts();
    if parts.status != StatusCode::OK {
        // Read a little so the connection can go back to the pool; the content is not used.
        Limited::new(body, DISCARDED_BODY_BYTES)
            .collect()
            .await
            .ok();
        if parts.status == StatusCode::NOT_FOUND {
            return (status, Ok(None));
        }
        tracing::warn!(
            certificate_type,
            status = parts.status.as_u16(),
            "certificate issuer answered neither 200 nor 404"
        );
        return (status, Err(ExchangeError::UpstreamUnavailable));
    }
    let invalid = || ExchangeError::UpstreamInvalidResponse {
        schema: issuer.settings.schema.to_string(),
        violation_count: 0,
    };
    if !is_json_media_type(&parts.headers) {
        return (status, Err(invalid()));
    }
    let limit = context.snapshot.config.gateway.max_body_bytes;
    let read = match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(Some(collected.to_bytes())),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(invalid()),
        Err(error) => match error.downcast_ref::<UpstreamBodyError>() {
            Some(UpstreamBodyError::ReadTimeout) => Err(ExchangeError::UpstreamTimeout),
            _ => Err(ExchangeError::UpstreamUnavailable),
        },
    };
    (status, read)
}

/// The issuer's 200 body as a shared record: JSON, through the issuer's format when it has one
/// for the schema, valid against the type's schema (pure).
fn shared_record(
    context: &FetchContext,
    issuer: &Issuer,
    body: &[u8],
) -> Result<serde_json::Value, ExchangeError> {
    let certificate_type = issuer.settings.certificate_type.as_str();
    let schema = context
        .snapshot
        .registry
        .resolve(&issuer.settings.schema)
        .map_err(|reason| {
            tracing::error!(certificate_type, %reason, "a checked certificate schema did not resolve");
            ExchangeError::Internal
        })?;
    let invalid = |violation_count| ExchangeError::UpstreamInvalidResponse {
        schema: schema.label(),
        violation_count,
    };
    let record = parse_json(body).map_err(|_| invalid(0))?;
    let format = context
        .snapshot
        .department(issuer.settings.issuer.as_str())
        .and_then(|department| department.formats.get(&schema.name));
    let record = match format {
        None => record,
        Some(format) => format
            .translate(&record, Direction::ToShared)
            .map_err(|errors| ExchangeError::Translation {
                schema: schema.label(),
                department: issuer.settings.issuer.to_string(),
                direction: Direction::ToShared,
                fault: TranslationFault::Upstream,
                // Counted in the detail, never shown: they hold the issuer's values.
                violations: errors
                    .iter()
                    .map(|error| error.to_violation(xgate_core::i18n::Lang::En))
                    .collect(),
            })
            .inspect_err(|_| {
                tracing::warn!(
                    certificate_type,
                    "certificate issuer answer does not translate"
                )
            })?,
    };
    let violations = schema.validate(&record, xgate_core::i18n::Lang::En);
    if !violations.is_empty() {
        tracing::warn!(
            certificate_type,
            schema = %schema.label(),
            violations = violations.len(),
            "certificate issuer answer does not match its schema; not cached"
        );
        return Err(invalid(violations.len()));
    }
    Ok(record)
}
