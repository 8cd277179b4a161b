//! The audit trail's SQLite file: opening it (WAL, `synchronous` as configured), appending a
//! batch as one block in one transaction, and the read queries behind `/audit/...` and
//! `xgate audit verify`.
//!
//! The file holds `audit_blocks` (one row per committed batch, see [`super::block`]) and the
//! view `audit_entries`, one row per entry with the fields' names, for an auditor with any SQLite
//! client. The entry queries read the same columns from the blocks they select; the summary
//! decodes its window's blocks in Rust. Every query bounds the blocks it reads by their index
//! (sequence numbers, time range) before looking inside them.
//!
//! Everything here blocks: the writer runs it on its own thread, readers on tokio's blocking
//! pool, the CLI on its main thread.

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params, params_from_iter};

use super::AuditError;
use super::block::{self, BlockVerifier, StoredBlock};
use super::entry::{
    AuditEntry, Break, EncodingVersion, EntryKind, GENESIS_HASH, StoredEntry, chain_entries,
};
use super::query::{
    BucketPlan, CertificateSummary, EntryFilter, FailureGroup, MAX_GROUP_ROWS, Summary,
    SummaryCell, TOP_FAILURES, TimeWindow, Timeline,
};
use crate::AuditSync;
use crate::Outcome;
use crate::entry::AuditHash;
use crate::key::AuditKey;

/// How long a connection waits for another one's lock (a checkpoint, a second writer process)
/// before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Entries per block when a database of the earlier layout (one row per entry) is converted.
const MIGRATION_BLOCK: u64 = 512;

/// The size the WAL is cut back to when a checkpoint resets it (`journal_size_limit`): above
/// its working size (SQLite checkpoints at 1,000 pages, 4 MiB, plus the batch that crossed
/// them), so that in normal running it is reused and never truncated, while a WAL that grew
/// because checkpoints could not run (a full disk) gives its space back at the next one.
const WAL_SIZE_LIMIT_BYTES: u64 = 8 << 20;

/// SQLite's default checkpoint interval, in WAL pages (4 MiB of 4 KiB pages).
const CHECKPOINT_PAGES: u64 = 1000;

/// The fewest WAL pages between checkpoints, whatever the volume.
const MIN_CHECKPOINT_PAGES: u64 = 64;

/// The WAL pages between automatic checkpoints on a volume of `volume_bytes`: SQLite's 1,000,
/// or an eighth of the volume when that is less (never under 64). The WAL is reused after each
/// checkpoint but holds, at its largest, every page written since the last one, superseded or
/// not; on a volume smaller than that (a few MiB) it would never be checkpointed and its stale
/// pages would fill the volume — and then a checkpoint, which needs the database file to grow
/// by the pages it copies, could not run.
pub fn checkpoint_pages(volume_bytes: u64, page_size: u64) -> u64 {
    (volume_bytes / 8 / page_size.max(1)).clamp(MIN_CHECKPOINT_PAGES, CHECKPOINT_PAGES)
}

