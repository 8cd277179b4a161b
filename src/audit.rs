//! The tamper-evident audit trail (SPEC §9): one entry per exchange and per certificate lookup,
//! committed by one writer thread in batches (group commit) before the call is answered, and
//! chained by hash.
//!
//! - [`entry`]: the entry, its canonical encoding and the hash chain (pure).
//! - [`store`]: the SQLite file (I/O, blocking).
//! - [`query`]: the auditor routes' parameters and answers (pure).
//!
//! Callers [`AuditTrail::append`] an entry and wait for its commit. The queue in front of the
//! writer holds at most [`QUEUE_CAPACITY`] entries; when it is full, callers wait for room
//! (backpressure) and nothing is dropped. If the database fails, `append` returns an error and
//! the exchange is refused with 500 `internal`: an exchange that cannot be audited is not
//! answered. Each later batch tries again, so a passing fault (a full disk) heals by itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::config::{AuditHash, AuditSettings};

pub mod entry;
pub mod query;
pub mod store;

pub use entry::{AuditEntry, EntryKind, StoredEntry, sha256_hex};
pub use query::{EntryFilter, Page, Summary, TimeWindow};
pub use store::Verification;

/// Entries waiting for the writer at most; past it, callers wait. At a few microseconds of
/// SQLite work per entry this is well under a second of backlog.
pub const QUEUE_CAPACITY: usize = 4096;
/// Entries committed in one transaction at most.
pub const MAX_BATCH: usize = 512;
/// Audit queries running at once at most (each holds a blocking-pool thread and a connection).
pub const MAX_READERS: usize = 4;

/// Why the audit trail could not do something.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// SQLite refused.
    #[error("audit database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The database's folder could not be created.
    #[error("cannot create the audit database's folder: {0}")]
    Folder(std::io::Error),
    /// The file system does not support WAL.
    #[error("the audit database cannot use WAL (journal mode {0})")]
    NotWal(String),
    /// The database was chained with another hash than the configured one.
    #[error(
        "the audit database is chained with {stored}, the configuration says {configured}; a chain cannot change its hash"
    )]
    HashChanged {
        /// The hash in the database.
        stored: String,
        /// The hash in `[audit] hash`.
        configured: String,
    },
    /// The newest entry's hash is not a hash.
    #[error("the newest audit entry ({sequence}) has no readable hash; run `xgate audit verify`")]
    CorruptHead {
        /// Its sequence number.
        sequence: u64,
    },
    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread: {0}")]
    Thread(std::io::Error),
    /// The writer thread is gone.
    #[error("the audit writer has stopped")]
    WriterStopped,
    /// A read task did not finish.
    #[error("an audit query task failed")]
    TaskFailed,
}

/// What the writer thread receives.
// Nearly every message is an `Append`; boxing its entry to shrink the rare `Flush` would cost
// an allocation per exchange.
#[allow(clippy::large_enum_variant)]
enum Message {
    /// Commit this entry, then say under which sequence number.
    Append {
        entry: AuditEntry,
        committed: oneshot::Sender<Result<u64, Arc<AuditError>>>,
    },
    /// Say so once everything queued before has been committed (or failed).
    Flush(oneshot::Sender<()>),
}

/// The audit trail: a handle to the one writer, and the readers.
pub struct AuditTrail {
    sender: mpsc::Sender<Message>,
    path: PathBuf,
    hash: AuditHash,
    readers: Arc<Semaphore>,
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTrail")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl AuditTrail {
    /// Opens (creating on first start) the database and starts the writer thread. Blocking;
    /// called once at start-up, before any listener serves.
    pub fn open(settings: &AuditSettings) -> Result<AuditTrail, AuditError> {
        let connection = store::open_writer(&settings.path, settings.hash)?;
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let hash = settings.hash;
        std::thread::Builder::new()
            .name("xgate-audit".to_owned())
            .spawn(move || write_loop(connection, hash, receiver))
            .map_err(AuditError::Thread)?;
        Ok(AuditTrail {
            sender,
            path: settings.path.clone(),
            hash,
            readers: Arc::new(Semaphore::new(MAX_READERS)),
        })
    }

