//! The tamper-evident audit trail (SPEC §9): one entry per exchange and per certificate lookup,
//! committed by one writer thread in batches (group commit) before the call is answered, and
//! chained by hash.
//!
//! - [`entry`]: the entry, its canonical encoding and the hash chain (pure).
//! - [`store`]: the SQLite file (I/O, blocking).
//! - [`postgres`]: the trail in the shared store's PostgreSQL database, one chain for every
//!   gateway (I/O, async).
//! - [`query`]: the auditor routes' parameters and answers (pure).
//!
//! Callers [`AuditTrail::append`] an entry and wait for its commit. The trail is kept either in
//! a SQLite file ([`AuditTrail::open`], a writer thread) or in PostgreSQL
//! ([`AuditTrail::open_postgres`], a writer task); both behave alike towards their callers. The queue in front of the
//! writer holds at most [`QUEUE_CAPACITY`] entries; when it is full, callers wait for room
//! (backpressure) and nothing is dropped. If the database fails, `append` returns an error: an
//! exchange that cannot be audited is not answered.
//!
//! While commits fail the trail is *unavailable* ([`AuditTrail::is_unavailable`]): the
//! exchange path and certificate lookups refuse new calls before they reach a provider, an
//! issuer or the cache (503 `store-unavailable`). The writer then tries again on its own,
//! every [`PROBE_INTERVAL`], also when no call arrives ([`Writer::probe`]): it folds the WAL
//! into the database and truncates it, allocates the reserve again, and commits a page; once
//! all three succeed the trail serves again. On PostgreSQL the probe commits a no-op update
//! ([`PostgresWriter::probe`]).
//!
//! - [`reserve`]: the disk space held back for the moment the disk fills.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use reserve::Reserve;

pub mod block;
pub mod entry;
pub mod key;
pub mod outcome;
pub mod postgres;
pub mod query;
pub mod reserve;
pub mod store;

pub use entry::{AuditEntry, AuditHash, EntryKind, StoredEntry, sha256_hex};
pub use key::AuditKey;
pub use outcome::Outcome;
pub use query::{EntryFilter, Page, SubjectPage, Summary, TimeWindow};
pub use store::Verification;

/// When an audit commit reaches the disk (SQLite's `synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditSync {
    /// At checkpoints: an answered exchange's entry survives a killed process (SPEC §9); the
    /// last commits before an operating-system crash, a power loss or a failing device may not.
    Normal,
    /// At every commit (one sync per batch): an answered exchange's entry survives those too,
    /// and every exchange waits for its batch's disk sync.
    Full,
}

impl AuditSync {
    /// `[audit] synchronous` when the configuration does not say. The one place to change it.
    pub const DEFAULT: AuditSync = AuditSync::Normal;

    /// The configuration word.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditSync::Normal => "normal",
            AuditSync::Full => "full",
        }
    }
}

/// `[audit]`, parsed.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The SQLite file, resolved.
    pub path: PathBuf,
    /// The chain's hash.
    pub hash: AuditHash,
    /// When commits reach the disk.
    pub synchronous: AuditSync,
    /// Bytes kept allocated for the moment the disk fills (0: none).
    pub reserve_bytes: u64,
    /// The audit key's file (`[audit] key_file`, resolved; default `audit.key` next to the
    /// SQLite file).
    pub key_file: PathBuf,
}

