//! The composition root: the shared state every listener serves from, built from configuration.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::certificates::cache::CertificateCache;
use crate::config::{self, Config, Overrides, Problem, Problems};
use crate::cpu::CpuPool;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::store::Store;
use crate::store::registry::Revisions;
use crate::tls::{ServerTls, TlsMaterial};
use crate::upstream::{ClientSettings, UpstreamClient};
use xgate_audit::AuditTrail;
use xgate_core::registry::Registry;

/// What every request handler shares: the current snapshot, the upstream client, the audit
/// trail, the certificate cache, the metrics, readiness.
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    /// The pooled keep-alive client for upstream calls.
    pub upstream: UpstreamClient,
    /// The counts of exchanges and lookups in flight that their bounds are checked against.
    pub admission: Admission,
    /// The audit trail's writer and readers.
    pub audit: AuditTrail,
    /// Certificate lookups by (type, id); outlives configuration snapshots.
    pub certificates: CertificateCache,
    /// The Prometheus metrics.
    pub metrics: Metrics,
    /// Work that must end before the audit queue is drained at shutdown: every exchange holds
    /// a token of it (`server::Uncancellable`: a caller hanging up cannot cancel it), and every
    /// lookup's audit commit runs in a task of its own here; a clean shutdown waits for both.
    pub tasks: TaskTracker,
    /// The data plane's TLS when `[tls]` is configured (decided at start; a reload swaps its
    /// certificates and keys).
    pub tls: Option<Arc<ServerTls>>,
    /// Serializes every change to what is served: schema registrations and reloads.
    pub changes: Arc<tokio::sync::Mutex<()>>,
    /// The turns of large records' CPU phases on the blocking pool.
    pub cpu: CpuPool,
    /// The schema checks (compiling, proving compatibility) running now.
    pub schema_checks: Arc<xgate_core::registry::compatibility::Checks>,
    /// The slots of compatibility checks running at once
    /// ([`xgate_core::registry::compatibility::CONCURRENT_CHECKS`]).
    pub schema_check_slots: Arc<tokio::sync::Semaphore>,
    /// The shared store, when `[store]` is configured (SPEC §13).
    store: Option<Store>,
    /// With a store: the revision of each schema the served registry reflects. Changed only
    /// under [`Gateway::changes`].
    revisions: std::sync::Mutex<Revisions>,
    /// With a store: whether the change listener follows the registry now (connected,
    /// caught up); while not, `/readyz` says so.
    registry_in_step: AtomicBool,
    /// This process's own random id, sent with the notifications it makes so that it skips
    /// them when they come back.
    origin: String,
    ready: AtomicBool,
    draining: AtomicBool,
    /// Ends `[gateway] drain_delay_ms` early (a second shutdown signal: the operator insists).
    drain_delay_cut: tokio::sync::Notify,
}

/// Reads the audit key of `[audit] key_file`, creating it at the first start (blocking, briefly:
/// start-up only).
pub(crate) fn audit_key(config: &Config) -> anyhow::Result<xgate_audit::AuditKey> {
    Ok(xgate_audit::AuditKey::load_or_create(
        &config.audit.key_file,
        config.audit.hash,
    )?)
}

impl Gateway {
    /// Builds the runtime parts from a checked configuration. Opens (creating it on first
    /// start) the audit database, which blocks briefly: call it at start-up.
    /// Reads the TLS certificates and keys too.
    pub fn new(config: Config, registry: Registry) -> anyhow::Result<Arc<Gateway>> {
        let metrics = Metrics::new()?;
        let key = audit_key(&config)?;
        let audit = AuditTrail::open(
            &config.audit,
            key,
            &config.gateway.instance,
            Box::new(metrics.audit()),
        )
        .with_context(|| {
            format!(
                "cannot open the audit trail at {}",
                config.audit.path.display()
            )
        })?;
        Gateway::build(config, registry, None, metrics, audit)
    }

