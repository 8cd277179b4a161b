//! The audit trail in the shared store's PostgreSQL database (SPEC §13): the same blocks as
//! the SQLite file ([`crate::block`]), appended by every gateway to one chain.
//!
//! One chain for all gateways, serialized by the database: every append is one transaction
//! that locks the single `audit_chain` row (`SELECT ... FOR UPDATE`), chains its batch from the
//! head it holds, inserts the batch as one block and moves the row on. Round trips are
//! pipelined (`BEGIN` with the locking `SELECT`; the `INSERT`, the `UPDATE` and `COMMIT`
//! together), so a gateway holds the lock for about one round trip and the commit. Sequence
//! numbers run 1, 2, 3, ... across all gateways; each entry names the gateway that committed it
//! (encoding version 3, [`crate::entry`]).
//!
//! The readers ([`verify_store`], [`list`], [`summary`]) read blocks through a portal, a few at
//! a time, so their memory is bounded whatever the trail's length; the CPU work (hashing,
//! decoding, the summary's grouped queries) runs on tokio's blocking pool.

use std::path::Path;

use deadpool_postgres::ClientWrapper;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, IsolationLevel, Row, Transaction};

use crate::AuditError;
use crate::block::{self, BlockVerifier, StoredBlock};
use crate::entry::{
    AuditEntry, AuditHash, Break, GENESIS_HASH, StoredEntry, chain_entries, digest_hex,
};
use crate::key::AuditKey;
use crate::query::{EntryFilter, Summary, TimeWindow};
use crate::store::{self, Unappended, Verification, WindowCopy};

/// The trail's tables, created by the store's first migration (the gateway's
/// `store::migrate`): `audit_meta` (the chain's hash), `audit_chain` (one row: the chain's
/// last sequence number and head, which every append locks, so that the database serializes
/// the gateways' batches into one chain), `audit_blocks` (one row per committed batch, as
/// in the SQLite file) and the view `audit_entries` (one row per entry with the fields' names,
/// as in the SQLite file, for an auditor with `psql`).
pub const TABLES_V1: &str = "
CREATE TABLE audit_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE audit_chain (
    id smallint PRIMARY KEY CHECK (id = 1),
    last_sequence bigint NOT NULL,
    head text NOT NULL
);
CREATE TABLE audit_blocks (
    first_sequence bigint PRIMARY KEY,
    last_sequence bigint NOT NULL,
    min_time text NOT NULL,
    max_time text NOT NULL,
    head text NOT NULL,
    entries text NOT NULL
);
CREATE INDEX audit_blocks_time ON audit_blocks (max_time, min_time);
CREATE VIEW audit_entries AS SELECT
    (e.value ->> 0)::bigint AS sequence,
    e.value ->> 1 AS time,
    e.value ->> 2 AS kind,
    e.value ->> 3 AS request_id,
    e.value ->> 4 AS consumer,
    e.value ->> 5 AS provider,
    e.value ->> 6 AS service,
    e.value ->> 7 AS method,
    e.value ->> 8 AS path_sha256,
    e.value ->> 9 AS purpose_sha256,
    (e.value ->> 10)::integer AS status,
    e.value ->> 11 AS outcome,
    (e.value ->> 12)::numeric AS request_bytes,
    (e.value ->> 13)::numeric AS response_bytes,
    e.value ->> 14 AS request_sha256,
    e.value ->> 15 AS response_sha256,
    e.value ->> 16 AS request_schema,
    e.value ->> 17 AS response_schema,
    e.value ->> 18 AS subject_sha256,
    (e.value ->> 19)::numeric AS total_us,
    (e.value ->> 20)::numeric AS upstream_us,
    e.value ->> 21 AS hash,
    coalesce((e.value ->> 22)::integer, 1) AS version,
    e.value ->> 23 AS exchange_id,
    e.value ->> 24 AS gateway
FROM audit_blocks AS b, jsonb_array_elements(b.entries::jsonb) AS e;
";

