//! The subject lookup (`GET /audit/subjects/{kind}/{id}`, SPEC §15) on a trail of 1,000,000
//! entries: the time of a page from the subject index, against the scan the index spares (every
//! entry's subject read out of the blocks). SQLite always; PostgreSQL too when
//! `XGATE_BENCH_DATABASE_URL` names an empty database (its tables are created here).
//!
//! `cargo bench -p xgate-audit --bench subjects` (release build; a few minutes: the trail is
//! written first). Prints one line per measurement.

use std::time::{Duration, Instant};

use xgate_audit::entry::chain_entries;
use xgate_audit::{AuditEntry, AuditHash, AuditKey, AuditSync, EntryKind, postgres, store};

/// Entries in the trail.
const ENTRIES: u64 = 1_000_000;
/// Entries per committed block (the writer's largest batch).
const BATCH: u64 = 512;
/// Distinct residents the entries concern (each about `ENTRIES / RESIDENTS` times).
const RESIDENTS: u64 = 200_000;
/// Every this many entries concern the looked-up person (50 entries over the whole trail).
const TARGET_EVERY: u64 = 20_000;
/// Lookups timed per measurement.
const ROUNDS: u32 = 50;

fn resident(index: u64) -> String {
    let first17 = format!("110105{:08}{:03}", 19_490_101 + index / 1000, index % 1000);
    xgate_core::identifiers::resident_id_with_check(&first17).unwrap_or(first17)
}

fn entry(key: &AuditKey, index: u64) -> AuditEntry {
    let subject = if index.is_multiple_of(TARGET_EVERY) {
        "11010519491231002X".to_owned()
    } else {
        resident(index % RESIDENTS)
    };
    AuditEntry {
        time: format!(
            "2026-12-02T{:02}:{:02}:{:02}.000Z",
            (index / 3600) % 24,
            (index / 60) % 60,
            index % 60
        ),
        kind: EntryKind::Exchange,
        request_id: format!("request-{index}"),
        exchange_id: Some(format!("0190a3b4-5e6f-7a8b-9c0d-{index:012}")),
        consumer: ["tax", "civil-affairs", "health"][(index % 3) as usize].to_owned(),
        provider: Some("public-security".to_owned()),
        service: Some("residents".to_owned()),
        method: "POST".to_owned(),
        path_sha256: Some(key.digest(b"/exchange/public-security/residents")),
        purpose_sha256: None,
        purpose: Some("benefit-review".to_owned()),
        status: 200,
        outcome: "ok".to_owned(),
        request_bytes: Some(310),
        response_bytes: Some(1204),
        request_sha256: Some(key.digest(index.to_string().as_bytes())),
        response_sha256: Some(key.digest(&index.to_be_bytes())),
        request_schema: Some("resident-query@1".to_owned()),
        response_schema: Some("resident@2".to_owned()),
        subject_sha256: Some(key.subject("resident", &subject)),
        total_us: 900 + index % 300,
        upstream_us: Some(400),
    }
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "{what}: median {median:.2?}, max {worst:.2?} over {} runs",
        times.len()
    );
}

fn sqlite(key: &AuditKey) {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("audit.db");
    let mut connection =
        store::open_writer(&path, AuditHash::Sha256, AuditSync::Normal).expect("the trail");
    store::check_key(&connection, key).expect("the key");
    let started = Instant::now();
    for first in (1..=ENTRIES).step_by(BATCH as usize) {
        let batch = (first..first + BATCH)
            .map(|index| entry(key, index))
            .collect();
        store::append(&mut connection, AuditHash::Sha256, "gw-1", batch).expect("a batch");
    }
    println!(
        "sqlite: wrote {ENTRIES} entries in {:.1?}; file {} MB",
        started.elapsed(),
        std::fs::metadata(&path).map_or(0, |m| m.len()) / 1_000_000
    );
    let reader = store::open_reader(&path).expect("a reader");
    let target = key.subject("resident", "11010519491231002X");
    let occasional = key.subject("resident", &resident(123_457));
    for (what, subject) in [("50 entries", &target), ("5 entries", &occasional)] {
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            found = store::subject_entries(&reader, subject, 100, None)
                .expect("a page")
                .len();
            times.push(started.elapsed());
        }
        report(
            &format!("sqlite: a subject's page from the index ({what}, {found} found)"),
            &mut times,
        );
    }
    let started = Instant::now();
    let scanned: i64 = reader
        .query_row(
            "SELECT count(*) FROM audit_entries WHERE subject_sha256 = ?1",
            [&target],
            |row| row.get(0),
        )
        .expect("the scan");
    println!(
        "sqlite: the same answer by scanning the trail: {scanned} found in {:.2?}",
        started.elapsed()
    );
}

