//! Forwarding (SPEC §3 phase 8): what reaches the upstream and what comes back, through the
//! schema-less `echo` service of the standard scenario, over HTTP/1.1 and h2c.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Response, StatusCode, Version};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// A response read off a raw socket, for requests a hyper-based client would rewrite.
pub struct RawResponse {
    pub status: u16,
    /// Header names in lowercase, in the order they came.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "status {}: body is not JSON ({error}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// How long a raw exchange may take before the test gives up: a safety net against a hung
/// gateway, not a timing assertion.
const RAW_DEADLINE: Duration = Duration::from_secs(20);

/// Writes `request` as is on a new connection and reads one response: its head, then a body
/// framed by `Content-Length`, by chunks, or by the end of the connection. `None` when the
/// gateway closed the connection without answering. Write errors are ignored: a gateway may
/// answer and close before it has read everything.
pub async fn raw_http(address: SocketAddr, request: &[u8]) -> Option<RawResponse> {
    let head_request = request.starts_with(b"HEAD ");
    let exchange = async {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(request).await.ok();
        let mut buffer = Vec::new();
        let mut chunk = vec![0_u8; 64 * 1024];
        loop {
            if let Some(response) = parse_response(&buffer, false, head_request) {
                return Some(response);
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return parse_response(&buffer, true, head_request),
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
        }
    };
    tokio::time::timeout(RAW_DEADLINE, exchange)
        .await
        .expect("the gateway neither answered nor closed the connection")
}

/// The response at the start of everything a closed connection delivered, if there is one.
pub fn parse_raw_response(buffer: &[u8]) -> Option<RawResponse> {
    parse_response(buffer, true, false)
}

/// A complete response at the start of `buffer`, if there is one yet.
fn parse_response(buffer: &[u8], closed: bool, head_request: bool) -> Option<RawResponse> {
    let head_end = buffer.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buffer[..head_end]).expect("response head is UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let rest = &buffer[head_end + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.clone())
    };
    let body = if head_request || status == 204 || status == 304 {
        Vec::new()
    } else if find("transfer-encoding").is_some_and(|value| value.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(length) = find("content-length") {
        let length: usize = length.parse().expect("content-length");
        if rest.len() < length {
            return None;
        }
        rest[..length].to_vec()
    } else if closed {
        rest.to_vec()
    } else {
        return None;
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

/// The data of a complete chunked body, or `None` while it is incomplete.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|window| window == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).expect("chunk size");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).expect("hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            return rest
                .windows(2)
                .any(|window| window == b"\r\n")
                .then_some(body);
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Calls the echo service; returns the response headers and what the upstream received.
async fn echoed(request: reqwest::RequestBuilder) -> (HeaderMap, Value) {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-upstream"], "echo");
    let headers = response.headers().clone();
    (headers, response.json().await.unwrap())
}

fn is_uuid(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok() && text.len() == 36
}

#[tokio::test]
async fn credentials_stay_and_gateway_headers_are_set_by_the_gateway_only() {
    let (gateway, echo, _records) = standard_gateway().await;
    let (_, seen) = echoed(
        gateway
            .call(Method::GET, "/exchange/market/echo/x", "tax")
            .header("Xgate-Consumer", "forged")
            .header("Xgate-Service", "market/forged")
            .header("Xgate-Foo", "smuggled")
            .header("XGATE-Bar", "smuggled")
            .header("Xgate-Purpose", "tax audit 2024")
            .header("Accept-Language", "zh"),
    )
    .await;
    let headers = &seen["headers"];
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert_eq!(headers["xgate-consumer"], "tax");
    assert_eq!(headers["xgate-service"], "market/echo");
    assert_eq!(headers["xgate-purpose"], "tax audit 2024");
    assert!(headers.get("xgate-foo").is_none(), "{headers}");
    assert!(headers.get("xgate-bar").is_none(), "{headers}");
    assert_eq!(headers["accept-language"], "zh", "end-to-end headers pass");
    assert!(!headers.to_string().contains(&token("tax")));

    // Without a purpose from the caller, none is invented.
    let (_, seen) = echoed(gateway.call(Method::GET, "/exchange/market/echo", "tax")).await;
    assert!(seen["headers"].get("xgate-purpose").is_none());
    assert_eq!(echo.call_count(), 2);
    gateway.stop().await;
}

#[tokio::test]
async fn a_well_formed_request_id_is_kept_and_any_other_is_replaced() {
    let (gateway, _echo, _records) = standard_gateway().await;

    let (response, seen) = echoed(
        gateway
            .call(Method::GET, "/exchange/market/echo", "tax")
            .header("X-Request-Id", "req-123.abc:4_5"),
    )
    .await;
    assert_eq!(seen["headers"]["x-request-id"], "req-123.abc:4_5");
    assert_eq!(response["x-request-id"], "req-123.abc:4_5");

    let too_long = "a".repeat(129);
    let mut generated = Vec::new();
    for malformed in [
        Some("has space"),
        Some("semi;colon"),
        Some(too_long.as_str()),
        None,
    ] {
        let mut request = gateway.call(Method::GET, "/exchange/market/echo", "tax");
        if let Some(malformed) = malformed {
            request = request.header("X-Request-Id", malformed);
        }
        let (response, seen) = echoed(request).await;
        let upstream_id = seen["headers"]["x-request-id"].as_str().unwrap().to_owned();
        assert!(is_uuid(&upstream_id), "{malformed:?} → {upstream_id}");
        assert_eq!(response["x-request-id"], upstream_id.as_str());
        generated.push(upstream_id);
    }
    generated.sort();
    generated.dedup();
    assert_eq!(generated.len(), 4, "every generated id is fresh");
    gateway.stop().await;
}

#[tokio::test]
async fn forwarded_headers_name_the_caller() {
    let (gateway, _echo, _records) = standard_gateway().await;

    let (_, seen) = echoed(gateway.call(Method::GET, "/exchange/market/echo", "tax")).await;
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["forwarded"], "for=127.0.0.1;proto=http");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");

    // The caller is no trusted proxy (`[gateway] trusted_proxies` is empty): what it claims
    // is replaced by its own address.
    let (_, seen) = echoed(
        gateway
            .call(Method::GET, "/exchange/market/echo", "tax")
            .header("X-Forwarded-For", "10.1.2.3")
            .header("Forwarded", "for=10.1.2.3;proto=https"),
    )
    .await;
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["forwarded"], "for=127.0.0.1;proto=http");
    gateway.stop().await;

    // From a trusted proxy, a chain split over several header lines is kept whole, in order,
    // and the gateway's peer appended.
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&echo, &records)
        .gateway(r#"trusted_proxies = ["127.0.0.0/8"]"#)
        .start()
        .await;
    let (_, seen) = echoed(
        gateway
            .call(Method::GET, "/exchange/market/echo", "tax")
            .header("X-Forwarded-For", "10.0.0.1")
            .header("X-Forwarded-For", "10.0.0.2, 10.0.0.3")
            .header("Forwarded", "for=10.0.0.1")
            .header("Forwarded", "for=10.0.0.2"),
    )
    .await;
    assert_eq!(
        seen["headers"]["x-forwarded-for"],
        "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"
    );
    assert_eq!(
        seen["headers"]["forwarded"],
        "for=10.0.0.1, for=10.0.0.2, for=127.0.0.1;proto=http"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn hop_by_hop_request_headers_do_not_reach_the_upstream() {
    let (gateway, echo, _records) = standard_gateway().await;
    let request = format!(
        "GET /exchange/market/echo/hop HTTP/1.1\r\n\
         Host: gateway\r\n\
         Authorization: Bearer {}\r\n\
         Connection: keep-alive, X-Hop-Secret\r\n\
         X-Hop-Secret: 1\r\n\
         Keep-Alive: timeout=5, max=100\r\n\
         TE: trailers\r\n\
         Trailer: X-Checksum\r\n\
         Proxy-Authorization: Basic cHJveHk6c2VjcmV0\r\n\
         Proxy-Connection: keep-alive\r\n\
         Upgrade: websocket\r\n\
         X-End-To-End: kept\r\n\
         \r\n",
        token("tax")
    );
    let response = raw_http(gateway.data, request.as_bytes())
        .await
        .expect("a response");
    assert_eq!(response.status, 200);
    let seen = response.json();
    let headers = seen["headers"].as_object().unwrap();
    for hop in [
        "connection",
        "x-hop-secret",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
        "authorization",
    ] {
        assert!(
            !headers.contains_key(hop),
            "{hop} reached the upstream: {seen}"
        );
    }
    assert_eq!(headers["x-end-to-end"], "kept");
    assert_eq!(headers["xgate-consumer"], "tax");
    assert_eq!(echo.call_count(), 1);
    gateway.stop().await;
}

#[tokio::test]
async fn hop_by_hop_response_headers_do_not_reach_the_caller() {
    let hop_upstream = Upstream::start(Router::new().fallback(|| async {
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("connection", "X-Up-Hop")
            .header("x-up-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic realm=\"upstream\"")
            .header("x-up-end-to-end", "kept")
            .body(Body::from("{\"ok\":true}"))
            .unwrap()
    }))
    .await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&hop_upstream, &records).start().await;
    let request = format!(
        "GET /exchange/market/echo HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token("tax")
    );
    let response = raw_http(gateway.data, request.as_bytes())
        .await
        .expect("a response");
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"ok": true}));
    assert_eq!(response.header("x-up-end-to-end"), Some("kept"));
    assert_eq!(response.header("x-up-hop"), None);
    assert_eq!(response.header("keep-alive"), None);
    assert_eq!(response.header("proxy-authenticate"), None);
    // The gateway may send its own `Connection: close`; never the upstream's.
    for (name, value) in &response.headers {
        if name == "connection" {
            assert!(!value.to_ascii_lowercase().contains("x-up-hop"), "{value}");
        }
    }
    assert!(response.header("x-request-id").is_some_and(is_uuid));
    assert_eq!(hop_upstream.call_count(), 1);
    gateway.stop().await;
}

