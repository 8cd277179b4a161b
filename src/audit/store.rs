//! The audit trail's SQLite file: opening it (WAL, `synchronous=FULL`), appending a batch in one
//! transaction, and the read queries behind `/audit/...` and `xgate audit verify`.
//!
//! Everything here blocks: the writer runs it on its own thread, readers on tokio's blocking
//! pool, the CLI on its main thread.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params, params_from_iter};

use super::AuditError;
use super::entry::{
    AuditEntry, Break, ChainVerifier, EntryKind, GENESIS_HASH, StoredEntry, chain_entries,
};
use super::query::{
    BucketPlan, CertificateSummary, EXCHANGE_SUCCESS, EntryFilter, FailureGroup, LOOKUP_ANSWERS,
    MAX_GROUP_ROWS, Summary, SummaryCell, TOP_FAILURES, TimeWindow, Timeline,
};
use crate::config::{AuditHash, AuditSync};

/// How long a connection waits for another one's lock (a checkpoint, a second writer process)
/// before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS audit_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_entries (
    sequence INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    request_id TEXT NOT NULL,
    consumer TEXT NOT NULL,
    provider TEXT,
    service TEXT,
    method TEXT NOT NULL,
    path_sha256 TEXT,
    purpose_sha256 TEXT,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    request_bytes INTEGER,
    response_bytes INTEGER,
    request_sha256 TEXT,
    response_sha256 TEXT,
    request_schema TEXT,
    response_schema TEXT,
    subject_sha256 TEXT,
    total_us INTEGER NOT NULL,
    upstream_us INTEGER,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_entries_time ON audit_entries (time);
";

const COLUMNS: &str = "sequence, time, kind, request_id, consumer, provider, service, method, \
    path_sha256, purpose_sha256, status, outcome, request_bytes, response_bytes, request_sha256, \
    response_sha256, request_schema, response_schema, subject_sha256, total_us, upstream_us, hash";

const INSERT: &str = "INSERT INTO audit_entries (sequence, time, kind, request_id, consumer, \
    provider, service, method, path_sha256, purpose_sha256, status, outcome, request_bytes, \
    response_bytes, request_sha256, response_sha256, request_schema, response_schema, \
    subject_sha256, total_us, upstream_us, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
    ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)";

/// Opens (creating it and its folder on first start) the database for the one writer.
///
/// WAL lets readers run beside the writer. `synchronous=FULL` syncs the WAL at every commit, so
/// a committed entry survives a power loss too, not only a killed process (`NORMAL` would
/// survive `kill -9` but could lose the last commits on power loss); group commit spreads that
/// one sync over every entry of a batch.
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
    let connection = Connection::open(path)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = connection.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(AuditError::NotWal(mode));
    }
    connection.execute_batch(match synchronous {
        AuditSync::Full => "PRAGMA synchronous=FULL;",
        AuditSync::Normal => "PRAGMA synchronous=NORMAL;",
    })?;
    connection.execute_batch(CREATE)?;
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
fn stored_hash(connection: &Connection) -> Result<Option<String>, AuditError> {
    Ok(connection
        .query_row(
            "SELECT value FROM audit_meta WHERE key = 'hash'",
            [],
            |row| row.get(0),
        )
        .optional()?)
}

/// The word stored in `audit_meta` for a hash.
fn hash_name(hash: AuditHash) -> &'static str {
    match hash {
        AuditHash::Sha256 => "sha256",
        AuditHash::Sm3 => "sm3",
    }
}