/// Entries waiting for the writer at most; past it, callers wait. At a few microseconds of
/// SQLite work per entry this is well under a second of backlog.
pub const QUEUE_CAPACITY: usize = 4096;
/// Entries committed in one transaction at most.
pub const MAX_BATCH: usize = 512;
/// Audit queries running at once at most (each holds a blocking-pool thread and a connection).
pub const MAX_READERS: usize = 4;
/// How often the writer tries to heal while the trail is unavailable.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// How long a commit to PostgreSQL may take before the trail counts as unavailable (a database
/// that stopped answering without closing the connection).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// `Retry-After` of a call refused while the trail is unavailable: a probe runs before then.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// Why the audit trail could not do something.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// SQLite refused.
    #[error("audit database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The audit key could not be had, or is not the trail's.
    #[error(transparent)]
    Key(#[from] key::KeyError),
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
    /// The file holds entries in the layout of an earlier version (a row per entry), which a
    /// read-only check does not convert.
    #[error(
        "the audit database has the layout of an earlier xgate (a row per entry); start the gateway on it once to convert it, then verify"
    )]
    EarlierLayout,
    /// A block's entries cannot be read (the file was edited).
    #[error(
        "the audit block starting at entry {first_sequence} cannot be read; run `xgate audit verify`"
    )]
    Damaged {
        /// The block's first sequence number.
        first_sequence: i64,
    },
    /// The newest entry's hash is not a hash.
    #[error("the newest audit entry ({sequence}) has no readable hash; run `xgate audit verify`")]
    CorruptHead {
        /// Its sequence number.
        sequence: u64,
    },
    /// The audit trail was opened outside the async runtime.
    #[error("the audit trail must be opened inside the async runtime")]
    NoRuntime,
    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread: {0}")]
    Thread(std::io::Error),
    /// PostgreSQL did not answer a commit within [`COMMIT_TIMEOUT`]; whether it committed is
    /// unknown.
    #[error("the audit commit got no answer within {} s", COMMIT_TIMEOUT.as_secs())]
    CommitTimedOut,
    /// The writer thread is gone.
    #[error("the audit writer has stopped")]
    WriterStopped,
    /// A read task did not finish.
    #[error("an audit query task failed")]
    TaskFailed,
    /// A checkpoint could not copy the whole WAL: a reader still reads an older snapshot.
    #[error("the audit WAL could not be checkpointed whole (a reader holds it)")]
    CheckpointBusy,
    /// PostgreSQL refused or the connection failed (the message never holds the database's
    /// URL or password: tokio-postgres does not put them in its errors).
    #[error("audit store (PostgreSQL): {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection to PostgreSQL could be had from the pool.
    #[error("no connection to the audit store (PostgreSQL): {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The PostgreSQL trail has blocks but no chain row (`audit_chain`): it was edited, and
    /// appending would fork the chain.
    #[error(
        "the audit store has no chain row (audit_chain) but holds blocks; run `xgate audit verify`"
    )]
    NoChainRow,
    /// A sequence number beyond PostgreSQL's `bigint`.
    #[error("an audit sequence number is out of range")]
    SequenceOutOfRange,
    /// An import into a PostgreSQL trail that already holds entries.
    #[error(
        "the audit store already holds entries (up to {last_sequence}); an import only fills an empty one"
    )]
    StoreNotEmpty {
        /// The store's chain row's last sequence number.
        last_sequence: i64,
    },
    /// The SQLite trail to import does not verify.
    #[error(
        "the SQLite audit trail does not verify at entry {sequence} ({reason}); it is not imported"
    )]
    ImportBroken {
        /// The first broken entry.
        sequence: u64,
        /// What is wrong with it.
        reason: String,
    },
}

impl AuditError {
    /// Whether SQLite found no space left on the disk (`SQLITE_FULL`).
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            AuditError::Database(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::DiskFull
        )
    }
}

/// What the writer thread receives.
// Nearly every message is an `Append`; boxing its entry to shrink the rare `Flush` would cost
// an allocation per exchange.
#[allow(clippy::large_enum_variant)]
enum Message {
    /// Commit this entry, then say under which sequence number.
    Append {
        entry: AuditEntry,
        committed: oneshot::Sender<Committed>,
    },
    /// Say so once everything queued before has been committed (or failed).
    Flush(oneshot::Sender<()>),
    /// Try to heal, if the trail is unavailable (sent every [`PROBE_INTERVAL`] while it is).
    Probe,
}

/// Whether the trail can commit, shared by the writer (which decides) and the request path
/// (which reads it before forwarding each call).
#[derive(Debug, Default)]
struct Health {
    /// Commits fail (or the reserve is spent): new calls are refused.
    unavailable: AtomicBool,
    /// The writer has stopped: the prober ends.
    stopped: AtomicBool,
    /// Wakes the prober when the trail becomes unavailable or the writer stops.
    changed: Notify,
}

