//! The exchange path of SPEC §3, phase by phase, in order.
//!
//! [`exchange`] reads top-down as the spec lists the phases: identify, route, authorize, read
//! request, to shared, validate request, to provider, forward, response to shared, validate
//! response, project, to consumer, record. Each phase is a function of its own below, in the same
//! order; only `read_request` and `forward` touch the network. Between authorize and read
//! request, `admit` holds the call to the bounds on calls in flight (`admission`).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use crate::admission::{CallerPresence, InFlightPermit};
use crate::body::{is_json_media_type, parse_json, read_json_body};
use crate::config::Department;
use crate::cpu::CpuPool;
use crate::events::{ExchangeFinished, RecordFailure};
use crate::gateway::Gateway;
use crate::headers::{self, ForwardContext, Origin};
use crate::identity::identify_department;
use crate::metrics::{ExchangeLabels, ExchangeObservation, ExchangeSeries, Side, UNKNOWN};
use crate::problem::{ExchangeError, TranslationFault};
use crate::purpose::Stated;
use crate::snapshot::{Route, Snapshot};
use crate::upstream::{self, UpstreamBody, UpstreamBodyError, UpstreamError};
use xgate_audit::{AuditEntry, AuditKey, EntryKind, Outcome};
use xgate_core::i18n::Lang;
use xgate_core::registry::CompiledSchema;
use xgate_core::translate::Direction;

pub mod caller_body;
pub mod path_rest;

/// What the record phase learns about one call, whatever its outcome. It borrows from the
/// snapshot the call runs on, so filling it in costs no copies.
#[derive(Debug)]
pub(crate) struct ExchangeRecord<'s> {
    /// The request id (the caller's or generated).
    pub request_id: String,
    /// The gateway's own id of this exchange (`Xgate-Exchange-Id`).
    pub exchange_id: String,
    /// The identified consumer, once known.
    pub consumer: Option<&'s Department>,
    /// The service, once routed.
    pub route: Option<&'s Route>,
    /// The request method.
    pub method: Method,
    /// The request schema used.
    pub request_schema: Option<Arc<CompiledSchema>>,
    /// The response schema used.
    pub response_schema: Option<Arc<CompiledSchema>>,
    /// The keyed digest (hex, under the audit key) of the request path without the query (a
    /// path can hold a personal identifier, so the record never keeps it).
    pub path_sha256: String,
    /// What the caller's `Xgate-Purpose` states: a vocabulary code is recorded in clear.
    pub purpose: Stated<'s>,
    /// The keyed digest of the caller's `Xgate-Purpose`, when it sent free text.
    pub purpose_sha256: Option<String>,
    /// Bytes of the request body: read, or declared by `Content-Length` when it streamed.
    pub request_bytes: Option<u64>,
    /// The keyed digest of the request body, when it was read.
    pub request_sha256: Option<String>,
    /// Bytes of the response body the gateway built from a record.
    pub response_bytes: Option<u64>,
    /// The keyed digest of the response body the gateway built from a record.
    pub response_sha256: Option<String>,
    /// The keyed digest of the service's subject (SPEC §15), when it declares one and the
    /// shared request or response holds it.
    pub subject_sha256: Option<String>,
    /// Time spent waiting for the upstream.
    pub upstream_duration: Option<Duration>,
    /// The call's room under the in-flight bounds, from identify to the end of the exchange
    /// (a streamed answer takes it along until it has streamed).
    pub in_flight: Option<InFlightPermit>,
}

impl ExchangeRecord<'_> {
    /// The route's slot for the consumer's served-exchange series, once both are known.
    fn served_series(&self) -> Option<&OnceLock<ExchangeSeries>> {
        let (consumer, route) = (self.consumer?, self.route?);
        route.served.get(&consumer.id)
    }

    /// The call's metric labels: configured names, [`UNKNOWN`] for what it did not reach.
    fn labels(&self) -> ExchangeLabels<'_> {
        ExchangeLabels {
            consumer: self
                .consumer
                .map_or(UNKNOWN, |consumer| consumer.id.as_str()),
            provider: self
                .route
                .map_or(UNKNOWN, |route| route.service.provider.as_str()),
            service: self
                .route
                .map_or(UNKNOWN, |route| route.service.name.as_str()),
        }
    }
}

/// A request body on its way through the phases.
enum RequestBody {
    /// Streamed to the upstream unread (services without a request schema).
    Stream(Body),
    /// A parsed JSON record.
    Record(Record),
}