/// The size of the file system holding `path` (`None` when it cannot be asked).
#[allow(unsafe_code)] // statvfs: see the SAFETY comments
fn volume_bytes(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let text = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: `statvfs` reads the NUL-terminated path and writes only into `stats`, a
        // plain struct for which all zeroes is a valid value.
        let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
        let result = unsafe { libc::statvfs(text.as_ptr(), &mut stats) };
        if result != 0 {
            return None;
        }
        Some(stats.f_blocks.saturating_mul(stats.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS audit_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_blocks (
    first_sequence INTEGER PRIMARY KEY,
    last_sequence INTEGER NOT NULL,
    min_time TEXT NOT NULL,
    max_time TEXT NOT NULL,
    head TEXT NOT NULL,
    entries TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_blocks_time ON audit_blocks (max_time, min_time);
CREATE TABLE IF NOT EXISTS audit_subjects (
    subject TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    PRIMARY KEY (subject, sequence)
) WITHOUT ROWID;
";

const INSERT_SUBJECT: &str = "INSERT INTO audit_subjects (subject, sequence) VALUES (?1, ?2)";

/// `e.value ->> 0 AS sequence, e.value ->> 1 AS time, ...`: the stored fields of the entry `e`
/// of `json_each(b.entries)`, under their names. A field past the end of an entry's array (one
/// its version does not have) reads as `NULL`; `version` reads as 1 for the entries of version
/// 1, which do not store it.
static ENTRY_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    block::stored_fields()
        .enumerate()
        .map(|(position, name)| {
            if position == block::VERSION_POSITION {
                format!("coalesce(e.value ->> {position}, 1) AS {name}")
            } else {
                format!("e.value ->> {position} AS {name}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
});

/// The entries of the blocks meeting `block_conditions` (over `b`, the block row), one row each,
/// with the stored fields' names plus `block` (the block's first sequence number).
fn entries_of(block_conditions: &str) -> String {
    format!(
        "(SELECT {columns}, b.first_sequence AS block \
         FROM audit_blocks AS b, json_each(b.entries) AS e WHERE {block_conditions})",
        columns = *ENTRY_COLUMNS
    )
}

/// The stored fields' names, in stored order: what the entry queries select.
static COLUMNS: LazyLock<String> =
    LazyLock::new(|| block::stored_fields().collect::<Vec<_>>().join(", "));

/// How many columns [`COLUMNS`] names.
static COLUMN_COUNT: LazyLock<usize> = LazyLock::new(|| block::stored_fields().count());

/// The stored fields of a version 1 entry: the columns of the earlier one-row-per-entry layout.
static COLUMNS_V1: LazyLock<String> =
    LazyLock::new(|| block::stored_fields_v1().collect::<Vec<_>>().join(", "));

/// The `audit_entries` view over the blocks, as this version creates it.
static ENTRIES_VIEW: LazyLock<String> = LazyLock::new(|| {
    format!(
        "CREATE VIEW audit_entries AS SELECT {columns} FROM audit_blocks AS b, json_each(b.entries) AS e",
        columns = *ENTRY_COLUMNS
    )
});

const INSERT: &str = "INSERT INTO audit_blocks \
    (first_sequence, last_sequence, min_time, max_time, head, entries) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Opens (creating it and its folder on first start) the database for the one writer, and
/// converts a database of the earlier layout (one row per entry) to blocks.
///
/// WAL lets readers run beside the writer. With `synchronous=NORMAL` every commit is written to
/// the WAL before the callers are answered, so `kill -9` loses nothing committed; the WAL is
/// synced at checkpoints, so a power loss can take the last commits. `FULL` syncs the WAL at
/// every commit (group commit spreads that one sync over every entry of a batch).
pub fn open_writer(
    path: &Path,
    hash: AuditHash,
    synchronous: AuditSync,
) -> Result<Connection, AuditError> {
    if let Some(folder) = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
    {
        std::fs::create_dir_all(folder).map_err(AuditError::Folder)?;
    }
    let mut connection = Connection::open(path)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = connection.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(AuditError::NotWal(mode));
    }
    connection.execute_batch(match synchronous {
        AuditSync::Full => "PRAGMA synchronous=FULL;",
        AuditSync::Normal => "PRAGMA synchronous=NORMAL;",
    })?;
    let page_size: u64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let folder = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let pages = volume_bytes(folder).map_or(CHECKPOINT_PAGES, |volume| {
        checkpoint_pages(volume, page_size)
    });
    connection.execute_batch(&format!(
        "PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}; PRAGMA wal_autocheckpoint={pages};"
    ))?;
    // A WAL left grown by an earlier run that filled the disk is folded into the database and
    // truncated now, if there is room for it; if there is not, the writer tries again while
    // it refuses exchanges.
    if let Err(error) = checkpoint_truncate(&connection) {
        tracing::warn!(%error, "the audit WAL could not be checkpointed at start");
    }
    connection.execute_batch(CREATE)?;
    create_entries_view(&mut connection)?;
    let configured = hash_name(hash);
    match stored_hash(&connection)? {
        None => {
            connection.execute(
                "INSERT INTO audit_meta (key, value) VALUES ('hash', ?1)",
                [configured],
            )?;
        }
        Some(stored) if stored == configured => {}
        Some(stored) => {
            return Err(AuditError::HashChanged {
                stored,
                configured: configured.to_owned(),
            });
        }
    }
    Ok(connection)
}

/// Creates the `audit_entries` view, or replaces one an earlier version created (without the
/// fields of later encodings); a table of that name is the earlier layout, whose rows are moved
/// into blocks first, values and hashes unchanged (the chain does not depend on the layout), in
/// one transaction. A view that is already this version's is left alone: opening writes nothing
/// then, so the gateway starts on a full disk (and refuses exchanges until it heals).
fn create_entries_view(connection: &mut Connection) -> Result<(), AuditError> {
    let current: Option<String> = connection
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'audit_entries' AND type = 'view'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if current.as_deref() == Some(ENTRIES_VIEW.as_str()) {
        return Ok(());
    }
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let existing = entries_object(&transaction)?;
    if existing.as_deref() == Some("view") {
        transaction.execute_batch("DROP VIEW audit_entries;")?;
    }
    if existing.as_deref() == Some("table") {
        // The values are copied as SQLite holds them (an edited row stays edited, for `verify`
        // to report); each block's head is its last entry's hash.
        transaction.execute_batch(&format!(
            "INSERT INTO audit_blocks (first_sequence, last_sequence, min_time, max_time, head, entries) \
             SELECT min(sequence), max(sequence), min(time), max(time), '', \
                    json_group_array(json_array({columns}) ORDER BY sequence) \
             FROM audit_entries GROUP BY (sequence - 1) / {MIGRATION_BLOCK}; \
             UPDATE audit_blocks SET head = entries ->> '$[#-1][#-1]' WHERE head = ''; \
             DROP TABLE audit_entries;",
            columns = *COLUMNS_V1
        ))?;
    }
    transaction.execute_batch(&ENTRIES_VIEW)?;
    transaction.commit()?;
    Ok(())
}

/// What `audit_entries` is in the file: `view` (this layout), `table` (the earlier layout, a row
/// per entry), or nothing yet.
pub(crate) fn entries_object(connection: &Connection) -> Result<Option<String>, AuditError> {
    Ok(connection
        .query_row(
            "SELECT type FROM sqlite_schema WHERE name = 'audit_entries'",
            [],
            |row| row.get(0),
        )
        .optional()?)
}

/// Opens the database read-only (it must exist).
pub fn open_reader(path: &Path) -> Result<Connection, AuditError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    Ok(connection)
}

/// The hash the database was chained with, as stored in `audit_meta`.
pub(crate) fn stored_hash(connection: &Connection) -> Result<Option<String>, AuditError> {
    Ok(connection
        .query_row(
            "SELECT value FROM audit_meta WHERE key = 'hash'",
            [],
            |row| row.get(0),
        )
        .optional()?)
}

/// The word stored in `audit_meta` for a hash.
pub(crate) fn hash_name(hash: AuditHash) -> &'static str {
    match hash {
        AuditHash::Sha256 => "sha256",
        AuditHash::Sm3 => "sm3",
    }
}

/// The audit key's fingerprint stored in the file, if any.
pub(crate) fn stored_key_fingerprint(
    connection: &Connection,
) -> Result<Option<String>, AuditError> {
    Ok(connection
        .query_row(
            "SELECT value FROM audit_meta WHERE key = 'key_fingerprint'",
            [],
            |row| row.get(0),
        )
        .optional()?)
}

/// Refuses a trail written under another audit key; a trail without a key's fingerprint (new,
/// or written before digests were keyed) is given `key`'s.
pub fn check_key(connection: &Connection, key: &AuditKey) -> Result<(), AuditError> {
    let stored = stored_key_fingerprint(connection)?;
    key.check(stored.as_deref())?;
    if stored.is_none() {
        connection.execute(
            "INSERT INTO audit_meta (key, value) VALUES ('key_fingerprint', ?1)",
            [key.fingerprint()],
        )?;
    }
    Ok(())
}

/// Entries that concerned the subject whose keyed digest is `subject`, newest first, at most
/// `limit + 1`, older than `after` when given: answered from the `audit_subjects` index, then
/// each entry read from its block (a block is decoded once however many of its entries are
/// on the page). An index row whose entry does not carry that digest (an edited index) is
/// skipped: the page holds only what the chained entries say.
pub fn subject_entries(
    connection: &Connection,
    subject: &str,
    limit: u32,
    after: Option<u64>,
) -> Result<Vec<StoredEntry>, AuditError> {
    let after = after.map_or(i64::MAX, |after| i64::try_from(after).unwrap_or(i64::MAX));
    let wanted = i64::from(limit).saturating_add(1);
    let mut index = connection.prepare_cached(
        "SELECT sequence FROM audit_subjects WHERE subject = ?1 AND sequence < ?2 \
         ORDER BY sequence DESC LIMIT ?3",
    )?;
    let sequences: Vec<i64> = index
        .query_map(params![subject, after, wanted], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut block_of = connection.prepare_cached(
        "SELECT first_sequence, entries FROM audit_blocks WHERE first_sequence <= ?1 \
         ORDER BY first_sequence DESC LIMIT 1",
    )?;
    let mut page = Vec::with_capacity(sequences.len());
    let mut current: Option<(i64, Vec<StoredEntry>)> = None;
    for sequence in sequences {
        let held = current
            .as_ref()
            .is_some_and(|(_, entries)| block::entry_at(entries, sequence).is_some());
        if !held {
            let found: Option<(i64, String)> = block_of
                .query_row([sequence], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let Some((first_sequence, text)) = found else {
                continue;
            };
            let entries =
                block::decode(text.as_bytes()).ok_or(AuditError::Damaged { first_sequence })?;
            current = Some((first_sequence, entries));
        }
        if let Some((_, entries)) = &current
            && let Some(stored) = block::entry_at(entries, sequence)
            && stored.entry.subject_sha256.as_deref() == Some(subject)
        {
            page.push(stored.clone());
        }
    }
    Ok(page)
}

/// A batch that was not committed, handed back whole so that it can be tried again.
#[derive(Debug)]
pub struct Unappended {
    /// Why.
    pub error: AuditError,
    /// The batch's entries, as they were given.
    pub entries: Vec<AuditEntry>,
}

/// Numbers and chains a batch (stamped with `gateway`, the committing gateway's instance name),
/// and inserts it as one block in one transaction; returns the sequence numbers, or the entries
/// and why they were not committed.
///
/// The chain's head is read inside the write transaction rather than trusted from memory: the
/// transaction holds SQLite's write lock, so even a second gateway started by mistake on the
/// same file continues the chain instead of forking it, and a failed batch leaves nothing to
/// roll back in memory (rusqlite rolls the transaction back when it is dropped uncommitted).
pub fn append(
    connection: &mut Connection,
    hash: AuditHash,
    gateway: &str,
    entries: Vec<AuditEntry>,
) -> Result<Vec<u64>, Unappended> {
    let transaction =
        match connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(transaction) => transaction,
            Err(error) => {
                return Err(Unappended {
                    error: error.into(),
                    entries,
                });
            }
        };
    let (sequence, previous) = match chain_head(&transaction) {
        Ok(head) => head,
        Err(error) => return Err(Unappended { error, entries }),
    };
    let stored = chain_entries(hash, previous, sequence, gateway, entries);
    match insert_block(transaction, &stored) {
        Ok(()) => Ok(stored.iter().map(|stored| stored.sequence).collect()),
        Err(error) => Err(Unappended {
            error,
            entries: stored.into_iter().map(|stored| stored.entry).collect(),
        }),
    }
}

/// The last entry's sequence number and hash (0 and the genesis hash for an empty trail).
fn chain_head(transaction: &rusqlite::Transaction<'_>) -> Result<(u64, [u8; 32]), AuditError> {
    let head: Option<(u64, String)> = transaction
        .prepare_cached(
            "SELECT last_sequence, head FROM audit_blocks ORDER BY first_sequence DESC LIMIT 1",
        )?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    match head {
        None => Ok((0, GENESIS_HASH)),
        Some((sequence, text)) => {
            let mut previous = [0u8; 32];
            hex::decode_to_slice(&text, &mut previous)
                .map_err(|_| AuditError::CorruptHead { sequence })?;
            Ok((sequence, previous))
        }
    }
}

/// Inserts chained entries as one block and commits.
fn insert_block(
    transaction: rusqlite::Transaction<'_>,
    stored: &[StoredEntry],
) -> Result<(), AuditError> {
    let Some(block) = block::encode(stored) else {
        return Ok(());
    };
    transaction.prepare_cached(INSERT)?.execute(params![
        block.first_sequence,
        block.last_sequence,
        block.min_time,
        block.max_time,
        block.head,
        block.entries,
    ])?;
    {
        let mut insert = transaction.prepare_cached(INSERT_SUBJECT)?;
        for (subject, sequence) in block::subjects(stored) {
            insert.execute(params![subject, sequence])?;
        }
    }
    transaction.commit()?;
    Ok(())
}

/// Copies the whole WAL into the database and truncates it to nothing
/// (`wal_checkpoint(TRUNCATE)`), giving its space back to the file system. Fails when the
/// database cannot grow by the pages the WAL holds (a full disk) or a reader holds an older
/// snapshot past the busy timeout.
pub fn checkpoint_truncate(connection: &Connection) -> Result<(), AuditError> {
    let busy: i64 =
        connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    if busy != 0 {
        return Err(AuditError::CheckpointBusy);
    }
    Ok(())
}

/// Writes one page and commits it, changing nothing (the hash's row is rewritten as it is):
/// whether a commit can reach the WAL now, and with `synchronous = "full"` the disk.
pub fn probe_write(connection: &mut Connection) -> Result<(), AuditError> {
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    transaction.execute("UPDATE audit_meta SET value = value WHERE key = 'hash'", [])?;
    transaction.commit()?;
    Ok(())
}

/// Reads one row in [`COLUMNS`] order (the view's, or an entry query's).
fn stored_entry(row: &Row<'_>) -> rusqlite::Result<StoredEntry> {
    let kind: String = row.get(2)?;
    let kind = EntryKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            "an unknown entry kind".into(),
        )
    })?;
    let version: u64 = row.get(block::VERSION_POSITION)?;
    let version = EncodingVersion::from_number(version).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            block::VERSION_POSITION,
            rusqlite::types::Type::Integer,
            "an unknown encoding version".into(),
        )
    })?;
    Ok(StoredEntry {
        sequence: row.get(0)?,
        version,
        entry: AuditEntry {
            time: row.get(1)?,
            kind,
            request_id: row.get(3)?,
            exchange_id: row.get(block::VERSION_POSITION + 1)?,
            consumer: row.get(4)?,
            provider: row.get(5)?,
            service: row.get(6)?,
            method: row.get(7)?,
            path_sha256: row.get(8)?,
            purpose_sha256: row.get(9)?,
            purpose: row.get(block::VERSION_POSITION + 3)?,
            status: row.get(10)?,
            outcome: row.get(11)?,
            request_bytes: row.get(12)?,
            response_bytes: row.get(13)?,
            request_sha256: row.get(14)?,
            response_sha256: row.get(15)?,
            request_schema: row.get(16)?,
            response_schema: row.get(17)?,
            subject_sha256: row.get(18)?,
            total_us: row.get(19)?,
            upstream_us: row.get(20)?,
        },
        gateway: row.get(block::VERSION_POSITION + 2)?,
        hash: row.get(21)?,
    })
}

