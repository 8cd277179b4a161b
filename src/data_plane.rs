//! The data plane (`[gateway] listen`): what departments call.
//!
//! Routes:
//! - ANY `/exchange/{provider}/{service}[/{rest}]`: the exchange path ([`crate::exchange`]),
//!   dispatched by [`crate::server`] before this router, in a task of its own.
//! - GET `/catalog`: the services and certificate types the caller may use.
//! - POST `/validate/{schema}[?version=N][&format=own]`: validate a record (JSON) or many
//!   (NDJSON) without sending them; `format=own` first translates from the caller's layout.
//! - GET `/certificates/{type}/{id}`: an e-certificate lookup through the cache
//!   ([`crate::certificates`]); POST `/certificates/{type}/{id}/invalidate`: the issuing
//!   department drops a cached certificate.
//! - GET `/healthz`: liveness. GET `/readyz`: readiness (config loaded, listeners up, not
//!   draining, the audit trail able to commit).
//!
//! Anything else is a 404 problem; a listed route with another method is a 405 problem.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::body;
use crate::caller::Caller;
use crate::certificates;
use crate::cpu::CpuPool;
use crate::gateway::Gateway;
use crate::identity::identify_department;
use crate::problem::{ExchangeError, duplicate_key_violation};
use crate::tls::{ConnectionCertificate, presented};
use xgate_core::domain::SchemaVersion;
use xgate_core::i18n::Lang;
use xgate_core::json::JsonError;
use xgate_core::registry::{CompiledSchema, Violation};
use xgate_core::translate::{Direction, Format};

/// The data plane's routes over the shared gateway state.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/catalog", get(catalog))
        .route("/validate/{schema}", post(validate))
        .route("/certificates/{type}/{id}", get(certificates::lookup))
        .route(
            "/certificates/{type}/{id}/invalidate",
            post(certificates::invalidate),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gateway)
}

async fn not_found(headers: HeaderMap) -> Response<Body> {
    Caller::from_headers(&headers).problem(&ExchangeError::NotFound)
}

/// A route that exists, with another method: the 405 problem (axum adds `Allow`).
pub(crate) async fn method_not_allowed(headers: HeaderMap) -> Response<Body> {
    Caller::from_headers(&headers).problem(&ExchangeError::MethodNotAllowed {
        allowed: Vec::new(),
    })
}

/// Liveness: the process answers.
pub async fn healthz() -> Response<Body> {
    plain_json(StatusCode::OK, json!({"status": "ok"}))
}

/// Readiness: configuration loaded, listeners up, not shutting down (from the shutdown signal
/// on, through `[gateway] drain_delay_ms` and the drain), and the audit trail able to
/// commit (while it cannot, every exchange is refused: a balancer should send them elsewhere).
pub async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response<Body> {
    if gateway.is_draining() {
        plain_json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not ready", "reason": "shutting down"}),
        )
    } else if gateway.is_ready() && !gateway.registry_in_step() {
        plain_json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not ready", "reason": "store unreachable"}),
        )
    } else if gateway.is_ready() && gateway.audit.is_unavailable() {
        plain_json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not ready", "reason": "audit store unavailable"}),
        )
    } else if gateway.is_ready() {
        plain_json(StatusCode::OK, json!({"status": "ready"}))
    } else {
        plain_json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not ready"}),
        )
    }
}