/// A JSON record and, while no phase has changed it, the bytes it was parsed from (sent on
/// as they came, saving a serialization).
struct Record {
    value: Value,
    original: Option<Bytes>,
}

impl RequestBody {
    /// The bytes of a record as it was read (0 for a stream, which no CPU phase reads).
    fn record_bytes(&self) -> usize {
        match self {
            RequestBody::Record(record) => record.original.as_ref().map_or(0, Bytes::len),
            RequestBody::Stream(_) => 0,
        }
    }
}

impl Record {
    fn into_bytes(self) -> Bytes {
        match self.original {
            Some(bytes) => bytes,
            // Serializing a `Value` cannot fail: its keys are strings and its numbers finite.
            None => Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default()),
        }
    }
}

/// One exchange's context, handed to every phase (pingora's `(session, ctx)` shape): what the
/// call runs on (the gateway, the snapshot it loaded once), where it comes from (its
/// connection's origin, whether its caller is still there), the language of its answers, and
/// its record, which the phases fill in as they learn who calls what.
struct Call<'s> {
    gateway: &'s Gateway,
    snapshot: &'s Arc<Snapshot>,
    origin: &'s Origin,
    caller: &'s CallerPresence,
    lang: Lang,
    record: ExchangeRecord<'s>,
}

/// Serves one `/exchange/...` call through every phase and records it. The answer leaves only
/// once its audit entry is committed (see [`commit_entry`]: an exchange that cannot be audited
/// is not answered, and while the trail cannot commit none is forwarded). A `caller` that hangs
/// up before the call is handed to an upstream connection ends it unforwarded (`cancelled` in
/// the trail). Its log line and metrics are emitted once, after the commit, with the committed
/// outcome ([`ExchangeFinished`]).
pub async fn exchange(
    gateway: &Gateway,
    request: Request<Body>,
    origin: &Origin,
    caller: &CallerPresence,
) -> Response<Body> {
    let started = Instant::now();
    let snapshot = gateway.snapshot();
    let lang = Lang::from_accept_language(
        request
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|value| value.to_str().ok()),
    );
    let purpose = Stated::of(&snapshot.config, request.headers());
    let record = ExchangeRecord {
        request_id: headers::request_id(request.headers()),
        exchange_id: headers::new_exchange_id(),
        consumer: None,
        route: None,
        method: request.method().clone(),
        request_schema: None,
        response_schema: None,
        path_sha256: gateway.audit.key().digest(request.uri().path().as_bytes()),
        purpose,
        purpose_sha256: request
            .headers()
            .get(headers::XGATE_PURPOSE)
            .filter(|_| purpose == Stated::Text)
            .map(|purpose| gateway.audit.key().digest(purpose.as_bytes())),
        request_bytes: None,
        request_sha256: None,
        response_bytes: None,
        response_sha256: None,
        subject_sha256: None,
        upstream_duration: None,
        in_flight: None,
    };
    let mut call = Call {
        gateway,
        snapshot: &snapshot,
        origin,
        caller,
        lang,
        record,
    };
    let result = run_phases(&mut call, request).await;
    let (response, outcome, failure) = match result {
        Ok(response) => (response, Outcome::Ok, None),
        Err(error) => {
            let failure = record_failure(&call.record, &error);
            let outcome = error.outcome();
            (
                error.to_response(lang, &call.record.request_id),
                outcome,
                failure,
            )
        }
    };
    let entry = audit_entry(&mut call.record, &response, outcome, started.elapsed());
    let (request_bytes, response_bytes) = (entry.request_bytes, entry.response_bytes);
    let (mut response, committed) = commit_entry(&call, entry, (response, outcome)).await;
    let record = &call.record;
    // The failure counters count what the trail holds: a refusal of the commit replaced it.
    let failure = failure.filter(|_| committed == outcome);
    ExchangeFinished {
        request_id: &record.request_id,
        exchange_id: &record.exchange_id,
        method: &record.method,
        service: record.route.map(|route| &route.label),
        status: response.status().as_u16(),
        request_schema: record.request_schema.as_deref(),
        response_schema: record.response_schema.as_deref(),
        failure,
        // The duration includes the audit commit: the answer leaves only after it.
        observation: ExchangeObservation {
            labels: record.labels(),
            outcome: committed,
            duration: started.elapsed(),
            upstream: record.upstream_duration,
            request_bytes,
            response_bytes,
        },
        served: record.served_series(),
    }
    .emit(&gateway.metrics);
    let labels = record.labels();
    gateway
        .metrics
        .purpose_use(labels.consumer, labels.service, record.purpose.label());
    headers::tag_exchange_id(response.headers_mut(), &record.exchange_id);
    response
}