/// The result of verifying the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// Whether every entry verified.
    pub ok: bool,
    /// How many entries verified (before the break, if any).
    pub count: u64,
    /// The hash of the last verified entry; an auditor who notes it can later tell that no
    /// entry was removed from the end.
    pub head: Option<String>,
    /// The first broken entry.
    pub broken: Option<Break>,
}

/// Verifies the whole chain in sequence order, one block at a time (bounded memory: a block
/// holds at most one batch). A block whose entries cannot even be read as entries (not JSON, a
/// number changed into text, say) is a break too.
pub fn verify(connection: &Connection, hash: AuditHash) -> Result<Verification, AuditError> {
    // Verifying with the other hash would report every entry broken; say what is wrong instead.
    if let Some(stored) = stored_hash(connection)?
        && stored != hash_name(hash)
    {
        return Err(AuditError::HashChanged {
            stored,
            configured: hash_name(hash).to_owned(),
        });
    }
    if entries_object(connection)?.as_deref() == Some("table") {
        return Err(AuditError::EarlierLayout);
    }
    let mut verifier = BlockVerifier::new(hash);
    let mut statement = connection.prepare(
        "SELECT first_sequence, last_sequence, min_time, max_time, head, entries \
         FROM audit_blocks ORDER BY first_sequence",
    )?;
    let mut rows = statement.query([])?;
    let mut broken = None;
    while let Some(row) = rows.next()? {
        // A value of the wrong type in the index reads as one that matches nothing.
        let text = |index: usize| match row.get_ref(index) {
            Ok(ValueRef::Text(text)) => std::str::from_utf8(text).unwrap_or(""),
            _ => "",
        };
        let number = |index: usize| match row.get_ref(index) {
            Ok(ValueRef::Integer(number)) => number,
            _ => -1,
        };
        let entries = match row.get_ref(5) {
            Ok(ValueRef::Text(bytes) | ValueRef::Blob(bytes)) => bytes,
            _ => &[],
        };
        let checked = verifier.next(StoredBlock {
            first_sequence: number(0),
            last_sequence: number(1),
            min_time: text(2),
            max_time: text(3),
            head: text(4),
            entries,
        });
        if let Err(found) = checked {
            broken = Some(found);
            break;
        }
    }
    let count = verifier.count();
    Ok(Verification {
        ok: broken.is_none(),
        count,
        head: (count > 0).then(|| verifier.head()),
        broken,
    })
}