impl Health {
    /// Marks the trail unavailable (or available again), telling the prober and `metrics`.
    fn set_unavailable(&self, unavailable: bool, metrics: &dyn TrailObserver) {
        let was = self.unavailable.swap(unavailable, Ordering::AcqRel);
        if was != unavailable {
            metrics.unavailable(unavailable);
            self.changed.notify_one();
        }
    }

    /// The writer has stopped: the prober ends.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.changed.notify_one();
    }
}

/// Where the trail is kept: what the readers open.
enum Backend {
    /// The SQLite file (a read-only connection per query).
    Sqlite(PathBuf),
    /// The shared store's PostgreSQL database (a pooled connection per query).
    Postgres(deadpool_postgres::Pool),
}

/// The audit trail: a handle to the one writer, and the readers.
pub struct AuditTrail {
    sender: mpsc::Sender<Message>,
    backend: Backend,
    hash: AuditHash,
    key: Arc<AuditKey>,
    readers: Arc<Semaphore>,
    health: Arc<Health>,
}

impl std::fmt::Debug for AuditTrail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditTrail")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// What the writer thread tells whoever watches it (the gateway's metrics), called on that
/// thread: keep it cheap and never block.
pub trait TrailObserver: Send + 'static {
    /// A batch of `entries` entries was committed.
    fn committed(&self, entries: u64);
    /// The trail became unavailable (`true`) or available again (`false`).
    fn unavailable(&self, unavailable: bool);
}

/// An observer that watches nothing (an auditor's own program, tests).
pub struct Unobserved;

impl TrailObserver for Unobserved {
    fn committed(&self, _entries: u64) {}
    fn unavailable(&self, _unavailable: bool) {}
}

