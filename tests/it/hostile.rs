//! Hostile input (SPEC §12 Reliability, §10 problems): nothing a caller sends — malformed,
//! oversized, deeply nested, non-UTF-8, slow or plain garbage — crashes the gateway or stops it
//! serving others, and every refusal the gateway's own code makes is a problem document.
//!
//! Each kind of input is a check over a [`Hostile`] gateway; each check has a focused test, and
//! one test runs them all against a single gateway before a normal exchange still succeeds.

use std::time::Duration;

use http::StatusCode;
use http::header::HeaderValue;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::forwarding::raw_http;
use crate::helpers::*;

/// The body limit of the hostile gateway: room for 100,000-deep nesting, small enough to pass.
const MAX_BODY_BYTES: usize = 600_000;
/// The head limit of the hostile gateway: 100 KB header values reach the gateway's own code.
const MAX_HEADER_BYTES: usize = 128 * 1024;
/// How deep the nesting attacks go.
const DEPTH: usize = 100_000;
/// How long a raw connection may stay open before the test gives up: a safety net against a
/// hung gateway, not a timing assertion.
const RAW_DEADLINE: Duration = Duration::from_secs(20);

/// A gateway over the standard scenario with tight limits, and a client that opens a new
/// connection for every request (the short header read timeout closes idle pooled ones).
struct Hostile {
    gateway: TestGateway,
    client: reqwest::Client,
    echo: Upstream,
    records: Upstream,
    /// Normal exchanges made so far (each reaches the records upstream once).
    served: usize,
}

impl Hostile {
    async fn start() -> Hostile {
        let echo = Upstream::echo().await;
        let records = Upstream::fixed(StatusCode::OK, license()).await;
        let gateway = standard(&echo, &records)
            .gateway(&format!(
                "max_body_bytes = {MAX_BODY_BYTES}\nmax_header_bytes = {MAX_HEADER_BYTES}\nheader_read_timeout_ms = 500"
            ))
            .start()
            .await;
        Hostile {
            gateway,
            client: unpooled_client(),
            echo,
            records,
            served: 0,
        }
    }

    fn call(&self, method: Method, path: &str, department: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.gateway.url(path))
            .bearer_auth(token(department))
    }

    fn anonymous(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.gateway.url(path))
    }

    /// A normal exchange through the schema'd `register` service still succeeds, and the
    /// upstreams have seen exactly the normal exchanges.
    async fn assert_serving(&mut self) {
        let response = self
            .call(Method::POST, "/exchange/market/register", "tax")
            .json(&license())
            .send()
            .await
            .expect("the gateway still answers");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.json::<Value>().await.unwrap(), license());
        self.served += 1;
        assert_eq!(
            self.records.call_count(),
            self.served,
            "no refused request reached the upstream"
        );
        let response = self.anonymous(Method::GET, "/readyz").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// Reads a problem response and checks it gives nothing internal away.
    async fn problem(&self, response: reqwest::Response) -> (StatusCode, Value) {
        let (status, body) = problem(response).await;
        self.assert_no_internals(&body.to_string());
        (status, body)
    }

    fn assert_no_internals(&self, text: &str) {
        for internal in [
            self.echo.address.to_string(),
            self.records.address.to_string(),
            format!("127.0.0.1:{}", self.records.address.port()),
            "/tmp/".to_owned(),
            "/work/".to_owned(),
            ".toml".to_owned(),
            "schemas/".to_owned(),
            "src/".to_owned(),
            "panicked".to_owned(),
            token("tax"),
        ] {
            assert!(!text.contains(&internal), "{internal:?} leaked in {text}");
        }
    }
}

