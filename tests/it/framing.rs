//! A caller's broken HTTP framing is the caller's fault: a chunked body with a malformed chunk,
//! or a body cut short of its `Content-Length`, is a 400 `malformed-request` problem counted
//! and audited as `invalid_request` (never as the provider's failure), and the upstream
//! connection that carried the partial request is closed, never pooled.

use std::sync::{Arc, Mutex};

use http::{Response, StatusCode};
use http_body_util::BodyExt;
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::forwarding::RawResponse;
use crate::helpers::*;

/// How long a raw connection may stay open before the test gives up: a safety net against a
/// hung gateway, not a timing assertion.
const RAW_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// What the upstream saw of each request body: its length, or that it broke off.
type Seen = Arc<Mutex<Vec<Result<usize, String>>>>;

/// An upstream that reads each request body to its end (or its break) and answers `{}`.
async fn reading_upstream() -> (TrackedUpstream, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let upstream = TrackedUpstream::start(Arc::new(move |request| {
        let record = record.clone();
        Box::pin(async move {
            let body = request.into_body().collect().await;
            record.lock().unwrap().push(
                body.map(|body| body.to_bytes().len())
                    .map_err(|e| e.to_string()),
            );
            Response::builder()
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{}"))
                .unwrap()
        })
    }))
    .await;
    (upstream, seen)
}

/// Provider `market`: `stream` (no schema: the body streams through) and `register` (a request
/// schema: the body is read first), both on `upstream`.
async fn framing_gateway(upstream: &TrackedUpstream) -> TestGateway {
    let url = upstream.url("/base");
    ConfigDir::new()
        .schema("license", 1, license_schema())
        .department(
            "market",
            "department",
            &format!(
                "[services.stream]\nupstream = \"{url}\"\nmethods = [\"POST\"]\nconsumers = [\"tax\"]\n\
                 [services.register]\nupstream = \"{url}\"\nmethods = [\"POST\"]\nrequest_schema = \"license\"\nconsumers = [\"tax\"]\n"
            ),
        )
        .department("tax", "department", "")
        .department("auditor", "auditor", "")
        .start()
        .await
}

/// The broken bodies: a request head for `path` followed by framing that breaks, and whether
/// the caller then half-closes its side of the connection.
fn broken_requests(path: &str) -> Vec<(&'static str, Vec<u8>, bool)> {
    let head = |framing: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\n{framing}\r\n\r\n",
            token("tax")
        )
    };
    let chunked = head("Transfer-Encoding: chunked");
    vec![
        (
            "chunk size overflow",
            format!("{chunked}5\r\n{{\"a\":\r\nfffffffffffffffffffffff\r\n1\r\n}}\r\n0\r\n\r\n")
                .into_bytes(),
            false,
        ),
        (
            "bad chunk terminator",
            format!("{chunked}5\r\n{{\"a\":XX1\r\n}}\r\n0\r\n\r\n").into_bytes(),
            false,
        ),
        (
            "body cut short, then half-closed",
            format!("{}{{\"uscc\": \"9135", head("Content-Length: 100")).into_bytes(),
            true,
        ),
    ]
}

/// Sends `bytes` on a new connection (half-closing it after when `half_close`) and reads what
/// comes back until the gateway closes.
async fn send(gateway: &TestGateway, bytes: &[u8], half_close: bool) -> Option<RawResponse> {
    let mut stream = TcpStream::connect(gateway.data).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    if half_close {
        stream.shutdown().await.unwrap();
    }
    let mut received = Vec::new();
    let read = tokio::time::timeout(RAW_DEADLINE, stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the gateway neither answered nor closed");
    crate::forwarding::parse_raw_response(&received)
}

/// The trail's entries for one service.
async fn trail(gateway: &TestGateway, service: &str) -> Vec<Value> {
    let page: Value = gateway
        .client
        .get(gateway.admin_url(&format!("/audit/exchanges?service={service}&limit=100")))
        .bearer_auth(token("auditor"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_broken_caller_body_is_the_callers_400_and_its_upstream_connection_is_closed() {
    let (upstream, seen) = reading_upstream().await;
    let gateway = framing_gateway(&upstream).await;

    for service in ["stream", "register"] {
        for (what, bytes, half_close) in broken_requests(&format!("/exchange/market/{service}")) {
            let response = send(&gateway, &bytes, half_close).await;
            let response = response.unwrap_or_else(|| panic!("{service}, {what}: no answer"));
            assert_eq!(response.status, 400, "{service}, {what}");
            assert_eq!(
                response.header("content-type"),
                Some("application/problem+json"),
                "{service}, {what}"
            );
            assert_eq!(
                response.json()["type"],
                "urn:xgate:problem:malformed-request",
                "{service}, {what}"
            );
            // The connection that carried the partial request is closed, not pooled.
            eventually(
                "the partial request's upstream connection closes",
                DEADLINE,
                || async { upstream.open() == 0 },
            )
            .await;
            assert_eq!(gateway.gateway.upstream.idle_connections(), 0);
        }
    }
    // Streamed bodies reached the provider, which saw them break off; bodies read for a schema
    // never left the gateway.
    let seen_so_far = seen.lock().unwrap().clone();
    assert!(seen_so_far.len() <= 3, "{seen_so_far:?}");
    assert!(seen_so_far.iter().all(Result::is_err), "{seen_so_far:?}");

    for service in ["stream", "register"] {
        let entries = trail(&gateway, service).await;
        assert_eq!(entries.len(), 3, "{entries:?}");
        for entry in entries {
            assert_eq!(entry["outcome"], "invalid_request", "{entry}");
            assert_eq!(entry["status"], 400, "{entry}");
        }
    }
    let metrics = metrics_text(&gateway).await;
    for service in ["stream", "register"] {
        assert!(
            metrics.contains(&format!(
                "xgate_exchanges_total{{consumer=\"tax\",outcome=\"invalid_request\",provider=\"market\",service=\"{service}\"}} 3"
            )),
            "{metrics}"
        );
    }
    assert!(!metrics.contains("outcome=\"upstream_error\""), "{metrics}");

    // An ordinary streamed call still goes through, on a fresh upstream connection.
    let accepted = upstream.accepted();
    let response = gateway
        .call(Method::POST, "/exchange/market/stream/x", "tax")
        .body("{\"a\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen.lock().unwrap().last(), Some(&Ok(8)));
    assert_eq!(upstream.accepted(), accepted + 1);
    gateway.stop().await;
}
