//! What keeps a gateway in step with the others (SPEC §13): one connection of its own that
//! `LISTEN`s for registry changes and certificate invalidations, and applies each as it comes.
//!
//! Notifications are only trusted on a connection that has listened since before the last
//! full comparison: after connecting (at start, and after any lost connection) the listener
//! first `LISTEN`s, then compares every schema's revision with the one the gateway serves and
//! reads the ones that differ, then follows the notifications. A change committed while the
//! connection was down is found by that comparison; one committed after the `LISTEN` arrives
//! as a notification. A lost connection is reconnected with a growing pause (at most
//! [`MAX_BACKOFF`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_postgres::AsyncMessage;

use super::registry::{self, CHANNEL};
use super::{Store, StoreError};
use crate::certificates::cache::CacheKey;
use crate::gateway::Gateway;
use xgate_core::domain::{CertificateType, SchemaName};

/// The channel certificate invalidations are announced on.
pub const CERTIFICATES: &str = "xgate_certificates";

/// The longest pause between two attempts to reconnect.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The longest notification payload read (PostgreSQL's own limit is 8000 bytes).
const MAX_PAYLOAD: usize = 8000;

/// A certificate invalidation as announced: which gateway process sent it (to skip its own),
/// the type, and the id (absent: the whole type).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invalidation {
    /// The sending gateway process's own random id ([`Gateway::origin`]).
    pub from: String,
    /// The certificate type.
    #[serde(rename = "type")]
    pub certificate_type: String,
    /// The id, already checked by the sender against the type's format.
    pub id: Option<String>,
}

/// Announces an invalidation to every other gateway. The payload holds the certificate id in
/// clear: it passes through the database's notification queue only, never a table.
pub async fn announce(store: &Store, invalidation: &Invalidation) -> Result<(), StoreError> {
    let payload = serde_json::to_string(invalidation)
        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let client = store.client().await?;
    client
        .execute("SELECT pg_notify($1, $2)", &[&CERTIFICATES, &payload])
        .await?;
    Ok(())
}

/// Runs the listener for as long as the gateway lives.
pub async fn run(gateway: Weak<Gateway>, store: Store) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match follow(&gateway, &store).await {
            Followed::GatewayGone => return,
            Followed::Lost(error) => {
                tracing::warn!(%error, "the store's change listener lost its connection; reconnecting");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        if gateway.strong_count() == 0 {
            return;
        }
    }
}

/// How one connection's life ended.
enum Followed {
    GatewayGone,
    Lost(StoreError),
}