/// What the store's second migration adds for SPEC §15: the subject index `audit_subjects`
/// (each keyed subject digest with its entry's sequence number, written in the same transaction
/// as the entry's block, so that `GET /audit/subjects/...` reads an index instead of the trail),
/// and the `purpose` column of encoding version 4 on the `audit_entries` view. The audit key's
/// fingerprint goes into `audit_meta` (`key_fingerprint`) at the first keyed start.
pub const TABLES_V2: &str = "
CREATE TABLE audit_subjects (
    subject text NOT NULL,
    sequence bigint NOT NULL,
    PRIMARY KEY (subject, sequence)
);
CREATE OR REPLACE VIEW audit_entries AS SELECT
    (e.value ->> 0)::bigint AS sequence,
    e.value ->> 1 AS time,
    e.value ->> 2 AS kind,
    e.value ->> 3 AS request_id,
    e.value ->> 4 AS consumer,
    e.value ->> 5 AS provider,
    e.value ->> 6 AS service,
    e.value ->> 7 AS method,
    e.value ->> 8 AS path_sha256,
    e.value ->> 9 AS purpose_sha256,
    (e.value ->> 10)::integer AS status,
    e.value ->> 11 AS outcome,
    (e.value ->> 12)::numeric AS request_bytes,
    (e.value ->> 13)::numeric AS response_bytes,
    e.value ->> 14 AS request_sha256,
    e.value ->> 15 AS response_sha256,
    e.value ->> 16 AS request_schema,
    e.value ->> 17 AS response_schema,
    e.value ->> 18 AS subject_sha256,
    (e.value ->> 19)::numeric AS total_us,
    (e.value ->> 20)::numeric AS upstream_us,
    e.value ->> 21 AS hash,
    coalesce((e.value ->> 22)::integer, 1) AS version,
    e.value ->> 23 AS exchange_id,
    e.value ->> 24 AS gateway,
    e.value ->> 25 AS purpose
FROM audit_blocks AS b, jsonb_array_elements(b.entries::jsonb) AS e;
";

const INSERT_SUBJECTS: &str = "INSERT INTO audit_subjects (subject, sequence) \
    SELECT * FROM unnest($1::text[], $2::bigint[])";

/// Blocks fetched per round trip by the verification and the summary (a block holds at most
/// [`crate::MAX_BATCH`] entries).
const READ_CHUNK: i32 = 8;

/// Blocks fetched per round trip by a page of entries, read newest first (a page is at most
/// [`crate::query::MAX_LIMIT`] entries, usually in the newest few blocks).
const LIST_CHUNK: i32 = 4;

/// The locking read every append starts with.
const LOCK_CHAIN: &str = "SELECT last_sequence, head FROM audit_chain WHERE id = 1 FOR UPDATE";

const INSERT_BLOCK: &str = "INSERT INTO audit_blocks \
    (first_sequence, last_sequence, min_time, max_time, head, entries) \
    VALUES ($1, $2, $3, $4, $5, $6)";

const MOVE_CHAIN: &str = "UPDATE audit_chain SET last_sequence = $1, head = $2 WHERE id = 1";

/// What the probe writes: nothing changes, but it needs the database to take a write.
pub(crate) const PROBE: &str = "UPDATE audit_meta SET value = value WHERE key = 'hash'";

/// A sequence number as PostgreSQL's `bigint`.
fn to_bigint(sequence: u64) -> Result<i64, AuditError> {
    i64::try_from(sequence).map_err(|_| AuditError::SequenceOutOfRange)
}

/// The hash a PostgreSQL trail was chained with, as stored in `audit_meta`.
async fn stored_hash(client: &impl GenericClient) -> Result<Option<String>, AuditError> {
    Ok(client
        .query_opt("SELECT value FROM audit_meta WHERE key = 'hash'", &[])
        .await?
        .map(|row| row.try_get::<_, String>(0))
        .transpose()?)
}

