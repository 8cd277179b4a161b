//! Personal data (SPEC §15): keyed digests under the audit key, subjects and the subject
//! lookup `GET /audit/subjects/{kind}/{id}`, through real gateways.

use http::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

/// The legal representative's resident id in [`license`].
const PERSON: &str = "11010519491231002X";
/// The licence's organisation in [`license`].
const ORGANISATION: &str = "91350100M000100Y43";

/// Provider `market` answers [`license`] on `licenses` (its subject the legal representative)
/// and issues `licence` certificates (ids `cn-uscc`: organisations); `tax` and `civil` call.
pub(crate) fn deployment(records: &Upstream) -> ConfigDir {
    ConfigDir::new()
        .schema("license", 1, license_schema())
        .department(
            "market",
            "department",
            &format!(
                r#"
[services.licenses]
upstream = "{}"
methods = ["GET"]
response_schema = "license"
consumers = ["tax", "civil"]
subject = {{ kind = "resident", pointer = "/legal_representative/resident_id" }}

[certificates.licence]
lookup = "{}"
schema = "license"
id_format = "cn-uscc"
consumers = ["tax", "civil"]
"#,
                records.url("/records"),
                records.url("/licences/{id}")
            ),
        )
        .department("tax", "department", "")
        .department("civil", "department", "")
        .department("auditor", "auditor", "")
}

