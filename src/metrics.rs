//! Prometheus metrics (SPEC §9): every metric name lives here, label values come only from
//! configuration or from the small enums below, never from request input.
//!
//! [`Metrics`] is owned by the [`crate::gateway::Gateway`]; the admin plane serves
//! [`Metrics::render`] at `GET /metrics`. Each kind of event is recorded by one method that
//! updates every metric it concerns.
//!
//! Label sets are bounded by construction: consumer, provider, service, department, schema,
//! type are configured names (or [`UNKNOWN`] when the request named nothing configured),
//! version a registered version, and outcome, direction, result and status words of the small
//! enums here. A reload or a registration can add label values; a request never can.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use xgate_audit::Outcome;
use xgate_core::translate::Direction;

/// The label value for a caller, provider, service or type that configuration does not name
/// (a reserved word: no department may be called so).
pub(crate) const UNKNOWN: &str = "unknown";

/// Latency buckets of the duration histograms, in seconds: 100 µs to 10 s, about three per
/// decade (SPEC §9).
pub(crate) const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Which side of an exchange a record was validated on (`direction` of
/// `xgate_validation_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The consumer's request.
    Request,
    /// The provider's response.
    Response,
}

impl Side {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Request => "request",
            Side::Response => "response",
        }
    }
}

/// The labels of one exchange: configured names, or [`UNKNOWN`] for what the call did not get
/// as far as identifying (an unauthenticated caller, a path naming no configured service).
#[derive(Debug, Clone, Copy)]
pub struct ExchangeLabels<'a> {
    /// The identified consumer.
    pub consumer: &'a str,
    /// The routed service's provider.
    pub provider: &'a str,
    /// The routed service.
    pub service: &'a str,
}

/// What one finished exchange adds to the metrics.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeObservation<'a> {
    /// Who called what.
    pub labels: ExchangeLabels<'a>,
    /// How it ended (SPEC §9).
    pub outcome: Outcome,
    /// Time in the gateway, from the request to the answer.
    pub duration: Duration,
    /// Time waiting for the upstream, when it was called.
    pub upstream: Option<Duration>,
    /// Request body bytes, when known.
    pub request_bytes: Option<u64>,
    /// Response body bytes, when known.
    pub response_bytes: Option<u64>,
}

/// The series exchanges of one consumer, service and outcome update
/// ([`Metrics::exchange_series`]). The count and the duration are observed for every exchange;
/// the others only when there is something to observe, so they are resolved then, under the
/// labels kept here: a series that was never observed is not exposed.
#[derive(Debug)]
pub struct ExchangeSeries {
    /// Consumer, provider and service.
    labels: [Box<str>; 3],
    count: IntCounter,
    duration: Histogram,
    upstream: OnceLock<Histogram>,
    request_bytes: OnceLock<IntCounter>,
    response_bytes: OnceLock<IntCounter>,
}

impl ExchangeSeries {
    /// Records one finished exchange under these series' labels and outcome (those of
    /// `observation` are not read): its count, its durations and its bytes.
    pub fn record(&self, metrics: &Metrics, observation: &ExchangeObservation<'_>) {
        let labels = self.labels.each_ref().map(|label| &**label);
        let [_, provider, service] = labels;
        self.count.inc();
        self.duration.observe(observation.duration.as_secs_f64());
        if let Some(upstream) = observation.upstream {
            self.upstream
                .get_or_init(|| {
                    metrics
                        .upstream_duration
                        .with_label_values(&[provider, service])
                })
                .observe(upstream.as_secs_f64());
        }
        if let Some(bytes) = observation.request_bytes.filter(|bytes| *bytes > 0) {
            self.request_bytes
                .get_or_init(|| metrics.request_bytes.with_label_values(&labels))
                .inc_by(bytes);
        }
        if let Some(bytes) = observation.response_bytes.filter(|bytes| *bytes > 0) {
            self.response_bytes
                .get_or_init(|| metrics.response_bytes.with_label_values(&labels))
                .inc_by(bytes);
        }
    }
}