impl AuditTrail {
    /// Opens (creating on first start) the database, allocates the reserve and starts the
    /// writer thread, the task that hands its acknowledgements to the waiting callers and the
    /// one that asks it to heal while it cannot commit. Blocking; called once at start-up,
    /// inside the runtime, before any listener serves.
    ///
    /// A database that opens but has no room for the reserve (a full disk) starts the trail
    /// unavailable: the gateway serves, refusing exchanges, until space returns.
    ///
    /// The writer stamps every entry with `instance` (`[gateway] instance`), counts committed
    /// entries and batch sizes and shows its availability in `metrics`.
    ///
    /// A trail written under another audit key than `key` is refused ([`key::KeyError::Changed`]);
    /// one without a key's fingerprint is given `key`'s.
    pub fn open(
        settings: &AuditSettings,
        key: AuditKey,
        instance: &str,
        metrics: Box<dyn TrailObserver>,
    ) -> Result<AuditTrail, AuditError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AuditError::NoRuntime)?;
        let connection = store::open_writer(&settings.path, settings.hash, settings.synchronous)?;
        store::check_key(&connection, &key)?;
        let health = Arc::new(Health::default());
        let mut writer = Writer {
            connection,
            hash: settings.hash,
            instance: instance.to_owned(),
            reserve: Reserve::new(&settings.path, settings.reserve_bytes),
            health: health.clone(),
            metrics,
        };
        if let Err(error) = writer.reserve.fill() {
            tracing::error!(%error, "the audit trail's reserve cannot be allocated; exchanges are refused until there is room");
            writer.set_unavailable(true);
        }
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let (acknowledge, acknowledgements) = mpsc::unbounded_channel();
        runtime.spawn(probe_while_unavailable(health.clone(), sender.downgrade()));
        std::thread::Builder::new()
            .name("xgate-audit".to_owned())
            .spawn(move || {
                yield_to_the_runtime();
                writer.run(receiver, acknowledge)
            })
            .map_err(AuditError::Thread)?;
        runtime.spawn(relay(acknowledgements));
        Ok(AuditTrail {
            sender,
            backend: Backend::Sqlite(settings.path.clone()),
            hash: settings.hash,
            key: Arc::new(key),
            readers: Arc::new(Semaphore::new(MAX_READERS)),
            health,
        })
    }

    /// Opens the trail in the shared store's PostgreSQL database (its tables made by the store's
    /// migrations, [`postgres::TABLES_V1`]) and starts the writer task and the one that asks it
    /// to heal while it cannot commit. A first open of an empty store records `hash` and starts
    /// the chain; a store chained with the other hash is refused
    /// ([`AuditError::HashChanged`]).
    ///
    /// The writer behaves as the SQLite one: batches of up to [`MAX_BATCH`] queued entries, each
    /// one transaction appended to the one chain every gateway shares (see [`postgres`]), each
    /// caller answered once its own batch committed. It stamps every entry with `instance`,
    /// takes a pooled connection per batch, and never retries a failed batch (a `COMMIT` whose
    /// answer was lost may have committed it).
    pub async fn open_postgres(
        pool: deadpool_postgres::Pool,
        key: AuditKey,
        hash: AuditHash,
        instance: &str,
        metrics: Box<dyn TrailObserver>,
    ) -> Result<AuditTrail, AuditError> {
        let client = pool.get().await?;
        postgres::open(&client, hash).await?;
        postgres::check_key(&client, &key).await?;
        drop(client);
        let health = Arc::new(Health::default());
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(probe_while_unavailable(health.clone(), sender.downgrade()));
        let writer = PostgresWriter {
            pool: pool.clone(),
            connection: None,
            hash,
            instance: instance.to_owned(),
            health: health.clone(),
            metrics,
        };
        tokio::spawn(writer.run(receiver));
        Ok(AuditTrail {
            sender,
            backend: Backend::Postgres(pool),
            hash,
            key: Arc::new(key),
            readers: Arc::new(Semaphore::new(MAX_READERS)),
            health,
        })
    }

    /// Whether the trail cannot commit now: a call not yet forwarded (or looked up) is to be
    /// refused with 503 `store-unavailable` rather than sent where it could not be audited.
    /// One atomic load.
    pub fn is_unavailable(&self) -> bool {
        self.health.unavailable.load(Ordering::Acquire)
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

    /// Entries waiting for the writer now (at most [`QUEUE_CAPACITY`]).
    pub fn queued(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }

    /// Waits until every entry queued so far is committed: the last step of a clean shutdown.
    pub async fn flush(&self) {
        let (flushed, done) = oneshot::channel();
        if self.sender.send(Message::Flush(flushed)).await.is_ok() {
            done.await.ok();
        }
    }

    /// Verifies the whole chain on a read connection.
    pub async fn verify(&self) -> Result<Verification, AuditError> {
        let hash = self.hash;
        match &self.backend {
            Backend::Sqlite(path) => {
                self.read(path, move |connection| store::verify(connection, hash))
                    .await
            }
            Backend::Postgres(pool) => {
                let _permit = self.reader().await?;
                {
                    let mut client = pool.get().await?;
                    postgres::verify_store(&mut client, hash).await
                }
            }
        }
    }

    /// One page of entries.
    pub async fn entries(&self, filter: EntryFilter) -> Result<Page, AuditError> {
        let limit = filter.limit;
        let entries = match &self.backend {
            Backend::Sqlite(path) => {
                self.read(path, move |connection| store::list(connection, &filter))
                    .await?
            }
            Backend::Postgres(pool) => {
                let _permit = self.reader().await?;
                {
                    let mut client = pool.get().await?;
                    postgres::list(&mut client, &filter).await?
                }
            }
        };
        Ok(Page::new(entries, limit))
    }

    /// The audit key: the keyed digests every entry's personal data is kept as.
    pub fn key(&self) -> &Arc<AuditKey> {
        &self.key
    }

    /// One page of the entries that concerned a subject (SPEC §15), newest first, answered from
    /// the subject index: `kind` and `id` are digested under the audit key here, and neither
    /// is kept.
    pub async fn subject(
        &self,
        kind: &str,
        id: &str,
        page: SubjectPage,
    ) -> Result<Page, AuditError> {
        let subject = self.key.subject(kind, id);
        let SubjectPage { limit, after } = page;
        let entries = match &self.backend {
            Backend::Sqlite(path) => {
                self.read(path, move |connection| {
                    store::subject_entries(connection, &subject, limit, after)
                })
                .await?
            }
            Backend::Postgres(pool) => {
                let _permit = self.reader().await?;
                {
                    let client = pool.get().await?;
                    postgres::subject_entries(&client, &subject, limit, after).await?
                }
            }
        };
        Ok(Page::new(entries, limit))
    }

    /// The summary over a window: the exchange matrix, the outcomes over time, the certificate
    /// lookups and the most frequent failures.
    pub async fn summary(&self, window: TimeWindow) -> Result<Summary, AuditError> {
        match &self.backend {
            Backend::Sqlite(path) => {
                self.read(path, move |connection| store::summary(connection, &window))
                    .await
            }
            Backend::Postgres(pool) => {
                let _permit = self.reader().await?;
                {
                    let mut client = pool.get().await?;
                    postgres::summary(&mut client, &window).await
                }
            }
        }
    }

    /// One of the [`MAX_READERS`] permits to query.
    async fn reader(&self) -> Result<tokio::sync::OwnedSemaphorePermit, AuditError> {
        self.readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AuditError::TaskFailed)
    }

    /// Runs a query on its own read-only connection to the SQLite file at `path` on the
    /// blocking pool: WAL readers see the last commit and never hold up the writer.
    async fn read<T: Send + 'static>(
        &self,
        path: &Path,
        query: impl FnOnce(&rusqlite::Connection) -> Result<T, AuditError> + Send + 'static,
    ) -> Result<T, AuditError> {
        let _permit = self.reader().await?;
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let connection = store::open_reader(&path)?;
            query(&connection)
        })
        .await
        .map_err(|_| AuditError::TaskFailed)?
    }
}

