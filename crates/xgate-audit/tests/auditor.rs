//! An auditor's own program: it links `xgate-audit` alone (no gateway, no HTTP), writes a
//! trail through the public API, reads it back, verifies its chain and catches an edit made to
//! the file behind the writer's back.

use xgate_audit::{
    AuditEntry, AuditHash, AuditSettings, AuditSync, AuditTrail, EntryFilter, EntryKind, Outcome,
    Unobserved, sha256_hex, verify_file,
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
        };
        let trail = tokio::task::block_in_place(|| {
            AuditTrail::open(&settings, "gw-1", Box::new(Unobserved)).unwrap()
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
