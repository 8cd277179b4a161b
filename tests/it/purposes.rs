//! Purposes (SPEC §15): the `[purposes]` vocabulary, services and certificate types that list
//! purposes (400 `purpose-required`, 403 `purpose-not-allowed`), codes in clear in the trail and
//! free text only as a digest, `xgate_purpose_uses_total`, the summary's counts by purpose, the
//! catalog, and hostile purposes (10 KiB, CR/LF) refused and never recorded.

use http::{HeaderValue, StatusCode};
use reqwest::Method;
use serde_json::Value;

use crate::forwarding::raw_http;
use crate::helpers::*;

const VOCABULARY: &str = r#"[purposes]
tax-assessment = "税务核定 Tax assessment"
benefit-review = "社保待遇审核 Benefit review"
licence-check = "证照核验 Licence check"
"#;

/// `market` provides `assess` (purposes tax-assessment and benefit-review), `open` (no
/// purposes) and the certificate type `licence` (purpose licence-check); `tax` calls them.
fn deployment(echo: &Upstream, issuer: &Upstream) -> ConfigDir {
    ConfigDir::new()
        .schema("license", 1, license_schema())
        .main(VOCABULARY)
        .department(
            "market",
            "department",
            &format!(
                r#"
[services.assess]
upstream = "{}"
methods = ["GET"]
consumers = ["tax"]
purposes = ["tax-assessment", "benefit-review"]

[services.open]
upstream = "{}"
methods = ["GET"]
consumers = ["tax"]

[certificates.licence]
lookup = "{}"
schema = "license"
id_format = "cn-uscc"
consumers = ["tax"]
purposes = ["licence-check"]
"#,
                echo.url("/assess"),
                echo.url("/open"),
                issuer.url("/licences/{id}"),
            ),
        )
        .department("tax", "department", "")
        .department("auditor", "auditor", "")
}

async fn started() -> (TestGateway, Upstream, Upstream) {
    let echo = Upstream::echo().await;
    let issuer = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = deployment(&echo, &issuer).start().await;
    (gateway, echo, issuer)
}

/// A call of `path` as `tax` with `purpose` as raw header bytes (as curl sends them).
async fn call(
    gateway: &TestGateway,
    path: &str,
    purpose: Option<&[u8]>,
    lang: Option<&str>,
) -> reqwest::Response {
    let mut request = gateway.call(Method::GET, path, "tax");
    if let Some(purpose) = purpose {
        request = request.header("Xgate-Purpose", HeaderValue::from_bytes(purpose).unwrap());
    }
    if let Some(lang) = lang {
        request = request.header("Accept-Language", lang);
    }
    request.send().await.unwrap()
}

/// The trail's entry of the call answered with `response`.
async fn entry_of(gateway: &TestGateway, kind: &str, response: &reqwest::Response) -> Value {
    let exchange_id = response.headers()["xgate-exchange-id"].to_str().unwrap();
    entries(gateway, kind)
        .await
        .into_iter()
        .find(|entry| entry["exchange_id"] == exchange_id)
        .unwrap_or_else(|| panic!("no {kind} entry for {exchange_id}"))
}

const CERTIFICATE: &str = "/certificates/licence/91350100M000100Y43";