async fn subject_page(gateway: &TestGateway, path: &str, as_whom: &str) -> (StatusCode, Value) {
    let response = gateway
        .client
        .get(gateway.admin_url(path))
        .bearer_auth(token(as_whom))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn exchanges(gateway: &TestGateway, query: &str) -> Vec<Value> {
    let (status, page) =
        subject_page(gateway, &format!("/audit/exchanges?{query}"), "auditor").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["entries"].as_array().unwrap().clone()
}

/// The resident ids of one district born in one year: the search an attacker with the trail
/// runs against a digest (about 365,000 candidates; every real id of that cohort is among them).
fn cohort() -> impl Iterator<Item = String> {
    let mut day = chrono::NaiveDate::from_ymd_opt(1949, 1, 1).unwrap();
    let mut ids = Vec::new();
    while day.format("%Y").to_string() == "1949" {
        for sequence in 0..1000 {
            let first17 = format!("110105{}{sequence:03}", day.format("%Y%m%d"));
            ids.extend(xgate_core::identifiers::resident_id_with_check(&first17));
        }
        day = day.succ_opt().unwrap();
    }
    ids.into_iter()
}

/// Every digest of personal data in a new entry is keyed: enumerating a district's cohort finds
/// the resident id behind a plain SHA-256 (what entries held before) but not behind the trail's
/// subject digest, whichever way the attacker hashes the candidates. The key file is created
/// 0600 beside the trail, and neither the key nor any raw id is in the trail's file.
#[tokio::test]
async fn keyed_digests_cannot_be_reversed_by_enumerating_resident_ids() {
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = deployment(&records).start().await;
    let answer = gateway
        .call(Method::GET, "/exchange/market/licenses", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body = answer.bytes().await.unwrap();
    let entry = exchanges(&gateway, "").await.remove(0);
    let subject = entry["subject_sha256"]
        .as_str()
        .expect("a subject digest")
        .to_owned();
    // Keyed: none of the digests is the plain SHA-256 of what it digests.
    assert_ne!(entry["response_sha256"], sha256_hex(&body));
    assert_ne!(
        entry["path_sha256"],
        sha256_hex(b"/exchange/market/licenses")
    );
    assert_eq!(entry["version"], 4);

    let plain = sha256_hex(PERSON.as_bytes());
    let mut candidates = 0usize;
    let (mut found_plain, mut found_keyed) = (None, None);
    for id in cohort() {
        candidates += 1;
        let digest = sha256_hex(id.as_bytes());
        if digest == plain {
            found_plain = Some(id.clone());
        }
        let labelled = sha256_hex(format!("resident\0{id}").as_bytes());
        if digest == subject || labelled == subject {
            found_keyed = Some(id);
        }
    }
    println!("searched {candidates} candidate ids");
    assert!(candidates > 300_000, "{candidates}");
    assert_eq!(
        found_plain.as_deref(),
        Some(PERSON),
        "the plain digest falls"
    );
    assert_eq!(found_keyed, None, "the keyed digest must not fall");

    let key_file = gateway.audit_path().with_file_name("audit.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    gateway.gateway.audit.flush().await;
    let mut trail = std::fs::read(gateway.audit_path()).unwrap();
    trail.extend(std::fs::read(gateway.audit_path().with_extension("db-wal")).unwrap_or_default());
    let trail = String::from_utf8_lossy(&trail);
    assert!(!trail.contains(key.trim()), "the key is in the trail");
    assert!(!trail.contains(PERSON), "a raw id is in the trail");
    gateway.stop().await;
}

/// `GET /audit/subjects/{kind}/{id}` lists every exchange and lookup that concerned the
/// subject, newest first and keyset-paged, with who, which service or type, purpose and
/// outcome; only auditors and admins may ask; ids are checked by their kind's format.
#[tokio::test]
async fn the_subject_route_says_who_looked_at_a_person_s_and_an_organisation_s_records() {
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = deployment(&records).start().await;
    for caller in ["tax", "civil", "tax"] {
        let answer = gateway
            .call(Method::GET, "/exchange/market/licenses", caller)
            .header("Xgate-Purpose", "税务核定")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let lookup = gateway
        .call(
            Method::GET,
            &format!("/certificates/licence/{ORGANISATION}"),
            "civil",
        )
        .header("Xgate-Purpose", "account opening")
        .send()
        .await
        .unwrap();
    assert_eq!(lookup.status(), StatusCode::OK);

    let (status, first) = subject_page(
        &gateway,
        &format!("/audit/subjects/resident/{PERSON}?limit=2"),
        "auditor",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let entries = first["entries"].as_array().unwrap();
    let consumers: Vec<&str> = entries
        .iter()
        .map(|e| e["consumer"].as_str().unwrap())
        .collect();
    assert_eq!(consumers, ["tax", "civil"], "newest first");
    for entry in entries {
        assert_eq!(entry["service"], "licenses");
        assert_eq!(entry["outcome"], "ok");
        assert!(entry["purpose_sha256"].is_string(), "{entry}");
        assert!(entry["time"].is_string());
    }
    let next = first["next"].as_u64().expect("a next page");
    let (status, rest) = subject_page(
        &gateway,
        &format!("/audit/subjects/resident/{PERSON}?after={next}"),
        "auditor",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rest["entries"].as_array().unwrap().len(), 1);
    assert_eq!(rest["entries"][0]["consumer"], "tax");
    assert_eq!(rest["next"], Value::Null);

    // The certificate lookup, under the organisation its id names.
    let (status, organisation) = subject_page(
        &gateway,
        &format!("/audit/subjects/organisation/{ORGANISATION}"),
        "auditor",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let entries = organisation["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{organisation}");
    assert_eq!(entries[0]["kind"], "certificate");
    assert_eq!(entries[0]["service"], "licence");
    assert_eq!(entries[0]["consumer"], "civil");
    // The same characters as another kind's id are another subject.
    let (_, other) = subject_page(
        &gateway,
        &format!("/audit/subjects/licence/{ORGANISATION}"),
        "auditor",
    )
    .await;
    assert_eq!(other["entries"].as_array().unwrap().len(), 0);

    // Hostile and wrong input.
    for (path, expected) in [
        (
            "/audit/subjects/resident/11010519491231002Y".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/audit/subjects/resident/..%2F..%2Fetc".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/audit/subjects/organisation/91350100M000100Y44".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/audit/subjects/vehicle/{}", "x".repeat(300)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/audit/subjects/Not_A_Kind/{PERSON}"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/audit/subjects/resident/{PERSON}?limit=0"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/audit/subjects/resident/{PERSON}?limit=x&limit=2"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/audit/subjects/resident/{PERSON}?who=me"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let response = gateway
            .client
            .get(gateway.admin_url(&path))
            .bearer_auth(token("auditor"))
            .header("Accept-Language", "zh-CN")
            .send()
            .await
            .unwrap();
        let (status, body) = problem(response).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert!(
            !body.to_string().contains(PERSON),
            "{path}: the id is echoed: {body}"
        );
    }
    let (status, body) = problem(
        gateway
            .client
            .get(gateway.admin_url("/audit/subjects/resident/11010519491231002Y"))
            .bearer_auth(token("auditor"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"].as_str().unwrap().contains("cn-resident-id"),
        "{body}"
    );
    // Departments may not ask.
    let (status, _) = subject_page(
        &gateway,
        &format!("/audit/subjects/resident/{PERSON}"),
        "tax",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    gateway.stop().await;
}

/// A gateway given another key file than the trail's refuses to start, naming both
/// fingerprints; the trail's own key starts it again.
#[tokio::test]
async fn a_gateway_with_another_audit_key_refuses_to_start_against_the_trail() {
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let config = deployment(&records);
    config.write_main();
    let main = config.main_path();
    let overrides = xgate::config::Overrides::default();
    let first = xgate::startup::start(xgate::startup::load(&main, &overrides).await.unwrap())
        .await
        .unwrap();
    let key_file = config.path("data/audit.key");
    assert!(key_file.is_file(), "the key is created at the first start");
    drop(first);
    let original = std::fs::read(&key_file).unwrap();
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    let refused =
        match xgate::startup::start(xgate::startup::load(&main, &overrides).await.unwrap()).await {
            Ok(_) => panic!("a gateway started with another key"),
            Err(error) => format!("{error:#}"),
        };
    assert!(
        refused.contains("is not the key this audit trail was written with"),
        "{refused}"
    );
    assert!(refused.contains("data/audit.key"), "{refused}");
    assert!(
        !refused.contains(&"ab".repeat(32)),
        "the key is in the message: {refused}"
    );
    std::fs::write(&key_file, "not a key").unwrap();
    let malformed =
        match xgate::startup::start(xgate::startup::load(&main, &overrides).await.unwrap()).await {
            Ok(_) => panic!("a gateway started with a malformed key"),
            Err(error) => format!("{error:#}"),
        };
    assert!(malformed.contains("does not hold a key"), "{malformed}");
    std::fs::write(&key_file, original).unwrap();
    assert!(
        xgate::startup::start(xgate::startup::load(&main, &overrides).await.unwrap())
            .await
            .is_ok()
    );
    drop(config);
}

/// With the shared store, the database keeps only the key's fingerprint: a second gateway with
/// another key file refuses to start; one with the same key starts and its subject lookups see
/// the other gateway's entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "postgres",
    ignore = "no PostgreSQL server answered when the tests were built"
)]
async fn gateways_on_one_store_share_the_key_by_fingerprint_and_the_subject_index() {
    let database = TestDatabase::new().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let one = deployment(&records).store(&database, "gw-1");
    import_schemas(&one).await;
    let one = one.start().await;
    let answer = one
        .call(Method::GET, "/exchange/market/licenses", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let key = std::fs::read_to_string(one.audit_path().with_file_name("audit.key")).unwrap();

    // Another key: refused.
    let other = deployment(&records).store(&database, "gw-2");
    std::fs::write(other.path("data/audit.key"), "cd".repeat(32)).unwrap();
    other.write_main();
    let loaded = xgate::startup::load(&other.main_path(), &xgate::config::Overrides::default())
        .await
        .unwrap();
    let refused = match xgate::startup::start(loaded).await {
        Ok(_) => panic!("a gateway with another key joined the store"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        refused.contains("is not the key this audit trail was written with"),
        "{refused}"
    );
    let stored: String = database
        .connect()
        .await
        .query_one(
            "SELECT value FROM audit_meta WHERE key = 'key_fingerprint'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored.len(), 64);
    assert!(!stored.contains(key.trim()));

    // The same key, deployed to the second gateway: it starts and sees the first one's entry.
    let two = deployment(&records).store(&database, "gw-2");
    assert_eq!(
        std::fs::read_to_string(two.path("data/audit.key")).unwrap(),
        key
    );
    let two = two.start().await;
    let answer = two
        .call(Method::GET, "/exchange/market/licenses", "civil")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let (status, page) = subject_page(
        &two,
        &format!("/audit/subjects/resident/{PERSON}"),
        "auditor",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let seen: Vec<(&str, &str)> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["consumer"].as_str().unwrap(),
                e["gateway"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("civil", "gw-2"), ("tax", "gw-1")]);
    one.stop().await;
    two.stop().await;
}

/// `xgate check` (the configuration's inspection) reports every wrong `subject`: a kind that is
/// no name, a pointer with `*`, one that is no JSON Pointer, and a service with no schema to
/// find it in.
#[test]
fn wrong_subjects_are_configuration_problems() {
    let config = ConfigDir::new()
        .schema("license", 1, license_schema())
        .department(
            "market",
            "department",
            r#"
[services.a]
upstream = "http://127.0.0.1:9/a"
methods = ["GET"]
response_schema = "license"
consumers = ["tax"]
subject = { kind = "Resident!", pointer = "/legal_representative/resident_id" }

[services.b]
upstream = "http://127.0.0.1:9/b"
methods = ["GET"]
response_schema = "license"
consumers = ["tax"]
subject = { kind = "resident", pointer = "/shareholders/*/resident_id" }

[services.c]
upstream = "http://127.0.0.1:9/c"
methods = ["GET"]
response_schema = "license"
consumers = ["tax"]
subject = { kind = "resident", pointer = "resident_id" }

[services.d]
upstream = "http://127.0.0.1:9/d"
methods = ["GET"]
consumers = ["tax"]
subject = { kind = "resident", pointer = "/resident_id" }
"#,
        )
        .department("tax", "department", "");
    config.write_main();
    let inspection =
        xgate::config::inspect(&config.main_path(), &xgate::config::Overrides::default());
    let reported: Vec<(String, String)> = inspection
        .problems
        .iter()
        .map(|problem| (problem.key.clone(), problem.reason.clone()))
        .collect();
    for (key, reason) in [
        ("services.a.subject.kind", "subject kind"),
        ("services.b.subject.pointer", "no `*`"),
        ("services.c.subject.pointer", ""),
        ("services.d.subject", "request_schema or a response_schema"),
    ] {
        assert!(
            reported.iter().any(|(k, r)| k == key && r.contains(reason)),
            "{key} ({reason}) not reported: {reported:?}"
        );
    }
    assert_eq!(reported.len(), 4, "{reported:?}");
}