/// Refuses a store chained with another hash than `hash`.
async fn check_hash(client: &impl GenericClient, hash: AuditHash) -> Result<(), AuditError> {
    let configured = store::hash_name(hash);
    match stored_hash(client).await? {
        Some(stored) if stored != configured => Err(AuditError::HashChanged {
            stored,
            configured: configured.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Refuses a store whose trail was written under another audit key; a store without a key's
/// fingerprint is given `key`'s (the first of several gateways starting at once wins, and the
/// others are then checked against it).
pub async fn check_key(client: &Client, key: &AuditKey) -> Result<(), AuditError> {
    client
        .execute(
            "INSERT INTO audit_meta (key, value) VALUES ('key_fingerprint', $1) \
             ON CONFLICT (key) DO NOTHING",
            &[&key.fingerprint()],
        )
        .await?;
    let stored: Option<String> = client
        .query_opt(
            "SELECT value FROM audit_meta WHERE key = 'key_fingerprint'",
            &[],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    key.check(stored.as_deref())?;
    Ok(())
}

/// [`crate::store::subject_entries`] on the store: the subject index's sequence numbers, then
/// each entry from its block (the blocks fetched in one query), keeping only entries that carry
/// the digest.
pub async fn subject_entries(
    client: &Client,
    subject: &str,
    limit: u32,
    after: Option<u64>,
) -> Result<Vec<StoredEntry>, AuditError> {
    let after = after.map_or(i64::MAX, |after| i64::try_from(after).unwrap_or(i64::MAX));
    let wanted = i64::from(limit).saturating_add(1);
    let sequences: Vec<i64> = client
        .query(
            "SELECT sequence FROM audit_subjects WHERE subject = $1 AND sequence < $2 \
             ORDER BY sequence DESC LIMIT $3",
            &[&subject, &after, &wanted],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    if sequences.is_empty() {
        return Ok(Vec::new());
    }
    // The block of each sequence number: the one with the greatest first sequence not after it.
    let rows = client
        .query(
            "SELECT DISTINCT b.first_sequence, b.entries FROM unnest($1::bigint[]) AS s(sequence) \
             CROSS JOIN LATERAL (SELECT first_sequence, entries FROM audit_blocks \
                 WHERE first_sequence <= s.sequence ORDER BY first_sequence DESC LIMIT 1) AS b",
            &[&sequences],
        )
        .await?;
    let mut texts = Vec::with_capacity(rows.len());
    for row in &rows {
        texts.push((row.try_get::<_, i64>(0)?, row.try_get::<_, String>(1)?));
    }
    let subject = subject.to_owned();
    // Decoding up to a page's worth of blocks is CPU work: off the runtime's workers.
    tokio::task::spawn_blocking(move || {
        let mut blocks = Vec::with_capacity(texts.len());
        for (first_sequence, text) in texts {
            let entries =
                block::decode(text.as_bytes()).ok_or(AuditError::Damaged { first_sequence })?;
            blocks.push(entries);
        }
        Ok(sequences
            .iter()
            .filter_map(|sequence| {
                blocks
                    .iter()
                    .find_map(|entries| block::entry_at(entries, *sequence))
            })
            .filter(|stored| stored.entry.subject_sha256.as_deref() == Some(subject.as_str()))
            .cloned()
            .collect())
    })
    .await
    .map_err(|_| AuditError::TaskFailed)?
}

/// Prepares the store's trail for appending with `hash`: a first open of an empty store records
/// the hash in `audit_meta` and starts the chain row at sequence 0 and the genesis hash; a store
/// chained with the other hash is refused ([`AuditError::HashChanged`]). The tables must exist
/// (the store's migrations create them). Safe when several gateways open at once.
pub async fn open(client: &Client, hash: AuditHash) -> Result<(), AuditError> {
    client
        .execute(
            "INSERT INTO audit_meta (key, value) VALUES ('hash', $1) ON CONFLICT (key) DO NOTHING",
            &[&store::hash_name(hash)],
        )
        .await?;
    check_hash(client, hash).await?;
    // The chain row starts at the genesis only for a trail without blocks: one with blocks and
    // no row was edited, and starting it again would fork the chain.
    client
        .execute(
            "INSERT INTO audit_chain (id, last_sequence, head) \
             SELECT 1, 0, $1 WHERE NOT EXISTS (SELECT 1 FROM audit_blocks) \
             ON CONFLICT (id) DO NOTHING",
            &[&digest_hex(&GENESIS_HASH)],
        )
        .await?;
    let chain = client
        .query_opt("SELECT 1 FROM audit_chain WHERE id = 1", &[])
        .await?;
    if chain.is_none() {
        return Err(AuditError::NoChainRow);
    }
    Ok(())
}

/// Numbers and chains a batch (stamped with `gateway`) after the chain's head, and inserts it as
/// one block in one transaction holding the chain row's lock; returns the sequence numbers, or
/// the entries and why they were not committed.
///
/// Never retry an [`Unappended`] batch blindly: when the connection failed after `COMMIT` was
/// sent, the batch may have been committed (the writer answers its callers with the error and
/// does not try again; an entry committed for an exchange that was refused is the safe side).
/// After a failure the connection may be unusable: the writer discards it.
pub async fn append(
    client: &ClientWrapper,
    hash: AuditHash,
    gateway: &str,
    entries: Vec<AuditEntry>,
) -> Result<Vec<u64>, Unappended> {
    let statements = async {
        Ok::<_, AuditError>((
            client.prepare_cached(LOCK_CHAIN).await?,
            client.prepare_cached(INSERT_BLOCK).await?,
            client.prepare_cached(MOVE_CHAIN).await?,
            client.prepare_cached(INSERT_SUBJECTS).await?,
        ))
    };
    let (lock, insert, advance, index) = match statements.await {
        Ok(statements) => statements,
        Err(error) => return Err(Unappended { error, entries }),
    };
    // Round trip 1: BEGIN and the locking read, pipelined.
    let head = async {
        let ((), row) =
            tokio::try_join!(client.batch_execute("BEGIN"), client.query_one(&lock, &[]))?;
        let sequence: i64 = row.try_get(0)?;
        let text: String = row.try_get(1)?;
        let sequence = u64::try_from(sequence).map_err(|_| AuditError::SequenceOutOfRange)?;
        let mut previous = [0u8; 32];
        hex::decode_to_slice(&text, &mut previous)
            .map_err(|_| AuditError::CorruptHead { sequence })?;
        Ok::<_, AuditError>((sequence, previous))
    };
    let (sequence, previous) = match head.await {
        Ok(head) => head,
        Err(error) => {
            // Nothing was written; end the transaction if the connection still answers.
            client.batch_execute("ROLLBACK").await.ok();
            return Err(Unappended { error, entries });
        }
    };
    let stored = chain_entries(hash, previous, sequence, gateway, entries);
    let Some(block) = block::encode(&stored) else {
        client.batch_execute("ROLLBACK").await.ok();
        return Ok(Vec::new());
    };
    // Round trip 2: the block, the chain row and COMMIT, pipelined. A failed INSERT or UPDATE
    // aborts the transaction, and the COMMIT behind it then rolls back.
    let written = async {
        let first = to_bigint(block.first_sequence)?;
        let last = to_bigint(block.last_sequence)?;
        let insert_parameters: [&(dyn ToSql + Sync); 6] = [
            &first,
            &last,
            &block.min_time,
            &block.max_time,
            &block.head,
            &block.entries,
        ];
        let advance_parameters: [&(dyn ToSql + Sync); 2] = [&last, &block.head];
        let (subjects, sequences): (Vec<&str>, Vec<i64>) = block::subjects(&stored).unzip();
        let index_parameters: [&(dyn ToSql + Sync); 2] = [&subjects, &sequences];
        let indexed = async {
            if subjects.is_empty() {
                return Ok(0);
            }
            client.execute(&index, &index_parameters).await
        };
        let (_, moved, _, ()) = tokio::try_join!(
            client.execute(&insert, &insert_parameters),
            client.execute(&advance, &advance_parameters),
            indexed,
            client.batch_execute("COMMIT"),
        )?;
        if moved != 1 {
            return Err(AuditError::NoChainRow);
        }
        Ok(())
    };
    match written.await {
        Ok(()) => Ok(stored.iter().map(|stored| stored.sequence).collect()),
        Err(error) => Err(Unappended {
            error,
            entries: stored.into_iter().map(|stored| stored.entry).collect(),
        }),
    }
}

/// A block row as the readers select it: `first_sequence, last_sequence, min_time, max_time,
/// head, entries`.
const BLOCK_COLUMNS: &str = "first_sequence, last_sequence, min_time, max_time, head, entries";

/// Checks fetched blocks in order, on the calling (blocking) thread; the first break, if any.
fn verify_rows(verifier: &mut BlockVerifier, rows: &[Row]) -> Option<Break> {
    for row in rows {
        // The columns are typed and NOT NULL; a value that cannot be read matches nothing.
        let number = |index: usize| row.try_get::<_, i64>(index).unwrap_or(-1);
        let text = |index: usize| row.try_get::<_, &str>(index).unwrap_or("");
        let checked = verifier.next(StoredBlock {
            first_sequence: number(0),
            last_sequence: number(1),
            min_time: text(2),
            max_time: text(3),
            head: text(4),
            entries: text(5).as_bytes(),
        });
        if let Err(broken) = checked {
            return Some(broken);
        }
    }
    None
}

/// Verifies the whole PostgreSQL trail (for `/audit/verify` and `xgate audit verify`): every
/// block in sequence order, as [`store::verify`] does the SQLite file's, read through a portal a
/// few blocks at a time (bounded memory) in one read-only snapshot; then the chain row, which
/// must name the last verified entry's sequence number and hash: a deleted tail of blocks leaves
/// a valid shorter chain, which only the row shows. A store chained with another hash is
/// [`AuditError::HashChanged`].
pub async fn verify_store(
    client: &mut Client,
    hash: AuditHash,
) -> Result<Verification, AuditError> {
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    check_hash(&transaction, hash).await?;
    let statement = transaction
        .prepare(&format!(
            "SELECT {BLOCK_COLUMNS} FROM audit_blocks ORDER BY first_sequence"
        ))
        .await?;
    let portal = transaction.bind(&statement, &[]).await?;
    let mut verifier = BlockVerifier::new(hash);
    let mut broken = None;
    loop {
        let rows = transaction.query_portal(&portal, READ_CHUNK).await?;
        if rows.is_empty() {
            break;
        }
        let (checked, found) = tokio::task::spawn_blocking(move || {
            let found = verify_rows(&mut verifier, &rows);
            (verifier, found)
        })
        .await
        .map_err(|_| AuditError::TaskFailed)?;
        verifier = checked;
        if found.is_some() {
            broken = found;
            break;
        }
    }
    if broken.is_none() {
        broken = check_chain_row(&transaction, &verifier).await?;
    }
    transaction.commit().await?;
    let count = verifier.count();
    Ok(Verification {
        ok: broken.is_none(),
        count,
        head: (count > 0).then(|| verifier.head()),
        broken,
    })
}

/// The chain row against the verified chain: the break it shows, if any.
async fn check_chain_row(
    transaction: &Transaction<'_>,
    verifier: &BlockVerifier,
) -> Result<Option<Break>, AuditError> {
    let count = verifier.count();
    let row = transaction
        .query_opt(
            "SELECT last_sequence, head FROM audit_chain WHERE id = 1",
            &[],
        )
        .await?;
    let Some(row) = row else {
        // A store never opened has neither blocks nor the row.
        return Ok((count > 0).then(|| Break {
            sequence: count,
            reason: "the chain row (audit_chain) is missing: the store was edited".to_owned(),
        }));
    };
    let last: i64 = row.try_get(0)?;
    let head: String = row.try_get(1)?;
    let expected_head = if count == 0 {
        digest_hex(&GENESIS_HASH)
    } else {
        verifier.head()
    };
    let broken = match u64::try_from(last) {
        Ok(last) if last > count => Some(Break {
            sequence: count + 1,
            reason: format!(
                "the chain row says the chain ends at entry {last}, the blocks end at {count}: entries {} to {last} were removed",
                count + 1
            ),
        }),
        Ok(last) if last < count => Some(Break {
            sequence: last + 1,
            reason: format!(
                "the chain row says the chain ends at entry {last}, the blocks run on to {count}: entries {} to {count} were not appended by a gateway",
                last + 1
            ),
        }),
        Ok(_) if head != expected_head => Some(Break {
            sequence: count.max(1),
            reason: "the chain row's head is not the last entry's hash: the store was edited"
                .to_owned(),
        }),
        Ok(_) => None,
        Err(_) => Some(Break {
            sequence: count.max(1),
            reason: format!("the chain row's sequence number {last} is not one"),
        }),
    };
    Ok(broken)
}

/// The block conditions of a time window (a block is read only if its range meets it), with
/// their values appended to `values`.
fn window_conditions(
    window: &TimeWindow,
    conditions: &mut Vec<String>,
    values: &mut Vec<Box<dyn ToSql + Sync + Send>>,
) {
    if let Some(since) = &window.since {
        values.push(Box::new(since.clone()));
        conditions.push(format!("max_time >= ${}", values.len()));
    }
    if let Some(until) = &window.until {
        values.push(Box::new(until.clone()));
        conditions.push(format!("min_time < ${}", values.len()));
    }
}

/// `WHERE a AND b ...`, or nothing.
fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

/// Whether a stored entry meets every condition of `filter` but the page's size (as the SQLite
/// store's entry query: `provider = x` is false for an entry without a provider).
fn matches(filter: &EntryFilter, stored: &StoredEntry) -> bool {
    let entry = &stored.entry;
    let same = |wanted: &Option<String>, value: Option<&str>| {
        wanted.as_deref().is_none_or(|wanted| value == Some(wanted))
    };
    entry.kind == filter.kind
        && same(&filter.consumer, Some(&entry.consumer))
        && same(&filter.provider, entry.provider.as_deref())
        && same(&filter.service, entry.service.as_deref())
        && same(&filter.outcome, Some(&entry.outcome))
        && filter
            .window
            .since
            .as_deref()
            .is_none_or(|since| entry.time.as_str() >= since)
        && filter
            .window
            .until
            .as_deref()
            .is_none_or(|until| entry.time.as_str() < until)
        && filter.after.is_none_or(|after| stored.sequence < after)
}

/// Entries matching `filter`, newest first, at most `filter.limit + 1` (the extra one tells the
/// caller there is a next page), as [`store::list`] answers. Blocks are read newest first,
/// bounded by the filter's time window (their time ranges) and `after` (their first sequence
/// numbers), a few per round trip; their entries are filtered here, and the reading stops once
/// the page is full.
pub async fn list(
    client: &mut Client,
    filter: &EntryFilter,
) -> Result<Vec<StoredEntry>, AuditError> {
    let mut conditions = Vec::new();
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    window_conditions(&filter.window, &mut conditions, &mut values);
    if let Some(after) = filter.after {
        values.push(Box::new(i64::try_from(after).unwrap_or(i64::MAX)));
        conditions.push(format!("first_sequence < ${}", values.len()));
    }
    let wanted = usize::try_from(filter.limit)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let transaction = client.build_transaction().read_only(true).start().await?;
    let statement = transaction
        .prepare(&format!(
            "SELECT first_sequence, entries FROM audit_blocks {} ORDER BY first_sequence DESC",
            where_clause(&conditions)
        ))
        .await?;
    let parameters: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let portal = transaction.bind(&statement, &parameters).await?;
    let mut page: Vec<StoredEntry> = Vec::with_capacity(wanted.min(1024));
    'blocks: loop {
        let rows = transaction.query_portal(&portal, LIST_CHUNK).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let first_sequence: i64 = row.try_get(0)?;
            let entries: &str = row.try_get(1)?;
            let Some(mut entries) = block::decode(entries.as_bytes()) else {
                return Err(AuditError::Damaged { first_sequence });
            };
            entries.retain(|stored| matches(filter, stored));
            entries.sort_unstable_by_key(|stored| std::cmp::Reverse(stored.sequence));
            page.append(&mut entries);
            if page.len() >= wanted {
                break 'blocks;
            }
        }
    }
    transaction.commit().await?;
    page.truncate(wanted);
    Ok(page)
}

/// The summary over a time window, as [`store::summary`] answers it from the SQLite file: the
/// blocks whose time range meets the window are fetched in one read-only snapshot, a few per
/// round trip, and handed to an in-memory SQLite connection on the blocking pool, where the
/// SQLite store's own code ([`WindowCopy`]) copies their entries and groups them.
pub async fn summary(client: &mut Client, window: &TimeWindow) -> Result<Summary, AuditError> {
    let (sender, mut receiver) = mpsc::channel::<Vec<Row>>(2);
    let copied_window = window.clone();
    let summarizer = tokio::task::spawn_blocking(move || {
        let connection = rusqlite::Connection::open_in_memory()?;
        let copy = WindowCopy::create(&connection, &copied_window)?;
        while let Some(rows) = receiver.blocking_recv() {
            for row in rows {
                let first_sequence: i64 = row.try_get(0)?;
                copy.add_block(
                    first_sequence,
                    row.try_get::<_, &str>(1).ok().map(str::as_bytes),
                )?;
            }
        }
        copy.summarize()
    });
    let fetched = async {
        let mut conditions = Vec::new();
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        window_conditions(window, &mut conditions, &mut values);
        let transaction = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let statement = transaction
            .prepare(&format!(
                "SELECT first_sequence, entries FROM audit_blocks {} ORDER BY first_sequence",
                where_clause(&conditions)
            ))
            .await?;
        let parameters: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|value| value.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let portal = transaction.bind(&statement, &parameters).await?;
        loop {
            let rows = transaction.query_portal(&portal, READ_CHUNK).await?;
            // An empty chunk is the end; a closed channel is the summarizer's failure, which it
            // reports.
            if rows.is_empty() || sender.send(rows).await.is_err() {
                break;
            }
        }
        transaction.commit().await?;
        Ok::<_, AuditError>(())
    }
    .await;
    drop(sender);
    let summary = summarizer.await.map_err(|_| AuditError::TaskFailed)?;
    fetched?;
    summary
}

/// A SQLite block as copied by [`import_sqlite`].
struct CopiedBlock {
    first_sequence: i64,
    last_sequence: i64,
    min_time: String,
    max_time: String,
    head: String,
    entries: String,
}

/// Reads the SQLite trail at `path` block by block in sequence order, verifying each, and hands
/// them on in chunks; returns the verified count and head. Blocking.
fn read_sqlite_trail(
    path: &Path,
    hash: AuditHash,
    sender: &mpsc::Sender<Vec<CopiedBlock>>,
) -> Result<(u64, String), AuditError> {
    let connection = store::open_reader(path)?;
    if let Some(stored) = store::stored_hash(&connection)?
        && stored != store::hash_name(hash)
    {
        return Err(AuditError::HashChanged {
            stored,
            configured: store::hash_name(hash).to_owned(),
        });
    }
    if store::entries_object(&connection)?.as_deref() == Some("table") {
        return Err(AuditError::EarlierLayout);
    }
    let mut statement = connection.prepare(&format!(
        "SELECT {BLOCK_COLUMNS} FROM audit_blocks ORDER BY first_sequence"
    ))?;
    let mut rows = statement.query([])?;
    let mut verifier = BlockVerifier::new(hash);
    let mut chunk = Vec::new();
    while let Some(row) = rows.next()? {
        // Copied verbatim: a value of another type than the layout's is an edit, refused below.
        let copied = CopiedBlock {
            first_sequence: row.get(0)?,
            last_sequence: row.get(1)?,
            min_time: row.get(2)?,
            max_time: row.get(3)?,
            head: row.get(4)?,
            entries: row.get(5)?,
        };
        verifier
            .next(StoredBlock {
                first_sequence: copied.first_sequence,
                last_sequence: copied.last_sequence,
                min_time: &copied.min_time,
                max_time: &copied.max_time,
                head: &copied.head,
                entries: copied.entries.as_bytes(),
            })
            .map_err(|broken| AuditError::ImportBroken {
                sequence: broken.sequence,
                reason: broken.reason,
            })?;
        chunk.push(copied);
        if chunk.len() >= READ_CHUNK as usize
            && sender.blocking_send(std::mem::take(&mut chunk)).is_err()
        {
            return Err(AuditError::TaskFailed);
        }
    }
    if !chunk.is_empty() && sender.blocking_send(chunk).is_err() {
        return Err(AuditError::TaskFailed);
    }
    let count = verifier.count();
    let head = if count == 0 {
        digest_hex(&GENESIS_HASH)
    } else {
        verifier.head()
    };
    Ok((count, head))
}

/// Copies the SQLite trail at `path` (chained with `hash`) into the store's EMPTY PostgreSQL
/// trail, blocks verbatim, in one transaction, and sets the chain row to its last entry: the
/// chain stays intact, and the next append continues it (for `xgate store import`). The SQLite
/// trail is verified while it is copied; one that does not verify is not imported
/// ([`AuditError::ImportBroken`]). Refused when the PostgreSQL trail holds entries
/// ([`AuditError::StoreNotEmpty`]) or either trail is chained with another hash
/// ([`AuditError::HashChanged`]). Returns how many entries were imported.
pub async fn import_sqlite(
    path: &Path,
    hash: AuditHash,
    client: &mut Client,
) -> Result<u64, AuditError> {
    let transaction = client.transaction().await?;
    check_hash(&transaction, hash).await?;
    // The lock keeps gateways from appending while the trail is filled.
    let chain = transaction
        .query_opt(
            "SELECT last_sequence FROM audit_chain WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await?;
    let appended: i64 = match chain {
        Some(row) => row.try_get(0)?,
        None => 0,
    };
    let blocks: i64 = transaction
        .query_one("SELECT count(*) FROM audit_blocks", &[])
        .await?
        .try_get(0)?;
    if appended != 0 || blocks != 0 {
        return Err(AuditError::StoreNotEmpty {
            last_sequence: appended,
        });
    }
    transaction
        .execute(
            "INSERT INTO audit_meta (key, value) VALUES ('hash', $1) ON CONFLICT (key) DO NOTHING",
            &[&store::hash_name(hash)],
        )
        .await?;
    let insert = transaction.prepare(INSERT_BLOCK).await?;
    let (sender, mut receiver) = mpsc::channel::<Vec<CopiedBlock>>(2);
    let path = path.to_owned();
    let sqlite_fingerprint = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            store::stored_key_fingerprint(&store::open_reader(&path)?)
        })
    };
    let reader = tokio::task::spawn_blocking(move || read_sqlite_trail(&path, hash, &sender));
    let copied = async {
        while let Some(chunk) = receiver.recv().await {
            for block in chunk {
                transaction
                    .execute(
                        &insert,
                        &[
                            &block.first_sequence,
                            &block.last_sequence,
                            &block.min_time,
                            &block.max_time,
                            &block.head,
                            &block.entries,
                        ],
                    )
                    .await?;
            }
        }
        Ok::<_, AuditError>(())
    }
    .await;
    // Whatever happened, the reader ends once the receiver is gone.
    drop(receiver);
    let read = reader.await.map_err(|_| AuditError::TaskFailed)?;
    copied?;
    let (count, head) = read?;
    transaction
        .execute(
            "INSERT INTO audit_chain (id, last_sequence, head) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET last_sequence = excluded.last_sequence, head = excluded.head",
            &[&to_bigint(count)?, &head],
        )
        .await?;
    // The subject index of the copied entries, rebuilt from the blocks themselves; and the
    // trail's audit key, by its fingerprint: the gateways must keep using the same key file
    // (a fingerprint a gateway left in the empty store gives way: no entry was keyed with it).
    transaction.batch_execute(INDEX_SUBJECTS).await?;
    if let Some(fingerprint) = sqlite_fingerprint
        .await
        .map_err(|_| AuditError::TaskFailed)??
    {
        transaction
            .execute(
                "INSERT INTO audit_meta (key, value) VALUES ('key_fingerprint', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&fingerprint],
            )
            .await?;
    }
    transaction.commit().await?;
    Ok(count)
}

/// Fills the subject index from every keyed entry's subject digest (encoding version 4 on).
const INDEX_SUBJECTS: &str = "INSERT INTO audit_subjects (subject, sequence) \
    SELECT e.value ->> 18, (e.value ->> 0)::bigint \
    FROM audit_blocks AS b, jsonb_array_elements(b.entries::jsonb) AS e \
    WHERE (e.value ->> 22)::integer >= 4 AND e.value ->> 18 IS NOT NULL \
    ON CONFLICT DO NOTHING";
