//! The edge to the shared store (SPEC §13): one PostgreSQL database that every gateway of an
//! exchange reads and writes — the schema registry, the audit trail, and the notifications
//! that tell the other gateways what changed.
//!
//! [`Store::connect`] builds the pool (`[store] pool_size` connections at most, TLS through
//! rustls when the URL asks for it) and [`migrate`] brings the tables to this version's layout
//! under an advisory lock, so that gateways started at once migrate one after the other. The
//! change listener has a connection of its own ([`Store::listen`]), outside the pool.
//!
//! Everything here is async and bounded by timeouts: a database that does not answer fails the
//! call, it never holds a runtime thread.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::Stream;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::config::StoreSettings;

pub mod listener;
pub mod migrate;
pub mod registry;

/// How long opening a database connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a pooled connection before the store counts as unavailable.
pub const POOL_WAIT: Duration = Duration::from_secs(5);

/// Why the store could not do something. The text never holds the URL or a password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or the connection failed.
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// No pooled connection could be had.
    #[error("no database connection: {0}")]
    Pool(String),
    /// TLS to the database cannot be configured.
    #[error("TLS to the database: {0}")]
    Tls(String),
    /// The database was migrated by a later xgate.
    #[error(
        "the store's tables are at layout {found}, newer than this xgate knows ({known}); run the newer xgate, or restore"
    )]
    TooNew {
        /// The highest migration applied.
        found: i32,
        /// The highest migration this build has.
        known: i32,
    },
    /// A stored value is not what this version writes (the database was edited).
    #[error("the store holds an unreadable value: {0}")]
    Corrupt(String),
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => StoreError::Database(error),
            other => StoreError::Pool(other.to_string()),
        }
    }
}

/// The shared store: the pool, and what it takes to open the listener's own connection.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    settings: StoreSettings,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The notifications of one connection, as a stream (ends when the connection does).
pub type Notifications =
    Pin<Box<dyn Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Send>>;

impl Store {
    /// Builds the pool and opens one connection to check the database answers.
    pub async fn connect(settings: &StoreSettings) -> Result<Store, StoreError> {
        let mut url = settings.url.clone();
        if url.get_connect_timeout().is_none() {
            url.connect_timeout(CONNECT_TIMEOUT);
        }
        url.application_name("xgate");
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls = if settings.tls {
            let config = crate::tls::database_client_config().map_err(StoreError::Tls)?;
            Some(tokio_postgres_rustls::MakeRustlsConnect::new(config))
        } else {
            None
        };
        let manager = match &tls {
            Some(tls) => Manager::from_config(url.clone(), tls.clone(), manager_config),
            None => Manager::from_config(url.clone(), NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|error| StoreError::Pool(error.to_string()))?;
        let store = Store {
            pool,
            settings: StoreSettings {
                url,
                ..settings.clone()
            },
            tls,
        };
        drop(store.client().await?);
        Ok(store)
    }

    /// The pool every query takes its connection from.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A pooled connection.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// A connection of its own, outside the pool, with its notifications: the change listener
    /// holds it for as long as it lives.
    pub async fn listen(&self) -> Result<(Client, Notifications), StoreError> {
        match &self.tls {
            Some(tls) => {
                let (client, connection) = self.settings.url.connect(tls.clone()).await?;
                Ok((client, notifications(connection)))
            }
            None => {
                let (client, connection) = self.settings.url.connect(NoTls).await?;
                Ok((client, notifications(connection)))
            }
        }
    }
}

/// Drives a connection, yielding what the server sends on its own (notifications, notices).
fn notifications<S, T>(mut connection: tokio_postgres::Connection<S, T>) -> Notifications
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(futures_util::stream::poll_fn(
        move |context| match connection.poll_message(context) {
            Poll::Ready(message) => Poll::Ready(message),
            Poll::Pending => Poll::Pending,
        },
    ))
}
