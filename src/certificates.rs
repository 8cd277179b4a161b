//! Electronic-certificate lookups (SPEC §8): `GET /certificates/{type}/{id}` through the
//! coalescing cache, and `POST /certificates/{type}/{id}/invalidate` for the issuing department.
//!
//! A lookup goes through these phases, in this order ([`lookup`] reads top-down):
//! identify (401), route (unknown type → 404), authorize (not a consumer → 403), admit (the
//! bounds on calls in flight, which lookups share with exchanges → 429, 503), purpose
//! (`Xgate-Purpose` missing → 400; not one the type lists → 403; too long → 431), check id (`id_format` → 422, before any issuer call),
//! look up (the cache; the issuer only on a miss), to consumer (the shared record, masked for the
//! caller (SPEC §15) on a copy, into the caller's layout, on every response, after the cache),
//! record ([`record_lookup`]: metrics, log
//! event and the audit entry, committed before the answer leaves).
//!
//! The cache ([`cache`]) holds shared records, validated by [`issuer::fetch`] before they are
//! stored; ids never appear in logs or metrics (a SHA-256 does).

pub mod cache;
pub mod issuer;
pub mod issuers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};

use crate::admission::InFlightPermit;
use crate::caller::Caller;
use crate::config::Department;
use crate::gateway::Gateway;
use crate::identity::identify_department;
use crate::metrics::{LookupResult, UNKNOWN};
use crate::problem::{ExchangeError, TranslationFault};
use crate::purpose::Stated;
use crate::snapshot::Snapshot;
use crate::tls::{ClientCertificate, ConnectionCertificate, presented};
use cache::{Answer, CacheEntry, CacheKey, Lookup};
use issuer::FetchContext;
use issuers::Issuer;
use xgate_audit::{AuditEntry, EntryKind, Outcome};
use xgate_core::translate::Direction;

/// `Xgate-Purpose`: why the caller looks a certificate up (required, audited).
pub(crate) const XGATE_PURPOSE: HeaderName = HeaderName::from_static("xgate-purpose");
/// `Xgate-Cache`: `hit`, `miss` or `stale`.
pub(crate) const XGATE_CACHE: HeaderName = HeaderName::from_static("xgate-cache");

/// How the cache answered, for `Xgate-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheStatus {
    /// A fresh entry.
    Hit,
    /// Asked the issuer.
    Miss,
    /// An expired entry standing in for a failing issuer.
    Stale,
}

impl CacheStatus {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
        }
    }
}

/// What one lookup leaves for the record phase: labels from configuration only, the id and the
/// purpose only as keyed digests in anything written out.
pub(crate) struct LookupRecord<'a> {
    /// The lookup's request id.
    pub request_id: &'a str,
    /// The gateway's own id of the lookup (`Xgate-Exchange-Id`).
    pub exchange_id: &'a str,
    /// The configured type, or [`UNKNOWN`].
    pub certificate_type: &'a str,
    /// The identified consumer, or [`UNKNOWN`].
    pub consumer: &'a str,
    /// `Xgate-Purpose` as sent (stored by the audit trail; logged only as length and hash).
    pub purpose: Option<&'a [u8]>,
    /// What `Xgate-Purpose` states: a vocabulary code is recorded in clear.
    pub stated: Stated<'a>,
    /// The keyed digest of the id as the type's subject (SPEC §15), once it passed the format
    /// check.
    pub subject_sha256: Option<String>,
    /// How the lookup ended.
    pub result: LookupResult,
    /// The outcome word of a refusal or failure (SPEC §9), for the audit entry; `None` when the
    /// lookup was answered from the cache or the issuer (the entry then records the result).
    pub refusal: Option<Outcome>,
    /// The issuing department, once the type is routed.
    pub issuer: Option<&'a str>,
    /// Whether the lookup went to the cache (and possibly the issuer).
    pub looked_up: bool,
    /// The response status.
    pub status: StatusCode,
    /// Time from the request to the response.
    pub elapsed: Duration,
    /// The lookup's room under the in-flight bounds, once admitted (held until its entry is
    /// committed; a fetch it started holds it too).
    pub in_flight: Option<Arc<InFlightPermit>>,
}