/// Verifies the chain of the database in `settings` (for `xgate audit verify`; blocking). The
/// file must exist. (The PostgreSQL trail's: [`postgres::verify_store`].)
pub fn verify_file(settings: &AuditSettings) -> Result<Verification, AuditError> {
    let connection = store::open_reader(&settings.path)?;
    store::verify(&connection, settings.hash)
}

/// The time entries record: now, as RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    thread_local! {
        static SECOND: RefCell<SecondText> = const { RefCell::new(SecondText::new()) };
    }
    let now = SystemTime::now();
    match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since_epoch) => SECOND.with_borrow_mut(|second| second.format(since_epoch)),
        // A clock before 1970 is wrong, but its time is still written as it is.
        Err(_) => query::format_time(now.into()),
    }
}

/// The date and time of day of the last whole second formatted, so that every entry of that
/// second only appends its milliseconds (one chrono formatting per second instead of per
/// entry: it cost more than the rest of building an entry).
struct SecondText {
    /// Seconds since 1970 of `text`.
    second: u64,
    /// `2026-11-28T01:02:03`, or empty before the first use.
    text: String,
}

impl SecondText {
    const fn new() -> Self {
        SecondText {
            second: 0,
            text: String::new(),
        }
    }

    /// `since_epoch` as [`query::format_time`] writes it.
    fn format(&mut self, since_epoch: std::time::Duration) -> String {
        let second = since_epoch.as_secs();
        if self.text.is_empty() || self.second != second {
            let whole = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(second);
            let mut text = query::format_time(whole.into());
            // `2026-11-28T01:02:03.000Z` without `.000Z`.
            text.truncate(text.len().saturating_sub(".000Z".len()));
            self.text = text;
            self.second = second;
        }
        let millis = since_epoch.subsec_millis();
        let mut time = String::with_capacity(self.text.len() + ".000Z".len());
        time.push_str(&self.text);
        time.push('.');
        for digit in [millis / 100, millis / 10 % 10, millis % 10] {
            time.push(char::from(b'0' + digit as u8));
        }
        time.push('Z');
        time
    }
}

/// What a caller of [`AuditTrail::append`] learns: the entry's sequence number, or why it was
/// not committed.
type Committed = Result<u64, Arc<AuditError>>;

/// What the writer hands back per batch: every caller's answer, and the flushes it completed.
struct Acknowledgements {
    committed: Vec<(oneshot::Sender<Committed>, Committed)>,
    flushed: Vec<oneshot::Sender<()>>,
}

/// Releases the callers of each committed batch, on the runtime. The writer thread could
/// complete their oneshots itself, but each completion from outside the runtime wakes it
/// anew (a system call per caller on the current-thread scheduler); through this task a batch
/// costs one wake-up, and the callers are woken from inside the runtime.
async fn relay(mut acknowledgements: mpsc::UnboundedReceiver<Acknowledgements>) {
    while let Some(batch) = acknowledgements.recv().await {
        for (committed, result) in batch.committed {
            // A caller that went away (its connection closed) needs no answer.
            committed.send(result).ok();
        }
        for flushed in batch.flushed {
            flushed.send(()).ok();
        }
    }
}