/// The record phase's commit: the answer leaves once the entry is committed.
///
/// While the trail cannot commit, an exchange that reached no provider is answered 503
/// `store-unavailable` and leaves no entry: the space that is left is for the entries of
/// exchanges already forwarded. When an entry cannot be committed, an exchange that reached no
/// provider is answered 503 too; one that did (forwarded just before commits started failing)
/// is answered 500 `internal`, its provider's answer withheld.
async fn commit_entry(
    call: &Call<'_>,
    entry: AuditEntry,
    (response, outcome): (Response<Body>, Outcome),
) -> (Response<Body>, Outcome) {
    let Call {
        gateway,
        lang,
        record,
        ..
    } = call;
    let forwarded = record.upstream_duration.is_some();
    let refused = || {
        let error = ExchangeError::store_unavailable();
        (
            error.to_response(*lang, &record.request_id),
            error.outcome(),
        )
    };
    if !forwarded && gateway.audit.is_unavailable() {
        return refused();
    }
    match gateway.audit.append(entry).await {
        Ok(_) => (response, outcome),
        Err(_) if !forwarded => refused(),
        Err(_) => (
            ExchangeError::Internal.to_response(*lang, &record.request_id),
            ExchangeError::Internal.outcome(),
        ),
    }
}

/// Refuses a call that is about to go further while the audit trail cannot commit: a call is
/// forwarded only while its entry can be written.
fn refuse_while_unauditable(gateway: &Gateway) -> Result<(), ExchangeError> {
    if gateway.audit.is_unavailable() {
        return Err(ExchangeError::store_unavailable());
    }
    Ok(())
}

/// The refused record of a failed exchange, for `xgate_validation_failures_total` or
/// `xgate_translation_failures_total` (other failures are counted by outcome only).
fn record_failure(record: &ExchangeRecord<'_>, error: &ExchangeError) -> Option<RecordFailure> {
    match error {
        ExchangeError::SchemaValidation { .. } => {
            record
                .request_schema
                .clone()
                .map(|schema| RecordFailure::Validation {
                    schema,
                    side: Side::Request,
                })
        }
        // No violations: the answer was not JSON at all, which is no schema's verdict.
        ExchangeError::UpstreamInvalidResponse {
            violation_count, ..
        } if *violation_count > 0 => {
            record
                .response_schema
                .clone()
                .map(|schema| RecordFailure::Validation {
                    schema,
                    side: Side::Response,
                })
        }
        ExchangeError::Translation {
            schema,
            department,
            direction,
            ..
        } => Some(RecordFailure::Translation {
            department: department.clone(),
            // `name@version` of a registered schema; names cannot hold `@`.
            schema: schema
                .split_once('@')
                .map_or(schema.as_str(), |(name, _)| name)
                .to_owned(),
            direction: *direction,
        }),
        _ => None,
    }
}

