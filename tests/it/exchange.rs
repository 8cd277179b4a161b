//! The exchange path end to end: every success and failure status of SPEC §3.

use http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_consumer_reads_a_validated_record() {
    let (gateway, _echo, records) = standard_gateway().await;
    let response = gateway
        .call(
            Method::GET,
            "/exchange/market/licenses/91350100M000100Y43",
            "tax",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, license());
    assert_eq!(records.call_count(), 1);
    gateway.stop().await;
}

#[tokio::test]
async fn a_projection_keeps_only_the_consumers_fields() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let response = gateway
        .call(Method::GET, "/exchange/market/licenses/x", "civil")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"uscc": "91350100M000100Y43", "name": "福州闽江数据科技有限公司"})
    );
}

#[tokio::test]
async fn callers_without_valid_credentials_are_unauthenticated() {
    let (gateway, echo, _records) = standard_gateway().await;
    let path = gateway.url("/exchange/market/echo/x");
    let attempts = [
        None,
        Some("Bearer wrong-token".to_owned()),
        Some(format!("Basic {}", token("tax"))),
        Some("Bearer ".to_owned()),
        Some(token("tax")),
    ];
    for authorization in attempts {
        let mut request = gateway.client.get(&path);
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let (status, body) = problem(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(body["type"], "urn:xgate:problem:unauthenticated");
    }
    assert_eq!(echo.call_count(), 0);
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let response = gateway
        .client
        .get(&path)
        .header("authorization", format!("bearer {}", token("tax")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_providers_and_services_are_not_found() {
    let (gateway, echo, _records) = standard_gateway().await;
    for path in [
        "/exchange/nobody/echo",
        "/exchange/market/nothing",
        "/exchange/market",
        "/exchange/",
        "/exchange/MARKET/echo",
        "/elsewhere",
    ] {
        let response = gateway.call(Method::GET, path, "tax").send().await.unwrap();
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["type"], "urn:xgate:problem:not-found");
    }
    assert_eq!(echo.call_count(), 0);
}

#[tokio::test]
async fn consumers_and_methods_are_authorized() {
    let (gateway, echo, records) = standard_gateway().await;
    let (status, body) = problem(
        gateway
            .call(Method::GET, "/exchange/market/echo", "outsider")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["type"], "urn:xgate:problem:forbidden");

    // A consumer of `licenses` using a method it does not offer: 405 with Allow.
    let response = gateway
        .call(Method::DELETE, "/exchange/market/licenses/x", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET");
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["type"], "urn:xgate:problem:method-not-allowed");

    // A non-consumer learns nothing about methods: 403 before 405.
    let response = gateway
        .call(Method::DELETE, "/exchange/market/licenses/x", "outsider")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(echo.call_count() + records.call_count(), 0);
}

#[tokio::test]
async fn requests_are_validated_before_they_are_sent() {
    let (gateway, _echo, records) = standard_gateway().await;
    let ok = gateway
        .call(Method::POST, "/exchange/market/register", "tax")
        .json(&license())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(records.call_count(), 1);

    let mut bad = license();
    bad["uscc"] = json!("91350100M000100Y44");
    bad["established_on"] = json!("2016/08/18");
    bad["legal_representative"]["resident_id"] = json!("110105194912310021");
    bad.as_object_mut().unwrap().remove("status");
    bad["extra"] = json!(1);
    let response = gateway
        .call(Method::POST, "/exchange/market/register", "tax")
        .json(&bad)
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["type"], "urn:xgate:problem:schema-validation");
    assert_eq!(body["detail"], "5 violations of license@1");
    let mut found: Vec<(String, String)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
            (
                e["pointer"].as_str().unwrap().to_owned(),
                e["keyword"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    let expected = [
        ("", "additionalProperties"),
        ("", "required"),
        ("/established_on", "format"),
        ("/legal_representative/resident_id", "format"),
        ("/uscc", "format"),
    ];
    assert_eq!(
        found,
        expected.map(|(p, k)| (p.to_owned(), k.to_owned())).to_vec()
    );
    assert_eq!(
        records.call_count(),
        1,
        "an invalid record is not forwarded"
    );
}

#[tokio::test]
async fn problems_speak_chinese_to_chinese_callers() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let mut bad = license();
    bad["uscc"] = json!("91350100M000100Y44");
    let response = gateway
        .call(Method::POST, "/exchange/market/register", "tax")
        .header("accept-language", "zh-CN,zh;q=0.9,en;q=0.5")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-language"], "zh");
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["title"], "记录不符合数据规范");
    assert_eq!(body["detail"], "记录有 1 处不符合 license@1");
    assert_eq!(body["errors"][0]["message"], "不是有效的统一社会信用代码");

    let response = gateway
        .client
        .get(gateway.url("/exchange/market/echo"))
        .header("accept-language", "zh")
        .send()
        .await
        .unwrap();
    let (_, body) = problem(response).await;
    assert_eq!(body["title"], "需要身份认证");
}

#[tokio::test]
async fn request_bodies_must_be_bounded_json() {
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&echo, &records)
        .gateway("max_body_bytes = 2048")
        .start()
        .await;
    let register = "/exchange/market/register";
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            gateway
                .call(Method::POST, register, "tax")
                .header("content-type", "text/plain")
                .body(license().to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            gateway
                .call(Method::POST, register, "tax")
                .header("content-type", "application/json; charset=latin1")
                .body(license().to_string()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            gateway
                .call(Method::POST, register, "tax")
                .header("content-type", "application/json")
                .body("{\"uscc\": "),
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            gateway
                .call(Method::POST, register, "tax")
                .header("content-type", "application/json")
                .body(format!("{{\"name\": \"{}\"}}", "x".repeat(4096))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
        ),
    ];
    for (request, expected_status, expected_type) in cases {
        let (status, body) = problem(request.send().await.unwrap()).await;
        assert_eq!(status, expected_status, "{body}");
        assert_eq!(body["type"], format!("urn:xgate:problem:{expected_type}"));
    }
    assert_eq!(records.call_count(), 0);
    let ok = gateway
        .call(Method::POST, register, "tax")
        .header("content-type", "application/json; charset=UTF-8")
        .body(license().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

/// A service of provider `market` named `svc` with a response schema, pointing at `upstream`.
fn single_service(upstream: &str) -> ConfigDir {
    ConfigDir::new()
        .schema("license", 1, license_schema())
        .gateway("upstream_timeout_ms = 300")
        .department(
            "market",
            "department",
            &format!(
                "[services.svc]\nupstream = \"{upstream}\"\nmethods = [\"GET\"]\nresponse_schema = \"license\"\nconsumers = [\"tax\"]\n"
            ),
        )
        .department("tax", "department", "")
}

#[tokio::test]
async fn a_refused_connection_is_a_bad_gateway() {
    // Bind and drop a listener: its port now refuses connections.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let gateway = single_service(&format!("http://{address}/x")).start().await;
    let response = gateway
        .call(Method::GET, "/exchange/market/svc", "tax")
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["type"], "urn:xgate:problem:upstream-unavailable");
    assert!(
        !body.to_string().contains(&address.port().to_string()),
        "the upstream address is internal: {body}"
    );
}

#[tokio::test]
async fn a_reset_connection_is_a_bad_gateway() {
    // An upstream that accepts and closes every connection without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let gateway = single_service(&format!("http://{address}/x")).start().await;
    let response = gateway
        .call(Method::GET, "/exchange/market/svc", "tax")
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["type"], "urn:xgate:problem:upstream-unavailable");
    task.abort();
}

#[tokio::test]
async fn a_silent_upstream_times_out() {
    let silent = Upstream::start(axum::Router::new().fallback(|| async {
        std::future::pending::<()>().await;
        "never"
    }))
    .await;
    let gateway = single_service(&silent.url("/x")).start().await;
    let response = gateway
        .call(Method::GET, "/exchange/market/svc", "tax")
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["type"], "urn:xgate:problem:upstream-timeout");
}

#[tokio::test]
async fn invalid_upstream_answers_are_not_passed_on() {
    let mut invalid = license();
    invalid["uscc"] = json!("SECRET-PERSONAL-DATA");
    let cases = [
        Upstream::fixed(StatusCode::OK, invalid).await,
        Upstream::start(
            axum::Router::new().fallback(|| async { "SECRET-PERSONAL-DATA, not JSON" }),
        )
        .await,
        Upstream::start(axum::Router::new().fallback(|| async {
            (
                [("content-type", "application/json")],
                "{\"uscc\": \"SECRET-PERSONAL-DATA\"",
            )
        }))
        .await,
    ];
    for upstream in &cases {
        let gateway = single_service(&upstream.url("/x")).start().await;
        let response = gateway
            .call(Method::GET, "/exchange/market/svc", "tax")
            .send()
            .await
            .unwrap();
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(body["type"], "urn:xgate:problem:upstream-invalid-response");
        assert!(!body.to_string().contains("SECRET-PERSONAL-DATA"), "{body}");
        assert_eq!(upstream.call_count(), 1);
    }
}

#[tokio::test]
async fn error_statuses_of_the_upstream_pass_through_unvalidated() {
    let upstream =
        Upstream::fixed(StatusCode::NOT_FOUND, json!({"error": "no such licence"})).await;
    let gateway = single_service(&upstream.url("/x")).start().await;
    let response = gateway
        .call(Method::GET, "/exchange/market/svc/123", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"error": "no such licence"}));
}

