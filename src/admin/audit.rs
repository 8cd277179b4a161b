//! The auditor routes (roles admin and auditor): GET `/audit/exchanges`, GET `/audit/summary`,
//! GET `/audit/verify`, GET `/audit/subjects/{kind}/{id}`. Queries run on their own read connections on the blocking pool.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use http::{HeaderMap, Response, StatusCode, Uri};
use serde::Serialize;

use super::{READERS, require_role};
use crate::caller::Caller;
use crate::gateway::Gateway;
use crate::problem::ExchangeError;
use xgate_audit::query::BadParameter;
use xgate_audit::{AuditError, EntryFilter, SubjectPage, TimeWindow};
use xgate_core::domain::SubjectKind;

/// The caller, and its parameters once the role is checked (first, so a department learns
/// nothing else) and the parameters parsed.
fn admit<P>(
    gateway: &Gateway,
    headers: &HeaderMap,
    parameters: Result<P, BadParameter>,
) -> (Caller, Result<P, ExchangeError>) {
    let caller = Caller::from_headers(headers);
    let admitted = require_role(&gateway.snapshot(), headers, READERS).and_then(|_| {
        parameters.map_err(|BadParameter(name)| ExchangeError::InvalidParameter { name })
    });
    (caller, admitted)
}

/// The answer, or 500 `internal` when the query failed; the cause goes to the log, never the
/// caller.
fn reply(caller: &Caller, answer: Result<impl Serialize, AuditError>) -> Response<Body> {
    match answer {
        Ok(answer) => caller.json(StatusCode::OK, &answer),
        Err(error) => {
            tracing::error!(%error, "an audit query failed");
            caller.problem(&ExchangeError::Internal)
        }
    }
}

/// GET `/audit/exchanges?consumer=&provider=&service=&outcome=&kind=&since=&until=&limit=&after=`:
/// `{"entries": [...], "next": n or null}`, newest first; pass `next` as `after` for the next
/// page.
pub async fn exchanges(
    State(gateway): State<Arc<Gateway>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let (caller, admitted) = admit(&gateway, &headers, EntryFilter::parse(uri.query()));
    match admitted {
        Ok(filter) => reply(&caller, gateway.audit.entries(filter).await),
        Err(error) => caller.problem(&error),
    }
}

/// GET `/audit/summary?since=&until=`: the exchange matrix, the outcomes over time, the
/// certificate lookups and the most frequent failures over the window (see
/// [`xgate_audit::Summary`]).
pub async fn summary(
    State(gateway): State<Arc<Gateway>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let (caller, admitted) = admit(&gateway, &headers, TimeWindow::parse(uri.query()));
    match admitted {
        Ok(window) => reply(&caller, gateway.audit.summary(window).await),
        Err(error) => caller.problem(&error),
    }
}

/// GET `/audit/verify`: `{"ok", "count", "head", "broken": {"sequence", "reason"} or null}`,
/// 200 whether or not the chain holds (the answer is the report). It takes no parameters.
pub async fn verify(
    State(gateway): State<Arc<Gateway>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let parameters = match uri.query() {
        Some(query) if !query.is_empty() => Err(BadParameter("query")),
        _ => Ok(()),
    };
    let (caller, admitted) = admit(&gateway, &headers, parameters);
    match admitted {
        Ok(()) => reply(&caller, gateway.audit.verify().await),
        Err(error) => caller.problem(&error),
    }
}

/// GET `/audit/subjects/{kind}/{id}?limit=&after=` (SPEC §15): every exchange and certificate
/// lookup that concerned this person or organisation, newest first, keyset-paged like
/// `/audit/exchanges` (`{"entries": [...], "next": n or null}`), answered from the subject
/// index. The id is checked against its kind's format (`resident` → `cn-resident-id`,
/// `organisation` → `cn-uscc`; 422 otherwise) and then only its keyed digest is used: the id
/// is never logged or kept.
pub async fn subject(
    State(gateway): State<Arc<Gateway>>,
    path: Result<Path<(String, String)>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let (caller, admitted) = admit(&gateway, &headers, SubjectPage::parse(uri.query()));
    let page = match admitted {
        Ok(page) => page,
        Err(error) => return caller.problem(&error),
    };
    let Ok(Path((kind, id))) = path else {
        return caller.problem(&ExchangeError::InvalidParameter { name: "id" });
    };
    let Ok(kind) = SubjectKind::parse(&kind) else {
        return caller.problem(&ExchangeError::InvalidParameter { name: "kind" });
    };
    if !xgate_core::subject::accepts(&kind, &id) {
        return caller.problem(&ExchangeError::InvalidSubjectId {
            id_format: xgate_core::subject::id_format(&kind),
            kind: kind.to_string(),
        });
    }
    reply(
        &caller,
        gateway.audit.subject(kind.as_str(), &id, page).await,
    )
}