/// Connects, listens, catches up, then applies notifications until the connection ends.
async fn follow(gateway: &Weak<Gateway>, store: &Store) -> Followed {
    let (client, mut messages) = match store.listen().await {
        Ok(connected) => connected,
        Err(error) => return Followed::Lost(error),
    };
    // The connection makes progress only while its messages are polled: drive it while the
    // LISTEN runs.
    let statement = format!("LISTEN {CHANNEL}; LISTEN {CERTIFICATES}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    loop {
        tokio::select! {
            listened = &mut listen => match listened {
                Ok(()) => break,
                Err(error) => return Followed::Lost(error.into()),
            },
            message = messages.next() => match message {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Followed::Lost(error.into()),
                None => return Followed::Lost(StoreError::Pool("the connection closed".to_owned())),
            },
        }
    }
    let Some(strong) = gateway.upgrade() else {
        return Followed::GatewayGone;
    };
    if let Err(error) = catch_up(&strong, store).await {
        return Followed::Lost(error);
    }
    strong.set_registry_in_step(true);
    drop(strong);
    tracing::info!("the store's change listener follows the registry");
    loop {
        let message = messages.next().await;
        let Some(gateway) = gateway.upgrade() else {
            return Followed::GatewayGone;
        };
        match message {
            Some(Ok(AsyncMessage::Notification(notification))) => {
                let payload = notification.payload();
                if payload.len() > MAX_PAYLOAD {
                    continue;
                }
                if notification.channel() == CHANNEL {
                    if let Err(error) = apply_change(&gateway, store, payload).await {
                        gateway.set_registry_in_step(false);
                        return Followed::Lost(error);
                    }
                } else if notification.channel() == CERTIFICATES {
                    invalidate(&gateway, payload).await;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                gateway.set_registry_in_step(false);
                return Followed::Lost(error.into());
            }
            None => {
                gateway.set_registry_in_step(false);
                return Followed::Lost(StoreError::Pool("the connection closed".to_owned()));
            }
        }
    }
}

/// Compares every schema's revision with the served one and reads those that differ.
async fn catch_up(gateway: &Gateway, store: &Store) -> Result<(), StoreError> {
    let client = store.client().await?;
    let stored = registry::revisions(&client).await?;
    let behind: Vec<SchemaName> = {
        let served = gateway.registry_revisions();
        stored
            .iter()
            .filter(|(name, revision)| served.get(*name).is_none_or(|served| served < revision))
            .map(|(name, _)| name.clone())
            .collect()
    };
    drop(client);
    for name in behind {
        sync_schema(gateway, store, &name).await?;
    }
    Ok(())
}

/// A registry notification: the schema it names is read and served.
async fn apply_change(gateway: &Gateway, store: &Store, payload: &str) -> Result<(), StoreError> {
    let Ok(name) = SchemaName::parse(payload) else {
        tracing::warn!("a registry notification names no schema; ignored");
        return Ok(());
    };
    sync_schema(gateway, store, &name).await
}

/// Reads schema `name` from the store and serves it, unless what is served is as new. A
/// version that does not compile against the served registry (it refers to a schema whose own
/// notification has not been applied yet) makes the whole registry be read again.
pub async fn sync_schema(
    gateway: &Gateway,
    store: &Store,
    name: &SchemaName,
) -> Result<(), StoreError> {
    // The connection first, then the change lock: registrations hold a connection while they
    // wait for the lock, so the other order could wait on each other.
    // The connection is kept until the end: taking another under the lock would be that order.
    let mut client = store.client().await?;
    let _changing = gateway.changes.lock().await;
    let Some(stored) = registry::read_one(&client, name).await? else {
        return Ok(());
    };
    match serve_stored(gateway, stored).await {
        Ok(()) => Ok(()),
        Err(reason) => {
            tracing::warn!(%reason, "reading the whole registry from the store again");
            let all = registry::read_all(&mut client).await?;
            drop(client);
            let default = gateway.snapshot().registry.clone();
            let rebuilt = tokio::task::spawn_blocking(move || {
                let mut problems = Vec::new();
                let revisions = all
                    .iter()
                    .map(|schema| (schema.name.clone(), schema.revision))
                    .collect();
                let registry = xgate_core::registry::Registry::assemble(
                    registry::as_folders(&all),
                    default.default_compatibility(),
                    &mut problems,
                    crate::config::compile_workers(),
                );
                (registry, revisions, problems)
            })
            .await
            .map_err(|_| StoreError::Pool("a registry update did not finish".to_owned()))?;
            let (registry, revisions, problems) = rebuilt;
            for problem in &problems {
                tracing::error!(%problem, "a stored schema does not compile");
            }
            gateway.replace_registry(registry);
            gateway.replace_registry_revisions(revisions);
            Ok(())
        }
    }
}

/// Serves `stored` (one schema as the store holds it), unless what is served reflects its
/// revision already; new versions are compiled on the blocking pool. The caller holds the
/// gateway's change lock. The error is why the stored schema cannot be served yet (a version
/// refers to a schema the served registry lacks).
pub(crate) async fn serve_stored(
    gateway: &Gateway,
    stored: registry::StoredSchema,
) -> Result<(), String> {
    if gateway
        .registry_revisions()
        .get(&stored.name)
        .is_some_and(|served| *served >= stored.revision)
    {
        return Ok(());
    }
    let current = gateway.snapshot().registry.clone();
    let (name, revision) = (stored.name.clone(), stored.revision);
    let registry = tokio::task::spawn_blocking(move || {
        current.with_stored_schema(&stored.name, stored.settings, stored.live)
    })
    .await
    .map_err(|_| "a registry update did not finish".to_owned())??;
    gateway.replace_registry(registry);
    gateway.set_registry_revision(&name, revision);
    tracing::info!(schema = %name, revision, "schema served as the store holds it");
    Ok(())
}

/// A certificate notification from another gateway: the entry (or the type) is dropped here.
async fn invalidate(gateway: &Arc<Gateway>, payload: &str) {
    let Ok(invalidation) = serde_json::from_str::<Invalidation>(payload) else {
        tracing::warn!("a certificate notification could not be read; ignored");
        return;
    };
    if invalidation.from == gateway.origin() {
        return;
    }
    let Ok(certificate_type) = CertificateType::parse(&invalidation.certificate_type) else {
        return;
    };
    match invalidation.id {
        Some(id) => {
            let key = CacheKey {
                certificate_type,
                id: id.into(),
            };
            gateway.certificates.invalidate(&key).await;
        }
        None => gateway.certificates.invalidate_type(&certificate_type),
    }
    tracing::debug!("certificate invalidation from another gateway applied");
}
