//! The admin plane (`[gateway] admin_listen`): a separate listener for auditors and admins.
//! Bind it to an internal address.
//!
//! Routes:
//! - GET `/healthz`: liveness. GET `/readyz`: readiness.
//! - GET `/metrics`: the Prometheus text exposition ([`crate::metrics`]), for anyone who can
//!   reach the listener.
//! - The certificate cache ([`certificates`]): DELETE `/admin/certificates/{type}` and
//!   DELETE `/admin/certificates/{type}/{id}` (admin), 204.
//! - The schema registry ([`schemas`]): GET `/admin/schemas` (admin, auditor),
//!   GET `/admin/schemas/{name}/versions/{N|latest}` (admin, auditor),
//!   POST `/admin/schemas/{name}/versions`, POST `/admin/schemas/{name}/compatibility`,
//!   PUT `/admin/schemas/{name}/config`, DELETE `/admin/schemas/{name}/versions/{N}` (admin).
//! - POST `/admin/translate/{department}/{schema}?direction=to-shared|from-shared`: dry-run a
//!   department's format on the body (role admin): 200 with the translated record, or the 422
//!   translation problem.
//! - POST `/admin/reload` (role admin): re-read the configuration, the schemas and the TLS
//!   certificates and keys; 200 `{"reloaded": true}`, or 422 `invalid-config` with every problem
//!   (the running configuration stays). SIGHUP does the same.
//! - The audit trail ([`audit`], admin, auditor): GET `/audit/exchanges` (filters and keyset
//!   paging), GET `/audit/summary` (the exchange matrix, outcomes over time, certificate lookups
//!   and top failures over a window), GET `/audit/verify`, GET `/audit/subjects/{kind}/{id}`
//!   (every call that concerned a person or organisation, from the subject index)
//!   (the hash chain).
//! - GET `/dashboard` ([`dashboard`]): the auditors' page, for anyone who can reach the listener
//!   (it holds no data; it asks for an auditor or admin token and calls the `/audit` routes).
//!
//! Every other `/admin/...` and `/audit/...` route, and a listed one asked with another method, is
//! refused by role first ([`require_role`]): no credentials → 401, a department without the role
//! → 403, then 404 for an unknown route or 405 for the wrong method.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::body::Body as RequestBody;
use axum::extract::{FromRef, Path, Query, State};
use axum::routing::{delete, get, post, put};
use http::{HeaderMap, Response, StatusCode};

use crate::body::{parse_json, read_json_body};
use crate::caller::Caller;
use crate::config::{self, Department};
use crate::data_plane::{healthz, readyz};
use crate::gateway::Gateway;
use crate::identity::identify_department;
use crate::problem::{ExchangeError, TranslationFault};
use crate::snapshot::Snapshot;
use xgate_core::domain::Role;
use xgate_core::registry::Violation;
use xgate_core::translate::Direction;

/// The roles that may read the registry and the audit trail.
pub(crate) const READERS: &[Role] = &[Role::Admin, Role::Auditor];
/// The roles that may change things.
pub(crate) const WRITERS: &[Role] = &[Role::Admin];

pub mod audit;
pub mod certificates;
pub mod dashboard;
pub mod schemas;

/// What admin handlers share: the gateway, and the registry's one writer.
#[derive(Clone)]
pub(crate) struct AdminState {
    /// The shared gateway state.
    pub gateway: Arc<Gateway>,
    /// Serializes registry changes and owns the schema files.
    pub writer: Arc<schemas::SchemaWriter>,
}

impl FromRef<AdminState> for Arc<Gateway> {
    fn from_ref(state: &AdminState) -> Arc<Gateway> {
        state.gateway.clone()
    }
}

/// The admin plane's routes. Build it once per gateway: it holds the registry's one writer.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let writer = Arc::new(schemas::SchemaWriter::new(
        &gateway.snapshot().config,
        gateway.store(),
        gateway.changes.clone(),
    ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/schemas", get(schemas::list))
        .route("/admin/schemas/{name}/versions", post(schemas::register))
        .route(
            "/admin/schemas/{name}/versions/{version}",
            get(schemas::get_version).delete(schemas::delete_version),
        )
        .route(
            "/admin/schemas/{name}/compatibility",
            post(schemas::dry_run),
        )
        .route("/admin/schemas/{name}/config", put(schemas::set_config))
        .route("/admin/translate/{department}/{schema}", post(translate))
        .route("/admin/reload", post(reload))
        .route("/audit/exchanges", get(audit::exchanges))
        .route("/audit/summary", get(audit::summary))
        .route("/audit/verify", get(audit::verify))
        .route("/audit/subjects/{kind}/{id}", get(audit::subject))
        .route("/dashboard", get(dashboard::dashboard))
        .route(
            "/admin/certificates/{type}",
            delete(certificates::flush_type),
        )
        .route(
            "/admin/certificates/{type}/{id}",
            delete(certificates::flush_one),
        )
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(AdminState { gateway, writer })
}