async fn run_phases<'s>(
    call: &mut Call<'s>,
    request: Request<Body>,
) -> Result<Response<Body>, ExchangeError> {
    let (parts, body) = request.into_parts();
    let (gateway, snapshot, lang) = (call.gateway, call.snapshot, call.lang);

    let consumer = identify(call, &parts.headers)?;
    call.record.consumer = Some(consumer);

    let (route, rest) = route(snapshot, parts.uri.path())?;
    call.record.route = Some(route);

    authorize(consumer, route, &parts.method)?;
    call.record.purpose.check(&route.service.purposes)?;
    call.record.in_flight = Some(admit(call, consumer)?);
    // Before a body is read for nothing; checked again right before forwarding.
    refuse_while_unauditable(gateway)?;

    let request_schema = resolve_schema(snapshot, route.service.request_schema.as_ref())?
        .filter(|_| holds_body_to_schema(&parts.method, &body));
    let response_schema = resolve_schema(snapshot, route.service.response_schema.as_ref())?;
    call.record.request_schema = request_schema.clone();
    call.record.response_schema = response_schema.clone();

    let max_body_bytes = snapshot.config.gateway.max_body_bytes;
    // A streamed body's length is what it declared; hyper holds it to that length.
    call.record.request_bytes = http_body::Body::size_hint(&body).exact();
    let body = read_request(
        request_schema.is_some(),
        &parts.headers,
        body,
        max_body_bytes,
    )
    .await?;
    if let RequestBody::Record(Record {
        original: Some(bytes),
        ..
    }) = &body
    {
        call.record.request_bytes = Some(bytes.len() as u64);
        call.record.request_sha256 = Some(gateway.audit.key().digest(bytes));
    }
    let (body, caller_body) = watch_caller_body(body);
    let provider = provider(snapshot, route)?;
    let parties = Parties {
        consumer,
        provider,
        route,
    };
    let schema = request_schema.clone();
    let key = subject_key(gateway, route);
    let (body, subject) = on_cpu(call, parties, body.record_bytes(), move |parties| {
        let body = to_shared(parties.consumer, schema.as_deref(), body, lang)?;
        validate_request(parties.consumer, schema.as_deref(), &body, lang)?;
        let subject = match &body {
            RequestBody::Record(record) => subject_digest(parties.route, key.as_deref(), record),
            _ => None,
        };
        Ok((
            to_provider(parties.provider, schema.as_deref(), body, lang)?,
            subject,
        ))
    })
    .await?;
    call.record.subject_sha256 = subject;

    refuse_while_unauditable(gateway)?;
    let upstream_started = Instant::now();
    let upstream = forward(call, parties, &parts, rest, body).await;
    call.record.upstream_duration = Some(upstream_started.elapsed());
    let mut upstream = upstream.map_err(|error| blame_caller_body(error, caller_body.as_ref()))?;

    let validated = response_schema.filter(|_| upstream.status().is_success());
    let Some(response_schema) = validated else {
        // The call stays in flight while its answer streams (it holds the connection).
        upstream.body_mut().hold(call.record.in_flight.take());
        return Ok(stream_response(upstream, &call.record.request_id));
    };
    let (status, upstream_headers, response) = read_response(
        upstream,
        &response_schema,
        max_body_bytes,
        snapshot.config.gateway.upstream_timeout,
    )
    .await?;
    let response_bytes = response.original.as_ref().map_or(0, Bytes::len);
    // The request named the subject already, or the response is where to look.
    let key = subject_key(gateway, route).filter(|_| call.record.subject_sha256.is_none());
    let (bytes, rewritten, subject) = on_cpu(call, parties, response_bytes, move |parties| {
        let schema = &response_schema;
        let response = response_to_shared(parties.provider, schema, response, lang)?;
        validate_response(schema, &response)?;
        let subject = subject_digest(parties.route, key.as_deref(), &response);
        let response = project(parties.route, parties.consumer, response);
        let response = mask(parties.route, parties.consumer, response);
        let response = to_consumer(parties.consumer, schema, response, lang)?;
        let rewritten = response.original.is_none();
        Ok((response.into_bytes(), rewritten, subject))
    })
    .await?;
    if subject.is_some() {
        call.record.subject_sha256 = subject;
    }
    call.record.response_bytes = Some(bytes.len() as u64);
    call.record.response_sha256 = Some(gateway.audit.key().digest(&bytes));
    Ok(respond(
        status,
        upstream_headers,
        bytes,
        rewritten,
        &call.record.request_id,
    ))
}

/// Phase 1, identify: the connection's verified client certificate, or else the bearer token's
/// SHA-256, names the consumer.
fn identify<'s>(call: &Call<'s>, headers: &HeaderMap) -> Result<&'s Department, ExchangeError> {
    let certificate = call.origin.client_certificate.as_deref();
    identify_department(call.snapshot, headers, certificate)
}

/// Phase 2, route: `/exchange/{provider}/{service}[/{rest}]` names the service; `rest` is kept
/// byte for byte, but a rest an upstream could resolve upwards, out of the service's base path
/// (dot segments, also encoded or with `;` parameters, encoded slashes, backslashes, NUL: see
/// [`path_rest`]), is refused as naming nothing (404, as any path outside the service).
fn route<'s, 'p>(
    snapshot: &'s Snapshot,
    path: &'p str,
) -> Result<(&'s Arc<Route>, &'p str), ExchangeError> {
    let after = path
        .strip_prefix("/exchange/")
        .ok_or(ExchangeError::NotFound)?;
    let (provider, after) = after.split_once('/').ok_or(ExchangeError::NotFound)?;
    let (service, rest) = match after.find('/') {
        Some(index) => after.split_at(index),
        None => (after, ""),
    };
    if path_rest::may_leave_base(rest) {
        return Err(ExchangeError::NotFound);
    }
    let route = snapshot
        .route(provider, service)
        .ok_or(ExchangeError::NotFound)?;
    Ok((route, rest))
}