/// The Prometheus text exposition media type.
pub(crate) const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How a certificate lookup ended (`result` of `xgate_certificate_lookups_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupResult {
    /// Served from a fresh cache entry.
    Hit,
    /// Fetched from the issuer (alone or coalesced with concurrent lookups).
    Miss,
    /// The issuer failed; an expired entry inside the stale window was served.
    Stale,
    /// The issuer has no such certificate (fresh or remembered).
    NotFound,
    /// Refused, or the issuer failed with nothing to stand in.
    Error,
    /// Refused before the cache because the audit trail cannot commit.
    StoreUnavailable,
}

impl LookupResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LookupResult::Hit => "hit",
            LookupResult::Miss => "miss",
            LookupResult::Stale => "stale",
            LookupResult::NotFound => "not_found",
            LookupResult::Error => "error",
            LookupResult::StoreUnavailable => "store_unavailable",
        }
    }
}

/// How an issuer call ended, as a bounded class (`status` of
/// `xgate_certificate_issuer_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IssuerStatus {
    /// 200.
    Ok,
    /// 404.
    NotFound,
    /// Any other 4xx (or 1xx/3xx: anything not 2xx/5xx that is not an answer).
    ClientError,
    /// Any other 2xx.
    OtherSuccess,
    /// 5xx.
    ServerError,
    /// Refused, reset or broken connection.
    Error,
    /// No answer within the upstream timeout.
    Timeout,
}

impl IssuerStatus {
    /// The class of an HTTP status.
    pub fn of(status: http::StatusCode) -> IssuerStatus {
        match status.as_u16() {
            200 => IssuerStatus::Ok,
            404 => IssuerStatus::NotFound,
            201..=299 => IssuerStatus::OtherSuccess,
            500..=599 => IssuerStatus::ServerError,
            _ => IssuerStatus::ClientError,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerStatus::Ok => "200",
            IssuerStatus::NotFound => "404",
            IssuerStatus::OtherSuccess => "2xx",
            IssuerStatus::ClientError => "4xx",
            IssuerStatus::ServerError => "5xx",
            IssuerStatus::Error => "error",
            IssuerStatus::Timeout => "timeout",
        }
    }
}

/// Sizes of the audit writer's batches (`xgate_audit_batch_entries`): powers of two up to
/// `audit::MAX_BATCH`.
pub(crate) const BATCH_BUCKETS: [f64; 10] =
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// What the audit writer thread updates.
#[derive(Clone)]
pub struct AuditMetrics {
    /// `xgate_audit_entries_total`: entries committed.
    pub entries: IntCounter,
    /// `xgate_audit_batch_entries`: entries per committed batch (one transaction, one sync
    /// with `synchronous = "full"`).
    pub batch_entries: Histogram,
    /// `xgate_audit_store_unavailable`: 1 while the trail cannot commit and new exchanges and
    /// lookups are refused with 503 `store-unavailable`, 0 otherwise.
    pub store_unavailable: IntGauge,
}

impl xgate_audit::TrailObserver for AuditMetrics {
    fn committed(&self, entries: u64) {
        self.entries.inc_by(entries);
        self.batch_entries.observe(entries as f64);
    }

    fn unavailable(&self, unavailable: bool) {
        self.store_unavailable.set(i64::from(unavailable));
    }
}

/// The gateway's metrics, registered in their own registry (nothing global).
pub struct Metrics {
    registry: Registry,
    exchanges: IntCounterVec,
    exchange_duration: HistogramVec,
    upstream_duration: HistogramVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    validation_failures: IntCounterVec,
    translation_failures: IntCounterVec,
    schema_registrations: IntCounterVec,
    config_reloads: IntCounterVec,
    audit: AuditMetrics,
    certificate_lookups: IntCounterVec,
    certificate_issuer_requests: IntCounterVec,
    certificate_cache_entries: IntGauge,
    purpose_uses: IntCounterVec,
}

impl Metrics {
    /// Registers every metric; `xgate_build_info{version}` is set to 1.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(counter.clone()))?;
            Ok::<_, prometheus::Error>(counter)
        };
        let histogram = |name: &str, help: &str| {
            let histogram = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec()),
                &["provider", "service"],
            )?;
            registry.register(Box::new(histogram.clone()))?;
            Ok::<_, prometheus::Error>(histogram)
        };
        let exchanges = counter(
            "xgate_exchanges_total",
            "Exchanges by consumer, provider, service and outcome (SPEC §9).",
            &["consumer", "provider", "service", "outcome"],
        )?;
        let exchange_duration = histogram(
            "xgate_exchange_duration_seconds",
            "Time from an exchange's request to its answer in the gateway.",
        )?;
        let upstream_duration = histogram(
            "xgate_upstream_duration_seconds",
            "Time waiting for the provider's answer (its headers).",
        )?;
        let request_bytes = counter(
            "xgate_exchange_request_bytes_total",
            "Request body bytes of exchanges, as read or declared.",
            &["consumer", "provider", "service"],
        )?;
        let response_bytes = counter(
            "xgate_exchange_response_bytes_total",
            "Response body bytes of exchanges, as built or declared.",
            &["consumer", "provider", "service"],
        )?;
        let validation_failures = counter(
            "xgate_validation_failures_total",
            "Records refused by their schema, by schema, version and side (request, response).",
            &["schema", "version", "direction"],
        )?;
        let translation_failures = counter(
            "xgate_translation_failures_total",
            "Records that did not translate, by department (whose format), schema and direction (to-shared, from-shared).",
            &["department", "schema", "direction"],
        )?;
        let schema_registrations = counter(
            "xgate_schema_registrations_total",
            "Schema registrations by outcome.",
            &["outcome"],
        )?;
        let config_reloads = counter(
            "xgate_config_reloads_total",
            "Configuration reloads by outcome (ok, refused).",
            &["outcome"],
        )?;
        let purpose_uses = counter(
            "xgate_purpose_uses_total",
            "Exchanges and certificate lookups by consumer, service (or certificate type) and stated purpose: a code of [purposes], none without Xgate-Purpose, other for free text.",
            &["consumer", "service", "purpose"],
        )?;
        let audit_entries = IntCounter::new(
            "xgate_audit_entries_total",
            "Audit entries committed (exchanges and certificate lookups).",
        )?;
        registry.register(Box::new(audit_entries.clone()))?;
        let audit_batch_entries = Histogram::with_opts(
            HistogramOpts::new(
                "xgate_audit_batch_entries",
                "Entries per batch the audit writer committed (one transaction each).",
            )
            .buckets(BATCH_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(audit_batch_entries.clone()))?;
        let audit_store_unavailable = IntGauge::new(
            "xgate_audit_store_unavailable",
            "1 while the audit trail cannot commit (exchanges and lookups are refused with 503), else 0.",
        )?;
        registry.register(Box::new(audit_store_unavailable.clone()))?;
        let certificate_lookups = IntCounterVec::new(
            Opts::new(
                "xgate_certificate_lookups_total",
                "Certificate lookups by type, consumer and result (hit, miss, stale, not_found, error, store_unavailable).",
            ),
            &["type", "consumer", "result"],
        )?;
        let certificate_issuer_requests = IntCounterVec::new(
            Opts::new(
                "xgate_certificate_issuer_requests_total",
                "Calls to certificate issuers by type and status class.",
            ),
            &["type", "status"],
        )?;
        let certificate_cache_entries = IntGauge::new(
            "xgate_certificate_cache_entries",
            "Entries in the certificate cache (found and not-found answers).",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("xgate_build_info", "The running xgate build; always 1."),
            &["version"],
        )?;
        registry.register(Box::new(certificate_lookups.clone()))?;
        registry.register(Box::new(certificate_issuer_requests.clone()))?;
        registry.register(Box::new(certificate_cache_entries.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(Metrics {
            registry,
            exchanges,
            exchange_duration,
            upstream_duration,
            request_bytes,
            response_bytes,
            validation_failures,
            translation_failures,
            schema_registrations,
            config_reloads,
            audit: AuditMetrics {
                entries: audit_entries,
                batch_entries: audit_batch_entries,
                store_unavailable: audit_store_unavailable,
            },
            certificate_lookups,
            certificate_issuer_requests,
            certificate_cache_entries,
            purpose_uses,
        })
    }

    /// The series an exchange of `labels` with `outcome` updates. Each lookup by label values
    /// hashes them and takes a lock, five per exchange: the exchange path keeps the series of
    /// served exchanges with their route (`Route::served`) and looks them up once.
    pub(crate) fn exchange_series(
        &self,
        labels: ExchangeLabels<'_>,
        outcome: Outcome,
    ) -> ExchangeSeries {
        let ExchangeLabels {
            consumer,
            provider,
            service,
        } = labels;
        ExchangeSeries {
            labels: [consumer.into(), provider.into(), service.into()],
            count: self.exchanges.with_label_values(&[
                consumer,
                provider,
                service,
                outcome.as_str(),
            ]),
            duration: self
                .exchange_duration
                .with_label_values(&[provider, service]),
            upstream: OnceLock::new(),
            request_bytes: OnceLock::new(),
            response_bytes: OnceLock::new(),
        }
    }

    /// Records one finished exchange: its count by outcome, its durations and its bytes.
    pub fn exchange(&self, observation: &ExchangeObservation<'_>) {
        self.exchange_series(observation.labels, observation.outcome)
            .record(self, observation);
    }

    /// Counts a record its schema refused. `schema` must be a registered name.
    pub(crate) fn validation_failure(&self, schema: &str, version: u32, side: Side) {
        self.validation_failures
            .with_label_values(&[schema, &version.to_string(), side.as_str()])
            .inc();
    }

    /// Counts a record that did not translate with `department`'s format for `schema`.
    pub(crate) fn translation_failure(&self, department: &str, schema: &str, direction: Direction) {
        self.translation_failures
            .with_label_values(&[department, schema, direction.as_str()])
            .inc();
    }

    /// Counts a schema registration by its outcome word.
    pub(crate) fn schema_registration(&self, outcome: &'static str) {
        self.schema_registrations
            .with_label_values(&[outcome])
            .inc();
    }

    /// Counts a configuration reload: `ok` or `refused`.
    pub(crate) fn config_reload(&self, outcome: &'static str) {
        self.config_reloads.with_label_values(&[outcome]).inc();
    }

    /// What the audit writer updates: committed entries, batch sizes, availability.
    pub fn audit(&self) -> AuditMetrics {
        self.audit.clone()
    }

    /// Counts one certificate lookup. `certificate_type` and `consumer` must be configured
    /// names or [`UNKNOWN`].
    pub(crate) fn certificate_lookup(
        &self,
        certificate_type: &str,
        consumer: &str,
        result: LookupResult,
    ) {
        self.certificate_lookups
            .with_label_values(&[certificate_type, consumer, result.as_str()])
            .inc();
    }

    /// Counts one exchange or certificate lookup by its stated purpose. `consumer` and `service`
    /// (a service name or a certificate type) must be configured names or [`UNKNOWN`], `purpose`
    /// a code of `[purposes]`, `none` or `other`.
    pub(crate) fn purpose_use(&self, consumer: &str, service: &str, purpose: &str) {
        self.purpose_uses
            .with_label_values(&[consumer, service, purpose])
            .inc();
    }

    /// Counts one call to a certificate issuer. `certificate_type` must be a configured type.
    pub(crate) fn certificate_issuer_request(&self, certificate_type: &str, status: IssuerStatus) {
        self.certificate_issuer_requests
            .with_label_values(&[certificate_type, status.as_str()])
            .inc();
    }

    /// Sets the certificate cache's entry count (read at scrape time).
    pub(crate) fn set_certificate_cache_entries(&self, entries: u64) {
        self.certificate_cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_are_bounded() {
        let classes: Vec<&str> = [200, 201, 204, 301, 400, 404, 410, 500, 503, 599]
            .into_iter()
            .filter_map(|code| http::StatusCode::from_u16(code).ok())
            .map(|status| IssuerStatus::of(status).as_str())
            .collect();
        assert_eq!(
            classes,
            [
                "200", "2xx", "2xx", "4xx", "4xx", "404", "4xx", "5xx", "5xx", "5xx"
            ]
        );
    }

    #[test]
    fn render_names_every_metric() {
        let metrics = Metrics::new().unwrap();
        metrics.certificate_lookup("business-license", "tax", LookupResult::Hit);
        metrics.certificate_issuer_request("business-license", IssuerStatus::Timeout);
        metrics.set_certificate_cache_entries(3);
        let text = String::from_utf8(metrics.render().unwrap()).unwrap();
        assert!(text.contains(
            r#"xgate_certificate_lookups_total{consumer="tax",result="hit",type="business-license"} 1"#
        ));
        assert!(text.contains(
            r#"xgate_certificate_issuer_requests_total{status="timeout",type="business-license"} 1"#
        ));
        assert!(text.contains("xgate_certificate_cache_entries 3"));
        assert!(text.contains(&format!(
            r#"xgate_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        )));
    }
}