    /// Queues an entry (waiting for room when the queue is full) and waits until it is
    /// committed; returns its sequence number.
    pub async fn append(&self, entry: AuditEntry) -> Result<u64, Arc<AuditError>> {
        let (committed, done) = oneshot::channel();
        self.sender
            .send(Message::Append { entry, committed })
            .await
            .map_err(|_| Arc::new(AuditError::WriterStopped))?;
        done.await
            .map_err(|_| Arc::new(AuditError::WriterStopped))?
    }

    /// Waits until every entry queued so far is committed: the last step of a clean shutdown.
    pub async fn flush(&self) {
        let (flushed, done) = oneshot::channel();
        if self.sender.send(Message::Flush(flushed)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Verifies the whole chain on a read connection.
    pub async fn verify(&self) -> Result<Verification, AuditError> {
        let hash = self.hash;
        self.read(move |connection| store::verify(connection, hash))
            .await
    }

    /// One page of entries.
    pub async fn entries(&self, filter: EntryFilter) -> Result<Page, AuditError> {
        let limit = filter.limit;
        let entries = self
            .read(move |connection| store::list(connection, &filter))
            .await?;
        Ok(Page::new(entries, limit))
    }

    /// The summary over a window: the exchange matrix, the outcomes over time, the certificate
    /// lookups and the most frequent failures.
    pub async fn summary(&self, window: TimeWindow) -> Result<Summary, AuditError> {
        self.read(move |connection| store::summary(connection, &window))
            .await
    }

    /// Runs a query on its own read-only connection on the blocking pool: WAL readers see the
    /// last commit and never hold up the writer.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&rusqlite::Connection) -> Result<T, AuditError> + Send + 'static,
    ) -> Result<T, AuditError> {
        let _permit = self
            .readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AuditError::TaskFailed)?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let connection = store::open_reader(&path)?;
            query(&connection)
        })
        .await
        .map_err(|_| AuditError::TaskFailed)?
    }
}

/// Verifies the chain of the database in `settings` (for `xgate audit verify`; blocking). The
/// file must exist.
pub fn verify_file(settings: &AuditSettings) -> Result<Verification, AuditError> {
    let connection = store::open_reader(&settings.path)?;
    store::verify(&connection, settings.hash)
}

/// The time entries record: now, as RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    query::format_time(SystemTime::now().into())
}

/// The writer thread: take what is queued (up to [`MAX_BATCH`]), commit it in one transaction,
/// acknowledge every entry, repeat. Ends when every sender is gone and the queue is empty.
fn write_loop(
    mut connection: rusqlite::Connection,
    hash: AuditHash,
    mut receiver: mpsc::Receiver<Message>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        let mut entries = Vec::with_capacity(batch.len());
        let mut acknowledgements = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        for message in batch.drain(..) {
            match message {
                Message::Append { entry, committed } => {
                    entries.push(entry);
                    acknowledgements.push(committed);
                }
                Message::Flush(flushed) => flushes.push(flushed),
            }
        }
        if !entries.is_empty() {
            match store::append(&mut connection, hash, entries) {
                Ok(sequences) => {
                    for (committed, sequence) in acknowledgements.into_iter().zip(sequences) {
                        // A caller that went away (its connection closed) needs no answer.
                        let _ = committed.send(Ok(sequence));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, entries = acknowledgements.len(), "audit entries could not be committed; their exchanges are refused");
                    let error = Arc::new(error);
                    for committed in acknowledgements {
                        let _ = committed.send(Err(error.clone()));
                    }
                }
            }
        }
        for flushed in flushes {
            let _ = flushed.send(());
        }
    }
}