    /// Builds a gateway on its opened trail, with the shared store when one is configured (the
    /// store's trail is opened and the change listener started by [`crate::startup::start`]).
    pub(crate) fn build(
        config: Config,
        registry: Registry,
        store: Option<Store>,
        metrics: Metrics,
        audit: AuditTrail,
    ) -> anyhow::Result<Arc<Gateway>> {
        let tls = TlsMaterial::load(&config)
            .map_err(|problems| anyhow::anyhow!("the TLS files have problems:\n{problems}"))?;
        let upstream = UpstreamClient::new(
            ClientSettings {
                connect_timeout: config.gateway.upstream_timeout,
                read_timeout: config.gateway.upstream_timeout,
            },
            tls.upstream,
        );
        let server_tls = match (&config.tls, tls.server) {
            (Some(settings), Some(server)) => {
                Some(Arc::new(ServerTls::new(server, settings.handshake_timeout)))
            }
            (None, _) => None,
            (Some(_), None) => anyhow::bail!("[tls] is configured but built no TLS configuration"),
        };
        let certificates = CertificateCache::new(&config.certificates);
        Ok(Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(Snapshot::new(config, registry)),
            upstream,
            admission: Admission::default(),
            audit,
            certificates,
            metrics,
            tasks: TaskTracker::new(),
            tls: server_tls,
            changes: Arc::new(tokio::sync::Mutex::new(())),
            cpu: CpuPool::for_this_machine(),
            schema_checks: Arc::default(),
            schema_check_slots: Arc::new(tokio::sync::Semaphore::new(
                xgate_core::registry::compatibility::CONCURRENT_CHECKS,
            )),
            store,
            revisions: std::sync::Mutex::default(),
            registry_in_step: AtomicBool::new(false),
            origin: uuid::Uuid::new_v4().simple().to_string(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            drain_delay_cut: tokio::sync::Notify::new(),
        }))
    }

    /// The current snapshot; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new registry (a registered, deleted or reconfigured schema version) with the
    /// rest of the current snapshot. Requests already running keep the snapshot they loaded;
    /// the next ones see the new registry.
    pub(crate) fn replace_registry(&self, registry: Registry) {
        self.snapshot
            .rcu(|current| current.with_registry(registry.clone()));
    }

    /// Re-reads the configuration, the schemas and the TLS files (on the blocking pool) and
    /// swaps them in: new requests see the new snapshot, new TLS handshakes the new certificates
    /// and keys, new upstream connections the new upstream TLS settings; requests and
    /// connections already running keep theirs. Anything invalid is refused with every problem
    /// and the running configuration stays. The listeners' addresses, the audit trail, the
    /// certificate cache's settings and the upstream timeouts take effect at the next start, as
    /// does turning TLS on or off.
    ///
    /// Every attempt is counted in `xgate_config_reloads_total{outcome="ok"|"refused"}`.
    pub async fn reload(&self) -> Result<(), Problems> {
        let reloaded = self.load_and_swap().await;
        self.metrics
            .config_reload(if reloaded.is_ok() { "ok" } else { "refused" });
        reloaded
    }

    /// The reload itself: load, check, swap.
    async fn load_and_swap(&self) -> Result<(), Problems> {
        let _changing = self.changes.lock().await;
        let running = self.snapshot();
        let path = running.config.path.clone();
        // With a store the registry follows the database, not the files: the running one stays.
        let served = self.store.is_some().then(|| running.registry.clone());
        let loading = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let (config, registry) = match served {
                    None => config::load(&path, &Overrides::from_env())?,
                    Some(served) => {
                        config::load_with(&path, &Overrides::from_env(), |_, _| Some(served))?
                    }
                };
                let tls = TlsMaterial::load(&config)?;
                Ok::<_, Problems>((config, registry, tls))
            })
        };
        let (mut config, registry, tls) = match loading.await {
            Ok(loaded) => loaded?,
            Err(_) => {
                return Err(Problems(vec![Problem {
                    file: path,
                    key: String::new(),
                    reason: "loading the configuration failed unexpectedly".to_owned(),
                }]));
            }
        };
        if config.tls.is_some() != self.tls.is_some() {
            return Err(Problems(vec![Problem {
                file: path,
                key: "tls".to_owned(),
                reason: "turning TLS on or off takes a restart; nothing was reloaded".to_owned(),
            }]));
        }
        if config.registry.dir != running.config.registry.dir {
            return Err(Problems(vec![Problem {
                file: path,
                key: "registry.dir".to_owned(),
                reason: "moving the schema registry takes a restart; nothing was reloaded"
                    .to_owned(),
            }]));
        }
        // The listeners are bound: keep the addresses they were bound at.
        config.gateway.listen = running.config.gateway.listen;
        config.gateway.admin_listen = running.config.gateway.admin_listen;
        if let (Some(server_tls), Some(server), Some(settings)) =
            (&self.tls, tls.server, config.tls.as_ref())
        {
            server_tls.replace(server, settings.handshake_timeout);
        }
        self.upstream.replace_tls(tls.upstream);
        self.snapshot
            .store(Arc::new(Snapshot::new(config, registry)));
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// The shared store, when configured.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// This process's own id in the notifications it sends.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The revisions of the served registry's schemas (a copy).
    pub(crate) fn registry_revisions(&self) -> Revisions {
        self.revisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records that the served registry reflects `revision` of schema `name`.
    pub(crate) fn set_registry_revision(
        &self,
        name: &xgate_core::domain::SchemaName,
        revision: i64,
    ) {
        let mut revisions = self
            .revisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let served = revisions.entry(name.clone()).or_default();
        *served = (*served).max(revision);
    }

    /// Replaces every schema's revision (the whole registry was read again).
    pub(crate) fn replace_registry_revisions(&self, revisions: Revisions) {
        *self
            .revisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = revisions;
    }

    /// With a store: whether the change listener follows the registry now.
    pub fn registry_in_step(&self) -> bool {
        self.store.is_none() || self.registry_in_step.load(Ordering::Acquire)
    }

    /// Set by the change listener.
    pub(crate) fn set_registry_in_step(&self, in_step: bool) {
        self.registry_in_step.store(in_step, Ordering::Release);
    }

    /// Whether the gateway takes traffic: listeners up and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the gateway ready (listeners up) or not (draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Marks the gateway not ready because it is shutting down: `/readyz` says so, while every
    /// other route is still served until the listeners stop.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.set_ready(false);
    }

    /// Whether a shutdown has begun ([`Gateway::start_draining`]).
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Ends the drain delay now (or, called before it began, lets it end at once): the
    /// listeners stop and in-flight requests drain as after a full delay.
    pub fn cut_drain_delay(&self) {
        self.drain_delay_cut.notify_one();
    }

    /// Completes when [`Gateway::cut_drain_delay`] is called.
    pub(crate) async fn drain_delay_cut(&self) {
        self.drain_delay_cut.notified().await;
    }
}
