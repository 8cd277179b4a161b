//! What is validated is what is forwarded (issue 15, points 3 and 12), through real gateways and
//! real upstreams that keep the bytes they receive:
//! - duplicate object keys are refused wherever the gateway reads JSON: a caller's record (400
//!   `malformed-json` naming the member's pointer, plain, escaped, nested, in arrays), a
//!   provider's answer (502, nothing passed on), a certificate issuer's answer (502, not cached),
//!   `/validate` (single and NDJSON lines) and the admin routes that take documents;
//! - numbers are validated exactly (`100.00000000000000001` is over `maximum: 100`);
//! - numbers cross translation exactly: copied, scaled, turned into text and back, digit for
//!   digit, or refused with a translation problem, never rounded.

use http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// The request and response schema of the `accounts` and `answers` services.
fn account_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "role": {"enum": ["viewer"]},
            "amount": {"type": "number", "maximum": 100},
            "count": {"type": "integer", "maximum": 10},
            "big": {"maximum": 18_014_398_509_481_985_u64},
            "hundred": serde_json::from_str::<Value>(r#"{"maximum": 1e2}"#).unwrap(),
            "even": {"multipleOf": 2},
            "profile": {"type": "object"},
            "items": {"type": "array", "items": {"type": "object"}}
        }
    })
}

/// The shared layout of the `ledger` services: numbers of every size.
fn ledger_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "amount": {"type": "number"},
            "capital_yuan": {"type": "number", "minimum": 0},
            "quantity": {"type": "number"},
            "code": {"type": "string"}
        }
    })
}

/// The tax bureau's own layout of a ledger entry: a copied amount, 万元 scaled to 元, a quantity
/// kept as text, a code kept as a number, anything else kept as it is.
const TAX_LEDGER_FORMAT: &str = r#"
[formats.ledger]
unmapped = "keep"
fields = [
  { own = "/JE", shared = "/amount" },
  { own = "/ZCZB", shared = "/capital_yuan", convert = "scale:10000" },
  { own = "/SL", shared = "/quantity", convert = "number" },
  { own = "/BH", shared = "/code", convert = "string" },
]
"#;

/// The issue's numbers in the tax bureau's layout, as the bytes a caller sends.
const TAX_LEDGER: &str = r#"{"JE":-123456789012345678901234567890,"ZCZB":1234567890123.456789,"SL":"12.345678901234567890123","BH":1e2,"QT":12.345678901234567890123}"#;

/// The same entry in the shared layout, as the gateway writes it: every digit kept, 万元 × 10000
/// in exact decimals, `1e2` as written.
const SHARED_LEDGER: &str = r#"{"amount":-123456789012345678901234567890,"capital_yuan":12345678901234567.89,"quantity":12.345678901234567890123,"code":"1e2","QT":12.345678901234567890123}"#;

/// The upstreams of these tests, each keeping what it receives.
struct Upstreams {
    /// market's `accounts`: takes a record, answers `{}`.
    accounts: Recording,
    /// market's `answers`: answers a record with a duplicate key.
    duplicate_answer: Recording,
    /// market's `ledger`: takes a ledger entry, answers [`SHARED_LEDGER`].
    ledger: Recording,
    /// bank's `ledger`: answers a capital in 万元 that no exact decimal holds.
    bank_ledger: Recording,
    /// market's certificate issuer: answers a certificate with a duplicate key.
    issuer: Recording,
}

impl Upstreams {
    async fn start() -> Upstreams {
        Upstreams {
            accounts: Recording::start(StatusCode::OK, b"{}").await,
            duplicate_answer: Recording::start(
                StatusCode::OK,
                br#"{"role":"admin","amount":5,"role":"viewer"}"#,
            )
            .await,
            ledger: Recording::start(StatusCode::OK, SHARED_LEDGER.as_bytes()).await,
            bank_ledger: Recording::start(
                StatusCode::OK,
                br#"{"ZCZB":-123456789012345678901234567890}"#,
            )
            .await,
            issuer: Recording::start(
                StatusCode::OK,
                br#"{"uscc":"91350100M000100Y43","name":"a","status":"revoked","status":"active"}"#,
            )
            .await,
        }
    }
}