/// Lowers the writer thread's claim on the CPU it shares with the runtime: as `SCHED_BATCH`
/// (Linux), a queued entry does not preempt the runtime at once; the writer runs when a CPU is
/// free (another core, or this one once the runtime has nothing left to do — typically when
/// every caller waits for its commit) or at the scheduler's next tick. Entries queued meanwhile
/// join the same batch: under load one transaction and one wake-up serve many exchanges
/// instead of one each. Best effort: elsewhere, or if refused, the thread stays as it was.
#[allow(unsafe_code)] // sched_setscheduler: see the SAFETY comment
fn yield_to_the_runtime() {
    #[cfg(target_os = "linux")]
    {
        let parameters = libc::sched_param { sched_priority: 0 };
        // SAFETY: `sched_setscheduler` reads `parameters` only during the call; pid 0 is the
        // calling thread.
        let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &parameters) };
        if result != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "the audit writer keeps the normal scheduling policy");
        }
    }
}

/// Asks the writer to heal every [`PROBE_INTERVAL`] while the trail is unavailable, and sleeps
/// otherwise; ends with the writer. It holds the queue only weakly, so it never keeps the
/// writer alive, and a full queue skips a probe rather than waiting (the writer is busy then).
async fn probe_while_unavailable(health: Arc<Health>, sender: mpsc::WeakSender<Message>) {
    loop {
        // `notify_one` keeps a permit: a change made before this wait is not missed.
        while !health.unavailable.load(Ordering::Acquire) {
            if health.stopped.load(Ordering::Acquire) {
                return;
            }
            health.changed.notified().await;
        }
        if health.stopped.load(Ordering::Acquire) {
            return;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(sender) = sender.upgrade() else {
            return;
        };
        sender.try_send(Message::Probe).ok();
    }
}

/// The writer thread's state: the one write connection, the reserve, and what it tells the
/// request path and the metrics.
struct Writer {
    connection: rusqlite::Connection,
    hash: AuditHash,
    /// `[gateway] instance`, stamped on every entry.
    instance: String,
    reserve: Reserve,
    health: Arc<Health>,
    metrics: Box<dyn TrailObserver>,
}

impl Writer {
    /// Takes what is queued (up to [`MAX_BATCH`]), commits it in one transaction, hands every
    /// caller's acknowledgement to [`relay`], repeats. Ends when every sender is gone and the
    /// queue is empty.
    fn run(
        mut self,
        mut receiver: mpsc::Receiver<Message>,
        acknowledge: mpsc::UnboundedSender<Acknowledgements>,
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
            let Batch {
                entries,
                callers,
                flushed,
                probe,
            } = Batch::sort(batch.drain(..));
            let committed = if entries.is_empty() {
                Vec::new()
            } else {
                answers(callers, self.commit(entries))
            };
            // The relay lives as long as the runtime; without it nobody is left to answer.
            if acknowledge
                .send(Acknowledgements { committed, flushed })
                .is_err()
            {
                break;
            }
            if probe || self.health.unavailable.load(Ordering::Acquire) {
                self.probe();
            }
        }
        self.health.stop();
    }

    /// Commits one batch. When the disk is full, the reserve is given back to the file system
    /// and the batch tried once more in the space it held: these are exchanges already
    /// forwarded, and the trail refuses new ones from the first failure on.
    fn commit(&mut self, entries: Vec<AuditEntry>) -> Result<Vec<u64>, Arc<AuditError>> {
        let count = entries.len() as u64;
        let failed = match store::append(&mut self.connection, self.hash, &self.instance, entries) {
            Ok(sequences) => {
                self.committed(count);
                return Ok(sequences);
            }
            Err(failed) => failed,
        };
        self.set_unavailable(true);
        if failed.error.is_disk_full() && self.reserve.release() {
            tracing::warn!(
                "the audit trail's disk is full: its reserve is given back for the exchanges already forwarded"
            );
            match store::append(
                &mut self.connection,
                self.hash,
                &self.instance,
                failed.entries,
            ) {
                Ok(sequences) => {
                    self.committed(count);
                    return Ok(sequences);
                }
                Err(again) => return Err(Arc::new(again.error)),
            }
        }
        Err(Arc::new(failed.error))
    }

    /// Counts a committed batch.
    fn committed(&self, entries: u64) {
        self.metrics.committed(entries);
    }

    /// While the trail is unavailable: folds the WAL into the database and truncates it (a WAL
    /// that filled the disk gives its space back), allocates the reserve again, and commits a
    /// page. Once all three succeed the trail serves again; otherwise it stays unavailable and
    /// the next probe tries again.
    fn probe(&mut self) {
        if !self.health.unavailable.load(Ordering::Acquire) {
            return;
        }
        if let Err(error) = store::checkpoint_truncate(&self.connection) {
            tracing::debug!(%error, "the audit WAL could not be checkpointed yet");
        }
        if let Err(error) = self.reserve.fill() {
            tracing::debug!(%error, "the audit trail's reserve cannot be allocated yet");
            return;
        }
        match store::probe_write(&mut self.connection) {
            Ok(()) => {
                tracing::info!("audit commits succeed again; exchanges are served");
                self.set_unavailable(false);
            }
            Err(error) => tracing::debug!(%error, "the audit trail still cannot commit"),
        }
    }

    /// Marks the trail unavailable (or available again), telling the prober and the metrics.
    fn set_unavailable(&self, unavailable: bool) {
        self.health
            .set_unavailable(unavailable, self.metrics.as_ref());
    }
}