/// Phase 3, authorize: the consumer must be listed (403), then the method allowed (405).
fn authorize(consumer: &Department, route: &Route, method: &Method) -> Result<(), ExchangeError> {
    if !route.service.consumers.contains(&consumer.id) {
        return Err(ExchangeError::Forbidden);
    }
    if !route.service.methods.contains(method) {
        return Err(ExchangeError::MethodNotAllowed {
            allowed: route.service.methods.clone(),
        });
    }
    Ok(())
}

/// Admission, right after authorize (before the body is read, where SPEC §14 checks its rate
/// limits): the consumer's and the gateway's bounds on calls in flight (429 `rate-limited`, 503
/// `overloaded`, both at once and with `Retry-After`). After authorize rather than identify,
/// so a refusal names its service in the trail and metrics; the phases before are pure
/// lookups that hold nothing.
fn admit(call: &Call<'_>, consumer: &Department) -> Result<InFlightPermit, ExchangeError> {
    call.gateway
        .admission
        .admit(&consumer.id, &call.snapshot.config.gateway)
}

/// The schema version a service's reference means at this moment.
fn resolve_schema(
    snapshot: &Snapshot,
    reference: Option<&xgate_core::domain::SchemaRef>,
) -> Result<Option<Arc<CompiledSchema>>, ExchangeError> {
    match reference {
        None => Ok(None),
        // Config loading proved every reference resolves; failing here is the gateway's fault.
        Some(reference) => snapshot
            .registry
            .resolve(reference)
            .map(Some)
            .map_err(|reason| {
                tracing::error!(%reference, %reason, "a checked schema reference did not resolve");
                ExchangeError::Internal
            }),
    }
}

/// Phase 4, read request: with a request schema, a bounded JSON body; otherwise the body
/// streams through unread.
async fn read_request(
    has_schema: bool,
    headers: &HeaderMap,
    body: Body,
    max_body_bytes: usize,
) -> Result<RequestBody, ExchangeError> {
    if !has_schema {
        return Ok(RequestBody::Stream(body));
    }
    let bytes = read_json_body(headers, body, max_body_bytes).await?;
    let value = parse_json(&bytes)?;
    Ok(RequestBody::Record(Record {
        value,
        original: Some(bytes),
    }))
}

/// Whether a request's body is held to the service's request schema: every POST, PUT and
/// PATCH (sending a body is what they are for, so a missing one is validated as the empty body
/// it is: 415 without a JSON `Content-Type`, 400 with one), and a request of any other method
/// that carries a body. A GET, HEAD, DELETE or OPTIONS without one (no `Content-Length` or 0,
/// not chunked; on HTTP/2 a head that ends the stream) is forwarded unvalidated.
fn holds_body_to_schema(method: &Method, body: &Body) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        || !http_body::Body::is_end_stream(body)
}

/// Watches a streamed body for breaking on its way to the upstream (an empty one cannot).
fn watch_caller_body(body: RequestBody) -> (RequestBody, Option<caller_body::BrokenWatch>) {
    match body {
        RequestBody::Stream(body) if !http_body::Body::is_end_stream(&body) => {
            let (body, watch) = caller_body::watch(body);
            (RequestBody::Stream(body), Some(watch))
        }
        body => (body, None),
    }
}

/// A forward that failed because the caller's streamed body broke (a malformed chunk, a
/// connection closed short of its length) is the caller's 400, not the provider's 502: the
/// upstream client reports it as its own failure.
fn blame_caller_body(
    error: ExchangeError,
    caller_body: Option<&caller_body::BrokenWatch>,
) -> ExchangeError {
    match caller_body {
        Some(watch) if watch.broke() => ExchangeError::MalformedRequest,
        _ => error,
    }
}

/// The providing department of a route (configuration guarantees it exists).
fn provider<'s>(snapshot: &'s Snapshot, route: &Route) -> Result<&'s Department, ExchangeError> {
    snapshot
        .department(route.service.provider.as_str())
        .ok_or(ExchangeError::Internal)
}

/// Who a call's CPU phases work for: the consumer, the provider and the service's route.
#[derive(Clone, Copy)]
struct Parties<'s> {
    consumer: &'s Department,
    provider: &'s Department,
    route: &'s Route,
}