/// A query's conditions, on the blocks (over `b`: their index) and on the entries (over the
/// fields' names), with their values bound as numbered parameters so that one value can serve
/// both.
#[derive(Debug, Default)]
struct Conditions {
    blocks: Vec<String>,
    entries: Vec<String>,
    values: Vec<SqlValue>,
    /// Keep SQLite off the time index: for a page read newest first, walking the blocks by
    /// sequence number and stopping once the page is full beats collecting the whole window
    /// through the index and sorting it.
    newest_first: bool,
    /// Read this table instead of the blocks (the summary's copy of its window).
    table: Option<&'static str>,
}

impl Conditions {
    /// Binds a value; returns its parameter (`?3`).
    fn bind(&mut self, value: impl Into<SqlValue>) -> String {
        self.values.push(value.into());
        format!("?{}", self.values.len())
    }

    /// An entry condition with one value: `template`'s `?` becomes the value's parameter.
    fn entry(&mut self, template: &str, value: impl Into<SqlValue>) {
        let parameter = self.bind(value);
        self.entries.push(template.replace('?', &parameter));
    }

    /// The time window, on the entries and on the blocks' time ranges (a block is read only if
    /// its range meets the window).
    fn window(&mut self, window: &TimeWindow) {
        // A unary `+` makes a column unusable for an index.
        let column = if self.newest_first { "+b." } else { "b." };
        if let Some(since) = &window.since {
            let since = self.bind(since.clone());
            self.blocks.push(format!("{column}max_time >= {since}"));
            self.entries.push(format!("time >= {since}"));
        }
        if let Some(until) = &window.until {
            let until = self.bind(until.clone());
            self.blocks.push(format!("{column}min_time < {until}"));
            self.entries.push(format!("time < {until}"));
        }
    }

    /// `FROM ... WHERE ...`: the entries of the matching blocks that match.
    fn source_and_filter(&self) -> String {
        let source = match self.table {
            Some(table) => table.to_owned(),
            None => entries_of(&conjunction(&self.blocks)),
        };
        format!("FROM {source} WHERE {}", conjunction(&self.entries))
    }
}

/// `a AND b AND ...`, or `TRUE` for no conditions.
fn conjunction(conditions: &[String]) -> String {
    if conditions.is_empty() {
        "TRUE".to_owned()
    } else {
        conditions.join(" AND ")
    }
}

