//! The audit trail on a disk that fills up (issue 15, points 6 and 7), on real small file
//! systems: a 2 MiB tmpfs mounted for the test (as root; ignored otherwise, failing under CI),
//! filled by a file of the test's own or by the trail itself.
//!
//! What is counted: calls that reached the provider (its own count) without an entry in the
//! trail; what is shown: refusals before forwarding (503 `store-unavailable`, `Retry-After`)
//! while commits fail, and the trail healing by itself once space returns — with and without a
//! restart, with no call arriving meanwhile — its chain intact.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

/// How long the trail may take to heal once space is back: a safety net against a hung
/// gateway (it probes every 500 ms), not a timing assertion.
const HEAL_DEADLINE: Duration = Duration::from_secs(30);

/// The standard gateway with its trail on `volume`, holding back `reserve_bytes`.
async fn gateway_on(
    volume: &Path,
    reserve_bytes: u64,
    echo: &Upstream,
    records: &Upstream,
) -> TestGateway {
    standard(echo, records)
        .main(&format!(
            "[audit]\npath = {:?}\nreserve_bytes = {reserve_bytes}",
            volume.join("audit.db").display().to_string()
        ))
        .start()
        .await
}

/// Every entry of the trail (exchanges), newest first.
async fn trail(gateway: &TestGateway) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after = String::new();
    loop {
        let page: Value = gateway
            .client
            .get(gateway.admin_url(&format!("/audit/exchanges?limit=1000{after}")))
            .bearer_auth(token("auditor"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(next) => after = format!("&after={next}"),
            None => return entries,
        }
    }
}

/// Calls of the echo service that reached it without an entry: the provider's own count less
/// the trail's entries of forwarded echo calls.
async fn unaudited(gateway: &TestGateway, echo: &Upstream) -> usize {
    let forwarded = trail(gateway)
        .await
        .iter()
        .filter(|entry| entry["service"] == "echo" && !entry["upstream_us"].is_null())
        .count();
    echo.call_count().saturating_sub(forwarded)
}