/// Runs CPU phases (translation, validation, projection) of a record of `bytes`: inline when it
/// is small, on the blocking pool when it is large ([`crate::cpu`]), so a large record never
/// holds a runtime worker. There the parties are looked up again by name in the same snapshot
/// (the phases must own what they use); they are the same values.
async fn on_cpu<T: Send + 'static>(
    call: &Call<'_>,
    parties: Parties<'_>,
    bytes: usize,
    phases: impl for<'p> FnOnce(Parties<'p>) -> Result<T, ExchangeError> + Send + 'static,
) -> Result<T, ExchangeError> {
    if !CpuPool::is_large(bytes) {
        return phases(parties);
    }
    let snapshot = call.snapshot.clone();
    let consumer = parties.consumer.id.clone();
    let provider = parties.provider.id.clone();
    let service = parties.route.service.name.clone();
    call.gateway
        .cpu
        .run(move || {
            let route = snapshot.route(provider.as_str(), service.as_str());
            let parties = match (
                snapshot.department(consumer.as_str()),
                snapshot.department(provider.as_str()),
                route,
            ) {
                (Some(consumer), Some(provider), Some(route)) => Parties {
                    consumer,
                    provider,
                    route,
                },
                _ => return Err(ExchangeError::Internal),
            };
            phases(parties)
        })
        .await?
}

/// Translates a record with `department`'s format for `schema`, if it has one; the record
/// stays as it is (and keeps its original bytes) when it has none.
fn translate(
    department: &Department,
    schema: &CompiledSchema,
    record: Record,
    direction: Direction,
    lang: Lang,
    fault: TranslationFault,
) -> Result<Record, ExchangeError> {
    let Some(format) = department.formats.get(&schema.name) else {
        return Ok(record);
    };
    match format.translate(&record.value, direction) {
        Ok(value) => Ok(Record {
            value,
            original: None,
        }),
        Err(errors) => {
            tracing::info!(
                department = %department.id,
                schema = %schema.label(),
                direction = direction.as_str(),
                errors = errors.len(),
                "record does not translate"
            );
            Err(ExchangeError::Translation {
                schema: schema.label(),
                department: department.id.to_string(),
                direction,
                fault,
                violations: errors
                    .iter()
                    .map(|error| error.to_violation(lang))
                    .collect(),
            })
        }
    }
}

/// Phase 5, to shared: the consumer's layout into the shared layout (its format for the
/// request schema; identity without one). A value that does not convert is the caller's 422.
fn to_shared(
    consumer: &Department,
    schema: Option<&CompiledSchema>,
    body: RequestBody,
    lang: Lang,
) -> Result<RequestBody, ExchangeError> {
    match (schema, body) {
        (Some(schema), RequestBody::Record(record)) => translate(
            consumer,
            schema,
            record,
            Direction::ToShared,
            lang,
            TranslationFault::Caller,
        )
        .map(RequestBody::Record),
        (_, body) => Ok(body),
    }
}

/// Phase 6, validate request: every violation (at most [`xgate_core::registry::MAX_VIOLATIONS`]),
/// reported at the consumer's own field names.
fn validate_request(
    consumer: &Department,
    schema: Option<&CompiledSchema>,
    body: &RequestBody,
    lang: Lang,
) -> Result<(), ExchangeError> {
    let (Some(schema), RequestBody::Record(record)) = (schema, body) else {
        return Ok(());
    };
    let mut violations = schema.validate(&record.value, lang);
    if violations.is_empty() {
        return Ok(());
    }
    if let Some(format) = consumer.formats.get(&schema.name) {
        format.relabel(&mut violations, lang);
    }
    Err(ExchangeError::SchemaValidation {
        schema: schema.label(),
        violations,
    })
}

/// Phase 7, to provider: the shared layout into the provider's layout. A valid shared record
/// the provider's format cannot express is a gateway configuration fault (502).
fn to_provider(
    provider: &Department,
    schema: Option<&CompiledSchema>,
    body: RequestBody,
    lang: Lang,
) -> Result<RequestBody, ExchangeError> {
    match (schema, body) {
        (Some(schema), RequestBody::Record(record)) => translate(
            provider,
            schema,
            record,
            Direction::FromShared,
            lang,
            TranslationFault::Gateway,
        )
        .map(RequestBody::Record),
        (_, body) => Ok(body),
    }
}

