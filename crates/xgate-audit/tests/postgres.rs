//! The audit trail in PostgreSQL, against a real server (`XGATE_TEST_DATABASE_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/postgres`): each test on a database of its own, its
//! tables made by `postgres::TABLES_V1` and `TABLES_V2` as the store's migrations make them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use tokio_postgres::NoTls;
use xgate_audit::entry::{EncodingVersion, GENESIS_HASH, chain_entries};
use xgate_audit::query::MAX_LIMIT;
use xgate_audit::{
    AuditEntry, AuditError, AuditHash, AuditKey, AuditSync, AuditTrail, EntryFilter, EntryKind,
    SubjectPage, TimeWindow, Unobserved, block, postgres, sha256_hex, store,
};

/// The test server's URL.
fn server_url() -> String {
    std::env::var("XGATE_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A plain connection to `url`, its connection task spawned.
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|error| {
            panic!("no PostgreSQL answers at XGATE_TEST_DATABASE_URL: {error}")
        });
    tokio::spawn(connection);
    client
}

/// `server` (a URL) naming the database `name` instead.
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let scheme_end = base.find("://").map_or(0, |at| at + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A fresh database with the trail's tables, dropped (with its connections) with the value.
struct TestDatabase {
    url: String,
    name: String,
}

impl TestDatabase {
    async fn new() -> TestDatabase {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!(
            "xgate_test_{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&server_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let database = TestDatabase {
            url: database_url(&server_url(), &name),
            name,
        };
        database
            .connect()
            .await
            .batch_execute(&format!("{}{}", postgres::TABLES_V1, postgres::TABLES_V2))
            .await
            .unwrap();
        database
    }

    async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// A pool as a gateway's: `size` connections at most.
    fn pool(&self, size: usize) -> Pool {
        let manager = Manager::from_config(
            self.url.parse().unwrap(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .unwrap()
    }

    async fn trail(&self, hash: AuditHash, instance: &str) -> AuditTrail {
        AuditTrail::open_postgres(
            self.pool(4),
            test_key(hash),
            hash,
            instance,
            Box::new(Unobserved),
        )
        .await
        .unwrap()
    }

    /// Refuses every connection to this database and ends those open (an outage), or allows
    /// them again.
    async fn allow_connections(&self, allow: bool) {
        let admin = connect(&server_url()).await;
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
                self.name
            ))
            .await
            .unwrap();
        if !allow {
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&self.name],
                )
                .await
                .unwrap();
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = server_url();
        let name = self.name.clone();
        // A runtime of its own: the test's may be shutting down.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok((client, connection)) = tokio_postgres::connect(&server, NoTls).await {
                    tokio::spawn(connection);
                    client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await
                        .ok();
                }
            });
        })
        .join()
        .ok();
    }
}

/// The key every test trail is written under.
fn test_key(hash: AuditHash) -> AuditKey {
    AuditKey::new(&[9; 32], hash, std::path::Path::new("test.key"))
}

/// Entry `index`: exchanges and certificate lookups, several consumers, outcomes and minutes.
fn entry(index: u64) -> AuditEntry {
    let certificate = index % 7 == 3;
    AuditEntry {
        time: format!(
            "2026-11-28T01:{:02}:{:02}.{:03}Z",
            index % 60,
            index % 13,
            index % 1000
        ),
        kind: if certificate {
            EntryKind::Certificate
        } else {
            EntryKind::Exchange
        },
        request_id: format!("request-{index}"),
        exchange_id: Some(format!("0190a3b4-5e6f-7a8b-9c0d-{index:012}")),
        consumer: ["tax", "civil-affairs", "health"][(index % 3) as usize].to_owned(),
        provider: (!index.is_multiple_of(11)).then(|| "market-regulation".to_owned()),
        service: Some(
            if certificate {
                "business-license"
            } else {
                ["business-licenses", "permits"][(index % 2) as usize]
            }
            .to_owned(),
        ),
        method: "GET".to_owned(),
        path_sha256: Some(sha256_hex(format!("/{index}").as_bytes())),
        purpose_sha256: None,
        purpose: None,
        status: if index.is_multiple_of(5) { 502 } else { 200 },
        outcome: if certificate {
            ["hit", "miss", "stale"][(index % 3) as usize]
        } else if index.is_multiple_of(5) {
            "upstream_error"
        } else {
            "ok"
        }
        .to_owned(),
        request_bytes: Some(index * 10),
        response_bytes: (!index.is_multiple_of(4)).then_some(index * 100),
        request_sha256: None,
        response_sha256: None,
        request_schema: None,
        response_schema: None,
        subject_sha256: None,
        total_us: 1000 + (index * 37) % 5000,
        upstream_us: Some(500),
    }
}