fn unpooled_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Writes `bytes` on a new connection (from a task, so a gateway that stops reading cannot
/// block the test) and returns everything the gateway sends until it closes the connection.
async fn send_raw(hostile: &Hostile, bytes: Vec<u8>) -> Vec<u8> {
    let stream = TcpStream::connect(hostile.gateway.data).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // The write half is handed back rather than dropped: dropping it would half-close the
    // connection, which a gateway may treat as the client going away.
    let writing = tokio::spawn(async move {
        writer.write_all(&bytes).await.ok();
        writer
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(RAW_DEADLINE, async {
        let mut chunk = vec![0_u8; 16 * 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(count) => received.extend_from_slice(&chunk[..count]),
            }
        }
    })
    .await;
    writing.abort();
    assert!(
        read.is_ok(),
        "the gateway neither answered nor closed: {:?}",
        String::from_utf8_lossy(&received)
    );
    received
}

/// The status of a raw HTTP/1.1 response, or `None` when the gateway just closed.
fn raw_status(received: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(received.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// What the gateway sent back on a raw connection after framing it could not read: nothing (it
/// closed), or a problem document (SPEC §10) with one of `statuses`, of the type that status
/// means, closing the connection. Returns the status.
fn assert_problem_or_closed(received: &[u8], statuses: &[u16], what: &str) -> Option<u16> {
    if received.is_empty() {
        return None;
    }
    let shown = String::from_utf8_lossy(received).into_owned();
    let response = crate::forwarding::parse_raw_response(received)
        .unwrap_or_else(|| panic!("{what}: not an HTTP response: {shown:?}"));
    assert!(statuses.contains(&response.status), "{what}: {shown:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{what}: {shown:?}"
    );
    assert_eq!(response.header("connection"), Some("close"), "{what}");
    let problem = response.json();
    let expected = match response.status {
        400 => "urn:xgate:problem:malformed-request",
        414 => "urn:xgate:problem:uri-too-long",
        431 => "urn:xgate:problem:header-too-large",
        other => panic!("{what}: unexpected status {other}"),
    };
    assert_eq!(problem["type"], expected, "{what}");
    assert_eq!(problem["status"], response.status, "{what}");
    let request_id = problem["request_id"].as_str().expect("a request id");
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");
    assert_eq!(response.header("x-request-id"), Some(request_id), "{what}");
    Some(response.status)
}

/// `[[[[...]]]]`, `DEPTH` deep.
fn deep_array() -> Vec<u8> {
    let mut body = vec![b'['; DEPTH];
    body.extend(std::iter::repeat_n(b']', DEPTH));
    body
}

/// `{"":{"":...1...}}`, `DEPTH` deep.
fn deep_object() -> Vec<u8> {
    let mut body = b"{\"\":".repeat(DEPTH);
    body.push(b'1');
    body.extend(std::iter::repeat_n(b'}', DEPTH));
    body
}

/// Nesting far past the parser's recursion limit is malformed JSON (400), both on the
/// exchange path and on `/validate`, and per line of NDJSON.
async fn check_deep_nesting(hostile: &mut Hostile) {
    for path in ["/exchange/market/register", "/validate/license"] {
        for body in [deep_array(), deep_object()] {
            assert!(body.len() < MAX_BODY_BYTES);
            let response = hostile
                .call(Method::POST, path, "tax")
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let (status, problem) = hostile.problem(response).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(problem["type"], "urn:xgate:problem:malformed-json");
        }
    }
    let mut lines = deep_array();
    lines.push(b'\n');
    lines.extend_from_slice(license().to_string().as_bytes());
    lines.push(b'\n');
    let response = hostile
        .call(Method::POST, "/validate/license", "tax")
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
    assert_eq!(results.len(), 2, "{text}");
    assert_eq!(results[0]["line"], 1);
    assert_eq!(results[0]["valid"], false);
    assert_eq!(results[1]["line"], 2);
    assert_eq!(results[1]["valid"], true);
}

/// Bytes that are not UTF-8, and escapes that are not Unicode, are malformed JSON.
async fn check_non_utf8(hostile: &mut Hostile) {
    let bodies: [&[u8]; 4] = [
        b"{\"name\": \"\xff\xfe\"}",
        b"\xff\xfe{\x00}\x00",
        b"{\"name\": \"\xc3\x28\"}",
        br#"{"name": "\ud800"}"#,
    ];
    for path in ["/exchange/market/register", "/validate/license"] {
        for body in bodies {
            let response = hostile
                .call(Method::POST, path, "tax")
                .header("content-type", "application/json")
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            let (status, problem) = hostile.problem(response).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body:?}");
            assert_eq!(problem["type"], "urn:xgate:problem:malformed-json");
        }
    }
}

/// Bodies that are not the JSON record the schema wants, by kind: malformed or empty (400),
/// the wrong JSON type (422 with errors), too large (413, declared or not), not JSON at all
/// (415). `+json` media types are JSON.
async fn check_unexpected_bodies(hostile: &mut Hostile) {
    let register = "/exchange/market/register";
    for malformed in [
        &b"{\"uscc\": "[..],
        b"",
        b"   ",
        b"{} trailing",
        b"{'a': 1}",
        b"NaN",
    ] {
        let response = hostile
            .call(Method::POST, register, "tax")
            .header("content-type", "application/json")
            .body(malformed.to_vec())
            .send()
            .await
            .unwrap();
        let (status, problem) = hostile.problem(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{malformed:?}");
        assert_eq!(problem["type"], "urn:xgate:problem:malformed-json");
    }

    for wrong_type in [
        json!([]),
        json!([license()]),
        json!(42),
        json!("text"),
        json!(null),
    ] {
        let response = hostile
            .call(Method::POST, register, "tax")
            .json(&wrong_type)
            .send()
            .await
            .unwrap();
        let (status, problem) = hostile.problem(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{wrong_type}");
        assert_eq!(problem["type"], "urn:xgate:problem:schema-validation");
        let errors = problem["errors"].as_array().expect("an errors array");
        assert!(!errors.is_empty(), "{problem}");
        for error in errors {
            assert!(error["pointer"].is_string(), "{error}");
            assert!(error["keyword"].is_string(), "{error}");
            assert!(error["message"].is_string(), "{error}");
        }
    }

    // Over the limit: refused from Content-Length before reading, and while reading without it.
    let oversized = json!({"name": "x".repeat(MAX_BODY_BYTES)}).to_string();
    let response = hostile
        .call(Method::POST, register, "tax")
        .header("content-type", "application/json")
        .body(oversized.clone())
        .send()
        .await
        .unwrap();
    let (status, problem) = hostile.problem(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem["type"], "urn:xgate:problem:payload-too-large");
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = oversized
        .as_bytes()
        .chunks(16 * 1024)
        .map(|piece| Ok(piece.to_vec()))
        .collect();
    let response = hostile
        .call(Method::POST, register, "tax")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap();
    let (status, problem) = hostile.problem(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem["type"], "urn:xgate:problem:payload-too-large");

    let record = license().to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=iso-8859-1"),
        Some("application/jsonx"),
        None,
    ] {
        let mut request = hostile
            .call(Method::POST, register, "tax")
            .body(record.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, problem) = hostile.problem(request.send().await.unwrap()).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(problem["type"], "urn:xgate:problem:unsupported-media-type");
    }

    let response = hostile
        .call(Method::POST, register, "tax")
        .header("content-type", "application/merge-patch+json")
        .body(record)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    hostile.served += 1;
}

/// A request head over the size limit, or with more headers than allowed, is refused (431)
/// or the connection closed.
async fn check_oversized_heads(hostile: &mut Hostile, header_value_bytes: usize) {
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Huge: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(header_value_bytes)
    );
    let received = send_raw(hostile, huge.into_bytes()).await;
    assert_eq!(
        assert_problem_or_closed(&received, &[431], "oversized head"),
        Some(431)
    );

    let mut crowded = String::from("GET /healthz HTTP/1.1\r\nHost: gateway\r\n");
    for index in 0..1000 {
        crowded.push_str(&format!("X-Header-{index}: {index}\r\n"));
    }
    crowded.push_str("Connection: close\r\n\r\n");
    let received = send_raw(hostile, crowded.into_bytes()).await;
    assert_eq!(
        assert_problem_or_closed(&received, &[431], "too many headers"),
        Some(431)
    );
}

/// Reads until the gateway closes the connection; fails the test when it keeps it open.
async fn assert_closed_by_gateway(stream: &mut TcpStream, what: &str) {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(RAW_DEADLINE, async {
        let mut chunk = [0_u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(count) => received.extend_from_slice(&chunk[..count]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the gateway kept a {what} connection open");
    assert!(
        matches!(raw_status(&received), None | Some(408)),
        "{what}: {:?}",
        String::from_utf8_lossy(&received)
    );
}

/// Slow clients — half a request head, nothing at all, or the start of the HTTP/2 preface —
/// do not hold up others, and the gateway closes them once the header read time is up.
async fn check_slow_clients(hostile: &mut Hostile) {
    let mut half_head = TcpStream::connect(hostile.gateway.data).await.unwrap();
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(hostile.gateway.data).await.unwrap();
    let mut half_preface = TcpStream::connect(hostile.gateway.data).await.unwrap();
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();

    hostile.assert_serving().await;

    assert_closed_by_gateway(&mut half_head, "half-head").await;
    assert_closed_by_gateway(&mut silent, "silent").await;
    assert_closed_by_gateway(&mut half_preface, "half-preface").await;
}

/// Bytes that are not HTTP get a 400 or a closed connection.
async fn check_garbage(hostile: &mut Hostile) {
    let garbage: Vec<Vec<u8>> = vec![
        // A TLS ClientHello on the plain port.
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8f\x1a\x00\x00\x00\r\n\r\n".to_vec(),
        b"\x00\x01\x02\x03\xff\xfe\xfd\r\n\r\n".to_vec(),
        b"hello gateway, how are you?\r\n\r\n".to_vec(),
        b"GET\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/9.9\r\nHost: gateway\r\n\r\n".to_vec(),
        b"GET /healthz\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nContent-Length: 99999999999999999999999\r\n\r\n"
            .to_vec(),
        b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Control: a\x01b\r\n\r\n".to_vec(),
        b"GET /he\x00lthz HTTP/1.1\r\nHost: gateway\r\n\r\n".to_vec(),
        std::iter::repeat_n(b'\n', 100_000).collect(),
        std::iter::repeat_n(0xAA_u8, 300_000).collect(),
    ];
    for bytes in garbage {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
        let received = send_raw(hostile, bytes).await;
        assert_problem_or_closed(&received, &[400, 431], &shown);
    }

    // The HTTP/2 preface followed by frames that make no sense: the connection is closed.
    let mut h2_garbage = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2_garbage.extend(std::iter::repeat_n(0xFF_u8, 1024));
    send_raw(hostile, h2_garbage).await;

    // A chunked body whose framing breaks mid-way: a problem or a close, never the upstream.
    let broken_chunks = format!(
        "POST /exchange/market/register HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         5\r\n{{\"a\":\r\nzz\r\n\r\n",
        token("tax")
    );
    let received = send_raw(hostile, broken_chunks.into_bytes()).await;
    assert_problem_or_closed(&received, &[400], "broken chunks");
}

/// Absurd but well-formed methods are refused with a problem (405 where the path exists,
/// 404 where it does not); methods with characters no method has are a 400.
async fn check_absurd_methods(hostile: &mut Hostile) {
    let long_method = "A".repeat(10_000);
    for (method, path, expected) in [
        (long_method.as_str(), "/exchange/market/echo/x", 405),
        (long_method.as_str(), "/healthz", 405),
        ("G~E!T", "/exchange/market/register", 405),
        ("BREW", "/validate/license", 405),
        ("BREW", "/catalog", 405),
        ("PROPFIND", "/nowhere", 404),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token("tax")
        );
        let response = raw_http(hostile.gateway.data, request.as_bytes())
            .await
            .expect("a response");
        assert_eq!(response.status, expected, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json"),
            "{path}"
        );
        let problem = response.json();
        assert_eq!(problem["status"], expected);
        hostile.assert_no_internals(&String::from_utf8_lossy(&response.body));
        if expected == 405 {
            assert_eq!(problem["type"], "urn:xgate:problem:method-not-allowed");
            assert!(
                response
                    .header("allow")
                    .is_some_and(|allow| !allow.is_empty())
            );
        }
    }
    for bad in ["GE(T", "GET\x7f", "G\u{e9}T"] {
        let request = format!("{bad} /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n");
        let received = send_raw(hostile, request.into_bytes()).await;
        assert_problem_or_closed(&received, &[400], bad);
    }
    assert_eq!(hostile.echo.call_count(), 0);
}

/// Path traversal on the data plane finds nothing (404 problem), whatever the encoding.
async fn check_traversal(hostile: &mut Hostile) {
    for path in [
        "/validate/..%2F..%2Fetc%2Fpasswd",
        "/validate/../x",
        "/validate/..",
        "/validate/%2e%2e",
        "/validate/license%2F..%2F..%2Flicense",
        "/validate/license/../../etc/passwd",
        "/validate/..%5C..%5Cwindows",
        "/../../etc/passwd",
        "/exchange/..%2F..%2Fetc/passwd",
        "/exchange/market/..%2Fregister",
        "/exchange/%2e%2e/market/echo",
    ] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
            token("tax")
        );
        let response = raw_http(hostile.gateway.data, request.as_bytes())
            .await
            .expect("a response");
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json"),
            "{path}"
        );
        assert_eq!(response.json()["type"], "urn:xgate:problem:not-found");
        let body = String::from_utf8_lossy(&response.body).into_owned();
        assert!(!body.contains("root:"), "{body}");
        hostile.assert_no_internals(&body);
    }
    assert_eq!(hostile.echo.call_count(), 0);
}

/// Hostile header values — a 100 KB `Accept-Language` or `Authorization`, oversized or
/// binary request ids — get the ordinary problems.
async fn check_hostile_header_values(hostile: &mut Hostile) {
    let register = "/exchange/market/register";

    // 100 KB of language preferences: still a language, still a 401 problem.
    let chinese = "zh-CN;q=0.9, ".repeat(100_000 / 13);
    let response = hostile
        .anonymous(Method::POST, register)
        .header("accept-language", chinese.trim_end_matches(", "))
        .json(&license())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-language"], "zh");
    let (status, problem) = hostile.problem(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(problem["title"], "需要身份认证");
    for language in [
        "x".repeat(100_000),
        ";q=".repeat(30_000),
        ",".repeat(100_000),
    ] {
        let response = hostile
            .call(Method::POST, register, "tax")
            .header("accept-language", language)
            .json(&json!(42))
            .send()
            .await
            .unwrap();
        let (status, _) = hostile.problem(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    // 100 KB credentials: unknown, so 401, and never echoed back.
    let long_secret = "S".repeat(100_000);
    for authorization in [
        format!("Bearer {long_secret}"),
        format!("Basic {long_secret}"),
        long_secret.clone(),
        "Bearer ".to_owned(),
        "Bearer".to_owned(),
    ] {
        let response = hostile
            .anonymous(Method::POST, register)
            .header("authorization", authorization)
            .json(&license())
            .send()
            .await
            .unwrap();
        let (status, problem) = hostile.problem(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(problem["type"], "urn:xgate:problem:unauthenticated");
        assert!(!problem.to_string().contains("SSSSSSSS"));
    }
    let response = hostile
        .anonymous(Method::POST, register)
        .header(
            "authorization",
            HeaderValue::from_bytes(b"Bearer \xff\xfe\xfd").unwrap(),
        )
        .json(&license())
        .send()
        .await
        .unwrap();
    let (status, _) = hostile.problem(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Request ids the gateway will not repeat: replaced by a fresh UUID.
    let long_id = "a".repeat(4096);
    let hostile_ids = [
        HeaderValue::from_str(&long_id).unwrap(),
        HeaderValue::from_bytes(b"id\xff\xfe").unwrap(),
        HeaderValue::from_static("id\twith\ttabs"),
        HeaderValue::from_static("<script>alert(1)</script>"),
        HeaderValue::from_static("id\"; DROP TABLE audit; --"),
    ];
    for id in hostile_ids {
        let response = hostile
            .call(Method::POST, register, "tax")
            .header("x-request-id", id.clone())
            .json(&json!("not a record"))
            .send()
            .await
            .unwrap();
        let returned = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(uuid::Uuid::parse_str(&returned).is_ok(), "{returned}");
        let (status, problem) = hostile.problem(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["request_id"], returned.as_str());
    }
    // A control character in a header is refused by the HTTP parser itself.
    let request = format!(
        "POST {register} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\n\
         X-Request-Id: id\x01\x1b[31m\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        token("tax")
    );
    let received = send_raw(hostile, request.into_bytes()).await;
    assert_problem_or_closed(&received, &[400], "control character in a header");
}

#[tokio::test]
async fn deeply_nested_json_is_malformed_and_the_gateway_keeps_serving() {
    let mut hostile = Hostile::start().await;
    check_deep_nesting(&mut hostile).await;
    hostile.assert_serving().await;
    hostile.gateway.stop().await;
}

#[tokio::test]
async fn json_that_is_not_utf8_is_malformed() {
    let mut hostile = Hostile::start().await;
    check_non_utf8(&mut hostile).await;
    hostile.assert_serving().await;
    hostile.gateway.stop().await;
}

#[tokio::test]
async fn bodies_that_are_not_the_record_get_their_problem() {
    let mut hostile = Hostile::start().await;
    check_unexpected_bodies(&mut hostile).await;
    hostile.assert_serving().await;
    hostile.gateway.stop().await;
}

#[tokio::test]
async fn oversized_and_overcrowded_request_heads_are_refused() {
    // The default head limit (64 KiB) against a 100 KB header value.
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let mut hostile = Hostile {
        gateway: standard(&echo, &records).start().await,
        client: unpooled_client(),
        echo,
        records,
        served: 0,
    };
    check_oversized_heads(&mut hostile, 100_000).await;
    hostile.assert_serving().await;
    hostile.gateway.stop().await;
}

#[tokio::test]
async fn slow_clients_are_cut_off_without_holding_up_others() {
    let mut hostile = Hostile::start().await;
    check_slow_clients(&mut hostile).await;
    hostile.assert_serving().await;
    hostile.gateway.stop().await;
}

#[tokio::test]
async fn garbage_on_the_socket_gets_a_400_or_a_close() {
    let mut hostile = Hostile::start().await;
    check_garbage(&mut hostile).await;
    hostile.assert_serving().await;
    hostile.gateway.stop().await;
}

/// Framing hyper refuses before the gateway's code sees a request is answered with the
/// gateway's problem documents, not hyper's bare status lines: a head that does not parse
/// (400 `malformed-request`), too large or with too many headers (431 `header-too-large`), a
/// target too long (414 `uri-too-long`); also after an earlier answer on the same connection.
#[tokio::test]
async fn hypers_own_answers_are_problem_documents() {
    let mut hostile = Hostile::start().await;
    let mut crowded = String::from("GET /healthz HTTP/1.1\r\nHost: gateway\r\n");
    for index in 0..1000 {
        crowded.push_str(&format!("X-Header-{index}: {index}\r\n"));
    }
    crowded.push_str("\r\n");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("words", b"hello gateway, how are you?\r\n\r\n".to_vec(), 400),
        (
            "unknown version",
            b"GET /healthz HTTP/9.9\r\nHost: gateway\r\n\r\n".to_vec(),
            400,
        ),
        (
            "length overflow",
            b"POST /healthz HTTP/1.1\r\nHost: gateway\r\nContent-Length: 99999999999999999999999\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "two lengths",
            b"POST /healthz HTTP/1.1\r\nHost: gateway\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                .to_vec(),
            400,
        ),
        (
            "oversized head",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Huge: {}\r\n\r\n",
                "a".repeat(2 * MAX_HEADER_BYTES)
            )
            .into_bytes(),
            431,
        ),
        ("too many headers", crowded.into_bytes(), 431),
        (
            "target too long",
            format!(
                "GET /healthz?{} HTTP/1.1\r\nHost: gateway\r\n\r\n",
                "q".repeat(70_000)
            )
            .into_bytes(),
            414,
        ),
    ];
    for (what, bytes, status) in cases {
        let received = send_raw(&hostile, bytes).await;
        assert_eq!(
            assert_problem_or_closed(&received, &[status], what),
            Some(status),
            "{what}"
        );
    }

    // After an answer on the same connection (pipelined, HTTP/1.1 and HTTP/1.0 keep-alive).
    for first in [
        "GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n",
        "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let received = send_raw(&hostile, format!("{first}garbage\r\n\r\n").into_bytes()).await;
        let first_answer = crate::forwarding::parse_raw_response(&received).expect("an answer");
        assert_eq!(first_answer.status, 200, "{first}");
        let head_end = received
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .expect("a head")
            + 4;
        let end = head_end + first_answer.body.len();
        let second = &received[end..];
        let version = if first.contains("HTTP/1.0") {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        assert!(
            second.starts_with(format!("{version} 400 ").as_bytes()),
            "{first}: {:?}",
            String::from_utf8_lossy(second)
        );
        let rewritten = [b"HTTP/1.1", &second[8..]].concat();
        assert_eq!(
            assert_problem_or_closed(&rewritten, &[400], first),
            Some(400)
        );
    }
    hostile.assert_serving().await;
    hostile.gateway.stop().await;
}

/// h2 would answer a header list over its limit with a bare 431 of its own: a head over
/// `max_header_bytes` (but within twice that, which h2 still takes) gets the gateway's problem
/// document, and the connection goes on serving.
#[tokio::test]
async fn an_oversized_http2_head_is_a_problem_document() {
    let mut hostile = Hostile::start().await;
    let stream = TcpStream::connect(hostile.gateway.data).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = |huge: usize| {
        http::Request::get("http://gateway/exchange/market/echo/x")
            .header("authorization", format!("Bearer {}", token("tax")))
            .header("x-huge", "a".repeat(huge))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    for huge in [MAX_HEADER_BYTES + 1, MAX_HEADER_BYTES * 3 / 2] {
        let response = sender.send_request(request(huge)).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let problem: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["type"], "urn:xgate:problem:header-too-large");
        assert_eq!(problem["status"], 431);
    }
    let response = sender.send_request(request(10)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(hostile.echo.call_count(), 1);
    hostile.assert_serving().await;
    hostile.gateway.stop().await;
}

#[tokio::test]
async fn absurd_methods_get_problems() {
    let mut hostile = Hostile::start().await;
    check_absurd_methods(&mut hostile).await;
    hostile.assert_serving().await;
    hostile.gateway.stop().await;
}

#[tokio::test]
async fn path_traversal_on_the_data_plane_finds_nothing() {
    let mut hostile = Hostile::start().await;
    check_traversal(&mut hostile).await;
    hostile.assert_serving().await;
    hostile.gateway.stop().await;
}

#[tokio::test]
async fn hostile_header_values_get_ordinary_problems() {
    let mut hostile = Hostile::start().await;
    check_hostile_header_values(&mut hostile).await;
    hostile.assert_serving().await;
    hostile.gateway.stop().await;
}

#[tokio::test]
async fn a_request_still_succeeds_after_all_the_hostile_ones() {
    let mut hostile = Hostile::start().await;
    check_deep_nesting(&mut hostile).await;
    check_non_utf8(&mut hostile).await;
    check_unexpected_bodies(&mut hostile).await;
    check_oversized_heads(&mut hostile, 2 * MAX_HEADER_BYTES).await;
    check_slow_clients(&mut hostile).await;
    check_garbage(&mut hostile).await;
    check_absurd_methods(&mut hostile).await;
    check_traversal(&mut hostile).await;
    check_hostile_header_values(&mut hostile).await;

    // After all of that, an ordinary exchange through the gateway still succeeds.
    hostile.assert_serving().await;
    let response = hostile
        .call(Method::GET, "/exchange/market/echo/after?all=1", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["path_and_query"], "/base/after?all=1");
    assert_eq!(hostile.echo.call_count(), 1);
    hostile.gateway.stop().await;
}