/// Identifies the caller and checks its department's role: 401 without valid credentials, 403
/// when the role is not among `allowed`.
pub(crate) fn require_role<'s>(
    snapshot: &'s Snapshot,
    headers: &HeaderMap,
    allowed: &[Role],
) -> Result<&'s Department, ExchangeError> {
    // The admin plane is plain HTTP: bearer tokens only.
    let department = identify_department(snapshot, headers, None)?;
    if allowed.contains(&department.role) {
        Ok(department)
    } else {
        Err(ExchangeError::Forbidden)
    }
}

/// Whether a path is under `/admin` or `/audit`, where the role is checked before anything.
fn is_guarded(path: &str) -> bool {
    ["/admin", "/audit"].iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Unknown routes: under `/admin` and `/audit` the role is checked first, so a department
/// learns nothing about which admin routes exist.
async fn fallback(
    State(gateway): State<Arc<Gateway>>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    if is_guarded(uri.path()) {
        let snapshot = gateway.snapshot();
        if let Err(error) = require_role(&snapshot, &headers, READERS) {
            return caller.problem(&error);
        }
    }
    caller.problem(&ExchangeError::NotFound)
}

/// A listed route with another method: under `/admin` and `/audit` the role is checked first
/// too, so a 405 does not tell a department that a route exists.
async fn method_not_allowed(
    State(gateway): State<Arc<Gateway>>,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response<Body> {
    if is_guarded(uri.path())
        && let Err(error) = require_role(&gateway.snapshot(), &headers, READERS)
    {
        return Caller::from_headers(&headers).problem(&error);
    }
    crate::data_plane::method_not_allowed(headers).await
}

/// GET `/metrics`: the Prometheus text exposition; gauges read at scrape time are set first
/// (the cache's pending maintenance runs so its entry count is exact).
async fn metrics(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response<Body> {
    gateway.certificates.run_pending_tasks().await;
    gateway
        .metrics
        .set_certificate_cache_entries(gateway.certificates.entry_count());
    match gateway.metrics.render() {
        Ok(text) => {
            let mut response = Response::new(Body::from(text));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(crate::metrics::TEXT_FORMAT),
            );
            response
        }
        Err(error) => {
            tracing::error!(%error, "metrics could not be encoded");
            Caller::from_headers(&headers).problem(&ExchangeError::Internal)
        }
    }
}

#[derive(serde::Deserialize)]
struct TranslateQuery {
    direction: Option<String>,
}

/// POST `/admin/reload`: [`Gateway::reload`], in a task of its own so a caller hanging up
/// cannot stop it half-way.
async fn reload(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    if let Err(error) = require_role(&gateway.snapshot(), &headers, WRITERS) {
        return caller.problem(&error);
    }
    let base = gateway
        .snapshot()
        .config
        .path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let reloading = tokio::spawn({
        let gateway = gateway.clone();
        async move { gateway.reload().await }
    });
    match reloading.await {
        Ok(Ok(())) => caller.json(StatusCode::OK, &serde_json::json!({ "reloaded": true })),
        Ok(Err(problems)) => {
            tracing::warn!(%problems, "reload refused; the running configuration stays");
            caller.problem(&ExchangeError::InvalidConfig {
                problems: problems
                    .0
                    .iter()
                    .map(|problem| describe_problem(problem, &base))
                    .collect(),
            })
        }
        Err(_) => caller.problem(&ExchangeError::Internal),
    }
}

/// A configuration problem as a response may show it: files relative to the configuration
/// folder (or, for the schema folder beside it, to its parent), never the machine's absolute
/// paths.
fn describe_problem(problem: &config::Problem, base: &std::path::Path) -> Violation {
    let roots: Vec<&std::path::Path> = [Some(base), base.parent()]
        .into_iter()
        .flatten()
        .filter(|root| !root.as_os_str().is_empty())
        .collect();
    let file = roots
        .iter()
        .find_map(|root| problem.file.strip_prefix(root).ok())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| problem.file.file_name().map(Into::into).unwrap_or_default());
    let mut reason = problem.reason.clone();
    for root in &roots {
        reason = reason.replace(&format!("{}/", root.display()), "");
    }
    let message = if problem.key.is_empty() {
        format!("{}: {reason}", file.display())
    } else {
        format!("{}: {}: {reason}", file.display(), problem.key)
    };
    Violation::new("", "config", message)
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