/// The record phase of a lookup: counts it in `xgate_certificate_lookups_total`, logs an event
/// without the id or the purpose (answered lookups at debug level, refusals and failures at
/// info, as exchanges are) and returns the lookup's audit entry (the caller commits it before
/// answering).
pub(crate) fn record_lookup(
    gateway: &Gateway,
    record: &LookupRecord<'_>,
    response: &Response<Body>,
) -> AuditEntry {
    gateway
        .metrics
        .certificate_lookup(record.certificate_type, record.consumer, record.result);
    gateway.metrics.purpose_use(
        record.consumer,
        record.certificate_type,
        record.stated.label(),
    );
    macro_rules! event {
        ($level:expr) => {
            // The hashes are computed only when the event is written.
            if tracing::enabled!($level) {
                let purpose_sha256 = record
                    .purpose
                    .map(|purpose| gateway.audit.key().digest(purpose));
                tracing::event!(
                    $level,
                    request_id = record.request_id,
                    exchange_id = record.exchange_id,
                    certificate_type = record.certificate_type,
                    consumer = record.consumer,
                    subject_sha256 = record.subject_sha256.as_deref(),
                    purpose_bytes = record.purpose.map(<[u8]>::len),
                    purpose_sha256 = purpose_sha256.as_deref(),
                    result = record.result.as_str(),
                    status = record.status.as_u16(),
                    total_ms = record.elapsed.as_secs_f64() * 1000.0,
                    "certificate lookup"
                );
            }
        };
    }
    if matches!(
        record.result,
        LookupResult::Error | LookupResult::StoreUnavailable
    ) {
        event!(tracing::Level::INFO);
    } else {
        event!(tracing::Level::DEBUG);
    }
    audit_entry(gateway, record, response)
}

/// The audit entry of a lookup (SPEC §9): the type in `service`, the issuer in `provider`, the
/// id and the purpose only as keyed digests. Its outcome is the cache's answer (`hit`, `miss`,
/// `stale`), `not_found` for a certificate the issuer does not have, or the refusal's outcome
/// word — so the trail alone gives the cache's hit ratio.
fn audit_entry(
    gateway: &Gateway,
    record: &LookupRecord<'_>,
    response: &Response<Body>,
) -> AuditEntry {
    let outcome = match (record.refusal, record.result) {
        (Some(refusal), _) => refusal,
        (None, LookupResult::Hit) => Outcome::Hit,
        (None, LookupResult::Miss) => Outcome::Miss,
        (None, LookupResult::Stale) => Outcome::Stale,
        (None, LookupResult::NotFound) => Outcome::NotFound,
        // An answered lookup always has a result; keep the entry truthful if that changes.
        (None, LookupResult::Error) => Outcome::UpstreamError,
        (None, LookupResult::StoreUnavailable) => Outcome::StoreUnavailable,
    };
    let known = |label: &str| (label != UNKNOWN).then(|| label.to_owned());
    AuditEntry {
        time: xgate_audit::now(),
        kind: EntryKind::Certificate,
        request_id: record.request_id.to_owned(),
        exchange_id: Some(record.exchange_id.to_owned()),
        consumer: record.consumer.to_owned(),
        provider: record.issuer.map(str::to_owned),
        service: known(record.certificate_type),
        method: Method::GET.to_string(),
        path_sha256: None,
        purpose_sha256: record
            .purpose
            .filter(|_| record.stated == Stated::Text)
            .map(|purpose| gateway.audit.key().digest(purpose)),
        purpose: record.stated.code().map(ToString::to_string),
        status: response.status().as_u16(),
        outcome: outcome.as_str().to_owned(),
        request_bytes: None,
        response_bytes: http_body::Body::size_hint(response.body()).exact(),
        request_sha256: None,
        response_sha256: None,
        request_schema: None,
        response_schema: None,
        subject_sha256: record.subject_sha256.clone(),
        total_us: u64::try_from(record.elapsed.as_micros()).unwrap_or(u64::MAX),
        upstream_us: None,
    }
}

/// A lookup's answer before it becomes a response.
struct Answered {
    cache: CacheStatus,
    age: Duration,
    /// The body in the caller's layout, or the problem (certificate not found, a record the
    /// caller's format cannot express).
    body: Result<Bytes, ExchangeError>,
}

