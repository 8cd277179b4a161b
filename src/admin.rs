//! The admin plane (`[gateway] admin_listen`): a separate listener for auditors and admins.
//! Bind it to an internal address.
//!
//! Routes:
//! - GET `/healthz`: liveness. GET `/readyz`: readiness.
//! - GET `/admin/schemas`: every schema with its versions, latest and compatibility mode
//!   (roles admin, auditor).
//! - POST `/admin/translate/{department}/{schema}?direction=to-shared|from-shared`: dry-run a
//!   department's format on the body (role admin): 200 with the translated record, or the 422
//!   translation problem.
//!
//! Every other `/admin/...` and `/audit/...` route is refused by role first ([`require_role`]):
//! no credentials → 401, a department without the role → 403, then 404 for an unknown route.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::body::Body as RequestBody;
use axum::extract::State;
use axum::extract::{Path, Query};
use axum::routing::{get, post};
use http::{HeaderMap, Response, StatusCode};
use serde::Serialize;

use crate::config::Department;
use crate::data_plane::{Caller, healthz, readyz};
use crate::domain::Role;
use crate::exchange::{identify_department, parse_json, read_json_body};
use crate::gateway::Gateway;
use crate::problem::{ExchangeError, TranslationFault};
use crate::snapshot::Snapshot;
use crate::translate::Direction;

/// The roles that may read the registry and the audit trail.
pub const READERS: &[Role] = &[Role::Admin, Role::Auditor];
/// The roles that may change things.
pub const WRITERS: &[Role] = &[Role::Admin];

/// The admin plane's routes.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/admin/schemas", get(list_schemas))
        .route("/admin/translate/{department}/{schema}", post(translate))
        .fallback(fallback)
        .method_not_allowed_fallback(crate::data_plane::method_not_allowed)
        .with_state(gateway)
}

/// Identifies the caller and checks its department's role: 401 without valid credentials, 403
/// when the role is not among `allowed`.
pub fn require_role<'s>(
    snapshot: &'s Snapshot,
    headers: &HeaderMap,
    allowed: &[Role],
) -> Result<&'s Department, ExchangeError> {
    let department = identify_department(snapshot, headers)?;
    if allowed.contains(&department.role) {
        Ok(department)
    } else {
        Err(ExchangeError::Forbidden)
    }
}

/// Unknown routes: under `/admin` and `/audit` the role is checked first, so a department
/// learns nothing about which admin routes exist.
async fn fallback(
    State(gateway): State<Arc<Gateway>>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    let path = uri.path();
    let guarded = ["/admin", "/audit"].iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if guarded {
        let snapshot = gateway.snapshot();
        if let Err(error) = require_role(&snapshot, &headers, READERS) {
            return caller.problem(&error);
        }
    }
    caller.problem(&ExchangeError::NotFound)
}

#[derive(Serialize)]
struct SchemaSummary {
    name: String,
    versions: Vec<u32>,
    latest: Option<u32>,
    compatibility: &'static str,
}

/// GET `/admin/schemas`.
async fn list_schemas(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    let snapshot = gateway.snapshot();
    if let Err(error) = require_role(&snapshot, &headers, READERS) {
        return caller.problem(&error);
    }
    let schemas: Vec<SchemaSummary> = snapshot
        .registry
        .schemas()
        .map(|(name, entry)| SchemaSummary {
            name: name.to_string(),
            versions: entry.versions.keys().map(|v| v.get()).collect(),
            latest: entry.versions.keys().next_back().map(|v| v.get()),
            compatibility: entry.compatibility.as_str(),
        })
        .collect();
    caller.json(StatusCode::OK, &serde_json::json!({ "schemas": schemas }))
}

#[derive(serde::Deserialize)]
struct TranslateQuery {
    direction: Option<String>,
}

/// POST `/admin/translate/{department}/{schema}?direction=...`: what a department's format makes
/// of a record, without sending anything.
async fn translate(
    State(gateway): State<Arc<Gateway>>,
    Path((department, schema)): Path<(String, String)>,
    query: Result<Query<TranslateQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: RequestBody,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    let snapshot = gateway.snapshot();
    if let Err(error) = require_role(&snapshot, &headers, WRITERS) {
        return caller.problem(&error);
    }
    let direction = match query
        .ok()
        .and_then(|Query(query)| query.direction)
        .as_deref()
    {
        Some("to-shared") => Direction::ToShared,
        Some("from-shared") => Direction::FromShared,
        _ => {
            return caller.problem(&ExchangeError::InvalidParameter { name: "direction" });
        }
    };
    let Some(department) = snapshot.department(&department) else {
        return caller.problem(&ExchangeError::NotFound);
    };
    let Some(schema) = snapshot.registry.get(&schema, None) else {
        return caller.problem(&ExchangeError::NotFound);
    };
    let Some(format) = department.formats.get(&schema.name) else {
        return caller.problem(&ExchangeError::NotFound);
    };
    let limit = snapshot.config.gateway.max_body_bytes;
    let record = match read_json_body(&headers, body, limit)
        .await
        .and_then(|bytes| parse_json(&bytes))
    {
        Ok(record) => record,
        Err(error) => return caller.problem(&error),
    };
    match format.translate(&record, direction) {
        Ok(translated) => caller.json(StatusCode::OK, &translated),
        Err(errors) => caller.problem(&ExchangeError::Translation {
            schema: schema.label(),
            department: department.id.to_string(),
            direction,
            fault: TranslationFault::Caller,
            violations: errors
                .iter()
                .map(|error| error.to_violation(caller.lang))
                .collect(),
        }),
    }
}