/// Appends entries `range` in blocks of `size` to the store through `postgres::append`.
async fn append_blocks(pool: &Pool, range: std::ops::RangeInclusive<u64>, size: usize) {
    let client = pool.get().await.unwrap();
    let entries: Vec<u64> = range.collect();
    for chunk in entries.chunks(size) {
        let sequences = postgres::append(
            &client,
            AuditHash::Sha256,
            "gw-1",
            chunk.iter().copied().map(entry).collect(),
        )
        .await
        .unwrap();
        assert_eq!(sequences, chunk);
    }
}

/// Every entry of the trail, oldest first, read page by page as `/audit/exchanges` does.
async fn all_entries(trail: &AuditTrail) -> Vec<xgate_audit::StoredEntry> {
    let mut all = Vec::new();
    for kind in [EntryKind::Exchange, EntryKind::Certificate] {
        let mut filter = EntryFilter {
            kind,
            limit: MAX_LIMIT,
            ..EntryFilter::parse(None).unwrap()
        };
        loop {
            let page = trail.entries(filter.clone()).await.unwrap();
            all.extend(page.entries);
            match page.next {
                Some(next) => filter.after = Some(next),
                None => break,
            }
        }
    }
    all.sort_by_key(|stored| stored.sequence);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_gateways_appending_at_once_make_one_chain_without_gaps() {
    let database = TestDatabase::new().await;
    let names = ["gw-1", "gw-2", "gw-3"];
    let mut trails = Vec::new();
    for name in names {
        trails.push(Arc::new(database.trail(AuditHash::Sha256, name).await));
    }
    // 3 gateways × 30 tasks × 10 entries, every task appending one entry after another.
    let mut tasks = Vec::new();
    for (gateway, trail) in trails.iter().enumerate() {
        for task in 0..30u64 {
            let trail = trail.clone();
            tasks.push(tokio::spawn(async move {
                let mut committed = Vec::new();
                for step in 0..10u64 {
                    let index = gateway as u64 * 1000 + task * 10 + step;
                    committed.push((trail.append(entry(index)).await.unwrap(), gateway));
                }
                committed
            }));
        }
    }
    let mut committed: BTreeMap<u64, usize> = BTreeMap::new();
    for task in tasks {
        for (sequence, gateway) in task.await.unwrap() {
            assert!(
                committed.insert(sequence, gateway).is_none(),
                "{sequence} twice"
            );
        }
    }
    assert_eq!(
        committed.keys().copied().collect::<Vec<_>>(),
        (1..=900).collect::<Vec<_>>()
    );
    for trail in &trails {
        let verification = trail.verify().await.unwrap();
        assert!(verification.ok, "{verification:?}");
        assert_eq!(verification.count, 900);
    }
    let stored = all_entries(&trails[0]).await;
    assert_eq!(stored.len(), 900);
    for entry in &stored {
        assert_eq!(entry.version, EncodingVersion::CURRENT);
        assert_eq!(
            entry.gateway.as_deref(),
            Some(names[committed[&entry.sequence]]),
            "entry {} names the gateway that committed it",
            entry.sequence
        );
    }
    // The view names every field, the gateway's too.
    let client = database.connect().await;
    let columns: Vec<String> = client
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_name = 'audit_entries' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(columns, block::stored_fields().collect::<Vec<_>>());
    let per_gateway: Vec<(String, i64)> = client
        .query(
            "SELECT gateway, count(*) FROM audit_entries GROUP BY gateway ORDER BY gateway",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        per_gateway,
        names.map(|name| (name.to_owned(), 300)).to_vec()
    );
    for trail in &trails {
        trail.flush().await;
    }
}

/// A store of 20 entries in blocks of 5, edited by `tamper`; what `verify` finds.
async fn tampered(tamper: &str) -> xgate_audit::Verification {
    let database = TestDatabase::new().await;
    let trail = database.trail(AuditHash::Sha256, "gw-1").await;
    let pool = database.pool(1);
    append_blocks(&pool, 1..=20, 5).await;
    let clean = trail.verify().await.unwrap();
    assert!(clean.ok && clean.count == 20, "{clean:?}");
    database
        .connect()
        .await
        .batch_execute(tamper)
        .await
        .unwrap();
    trail.verify().await.unwrap()
}

#[tokio::test]
async fn an_edited_field_inside_a_block_is_found_at_its_entry() {
    let found = tampered(
        "UPDATE audit_blocks SET entries = replace(entries, '\"request-7\"', '\"request-x\"') \
         WHERE first_sequence = 6",
    )
    .await;
    assert!(!found.ok);
    let broken = found.broken.unwrap();
    assert_eq!(broken.sequence, 7);
    assert!(broken.reason.contains("stored hash"), "{}", broken.reason);
    assert_eq!(found.count, 6);
}

#[tokio::test]
async fn a_deleted_middle_block_is_found_where_the_numbers_jump() {
    let found = tampered("DELETE FROM audit_blocks WHERE first_sequence = 6").await;
    assert!(!found.ok);
    assert_eq!(found.broken.unwrap().sequence, 11);
    assert_eq!(found.count, 5);
}

#[tokio::test]
async fn a_deleted_last_block_is_found_by_the_chain_row() {
    let found = tampered("DELETE FROM audit_blocks WHERE first_sequence = 16").await;
    assert!(!found.ok);
    let broken = found.broken.unwrap();
    assert_eq!(broken.sequence, 16, "{}", broken.reason);
    assert!(broken.reason.contains("removed"), "{}", broken.reason);
    assert_eq!(found.count, 15);
}

#[tokio::test]
async fn a_forged_block_is_found_even_when_it_chains() {
    // Entry 21, chained correctly from the head (the chain has no secret): only the chain row,
    // which no gateway moved, shows it.
    let database = TestDatabase::new().await;
    let trail = database.trail(AuditHash::Sha256, "gw-1").await;
    append_blocks(&database.pool(1), 1..=20, 5).await;
    let head = trail.verify().await.unwrap().head.unwrap();
    let mut previous = [0u8; 32];
    hex::decode_to_slice(&head, &mut previous).unwrap();
    let forged = block::encode(&chain_entries(
        AuditHash::Sha256,
        previous,
        20,
        "gw-1",
        [entry(21)],
    ))
    .unwrap();
    database
        .connect()
        .await
        .execute(
            "INSERT INTO audit_blocks VALUES (21, 21, $1, $2, $3, $4)",
            &[
                &forged.min_time,
                &forged.max_time,
                &forged.head,
                &forged.entries,
            ],
        )
        .await
        .unwrap();
    let found = trail.verify().await.unwrap();
    assert!(!found.ok);
    let broken = found.broken.unwrap();
    assert_eq!(broken.sequence, 21, "{}", broken.reason);
    assert!(broken.reason.contains("not appended"), "{}", broken.reason);
    assert_eq!(found.count, 21);
}

#[tokio::test]
async fn swapped_blocks_are_found_at_the_first_moved_entry() {
    let found = tampered(
        "UPDATE audit_blocks SET first_sequence = -first_sequence, last_sequence = -last_sequence \
         WHERE first_sequence IN (6, 11); \
         UPDATE audit_blocks SET first_sequence = 11, last_sequence = 15 WHERE first_sequence = -6; \
         UPDATE audit_blocks SET first_sequence = 6, last_sequence = 10 WHERE first_sequence = -11;",
    )
    .await;
    assert!(!found.ok);
    assert_eq!(found.broken.unwrap().sequence, 11);
    assert_eq!(found.count, 5);
}

#[tokio::test]
async fn pages_and_summaries_from_postgresql_equal_sqlite_s() {
    let database = TestDatabase::new().await;
    let trail = database.trail(AuditHash::Sha256, "gw-1").await;
    let folder = tempfile::tempdir().unwrap();
    let mut sqlite = store::open_writer(
        &folder.path().join("audit.db"),
        AuditHash::Sha256,
        AuditSync::Normal,
    )
    .unwrap();
    // The same entries in the same blocks, irregular sizes.
    let pool = database.pool(1);
    let client = pool.get().await.unwrap();
    let mut next = 1u64;
    for size in [1u64, 7, 30, 2, 64, 13].iter().cycle() {
        if next > 400 {
            break;
        }
        let last = (next + size - 1).min(400);
        let batch: Vec<AuditEntry> = (next..=last).map(entry).collect();
        let from_sqlite =
            store::append(&mut sqlite, AuditHash::Sha256, "gw-1", batch.clone()).unwrap();
        let from_postgres = postgres::append(&client, AuditHash::Sha256, "gw-1", batch)
            .await
            .unwrap();
        assert_eq!(from_sqlite, from_postgres);
        next = last + 1;
    }
    let window = |since: Option<&str>, until: Option<&str>| TimeWindow {
        since: since.map(str::to_owned),
        until: until.map(str::to_owned),
    };
    let base = EntryFilter::parse(None).unwrap();
    let filters = [
        base.clone(),
        EntryFilter {
            limit: 9,
            after: Some(200),
            ..base.clone()
        },
        EntryFilter {
            consumer: Some("tax".to_owned()),
            limit: MAX_LIMIT,
            ..base.clone()
        },
        EntryFilter {
            kind: EntryKind::Certificate,
            outcome: Some("hit".to_owned()),
            limit: MAX_LIMIT,
            ..base.clone()
        },
        EntryFilter {
            provider: Some("market-regulation".to_owned()),
            service: Some("permits".to_owned()),
            window: window(
                Some("2026-11-28T01:10:00.000Z"),
                Some("2026-11-28T01:20:00.000Z"),
            ),
            limit: 50,
            ..base.clone()
        },
        EntryFilter {
            outcome: Some("upstream_error".to_owned()),
            window: window(None, Some("2026-11-28T01:30:00.000Z")),
            after: Some(300),
            limit: 5,
            ..base.clone()
        },
        EntryFilter {
            consumer: Some("nobody".to_owned()),
            ..base.clone()
        },
    ];
    let mut client = database.connect().await;
    for filter in &filters {
        let expected = store::list(&sqlite, filter).unwrap();
        assert!(!expected.is_empty() || filter.consumer.as_deref() == Some("nobody"));
        let answered = postgres::list(&mut client, filter).await.unwrap();
        assert_eq!(answered, expected, "{filter:?}");
        let page = trail.entries(filter.clone()).await.unwrap();
        assert_eq!(
            serde_json::to_value(&page.entries).unwrap(),
            serde_json::to_value(&expected[..expected.len().min(filter.limit as usize)]).unwrap()
        );
    }
    for window in [
        TimeWindow::default(),
        window(
            Some("2026-11-28T01:10:00.000Z"),
            Some("2026-11-28T01:20:00.000Z"),
        ),
        window(Some("2026-11-28T01:45:00.000Z"), None),
        window(None, Some("2026-11-28T01:05:00.000Z")),
        window(Some("2999-01-01T00:00:00.000Z"), None),
    ] {
        let expected = serde_json::to_value(store::summary(&sqlite, &window).unwrap()).unwrap();
        let answered = serde_json::to_value(trail.summary(window.clone()).await.unwrap()).unwrap();
        assert_eq!(answered, expected, "{window:?}");
        assert_ne!(expected["matrix"], Value::Null);
    }
    // A damaged block is named, not guessed around.
    database
        .connect()
        .await
        .batch_execute("UPDATE audit_blocks SET entries = 'shredded' WHERE first_sequence = 9")
        .await
        .unwrap();
    let damaged = trail.summary(TimeWindow::default()).await.unwrap_err();
    assert!(
        matches!(damaged, AuditError::Damaged { first_sequence: 9 }),
        "{damaged}"
    );
}

#[tokio::test]
async fn a_sqlite_trail_is_imported_verbatim_and_its_chain_runs_on() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("audit.db");
    let key = test_key(AuditHash::Sha256);
    let person = "11010519491231002X";
    {
        let mut sqlite = store::open_writer(&path, AuditHash::Sha256, AuditSync::Normal).unwrap();
        store::check_key(&sqlite, &key).unwrap();
        for first in (1..=100).step_by(20) {
            let entries = (first..first + 20)
                .map(|index| {
                    let mut entry = entry(index);
                    if index % 10 == 0 {
                        entry.subject_sha256 = Some(key.subject("resident", person));
                    }
                    entry
                })
                .collect();
            store::append(&mut sqlite, AuditHash::Sha256, "gw-old", entries).unwrap();
        }
        let before = store::verify(&sqlite, AuditHash::Sha256).unwrap();
        assert!(before.ok && before.count == 100, "{before:?}");
    }
    let before = store::verify(&store::open_reader(&path).unwrap(), AuditHash::Sha256).unwrap();
    let database = TestDatabase::new().await;
    let mut client = database.connect().await;
    // Another hash is refused on either side.
    let refused = postgres::import_sqlite(&path, AuditHash::Sm3, &mut client)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, AuditError::HashChanged { .. }),
        "{refused}"
    );
    assert_eq!(
        postgres::import_sqlite(&path, AuditHash::Sha256, &mut client)
            .await
            .unwrap(),
        100
    );
    let after = postgres::verify_store(&mut client, AuditHash::Sha256)
        .await
        .unwrap();
    assert_eq!(after, before);
    // Verbatim: the same blocks.
    let blocks: Vec<(i64, String)> = client
        .query(
            "SELECT first_sequence, entries FROM audit_blocks ORDER BY first_sequence",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let sqlite_blocks: Vec<(i64, String)> = store::open_reader(&path)
        .unwrap()
        .prepare("SELECT first_sequence, entries FROM audit_blocks ORDER BY first_sequence")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(blocks, sqlite_blocks);
    // Not twice.
    let again = postgres::import_sqlite(&path, AuditHash::Sha256, &mut client)
        .await
        .unwrap_err();
    assert!(
        matches!(again, AuditError::StoreNotEmpty { last_sequence: 100 }),
        "{again}"
    );
    // A gateway continues the chain.
    let trail = database.trail(AuditHash::Sha256, "gw-new").await;
    // (Entry 102 is an exchange: the page below lists exchanges.)
    assert_eq!(trail.append(entry(102)).await.unwrap(), 101);
    let continued = trail.verify().await.unwrap();
    assert!(continued.ok && continued.count == 101, "{continued:?}");
    let newest = trail
        .entries(EntryFilter::parse(None).unwrap())
        .await
        .unwrap();
    assert_eq!(newest.entries[0].gateway.as_deref(), Some("gw-new"));
    assert_eq!(newest.entries[1].gateway.as_deref(), Some("gw-old"));
    // The subject index came along, and so did the key's fingerprint.
    let found = trail
        .subject(
            "resident",
            person,
            SubjectPage {
                limit: 100,
                after: None,
            },
        )
        .await
        .unwrap();
    let sequences: Vec<u64> = found.entries.iter().map(|stored| stored.sequence).collect();
    assert_eq!(sequences, [100, 90, 80, 70, 60, 50, 40, 30, 20, 10]);
    let refused = AuditTrail::open_postgres(
        database.pool(1),
        AuditKey::new(
            &[1; 32],
            AuditHash::Sha256,
            std::path::Path::new("other.key"),
        ),
        AuditHash::Sha256,
        "gw-other",
        Box::new(Unobserved),
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, AuditError::Key(_)), "{refused}");
}

