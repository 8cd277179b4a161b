//! Admission: the bounds on work in flight (exchanges and certificate lookups, over every
//! consumer and per consumer), and whether a call's caller is still there.
//!
//! An exchange runs to its end even when its caller hangs up (its audit entry must be written,
//! `server::Uncancellable`), so without a bound a client that sends and resets calls to a slow
//! provider piles up work, memory and upstream connections without limit. A call takes an
//! [`InFlightPermit`] once its consumer is identified and holds it until it is over (for a
//! streamed answer, until the body has streamed); past a bound it is refused at once, never
//! queued: 429 `rate-limited` past the consumer's bound (its own traffic is the cause), 503
//! `overloaded` past the gateway's (everyone's is).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arc_swap::ArcSwap;

use crate::config::{Config, GatewaySettings};
use crate::problem::ExchangeError;
use xgate_core::domain::DepartmentId;

/// What `Retry-After` says to a refused call: in-flight work drains within a request's time,
/// so one second is long enough to find room and short enough not to idle a client.
pub(crate) const RETRY_AFTER_SECONDS: u64 = 1;

/// The counts of work in flight, shared by every snapshot (a reload keeps the counts).
#[derive(Debug, Default)]
pub struct Admission {
    /// Over every consumer.
    total: Arc<AtomicUsize>,
    /// Per consumer, created on a consumer's first call and kept (a handful per department).
    consumers: ArcSwap<HashMap<DepartmentId, Arc<AtomicUsize>>>,
}

impl Admission {
    /// Admits one call of `consumer` within `settings`' bounds, or refuses it: 429 past the
    /// consumer's bound, 503 past the gateway's.
    pub(crate) fn admit(
        &self,
        consumer: &DepartmentId,
        settings: &GatewaySettings,
    ) -> Result<InFlightPermit, ExchangeError> {
        let per_consumer = self.counter_of(consumer);
        if !take(&per_consumer, settings.max_exchanges_in_flight_per_consumer) {
            return Err(ExchangeError::RateLimited {
                retry_after_seconds: RETRY_AFTER_SECONDS,
            });
        }
        if !take(&self.total, settings.max_exchanges_in_flight) {
            per_consumer.fetch_sub(1, Ordering::AcqRel);
            return Err(ExchangeError::Overloaded {
                retry_after_seconds: RETRY_AFTER_SECONDS,
            });
        }
        Ok(InFlightPermit {
            total: self.total.clone(),
            per_consumer,
        })
    }

    /// Calls in flight now, over every consumer (for tests and diagnostics).
    pub fn in_flight(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    fn counter_of(&self, consumer: &DepartmentId) -> Arc<AtomicUsize> {
        if let Some(counter) = self.consumers.load().get(consumer) {
            return counter.clone();
        }
        // A consumer's first call: add its counter (keeping one another call may have added
        // meanwhile).
        self.consumers.rcu(|counters| {
            let mut counters = HashMap::clone(counters);
            counters.entry(consumer.clone()).or_default();
            counters
        });
        self.consumers
            .load()
            .get(consumer)
            .cloned()
            .unwrap_or_default()
    }
}

/// Takes one unit of `counter` unless it is at `bound`.
fn take(counter: &AtomicUsize, bound: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
            (count < bound).then_some(count + 1)
        })
        .is_ok()
}

/// One call in flight; dropping it gives its room back.
#[derive(Debug)]
pub struct InFlightPermit {
    total: Arc<AtomicUsize>,
    per_consumer: Arc<AtomicUsize>,
}

impl Drop for InFlightPermit {
    fn drop(&mut self) {
        self.per_consumer.fetch_sub(1, Ordering::AcqRel);
        self.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether the caller of a call is still there. The server marks it gone when the caller hangs
/// up (resets the stream, closes the connection) before the call's answer was ready; a call
/// that has not yet been handed to an upstream connection is then not forwarded.
#[derive(Debug, Clone, Default)]
pub struct CallerPresence(Option<Arc<AtomicBool>>);

impl CallerPresence {
    /// A caller the server watches.
    pub fn watched() -> CallerPresence {
        CallerPresence(Some(Arc::new(AtomicBool::new(false))))
    }

    /// Nobody who could hang up: work shared by several callers (a certificate fetch), which
    /// must finish for the others.
    pub(crate) fn unwatched() -> CallerPresence {
        CallerPresence(None)
    }

    /// Marks the caller gone.
    pub(crate) fn hang_up(&self) {
        if let Some(gone) = &self.0 {
            gone.store(true, Ordering::Release);
        }
    }

    /// Whether the caller hung up.
    pub(crate) fn is_gone(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|gone| gone.load(Ordering::Acquire))
    }
}

/// File descriptors kept for everything besides connections: the listeners, the audit database
/// (writer, readers, WAL and shared memory), the runtime's own, logs, configuration reads.
const RESERVED_FILES: u64 = 256;

/// The open files the configured bounds can hold at once: every connection both listeners
/// accept, every upstream connection each provider's cap allows, and a reserve for the rest.
/// When the process's limit is lower, a busy gateway runs out of descriptors (`accept` fails)
/// before its own bounds refuse anything.
pub fn open_files_needed(config: &Config) -> u64 {
    let listeners = 2 * config.gateway.max_connections as u64;
    let upstream: u64 = config
        .departments
        .iter()
        .filter(|department| {
            !department.services.is_empty() || !department.certificate_types.is_empty()
        })
        .map(|department| department.upstream_connection_cap(&config.gateway) as u64)
        .sum();
    listeners + upstream + RESERVED_FILES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(total: usize, per_consumer: usize) -> GatewaySettings {
        let text = format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nmax_exchanges_in_flight = {total}\nmax_exchanges_in_flight_per_consumer = {per_consumer}\n"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("departments")).unwrap();
        std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
        let path = dir.path().join("xgate.toml");
        std::fs::write(&path, format!("{text}[registry]\ndir = \"schemas\"\n")).unwrap();
        let (config, _) = crate::config::load(&path, &crate::config::Overrides::default())
            .unwrap_or_else(|problems| panic!("{problems}"));
        config.gateway
    }

    #[test]
    fn a_consumer_past_its_bound_is_rate_limited_and_the_gateway_past_its_own_overloaded() {
        let admission = Admission::default();
        let settings = settings(3, 2);
        let tax = DepartmentId::parse("tax").unwrap();
        let civil = DepartmentId::parse("civil").unwrap();
        let first = admission.admit(&tax, &settings).unwrap();
        let _second = admission.admit(&tax, &settings).unwrap();
        assert!(matches!(
            admission.admit(&tax, &settings),
            Err(ExchangeError::RateLimited { .. })
        ));
        let _third = admission.admit(&civil, &settings).unwrap();
        assert!(matches!(
            admission.admit(&civil, &settings),
            Err(ExchangeError::Overloaded { .. })
        ));
        assert_eq!(admission.in_flight(), 3, "refusals hold no room");
        drop(first);
        assert_eq!(admission.in_flight(), 2);
        let _again = admission.admit(&civil, &settings).unwrap();
    }

    #[test]
    fn presence_is_gone_only_once_hung_up_and_never_for_shared_work() {
        let watched = CallerPresence::watched();
        let seen_by_the_call = watched.clone();
        assert!(!seen_by_the_call.is_gone());
        watched.hang_up();
        assert!(seen_by_the_call.is_gone());
        let shared = CallerPresence::unwatched();
        shared.hang_up();
        assert!(!shared.is_gone());
    }
}