/// A batch of messages, sorted: the entries to commit and their callers (in the same order),
/// the flushes to complete after them, and whether a probe was asked for.
struct Batch {
    entries: Vec<AuditEntry>,
    callers: Vec<oneshot::Sender<Committed>>,
    flushed: Vec<oneshot::Sender<()>>,
    probe: bool,
}

impl Batch {
    /// Sorts the messages taken off the queue.
    fn sort(messages: impl ExactSizeIterator<Item = Message>) -> Batch {
        let mut batch = Batch {
            entries: Vec::with_capacity(messages.len()),
            callers: Vec::with_capacity(messages.len()),
            flushed: Vec::new(),
            probe: false,
        };
        for message in messages {
            match message {
                Message::Append { entry, committed } => {
                    batch.entries.push(entry);
                    batch.callers.push(committed);
                }
                Message::Flush(done) => batch.flushed.push(done),
                Message::Probe => batch.probe = true,
            }
        }
        batch
    }
}

/// Every caller's answer for a batch that committed (its sequence numbers) or failed.
fn answers(
    callers: Vec<oneshot::Sender<Committed>>,
    result: Result<Vec<u64>, Arc<AuditError>>,
) -> Vec<(oneshot::Sender<Committed>, Committed)> {
    match result {
        Ok(sequences) => callers
            .into_iter()
            .zip(sequences)
            .map(|(caller, sequence)| (caller, Ok(sequence)))
            .collect(),
        Err(error) => {
            tracing::error!(%error, entries = callers.len(), "audit entries could not be committed; their exchanges are refused");
            callers
                .into_iter()
                .map(|caller| (caller, Err(error.clone())))
                .collect()
        }
    }
}

/// The PostgreSQL trail's writer: a task on the runtime, one batch at a time (the database
/// serializes the gateways' batches; within a gateway they are serialized here).
struct PostgresWriter {
    pool: deadpool_postgres::Pool,
    /// The connection the writer keeps from one batch to the next, so that registry changes
    /// and auditors' queries using the same pool never leave it waiting for one; given up
    /// after any failure (its state is unknown) and taken again for the next batch.
    connection: Option<deadpool_postgres::Object>,
    hash: AuditHash,
    /// `[gateway] instance`, stamped on every entry.
    instance: String,
    health: Arc<Health>,
    metrics: Box<dyn TrailObserver>,
}