#[tokio::test]
async fn the_path_rest_and_the_raw_query_arrive_byte_for_byte() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let cases = [
        (
            "/exchange/market/echo/a%2Bb/c;d=1/%E4%B8%AD/%20x?x=1&y=%20+z&x=2&empty=&=v&%E4%B8%AD=%2F",
            "/base/a%2Bb/c;d=1/%E4%B8%AD/%20x?x=1&y=%20+z&x=2&empty=&=v&%E4%B8%AD=%2F",
        ),
        ("/exchange/market/echo", "/base"),
        ("/exchange/market/echo/", "/base/"),
        ("/exchange/market/echo?", "/base?"),
        ("/exchange/market/echo?q=%2e%2e%2F", "/base?q=%2e%2e%2F"),
        ("/exchange/market/echo/a//b/", "/base/a//b/"),
        ("/exchange/market/echo/...", "/base/..."),
        (
            "/exchange/market/echo/it's?q='x'&a=!$()*,;:@~",
            "/base/it's?q='x'&a=!$()*,;:@~",
        ),
        ("/exchange/market/echo/a..b/%252541c", "/base/a..b/%252541c"),
    ];
    for (path, upstream) in cases {
        // Raw, so that no client library re-encodes or normalizes the target.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token("tax")
        );
        let response = raw_http(gateway.data, request.as_bytes())
            .await
            .expect("a response");
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.json()["path_and_query"], upstream, "{path}");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn dot_segments_are_refused_before_the_upstream() {
    let (gateway, echo, _records) = standard_gateway().await;
    for path in [
        "/exchange/market/echo/../secret",
        "/exchange/market/echo/..",
        "/exchange/market/echo/./x",
        "/exchange/market/echo/a/%2e%2e/secret",
        "/exchange/market/echo/%2E%2E/secret",
        "/exchange/market/echo/.%2E/secret",
        "/exchange/market/echo/%2e./secret",
        "/exchange/market/echo/%2e/secret",
        "/exchange/market/echo/a\\..\\secret",
        "/exchange/market/echo/x/..?q=1",
        // Encoded slashes: a decoding upstream (nginx) would resolve `..%2f` upwards.
        "/exchange/market/echo/a%2Fb",
        "/exchange/market/echo/a..b/%2e%2e%2fc",
        "/exchange/market/echo/..;/secret",
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token("tax")
        );
        let response = raw_http(gateway.data, request.as_bytes())
            .await
            .expect("a response");
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json"),
            "{path}"
        );
        assert_eq!(response.json()["type"], "urn:xgate:problem:not-found");
    }
    assert_eq!(echo.call_count(), 0, "the upstream was never called");
    gateway.stop().await;
}