async fn verify(gateway: &TestGateway) -> Value {
    gateway
        .client
        .get(gateway.admin_url("/audit/verify"))
        .bearer_auth(token("auditor"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// One echo call; its status.
async fn call(gateway: &TestGateway, index: usize) -> StatusCode {
    gateway
        .call(
            Method::GET,
            &format!("/exchange/market/echo/{index}"),
            "tax",
        )
        .send()
        .await
        .unwrap()
        .status()
}

const UNAVAILABLE: &str = "xgate_audit_store_unavailable";

/// Waits, sending no call, until the gateway says its trail serves again.
async fn healed_without_traffic(gateway: &TestGateway) {
    eventually("the trail heals by itself", HEAL_DEADLINE, || async {
        (metric(gateway, UNAVAILABLE).await == 0.0).then_some(())
    })
    .await;
}

#[tokio::test]
#[cfg_attr(
    xgate_missing = "mount",
    ignore = "needs root, mount and mkfs.ext4 (e2fsprogs)"
)]
async fn while_the_disk_is_full_exchanges_are_refused_before_they_reach_the_provider() {
    let volume = Mounted::tmpfs("2m");
    let (echo, records) = (
        Upstream::echo().await,
        Upstream::fixed(StatusCode::OK, license()).await,
    );
    let gateway = gateway_on(&volume.dir, 256 << 10, &echo, &records).await;
    for index in 0..5 {
        assert_eq!(call(&gateway, index).await, StatusCode::OK);
    }
    let filler = fill_up(&volume.dir);

    // The WAL still has room where earlier commits were checkpointed, and each time a commit
    // finds the disk full the reserve takes its entries; once the reserve cannot be allocated
    // again, every call is refused before it is forwarded.
    let mut statuses = Vec::new();
    for index in 5..305 {
        let response = gateway
            .call(
                Method::GET,
                &format!("/exchange/market/echo/{index}"),
                "tax",
            )
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(response.headers()["retry-after"], "1");
            assert!(response.headers().contains_key("xgate-exchange-id"));
            let (_, body) = problem(response).await;
            assert_eq!(
                body["type"], "urn:xgate:problem:store-unavailable",
                "{body}"
            );
            statuses.push(503);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    let refused = statuses.iter().filter(|status| **status == 503).count();
    assert!(
        statuses.ends_with(&[503; 20]),
        "the full disk refuses calls: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|status| *status == 200 || *status == 503),
        "no call was answered without its entry, none failed after forwarding: {statuses:?}"
    );
    assert_eq!(
        unaudited(&gateway, &echo).await,
        0,
        "calls reached the provider without an entry: {statuses:?}"
    );
    assert_eq!(metric(&gateway, UNAVAILABLE).await, 1.0);
    for url in [gateway.url("/readyz"), gateway.admin_url("/readyz")] {
        let readiness = gateway.client.get(url).send().await.unwrap();
        assert_eq!(readiness.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let counted = metric(
        &gateway,
        "xgate_exchanges_total{consumer=\"tax\",outcome=\"store_unavailable\",provider=\"market\",service=\"echo\"}",
    )
    .await;
    assert_eq!(counted, refused as f64);

    std::fs::remove_file(filler).unwrap();
    healed_without_traffic(&gateway).await;
    let readiness = gateway
        .client
        .get(gateway.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(readiness.status(), StatusCode::OK);
    for index in 305..325 {
        assert_eq!(call(&gateway, index).await, StatusCode::OK);
    }
    assert_eq!(unaudited(&gateway, &echo).await, 0);
    let verified = verify(&gateway).await;
    assert_eq!(verified["ok"], true, "{verified}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "mount",
    ignore = "needs root, mount and mkfs.ext4 (e2fsprogs)"
)]
async fn under_concurrency_the_exchanges_forwarded_when_the_disk_fills_still_get_their_entries() {
    let volume = Mounted::tmpfs("2m");
    let (echo, records) = (
        Upstream::echo().await,
        Upstream::fixed(StatusCode::OK, license()).await,
    );
    // docs/audit.md's bound: an exchange forwarded before the refusals began can reach its
    // provider without an entry only if the entries in flight need more than the reserve,
    // each commit taking at most a few WAL pages beside its entries. 32 callers have at most
    // 32 exchanges in flight; 512 KiB holds more than 32 commits of one entry each.
    const CALLERS: usize = 32;
    const RESERVE: u64 = 512 << 10;
    let gateway = Arc::new(gateway_on(&volume.dir, RESERVE, &echo, &records).await);
    let served = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let others = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (gateway, served, refused, others, stopping) = (
                gateway.clone(),
                served.clone(),
                refused.clone(),
                others.clone(),
                stopping.clone(),
            );
            tokio::spawn(async move {
                for index in 0.. {
                    if stopping.load(Ordering::Acquire) {
                        return;
                    }
                    match call(&gateway, caller * 100_000 + index).await {
                        StatusCode::OK => served.fetch_add(1, Ordering::AcqRel),
                        StatusCode::SERVICE_UNAVAILABLE => refused.fetch_add(1, Ordering::AcqRel),
                        other => {
                            others.lock().unwrap().insert(other.as_u16());
                            0
                        }
                    };
                }
            })
        })
        .collect();
    eventually("calls are served", DEADLINE, || async {
        served.load(Ordering::Acquire) >= 200
    })
    .await;
    let filler = fill_up(&volume.dir);
    let refused_before = refused.load(Ordering::Acquire);
    eventually("calls are refused", DEADLINE, || async {
        refused.load(Ordering::Acquire) >= refused_before + 500
    })
    .await;
    stopping.store(true, Ordering::Release);
    for caller in callers {
        caller.await.unwrap();
    }
    let missing = unaudited(&gateway, &echo).await;
    assert_eq!(
        missing,
        0,
        "calls reached the provider without an entry (other answers: {:?})",
        others.lock().unwrap()
    );
    assert!(
        others.lock().unwrap().is_empty(),
        "answers other than 200 and 503: {:?}",
        others.lock().unwrap()
    );
    std::fs::remove_file(filler).unwrap();
    healed_without_traffic(&gateway).await;
    assert_eq!(call(&gateway, 1).await, StatusCode::OK);
    let verified = verify(&gateway).await;
    assert_eq!(verified["ok"], true, "{verified}");
    Arc::try_unwrap(gateway)
        .ok()
        .expect("the callers are done")
        .stop()
        .await;
}

/// Size of a file in `dir` (0 when absent).
fn size(dir: &Path, name: &str) -> u64 {
    std::fs::metadata(dir.join(name)).map_or(0, |meta| meta.len())
}

/// Calls until the trail refuses one (the disk is full), at most `limit` calls; returns how
/// many were answered 200.
async fn serve_until_refused(gateway: &TestGateway, from: usize, limit: usize) -> usize {
    let mut served = 0;
    for index in from..from + limit {
        match call(gateway, index).await {
            StatusCode::OK => served += 1,
            // A call whose commit found the disk full is withheld (no reserve here: the window
            // docs/audit.md states).
            StatusCode::INTERNAL_SERVER_ERROR => {}
            StatusCode::SERVICE_UNAVAILABLE => return served,
            other => panic!("unexpected {other}"),
        }
    }
    panic!("the disk never filled in {limit} calls");
}

#[tokio::test]
#[cfg_attr(
    xgate_missing = "mount",
    ignore = "needs root, mount and mkfs.ext4 (e2fsprogs)"
)]
async fn a_wal_that_filled_the_volume_is_folded_back_once_space_returns_without_a_restart() {
    let volume = Mounted::tmpfs("2m");
    let (echo, records) = (
        Upstream::echo().await,
        Upstream::fixed(StatusCode::OK, license()).await,
    );
    // Something else on the volume, and no reserve: the trail's own WAL fills the rest.
    let other = volume.dir.join("other");
    std::fs::write(&other, vec![1u8; 384 << 10]).unwrap();
    let gateway = gateway_on(&volume.dir, 0, &echo, &records).await;
    let served = serve_until_refused(&gateway, 0, 5000).await;
    assert!(served > 0);

    std::fs::remove_file(&other).unwrap();
    healed_without_traffic(&gateway).await;
    // Far more calls than the 384 KiB freed would hold in WAL frames (a served call adds ~10
    // KiB to a WAL that is never checkpointed): the WAL was folded into the database.
    for index in 0..300 {
        assert_eq!(
            call(&gateway, 10_000 + index).await,
            StatusCode::OK,
            "call {index}"
        );
    }
    assert!(
        size(&volume.dir, "audit.db-wal") < 1 << 20,
        "the WAL was cut back: {}",
        size(&volume.dir, "audit.db-wal")
    );
    let verified = verify(&gateway).await;
    assert_eq!(verified["ok"], true, "{verified}");
    let entries = trail(&gateway).await;
    assert_eq!(verified["count"].as_u64().unwrap() as usize, entries.len());
    let ok = entries
        .iter()
        .filter(|entry| entry["status"] == 200)
        .count();
    assert_eq!(ok, served + 300, "every call answered 200 has its entry");
    gateway.stop().await;
}

#[tokio::test]
#[cfg_attr(
    xgate_missing = "mount",
    ignore = "needs root, mount and mkfs.ext4 (e2fsprogs)"
)]
async fn a_wal_that_filled_the_volume_is_folded_back_once_space_returns_after_a_restart() {
    let volume = Mounted::tmpfs("2m");
    let (echo, records) = (
        Upstream::echo().await,
        Upstream::fixed(StatusCode::OK, license()).await,
    );
    let other = volume.dir.join("other");
    std::fs::write(&other, vec![1u8; 384 << 10]).unwrap();
    let gateway = gateway_on(&volume.dir, 0, &echo, &records).await;
    serve_until_refused(&gateway, 0, 5000).await;
    // Stopped while the disk is full, started again once space is back.
    let stopped = gateway.stop_keeping().await;
    std::fs::remove_file(&other).unwrap();
    let gateway = stopped.start().await;
    for index in 0..300 {
        assert_eq!(
            call(&gateway, 10_000 + index).await,
            StatusCode::OK,
            "call {index}"
        );
    }
    let verified = verify(&gateway).await;
    assert_eq!(verified["ok"], true, "{verified}");
    gateway.stop().await;
}