impl PostgresWriter {
    /// Takes what is queued (up to [`MAX_BATCH`]), appends it as one transaction, answers each
    /// caller once its batch committed (or failed), repeats. Ends when every sender is gone
    /// and the queue is empty.
    async fn run(mut self, mut receiver: mpsc::Receiver<Message>) {
        let mut messages = Vec::with_capacity(MAX_BATCH);
        while receiver.recv_many(&mut messages, MAX_BATCH).await > 0 {
            let Batch {
                entries,
                callers,
                flushed,
                probe,
            } = Batch::sort(messages.drain(..));
            if !entries.is_empty() {
                let result = self.commit(entries).await;
                for (caller, answer) in answers(callers, result) {
                    // A caller that went away (its connection closed) needs no answer.
                    caller.send(answer).ok();
                }
            }
            for done in flushed {
                done.send(()).ok();
            }
            if probe || self.health.unavailable.load(Ordering::Acquire) {
                self.probe().await;
            }
        }
        self.health.stop();
    }

    /// Appends one batch on the writer's connection (taken from the pool when it has none). A
    /// failure, or no answer within [`COMMIT_TIMEOUT`], makes the trail unavailable and gives
    /// the connection up (its state is unknown); the batch is not tried again.
    async fn commit(&mut self, entries: Vec<AuditEntry>) -> Result<Vec<u64>, Arc<AuditError>> {
        let count = entries.len() as u64;
        let client = match self.connection.take() {
            Some(client) => client,
            None => match self.pool.get().await {
                Ok(client) => client,
                Err(error) => {
                    self.set_unavailable(true);
                    return Err(Arc::new(error.into()));
                }
            },
        };
        let appended = tokio::time::timeout(
            COMMIT_TIMEOUT,
            postgres::append(&client, self.hash, &self.instance, entries),
        )
        .await;
        match appended {
            Ok(Ok(sequences)) => {
                self.connection = Some(client);
                self.metrics.committed(count);
                Ok(sequences)
            }
            Ok(Err(failed)) => {
                drop(deadpool_postgres::Object::take(client));
                self.set_unavailable(true);
                Err(Arc::new(failed.error))
            }
            Err(_) => {
                drop(deadpool_postgres::Object::take(client));
                self.set_unavailable(true);
                Err(Arc::new(AuditError::CommitTimedOut))
            }
        }
    }

    /// While the trail is unavailable: commits a no-op update on a pooled connection; once
    /// that succeeds the trail serves again.
    async fn probe(&mut self) {
        if !self.health.unavailable.load(Ordering::Acquire) {
            return;
        }
        let probed = match self.pool.get().await {
            Ok(client) => match client.batch_execute(postgres::PROBE).await {
                Ok(()) => Ok(()),
                Err(error) => {
                    drop(deadpool_postgres::Object::take(client));
                    Err(AuditError::from(error))
                }
            },
            Err(error) => Err(error.into()),
        };
        match probed {
            Ok(()) => {
                tracing::info!("audit commits succeed again; exchanges are served");
                self.set_unavailable(false);
            }
            Err(error) => tracing::debug!(%error, "the audit trail still cannot commit"),
        }
    }

    /// Marks the trail unavailable (or available again), telling the prober and the metrics.
    fn set_unavailable(&self, unavailable: bool) {
        self.health
            .set_unavailable(unavailable, self.metrics.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn entry_times_are_formatted_as_chrono_formats_them_across_seconds_days_and_years() {
        let mut second = SecondText::new();
        // Each instant and the one a millisecond later: within a second, across a second, a
        // day, a leap day and a year.
        let instants = [
            Duration::from_millis(0),
            Duration::from_millis(999),
            Duration::from_millis(1_764_291_723_456),
            Duration::from_millis(1_764_291_723_999),
            Duration::from_millis(1_764_374_399_999),
            Duration::from_millis(1_709_251_199_999),
            Duration::from_millis(1_735_689_599_999),
            Duration::from_micros(1_764_291_723_456_789),
        ];
        for instant in instants {
            for since_epoch in [instant, instant + Duration::from_millis(1), instant] {
                let time = SystemTime::UNIX_EPOCH + since_epoch;
                assert_eq!(
                    second.format(since_epoch),
                    query::format_time(time.into()),
                    "{since_epoch:?}"
                );
            }
        }
        let time = now();
        assert_eq!(time.len(), "2026-11-28T01:02:03.456Z".len(), "{time}");
        assert!(time.ends_with('Z'), "{time}");
    }
}