/// GET `/certificates/{type}/{id}`.
pub async fn lookup(
    State(gateway): State<Arc<Gateway>>,
    path: Result<Path<(String, String)>, PathRejection>,
    certificate: ConnectionCertificate,
    headers: HeaderMap,
) -> Response<Body> {
    let started = Instant::now();
    let caller = Caller::from_headers(&headers);
    let snapshot = gateway.snapshot();
    let exchange_id = crate::headers::new_exchange_id();
    let mut record = LookupRecord {
        request_id: &caller.request_id,
        exchange_id: &exchange_id,
        certificate_type: UNKNOWN,
        consumer: UNKNOWN,
        purpose: None,
        stated: Stated::of(&snapshot.config, &headers),
        subject_sha256: None,
        result: LookupResult::Error,
        refusal: None,
        issuer: None,
        looked_up: false,
        status: StatusCode::OK,
        elapsed: Duration::ZERO,
        in_flight: None,
    };
    let credentials = (&headers, presented(&certificate));
    let response =
        match run_lookup(&gateway, &snapshot, path, credentials, &caller, &mut record).await {
            Ok(answered) => {
                if let Err(error) = &answered.body {
                    record.refusal = Some(error.outcome());
                }
                respond(&caller, answered)
            }
            Err(error) => {
                record.refusal = Some(error.outcome());
                caller.problem(&error)
            }
        };
    record.status = response.status();
    record.elapsed = started.elapsed();
    let entry = record_lookup(&gateway, &record, &response);
    let mut response = commit_lookup(&gateway, &caller, record.looked_up, entry, response).await;
    crate::headers::tag_exchange_id(response.headers_mut(), &exchange_id);
    response
}

/// The entry is committed before the answer leaves, in a task of its own: a caller that hangs
/// up (dropping the handler) cannot cancel it. As for exchanges: while the trail cannot
/// commit, a lookup that did not reach the cache is answered 503 `store-unavailable` without
/// an entry; an entry that cannot be committed makes a lookup that did not reach the cache
/// 503, one that did 500 `internal` (the certificate is withheld).
async fn commit_lookup(
    gateway: &Arc<Gateway>,
    caller: &Caller,
    looked_up: bool,
    entry: AuditEntry,
    response: Response<Body>,
) -> Response<Body> {
    let refused = || caller.problem(&ExchangeError::store_unavailable());
    if !looked_up && gateway.audit.is_unavailable() {
        return refused();
    }
    let audit = gateway.clone();
    let committed = gateway
        .tasks
        .spawn(async move { audit.audit.append(entry).await });
    match committed.await {
        Ok(Ok(_)) => response,
        _ if !looked_up => refused(),
        _ => caller.problem(&ExchangeError::Internal),
    }
}

/// The phases of a lookup up to the answer; a refusal before the cache is an `Err`.
async fn run_lookup<'s>(
    gateway: &Arc<Gateway>,
    snapshot: &'s Arc<Snapshot>,
    path: Result<Path<(String, String)>, PathRejection>,
    (headers, certificate): (&'s HeaderMap, Option<&ClientCertificate>),
    caller: &Caller,
    record: &mut LookupRecord<'s>,
) -> Result<Answered, ExchangeError> {
    let consumer = identify_department(snapshot, headers, certificate)?;
    record.consumer = consumer.id.as_str();
    let (certificate_type, id) = path_parts(path)?;
    let issuer = route(snapshot, &certificate_type)?;
    record.certificate_type = issuer.settings.certificate_type.as_str();
    record.issuer = Some(issuer.settings.issuer.as_str());
    authorize(consumer, issuer)?;
    // Lookups share the exchanges' bounds: a lookup holds a caller's connection and, on a
    // miss, a fetch that runs on after its caller hangs up, just as an exchange does.
    let in_flight = Arc::new(
        gateway
            .admission
            .admit(&consumer.id, &snapshot.config.gateway)?,
    );
    record.in_flight = Some(in_flight.clone());
    // A purpose too long to take is refused without a digest of it.
    record.purpose = Some(purpose(headers)?).filter(|_| record.stated != Stated::TooLong);
    record.stated.check(&issuer.settings.purposes)?;
    check_id(issuer, &id)?;
    record.subject_sha256 = Some(
        gateway
            .audit
            .key()
            .subject(issuer.settings.subject_kind.as_str(), &id),
    );
    // An answer that cannot be audited is not given, not even from the cache.
    if gateway.audit.is_unavailable() {
        record.result = LookupResult::StoreUnavailable;
        return Err(ExchangeError::store_unavailable());
    }
    record.looked_up = true;
    let key = CacheKey {
        certificate_type: issuer.settings.certificate_type.clone(),
        id: id.into(),
    };
    let fetch = issuer::fetch(
        FetchContext {
            gateway: gateway.clone(),
            snapshot: snapshot.clone(),
            request_id: caller.request_id.clone(),
            _in_flight: in_flight,
            exchange_id: record.exchange_id.to_owned(),
        },
        issuer.clone(),
        key.id.clone(),
    );
    let (cache, entry) = match gateway.certificates.lookup(key, fetch).await {
        Lookup::Hit(entry) => (CacheStatus::Hit, entry),
        Lookup::Miss(entry) => (CacheStatus::Miss, entry),
        Lookup::Stale(entry, error) => {
            tracing::info!(
                certificate_type = record.certificate_type,
                problem = error.problem_type(),
                "certificate issuer failed; serving a stale entry"
            );
            (CacheStatus::Stale, entry)
        }
        Lookup::Failed(error) => return Err(error),
    };
    record.result = match (&entry.answer, cache) {
        (Answer::NotFound, _) => LookupResult::NotFound,
        (_, CacheStatus::Hit) => LookupResult::Hit,
        (_, CacheStatus::Miss) => LookupResult::Miss,
        (_, CacheStatus::Stale) => LookupResult::Stale,
    };
    let body = to_consumer(snapshot, consumer, issuer, &entry, caller);
    if body.is_err() {
        record.result = match entry.answer {
            Answer::NotFound => LookupResult::NotFound,
            Answer::Found(_) => LookupResult::Error,
        };
    }
    Ok(Answered {
        cache,
        // The cache's clock (see `cache`): the same the entry's fetch time was read on.
        age: entry.age(tokio::time::Instant::now()),
        body,
    })
}

