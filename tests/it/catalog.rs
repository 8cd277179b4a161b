//! GET `/catalog` (SPEC §4): each caller sees exactly the services and certificate types it may
//! use, with methods, paths and the schema versions in force now.

use http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn catalog(gateway: &TestGateway, department: &str) -> Value {
    let response = gateway
        .call(Method::GET, "/catalog", department)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{department}");
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// A `[certificates.business-license]` issued by `registry-office` for `tax` only.
fn with_certificate_issuer(config: ConfigDir) -> ConfigDir {
    config.department(
        "registry-office",
        "department",
        r#"
[certificates.business-license]
lookup = "http://127.0.0.1:9/certificates/{id}"
schema = "license"
id_format = "cn-uscc"
consumers = ["tax"]
"#,
    )
}

#[tokio::test]
async fn a_consumer_sees_exactly_the_services_it_may_call() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let body = catalog(&gateway, "tax").await;
    assert_eq!(body["department"], "tax");
    assert_eq!(
        body["services"],
        json!([
            {
                "provider": "market",
                "service": "echo",
                "path": "/exchange/market/echo",
                "methods": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                "request_schema": null,
                "response_schema": null
            },
            {
                "provider": "market",
                "service": "licenses",
                "path": "/exchange/market/licenses",
                "methods": ["GET"],
                "request_schema": null,
                "response_schema": {"name": "license", "version": 1, "pinned": false}
            },
            {
                "provider": "market",
                "service": "register",
                "path": "/exchange/market/register",
                "methods": ["POST"],
                "request_schema": {"name": "license", "version": 1, "pinned": true},
                "response_schema": {"name": "license", "version": 1, "pinned": false}
            }
        ]),
        "{body}"
    );
    assert_eq!(body["certificate_types"], json!([]));
    gateway.stop().await;
}

#[tokio::test]
async fn a_projected_consumer_sees_its_fields_and_an_outsider_sees_nothing() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let civil = catalog(&gateway, "civil").await;
    assert_eq!(
        civil["services"],
        json!([{
            "provider": "market",
            "service": "licenses",
            "path": "/exchange/market/licenses",
            "methods": ["GET"],
            "request_schema": null,
            "response_schema": {"name": "license", "version": 1, "pinned": false},
            "fields": ["/uscc", "/name"]
        }]),
        "{civil}"
    );

    let outsider = catalog(&gateway, "outsider").await;
    assert_eq!(
        outsider,
        json!({"department": "outsider", "services": [], "certificate_types": []})
    );

    let anonymous = gateway
        .client
        .get(gateway.url("/catalog"))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(anonymous).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "urn:xgate:problem:unauthenticated");
    let wrong_token = gateway
        .client
        .get(gateway.url("/catalog"))
        .bearer_auth("token-nobody")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(wrong_token).await.0, StatusCode::UNAUTHORIZED);
    gateway.stop().await;
}

#[tokio::test]
async fn the_catalog_names_the_latest_version_unless_pinned() {
    let echo = Upstream::echo().await;
    let records = Upstream::echo().await;
    let mut version_2 = license_schema();
    version_2["properties"]["address"] = json!({"type": "string"});
    let gateway = standard(&echo, &records)
        .schema("license", 2, version_2)
        .start()
        .await;
    let body = catalog(&gateway, "tax").await;
    let register = &body["services"][2];
    assert_eq!(register["service"], "register");
    assert_eq!(
        register["request_schema"],
        json!({"name": "license", "version": 1, "pinned": true})
    );
    assert_eq!(
        register["response_schema"],
        json!({"name": "license", "version": 2, "pinned": false})
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_certificate_type_is_listed_for_its_consumers_only() {
    let echo = Upstream::echo().await;
    let records = Upstream::echo().await;
    let gateway = with_certificate_issuer(standard(&echo, &records))
        .start()
        .await;
    let tax = catalog(&gateway, "tax").await;
    assert_eq!(
        tax["certificate_types"],
        json!([{
            "type": "business-license",
            "issuer": "registry-office",
            "path": "/certificates/business-license/{id}",
            "schema": {"name": "license", "version": 1, "pinned": false},
            "id_format": "cn-uscc"
        }]),
        "{tax}"
    );
    // The lookup URL is the issuer's internal address: never shown to callers.
    assert!(!tax.to_string().contains("127.0.0.1"), "{tax}");
    for other in ["civil", "outsider", "registry-office"] {
        let body = catalog(&gateway, other).await;
        assert_eq!(body["certificate_types"], json!([]), "{other}");
    }
    gateway.stop().await;
}