async fn gateway(upstreams: &Upstreams) -> TestGateway {
    let market = format!(
        r#"
[services.accounts]
upstream = "{accounts}"
methods = ["POST"]
request_schema = "account"
consumers = ["tax"]

[services.answers]
upstream = "{answers}"
methods = ["GET"]
response_schema = "account"
consumers = ["tax"]

[services.ledger]
upstream = "{ledger}"
methods = ["POST"]
request_schema = "ledger"
response_schema = "ledger"
consumers = ["tax"]

[services.passthrough]
upstream = "{ledger}"
methods = ["POST"]
request_schema = "account"
consumers = ["tax"]

[certificates.licence]
lookup = "{issuer}"
schema = "license"
id_format = "cn-uscc"
consumers = ["tax"]
"#,
        accounts = upstreams.accounts.url("/accounts"),
        answers = upstreams.duplicate_answer.url("/answers"),
        ledger = upstreams.ledger.url("/ledger"),
        issuer = upstreams.issuer.url("/certs/{id}"),
    );
    let bank = format!(
        r#"
[services.ledger]
upstream = "{}"
methods = ["GET"]
response_schema = "ledger"
consumers = ["tax"]

[formats.ledger]
unmapped = "keep"
fields = [{{ own = "/ZCZB", shared = "/capital_yuan", convert = "scale:10000" }}]
"#,
        upstreams.bank_ledger.url("/ledger")
    );
    ConfigDir::new()
        .schema("account", 1, account_schema())
        .schema("ledger", 1, ledger_schema())
        .schema("license", 1, license_schema())
        .department("market", "department", &market)
        .department("bank", "department", &bank)
        .department("tax", "department", TAX_LEDGER_FORMAT)
        .department("admin", "admin", "")
        .start()
        .await
}

