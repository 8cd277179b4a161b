//! Who the provider is told the caller is (issue 15, point 5), through real gateways and a real
//! echo upstream: forwarding headers believed only from `[gateway] trusted_proxies`, other
//! client-address headers never passed on, and the gateway's own exchange id on every call,
//! however the caller chose its `X-Request-Id`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use http::{Response, StatusCode};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// Forwarding and client-address headers a hostile caller (or a proxy) sends.
const FORGED: [(&str, &str); 15] = [
    ("x-forwarded-for", "10.0.0.1"),
    ("x-forwarded-for", "10.0.0.2, 10.0.0.3"),
    ("forwarded", "for=10.0.0.1;by=10.0.0.254"),
    ("x-forwarded-host", "intranet.example"),
    ("x-forwarded-port", "8443"),
    ("x-forwarded-prefix", "/admin"),
    ("x-forwarded-proto", "https"),
    ("x-real-ip", "10.9.9.9"),
    ("true-client-ip", "10.9.9.9"),
    ("x-client-ip", "10.9.9.9"),
    ("x-cluster-client-ip", "10.9.9.9"),
    ("cf-connecting-ip", "10.9.9.9"),
    ("fastly-client-ip", "10.9.9.9"),
    ("x-originating-ip", "10.9.9.9"),
    ("xgate-exchange-id", "forged-exchange-id"),
];

/// The client-address headers of other proxies: dropped from everyone.
const CLIENT_ADDRESS: [&str; 7] = [
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-originating-ip",
];

