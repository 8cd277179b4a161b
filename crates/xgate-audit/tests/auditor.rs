//! An auditor's own program: it links `xgate-audit` alone (no gateway, no HTTP), writes a
//! trail through the public API, reads it back, verifies its chain and catches an edit made to
//! the file behind the writer's back.

use xgate_audit::{
    AuditEntry, AuditError, AuditHash, AuditKey, AuditSettings, AuditSync, AuditTrail, EntryFilter,
    EntryKind, Outcome, SubjectPage, Unobserved, sha256_hex, verify_file,
};

fn entry(request: u32, outcome: Outcome) -> AuditEntry {
    AuditEntry {
        time: xgate_audit::now(),
        kind: EntryKind::Exchange,
        request_id: format!("request-{request}"),
        exchange_id: None,
        consumer: "tax-bureau".to_owned(),
        provider: Some("market-regulation".to_owned()),
        service: Some("business-license".to_owned()),
        method: "POST".to_owned(),
        path_sha256: Some(sha256_hex(b"/exchange/market-regulation/business-license")),
        purpose_sha256: None,
        purpose: None,
        status: if outcome == Outcome::Ok { 200 } else { 422 },
        outcome: outcome.as_str().to_owned(),
        request_bytes: Some(42),
        response_bytes: Some(7),
        request_sha256: Some(sha256_hex(b"{}")),
        response_sha256: None,
        request_schema: Some("business-license@1".to_owned()),
        response_schema: None,
        subject_sha256: None,
        total_us: 1000 + u64::from(request),
        upstream_us: Some(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditors_program_writes_reads_and_verifies_a_trail_without_the_gateway() {
    let folder = tempfile::tempdir().unwrap();
    for hash in [AuditHash::Sha256, AuditHash::Sm3] {
        let settings = AuditSettings {
            path: folder.path().join(format!("trail-{hash:?}.db")),
            hash,
            synchronous: AuditSync::DEFAULT,
            reserve_bytes: 0,
            key_file: folder.path().join(format!("trail-{hash:?}.key")),
        };
        let trail = tokio::task::block_in_place(|| {
            let key = AuditKey::load_or_create(&settings.key_file, hash).unwrap();
            AuditTrail::open(&settings, key, "gw-1", Box::new(Unobserved)).unwrap()
        });
        for request in 0..10 {
            let outcome = if request % 3 == 0 {
                Outcome::InvalidRequest
            } else {
                Outcome::Ok
            };
            trail.append(entry(request, outcome)).await.unwrap();
        }
        trail.flush().await;

        let all = EntryFilter::parse(None).unwrap();
        assert_eq!(
            trail.entries(all).await.unwrap().entries.len(),
            10,
            "{hash:?}"
        );
        // The auditor routes' query, as an auditor's program can build it.
        let refused = EntryFilter::parse(Some("outcome=invalid_request")).unwrap();
        assert_eq!(trail.entries(refused).await.unwrap().entries.len(), 4);
        let verified = trail.verify().await.unwrap();
        assert!(verified.ok, "{hash:?}: {verified:?}");
        assert_eq!(verified.count, 10);
        drop(trail);

        // The file verifies on its own too, as `xgate audit verify` reads it.
        let offline = verify_file(&settings).unwrap();
        assert!(offline.ok && offline.count == 10, "{offline:?}");

        // An edit behind the writer's back: one entry's outcome, inside its stored block.
        let connection = rusqlite::Connection::open(&settings.path).unwrap();
        let edited = connection
            .execute(
                "UPDATE audit_blocks SET entries = replace(entries, '\"invalid_request\"', '\"ok\"')",
                [],
            )
            .unwrap();
        assert!(edited > 0, "the edit reached a block");
        drop(connection);
        let tampered = verify_file(&settings).unwrap();
        assert!(
            !tampered.ok,
            "{hash:?}: the edit went unnoticed: {tampered:?}"
        );
    }
}

/// A trail whose entries name subjects: the lookup is answered from the index, newest first and
/// paged, finds only that subject's entries (not another id's, not another kind's with the same
/// characters), and skips an index row that points at an entry without that digest. A trail
/// reopened under another key is refused, naming both fingerprints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_are_found_from_the_index_and_another_key_is_refused() {
    let folder = tempfile::tempdir().unwrap();
    let settings = AuditSettings {
        path: folder.path().join("trail.db"),
        hash: AuditHash::Sha256,
        synchronous: AuditSync::DEFAULT,
        reserve_bytes: 0,
        key_file: folder.path().join("audit.key"),
    };
    let key = AuditKey::load_or_create(&settings.key_file, settings.hash).unwrap();
    let trail = tokio::task::block_in_place(|| {
        AuditTrail::open(&settings, key.clone(), "gw-1", Box::new(Unobserved)).unwrap()
    });
    let (person, other) = ("11010519491231002X", "110105194912310021");
    for request in 0..30u32 {
        let mut entry = entry(request, Outcome::Ok);
        entry.subject_sha256 = Some(match request % 3 {
            0 => key.subject("resident", person),
            1 => key.subject("resident", other),
            _ => key.subject("organisation", person),
        });
        trail.append(entry).await.unwrap();
    }
    let page = |limit, after| SubjectPage { limit, after };
    let first = trail
        .subject("resident", person, page(4, None))
        .await
        .unwrap();
    let requests = |entries: &[xgate_audit::StoredEntry]| {
        entries
            .iter()
            .map(|stored| stored.entry.request_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        requests(&first.entries),
        ["request-27", "request-24", "request-21", "request-18"]
    );
    let rest = trail
        .subject("resident", person, page(100, first.next))
        .await
        .unwrap();
    assert_eq!(
        requests(&rest.entries),
        [
            "request-15",
            "request-12",
            "request-9",
            "request-6",
            "request-3",
            "request-0"
        ]
    );
    assert_eq!(rest.next, None);
    let nobody = trail
        .subject("resident", "11010519491231003X", page(100, None))
        .await
        .unwrap();
    assert!(nobody.entries.is_empty());
    trail.flush().await;
    drop(trail);

    // An index row forged to point at another subject's entry is not believed.
    let connection = rusqlite::Connection::open(&settings.path).unwrap();
    connection
        .execute(
            "INSERT INTO audit_subjects (subject, sequence) VALUES (?1, 2)",
            [key.subject("resident", person)],
        )
        .unwrap();
    drop(connection);
    let trail = tokio::task::block_in_place(|| {
        AuditTrail::open(&settings, key.clone(), "gw-1", Box::new(Unobserved)).unwrap()
    });
    let all = trail
        .subject("resident", person, page(100, None))
        .await
        .unwrap();
    assert_eq!(all.entries.len(), 10, "{:?}", requests(&all.entries));
    drop(trail);

    // Another key file: the gateway refuses to start against this trail.
    let other_key =
        AuditKey::load_or_create(&folder.path().join("other.key"), settings.hash).unwrap();
    let refused = tokio::task::block_in_place(|| {
        AuditTrail::open(&settings, other_key.clone(), "gw-1", Box::new(Unobserved)).unwrap_err()
    });
    assert!(matches!(refused, AuditError::Key(_)), "{refused}");
    let message = refused.to_string();
    assert!(message.contains(&key.fingerprint()[..16]), "{message}");
    assert!(
        message.contains(&other_key.fingerprint()[..16]),
        "{message}"
    );
    // The chain hash is a plain hash: the trail verifies without any key.
    assert!(verify_file(&settings).unwrap().ok);
}