#[tokio::test]
async fn a_service_that_lists_purposes_takes_only_those_and_records_the_code_in_clear() {
    let (gateway, echo, _issuer) = started().await;
    let assess = "/exchange/market/assess/x";

    for purpose in [None, Some(&b"   "[..])] {
        let (status, body) = problem(call(&gateway, assess, purpose, None).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{purpose:?}");
        assert_eq!(body["type"], "urn:xgate:problem:purpose-required");
    }
    let (_, body) = problem(call(&gateway, assess, None, Some("zh-CN")).await).await;
    assert_eq!(body["title"], "须说明用途");
    assert!(body["detail"].as_str().unwrap().contains("Xgate-Purpose"));

    // Another code of the vocabulary, free text (UTF-8 too), a code in another case.
    let chinese = "税务核定".as_bytes();
    for purpose in [
        &b"licence-check"[..],
        b"tax assessment",
        chinese,
        b"Tax-Assessment",
    ] {
        let response = call(&gateway, assess, Some(purpose), None).await;
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{purpose:?}");
        assert_eq!(body["type"], "urn:xgate:problem:purpose-not-allowed");
        assert!(body["detail"].as_str().unwrap().contains("purpose codes"));
    }
    let zh = call(&gateway, assess, Some(b"licence-check"), Some("zh")).await;
    let (_, body) = problem(zh).await;
    assert_eq!(body["title"], "用途不在允许范围内");
    assert!(body["detail"].as_str().unwrap().contains("用途代码"));
    assert_eq!(echo.call_count(), 0, "a refused call reached the provider");

    let allowed = call(&gateway, assess, Some(b"tax-assessment"), None).await;
    assert_eq!(allowed.status(), StatusCode::OK);
    let entry = entry_of(&gateway, "exchange", &allowed).await;
    let seen: Value = allowed.json().await.unwrap();
    assert_eq!(seen["headers"]["xgate-purpose"], "tax-assessment");
    assert_eq!(entry["purpose"], "tax-assessment");
    assert_eq!(entry["purpose_sha256"], Value::Null);
    assert_eq!(entry["outcome"], "ok");

    // The refusals' entries: outcome words of SPEC §9, the code in clear, free text digested.
    let trail = entries(&gateway, "exchange").await;
    let refused = |outcome: &str| {
        trail
            .iter()
            .filter(|entry| entry["outcome"] == outcome)
            .collect::<Vec<_>>()
    };
    assert_eq!(refused("invalid_request").len(), 3);
    assert!(
        refused("invalid_request")
            .iter()
            .all(|entry| entry["status"] == 400 && entry["purpose"].is_null())
    );
    let forbidden = refused("forbidden");
    assert_eq!(forbidden.len(), 5);
    let codes = forbidden
        .iter()
        .filter(|entry| entry["purpose"] == "licence-check" && entry["purpose_sha256"].is_null())
        .count();
    let digests = forbidden
        .iter()
        .filter(|entry| entry["purpose"].is_null() && entry["purpose_sha256"].is_string())
        .count();
    assert_eq!((codes, digests), (2, 3));
    assert!(forbidden.iter().all(|entry| entry["status"] == 403));
}

#[tokio::test]
async fn without_a_list_any_purpose_goes_through_and_free_text_is_only_a_digest() {
    let (gateway, echo, _issuer) = started().await;
    let open = "/exchange/market/open/x";
    let none = call(&gateway, open, None, None).await;
    assert_eq!(none.status(), StatusCode::OK);
    let none = entry_of(&gateway, "exchange", &none).await;
    assert_eq!(
        (&none["purpose"], &none["purpose_sha256"]),
        (&Value::Null, &Value::Null)
    );

    let text = "核定 2026 年度个人所得税".as_bytes();
    let free = call(&gateway, open, Some(text), None).await;
    assert_eq!(free.status(), StatusCode::OK);
    let entry = entry_of(&gateway, "exchange", &free).await;
    let seen: Value = free.json().await.unwrap();
    // The upstream saw the caller's bytes (the echo shows non-ASCII values as binary).
    assert!(seen["headers"]["xgate-purpose"].is_string());
    assert_eq!(entry["purpose"], Value::Null);
    let digest = entry["purpose_sha256"].as_str().unwrap();
    assert_eq!(digest.len(), 64);

    // A code of the vocabulary is a code on any service.
    let code = call(&gateway, open, Some(b"benefit-review"), None).await;
    assert_eq!(code.status(), StatusCode::OK);
    let entry = entry_of(&gateway, "exchange", &code).await;
    assert_eq!(entry["purpose"], "benefit-review");
    assert_eq!(entry["purpose_sha256"], Value::Null);
    assert_eq!(echo.call_count(), 3);

    let trail = std::fs::read(gateway.audit_path()).unwrap_or_default();
    let wal = std::fs::read(gateway.audit_path().with_extension("db-wal")).unwrap_or_default();
    for bytes in [trail, wal] {
        assert!(!bytes.windows(text.len()).any(|window| window == text));
    }
}

#[tokio::test]
async fn a_certificate_type_that_lists_purposes_takes_only_those() {
    let (gateway, _echo, issuer) = started().await;
    let (status, body) = problem(call(&gateway, CERTIFICATE, None, None).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "urn:xgate:problem:purpose-required");
    for purpose in [&b"tax-assessment"[..], "证照核验".as_bytes()] {
        let (status, body) = problem(call(&gateway, CERTIFICATE, Some(purpose), None).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{purpose:?}");
        assert_eq!(body["type"], "urn:xgate:problem:purpose-not-allowed");
    }
    assert_eq!(issuer.call_count(), 0);
    let found = call(&gateway, CERTIFICATE, Some(b"licence-check"), None).await;
    assert_eq!(found.status(), StatusCode::OK);
    let entry = entry_of(&gateway, "certificate", &found).await;
    assert_eq!(entry["purpose"], "licence-check");
    assert_eq!(entry["purpose_sha256"], Value::Null);
    let trail = entries(&gateway, "certificate").await;
    let refused: Vec<_> = trail
        .iter()
        .filter(|entry| entry["outcome"] == "forbidden")
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(
        refused
            .iter()
            .any(|entry| entry["purpose"] == "tax-assessment")
    );
    assert!(
        refused
            .iter()
            .any(|entry| entry["purpose"].is_null() && entry["purpose_sha256"].is_string())
    );
}

#[tokio::test]
async fn a_utf8_purpose_sent_as_raw_bytes_is_taken_as_free_text() {
    let (gateway, _echo, issuer) = started().await;
    let chinese = "企业开户核验 account opening check".as_bytes();
    let open = call(&gateway, "/exchange/market/open/y", Some(chinese), None).await;
    assert_eq!(open.status(), StatusCode::OK);
    let entry = entry_of(&gateway, "exchange", &open).await;
    assert!(entry["purpose_sha256"].is_string());
    drop(gateway);

    // A certificate type that lists no purposes takes any stated one.
    let config = ConfigDir::new()
        .schema("license", 1, license_schema())
        .main(VOCABULARY)
        .department(
            "market",
            "department",
            &format!(
                r#"
[certificates.licence]
lookup = "{}"
schema = "license"
id_format = "cn-uscc"
consumers = ["tax"]
"#,
                issuer.url("/licences/{id}")
            ),
        )
        .department("tax", "department", "")
        .department("auditor", "auditor", "");
    let gateway = config.start().await;
    let found = call(&gateway, CERTIFICATE, Some(chinese), None).await;
    assert_eq!(found.status(), StatusCode::OK);
    let entry = entry_of(&gateway, "certificate", &found).await;
    assert_eq!(entry["purpose"], Value::Null);
    assert!(entry["purpose_sha256"].is_string());
}

#[tokio::test]
async fn hostile_purposes_are_refused_and_never_recorded() {
    let (gateway, echo, issuer) = started().await;
    let long = "税".repeat(10 * 1024 / 3 + 1);
    for path in [
        "/exchange/market/open/x",
        "/exchange/market/assess/x",
        CERTIFICATE,
    ] {
        let response = call(&gateway, path, Some(long.as_bytes()), None).await;
        let (status, body) = problem(response).await;
        assert_eq!(
            status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "{path}"
        );
        assert_eq!(body["type"], "urn:xgate:problem:header-too-large");
    }
    assert_eq!((echo.call_count(), issuer.call_count()), (0, 0));

    // CR or LF inside the value: the request is malformed, answered 400, never served.
    let token = token("tax");
    for purpose in ["tax\rassessment", "tax\r\n assessment", "tax\0assessment"] {
        let request = format!(
            "GET /exchange/market/open/x HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\nXgate-Purpose: {purpose}\r\nConnection: close\r\n\r\n"
        );
        let response = raw_http(gateway.data, request.as_bytes())
            .await
            .expect("an answer");
        assert_eq!(response.status, 400, "{purpose:?}");
    }
    assert_eq!(echo.call_count(), 0);

    let mut trail = entries(&gateway, "exchange").await;
    trail.extend(entries(&gateway, "certificate").await);
    assert_eq!(trail.len(), 3, "only the three 431s: {trail:?}");
    for entry in &trail {
        assert_eq!(entry["outcome"], "too_large");
        assert_eq!(
            (&entry["purpose"], &entry["purpose_sha256"]),
            (&Value::Null, &Value::Null)
        );
    }
    let stored = std::fs::read(gateway.audit_path()).unwrap_or_default();
    let wal = std::fs::read(gateway.audit_path().with_extension("db-wal")).unwrap_or_default();
    let needle = "税税税税".as_bytes();
    for bytes in [stored, wal] {
        assert!(!bytes.windows(needle.len()).any(|window| window == needle));
    }
}

#[tokio::test]
async fn purpose_uses_are_counted_by_code_none_and_other_and_summarized() {
    let (gateway, _echo, _issuer) = started().await;
    let assess = "/exchange/market/assess/x";
    let open = "/exchange/market/open/x";
    for _ in 0..2 {
        call(&gateway, assess, Some(b"tax-assessment"), None).await;
    }
    call(&gateway, assess, None, None).await;
    call(&gateway, open, Some("自由文本".as_bytes()), None).await;
    call(&gateway, open, Some(b"free text"), None).await;
    call(&gateway, CERTIFICATE, Some(b"licence-check"), None).await;
    let series = |service: &str, purpose: &str| {
        format!(
            r#"xgate_purpose_uses_total{{consumer="tax",purpose="{purpose}",service="{service}"}}"#
        )
    };
    for (service, purpose, value) in [
        ("assess", "tax-assessment", 2.0),
        ("assess", "none", 1.0),
        ("open", "other", 2.0),
        ("licence", "licence-check", 1.0),
        ("open", "none", 0.0),
    ] {
        assert_eq!(
            metric(&gateway, &series(service, purpose)).await,
            value,
            "{service} {purpose}"
        );
    }
    let text = metrics_text(&gateway).await;
    assert!(!text.contains("自由文本") && !text.contains(r#""free text""#));

    let summary: Value = gateway
        .client
        .get(gateway.admin_url("/audit/summary"))
        .bearer_auth(token("auditor"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        summary["purposes"],
        serde_json::json!([
            {"purpose": "licence-check", "exchanges": 0, "certificate_lookups": 1},
            {"purpose": "none", "exchanges": 1, "certificate_lookups": 0},
            {"purpose": "other", "exchanges": 2, "certificate_lookups": 0},
            {"purpose": "tax-assessment", "exchanges": 2, "certificate_lookups": 0},
        ]),
        "{summary}"
    );
}

#[tokio::test]
async fn the_catalog_lists_each_services_purposes_with_their_labels() {
    let (gateway, _echo, _issuer) = started().await;
    let catalog: Value = gateway
        .call(Method::GET, "/catalog", "tax")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let service = |name: &str| {
        catalog["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|service| service["service"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        service("assess")["purposes"],
        serde_json::json!([
            {"code": "tax-assessment", "label": "税务核定 Tax assessment"},
            {"code": "benefit-review", "label": "社保待遇审核 Benefit review"},
        ])
    );
    assert_eq!(service("open").get("purposes"), None);
    assert_eq!(
        catalog["certificate_types"][0]["purposes"],
        serde_json::json!([{"code": "licence-check", "label": "证照核验 Licence check"}])
    );
}