/// Entries matching `filter`, newest first, at most `filter.limit + 1` (the extra one tells
/// the caller there is a next page). Blocks are read newest first and the reading stops once
/// the page is full.
pub fn list(connection: &Connection, filter: &EntryFilter) -> Result<Vec<StoredEntry>, AuditError> {
    let mut conditions = Conditions {
        newest_first: true,
        ..Conditions::default()
    };
    conditions.entry("kind = ?", filter.kind.as_str().to_owned());
    for (template, value) in [
        ("consumer = ?", &filter.consumer),
        ("provider = ?", &filter.provider),
        ("service = ?", &filter.service),
        ("outcome = ?", &filter.outcome),
    ] {
        if let Some(value) = value {
            conditions.entry(template, value.clone());
        }
    }
    conditions.window(&filter.window);
    if let Some(after) = filter.after {
        let after = conditions.bind(i64::try_from(after).unwrap_or(i64::MAX));
        conditions
            .blocks
            .push(format!("b.first_sequence < {after}"));
        conditions.entries.push(format!("sequence < {after}"));
    }
    // Blocks come newest first (the table's own order, no sort); the entries of each block are
    // put newest first here. Sorting the entries in SQL would make SQLite collect and sort the
    // whole match before returning the first row.
    let wanted = usize::try_from(filter.limit)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let mut statement = connection.prepare(&format!(
        "SELECT {columns}, block {} ORDER BY block DESC",
        conditions.source_and_filter(),
        columns = *COLUMNS
    ))?;
    let mut rows = statement.query(params_from_iter(conditions.values))?;
    let mut page: Vec<StoredEntry> = Vec::with_capacity(wanted);
    let mut block: Vec<StoredEntry> = Vec::new();
    let mut current = None;
    let finish_block = |page: &mut Vec<StoredEntry>, block: &mut Vec<StoredEntry>| {
        block.sort_unstable_by_key(|stored| std::cmp::Reverse(stored.sequence));
        page.append(block);
    };
    while let Some(row) = rows.next()? {
        let first_sequence: i64 = row.get(*COLUMN_COUNT)?;
        if current != Some(first_sequence) {
            finish_block(&mut page, &mut block);
            if page.len() >= wanted {
                break;
            }
            current = Some(first_sequence);
        }
        block.push(stored_entry(row)?);
    }
    finish_block(&mut page, &mut block);
    page.truncate(wanted);
    Ok(page)
}

/// The summary's copy of its window's entries: the fields it groups, counts and ranks by.
const WINDOW_COPY: &str = "temp.summary_window";

/// The summary over a time window (see [`Summary`]). Every part is read in one read
/// transaction, so the parts agree with each other even while the writer commits.
///
/// Reading fields out of the blocks' JSON is the expensive step, so it is done once: one pass
/// copies the window's entries (only the fields the summary uses) into a temporary table
/// ([`copy_window`]), and every part is a grouped query over its plain columns. The copy lives in SQLite's temporary
/// storage (spilled to a file past its cache, so memory stays bounded) and goes with the
/// connection.
pub fn summary(connection: &Connection, window: &TimeWindow) -> Result<Summary, AuditError> {
    let transaction = connection.unchecked_transaction()?;
    let copy = WindowCopy::create(&transaction, window)?;
    {
        let mut conditions = Conditions::default();
        conditions.window(window);
        let mut blocks = transaction.prepare(&format!(
            "SELECT b.first_sequence, b.entries FROM audit_blocks AS b WHERE {}",
            conjunction(&conditions.blocks)
        ))?;
        let mut rows = blocks.query(params_from_iter(conditions.values))?;
        while let Some(row) = rows.next()? {
            let entries = match row.get_ref(1)? {
                ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Some(bytes),
                _ => None,
            };
            copy.add_block(row.get(0)?, entries)?;
        }
    }
    let summary = copy.summarize()?;
    transaction.commit()?;
    Ok(summary)
}

/// The summary's copy of its window's entries ([`WINDOW_COPY`]: the fields it groups, counts
/// and ranks by), filled block by block and then summarized by grouped queries. The SQLite
/// trail fills it from its own blocks inside its read transaction; the PostgreSQL trail
/// ([`crate::postgres`]) from the blocks it fetched, on an in-memory SQLite connection: one
/// code path gives both the same answer.
pub(crate) struct WindowCopy<'c> {
    connection: &'c Connection,
    window: TimeWindow,
}