#[tokio::test]
async fn methods_are_kept() {
    let (gateway, echo, _records) = standard_gateway().await;
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        let (_, seen) = echoed(
            gateway
                .call(method.clone(), "/exchange/market/echo/m", "tax")
                .body("payload"),
        )
        .await;
        assert_eq!(seen["method"], method.as_str());
        assert_eq!(seen["body_bytes"], 7, "{method}");
    }

    let response = gateway
        .call(Method::HEAD, "/exchange/market/echo/m", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-upstream"], "echo");
    assert!(response.headers().contains_key("x-request-id"));
    assert!(
        response.bytes().await.unwrap().is_empty(),
        "HEAD has no body"
    );
    assert_eq!(echo.call_count(), 7);

    // Raw, to see that no body bytes follow a HEAD response on the wire.
    let request = format!(
        "HEAD /exchange/market/echo HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token("tax")
    );
    let mut stream = TcpStream::connect(gateway.data).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut everything = Vec::new();
    tokio::time::timeout(RAW_DEADLINE, stream.read_to_end(&mut everything))
        .await
        .expect("the gateway closes after Connection: close")
        .unwrap();
    let text = String::from_utf8(everything).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "nothing after the head: {text}");
    gateway.stop().await;
}

/// 5 MiB of varied bytes, sent in 64 KiB pieces.
fn large_body() -> Vec<u8> {
    (0..5 * 1024 * 1024_usize)
        .map(|index| (index % 251) as u8)
        .collect()
}