/// Numbers, chains and inserts a batch in one transaction; returns the sequence numbers.
///
/// The chain's head is read inside the write transaction rather than trusted from memory: the
/// transaction holds SQLite's write lock, so even a second gateway started by mistake on the
/// same file continues the chain instead of forking it, and a failed batch leaves nothing to
/// roll back in memory.
pub fn append(
    connection: &mut Connection,
    hash: AuditHash,
    entries: Vec<AuditEntry>,
) -> Result<Vec<u64>, AuditError> {
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let head: Option<(u64, String)> = transaction
        .query_row(
            "SELECT sequence, hash FROM audit_entries ORDER BY sequence DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let (sequence, previous) = match head {
        None => (0, GENESIS_HASH),
        Some((sequence, text)) => {
            let mut previous = [0u8; 32];
            hex::decode_to_slice(&text, &mut previous)
                .map_err(|_| AuditError::CorruptHead { sequence })?;
            (sequence, previous)
        }
    };
    let stored = chain_entries(hash, previous, sequence, entries);
    {
        let mut insert = transaction.prepare(INSERT)?;
        for stored in &stored {
            let entry = &stored.entry;
            insert.execute(params![
                stored.sequence,
                entry.time,
                entry.kind.as_str(),
                entry.request_id,
                entry.consumer,
                entry.provider,
                entry.service,
                entry.method,
                entry.path_sha256,
                entry.purpose_sha256,
                entry.status,
                entry.outcome,
                entry.request_bytes,
                entry.response_bytes,
                entry.request_sha256,
                entry.response_sha256,
                entry.request_schema,
                entry.response_schema,
                entry.subject_sha256,
                entry.total_us,
                entry.upstream_us,
                stored.hash,
            ])?;
        }
    }
    transaction.commit()?;
    Ok(stored.iter().map(|stored| stored.sequence).collect())
}