/// Point 8: with `synchronous = "full"`, an answered exchange's entry is on the disk before its
/// answer leaves, so a power cut loses none. The ext4 file system under the trail is shut down as
/// a power cut would (nothing in the page cache or the journal flushed), then mounted again.
/// With the default `normal` the same run lost all 200 entries on the development VM (they were
/// in the WAL's page cache only): `normal` survives a killed gateway (SPEC §9), not a power cut,
/// and costs less (docs/audit.md).
#[tokio::test]
#[cfg_attr(
    xgate_missing = "mount",
    ignore = "needs root, mount and mkfs.ext4 (e2fsprogs)"
)]
async fn answered_entries_survive_a_power_cut_with_synchronous_full() {
    let volume = Mounted::ext4("64M");
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&echo, &records)
        .main(&format!(
            "[audit]\npath = {:?}\nreserve_bytes = 0\nsynchronous = \"full\"",
            volume.dir.join("audit.db").display().to_string()
        ))
        .start()
        .await;
    for index in 0..200 {
        assert_eq!(call(&gateway, index).await, StatusCode::OK);
    }

    volume.shut_down();
    let stopped = gateway.stop_keeping().await;
    volume.remount().await;

    let gateway = stopped.start().await;
    let answered = trail(&gateway)
        .await
        .iter()
        .filter(|entry| entry["service"] == "echo" && entry["status"] == 200)
        .count();
    assert_eq!(
        answered, 200,
        "answered exchanges whose entries the power cut took"
    );
    let verified = verify(&gateway).await;
    assert_eq!(verified["ok"], true, "{verified}");
    gateway.stop().await;
}
