//! The auditor routes (roles admin and auditor): GET `/audit/exchanges`, GET `/audit/summary`,
//! GET `/audit/verify`. Queries run on their own read connections on the blocking pool.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use http::{HeaderMap, Response, StatusCode, Uri};

use super::{READERS, require_role};
use crate::audit::query::BadParameter;
use crate::audit::{AuditError, EntryFilter, TimeWindow};
use crate::data_plane::Caller;
use crate::gateway::Gateway;
use crate::problem::ExchangeError;

/// A failed audit query is the gateway's fault; its cause goes to the log, never the caller.
fn internal(error: &AuditError) -> ExchangeError {
    tracing::error!(%error, "an audit query failed");
    ExchangeError::Internal
}

fn bad_parameter(BadParameter(name): BadParameter) -> ExchangeError {
    ExchangeError::InvalidParameter { name }
}

/// GET `/audit/exchanges?consumer=&provider=&service=&outcome=&kind=&since=&until=&limit=&after=`:
/// `{"entries": [...], "next": n or null}`, newest first; pass `next` as `after` for the next
/// page.
pub async fn exchanges(
    State(gateway): State<Arc<Gateway>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    if let Err(error) = require_role(&gateway.snapshot(), &headers, READERS) {
        return caller.problem(&error);
    }
    let filter = match EntryFilter::parse(uri.query()) {
        Ok(filter) => filter,
        Err(bad) => return caller.problem(&bad_parameter(bad)),
    };
    match gateway.audit.entries(filter).await {
        Ok(page) => caller.json(StatusCode::OK, &page),
        Err(error) => caller.problem(&internal(&error)),
    }
}

/// GET `/audit/summary?since=&until=`: the exchange matrix over the window.
pub async fn summary(
    State(gateway): State<Arc<Gateway>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    if let Err(error) = require_role(&gateway.snapshot(), &headers, READERS) {
        return caller.problem(&error);
    }
    let window = match TimeWindow::parse(uri.query()) {
        Ok(window) => window,
        Err(bad) => return caller.problem(&bad_parameter(bad)),
    };
    match gateway.audit.summary(window).await {
        Ok(summary) => caller.json(StatusCode::OK, &summary),
        Err(error) => caller.problem(&internal(&error)),
    }
}

/// GET `/audit/verify`: `{"ok", "count", "head", "broken": {"sequence", "reason"} or null}`,
/// 200 whether or not the chain holds (the answer is the report).
pub async fn verify(
    State(gateway): State<Arc<Gateway>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    if let Err(error) = require_role(&gateway.snapshot(), &headers, READERS) {
        return caller.problem(&error);
    }
    if uri.query().is_some_and(|query| !query.is_empty()) {
        return caller.problem(&ExchangeError::InvalidParameter { name: "query" });
    }
    match gateway.audit.verify().await {
        Ok(verification) => caller.json(StatusCode::OK, &verification),
        Err(error) => caller.problem(&internal(&error)),
    }
}
