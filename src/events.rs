//! What one finished exchange tells the operator — its log line, its counters and its
//! histograms — built once, after its audit entry is committed, and emitted together by
//! [`ExchangeFinished::emit`] (vector's `internal_events` shape). So a log line, a counter and
//! the trail never disagree on an exchange's outcome: all three are told the committed one.

use std::sync::{Arc, OnceLock};

use http::Method;
use xgate_audit::Outcome;
use xgate_core::registry::CompiledSchema;
use xgate_core::translate::Direction;

use crate::metrics::{ExchangeObservation, ExchangeSeries, Metrics, Side};

/// A record that broke its schema or did not translate, for
/// `xgate_validation_failures_total` and `xgate_translation_failures_total`.
#[derive(Debug)]
pub(crate) enum RecordFailure {
    /// A record its schema refused.
    Validation {
        /// The version that refused it.
        schema: Arc<CompiledSchema>,
        /// The request or the response.
        side: Side,
    },
    /// A record a department's format could not translate.
    Translation {
        /// The department whose format it was.
        department: String,
        /// The schema's name.
        schema: String,
        /// Which way.
        direction: Direction,
    },
}

/// One finished exchange, as the log, the metrics and the histograms see it.
#[derive(Debug)]
pub(crate) struct ExchangeFinished<'a> {
    /// The request id (the caller's or generated).
    pub request_id: &'a str,
    /// The gateway's own id of the exchange.
    pub exchange_id: &'a str,
    /// The request method.
    pub method: &'a Method,
    /// The service's label (`provider/service`), when the call was routed; read only when the
    /// log line is written.
    pub service: Option<&'a http::HeaderValue>,
    /// The answer's status.
    pub status: u16,
    /// The request schema used.
    pub request_schema: Option<&'a CompiledSchema>,
    /// The response schema used.
    pub response_schema: Option<&'a CompiledSchema>,
    /// The refused record, when the outcome is a validation or translation failure.
    pub failure: Option<RecordFailure>,
    /// Labels, committed outcome, durations (the audit commit included) and bytes.
    pub observation: ExchangeObservation<'a>,
    /// The route's slot for the consumer's served-exchange series, when both are known.
    pub served: Option<&'a OnceLock<ExchangeSeries>>,
}

impl ExchangeFinished<'_> {
    /// Logs the exchange (at `debug` when served: the trail and the metrics are the per-call
    /// record, and a line per call would cost more than the rest of a passthrough; at `info`
    /// otherwise; never bodies, tokens or paths), then counts it.
    pub(crate) fn emit(self, metrics: &Metrics) {
        let observation = &self.observation;
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    request_id = %self.request_id,
                    exchange_id = %self.exchange_id,
                    consumer = observation.labels.consumer,
                    service = self.service.and_then(|label| label.to_str().ok()).unwrap_or("-"),
                    method = %self.method,
                    status = self.status,
                    outcome = observation.outcome.as_str(),
                    request_schema = self.request_schema.map_or("-".into(), CompiledSchema::label),
                    response_schema = self.response_schema.map_or("-".into(), CompiledSchema::label),
                    request_bytes = observation.request_bytes.unwrap_or(0),
                    upstream_ms = observation.upstream.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
                    total_ms = observation.duration.as_secs_f64() * 1000.0,
                    "exchange"
                )
            };
        }
        if observation.outcome == Outcome::Ok {
            event!(tracing::Level::DEBUG);
        } else {
            event!(tracing::Level::INFO);
        }
        match self.failure {
            Some(RecordFailure::Validation { ref schema, side }) => {
                metrics.validation_failure(schema.name.as_str(), schema.version.get(), side);
            }
            Some(RecordFailure::Translation {
                ref department,
                ref schema,
                direction,
            }) => metrics.translation_failure(department, schema, direction),
            None => {}
        }
        match self.served {
            Some(series) if observation.outcome == Outcome::Ok => series
                .get_or_init(|| metrics.exchange_series(observation.labels, observation.outcome))
                .record(metrics, observation),
            _ => metrics.exchange(observation),
        }
    }
}
