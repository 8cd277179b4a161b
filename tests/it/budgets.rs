//! Work a caller or an admin can make the gateway do is bounded, and kept off the runtime's
//! worker threads (issue 15, points 9 and 10): `pattern` matching has one budget per record,
//! and a compatibility check has a budget and holds no other schema's lock.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// A back-reference pattern inside `anyOf`: `(a*)*\1b` takes 98,301 backtracking steps on 14
/// `a`s, just under the limit of one match (100,000).
fn bulk_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {"anyOf": [{"type": "number"}, {"pattern": "(a*)*\\1b"}]}
            }
        }
    })
}

/// 62,500 such strings: about 1 MB.
fn bulk_record() -> Vec<u8> {
    let items = vec![Value::String("a".repeat(14)); 62_500];
    serde_json::to_vec(&json!({ "items": items })).unwrap()
}

async fn bulk_gateway(upstream: &Upstream) -> TestGateway {
    let url = upstream.url("/base");
    ConfigDir::new()
        .gateway("max_body_bytes = 2097152")
        .schema("bulk", 1, bulk_schema())
        .department(
            "market",
            "department",
            &format!(
                r#"
[services.bulk]
upstream = "{url}"
methods = ["POST"]
request_schema = "bulk@1"
consumers = ["tax"]

[services.echo]
upstream = "{url}"
methods = ["GET"]
consumers = ["tax"]
"#
            ),
        )
        .department("tax", "department", "")
        .department("admin", "admin", "")
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_spend_their_pattern_budget_are_refused_while_the_gateway_keeps_answering() {
    let upstream = Upstream::echo().await;
    let gateway = bulk_gateway(&upstream).await;
    let record = bulk_record();
    assert!(record.len() > 1_000_000);

    let big: Vec<_> = (0..4)
        .map(|_| {
            let request = gateway
                .call(Method::POST, "/exchange/market/bulk", "tax")
                .header("content-type", "application/json")
                .body(record.clone());
            tokio::spawn(async move { request.send().await })
        })
        .collect();

    // While the four are in flight, the admin plane and a small call keep answering. The bounds
    // are a safety net against a stalled runtime, not a measurement.
    let client = client();
    for _ in 0..3 {
        let health = client
            .get(gateway.admin_url("/healthz"))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        let small = gateway
            .call(Method::GET, "/exchange/market/echo/ping", "tax")
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap();
        assert_eq!(small.status(), StatusCode::OK);
    }

    for call in big {
        let (status, body) = problem(call.await.unwrap().unwrap()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            body["type"]
                .as_str()
                .unwrap()
                .ends_with("schema-validation"),
            "{body}"
        );
        let violations = body["errors"].as_array().unwrap();
        assert_eq!(violations.len(), 1, "{body}");
        assert_eq!(violations[0]["keyword"], "pattern", "{body}");
        assert!(
            violations[0]["message"]
                .as_str()
                .unwrap()
                .contains("budget of 5000000 matching steps"),
            "{body}"
        );
    }
    // Refused before forwarding: only the small calls reached the provider.
    assert_eq!(upstream.call_count(), 3);
    eventually("no large record left on the pool", DEADLINE, || async {
        gateway.gateway.cpu.in_progress() == 0
    })
    .await;

    // A record that stays within the budget is judged as before: strings that match pass.
    let few =
        serde_json::to_vec(&json!({ "items": vec![format!("{}b", "a".repeat(13)); 20] })).unwrap();
    let accepted = gateway
        .call(Method::POST, "/exchange/market/bulk", "tax")
        .header("content-type", "application/json")
        .body(few)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    gateway.stop().await;
}

/// POSTs `document` as the next version of `name`, as the admin.
fn register(gateway: &TestGateway, name: &str, document: &Value) -> reqwest::RequestBuilder {
    gateway
        .client
        .post(gateway.admin_url(&format!("/admin/schemas/{name}/versions")))
        .bearer_auth(token("admin"))
        .json(document)
}

fn enum_of(values: std::ops::Range<u64>) -> Value {
    json!({ "enum": values.collect::<Vec<_>>() })
}

/// Registers `name` as an integer outside an enum of `values` values, then outside one value
/// more (under `not`, a wider enum accepts less: no hash-set proof, the library's pairwise
/// comparison decides); the second is refused as unproven with a message holding `why`.
async fn assert_unproven_after(gateway: &TestGateway, name: &str, values: u64, why: &str) {
    let negated = |values: u64| json!({"type": "integer", "not": enum_of(0..values)});
    let first = register(gateway, name, &negated(values))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let (status, body) = problem(
        register(gateway, name, &negated(values + 1))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let reasons = body["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    assert_eq!(reasons[0]["verdict"], "unproven", "{body}");
    let message = reasons[0]["message"].as_str().unwrap();
    assert!(message.contains(why), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_enum_check_is_bounded_and_holds_up_no_other_schema() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let first = register(&gateway, "codes", &enum_of(0..50_000))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);

    // The check of the shifted enum is held once it has started (the name's lock taken, the
    // document compiled against the registry) ...
    let checks = gateway.gateway.schema_checks.clone();
    let hold = checks.hold("codes");
    let shifted = tokio::spawn(register(&gateway, "codes", &enum_of(1..50_001)).send());
    eventually(
        "the check of the shifted enum has started",
        DEADLINE,
        || async { checks.running("codes") == 1 },
    )
    .await;
    // ... and meanwhile another name registers, and a second version of `codes` waits its turn.
    let other = register(&gateway, "other", &json!({"type": "string"}))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::CREATED);
    assert_eq!(checks.running("codes"), 1);
    assert!(!shifted.is_finished());
    drop(hold);

    // Value 0 is gone: proven incompatible by the hash-set comparison, with 0 as the example.
    let (status, body) = problem(shifted.await.unwrap().unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with("incompatible-schema"),
        "{body}"
    );
    let reasons = body["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    assert_eq!(reasons[0]["verdict"], "incompatible", "{body}");
    assert_eq!(reasons[0]["example"], json!(0), "{body}");

    // Widening the enum is proven safe the same way.
    let wider = register(&gateway, "codes", &enum_of(0..50_001))
        .send()
        .await
        .unwrap();
    assert_eq!(wider.status(), StatusCode::CREATED);

    // Under `not`, a wider enum accepts less: no hash-set proof, and the library's pairwise
    // comparison is past the budget, so the check says it is unproven and why.
    assert_unproven_after(&gateway, "negated", 50_000, "more than the check's budget").await;
    assert_eq!(checks.running("codes"), 0);
    gateway.stop().await;
}

/// A check the library cannot finish quickly (its pairwise `enum` comparison under `not`, below
/// the comparison budget) is answered `unproven` once it runs past `[registry] check_timeout_ms`,
/// saying so; the registry goes on serving registrations meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_past_its_time_limit_is_unproven_and_the_registry_goes_on() {
    let (echo, records) = (
        Upstream::echo().await,
        Upstream::fixed(StatusCode::OK, license()).await,
    );
    // Inside `[registry]` (the helper writes `dir` there, then these lines).
    let gateway = standard(&echo, &records)
        .main("check_timeout_ms = 1")
        .start()
        .await;
    // A first version is compiled, not compared: the limit does not apply.
    assert_unproven_after(&gateway, "slow", 1_500, "time limit of 1 ms").await;
    let second = gateway
        .client
        .get(gateway.admin_url("/admin/schemas/slow/versions/2"))
        .bearer_auth(token("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        second.status(),
        StatusCode::NOT_FOUND,
        "nothing registered past the limit"
    );
    let other = register(&gateway, "other", &json!({"type": "string"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::CREATED);
}