/// Phase 8, forward: the upstream URL + rest + the raw query, the method kept, headers per
/// SPEC §3.8, answered within the upstream timeout.
async fn forward(
    call: &Call<'_>,
    Parties {
        consumer, route, ..
    }: Parties<'_>,
    parts: &Parts,
    rest: &str,
    body: RequestBody,
) -> Result<Response<UpstreamBody>, ExchangeError> {
    // Authorize admitted the consumer, so it has a lane unless the upstream has no address.
    let Some(lane) = route.lanes.get(&consumer.id) else {
        tracing::error!(service = %route.service.name, provider = %route.service.provider, "a checked upstream has no address");
        return Err(ExchangeError::Internal);
    };
    // The caller's path rest and query come from a parsed request target, so they are already
    // valid URI characters and are passed on byte for byte.
    let mut path = String::with_capacity(route.upstream_path.len() + rest.len() + 1);
    path.push_str(&route.upstream_path);
    path.push_str(rest);
    if path.is_empty() {
        path.push('/');
    }
    let uri =
        upstream::origin_form(&path, parts.uri.query()).map_err(|_| ExchangeError::NotFound)?;
    let (body, rewritten) = match body {
        RequestBody::Stream(body) if http_body::Body::is_end_stream(&body) => {
            (Body::empty(), false)
        }
        RequestBody::Stream(body) => (body, false),
        RequestBody::Record(record) => {
            let unchanged = record.original.is_some();
            (Body::from(record.into_bytes()), !unchanged)
        }
    };
    let context = ForwardContext {
        consumer: consumer.id.as_str(),
        service: &route.label,
        request_id: &call.record.request_id,
        exchange_id: &call.record.exchange_id,
        origin: call.origin,
    };
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers::upstream_request_headers(&parts.headers, &context, rewritten);
    let timeout = call.snapshot.config.gateway.upstream_timeout;
    let sent = call.gateway.upstream.send(lane, request, call.caller);
    // The wait for a connection at the provider's cap counts against the timeout too.
    match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(UpstreamError::CallerGone)) => Err(ExchangeError::CallerGone),
        Ok(Err(UpstreamError::ConnectTimeout)) | Err(_) => Err(ExchangeError::UpstreamTimeout),
        Ok(Err(error)) => {
            tracing::warn!(service = %route.service.name, provider = %route.service.provider, error = %error, "upstream call failed");
            Err(ExchangeError::UpstreamUnavailable)
        }
    }
}

/// Passes a response on as it streams (no response schema, or a non-2xx status).
fn stream_response(upstream: Response<UpstreamBody>, request_id: &str) -> Response<Body> {
    let (parts, body) = upstream.into_parts();
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = parts.status;
    *response.headers_mut() =
        headers::downstream_response_headers(parts.headers, request_id, false);
    response
}

/// Reads a 2xx response that a schema describes: JSON, bounded in size and time.
async fn read_response(
    upstream: Response<UpstreamBody>,
    schema: &CompiledSchema,
    limit: usize,
    timeout: Duration,
) -> Result<(StatusCode, HeaderMap, Record), ExchangeError> {
    let invalid = || ExchangeError::UpstreamInvalidResponse {
        schema: schema.label(),
        violation_count: 0,
    };
    let (parts, body) = upstream.into_parts();
    if !is_json_media_type(&parts.headers) {
        return Err(invalid());
    }
    let bytes = match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => return Err(ExchangeError::UpstreamTimeout),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => return Err(invalid()),
        Ok(Err(error)) => match error.downcast_ref::<UpstreamBodyError>() {
            Some(UpstreamBodyError::ReadTimeout) => return Err(ExchangeError::UpstreamTimeout),
            _ => return Err(ExchangeError::UpstreamUnavailable),
        },
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let value = parse_json(&bytes).map_err(|_| invalid())?;
    Ok((
        parts.status,
        parts.headers,
        Record {
            value,
            original: Some(bytes),
        },
    ))
}

/// Phase 9, response to shared: the provider's layout into the shared layout. An answer that
/// does not translate is the provider's fault (502).
fn response_to_shared(
    provider: &Department,
    schema: &CompiledSchema,
    response: Record,
    lang: Lang,
) -> Result<Record, ExchangeError> {
    translate(
        provider,
        schema,
        response,
        Direction::ToShared,
        lang,
        TranslationFault::Upstream,
    )
}

/// Phase 10, validate response: an invalid body is not passed on (502).
fn validate_response(schema: &CompiledSchema, response: &Record) -> Result<(), ExchangeError> {
    let violations = schema.validate(&response.value, Lang::En);
    if violations.is_empty() {
        return Ok(());
    }
    for violation in violations.iter().take(10) {
        // Pointers and keywords only: the provider's values may be personal data.
        tracing::warn!(schema = %schema.label(), pointer = %violation.pointer, keyword = violation.keyword, "upstream response violates its schema");
    }
    Err(ExchangeError::UpstreamInvalidResponse {
        schema: schema.label(),
        violation_count: violations.len(),
    })
}