/// POSTs raw bytes as JSON.
async fn post_raw(
    gateway: &TestGateway,
    path: &str,
    department: &str,
    body: &str,
    lang: &str,
) -> reqwest::Response {
    gateway
        .call(Method::POST, path, department)
        .header("content-type", "application/json")
        .header("accept-language", lang)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Checks a 400 `malformed-json` problem naming the duplicated member at `pointer`.
fn assert_duplicate(status: StatusCode, problem: &Value, pointer: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(
        problem["type"], "urn:xgate:problem:malformed-json",
        "{problem}"
    );
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{problem}");
    assert_eq!(errors[0]["pointer"], pointer, "{problem}");
    assert_eq!(errors[0]["keyword"], "duplicate-key", "{problem}");
}

/// The records a first-key parser and a last-key parser read differently.
const DUPLICATES: [(&str, &str); 5] = [
    (r#"{"role":"admin","role":"viewer"}"#, "/role"),
    (r#"{"role":"admin","r\u006fle":"viewer"}"#, "/role"),
    (r#"{"profile":{"name":"a","name":"b"}}"#, "/profile/name"),
    (r#"{"items":[{"id":1},{"id":2,"id":3}]}"#, "/items/1/id"),
    (r#"{"a~b/c":1,"a~b/c":2}"#, "/a~0b~1c"),
];

#[tokio::test]
async fn a_record_with_a_duplicate_key_is_refused_before_it_reaches_the_provider() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    for (record, pointer) in DUPLICATES {
        let response = post_raw(&gateway, "/exchange/market/accounts", "tax", record, "en").await;
        let (status, body) = problem(response).await;
        assert_duplicate(status, &body, pointer);
        assert!(body["detail"].as_str().unwrap().contains(pointer), "{body}");
    }
    // Bilingual like every problem.
    let response = post_raw(
        &gateway,
        "/exchange/market/accounts",
        "tax",
        DUPLICATES[0].0,
        "zh-CN",
    )
    .await;
    let (status, body) = problem(response).await;
    assert_duplicate(status, &body, "/role");
    assert_eq!(body["title"], "JSON 格式错误");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("两次"),
        "{body}"
    );
    assert_eq!(upstreams.accounts.call_count(), 0, "nothing was forwarded");
    // The same record without its duplicate passes, forwarded byte for byte.
    let response = post_raw(
        &gateway,
        "/exchange/market/accounts",
        "tax",
        r#"{"role":"viewer"}"#,
        "en",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        upstreams.accounts.bodies(),
        vec![br#"{"role":"viewer"}"#.to_vec()]
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_provider_answer_with_a_duplicate_key_is_not_passed_on() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    let response = gateway
        .call(Method::GET, "/exchange/market/answers", "tax")
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["type"], "urn:xgate:problem:upstream-invalid-response");
    assert!(!body.to_string().contains("admin"), "{body}");
    assert_eq!(upstreams.duplicate_answer.call_count(), 1);
    gateway.stop().await;
}

#[tokio::test]
async fn a_certificate_with_a_duplicate_key_is_refused_and_not_cached() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    for round in 1..=2 {
        let response = gateway
            .call(
                Method::GET,
                "/certificates/licence/91350100M000100Y43",
                "tax",
            )
            .header("Xgate-Purpose", "核验 check")
            .send()
            .await
            .unwrap();
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(body["type"], "urn:xgate:problem:upstream-invalid-response");
        // Not cached: the second lookup asks the issuer again.
        assert_eq!(upstreams.issuer.call_count(), round);
    }
    gateway.stop().await;
}

#[tokio::test]
async fn validate_refuses_duplicate_keys_in_a_record_and_in_each_ndjson_line() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    for (record, pointer) in DUPLICATES {
        let response = post_raw(&gateway, "/validate/account", "tax", record, "en").await;
        let (status, body) = problem(response).await;
        assert_duplicate(status, &body, pointer);
    }
    let lines = format!(
        "{}\n{}\n{}\n{}\n",
        r#"{"role":"viewer"}"#, DUPLICATES[0].0, DUPLICATES[1].0, DUPLICATES[3].0
    );
    let response = gateway
        .call(Method::POST, "/validate/account", "tax")
        .header("content-type", "application/x-ndjson")
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let results: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(results.len(), 4, "{text}");
    assert_eq!(results[0]["valid"], true, "{text}");
    for (result, pointer) in results[1..].iter().zip(["/role", "/role", "/items/1/id"]) {
        assert_eq!(result["valid"], false, "{text}");
        assert_eq!(result["errors"][0]["pointer"], pointer, "{text}");
        assert_eq!(result["errors"][0]["keyword"], "duplicate-key", "{text}");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn admin_documents_with_duplicate_keys_are_refused() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    let schema = r#"{"type":"object","properties":{"a":{"maximum":1,"maximum":1000}}}"#;
    for path in [
        "/admin/schemas/account/versions",
        "/admin/schemas/account/compatibility",
        "/admin/schemas/fresh/versions",
    ] {
        let response = gateway
            .client
            .post(gateway.admin_url(path))
            .bearer_auth(token("admin"))
            .header("content-type", "application/json")
            .body(schema)
            .send()
            .await
            .unwrap();
        let (status, body) = problem(response).await;
        assert_duplicate(status, &body, "/properties/a/maximum");
    }
    let response = gateway
        .client
        .put(gateway.admin_url("/admin/schemas/account/config"))
        .bearer_auth(token("admin"))
        .header("content-type", "application/json")
        .body(r#"{"compatibility":"none","compatibility":"full"}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_duplicate(status, &body, "/compatibility");
    let response = gateway
        .client
        .post(gateway.admin_url("/admin/translate/tax/ledger?direction=to-shared"))
        .bearer_auth(token("admin"))
        .header("content-type", "application/json")
        .body(r#"{"JE":1,"QT":{"x":1,"x":2}}"#)
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_duplicate(status, &body, "/QT/x");
    // Nothing was registered.
    let listed: Value = gateway
        .client
        .get(gateway.admin_url("/admin/schemas"))
        .bearer_auth(token("admin"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!listed.to_string().contains("fresh"), "{listed}");
    gateway.stop().await;
}

/// An object whose key is serde_json's private number token is an object, not a number: with
/// serde_json's own `Value` it would be validated as the number 5 and forwarded as an object.
#[tokio::test]
async fn an_object_posing_as_a_number_is_validated_as_the_object_it_is() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    let record = r#"{"amount":{"$serde_json::private::Number":"5"}}"#;
    let response = post_raw(&gateway, "/exchange/market/accounts", "tax", record, "en").await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/amount", "{body}");
    assert_eq!(body["errors"][0]["keyword"], "type", "{body}");
    assert_eq!(upstreams.accounts.call_count(), 0);
    gateway.stop().await;
}

#[tokio::test]
async fn numbers_are_validated_exactly() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    for (record, pointer, keyword) in [
        (r#"{"amount":100.00000000000000001}"#, "/amount", "maximum"),
        (r#"{"amount":1e3}"#, "/amount", "maximum"),
        (r#"{"count":10.0000000000000001}"#, "/count", "type"),
        (r#"{"count":1e-400}"#, "/count", "type"),
        (r#"{"count":10.0000000000000001}"#, "/count", "maximum"),
        // Where the jsonschema crate's own keywords still round (a limit past 2^53 or written
        // with an exponent, an integer divisor): the gateway's exact keywords.
        (r#"{"big":18014398509481985.5}"#, "/big", "maximum"),
        (
            r#"{"hundred":100.0000000000000000001}"#,
            "/hundred",
            "maximum",
        ),
        (r#"{"even":4.0000000000000001}"#, "/even", "multipleOf"),
    ] {
        let response = post_raw(&gateway, "/exchange/market/accounts", "tax", record, "en").await;
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{record}: {body}");
        let errors = body["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|error| error["pointer"] == pointer && error["keyword"] == keyword),
            "{record}: {body}"
        );
    }
    let response = post_raw(
        &gateway,
        "/validate/account",
        "tax",
        r#"{"amount":100.00000000000000001}"#,
        "zh",
    )
    .await;
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["valid"], false, "{result}");
    assert_eq!(result["errors"][0]["message"], "不得大于 100", "{result}");
    assert_eq!(upstreams.accounts.call_count(), 0, "nothing was forwarded");

    // Numbers within their limits by a hair pass, and reach the provider byte for byte.
    let record = r#"{"amount":99.999999999999999999999999999999,"count":10.000,"items":[{"n":-0.0},{"n":1E+400}]}"#;
    let response = post_raw(
        &gateway,
        "/exchange/market/passthrough",
        "tax",
        record,
        "en",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let received = upstreams.ledger.bodies();
    assert_eq!(received.len(), 1);
    assert_eq!(sha256_hex(&received[0]), sha256_hex(record.as_bytes()));
    gateway.stop().await;
}

#[tokio::test]
async fn numbers_cross_translation_digit_for_digit() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    let response = post_raw(&gateway, "/exchange/market/ledger", "tax", TAX_LEDGER, "en").await;
    assert_eq!(response.status(), StatusCode::OK);
    // The provider speaks the shared layout: it receives the issue's numbers unchanged, the
    // scaled amount computed exactly.
    let received = upstreams.ledger.bodies();
    assert_eq!(received.len(), 1);
    assert_eq!(
        String::from_utf8(received[0].clone()).unwrap(),
        SHARED_LEDGER,
        "forwarded body"
    );
    assert_eq!(
        sha256_hex(&received[0]),
        sha256_hex(SHARED_LEDGER.as_bytes())
    );
    // Its answer comes back into the tax layout, every digit kept.
    let answer = response.text().await.unwrap();
    assert_eq!(
        answer,
        r#"{"JE":-123456789012345678901234567890,"ZCZB":1234567890123.456789,"SL":"12.345678901234567890123","BH":1e2,"QT":12.345678901234567890123}"#
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_number_no_exact_decimal_holds_is_a_translation_problem() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    // From the caller: 422, naming its own pointer and the rule.
    for capital in [
        "-123456789012345678901234567890",
        "0.12345678901234567890123456789",
        "1e-400",
    ] {
        let record = format!(r#"{{"ZCZB":{capital}}}"#);
        let response = post_raw(&gateway, "/exchange/market/ledger", "tax", &record, "en").await;
        let (status, body) = problem(response).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{capital}: {body}"
        );
        assert_eq!(body["type"], "urn:xgate:problem:translation", "{body}");
        assert_eq!(body["errors"][0]["pointer"], "/ZCZB", "{body}");
        assert!(
            body["errors"][0]["rule"]
                .as_str()
                .unwrap()
                .contains("scale:10000"),
            "{body}"
        );
    }
    assert_eq!(upstreams.ledger.call_count(), 0);
    // From a provider: 502, and nothing of its answer passed on.
    let response = gateway
        .call(Method::GET, "/exchange/bank/ledger", "tax")
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["type"], "urn:xgate:problem:translation", "{body}");
    assert!(!body.to_string().contains("1234567890123456789"), "{body}");
    gateway.stop().await;
}