async fn postgresql(url: &str, key: &AuditKey) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the database");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("{}{}", postgres::TABLES_V1, postgres::TABLES_V2))
        .await
        .expect("an empty database");
    postgres::open(&client, AuditHash::Sha256)
        .await
        .expect("the trail");
    let started = Instant::now();
    let insert = client
        .prepare("INSERT INTO audit_blocks (first_sequence, last_sequence, min_time, max_time, head, entries) VALUES ($1, $2, $3, $4, $5, $6)")
        .await
        .expect("the insert");
    let mut previous = xgate_audit::entry::GENESIS_HASH;
    let mut subjects: (Vec<String>, Vec<i64>) = (Vec::new(), Vec::new());
    for first in (1..=ENTRIES).step_by(BATCH as usize) {
        let batch: Vec<AuditEntry> = (first..first + BATCH)
            .map(|index| entry(key, index))
            .collect();
        let stored = chain_entries(AuditHash::Sha256, previous, first - 1, "gw-1", batch);
        let block = xgate_audit::block::encode(&stored).expect("a block");
        hex::decode_to_slice(&block.head, &mut previous).expect("a head");
        for (subject, sequence) in xgate_audit::block::subjects(&stored) {
            subjects.0.push(subject.to_owned());
            subjects.1.push(sequence);
        }
        client
            .execute(
                &insert,
                &[
                    &(block.first_sequence as i64),
                    &(block.last_sequence as i64),
                    &block.min_time,
                    &block.max_time,
                    &block.head,
                    &block.entries,
                ],
            )
            .await
            .expect("a block row");
        if subjects.0.len() >= 50_000 || block.last_sequence >= ENTRIES {
            client
                .execute(
                    "INSERT INTO audit_subjects SELECT * FROM unnest($1::text[], $2::bigint[])",
                    &[&subjects.0, &subjects.1],
                )
                .await
                .expect("the index rows");
            subjects = (Vec::new(), Vec::new());
        }
    }
    client.batch_execute("ANALYZE").await.expect("analyze");
    println!(
        "postgresql: wrote {ENTRIES} entries in {:.1?}",
        started.elapsed()
    );
    let target = key.subject("resident", "11010519491231002X");
    let occasional = key.subject("resident", &resident(123_457));
    for (what, subject) in [("50 entries", &target), ("5 entries", &occasional)] {
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            found = postgres::subject_entries(&client, subject, 100, None)
                .await
                .expect("a page")
                .len();
            times.push(started.elapsed());
        }
        report(
            &format!("postgresql: a subject's page from the index ({what}, {found} found)"),
            &mut times,
        );
    }
    let started = Instant::now();
    let scanned: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_entries WHERE subject_sha256 = $1",
            &[&target],
        )
        .await
        .expect("the scan")
        .get(0);
    println!(
        "postgresql: the same answer by scanning the trail: {scanned} found in {:.2?}",
        started.elapsed()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a test run (`cargo test --benches`) passes nothing useful.
    if !std::env::args().any(|argument| argument == "--bench") {
        return;
    }
    let key = AuditKey::new(
        &[42; 32],
        AuditHash::Sha256,
        std::path::Path::new("bench.key"),
    );
    sqlite(&key);
    if let Ok(url) = std::env::var("XGATE_BENCH_DATABASE_URL") {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(postgresql(&url, &key));
    }
}