/// A request schema holds the bodies requests carry: a GET, DELETE or HEAD without a body (no
/// `Content-Length`, `Content-Length: 0`, an h2 head that ends the stream) is forwarded
/// unvalidated; one with a body is validated; a POST without one is validated as the empty body
/// it is (415 without a JSON type, 400 with one).
#[tokio::test]
async fn a_request_schema_applies_to_requests_that_carry_a_body() {
    let echo = Upstream::echo().await;
    let echo_url = echo.url("/base");
    let gateway = ConfigDir::new()
        .schema("license", 1, license_schema())
        .department(
            "market",
            "department",
            &format!(
                r#"
[services.lookup]
upstream = "{echo_url}"
methods = ["GET", "POST", "DELETE", "HEAD"]
request_schema = "license@1"
consumers = ["tax"]
"#
            ),
        )
        .department("tax", "department", "")
        .start()
        .await;
    let path = "/exchange/market/lookup/91350100M000100Y43";
    let call = |method: Method| gateway.call(method, path, "tax");
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    // What is sent, the status it gets, and whether it reaches the upstream without a body.
    let cases = [
        (
            "GET without a body",
            call(Method::GET),
            StatusCode::OK,
            true,
        ),
        (
            "DELETE without a body",
            call(Method::DELETE),
            StatusCode::OK,
            true,
        ),
        ("HEAD", call(Method::HEAD), StatusCode::OK, false),
        (
            "GET with Content-Length: 0",
            call(Method::GET).header("content-length", "0"),
            StatusCode::OK,
            true,
        ),
        (
            "h2 GET whose head ends the stream",
            h2.get(gateway.url(path)).bearer_auth(token("tax")),
            StatusCode::OK,
            true,
        ),
        // A GET that carries a body is held to the schema like any other request.
        (
            "GET with an invalid record",
            call(Method::GET).json(&json!({"uscc": 12})),
            StatusCode::UNPROCESSABLE_ENTITY,
            false,
        ),
        (
            "GET with a valid record",
            call(Method::GET).json(&license()),
            StatusCode::OK,
            false,
        ),
        // A POST without a body is still validated: the empty body is no record.
        (
            "POST without a body",
            call(Method::POST),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            false,
        ),
        (
            "POST without a body, typed JSON",
            call(Method::POST).header("content-type", "application/json"),
            StatusCode::BAD_REQUEST,
            false,
        ),
    ];
    for (what, request, status, forwarded_without_body) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{what}");
        if forwarded_without_body {
            let echoed: Value = response.json().await.unwrap();
            assert_eq!(echoed["body_bytes"], 0, "{what}: {echoed}");
        }
    }
    assert_eq!(echo.call_count(), 6);
    gateway.stop().await;
}