impl<'c> WindowCopy<'c> {
    /// Creates the (empty) copy on `connection`.
    pub(crate) fn create(
        connection: &'c Connection,
        window: &TimeWindow,
    ) -> Result<WindowCopy<'c>, AuditError> {
        connection.execute_batch(&format!(
            "DROP TABLE IF EXISTS {WINDOW_COPY}; \
             CREATE TABLE {WINDOW_COPY} (kind TEXT, consumer TEXT, provider TEXT, service TEXT, \
             outcome TEXT, request_bytes INTEGER, response_bytes INTEGER, total_us INTEGER, time TEXT);"
        ))?;
        Ok(WindowCopy {
            connection,
            window: window.clone(),
        })
    }

    /// Copies the summary's fields of a block's entries that fall in the window: the block is
    /// decoded here (`serde_json` skips the fields the summary does not use, several times
    /// faster than SQLite's JSON functions over each entry). `entries` is the block's stored
    /// text (`None` when it is not text); a block that cannot be read is
    /// [`AuditError::Damaged`].
    pub(crate) fn add_block(
        &self,
        first_sequence: i64,
        entries: Option<&[u8]>,
    ) -> Result<(), AuditError> {
        let Some(entries) = entries.and_then(block::summary_fields) else {
            return Err(AuditError::Damaged { first_sequence });
        };
        let window = &self.window;
        let in_window = |time: &str| {
            window.since.as_deref().is_none_or(|since| time >= since)
                && window.until.as_deref().is_none_or(|until| time < until)
        };
        let mut insert = self.connection.prepare_cached(&format!(
            "INSERT INTO {WINDOW_COPY} VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ))?;
        for fields in entries.iter().filter(|fields| in_window(&fields.time)) {
            insert.execute(params![
                fields.kind,
                fields.consumer,
                fields.provider,
                fields.service,
                fields.outcome,
                fields.request_bytes,
                fields.response_bytes,
                fields.total_us,
                fields.time,
            ])?;
        }
        Ok(())
    }

    /// Every part of the summary over the copy; the copy is dropped.
    pub(crate) fn summarize(self) -> Result<Summary, AuditError> {
        let connection = self.connection;
        let window = &self.window;
        let matrix = matrix(connection)?;
        let timeline = timeline(connection, window)?;
        let certificates = certificates(connection)?;
        let failures = failures(connection)?;
        connection.execute_batch(&format!("DROP TABLE {WINDOW_COPY};"))?;
        Ok(Summary {
            since: window.since.clone(),
            until: window.until.clone(),
            matrix,
            timeline,
            certificates,
            failures,
        })
    }
}

/// The entries of one kind in the summary's window copy.
fn kind_in_window(kind: EntryKind) -> Conditions {
    let mut conditions = Conditions {
        table: Some(WINDOW_COPY),
        ..Conditions::default()
    };
    conditions.entry("kind = ?", kind.as_str().to_owned());
    conditions
}

/// The exchange matrix over a time window (see [`SummaryCell`] for the method).
fn matrix(connection: &Connection) -> Result<Vec<SummaryCell>, AuditError> {
    let conditions = kind_in_window(EntryKind::Exchange);
    let from_where = conditions.source_and_filter();
    let mut statement = connection.prepare(&format!(
        "SELECT consumer, provider, service, outcome, COUNT(*), \
         COALESCE(SUM(request_bytes), 0), COALESCE(SUM(response_bytes), 0) {from_where} \
         GROUP BY consumer, provider, service, outcome \
         ORDER BY consumer, provider, service, outcome"
    ))?;
    let mut cells: Vec<SummaryCell> = Vec::new();
    let mut rows = statement.query(params_from_iter(conditions.values.iter()))?;
    while let Some(row) = rows.next()? {
        let consumer: String = row.get(0)?;
        let provider: Option<String> = row.get(1)?;
        let service: Option<String> = row.get(2)?;
        let outcome: String = row.get(3)?;
        let count: u64 = row.get(4)?;
        let request_bytes: u64 = row.get(5)?;
        let response_bytes: u64 = row.get(6)?;
        let same = cells.last().is_some_and(|cell| {
            cell.consumer == consumer && cell.provider == provider && cell.service == service
        });
        if !same {
            cells.push(SummaryCell::new(consumer, provider, service));
        }
        if let Some(cell) = cells.last_mut() {
            cell.add(outcome, count, request_bytes, response_bytes);
        }
    }
    drop(rows);
    // Percentiles by nearest rank: the value at rank ceil(p * n) of each cell's sorted
    // latencies, ranked by SQLite in one pass over the window (its sorter spills to disk, so
    // nothing unbounded is held in memory); only the two ranked rows per cell come back.
    let mut percentiles = connection.prepare(&format!(
        "SELECT consumer, provider, service, total_us, rank FROM \
         (SELECT consumer, provider, service, total_us, \
                 row_number() OVER (PARTITION BY consumer, provider, service ORDER BY total_us) AS rank, \
                 COUNT(*) OVER (PARTITION BY consumer, provider, service) AS count \
          {from_where}) \
         WHERE rank = (count * 50 + 99) / 100 OR rank = (count * 99 + 99) / 100"
    ))?;
    let mut rows = percentiles.query(params_from_iter(conditions.values.iter()))?;
    while let Some(row) = rows.next()? {
        let consumer: String = row.get(0)?;
        let provider: Option<String> = row.get(1)?;
        let service: Option<String> = row.get(2)?;
        let total_us: u64 = row.get(3)?;
        let rank: u64 = row.get(4)?;
        // Both queries read the same snapshot, so the cell is there with the same count.
        if let Ok(found) = cells.binary_search_by(|cell| {
            (&cell.consumer, &cell.provider, &cell.service).cmp(&(&consumer, &provider, &service))
        }) {
            cells[found].ranked_latency(rank, total_us);
        }
    }
    Ok(cells)
}

/// The window's exchanges by outcome per bucket. The buckets cover the window; an open end is
/// closed at the first or last exchange in the window.
fn timeline(connection: &Connection, window: &TimeWindow) -> Result<Timeline, AuditError> {
    let conditions = kind_in_window(EntryKind::Exchange);
    let from_where = conditions.source_and_filter();
    let (mut first, mut last) = BucketPlan::window_seconds(window);
    if first.is_none() || last.is_none() {
        let (oldest, newest): (Option<i64>, Option<i64>) = connection.query_row(
            &format!("SELECT MIN(unixepoch(time)), MAX(unixepoch(time)) {from_where}"),
            params_from_iter(conditions.values.iter()),
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        first = first.or(oldest);
        last = last.or(newest);
    }
    // An open window without exchanges has no buckets.
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(Timeline::new(None));
    };
    let plan = BucketPlan::covering(first, last);
    let mut timeline = Timeline::new(Some(plan));
    // An entry whose time is not a time (an edited file) has no bucket and is left out.
    let mut statement = connection.prepare(&format!(
        "SELECT bucket, outcome, COUNT(*) FROM \
         (SELECT (unixepoch(time) - {start}) / {step} AS bucket, outcome {from_where}) \
         WHERE bucket BETWEEN 0 AND {last_bucket} \
         GROUP BY bucket, outcome ORDER BY bucket, outcome LIMIT {MAX_GROUP_ROWS}",
        start = plan.first,
        step = plan.step_seconds,
        last_bucket = plan.count - 1,
    ))?;
    let mut rows = statement.query(params_from_iter(conditions.values))?;
    while let Some(row) = rows.next()? {
        timeline.add(row.get(0)?, row.get(1)?, row.get(2)?);
    }
    Ok(timeline)
}

/// The window's certificate lookups by type, issuer and outcome.
fn certificates(connection: &Connection) -> Result<CertificateSummary, AuditError> {
    let conditions = kind_in_window(EntryKind::Certificate);
    let mut statement = connection.prepare(&format!(
        "SELECT service, provider, outcome, COUNT(*) {} \
         GROUP BY service, provider, outcome ORDER BY service, provider, outcome \
         LIMIT {MAX_GROUP_ROWS}",
        conditions.source_and_filter()
    ))?;
    let mut summary = CertificateSummary::default();
    let mut rows = statement.query(params_from_iter(conditions.values))?;
    while let Some(row) = rows.next()? {
        summary.add(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
    }
    summary.finish();
    Ok(summary)
}

/// The most frequent failures: exchanges whose outcome is not `ok` and lookups that were
/// refused or failed, grouped by kind, consumer, provider, service and outcome; ties go to the
/// most recent, then by name, so the order is stable.
fn failures(connection: &Connection) -> Result<Vec<FailureGroup>, AuditError> {
    let mut conditions = Conditions {
        table: Some(WINDOW_COPY),
        ..Conditions::default()
    };
    let success = conditions.bind(Outcome::Ok.as_str().to_owned());
    let answers: Vec<String> = Outcome::ALL
        .into_iter()
        .filter(|outcome| outcome.is_lookup_answer())
        .map(|outcome| conditions.bind(outcome.as_str().to_owned()))
        .collect();
    conditions.entries.push(format!(
        "((kind = 'exchange' AND outcome <> {success}) OR \
          (kind = 'certificate' AND outcome NOT IN ({})))",
        answers.join(", ")
    ));
    let mut statement = connection.prepare(&format!(
        "SELECT kind, consumer, provider, service, outcome, COUNT(*) AS count, \
         MAX(time) AS last_seen {} \
         GROUP BY kind, consumer, provider, service, outcome \
         ORDER BY count DESC, last_seen DESC, kind, consumer, provider, service, outcome \
         LIMIT {TOP_FAILURES}",
        conditions.source_and_filter()
    ))?;
    let rows = statement.query_map(params_from_iter(conditions.values), |row| {
        Ok(FailureGroup {
            kind: row.get(0)?,
            consumer: row.get(1)?,
            provider: row.get(2)?,
            service: row.get(3)?,
            outcome: row.get(4)?,
            count: row.get(5)?,
            last_seen: row.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::sha256_hex;
    use crate::query::MAX_LIMIT;

    fn entry(index: u64) -> AuditEntry {
        AuditEntry {
            time: format!("2026-11-28T01:{:02}:00.000Z", index % 60),
            kind: EntryKind::Exchange,
            request_id: format!("request-{index}"),
            exchange_id: Some(format!("0190a3b4-5e6f-7a8b-9c0d-{index:012}")),
            consumer: if index.is_multiple_of(2) {
                "tax"
            } else {
                "civil-affairs"
            }
            .to_owned(),
            provider: Some("market-regulation".to_owned()),
            service: Some("business-licenses".to_owned()),
            method: "GET".to_owned(),
            path_sha256: Some(sha256_hex(format!("/{index}").as_bytes())),
            purpose_sha256: None,
            purpose: None,
            status: 200,
            outcome: "ok".to_owned(),
            request_bytes: Some(index),
            response_bytes: None,
            request_sha256: None,
            response_sha256: None,
            request_schema: None,
            response_schema: None,
            subject_sha256: None,
            total_us: index,
            upstream_us: None,
        }
    }

    /// An entry as a gateway before exchange ids wrote it.
    fn entry_v1(index: u64) -> AuditEntry {
        AuditEntry {
            exchange_id: None,
            ..entry(index)
        }
    }

    fn writer(folder: &tempfile::TempDir) -> Connection {
        open_writer(
            &folder.path().join("audit.db"),
            AuditHash::Sha256,
            AuditSync::Normal,
        )
        .unwrap()
    }

    /// Appends entries 1..=total in batches of the given sizes (repeated).
    fn fill(connection: &mut Connection, total: u64, batches: &[u64]) {
        let mut next = 1;
        for size in batches.iter().cycle() {
            if next > total {
                break;
            }
            let last = (next + size - 1).min(total);
            let sequences = append(
                connection,
                AuditHash::Sha256,
                "gw-1",
                (next..=last).map(entry).collect(),
            )
            .unwrap();
            assert_eq!(sequences, (next..=last).collect::<Vec<_>>());
            next = last + 1;
        }
    }

    fn filter() -> EntryFilter {
        EntryFilter::parse(None).unwrap()
    }

    #[test]
    fn the_checkpoint_interval_is_sqlite_s_unless_the_volume_is_small() {
        let page = 4096;
        assert_eq!(checkpoint_pages(100 << 30, page), 1000);
        assert_eq!(checkpoint_pages(32 << 20, page), 1000);
        assert_eq!(checkpoint_pages(16 << 20, page), 512);
        assert_eq!(checkpoint_pages(2 << 20, page), 64);
        assert_eq!(checkpoint_pages(0, page), 64);
        assert_eq!(checkpoint_pages(2 << 20, 0), 1000);
    }

    #[test]
    fn pages_run_newest_first_across_block_boundaries() {
        let folder = tempfile::tempdir().unwrap();
        let mut connection = writer(&folder);
        fill(&mut connection, 100, &[1, 7, 30, 2]);
        let blocks: u64 = connection
            .query_row("SELECT count(*) FROM audit_blocks", [], |row| row.get(0))
            .unwrap();
        assert_eq!(blocks, 11);
        let mut seen = Vec::new();
        let mut page = EntryFilter {
            limit: 9,
            ..filter()
        };
        loop {
            let entries = list(&connection, &page).unwrap();
            let more = entries.len() > 9;
            seen.extend(entries.iter().take(9).map(|stored| stored.sequence));
            if !more {
                break;
            }
            page.after = seen.last().copied();
        }
        assert_eq!(seen, (1..=100).rev().collect::<Vec<_>>());
        // Filters apply inside blocks; the view gives the same rows by name.
        let tax = list(
            &connection,
            &EntryFilter {
                consumer: Some("tax".to_owned()),
                limit: MAX_LIMIT,
                ..filter()
            },
        )
        .unwrap();
        assert_eq!(
            tax.iter().map(|stored| stored.sequence).collect::<Vec<_>>(),
            (1..=100)
                .rev()
                .filter(|index| index % 2 == 0)
                .collect::<Vec<_>>()
        );
        assert_eq!(tax[0].entry, entry(100));
        let from_view: u64 = connection
            .query_row(
                "SELECT count(*) FROM audit_entries WHERE consumer = 'tax' AND request_bytes >= 50",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(from_view, 26);
    }

    #[test]
    fn the_summary_counts_and_ranks_across_blocks_and_windows() {
        let folder = tempfile::tempdir().unwrap();
        let mut connection = writer(&folder);
        fill(&mut connection, 200, &[3, 64, 5]);
        let summary = summary(&connection, &TimeWindow::default()).unwrap();
        let tax = summary
            .matrix
            .iter()
            .find(|cell| cell.consumer == "tax")
            .unwrap();
        // tax made the 100 even-numbered calls; total_us = the call's number.
        assert_eq!(tax.count, 100);
        assert_eq!(tax.request_bytes, (2..=200).step_by(2).sum::<u64>());
        // Nearest rank: p50 is the 50th of 2, 4, ..., 200 and p99 the 99th.
        assert_eq!(tax.p50_ms, 0.1);
        assert_eq!(tax.p99_ms, 0.198);
        // A window: minutes 01:10 to 01:20 hold the calls whose number ends at 10..19 mod 60.
        let window = TimeWindow {
            since: Some("2026-11-28T01:10:00.000Z".to_owned()),
            until: Some("2026-11-28T01:20:00.000Z".to_owned()),
        };
        let windowed = super::summary(&connection, &window).unwrap();
        let count: u64 = windowed.matrix.iter().map(|cell| cell.count).sum();
        assert_eq!(
            count,
            (1..=200u64)
                .filter(|index| (10..20).contains(&(index % 60)))
                .count() as u64
        );
        let listed = list(
            &connection,
            &EntryFilter {
                window,
                limit: MAX_LIMIT,
                ..filter()
            },
        )
        .unwrap();
        assert_eq!(listed.len() as u64, count);
    }

    #[test]
    fn a_summary_over_a_damaged_block_names_the_block_instead_of_guessing() {
        let folder = tempfile::tempdir().unwrap();
        let mut connection = writer(&folder);
        fill(&mut connection, 20, &[5]);
        connection
            .execute(
                "UPDATE audit_blocks SET entries = 'shredded' WHERE first_sequence = 11",
                [],
            )
            .unwrap();
        let error = summary(&connection, &TimeWindow::default()).unwrap_err();
        assert!(
            matches!(error, AuditError::Damaged { first_sequence: 11 }),
            "{error}"
        );
        // A window whose blocks are intact is still summarized.
        let window = TimeWindow {
            since: None,
            until: Some("2026-11-28T01:06:00.000Z".to_owned()),
        };
        let intact = summary(&connection, &window).unwrap();
        assert_eq!(intact.matrix.iter().map(|cell| cell.count).sum::<u64>(), 5);
    }

    #[test]
    fn a_database_of_one_row_per_entry_is_converted_with_its_chain() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("audit.db");
        {
            // The layout before blocks, as it was created.
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "PRAGMA journal_mode=WAL;
                 CREATE TABLE audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO audit_meta VALUES ('hash', 'sha256');
                 CREATE TABLE audit_entries (sequence INTEGER PRIMARY KEY, time TEXT NOT NULL,
                   kind TEXT NOT NULL, request_id TEXT NOT NULL, consumer TEXT NOT NULL,
                   provider TEXT, service TEXT, method TEXT NOT NULL, path_sha256 TEXT,
                   purpose_sha256 TEXT, status INTEGER NOT NULL, outcome TEXT NOT NULL,
                   request_bytes INTEGER, response_bytes INTEGER, request_sha256 TEXT,
                   response_sha256 TEXT, request_schema TEXT, response_schema TEXT,
                   subject_sha256 TEXT, total_us INTEGER NOT NULL, upstream_us INTEGER,
                   hash TEXT NOT NULL);
                 CREATE INDEX audit_entries_time ON audit_entries (time);",
            )
            .unwrap();
            // Entries of that time: version 1, without exchange ids.
            let chained = crate::entry::chain_entries_in(
                EncodingVersion::V1,
                AuditHash::Sha256,
                GENESIS_HASH,
                0,
                None,
                (1..=1100).map(entry_v1),
            );
            let mut insert = old
                .prepare(&format!(
                    "INSERT INTO audit_entries ({}) VALUES ({})",
                    *COLUMNS_V1,
                    vec!["?"; block::stored_fields_v1().count()].join(", ")
                ))
                .unwrap();
            for stored in &chained {
                let e = &stored.entry;
                insert
                    .execute(params![
                        stored.sequence,
                        e.time,
                        e.kind.as_str(),
                        e.request_id,
                        e.consumer,
                        e.provider,
                        e.service,
                        e.method,
                        e.path_sha256,
                        e.purpose_sha256,
                        e.status,
                        e.outcome,
                        e.request_bytes,
                        e.response_bytes,
                        e.request_sha256,
                        e.response_sha256,
                        e.request_schema,
                        e.response_schema,
                        e.subject_sha256,
                        e.total_us,
                        e.upstream_us,
                        stored.hash,
                    ])
                    .unwrap();
            }
        }
        // A read-only check does not convert, and says what to do.
        let reader = open_reader(&path).unwrap();
        assert!(matches!(
            verify(&reader, AuditHash::Sha256),
            Err(AuditError::EarlierLayout)
        ));
        drop(reader);
        let mut connection = writer(&folder);
        let blocks: Vec<(u64, u64)> = connection
            .prepare("SELECT first_sequence, last_sequence FROM audit_blocks ORDER BY 1")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(blocks, [(1, 512), (513, 1024), (1025, 1100)]);
        let verification = verify(&connection, AuditHash::Sha256).unwrap();
        assert!(verification.ok, "{verification:?}");
        assert_eq!(verification.count, 1100);
        // The chain continues where it was, and a second start converts nothing again.
        assert_eq!(
            append(
                &mut connection,
                AuditHash::Sha256,
                "gw-1",
                vec![entry(1101)]
            )
            .unwrap(),
            [1101]
        );
        drop(connection);
        let connection = writer(&folder);
        let verification = verify(&connection, AuditHash::Sha256).unwrap();
        assert_eq!((verification.ok, verification.count), (true, 1101));
        let newest = list(&connection, &filter()).unwrap();
        assert_eq!(newest[0].entry, entry(1101));
        assert_eq!(newest[0].version, EncodingVersion::CURRENT);
        assert_eq!(newest[0].gateway.as_deref(), Some("gw-1"));
        assert_eq!(newest[1].gateway, None);
        assert_eq!(newest[1].entry, entry_v1(1100));
        assert_eq!(newest[1].version, EncodingVersion::V1);
        let versions: Vec<(u64, Option<String>, Option<String>)> = connection
            .prepare("SELECT version, exchange_id, gateway FROM audit_entries WHERE sequence >= 1100 ORDER BY sequence")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            versions,
            [
                (1, None, None),
                (4, entry(1101).exchange_id, Some("gw-1".to_owned()))
            ],
            "the view names both versions' fields"
        );
    }
}