fn plain_json(status: StatusCode, value: Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[derive(Serialize)]
struct SchemaUse {
    name: String,
    version: u32,
    pinned: bool,
}

#[derive(Serialize)]
struct CatalogService {
    provider: String,
    service: String,
    path: String,
    methods: Vec<String>,
    request_schema: Option<SchemaUse>,
    response_schema: Option<SchemaUse>,
    /// The shared response fields this caller receives, when the service projects for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<String>>,
    /// The purposes a call must state one of in `Xgate-Purpose`, when the service lists any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    purposes: Vec<CatalogPurpose>,
}

/// A purpose of the vocabulary, as the catalog lists it.
#[derive(Serialize)]
struct CatalogPurpose {
    code: String,
    label: String,
}

#[derive(Serialize)]
struct CatalogCertificateType {
    #[serde(rename = "type")]
    certificate_type: String,
    issuer: String,
    path: String,
    schema: Option<SchemaUse>,
    id_format: String,
    /// The purposes a lookup must state one of, when the type lists any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    purposes: Vec<CatalogPurpose>,
}

#[derive(Serialize)]
struct Catalog {
    department: String,
    services: Vec<CatalogService>,
    certificate_types: Vec<CatalogCertificateType>,
}

/// GET `/catalog`: what the caller may use, with the schema versions in force now.
async fn catalog(
    State(gateway): State<Arc<Gateway>>,
    certificate: ConnectionCertificate,
    headers: HeaderMap,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    let snapshot = gateway.snapshot();
    let department = match identify_department(&snapshot, &headers, presented(&certificate)) {
        Ok(department) => department,
        Err(error) => return caller.problem(&error),
    };
    let schema_use = |reference: &xgate_core::domain::SchemaRef| {
        snapshot
            .registry
            .resolve(reference)
            .ok()
            .map(|schema| SchemaUse {
                name: schema.name.to_string(),
                version: schema.version.get(),
                pinned: reference.version.is_some(),
            })
    };
    let purposes = |codes: &[xgate_core::domain::PurposeCode]| {
        codes
            .iter()
            .map(|code| CatalogPurpose {
                code: code.to_string(),
                label: snapshot
                    .config
                    .purposes
                    .get(code)
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect()
    };
    let services = snapshot
        .routes()
        .filter(|route| route.service.consumers.contains(&department.id))
        .map(|route| {
            let service = &route.service;
            CatalogService {
                provider: service.provider.to_string(),
                service: service.name.to_string(),
                path: format!("/exchange/{}/{}", service.provider, service.name),
                methods: service.methods.iter().map(|m| m.to_string()).collect(),
                request_schema: service.request_schema.as_ref().and_then(schema_use),
                response_schema: service.response_schema.as_ref().and_then(schema_use),
                fields: service
                    .fields
                    .get(&department.id)
                    .map(|paths| paths.iter().map(|p| p.to_string()).collect()),
                purposes: purposes(&service.purposes),
            }
        })
        .collect();
    let certificate_types = snapshot
        .config
        .departments
        .iter()
        .flat_map(|issuer| issuer.certificate_types.iter())
        .filter(|certificate| certificate.consumers.contains(&department.id))
        .map(|certificate| CatalogCertificateType {
            certificate_type: certificate.certificate_type.to_string(),
            issuer: certificate.issuer.to_string(),
            path: format!("/certificates/{}/{{id}}", certificate.certificate_type),
            schema: schema_use(&certificate.schema),
            id_format: certificate.id_format.clone(),
            purposes: purposes(&certificate.purposes),
        })
        .collect();
    caller.json(
        StatusCode::OK,
        &Catalog {
            department: department.id.to_string(),
            services,
            certificate_types,
        },
    )
}

#[derive(Deserialize)]
struct ValidateQuery {
    version: Option<String>,
    format: Option<String>,
}

#[derive(Serialize)]
struct ValidationResult<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    valid: bool,
    errors: &'a [Violation],
}

/// POST `/validate/{schema}`: `{"valid", "errors"}` for a JSON record; for
/// `application/x-ndjson`, one such result per non-blank input line (with its line number),
/// streamed as the input streams, each line bounded by `max_body_bytes`.
async fn validate(
    State(gateway): State<Arc<Gateway>>,
    Path(schema): Path<String>,
    query: Result<Query<ValidateQuery>, axum::extract::rejection::QueryRejection>,
    certificate: ConnectionCertificate,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    let snapshot = gateway.snapshot();
    let department = match identify_department(&snapshot, &headers, presented(&certificate)) {
        Ok(department) => department,
        Err(error) => return caller.problem(&error),
    };
    let Ok(Query(query)) = query else {
        return caller.problem(&ExchangeError::InvalidParameter { name: "query" });
    };
    let version = match query.version {
        None => None,
        Some(text) => match SchemaVersion::parse(&text) {
            Ok(version) => Some(version),
            // A version that is not a number is a version that does not exist.
            Err(_) => return caller.problem(&ExchangeError::NotFound),
        },
    };
    let own_layout = match query.format.as_deref() {
        None | Some("shared") => false,
        Some("own") => true,
        Some(_) => return caller.problem(&ExchangeError::InvalidParameter { name: "format" }),
    };
    let Some(schema) = snapshot.registry.get(&schema, version) else {
        return caller.problem(&ExchangeError::NotFound);
    };
    // `?format=own`: the record is in the caller's layout. A caller without a format for this
    // schema speaks the shared layout, as on the exchange path.
    let format = own_layout
        .then(|| department.formats.get(&schema.name).cloned())
        .flatten();
    let limit = snapshot.config.gateway.max_body_bytes;
    if is_ndjson(&headers) {
        return caller.tag(validate_ndjson(
            gateway.cpu.clone(),
            schema,
            format,
            body,
            limit,
            caller.lang,
        ));
    }
    let bytes = match body::read_json_body(&headers, body, limit).await {
        Ok(bytes) => bytes,
        Err(ExchangeError::UnsupportedMediaType { .. }) => {
            return caller.problem(&ExchangeError::UnsupportedMediaType {
                expected: "application/json or application/x-ndjson",
            });
        }
        Err(error) => return caller.problem(&error),
    };
    let record = match body::parse_json(&bytes) {
        Ok(record) => record,
        Err(error) => return caller.problem(&error),
    };
    let lang = caller.lang;
    let checked = on_cpu(&gateway.cpu, bytes.len(), move || {
        check_record(&schema, format.as_deref(), &record, lang)
    })
    .await;
    let errors = match checked {
        Ok(errors) => errors,
        Err(error) => return caller.problem(&error),
    };
    caller.json(
        StatusCode::OK,
        &ValidationResult {
            line: None,
            valid: errors.is_empty(),
            errors: &errors,
        },
    )
}

fn is_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| {
            let essence = essence.trim();
            essence.eq_ignore_ascii_case("application/x-ndjson")
                || essence.eq_ignore_ascii_case("application/jsonl")
        })
}