/// Calls the echo service with the forged headers; returns what the provider received.
async fn forward_forged(gateway: &TestGateway) -> Value {
    let mut request = gateway.call(Method::GET, "/exchange/market/echo/who", "tax");
    for (name, value) in FORGED {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echoed: Value = response.json().await.unwrap();
    echoed["headers"].clone()
}

#[tokio::test]
async fn forged_forwarding_headers_from_an_untrusted_peer_are_replaced_or_dropped() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let received = forward_forged(&gateway).await;
    // The peer (this test, on 127.0.0.1) is not a trusted proxy: the provider hears of it
    // alone, whatever the caller wrote.
    assert_eq!(received["x-forwarded-for"], "127.0.0.1", "{received}");
    assert_eq!(
        received["forwarded"], "for=127.0.0.1;proto=http",
        "{received}"
    );
    assert_eq!(received["x-forwarded-proto"], "http", "{received}");
    for name in
        CLIENT_ADDRESS
            .iter()
            .chain(&["x-forwarded-host", "x-forwarded-port", "x-forwarded-prefix"])
    {
        assert_eq!(received[*name], Value::Null, "{name} passed: {received}");
    }
    assert_ne!(received["xgate-exchange-id"], "forged-exchange-id");
    gateway.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_s_forwarding_chain_is_appended_to() {
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&echo, &records)
        .gateway(r#"trusted_proxies = ["192.0.2.0/24", "127.0.0.1", "2001:db8::/32"]"#)
        .start()
        .await;
    let received = forward_forged(&gateway).await;
    assert_eq!(
        received["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1",
        "{received}"
    );
    assert_eq!(
        received["forwarded"], "for=10.0.0.1;by=10.0.0.254, for=127.0.0.1;proto=http",
        "{received}"
    );
    assert_eq!(received["x-forwarded-host"], "intranet.example");
    assert_eq!(received["x-forwarded-port"], "8443");
    assert_eq!(received["x-forwarded-prefix"], "/admin");
    // How the proxy reached the gateway: the gateway says so itself.
    assert_eq!(received["x-forwarded-proto"], "http");
    for name in CLIENT_ADDRESS {
        assert_eq!(received[name], Value::Null, "{name} passed: {received}");
    }
    assert_ne!(received["xgate-exchange-id"], "forged-exchange-id");
    gateway.stop().await;

    // The same call through a gateway that trusts other proxies only.
    let gateway = standard(&echo, &records)
        .gateway(r#"trusted_proxies = ["192.0.2.0/24"]"#)
        .start()
        .await;
    let received = forward_forged(&gateway).await;
    assert_eq!(received["x-forwarded-for"], "127.0.0.1", "{received}");
    assert_eq!(received["x-forwarded-host"], Value::Null, "{received}");
    gateway.stop().await;
}

#[test]
fn invalid_trusted_proxies_are_reported_by_xgate_check() {
    let config = standard_config_without_upstreams().gateway(
        r#"trusted_proxies = ["10.0.0.0/8", "proxy.internal", "10.0.0.1/8", "192.0.2.7/33", "::1"]"#,
    );
    config.write_main();
    let (status, text) = run_binary("check", &config, &[]);
    assert!(!status.success(), "{text}");
    for (key, reason) in [
        (
            "gateway.trusted_proxies[1]",
            "neither an IP address nor a CIDR range",
        ),
        ("gateway.trusted_proxies[2]", "written 10.0.0.0/8"),
        (
            "gateway.trusted_proxies[3]",
            "neither an IP address nor a CIDR range",
        ),
    ] {
        assert!(
            text.lines()
                .any(|line| line.contains(key) && line.contains(reason)),
            "{key}: {reason} not reported:\n{text}"
        );
    }
    for fine in ["trusted_proxies[0]", "trusted_proxies[4]"] {
        assert!(!text.contains(fine), "{fine} reported:\n{text}");
    }
}

/// The standard configuration with upstream addresses that are never called.
fn standard_config_without_upstreams() -> ConfigDir {
    ConfigDir::new()
        .schema("license", 1, license_schema())
        .department(
            "market",
            "department",
            r#"
[services.echo]
upstream = "http://127.0.0.1:9/base"
methods = ["GET"]
consumers = ["tax"]
"#,
        )
        .department("tax", "department", "")
}

fn exchange_id_of(response: &reqwest::Response) -> String {
    response.headers()["xgate-exchange-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn calls_with_the_same_request_id_get_distinct_exchange_ids_upstream_in_answers_and_in_the_trail()
 {
    // A certificate issuer that notes the exchange id of each call it receives.
    let seen_by_issuer: Arc<Mutex<Vec<String>>> = Arc::default();
    let noted = seen_by_issuer.clone();
    let issuer = Upstream::start(Router::new().fallback(move |request: Request| {
        let noted = noted.clone();
        async move {
            if let Some(id) = request.headers().get("xgate-exchange-id") {
                noted.lock().unwrap().push(id.to_str().unwrap().to_owned());
            }
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"uscc": "91350100M000100Y43", "name": "甲", "status": "active"})
                        .to_string(),
                ))
                .unwrap()
        }
    }))
    .await;
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&echo, &records)
        .department(
            "issuer",
            "department",
            &format!(
                r#"
[certificates.licence]
lookup = "{}"
schema = "license"
id_format = "cn-uscc"
consumers = ["tax"]
"#,
                issuer.url("/certs/{id}")
            ),
        )
        .start()
        .await;

    let mut answered = Vec::new();
    let mut upstream = Vec::new();
    for path in ["/exchange/market/echo/1", "/exchange/market/echo/2"] {
        let response = gateway
            .call(Method::GET, path, "tax")
            .header("x-request-id", "same-id")
            .header("xgate-exchange-id", "forged-exchange-id")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-request-id"], "same-id");
        answered.push(exchange_id_of(&response));
        let echoed: Value = response.json().await.unwrap();
        assert_eq!(echoed["headers"]["x-request-id"], "same-id");
        upstream.push(
            echoed["headers"]["xgate-exchange-id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // A refusal carries one too.
    let refused = gateway
        .call(Method::GET, "/exchange/market/nothing", "tax")
        .header("x-request-id", "same-id")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    answered.push(exchange_id_of(&refused));
    // Two certificate lookups with the same request id: the first asks the issuer.
    for _ in 0..2 {
        let response = gateway
            .call(
                Method::GET,
                "/certificates/licence/91350100M000100Y43",
                "tax",
            )
            .header("x-request-id", "same-id")
            .header("xgate-purpose", "account opening")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        answered.push(exchange_id_of(&response));
    }

    assert_eq!(
        answered[..2],
        upstream[..],
        "the provider got the ids answered"
    );
    assert_eq!(
        seen_by_issuer.lock().unwrap().as_slice(),
        &answered[3..4],
        "the issuer got the id of the lookup that asked it"
    );
    let distinct: BTreeSet<&String> = answered.iter().collect();
    assert_eq!(distinct.len(), answered.len(), "{answered:?}");
    for id in &answered {
        let parsed = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(parsed.get_version_num(), 7, "{id}");
    }

    let mut trail: Vec<Value> = entries(&gateway, "exchange").await;
    trail.extend(entries(&gateway, "certificate").await);
    trail.sort_by_key(|entry| entry["sequence"].as_u64().unwrap());
    let recorded: Vec<&str> = trail
        .iter()
        .map(|entry| entry["exchange_id"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, answered, "{trail:?}");
    assert!(trail.iter().all(|entry| entry["request_id"] == "same-id"));
    gateway.stop().await;
}