/// The type and id from the path; an id that is not UTF-8 once percent-decoded is a 400.
pub(crate) fn path_parts(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ExchangeError> {
    path.map(|Path(parts)| parts)
        .map_err(|_| ExchangeError::InvalidParameter { name: "id" })
}

/// Route: the configured type (404 otherwise).
pub fn route<'s>(
    snapshot: &'s Snapshot,
    certificate_type: &str,
) -> Result<&'s Arc<Issuer>, ExchangeError> {
    snapshot
        .certificate_issuers
        .get(certificate_type)
        .ok_or(ExchangeError::NotFound)
}

/// Authorize: the caller is one of the type's consumers (403 otherwise).
fn authorize(consumer: &Department, issuer: &Issuer) -> Result<(), ExchangeError> {
    if issuer.settings.consumers.contains(&consumer.id) {
        Ok(())
    } else {
        Err(ExchangeError::Forbidden)
    }
}

/// Purpose: `Xgate-Purpose`, not blank (400 `purpose-required` otherwise). Its bytes are kept
/// as sent (header limits bound them): a purpose in Chinese is UTF-8 and not a visible-ASCII
/// header value.
fn purpose(headers: &HeaderMap) -> Result<&[u8], ExchangeError> {
    headers
        .get(XGATE_PURPOSE)
        .map(HeaderValue::as_bytes)
        .filter(|purpose| !purpose.trim_ascii().is_empty())
        .ok_or(ExchangeError::PurposeRequired)
}

/// Check id: the type's `id_format`, before any issuer call (422 otherwise).
pub(crate) fn check_id(issuer: &Issuer, id: &str) -> Result<(), ExchangeError> {
    if issuer.accepts_id(id) {
        Ok(())
    } else {
        Err(ExchangeError::InvalidCertificateId {
            id_format: issuer.settings.id_format.clone(),
        })
    }
}