/// Gateways on one store share the subject index: a lookup on one finds what every gateway
/// wrote, newest first and paged, only for that subject, and never an entry an edited index row
/// points at; a gateway with another audit key is refused at start, and the first key's
/// fingerprint is what the store keeps.
#[tokio::test]
async fn the_subject_index_and_the_key_fingerprint_hold_for_every_gateway() {
    let database = TestDatabase::new().await;
    let key = test_key(AuditHash::Sha256);
    let (one, two) = (
        database.trail(AuditHash::Sha256, "gw-1").await,
        database.trail(AuditHash::Sha256, "gw-2").await,
    );
    let person = "11010519491231002X";
    for index in 1..=40u64 {
        let mut entry = entry(index);
        entry.subject_sha256 = Some(if index % 2 == 0 {
            key.subject("resident", person)
        } else {
            key.subject("resident", "110105194912310021")
        });
        let trail = if index % 4 < 2 { &one } else { &two };
        trail.append(entry).await.unwrap();
    }
    let first = two
        .subject(
            "resident",
            person,
            SubjectPage {
                limit: 5,
                after: None,
            },
        )
        .await
        .unwrap();
    let sequences = |page: &xgate_audit::Page| -> Vec<u64> {
        page.entries.iter().map(|stored| stored.sequence).collect()
    };
    assert_eq!(sequences(&first), [40, 38, 36, 34, 32]);
    let gateways: std::collections::BTreeSet<_> = first
        .entries
        .iter()
        .filter_map(|stored| stored.gateway.clone())
        .collect();
    assert_eq!(gateways.len(), 2, "both gateways' entries: {gateways:?}");
    let rest = one
        .subject(
            "resident",
            person,
            SubjectPage {
                limit: 100,
                after: first.next,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        sequences(&rest),
        [30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2]
    );
    assert_eq!(rest.next, None);
    // An index row pointing at another subject's entry is not believed.
    let client = database.connect().await;
    client
        .execute(
            "INSERT INTO audit_subjects (subject, sequence) VALUES ($1, 39)",
            &[&key.subject("resident", person)],
        )
        .await
        .unwrap();
    let all = one
        .subject(
            "resident",
            person,
            SubjectPage {
                limit: 100,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.entries.len(), 20);
    assert!(all.entries.iter().all(|stored| stored.sequence % 2 == 0));
    // The store keeps the key's fingerprint, never the key.
    let stored: String = client
        .query_one(
            "SELECT value FROM audit_meta WHERE key = 'key_fingerprint'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, key.fingerprint());
    let other = AuditKey::new(
        &[1; 32],
        AuditHash::Sha256,
        std::path::Path::new("other.key"),
    );
    let refused = AuditTrail::open_postgres(
        database.pool(1),
        other.clone(),
        AuditHash::Sha256,
        "gw-3",
        Box::new(Unobserved),
    )
    .await
    .unwrap_err();
    let message = refused.to_string();
    assert!(message.contains(&key.fingerprint()[..16]), "{message}");
    assert!(message.contains(&other.fingerprint()[..16]), "{message}");
}

#[tokio::test]
async fn a_sqlite_trail_that_does_not_verify_is_not_imported() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("audit.db");
    let mut sqlite = store::open_writer(&path, AuditHash::Sha256, AuditSync::Normal).unwrap();
    for first in [1, 11, 21] {
        store::append(
            &mut sqlite,
            AuditHash::Sha256,
            "gw-old",
            (first..first + 10).map(entry).collect(),
        )
        .unwrap();
    }
    sqlite
        .execute("DELETE FROM audit_blocks WHERE first_sequence = 11", [])
        .unwrap();
    let database = TestDatabase::new().await;
    let mut client = database.connect().await;
    let refused = postgres::import_sqlite(&path, AuditHash::Sha256, &mut client)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, AuditError::ImportBroken { sequence: 21, .. }),
        "{refused}"
    );
    // Nothing was kept: the store is still empty, and a real import can follow.
    let blocks: i64 = client
        .query_one("SELECT count(*) FROM audit_blocks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(blocks, 0);
}

#[tokio::test]
async fn a_store_chained_with_sm3_is_refused_by_a_sha256_trail() {
    let database = TestDatabase::new().await;
    let sm3 = database.trail(AuditHash::Sm3, "gw-1").await;
    sm3.append(entry(1)).await.unwrap();
    let refused = AuditTrail::open_postgres(
        database.pool(1),
        test_key(AuditHash::Sha256),
        AuditHash::Sha256,
        "gw-2",
        Box::new(Unobserved),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&refused, AuditError::HashChanged { stored, configured } if stored == "sm3" && configured == "sha256"),
        "{refused}"
    );
    let mut client = database.connect().await;
    let refused = postgres::verify_store(&mut client, AuditHash::Sha256)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, AuditError::HashChanged { .. }),
        "{refused}"
    );
    let verified = postgres::verify_store(&mut client, AuditHash::Sm3)
        .await
        .unwrap();
    assert!(verified.ok && verified.count == 1, "{verified:?}");
    // The chain row started at the genesis hash on the first open.
    let chain: (i64, String) = client
        .query_one("SELECT last_sequence, head FROM audit_chain", &[])
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(chain.0, 1);
    assert_eq!(Some(chain.1), verified.head);
    assert_ne!(verified.head.unwrap(), hex::encode(GENESIS_HASH));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_makes_the_trail_unavailable_until_the_database_answers_again() {
    let database = TestDatabase::new().await;
    let trail = database.trail(AuditHash::Sha256, "gw-1").await;
    assert_eq!(trail.append(entry(1)).await.unwrap(), 1);
    assert!(!trail.is_unavailable());
    database.allow_connections(false).await;
    let failed = trail.append(entry(2)).await.unwrap_err();
    assert!(
        matches!(*failed, AuditError::Postgres(_) | AuditError::Pool(_)),
        "{failed}"
    );
    assert!(!failed.to_string().contains("postgres://"), "{failed}");
    assert!(trail.is_unavailable());
    database.allow_connections(true).await;
    // The probe heals it on its own, without an append.
    for _ in 0..600 {
        if !trail.is_unavailable() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!trail.is_unavailable(), "the trail did not heal");
    assert_eq!(trail.append(entry(3)).await.unwrap(), 2);
    let verified = trail.verify().await.unwrap();
    assert!(verified.ok && verified.count == 2, "{verified:?}");
}