/// The audit key, when the route declares a subject: what [`subject_digest`] needs on the
/// CPU phases' thread (an `Arc` clone for those routes only).
fn subject_key(gateway: &Gateway, route: &Route) -> Option<Arc<AuditKey>> {
    route
        .service
        .subject
        .as_ref()
        .map(|_| gateway.audit.key().clone())
}

/// The keyed digest of the route's subject in a validated shared record, if it holds one
/// (SPEC §15): only the digest leaves this function, never the id.
fn subject_digest(route: &Route, key: Option<&AuditKey>, record: &Record) -> Option<String> {
    let (key, subject) = (key?, route.service.subject.as_ref()?);
    let id = subject.find(&record.value)?;
    Some(key.subject(subject.kind.as_str(), &id))
}

/// Phase 11, project: only the shared fields the service lists for this consumer (data
/// minimisation); all fields when it lists none.
fn project(route: &Route, consumer: &Department, response: Record) -> Record {
    match route.projections.get(&consumer.id) {
        None => response,
        Some(projection) => Record {
            value: projection.apply(response.value),
            original: None,
        },
    }
}

/// Phase 11 still, mask (SPEC §15): the service's masks for this consumer, after projection
/// and before its format; the masked values are not validated again. Without masks for it,
/// one lookup in an empty (or small) map and the record as it was.
fn mask(route: &Route, consumer: &Department, mut response: Record) -> Record {
    match route.masks.get(&consumer.id) {
        None => response,
        Some(masks) => {
            masks.apply(&mut response.value);
            Record {
                value: response.value,
                original: None,
            }
        }
    }
}

/// Phase 12, to consumer: the shared layout into the consumer's layout. A valid shared record
/// the consumer's format cannot express is a gateway configuration fault (502).
fn to_consumer(
    consumer: &Department,
    schema: &CompiledSchema,
    response: Record,
    lang: Lang,
) -> Result<Record, ExchangeError> {
    translate(
        consumer,
        schema,
        response,
        Direction::FromShared,
        lang,
        TranslationFault::Gateway,
    )
}

/// Builds the response to the caller from a (possibly rewritten) record's bytes.
fn respond(
    status: StatusCode,
    upstream_headers: HeaderMap,
    body: Bytes,
    rewritten: bool,
    request_id: &str,
) -> Response<Body> {
    let headers = headers::downstream_response_headers(upstream_headers, request_id, rewritten);
    let mut reply = Response::new(Body::from(body));
    *reply.status_mut() = status;
    *reply.headers_mut() = headers;
    reply
}

/// Phase 13, record: the call's audit entry (committed by [`exchange`] before answering; its
/// log line and metrics follow the commit): digests instead of the path, purpose and bodies. A response that
/// streams (no response schema, a non-2xx answer, a problem document) counts the length its
/// body declares and has no digest: the entry is committed before that body is sent. The
/// digests move from the record into the entry (the record has no further use for them).
fn audit_entry(
    record: &mut ExchangeRecord<'_>,
    response: &Response<Body>,
    outcome: Outcome,
    elapsed: Duration,
) -> AuditEntry {
    let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    AuditEntry {
        time: xgate_audit::now(),
        kind: EntryKind::Exchange,
        request_id: record.request_id.clone(),
        exchange_id: Some(record.exchange_id.clone()),
        consumer: record
            .consumer
            .map_or("unknown", |consumer| consumer.id.as_str())
            .to_owned(),
        provider: record.route.map(|route| route.service.provider.to_string()),
        service: record.route.map(|route| route.service.name.to_string()),
        method: record.method.to_string(),
        path_sha256: Some(std::mem::take(&mut record.path_sha256)),
        purpose_sha256: record.purpose_sha256.take(),
        status: response.status().as_u16(),
        outcome: outcome.as_str().to_owned(),
        request_bytes: record.request_bytes,
        response_bytes: record
            .response_bytes
            .or_else(|| http_body::Body::size_hint(response.body()).exact()),
        request_sha256: record.request_sha256.take(),
        response_sha256: record.response_sha256.take(),
        request_schema: record.request_schema.as_deref().map(CompiledSchema::label),
        response_schema: record.response_schema.as_deref().map(CompiledSchema::label),
        subject_sha256: record.subject_sha256.take(),
        purpose: record.purpose.code().map(ToString::to_string),
        total_us: micros(elapsed),
        upstream_us: record.upstream_duration.map(micros),
    }
}
