//! The admin plane (`[gateway] admin_listen`): a separate listener for auditors and admins.
//! Bind it to an internal address.
//!
//! Routes:
//! - GET `/healthz`: liveness. GET `/readyz`: readiness.
//! - GET `/admin/schemas`: every schema with its versions, latest and compatibility mode
//!   (roles admin, auditor).
//!
//! Every other `/admin/...` and `/audit/...` route is refused by role first ([`require_role`]):
//! no credentials → 401, a department without the role → 403, then 404 for an unknown route.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use http::{HeaderMap, Response, StatusCode};
use serde::Serialize;

use crate::config::Department;
use crate::data_plane::{Caller, healthz, readyz};
use crate::domain::Role;
use crate::exchange::identify_department;
use crate::gateway::Gateway;
use crate::problem::ExchangeError;
use crate::snapshot::Snapshot;

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
