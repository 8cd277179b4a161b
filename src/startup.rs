//! Start-up: reading what a gateway serves from (the files, and with a `[store]` the
//! database) and starting it with its change listener.

use std::sync::Arc;

use anyhow::Context;

use crate::config::{self, Config, Overrides};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::registry::Revisions;
use xgate_audit::AuditTrail;
use xgate_core::registry::Registry;

/// What a gateway starts from ([`load`]): the checked configuration, the compiled registry, and
/// with a store the store and the revision of each schema read.
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The registry, compiled.
    pub registry: Registry,
    /// With `[store]`: the store, migrated, and the schemas' revisions.
    pub store: Option<(Store, Revisions)>,
}

/// Reads and checks everything a gateway starts from. Without a store: the files (on the
/// blocking pool). With one: the main file names it; it is reached, migrated (under the
/// advisory lock) and its registry read in one snapshot, then compiled with the department
/// files exactly as files would be.
pub async fn load(path: &std::path::Path, overrides: &Overrides) -> anyhow::Result<Loaded> {
    let main = config::load_main(path, overrides)
        .map_err(|problems| anyhow::anyhow!("the configuration has problems:\n{problems}"))?;
    let Some(settings) = main.store.clone() else {
        let (path, overrides) = (path.to_owned(), overrides.clone());
        let (config, registry) =
            tokio::task::spawn_blocking(move || config::load(&path, &overrides))
                .await
                .context("loading the configuration failed unexpectedly")?
                .map_err(|problems| {
                    anyhow::anyhow!("the configuration has problems:\n{problems}")
                })?;
        return Ok(Loaded {
            config,
            registry,
            store: None,
        });
    };
    let store = Store::connect(&settings)
        .await
        .context("cannot reach the store ([store] url)")?;
    crate::store::migrate::migrate(&store, &main.gateway.instance)
        .await
        .context("cannot migrate the store")?;
    let mut client = store.client().await?;
    let schemas = crate::store::registry::read_all(&mut client)
        .await
        .context("cannot read the registry from the store")?;
    drop(client);
    let revisions: Revisions = schemas
        .iter()
        .map(|schema| (schema.name.clone(), schema.revision))
        .collect();
    let (path, overrides) = (path.to_owned(), overrides.clone());
    let (config, registry) = tokio::task::spawn_blocking(move || {
        config::load_with(&path, &overrides, |config, problems| {
            Some(Registry::assemble(
                crate::store::registry::as_folders(&schemas),
                config.registry.default_compatibility,
                problems,
                config::compile_workers(),
            ))
        })
    })
    .await
    .context("loading the configuration failed unexpectedly")?
    .map_err(|problems| anyhow::anyhow!("the configuration has problems:\n{problems}"))?;
    Ok(Loaded {
        config,
        registry,
        store: Some((store, revisions)),
    })
}

/// Starts a gateway on what [`load`] found: with a store, its change listener runs from now on
/// (a task of the runtime, ending with the gateway).
pub async fn start(loaded: Loaded) -> anyhow::Result<Arc<Gateway>> {
    let Loaded {
        config,
        registry,
        store,
    } = loaded;
    let Some((store, revisions)) = store else {
        return Gateway::new(config, registry);
    };
    // The trail is in the store too: one chain for every gateway (crates/xgate-audit/FORMAT.md).
    let metrics = Metrics::new()?;
    let key = crate::gateway::audit_key(&config)?;
    let audit = AuditTrail::open_postgres(
        store.pool().clone(),
        key,
        config.audit.hash,
        &config.gateway.instance,
        Box::new(metrics.audit()),
    )
    .await
    .context("cannot open the audit trail in the store")?;
    let gateway = Gateway::build(config, registry, Some(store.clone()), metrics, audit)?;
    gateway.replace_registry_revisions(revisions);
    tokio::spawn(crate::store::listener::run(Arc::downgrade(&gateway), store));
    Ok(gateway)
}
