//! Prometheus metrics (SPEC §9): every metric name lives here, label values come only from
//! configuration or from the small enums below, never from request input.
//!
//! [`Metrics`] is owned by the [`crate::gateway::Gateway`]; the admin plane serves
//! [`Metrics::render`] at `GET /metrics`. Each outcome is recorded by one method that updates
//! every metric it concerns, so a new kind of event (the exchanges of issue 7) is one more
//! field registered in [`Metrics::new`] and one more recording method.

use prometheus::{Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// The label value for a caller or type that configuration does not name.
pub const UNKNOWN: &str = "unknown";

/// The Prometheus text exposition media type.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How a certificate lookup ended (`result` of `xgate_certificate_lookups_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
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
        }
    }
}

/// How an issuer call ended, as a bounded class (`status` of
/// `xgate_certificate_issuer_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerStatus {
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

/// The gateway's metrics, registered in their own registry (nothing global).
pub struct Metrics {
    registry: Registry,
    certificate_lookups: IntCounterVec,
    certificate_issuer_requests: IntCounterVec,
    certificate_cache_entries: IntGauge,
}

impl Metrics {
    /// Registers every metric; `xgate_build_info{version}` is set to 1.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let certificate_lookups = IntCounterVec::new(
            Opts::new(
                "xgate_certificate_lookups_total",
                "Certificate lookups by type, consumer and result (hit, miss, stale, not_found, error).",
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
            certificate_lookups,
            certificate_issuer_requests,
            certificate_cache_entries,
        })
    }

    /// Counts one certificate lookup. `certificate_type` and `consumer` must be configured
    /// names or [`UNKNOWN`].
    pub fn certificate_lookup(&self, certificate_type: &str, consumer: &str, result: LookupResult) {
        self.certificate_lookups
            .with_label_values(&[certificate_type, consumer, result.as_str()])
            .inc();
    }

    /// Counts one call to a certificate issuer. `certificate_type` must be a configured type.
    pub fn certificate_issuer_request(&self, certificate_type: &str, status: IssuerStatus) {
        self.certificate_issuer_requests
            .with_label_values(&[certificate_type, status.as_str()])
            .inc();
    }

    /// Sets the certificate cache's entry count (read at scrape time).
    pub fn set_certificate_cache_entries(&self, entries: u64) {
        self.certificate_cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
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