/// Runs `work` (the checks of one record of `bytes`) inline when the record is small, on the
/// blocking pool when it is large ([`crate::cpu`]).
async fn on_cpu<T: Send + 'static>(
    cpu: &CpuPool,
    bytes: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ExchangeError> {
    if CpuPool::is_large(bytes) {
        cpu.run(work).await
    } else {
        Ok(work())
    }
}

/// State of the NDJSON validator between chunks of input.
struct NdjsonState {
    cpu: CpuPool,
    input: axum::body::BodyDataStream,
    schema: Arc<CompiledSchema>,
    format: Option<Arc<Format>>,
    lang: Lang,
    limit: usize,
    buffer: BytesMut,
    line: u64,
    /// The current line passed the limit: its rest is skipped up to the next newline.
    skipping: bool,
    finished: bool,
}

fn validate_ndjson(
    cpu: CpuPool,
    schema: Arc<CompiledSchema>,
    format: Option<Arc<Format>>,
    body: Body,
    limit: usize,
    lang: Lang,
) -> Response<Body> {
    let state = NdjsonState {
        cpu,
        input: body.into_data_stream(),
        schema,
        format,
        lang,
        limit,
        buffer: BytesMut::new(),
        line: 0,
        skipping: false,
        finished: false,
    };
    let output = futures_util::stream::unfold(state, |mut state| async move {
        let chunk = next_result(&mut state).await?;
        Some((Ok::<Bytes, std::convert::Infallible>(chunk), state))
    });
    let mut response = Response::new(Body::from_stream(output));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

/// The next output line, or `None` at the end of input.
async fn next_result(state: &mut NdjsonState) -> Option<Bytes> {
    loop {
        if let Some(newline) = state.buffer.iter().position(|b| *b == b'\n') {
            let line = state.buffer.split_to(newline + 1);
            state.line += 1;
            if std::mem::take(&mut state.skipping) {
                continue;
            }
            // A whole line can arrive in one chunk, so the limit is checked here too.
            if newline > state.limit {
                return Some(result_line(state.line, &[line_too_long(state)]));
            }
            if let Some(result) = line_result(state, line.freeze().slice(..newline)).await {
                return Some(result);
            }
            continue;
        }
        if state.finished {
            if state.buffer.is_empty() || state.skipping {
                return None;
            }
            let line = state.buffer.split();
            state.line += 1;
            if line.len() > state.limit {
                return Some(result_line(state.line, &[line_too_long(state)]));
            }
            if let Some(result) = line_result(state, line.freeze()).await {
                return Some(result);
            }
            return None;
        }
        if state.buffer.len() > state.limit && !state.skipping {
            state.buffer.clear();
            state.skipping = true;
            return Some(result_line(state.line + 1, &[line_too_long(state)]));
        }
        if state.skipping {
            state.buffer.clear();
        }
        match state.input.next().await {
            Some(Ok(chunk)) => state.buffer.extend_from_slice(&chunk),
            // A client that breaks off gets no more results; nothing else is affected.
            Some(Err(_)) => return None,
            None => state.finished = true,
        }
    }
}

/// The violation of a line longer than `max_body_bytes`.
fn line_too_long(state: &NdjsonState) -> Violation {
    Violation::new(
        "",
        "maxLength",
        match state.lang {
            Lang::Zh => format!("该行超过 {} 字节的上限", state.limit),
            Lang::En => format!("The line exceeds the limit of {} bytes", state.limit),
        },
    )
}

/// The result for one input line; `None` for a blank line. A large line is parsed and checked
/// on the blocking pool; one that finds no turn there is reported as not checked. (`&mut`: the
/// state holds the input stream, which is `Send` but not `Sync`.)
async fn line_result(state: &mut NdjsonState, line: Bytes) -> Option<Bytes> {
    let line = match line.strip_suffix(b"\r") {
        Some(stripped) => line.slice(..stripped.len()),
        None => line,
    };
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let (schema, format, lang) = (state.schema.clone(), state.format.clone(), state.lang);
    let checked = on_cpu(
        &state.cpu,
        line.len(),
        move || match xgate_core::json::parse(&line) {
            Ok(record) => check_record(&schema, format.as_deref(), &record, lang),
            Err(JsonError::DuplicateKey { pointer }) => {
                vec![duplicate_key_violation(&pointer, lang)]
            }
            Err(JsonError::Syntax(error)) => vec![Violation::new(
                "",
                "json",
                match lang {
                    Lang::Zh => format!("不是有效的 JSON：{error}"),
                    Lang::En => format!("Not valid JSON: {error}"),
                },
            )],
        },
    )
    .await;
    let errors = checked.unwrap_or_else(|_| {
        vec![Violation::new(
            "",
            "overloaded",
            match state.lang {
                Lang::Zh => "网关繁忙，未能校验该行，请重新发送".to_owned(),
                Lang::En => "The gateway was too busy to check this line; send it again".to_owned(),
            },
        )]
    });
    Some(result_line(state.line, &errors))
}

/// The problems of one record: translation problems when it is in the caller's layout and does
/// not translate, otherwise schema violations (at the caller's own pointers with a format).
fn check_record(
    schema: &CompiledSchema,
    format: Option<&Format>,
    record: &Value,
    lang: Lang,
) -> Vec<Violation> {
    let Some(format) = format else {
        return schema.validate(record, lang);
    };
    match format.translate(record, Direction::ToShared) {
        Ok(shared) => {
            let mut violations = schema.validate(&shared, lang);
            format.relabel(&mut violations, lang);
            violations
        }
        Err(errors) => errors
            .iter()
            .map(|error| error.to_violation(lang))
            .collect(),
    }
}

fn result_line(line: u64, errors: &[Violation]) -> Bytes {
    let result = ValidationResult {
        line: Some(line),
        valid: errors.is_empty(),
        errors,
    };
    let mut bytes = serde_json::to_vec(&result).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}