/// To consumer: the shared record, masked by the type's masks for the caller (SPEC §15), in the
/// caller's layout when it has a format for the type's schema (a record it cannot express is
/// the gateway's 502), as cached otherwise.
fn to_consumer(
    snapshot: &Snapshot,
    consumer: &Department,
    issuer: &Issuer,
    entry: &CacheEntry,
    caller: &Caller,
) -> Result<Bytes, ExchangeError> {
    let record = match &entry.answer {
        Answer::NotFound => return Err(ExchangeError::CertificateNotFound),
        Answer::Found(record) => record,
    };
    // The cached record stays as the issuer gave it: masks are the consumer's, on a copy.
    let masked = issuer.masks.get(&consumer.id).map(|masks| {
        let mut value = record.value.clone();
        masks.apply(&mut value);
        value
    });
    let schema_name = issuer.settings.schema.name.as_str();
    let Some(format) = consumer.formats.get(schema_name) else {
        return Ok(match masked {
            // Serializing a value cannot fail.
            Some(value) => Bytes::from(serde_json::to_vec(&value).unwrap_or_default()),
            None => record.bytes.clone(),
        });
    };
    match format.translate(
        masked.as_ref().unwrap_or(&record.value),
        Direction::FromShared,
    ) {
        // Serializing a translated value cannot fail.
        Ok(own) => Ok(Bytes::from(serde_json::to_vec(&own).unwrap_or_default())),
        Err(errors) => {
            tracing::warn!(
                certificate_type = %issuer.settings.certificate_type,
                consumer = %consumer.id,
                errors = errors.len(),
                "a certificate does not translate into the consumer's layout"
            );
            let schema = snapshot
                .registry
                .resolve(&issuer.settings.schema)
                .map(|schema| schema.label())
                .unwrap_or_else(|_| issuer.settings.schema.to_string());
            Err(ExchangeError::Translation {
                schema,
                department: consumer.id.to_string(),
                direction: Direction::FromShared,
                fault: TranslationFault::Gateway,
                violations: errors
                    .iter()
                    .map(|error| error.to_violation(caller.lang))
                    .collect(),
            })
        }
    }
}

/// The response: the record (or the problem) with `Xgate-Cache`, `Age` and `Cache-Control:
/// no-store` (certificates carry personal data: no shared cache on the way keeps them).
fn respond(caller: &Caller, answered: Answered) -> Response<Body> {
    let mut response = match answered.body {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            caller.tag(response)
        }
        Err(error) => caller.problem(&error),
    };
    let headers = response.headers_mut();
    headers.insert(
        XGATE_CACHE,
        HeaderValue::from_static(answered.cache.as_str()),
    );
    headers.insert(header::AGE, HeaderValue::from(answered.age.as_secs()));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// POST `/certificates/{type}/{id}/invalidate`: the issuing department drops a cached
/// certificate (after a revocation or a change); 204. Other departments get 403.
pub async fn invalidate(
    State(gateway): State<Arc<Gateway>>,
    path: Result<Path<(String, String)>, PathRejection>,
    certificate: ConnectionCertificate,
    headers: HeaderMap,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    let snapshot = gateway.snapshot();
    let outcome = async {
        let department = identify_department(&snapshot, &headers, presented(&certificate))?;
        let (certificate_type, id) = path_parts(path)?;
        let issuer = route(&snapshot, &certificate_type)?;
        if issuer.settings.issuer != department.id {
            return Err(ExchangeError::Forbidden);
        }
        check_id(issuer, &id)?;
        drop_certificate(&gateway, issuer, &id, department.id.as_str()).await
    }
    .await;
    match outcome {
        Ok(()) => no_content(&caller),
        Err(error) => caller.problem(&error),
    }
}

/// Drops one certificate from the cache and logs who did (the id as its keyed digest); with a store,
/// every other gateway is told (answered 503 `store-unavailable` when it cannot be: the
/// caller tries again, this gateway's entry is gone already).
pub(crate) async fn drop_certificate(
    gateway: &Gateway,
    issuer: &Issuer,
    id: &str,
    by: &str,
) -> Result<(), ExchangeError> {
    let key = CacheKey {
        certificate_type: issuer.settings.certificate_type.clone(),
        id: id.into(),
    };
    gateway.certificates.invalidate(&key).await;
    tracing::info!(
        certificate_type = %issuer.settings.certificate_type,
        subject_sha256 = %gateway.audit.key().subject(issuer.settings.subject_kind.as_str(), id),
        by,
        "certificate invalidated"
    );
    announce_invalidation(gateway, &issuer.settings.certificate_type, Some(id)).await
}

/// Tells every other gateway sharing the store to drop a certificate (or a whole type).
pub(crate) async fn announce_invalidation(
    gateway: &Gateway,
    certificate_type: &xgate_core::domain::CertificateType,
    id: Option<&str>,
) -> Result<(), ExchangeError> {
    let Some(store) = gateway.store() else {
        return Ok(());
    };
    let invalidation = crate::store::listener::Invalidation {
        from: gateway.origin().to_owned(),
        certificate_type: certificate_type.to_string(),
        id: id.map(str::to_owned),
    };
    crate::store::listener::announce(store, &invalidation)
        .await
        .map_err(|error| {
            tracing::error!(%error, "a certificate invalidation could not be sent to the other gateways");
            ExchangeError::StoreUnreachable
        })
}

/// 204 with the request id.
pub(crate) fn no_content(caller: &Caller) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    caller.tag(response)
}