/// Reads one row in [`COLUMNS`] order.
fn stored_entry(row: &Row<'_>) -> rusqlite::Result<StoredEntry> {
    let kind: String = row.get(2)?;
    let kind = EntryKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            "an unknown entry kind".into(),
        )
    })?;
    Ok(StoredEntry {
        sequence: row.get(0)?,
        entry: AuditEntry {
            time: row.get(1)?,
            kind,
            request_id: row.get(3)?,
            consumer: row.get(4)?,
            provider: row.get(5)?,
            service: row.get(6)?,
            method: row.get(7)?,
            path_sha256: row.get(8)?,
            purpose_sha256: row.get(9)?,
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

/// Verifies the whole chain in sequence order, one row at a time (bounded memory). A row whose
/// values cannot even be read as an entry (a number changed into text, say) is a break too.
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
    let mut verifier = ChainVerifier::new(hash);
    let mut statement = connection.prepare(&format!(
        "SELECT {COLUMNS} FROM audit_entries ORDER BY sequence"
    ))?;
    let mut rows = statement.query([])?;
    let mut broken = None;
    while let Some(row) = rows.next()? {
        let checked = match stored_entry(row) {
            Ok(stored) => verifier.next(&stored),
            Err(_) => Err(Break {
                sequence: row.get::<_, u64>(0).unwrap_or(0),
                reason: "the entry's stored values are not an entry's (a field of the wrong type or an unknown word)".to_owned(),
            }),
        };
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

/// Pushes the time window's conditions.
fn window_conditions(window: &TimeWindow, conditions: &mut Vec<&str>, values: &mut Vec<SqlValue>) {
    if let Some(since) = &window.since {
        conditions.push("time >= ?");
        values.push(SqlValue::Text(since.clone()));
    }
    if let Some(until) = &window.until {
        conditions.push("time < ?");
        values.push(SqlValue::Text(until.clone()));
    }
}

/// Entries matching `filter`, newest first, at most `filter.limit + 1` (the extra one tells
/// the caller there is a next page).
pub fn list(connection: &Connection, filter: &EntryFilter) -> Result<Vec<StoredEntry>, AuditError> {
    let mut conditions = vec!["kind = ?"];
    let mut values = vec![SqlValue::Text(filter.kind.as_str().to_owned())];
    for (column, value) in [
        ("consumer = ?", &filter.consumer),
        ("provider = ?", &filter.provider),
        ("service = ?", &filter.service),
        ("outcome = ?", &filter.outcome),
    ] {
        if let Some(value) = value {
            conditions.push(column);
            values.push(SqlValue::Text(value.clone()));
        }
    }
    window_conditions(&filter.window, &mut conditions, &mut values);
    if let Some(after) = filter.after {
        conditions.push("sequence < ?");
        values.push(SqlValue::Integer(i64::try_from(after).unwrap_or(i64::MAX)));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_entries WHERE {} ORDER BY sequence DESC LIMIT {}",
        conditions.join(" AND "),
        u64::from(filter.limit) + 1
    );
    let mut statement = connection.prepare(&sql)?;
    let rows = statement.query_map(params_from_iter(values), stored_entry)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The summary over a time window (see [`Summary`]). Every part is read in one read
/// transaction, so the parts agree with each other even while the writer commits.
pub fn summary(connection: &Connection, window: &TimeWindow) -> Result<Summary, AuditError> {
    let transaction = connection.unchecked_transaction()?;
    let matrix = matrix(&transaction, window)?;
    let timeline = timeline(&transaction, window)?;
    let certificates = certificates(&transaction, window)?;
    let failures = failures(&transaction, window)?;
    transaction.commit()?;
    Ok(Summary {
        since: window.since.clone(),
        until: window.until.clone(),
        matrix,
        timeline,
        certificates,
        failures,
    })
}

/// The exchange matrix over a time window (see [`SummaryCell`] for the method).
fn matrix(connection: &Connection, window: &TimeWindow) -> Result<Vec<SummaryCell>, AuditError> {
    let mut conditions = vec!["kind = 'exchange'"];
    let mut values = Vec::new();
    window_conditions(window, &mut conditions, &mut values);
    let filter = conditions.join(" AND ");
    let mut statement = connection.prepare(&format!(
        "SELECT consumer, provider, service, outcome, COUNT(*), \
         COALESCE(SUM(request_bytes), 0), COALESCE(SUM(response_bytes), 0) \
         FROM audit_entries WHERE {filter} \
         GROUP BY consumer, provider, service, outcome \
         ORDER BY consumer, provider, service, outcome"
    ))?;
    let mut cells: Vec<SummaryCell> = Vec::new();
    let mut rows = statement.query(params_from_iter(values.iter()))?;
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
    // Percentiles by nearest rank: the value at rank ceil(p * n) of the sorted latencies,
    // found by SQLite with ORDER BY ... LIMIT 1 OFFSET rank-1; nothing unbounded is loaded.
    let mut percentile = connection.prepare(&format!(
        "SELECT total_us FROM audit_entries WHERE {filter} \
         AND consumer IS ? AND provider IS ? AND service IS ? \
         ORDER BY total_us LIMIT 1 OFFSET ?"
    ))?;
    for cell in &mut cells {
        let mut at = |fraction: f64| -> Result<u64, AuditError> {
            let rank = ((fraction * cell.count as f64).ceil() as u64).max(1);
            let mut bound = values.clone();
            bound.push(cell.consumer.clone().into());
            bound.push(cell.provider.clone().into());
            bound.push(cell.service.clone().into());
            bound.push(i64::try_from(rank - 1).unwrap_or(i64::MAX).into());
            Ok(percentile.query_row(params_from_iter(bound), |row| row.get(0))?)
        };
        let p50 = at(0.50)?;
        let p99 = at(0.99)?;
        cell.set_latency(p50, p99);
    }
    Ok(cells)
}

/// The conditions and values of `kind = ?` and the window.
fn kind_and_window(kind: &str, window: &TimeWindow) -> (String, Vec<SqlValue>) {
    let mut conditions = vec!["kind = ?"];
    let mut values = vec![SqlValue::Text(kind.to_owned())];
    window_conditions(window, &mut conditions, &mut values);
    (conditions.join(" AND "), values)
}

/// The window's exchanges by outcome per bucket. The buckets cover the window; an open end is
/// closed at the first or last exchange in the window.
fn timeline(connection: &Connection, window: &TimeWindow) -> Result<Timeline, AuditError> {
    let (filter, values) = kind_and_window("exchange", window);
    let (mut first, mut last) = BucketPlan::window_seconds(window);
    if first.is_none() || last.is_none() {
        let (oldest, newest): (Option<i64>, Option<i64>) = connection.query_row(
            &format!(
                "SELECT MIN(unixepoch(time)), MAX(unixepoch(time)) FROM audit_entries \
                 WHERE {filter}"
            ),
            params_from_iter(values.iter()),
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
    let mut bound = vec![
        SqlValue::Integer(plan.first),
        SqlValue::Integer(plan.step_seconds),
    ];
    bound.extend(values);
    // An entry whose time is not a time (an edited file) has no bucket and is left out.
    let mut statement = connection.prepare(&format!(
        "SELECT bucket, outcome, COUNT(*) FROM \
         (SELECT (unixepoch(time) - ?) / ? AS bucket, outcome FROM audit_entries \
          WHERE {filter}) \
         WHERE bucket BETWEEN 0 AND {last_bucket} \
         GROUP BY bucket, outcome ORDER BY bucket, outcome LIMIT {MAX_GROUP_ROWS}",
        last_bucket = plan.count - 1,
    ))?;
    let mut rows = statement.query(params_from_iter(bound))?;
    while let Some(row) = rows.next()? {
        timeline.add(row.get(0)?, row.get(1)?, row.get(2)?);
    }
    Ok(timeline)
}

/// The window's certificate lookups by type, issuer and outcome.
fn certificates(
    connection: &Connection,
    window: &TimeWindow,
) -> Result<CertificateSummary, AuditError> {
    let (filter, values) = kind_and_window("certificate", window);
    let mut statement = connection.prepare(&format!(
        "SELECT service, provider, outcome, COUNT(*) FROM audit_entries WHERE {filter} \
         GROUP BY service, provider, outcome ORDER BY service, provider, outcome \
         LIMIT {MAX_GROUP_ROWS}"
    ))?;
    let mut summary = CertificateSummary::default();
    let mut rows = statement.query(params_from_iter(values))?;
    while let Some(row) = rows.next()? {
        summary.add(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
    }
    summary.finish();
    Ok(summary)
}

/// The most frequent failures: exchanges whose outcome is not `ok` and lookups that were
/// refused or failed, grouped by kind, consumer, provider, service and outcome; ties go to the
/// most recent, then by name, so the order is stable.
fn failures(connection: &Connection, window: &TimeWindow) -> Result<Vec<FailureGroup>, AuditError> {
    let failed = format!(
        "((kind = 'exchange' AND outcome <> ?) OR (kind = 'certificate' AND outcome NOT IN ({})))",
        vec!["?"; LOOKUP_ANSWERS.len()].join(", ")
    );
    let mut conditions = vec![failed.as_str()];
    let mut values = vec![SqlValue::Text(EXCHANGE_SUCCESS.to_owned())];
    values.extend(
        LOOKUP_ANSWERS
            .iter()
            .map(|word| SqlValue::Text((*word).to_owned())),
    );
    window_conditions(window, &mut conditions, &mut values);
    let filter = conditions.join(" AND ");
    let mut statement = connection.prepare(&format!(
        "SELECT kind, consumer, provider, service, outcome, COUNT(*) AS count, \
         MAX(time) AS last_seen FROM audit_entries WHERE {filter} \
         GROUP BY kind, consumer, provider, service, outcome \
         ORDER BY count DESC, last_seen DESC, kind, consumer, provider, service, outcome \
         LIMIT {TOP_FAILURES}"
    ))?;
    let rows = statement.query_map(params_from_iter(values), |row| {
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