#[tokio::test]
async fn a_large_request_body_streams_through_a_schemaless_service() {
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&echo, &records)
        .gateway("max_body_bytes = 1024")
        .start()
        .await;
    let body = large_body();
    let digest = hex::encode(Sha256::digest(&body));

    // Chunked: no Content-Length at all.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = body
        .chunks(64 * 1024)
        .map(|piece| Ok(piece.to_vec()))
        .collect();
    let (_, seen) = echoed(
        gateway
            .call(Method::POST, "/exchange/market/echo/upload", "tax")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                pieces,
            ))),
    )
    .await;
    assert_eq!(seen["body_bytes"], body.len());
    assert_eq!(seen["body_sha256"], digest.as_str());
    assert!(seen["headers"].get("content-length").is_none());

    // With a Content-Length.
    let (_, seen) = echoed(
        gateway
            .call(Method::PUT, "/exchange/market/echo/upload", "tax")
            .body(body.clone()),
    )
    .await;
    assert_eq!(seen["body_bytes"], body.len());
    assert_eq!(seen["body_sha256"], digest.as_str());
    assert_eq!(seen["headers"]["content-length"], body.len().to_string());

    // The limit still holds where a schema needs the body read.
    let response = gateway
        .call(Method::POST, "/exchange/market/register", "tax")
        .json(&json!({"padding": "x".repeat(2048)}))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["type"], "urn:xgate:problem:payload-too-large");
    gateway.stop().await;
}

#[tokio::test]
async fn a_large_response_body_streams_back() {
    let big = Upstream::start(Router::new().fallback(|| async {
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> = large_body()
            .chunks(64 * 1024)
            .map(|piece| Ok(piece.to_vec()))
            .collect();
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/octet-stream")
            .body(Body::from_stream(futures_util::stream::iter(pieces)))
            .unwrap()
    }))
    .await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&big, &records)
        .gateway("max_body_bytes = 1024")
        .start()
        .await;
    let response = gateway
        .call(Method::GET, "/exchange/market/echo/download", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let received = response.bytes().await.unwrap();
    let expected = large_body();
    assert_eq!(received.len(), expected.len());
    assert_eq!(Sha256::digest(&received), Sha256::digest(&expected));
    gateway.stop().await;
}

#[tokio::test]
async fn h2c_and_http1_are_served_on_one_port() {
    let (gateway, _echo, records) = standard_gateway().await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();

    let response = h2
        .get(gateway.url("/exchange/market/licenses/91350100M000100Y43"))
        .bearer_auth(token("tax"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.json::<Value>().await.unwrap(), license());

    let response = h2.get(gateway.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);

    // The echo service over h2: the gateway forwards over HTTP/1.1 with the same rules.
    let response = h2
        .post(gateway.url("/exchange/market/echo/h2?q=1"))
        .bearer_auth(token("tax"))
        .header("X-Request-Id", "h2-call")
        .body("over h2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["path_and_query"], "/base/h2?q=1");
    assert_eq!(seen["body_bytes"], 7);
    assert_eq!(seen["headers"]["x-request-id"], "h2-call");
    assert_eq!(seen["headers"]["xgate-consumer"], "tax");
    assert!(seen["headers"].get("authorization").is_none());

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
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(response.json::<Value>().await.unwrap(), license());
    assert_eq!(records.call_count(), 2);
    gateway.stop().await;
}

#[tokio::test]
async fn upstream_statuses_and_bodies_pass_through_without_schemas() {
    let teapot = Upstream::start(Router::new().fallback(|| async {
        Response::builder()
            .status(StatusCode::IM_A_TEAPOT)
            .header("content-type", "text/plain")
            .header("x-teapot", "short and stout")
            .body(Body::from("I'm a teapot"))
            .unwrap()
    }))
    .await;
    let missing = Upstream::fixed(
        StatusCode::NOT_FOUND,
        json!({"error": "no licence 91350100M000100Y43"}),
    )
    .await;
    let gateway = standard(&teapot, &missing).start().await;

    let response = gateway
        .call(Method::POST, "/exchange/market/echo/brew", "tax")
        .body("tea")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.headers()["x-teapot"], "short and stout");
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), "I'm a teapot");

    // A 404 from a schema'd service's upstream is not a record: passed on unvalidated.
    let response = gateway
        .call(
            Method::GET,
            "/exchange/market/licenses/91350100M000100Y43",
            "tax",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"error": "no licence 91350100M000100Y43"})
    );
    assert_eq!(missing.call_count(), 1);
    gateway.stop().await;
}
