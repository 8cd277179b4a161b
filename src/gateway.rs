//! The composition root: the shared state every listener serves from, built from configuration.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio_util::task::TaskTracker;

use crate::audit::AuditTrail;
use crate::certificates::cache::CertificateCache;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::snapshot::Snapshot;
use crate::upstream::{ClientSettings, UpstreamClient};

/// What every request handler shares: the current snapshot, the upstream client, the audit
/// trail, the certificate cache, the metrics, readiness.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    /// The pooled keep-alive client for upstream calls.
    pub upstream: UpstreamClient,
    /// The audit trail's writer and readers.
    pub audit: AuditTrail,
    /// Certificate lookups by (type, id); outlives configuration snapshots.
    pub certificates: CertificateCache,
    /// The Prometheus metrics.
    pub metrics: Metrics,
    /// Work that must end before the audit queue is drained at shutdown: every exchange, and
    /// every lookup's audit commit, runs in a task of its own here (a caller hanging up cannot
    /// cancel it, and a clean shutdown waits for it).
    pub tasks: TaskTracker,
    ready: AtomicBool,
}

impl Gateway {
    /// Builds the runtime parts from a checked configuration. Opens (creating it on first
    /// start) the audit database, which blocks briefly: call it at start-up.
    pub fn new(config: Config, registry: Registry) -> anyhow::Result<Arc<Gateway>> {
        let metrics = Metrics::new()?;
        let audit =
            AuditTrail::open(&config.audit, metrics.audit_entries()).with_context(|| {
                format!(
                    "cannot open the audit trail at {}",
                    config.audit.path.display()
                )
            })?;
        let upstream = UpstreamClient::new(ClientSettings {
            connect_timeout: config.gateway.upstream_timeout,
            read_timeout: config.gateway.upstream_timeout,
        });
        let certificates = CertificateCache::new(&config.certificates);
        Ok(Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(Snapshot::new(config, registry)),
            upstream,
            audit,
            certificates,
            metrics,
            tasks: TaskTracker::new(),
            ready: AtomicBool::new(false),
        }))
    }

    /// The current snapshot; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new registry (a registered, deleted or reconfigured schema version) with the
    /// rest of the current snapshot. Requests already running keep the snapshot they loaded;
    /// the next ones see the new registry.
    pub fn replace_registry(&self, registry: Registry) {
        self.snapshot
            .rcu(|current| current.with_registry(registry.clone()));
    }

    /// Whether the gateway takes traffic: listeners up and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the gateway ready (listeners up) or not (draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
