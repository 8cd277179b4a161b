//! The audit trail end to end: entries of real exchanges in a real SQLite file, the auditor
//! routes and their roles, tampering caught by `xgate audit verify` and `/audit/verify`, an
//! unwritable trail refusing exchanges, and `kill -9` under load losing no answered exchange.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use http::StatusCode;
use reqwest::Method;
use rusqlite::Connection;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// GET on the admin plane as `department` (or without credentials).
async fn admin_get(
    gateway: &TestGateway,
    path: &str,
    department: Option<&str>,
) -> reqwest::Response {
    let mut request = gateway.client.get(gateway.admin_url(path));
    if let Some(department) = department {
        request = request.bearer_auth(token(department));
    }
    request.send().await.unwrap()
}

/// Every entry of a kind, following the `next` cursor.
async fn all_entries(client: &reqwest::Client, admin: &str, query: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let cursor = after
            .map(|after| format!("&after={after}"))
            .unwrap_or_default();
        let response = client
            .get(format!("{admin}/audit/exchanges?limit=1000{query}{cursor}"))
            .bearer_auth(token("auditor"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(next) => after = Some(next),
            None => return entries,
        }
    }
}

/// The database file and its WAL, as bytes: what is on disk, committed or not.
fn database_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let wal = path.with_extension("db-wal");
    if let Ok(more) = std::fs::read(wal) {
        bytes.extend(more);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn every_exchange_is_recorded_with_digests_and_never_bodies_tokens_ids_or_purposes() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let purpose = "case 2026-117 concerning 林志远";
    let body = serde_json::to_vec(&license()).unwrap();

    let registered = gateway
        .call(
            Method::POST,
            "/exchange/market/register/91350100M000100Y43",
            "tax",
        )
        .header("content-type", "application/json")
        .header("x-request-id", "audit-register-1")
        .header("xgate-purpose", purpose)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::OK);
    let registered_body = registered.bytes().await.unwrap();
    let read = gateway
        .call(
            Method::GET,
            "/exchange/market/licenses/11010519491231002X",
            "civil",
        )
        .header("x-request-id", "audit-read-1")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let read_body = read.bytes().await.unwrap();
    let streamed = gateway
        .call(Method::PUT, "/exchange/market/echo/x?secret=1", "tax")
        .header("x-request-id", "audit-stream-1")
        .body("streamed through unread")
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::OK);
    let unauthenticated = gateway
        .client
        .get(gateway.url("/exchange/market/echo/x"))
        .header("authorization", "Bearer token-of-nobody")
        .header("x-request-id", "audit-nobody-1")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let missing = gateway
        .call(Method::GET, "/exchange/market/nothing", "tax")
        .header("x-request-id", "audit-missing-1")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let response = admin_get(&gateway, "/audit/exchanges", Some("auditor")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["next"], Value::Null);
    let entries = page["entries"].as_array().unwrap();
    let ids: Vec<&str> = entries
        .iter()
        .map(|entry| entry["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "audit-missing-1",
            "audit-nobody-1",
            "audit-stream-1",
            "audit-read-1",
            "audit-register-1"
        ]
    );
    let sequences: Vec<u64> = entries
        .iter()
        .map(|entry| entry["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, [5, 4, 3, 2, 1], "newest first, numbered from 1");
    let by_id = |id: &str| {
        entries
            .iter()
            .find(|entry| entry["request_id"] == id)
            .unwrap_or_else(|| panic!("no entry for {id}"))
            .clone()
    };

    let register = by_id("audit-register-1");
    assert_eq!(register["kind"], "exchange");
    assert_eq!(register["consumer"], "tax");
    assert_eq!(register["provider"], "market");
    assert_eq!(register["service"], "register");
    assert_eq!(register["method"], "POST");
    assert_eq!(register["status"], 200);
    assert_eq!(register["outcome"], "ok");
    assert_eq!(register["request_bytes"], body.len());
    // Keyed under the trail's audit key (SPEC §15), never the plain SHA-256.
    assert_eq!(register["request_sha256"], gateway.keyed(&body));
    assert_ne!(register["request_sha256"], sha256_hex(&body));
    assert_eq!(register["response_bytes"], registered_body.len());
    assert_eq!(register["response_sha256"], gateway.keyed(&registered_body));
    assert_eq!(register["request_schema"], "license@1");
    assert_eq!(register["response_schema"], "license@1");
    assert_eq!(
        register["path_sha256"],
        gateway.keyed(b"/exchange/market/register/91350100M000100Y43")
    );
    assert_eq!(
        register["purpose_sha256"],
        gateway.keyed(purpose.as_bytes())
    );
    assert!(register["total_us"].as_u64().unwrap() >= register["upstream_us"].as_u64().unwrap());
    assert!(register["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(register["hash"].as_str().unwrap().len(), 64);

    let projected = by_id("audit-read-1");
    assert_eq!(projected["consumer"], "civil");
    assert_eq!(projected["response_sha256"], gateway.keyed(&read_body));
    assert_eq!(projected["purpose_sha256"], Value::Null);
    assert_eq!(projected["request_sha256"], Value::Null);

    let stream = by_id("audit-stream-1");
    assert_eq!(stream["request_bytes"], 23, "the declared length");
    assert_eq!(
        stream["request_sha256"],
        Value::Null,
        "not read, not hashed"
    );
    assert_eq!(
        stream["path_sha256"],
        gateway.keyed(b"/exchange/market/echo/x"),
        "without the query"
    );

    let nobody = by_id("audit-nobody-1");
    assert_eq!(nobody["consumer"], "unknown");
    assert_eq!(nobody["provider"], Value::Null);
    assert_eq!(nobody["status"], 401);
    assert_eq!(nobody["outcome"], "unauthenticated");
    let missing = by_id("audit-missing-1");
    assert_eq!(missing["outcome"], "not_found");
    assert_eq!(missing["consumer"], "tax");

    // The files as they are on disk (the folder goes when the gateway stops).
    let bytes = database_bytes(&gateway.audit_path());
    assert!(
        contains(&bytes, b"audit-register-1"),
        "the search itself works"
    );
    for secret in [
        token("tax"),
        token("civil"),
        "token-of-nobody".to_owned(),
        "林志远".to_owned(),
        "11010519491231002X".to_owned(),
        "91350100M000100Y43".to_owned(),
        "福州闽江数据科技有限公司".to_owned(),
        "case 2026-117".to_owned(),
        "streamed through".to_owned(),
        "secret=1".to_owned(),
    ] {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{secret:?} is in the audit database"
        );
    }
}

#[tokio::test]
async fn the_audit_routes_are_for_auditors_and_admins_only() {
    let (gateway, _echo, _records) = standard_gateway().await;
    for path in ["/audit/exchanges", "/audit/summary", "/audit/verify"] {
        let (status, body) = problem(admin_get(&gateway, path, None).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["type"], "urn:xgate:problem:unauthenticated");
        for department in ["tax", "outsider"] {
            let (status, _) = problem(admin_get(&gateway, path, Some(department)).await).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} as {department}");
        }
        for reader in ["auditor", "admin"] {
            let response = admin_get(&gateway, path, Some(reader)).await;
            assert_eq!(response.status(), StatusCode::OK, "{path} as {reader}");
        }
        // Not on the data plane.
        let response = gateway
            .call(Method::GET, path, "auditor")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "{path} on the data plane"
        );
    }
    // Refusals of the audit routes are not exchanges: nothing was recorded.
    let page: Value = admin_get(&gateway, "/audit/exchanges", Some("auditor"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page, json!({"entries": [], "next": null}));
}

#[tokio::test]
async fn filters_and_keyset_pages_find_exactly_the_matching_entries() {
    let (gateway, _echo, _records) = standard_gateway().await;
    for index in 0..7 {
        let department = if index % 2 == 0 { "tax" } else { "civil" };
        let response = gateway
            .call(
                Method::GET,
                &format!("/exchange/market/licenses/{index}"),
                department,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = gateway
        .call(Method::GET, "/exchange/market/echo/x", "civil")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Pages of two, newest first, without gaps or repeats.
    let mut seen = Vec::new();
    let mut after: Option<u64> = None;
    let mut pages = 0;
    loop {
        let cursor = after
            .map(|after| format!("&after={after}"))
            .unwrap_or_default();
        let page: Value = admin_get(
            &gateway,
            &format!("/audit/exchanges?limit=2{cursor}"),
            Some("admin"),
        )
        .await
        .json()
        .await
        .unwrap();
        pages += 1;
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 2);
        seen.extend(
            entries
                .iter()
                .map(|entry| entry["sequence"].as_u64().unwrap()),
        );
        match page["next"].as_u64() {
            Some(next) => {
                assert_eq!(Some(next), seen.last().copied());
                after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(seen, [8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(pages, 4);

    let count = |query: &'static str| {
        let gateway = &gateway;
        async move {
            let page: Value = admin_get(
                gateway,
                &format!("/audit/exchanges?{query}"),
                Some("auditor"),
            )
            .await
            .json()
            .await
            .unwrap();
            page["entries"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("consumer=tax").await, 4);
    assert_eq!(count("consumer=civil").await, 4);
    assert_eq!(count("consumer=civil&outcome=ok").await, 3);
    assert_eq!(
        count("outcome=forbidden&service=echo&provider=market").await,
        1
    );
    assert_eq!(count("provider=elsewhere").await, 0);
    assert_eq!(count("consumer=unknown").await, 0);
    assert_eq!(count("kind=certificate").await, 0);
    assert_eq!(
        count("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00%2B08:00").await,
        8
    );
    assert_eq!(count("since=2999-01-01T00:00:00Z").await, 0);
    assert_eq!(count("until=2000-01-01T00:00:00Z").await, 0);
    assert_eq!(count("after=3").await, 2);
}

#[tokio::test]
async fn hostile_query_parameters_are_refused_by_name_in_the_callers_language() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let cases = [
        ("/audit/exchanges?limit=0", "limit"),
        ("/audit/exchanges?limit=1001", "limit"),
        ("/audit/exchanges?limit=99999999999999999999", "limit"),
        ("/audit/exchanges?after=-1", "after"),
        ("/audit/exchanges?after=9223372036854775808", "after"),
        ("/audit/exchanges?after=1%20OR%201=1", "after"),
        (
            "/audit/exchanges?consumer=tax%27%20OR%20%271%27=%271",
            "consumer",
        ),
        (
            "/audit/exchanges?consumer=%E6%9E%97%E5%BF%97%E8%BF%9C",
            "consumer",
        ),
        ("/audit/exchanges?provider=..%2F..%2Fetc", "provider"),
        ("/audit/exchanges?service=%00", "service"),
        (
            "/audit/exchanges?outcome=ok%3B%20DROP%20TABLE%20audit_entries",
            "outcome",
        ),
        ("/audit/exchanges?kind=all", "kind"),
        ("/audit/exchanges?since=yesterday", "since"),
        ("/audit/exchanges?until=2026-02-30T00:00:00Z", "until"),
        (
            "/audit/exchanges?since=2026-02-02T00:00:00Z&until=2026-02-01T00:00:00Z",
            "until",
        ),
        ("/audit/exchanges?limit=1&limit=2", "limit"),
        ("/audit/exchanges?order=time", "query"),
        ("/audit/summary?consumer=tax", "query"),
        ("/audit/summary?since=%FF", "since"),
        ("/audit/verify?full=1", "query"),
    ];
    for (path, name) in cases {
        let (status, body) = problem(admin_get(&gateway, path, Some("auditor")).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            body["type"], "urn:xgate:problem:invalid-parameter",
            "{path}"
        );
        assert!(
            body["detail"].as_str().unwrap().contains(name),
            "{path}: {body}"
        );
    }
    let response = gateway
        .client
        .get(gateway.admin_url("/audit/exchanges?limit=0"))
        .bearer_auth(token("auditor"))
        .header("accept-language", "zh-CN")
        .send()
        .await
        .unwrap();
    let (_, body) = problem(response).await;
    assert_eq!(body["detail"], "参数 limit 的取值无效");
    // Nothing was dropped or changed by the hostile queries.
    let verified: Value = admin_get(&gateway, "/audit/verify", Some("auditor"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["ok"], true);
}

#[tokio::test]
async fn the_summary_is_the_exchange_matrix_with_outcomes_bytes_and_percentiles() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let mut civil_bytes = 0;
    for _ in 0..3 {
        let response = gateway
            .call(Method::GET, "/exchange/market/licenses/1", "civil")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        civil_bytes += response.bytes().await.unwrap().len() as u64;
    }
    for path in ["/exchange/market/licenses/1", "/exchange/market/echo/1"] {
        let response = gateway.call(Method::GET, path, "tax").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = gateway
        .call(Method::GET, "/exchange/market/echo/1", "civil")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = gateway
        .client
        .get(gateway.url("/exchange/market/echo/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let summary: Value = admin_get(&gateway, "/audit/summary", Some("auditor"))
        .await
        .json()
        .await
        .unwrap();
    let matrix = summary["matrix"].as_array().unwrap();
    let cell = |consumer: &str, service: Option<&str>| {
        matrix
            .iter()
            .find(|cell| cell["consumer"] == consumer && cell["service"].as_str() == service)
            .unwrap_or_else(|| panic!("no cell {consumer} → {service:?} in {summary}"))
            .clone()
    };
    assert_eq!(matrix.len(), 5, "{summary}");
    let civil_licenses = cell("civil", Some("licenses"));
    assert_eq!(civil_licenses["provider"], "market");
    assert_eq!(civil_licenses["count"], 3);
    assert_eq!(civil_licenses["outcomes"], json!({"ok": 3}));
    assert_eq!(civil_licenses["response_bytes"], civil_bytes);
    let (p50, p99) = (
        civil_licenses["p50_ms"].as_f64().unwrap(),
        civil_licenses["p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{civil_licenses}");
    assert_eq!(
        cell("civil", Some("echo"))["outcomes"],
        json!({"forbidden": 1})
    );
    assert_eq!(cell("tax", Some("licenses"))["count"], 1);
    assert_eq!(cell("tax", Some("echo"))["count"], 1);
    let unknown = cell("unknown", None);
    assert_eq!(unknown["outcomes"], json!({"unauthenticated": 1}));
    assert_eq!(unknown["provider"], Value::Null);

    let later: Value = admin_get(
        &gateway,
        "/audit/summary?since=2999-01-01T00:00:00Z",
        Some("admin"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(later["matrix"], json!([]));
    assert_eq!(later["since"], "2999-01-01T00:00:00.000Z");
}

/// The markers around the table of encoding versions in `crates/xgate-audit/FORMAT.md`.
const FORMAT_VERSIONS_BEGIN: &str = "<!-- encoding-versions: begin -->";
const FORMAT_VERSIONS_END: &str = "<!-- encoding-versions: end -->";

/// One encoding version as FORMAT.md specifies it.
struct DocumentedVersion {
    /// The bytes the encoding starts with (`xgate-audit-v1`).
    prefix: String,
    /// The fields it adds after the fields of the version before, in order.
    adds: Vec<String>,
}

/// The encoding versions as `crates/xgate-audit/FORMAT.md` specifies them, oldest first, read
/// from its table between the two markers when the test runs (not the crate's list), so the
/// specification and this test cannot drift apart.
fn format_md_versions() -> Vec<DocumentedVersion> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/xgate-audit/FORMAT.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let start = text
        .find(FORMAT_VERSIONS_BEGIN)
        .unwrap_or_else(|| panic!("FORMAT.md has no {FORMAT_VERSIONS_BEGIN}"))
        + FORMAT_VERSIONS_BEGIN.len();
    let end = start
        + text[start..]
            .find(FORMAT_VERSIONS_END)
            .unwrap_or_else(|| panic!("FORMAT.md has no {FORMAT_VERSIONS_END}"));
    let code = |cell: &str| -> String {
        let cell = cell.trim();
        cell.strip_prefix('`')
            .and_then(|inner| inner.strip_suffix('`'))
            .unwrap_or_else(|| panic!("FORMAT.md: {cell:?} is not one `name`"))
            .to_owned()
    };
    let rows: Vec<&str> = text[start..end]
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    assert!(
        rows.len() > 2 && rows[0].starts_with("| version |") && rows[1].starts_with("| --- |"),
        "FORMAT.md: the table between the markers starts with its head: {rows:?}"
    );
    let mut versions = Vec::new();
    for row in &rows[2..] {
        let cells: Vec<&str> = row.trim_matches('|').split('|').collect();
        assert_eq!(cells.len(), 3, "FORMAT.md: version | prefix | adds: {row}");
        assert_eq!(
            cells[0].trim(),
            (versions.len() + 1).to_string(),
            "FORMAT.md: versions 1, 2, ... in order: {row}"
        );
        versions.push(DocumentedVersion {
            prefix: code(cells[1]),
            adds: cells[2].split(',').map(code).collect(),
        });
    }
    versions
}

/// The canonical encoding as `crates/xgate-audit/FORMAT.md` defines it, written independently of
/// the gateway's: the version's prefix, then the fields of every version up to the entry's.
fn documented_canonical(versions: &[DocumentedVersion], entry: &Value) -> Vec<u8> {
    let version = entry["version"]
        .as_u64()
        .expect("every entry names its version");
    assert!((1..=4).contains(&version), "{entry}");
    let upto = versions
        .get(..version as usize)
        .unwrap_or_else(|| panic!("FORMAT.md does not specify version {version}"));
    let mut out = upto[upto.len() - 1].prefix.clone().into_bytes();
    for field in upto.iter().flat_map(|documented| &documented.adds) {
        let text = match &entry[field.as_str()] {
            Value::Null => {
                out.push(0);
                continue;
            }
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        out.push(1);
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out
}

/// Recomputes the chain of `entries` (oldest first) from `crates/xgate-audit/FORMAT.md`'s
/// description and checks every stored hash; returns the head.
fn recompute_chain(hash: &str, entries: &[Value]) -> Vec<u8> {
    let versions = format_md_versions();
    let mut previous = [0u8; 32].to_vec();
    for entry in entries {
        let mut input = previous.clone();
        input.extend(documented_canonical(&versions, entry));
        let digest: Vec<u8> = match hash {
            "sm3" => sm3::Sm3::digest(&input).to_vec(),
            _ => Sha256::digest(&input).to_vec(),
        };
        assert_eq!(entry["hash"], hex::encode(&digest), "{hash}: {entry}");
        previous = digest;
    }
    previous
}

#[tokio::test]
async fn an_auditor_can_recompute_the_chain_from_the_documented_encoding_with_sha256_and_sm3() {
    for hash in ["sha256", "sm3"] {
        let echo = Upstream::echo().await;
        let records = Upstream::fixed(StatusCode::OK, license()).await;
        let gateway = standard(&echo, &records)
            .main(&format!("[audit]\nhash = \"{hash}\""))
            .start()
            .await;
        for path in [
            "/exchange/market/licenses/1",
            "/exchange/market/echo/1",
            "/exchange/x/y",
        ] {
            gateway.call(Method::GET, path, "tax").send().await.unwrap();
        }
        let verified: Value = admin_get(&gateway, "/audit/verify", Some("auditor"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(verified["ok"], true, "{hash}: {verified}");
        assert_eq!(verified["count"], 3);
        assert_eq!(verified["broken"], Value::Null);
        let mut entries =
            all_entries(&gateway.client, &format!("http://{}", gateway.admin), "").await;
        entries.reverse();
        assert!(entries.iter().all(|entry| entry["version"] == 4));
        // Version 3 names the gateway that committed the entry (`[gateway] instance`).
        assert!(
            entries.iter().all(|entry| entry["gateway"]
                .as_str()
                .is_some_and(|name| !name.is_empty())),
            "{entries:?}"
        );
        let head = recompute_chain(hash, &entries);
        assert_eq!(verified["head"], hex::encode(&head));
        gateway.stop().await;
    }
}

/// A trail written by the gateway before exchange ids (encoding version 1): 25 entries of
/// exchanges and certificate lookups, dumped with `sqlite3 .dump` from a real gateway's file.
const TRAIL_V1: &str = include_str!("../fixtures/audit-v1.sql");

#[tokio::test]
async fn a_trail_of_version_1_entries_verifies_after_the_upgrade_and_its_chain_runs_on_in_version_2()
 {
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let config = standard(&echo, &records);
    let database = config.path("data/audit.db");
    std::fs::create_dir_all(database.parent().unwrap()).unwrap();
    Connection::open(&database)
        .unwrap()
        .execute_batch(TRAIL_V1)
        .unwrap();
    config.write_main();
    let (code, text) = verify_command(&config.main_path());
    assert_eq!(
        code,
        Some(0),
        "the upgraded command verifies the old file: {text}"
    );
    assert!(text.contains("ok, 25 entries"), "{text}");

    let gateway = config.start().await;
    for index in 0..3 {
        let response = gateway
            .call(
                Method::GET,
                &format!("/exchange/market/echo/{index}"),
                "tax",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let verified: Value = admin_get(&gateway, "/audit/verify", Some("auditor"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["count"], 28);
    let mut entries = all_entries(&gateway.client, &format!("http://{}", gateway.admin), "").await;
    let mut certificates = all_entries(
        &gateway.client,
        &format!("http://{}", gateway.admin),
        "&kind=certificate",
    )
    .await;
    entries.append(&mut certificates);
    entries.sort_by_key(|entry| entry["sequence"].as_u64().unwrap());
    assert_eq!(entries.len(), 28);
    for entry in &entries[..25] {
        assert_eq!(entry["version"], 1, "{entry}");
        assert_eq!(entry["exchange_id"], Value::Null, "{entry}");
        assert_eq!(entry["gateway"], Value::Null, "{entry}");
    }
    for entry in &entries[25..] {
        assert_eq!(entry["version"], 4, "{entry}");
        assert!(entry["exchange_id"].is_string(), "{entry}");
        assert!(entry["gateway"].is_string(), "{entry}");
    }
    let head = recompute_chain("sha256", &entries);
    assert_eq!(verified["head"], hex::encode(&head));
    // The view an auditor queries with any SQLite client names both versions' fields.
    let versions: Vec<(u64, Option<String>)> = Connection::open(gateway.audit_path())
        .unwrap()
        .prepare("SELECT version, exchange_id FROM audit_entries ORDER BY sequence")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions.len(), 28);
    assert!(versions[..25].iter().all(|(v, id)| *v == 1 && id.is_none()));
    assert!(versions[25..].iter().all(|(v, id)| *v == 4 && id.is_some()));
    gateway.stop().await;
}

#[tokio::test]
async fn a_trail_chained_with_one_hash_is_not_continued_with_another() {
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&echo, &records).start().await;
    gateway
        .call(Method::GET, "/exchange/market/echo/1", "tax")
        .send()
        .await
        .unwrap();
    // A second gateway on the same file (the first keeps it, and its folder, alive).
    let config = on_audit_file(&gateway.audit_path(), "sm3");
    config.write_main();
    let (loaded, registry) = xgate::config::load(&config.main_path(), &Default::default()).unwrap();
    let refused = xgate::gateway::Gateway::new(loaded, registry)
        .err()
        .expect("refused");
    assert!(
        format!("{refused:#}").contains("chained with sha256"),
        "{refused:#}"
    );
    // `xgate audit verify` with the other hash says so rather than calling every entry broken.
    let (code, text) = verify_command(&config.main_path());
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("chained with sha256"), "{text}");
    gateway.stop().await;
}

/// The stored block holding entry `sequence`: its first sequence number and its entries.
fn block_of(database: &Connection, sequence: u64) -> (u64, Vec<Value>) {
    let (first, entries): (u64, String) = database
        .query_row(
            "SELECT first_sequence, entries FROM audit_blocks \
             WHERE first_sequence <= ?1 AND last_sequence >= ?1",
            [sequence],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    (first, serde_json::from_str(&entries).unwrap())
}

/// Entry `sequence` as stored: the JSON array of its fields.
fn stored_entry(database: &Connection, sequence: u64) -> Value {
    let (first, entries) = block_of(database, sequence);
    entries[(sequence - first) as usize].clone()
}

/// Rewrites the entries of the block holding entry `sequence`; `edit` gets them and the
/// entry's position among them.
fn edit_entries(database: &Connection, sequence: u64, edit: impl FnOnce(&mut Vec<Value>, usize)) {
    let (first, mut entries) = block_of(database, sequence);
    edit(&mut entries, (sequence - first) as usize);
    database
        .execute(
            "UPDATE audit_blocks SET entries = ?1 WHERE first_sequence = ?2",
            rusqlite::params![Value::Array(entries).to_string(), first],
        )
        .unwrap();
}

/// Runs `xgate audit verify --config FILE`.
fn verify_command(config: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xgate"))
        .args(["audit", "verify", "--config"])
        .arg(config)
        .env_remove("XGATE_CONFIG")
        .output()
        .expect("xgate runs");
    let mut text = String::from_utf8(output.stdout).unwrap();
    text.push_str(&String::from_utf8(output.stderr).unwrap());
    (output.status.code(), text)
}

#[tokio::test]
async fn every_edit_of_the_database_file_is_caught_by_the_command_and_the_route() {
    let (gateway, _echo, _records) = standard_gateway().await;
    for index in 0..6 {
        let response = gateway
            .call(
                Method::GET,
                &format!("/exchange/market/licenses/{index}"),
                "tax",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let original = gateway.audit_path();
    let scratch = tempfile::tempdir().unwrap();
    let pristine = scratch.path().join("pristine.db");
    Connection::open(&original)
        .unwrap()
        .execute("VACUUM INTO ?1", [pristine.to_str().unwrap()])
        .unwrap();
    // The trail's audit key goes with it: a gateway with another key refuses the file.
    let key = std::fs::read(original.with_file_name("audit.key")).unwrap();
    gateway.stop().await;

    let config = ConfigDir::new().department("auditor", "auditor", "");
    config.write_main();
    let database = config.path("data/audit.db");
    std::fs::create_dir_all(database.parent().unwrap()).unwrap();
    std::fs::write(config.path("data/audit.key"), key).unwrap();

    std::fs::copy(&pristine, &database).unwrap();
    let (code, text) = verify_command(&config.main_path());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok, 6 entries"), "{text}");

    // Each edit works on the stored blocks (`audit_blocks`: one row per committed batch, its
    // entries a JSON array of field arrays) the way someone with the file and a SQLite client
    // would, keeping the JSON well-formed; `expected` is the entry reported broken.
    type Edit = fn(&Connection);
    let edits: [(&str, Edit, u64); 8] = [
        (
            "change a field",
            |database| {
                edit_entries(database, 3, |entries, at| {
                    entries[at][11] = json!("forbidden")
                })
            },
            3,
        ),
        (
            "change a number's type",
            |database| {
                edit_entries(database, 2, |entries, at| {
                    entries[at][10] = json!("two hundred")
                })
            },
            2,
        ),
        (
            "delete an entry",
            |database| {
                edit_entries(database, 4, |entries, at| {
                    entries.remove(at);
                });
                database
                    .execute("DELETE FROM audit_blocks WHERE entries = '[]'", [])
                    .unwrap();
            },
            5,
        ),
        (
            "insert an entry",
            |database| {
                edit_entries(database, 6, |entries, at| {
                    let mut forged = entries[at].clone();
                    forged[0] = json!(7);
                    forged[3] = json!("forged");
                    entries.push(forged);
                })
            },
            7,
        ),
        (
            "insert an entry in the middle",
            |database| {
                let mut forged = stored_entry(database, 2);
                forged[0] = json!(3);
                forged[3] = json!("forged");
                edit_entries(database, 3, |entries, at| entries.insert(at, forged))
            },
            3,
        ),
        (
            "move a block out of a time window",
            |database| {
                database
                    .execute(
                        "UPDATE audit_blocks SET min_time = '2999-01-01T00:00:00.000Z' \
                         WHERE first_sequence <= 4 AND last_sequence >= 4",
                        [],
                    )
                    .unwrap();
            },
            0,
        ),
        (
            "replace a block's entries with something else",
            |database| {
                database
                    .execute(
                        "UPDATE audit_blocks SET entries = 'shredded' \
                         WHERE first_sequence <= 4 AND last_sequence >= 4",
                        [],
                    )
                    .unwrap();
            },
            0,
        ),
        (
            "swap two entries",
            |database| {
                let (mut second, mut fifth) =
                    (stored_entry(database, 2), stored_entry(database, 5));
                (second[0], fifth[0]) = (json!(5), json!(2));
                edit_entries(database, 2, |entries, at| entries[at] = fifth);
                edit_entries(database, 5, |entries, at| entries[at] = second);
            },
            2,
        ),
    ];
    for (name, edit, broken) in edits {
        std::fs::remove_file(&database).unwrap();
        std::fs::copy(&pristine, &database).unwrap();
        let connection = Connection::open(&database).unwrap();
        // 0: the first entry of the block holding entry 4 (how the batches fell is the
        // writer's business).
        let broken = match broken {
            0 => connection
                .query_row(
                    "SELECT first_sequence FROM audit_blocks \
                     WHERE first_sequence <= 4 AND last_sequence >= 4",
                    [],
                    |row| row.get(0),
                )
                .unwrap(),
            broken => broken,
        };
        edit(&connection);
        drop(connection);
        let (code, text) = verify_command(&config.main_path());
        assert_eq!(code, Some(1), "{name}: {text}");
        assert!(
            text.contains(&format!("broken at entry {broken}:")),
            "{name}: {text}"
        );
    }

    // The route reports the same, on a gateway serving the last edited file (two entries swapped).
    let served = ConfigDir::new()
        .department("auditor", "auditor", "")
        .main(&format!(
            "[audit]\npath = {:?}",
            database.display().to_string()
        ));
    let gateway = served.start().await;
    let report: Value = admin_get(&gateway, "/audit/verify", Some("auditor"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["count"], 1);
    assert_eq!(report["broken"]["sequence"], 2);
    assert!(
        report["broken"]["reason"]
            .as_str()
            .unwrap()
            .contains("hash")
    );
    gateway.stop().await;

    // A missing trail is an error (exit 2), not an empty chain, and is not created.
    std::fs::remove_file(&database).unwrap();
    let (code, text) = verify_command(&config.main_path());
    assert_eq!(code, Some(2), "{text}");
    assert!(!database.exists());
}

#[tokio::test]
async fn an_exchange_that_cannot_be_audited_is_refused_and_the_trail_heals() {
    let (gateway, echo, _records) = standard_gateway().await;
    let database = Connection::open(gateway.audit_path()).unwrap();
    database
        .busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    database
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_blocks \
             BEGIN SELECT RAISE(ABORT, 'the disk is full'); END;",
        )
        .unwrap();
    let response = gateway
        .call(Method::GET, "/exchange/market/echo/1", "tax")
        .header("x-request-id", "unaudited-1")
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["type"], "urn:xgate:problem:internal");
    assert!(
        !body.to_string().contains("disk"),
        "nothing internal: {body}"
    );
    assert_eq!(
        echo.call_count(),
        1,
        "the provider was called; its answer was withheld"
    );

    database.execute_batch("DROP TRIGGER refuse;").unwrap();
    // Until the writer's probe finds the trail committing again, calls are refused before they
    // are forwarded (503, no entry); then they are served.
    let status = eventually(
        "the trail heals",
        std::time::Duration::from_secs(30),
        || async {
            let response = gateway
                .call(Method::GET, "/exchange/market/echo/2", "tax")
                .header("x-request-id", "audited-2")
                .send()
                .await
                .unwrap();
            match response.status() {
                StatusCode::SERVICE_UNAVAILABLE => None,
                status => Some(status),
            }
        },
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let entries = all_entries(&gateway.client, &format!("http://{}", gateway.admin), "").await;
    let ids: Vec<&str> = entries
        .iter()
        .map(|entry| entry["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["audited-2"]);
    assert_eq!(entries[0]["sequence"], 1, "the failed batch left no gap");
}

/// Makes every write to the trail fail from another connection (the writer's batches and its
/// probes alike) until [`Unwritable::heal`]: a fault SQLite reports like a full disk's, without
/// needing one.
struct Unwritable(Connection);

impl Unwritable {
    fn make(path: &Path) -> Unwritable {
        let database = Connection::open(path).unwrap();
        database
            .busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        database
            .execute_batch(
                "CREATE TRIGGER refuse_blocks BEFORE INSERT ON audit_blocks \
                 BEGIN SELECT RAISE(ABORT, 'the disk is full'); END; \
                 CREATE TRIGGER refuse_probes BEFORE UPDATE ON audit_meta \
                 BEGIN SELECT RAISE(ABORT, 'the disk is full'); END;",
            )
            .unwrap();
        Unwritable(database)
    }

    fn heal(self) {
        self.0
            .execute_batch("DROP TRIGGER refuse_blocks; DROP TRIGGER refuse_probes;")
            .unwrap();
    }
}

#[tokio::test]
async fn while_the_trail_cannot_commit_no_exchange_is_forwarded_and_no_lookup_answered_even_from_the_cache()
 {
    let issuer = Upstream::fixed(
        StatusCode::OK,
        json!({"uscc": "91350100M000100Y43", "name": "甲", "status": "active"}),
    )
    .await;
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&echo, &records)
        .department(
            "issuer",
            "department",
            &format!(
                "[certificates.licence]\nlookup = \"{}\"\nschema = \"license\"\nid_format = \"cn-uscc\"\nconsumers = [\"tax\"]\n",
                issuer.url("/certs/{id}")
            ),
        )
        .start()
        .await;
    let look_up = || {
        gateway
            .call(
                Method::GET,
                "/certificates/licence/91350100M000100Y43",
                "tax",
            )
            .header("xgate-purpose", "account opening")
            .send()
    };
    assert_eq!(look_up().await.unwrap().status(), StatusCode::OK);
    assert_eq!(issuer.call_count(), 1);

    let unwritable = Unwritable::make(&gateway.audit_path());
    // The call that finds out: it was forwarded before the first commit failed, and its answer
    // is withheld (the window docs/audit.md states).
    let first = gateway
        .call(Method::GET, "/exchange/market/echo/1", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(echo.call_count(), 1);
    // From then on nothing is forwarded: refused before the provider, with Retry-After.
    for index in 2..12 {
        let response = gateway
            .call(
                Method::GET,
                &format!("/exchange/market/echo/{index}"),
                "tax",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["retry-after"], "1");
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["type"], "urn:xgate:problem:store-unavailable");
    }
    // Refusals of other kinds are 503 too while nothing can be recorded.
    let unknown = gateway
        .client
        .get(gateway.url("/exchange/market/echo/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(echo.call_count(), 1, "nothing more reached the provider");
    // A certificate in the cache is not given either, and the issuer is not asked.
    let refused = look_up().await.unwrap();
    assert!(
        refused.headers().get("xgate-cache").is_none(),
        "not from the cache"
    );
    let (status, body) = problem(refused).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["type"], "urn:xgate:problem:store-unavailable");
    assert_eq!(issuer.call_count(), 1);
    let metrics = metrics_text(&gateway).await;
    for series in [
        "xgate_exchanges_total{consumer=\"tax\",outcome=\"store_unavailable\",provider=\"market\",service=\"echo\"} 10",
        "xgate_certificate_lookups_total{consumer=\"tax\",result=\"store_unavailable\",type=\"licence\"} 1",
        "xgate_audit_store_unavailable 1",
    ] {
        assert!(
            metrics.lines().any(|line| line == series),
            "{series} in:\n{metrics}"
        );
    }

    // Healed: the writer notices by itself (no call needed) and everything is served again.
    unwritable.heal();
    eventually(
        "the trail heals by itself",
        std::time::Duration::from_secs(30),
        || async {
            metrics_text(&gateway)
                .await
                .lines()
                .any(|line| line == "xgate_audit_store_unavailable 0")
                .then_some(())
        },
    )
    .await;
    let served = look_up().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["xgate-cache"], "hit");
    let response = gateway
        .call(Method::GET, "/exchange/market/echo/12", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let verified: Value = admin_get(&gateway, "/audit/verify", Some("auditor"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["ok"], true, "{verified}");
    // The first lookup, the one after healing and the exchange: the refusals left no entry.
    assert_eq!(verified["count"], 3, "{verified}");
    gateway.stop().await;
}

/// The standard gateway whose `echo` provider holds every answer until `release` is notified
/// (once per held answer): the provider, the release, the records upstream, the gateway.
async fn held_provider_gateway() -> (
    Upstream,
    std::sync::Arc<tokio::sync::Notify>,
    Upstream,
    TestGateway,
) {
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let waiting = release.clone();
    let slow = Upstream::start(axum::Router::new().fallback(move || {
        let waiting = waiting.clone();
        async move {
            waiting.notified().await;
            "late"
        }
    }))
    .await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&slow, &records).start().await;
    (slow, release, records, gateway)
}

/// A client that gives up after 200 ms.
fn hasty_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_millis(200))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_caller_that_hangs_up_mid_exchange_still_leaves_its_entry() {
    // The provider answers only when told to, after the caller has gone.
    let (slow, release, _records, gateway) = held_provider_gateway().await;
    let hasty = hasty_client();
    let gone = hasty
        .get(gateway.url("/exchange/market/echo/1"))
        .bearer_auth(token("tax"))
        .header("x-request-id", "hung-up-1")
        .send()
        .await;
    assert!(gone.is_err(), "the caller gave up");
    drop(hasty);
    // Once the provider was reached, let it answer.
    eventually(
        "the provider is called",
        std::time::Duration::from_secs(30),
        || async { slow.call_count() > 0 },
    )
    .await;
    release.notify_one();
    let admin = format!("http://{}", gateway.admin);
    let entry = eventually(
        "the exchange of a caller that hung up is recorded",
        std::time::Duration::from_secs(30),
        || async {
            let entries = all_entries(&gateway.client, &admin, "").await;
            entries
                .into_iter()
                .find(|entry| entry["request_id"] == "hung-up-1")
        },
    )
    .await;
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["outcome"], "ok");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_answered_exchange_and_the_chain_verifies() {
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let config = standard(&echo, &records);
    config.write_main();
    let client = client();
    let mut answered: BTreeSet<String> = BTreeSet::new();
    // Three crashes, each at the moment an answer arrives, while seven more are on their way.
    for cycle in 0..3 {
        let (mut child, data, _admin) = start_binary_planes(&config, &client).await;
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
        let callers: Vec<_> = (0..8)
            .map(|caller| {
                let client = client.clone();
                let data = data.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    for index in 0.. {
                        let id = format!("crash-{cycle}-{caller}-{index}");
                        let (path, department) = if index % 3 == 0 {
                            ("/exchange/market/licenses/1", "civil")
                        } else {
                            ("/exchange/market/echo/1", "tax")
                        };
                        let response = client
                            .get(format!("{data}{path}"))
                            .bearer_auth(token(department))
                            .header("x-request-id", &id)
                            .send()
                            .await;
                        // An answer is its status line and headers: from then on it counts.
                        let Ok(response) = response else { return };
                        assert_eq!(response.headers()["x-request-id"], id.as_str());
                        if sender.send(id).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        drop(sender);
        while answered.len() < 150 * (cycle + 1) {
            answered.insert(receiver.recv().await.expect("exchanges are answered"));
        }
        // `Child::kill` is SIGKILL on Unix: no handler runs, nothing is flushed.
        child.0.kill().expect("SIGKILL");
        child.0.wait().unwrap();
        for caller in callers {
            caller.await.unwrap();
        }
        while let Ok(id) = receiver.try_recv() {
            answered.insert(id);
        }
    }
    let (code, text) = verify_command(&config.main_path());
    assert_eq!(code, Some(0), "{text}");
    let (_child, _data, admin) = start_binary_planes(&config, &client).await;
    let verified: Value = client
        .get(format!("{admin}/audit/verify"))
        .bearer_auth(token("auditor"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verified["ok"], true, "{verified}");
    let recorded: BTreeSet<String> = all_entries(&client, &admin, "")
        .await
        .iter()
        .map(|entry| entry["request_id"].as_str().unwrap().to_owned())
        .collect();
    let missing: Vec<&String> = answered.difference(&recorded).collect();
    assert!(
        missing.is_empty(),
        "answered but not in the trail: {missing:?}"
    );
    assert_eq!(verified["count"].as_u64().unwrap() as usize, recorded.len());
}

/// Holds SQLite's write lock on the audit database from another connection until dropped: the
/// gateway's writer waits for it (up to its 5 s busy timeout) and entries pile up in the queue.
struct WriteLock(Connection);

impl WriteLock {
    fn take(path: &Path) -> WriteLock {
        let connection = Connection::open(path).unwrap();
        connection.execute_batch("BEGIN IMMEDIATE").unwrap();
        WriteLock(connection)
    }

    fn release(self) {
        self.0.execute_batch("COMMIT").unwrap();
    }
}

/// Runs `future`, counting in `polled` once it has been polled the first time.
async fn counting_first_poll<F: std::future::Future>(
    future: F,
    polled: &std::sync::atomic::AtomicUsize,
) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut first = true;
    std::future::poll_fn(|context| {
        let poll = future.as_mut().poll(context);
        if std::mem::take(&mut first) {
            polled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        poll
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_callers_wait_and_drops_nothing() {
    use xgate::config::{AuditHash, AuditSettings, AuditSync};
    use xgate_audit::{AuditEntry, AuditTrail, EntryKind, QUEUE_CAPACITY};

    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("audit.db");
    let settings = AuditSettings {
        path: path.clone(),
        hash: AuditHash::Sha256,
        synchronous: AuditSync::Normal,
        reserve_bytes: 0,
        key_file: folder.path().join("audit.key"),
    };
    let metrics = xgate::metrics::Metrics::new().unwrap().audit();
    let committed = metrics.entries.clone();
    let key = xgate_audit::AuditKey::load_or_create(&settings.key_file, settings.hash).unwrap();
    let trail =
        std::sync::Arc::new(AuditTrail::open(&settings, key, "gw-1", Box::new(metrics)).unwrap());
    let lock = WriteLock::take(&path);

    // More callers than the queue holds, while the writer cannot commit. Each counts when its
    // append has been polled once: from then on its entry is in the queue (or the writer's
    // hands), or it waits for room.
    let callers = QUEUE_CAPACITY + 1500;
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tried = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let caller = |n: usize| {
        let trail = trail.clone();
        let answered = answered.clone();
        let tried = tried.clone();
        tokio::spawn(async move {
            let entry = AuditEntry {
                time: xgate_audit::now(),
                kind: EntryKind::Exchange,
                request_id: format!("queued-{n}"),
                exchange_id: Some(format!("exchange-{n}")),
                consumer: "tax".to_owned(),
                provider: None,
                service: None,
                method: "GET".to_owned(),
                path_sha256: None,
                purpose_sha256: None,
                purpose: None,
                status: 200,
                outcome: "ok".to_owned(),
                request_bytes: None,
                response_bytes: None,
                request_sha256: None,
                response_sha256: None,
                request_schema: None,
                response_schema: None,
                subject_sha256: None,
                total_us: 1,
                upstream_us: None,
            };
            let sequence = counting_first_poll(trail.append(entry), &tried).await;
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            sequence
        })
    };
    // The first caller's entry leaves the queue: the writer holds it, waiting for the lock, so
    // a caller answered before its commit would be answered from now on.
    let mut tasks = Vec::with_capacity(callers);
    tasks.push(caller(0));
    eventually(
        "the writer takes the first entry",
        std::time::Duration::from_secs(30),
        || async { tried.load(std::sync::atomic::Ordering::SeqCst) == 1 && trail.queued() == 0 },
    )
    .await;
    tasks.extend((1..callers).map(caller));
    // Once every caller has tried to enter the queue, it is full, and not past its bound: the
    // remaining callers wait for room.
    eventually(
        "every caller tries to enter the queue",
        std::time::Duration::from_secs(30),
        || async { tried.load(std::sync::atomic::Ordering::SeqCst) == callers },
    )
    .await;
    assert!(
        trail.queued() >= QUEUE_CAPACITY,
        "the queue is not full while callers wait"
    );
    assert_eq!(
        trail.queued(),
        QUEUE_CAPACITY,
        "the queue grew past its bound"
    );
    assert_eq!(
        answered.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a caller was answered before its entry was committed"
    );

    lock.release();
    let mut sequences = Vec::with_capacity(callers);
    for task in tasks {
        sequences.push(task.await.unwrap().expect("committed"));
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=callers as u64).collect::<Vec<_>>());
    assert_eq!(committed.get(), callers as u64);
    let verification = trail.verify().await.unwrap();
    assert!(verification.ok);
    assert_eq!(verification.count, callers as u64);
}

#[tokio::test]
async fn a_clean_shutdown_waits_for_every_exchange_and_commits_its_entry() {
    // The provider answers only when told to; the callers hang up before it does, so their
    // exchanges belong to no connection when the shutdown starts.
    let (slow, release, _records, gateway) = held_provider_gateway().await;
    let path = gateway.audit_path();
    let hasty = hasty_client();
    let calls = (0..20).map(|n| {
        hasty
            .get(gateway.url(&format!("/exchange/market/echo/{n}")))
            .bearer_auth(token("tax"))
            .header("x-request-id", format!("drained-{n}"))
            .send()
    });
    for result in futures_util::future::join_all(calls).await {
        assert!(
            result.is_err(),
            "a caller was answered while the provider held its answer"
        );
    }
    eventually(
        "every exchange reached the provider",
        std::time::Duration::from_secs(30),
        || async { slow.call_count() == 20 },
    )
    .await;

    // A restart: a clean shutdown, then a new gateway over the same folder (whose database the
    // test reads; the stopped one's folder would be gone with it).
    let state = gateway.gateway.clone();
    let stopping = tokio::spawn(gateway.stop_keeping());
    // The shutdown has drained the connections and takes no more exchanges; all twenty run.
    eventually(
        "the shutdown comes to the running exchanges",
        std::time::Duration::from_secs(30),
        || async { state.tasks.is_closed() && state.tasks.len() == 20 },
    )
    .await;
    // Held answers are released one per notification. Nineteen end, each committing its entry
    // after the shutdown came to them, and it still waits for the last.
    for _ in 0..19 {
        release.notify_one();
    }
    eventually(
        "nineteen exchanges end",
        std::time::Duration::from_secs(30),
        || async { state.tasks.len() == 1 },
    )
    .await;
    assert!(
        !stopping.is_finished(),
        "the shutdown did not wait for the running exchanges"
    );
    release.notify_one();
    let stopped = stopping.await.unwrap();
    drop(state);
    let restarted = stopped.start().await;
    assert_eq!(path, restarted.audit_path());

    let connection = Connection::open(&path).unwrap();
    let drained: i64 = connection
        .query_row(
            "SELECT count(*) FROM audit_entries WHERE request_id LIKE 'drained-%' AND status = 200",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(drained, 20);
    let verification = restarted.gateway.audit.verify().await.unwrap();
    assert!(verification.ok);
    assert_eq!(verification.count, 20);
    restarted.stop().await;
}

#[tokio::test]
async fn with_synchronous_full_exchanges_are_recorded_the_same_way() {
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&echo, &records)
        .main("[audit]\nsynchronous = \"full\"")
        .start()
        .await;
    for n in 0..3 {
        let response = gateway
            .call(Method::GET, "/exchange/market/licenses", "tax")
            .header("x-request-id", format!("synced-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let admin = format!("http://{}", gateway.admin);
    let entries = all_entries(&gateway.client, &admin, "").await;
    let ids: Vec<&str> = entries
        .iter()
        .map(|entry| entry["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["synced-2", "synced-1", "synced-0"]);
    let verification = gateway.gateway.audit.verify().await.unwrap();
    assert!(verification.ok);
    gateway.stop().await;
}
