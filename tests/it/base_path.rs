//! A service's base path holds against a real nginx upstream (which percent-decodes and
//! normalizes a path before matching it): no path rest of a caller's reaches another location
//! of the provider's server, however it is encoded, and ordinary rests arrive byte for byte.

use crate::forwarding::{RawResponse, raw_http};
use crate::helpers::*;

/// nginx's locations: the service's base, and another service's path next to it.
const LOCATIONS: &str = r#"
    location /base/ { return 200 "base <$request_uri>"; }
    location = /base { return 200 "base <$request_uri>"; }
    location /internal/ { return 200 "internal <$request_uri>"; }
    location / { return 404 "elsewhere <$request_uri>"; }
"#;

/// Rests an upstream could resolve outside `/base`: the issue's, and their relatives.
const HOSTILE_RESTS: &[&str] = &[
    "/..%2finternal/secret",
    "/..%2Finternal/secret",
    "/%2e%2e%2finternal/secret",
    "/%2E%2E%2Finternal/secret",
    "/.%2e%2finternal/secret",
    "/a%2F..%2F..%2Finternal/secret",
    "/a/b%2F..%2F..%2F..%2Finternal/secret",
    "/..;/internal/secret",
    "/..;x=1/internal/secret",
    "/.;x/../internal/secret",
    "/..%3b/internal/secret",
    "/..%5cinternal/secret",
    "/..%5Cinternal%5Csecret",
    "/%252e%252e/internal/secret",
    "/%252e%252e%252finternal/secret",
    "/%25252e%25252e%25252finternal/secret",
    "/a%252f..%252f..%252finternal/secret",
    "/internal%00/secret",
    "/..",
    "/../internal/secret",
    "/%2e%2e/internal/secret",
    "/a/../../internal/secret",
];

/// Rests that stay under the base, forwarded exactly as sent.
const ORDINARY_RESTS: &[&str] = &[
    "/records/91350100M000100Y43",
    "/a%20b",
    "/a+b%2Bc",
    "/%E4%B8%AD%E6%96%87/%E8%AE%B0%E5%BD%95",
    "/a;v=1/b;w=2",
    "/...",
    "/.well/known",
    "/a..b/c",
    "/100%25",
    "/%2541",
    "",
    "/",
];

#[tokio::test]
#[cfg_attr(
    xgate_missing = "nginx",
    ignore = "nginx is not installed (apt-get install nginx-light)"
)]
async fn no_rest_leaves_the_base_path_of_a_decoding_upstream() {
    let nginx = Nginx::start(LOCATIONS).await;
    let gateway = ConfigDir::new()
        .department(
            "market",
            "department",
            &format!(
                "[services.decoded]\nupstream = \"{}\"\nmethods = [\"GET\"]\nconsumers = [\"tax\"]\n",
                nginx.url("/base")
            ),
        )
        .department("tax", "department", "")
        .start()
        .await;

    // Straight to nginx, the issue's path does reach the other location: the test would prove
    // nothing if nginx did not decode.
    let direct = gateway
        .client
        .get(nginx.url("/base/..%2finternal/secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        direct.text().await.unwrap(),
        "internal </base/..%2finternal/secret>"
    );

    for rest in HOSTILE_RESTS {
        let response = get(&gateway, rest).await;
        assert_eq!(
            response.status,
            404,
            "{rest}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json"),
            "{rest}"
        );
        assert_eq!(response.json()["type"], "urn:xgate:problem:not-found");
    }

    for rest in ORDINARY_RESTS {
        let response = get(&gateway, rest).await;
        assert_eq!(response.status, 200, "{rest}");
        let expected = if rest.is_empty() {
            "/base".to_owned()
        } else {
            format!("/base{rest}")
        };
        assert_eq!(
            String::from_utf8_lossy(&response.body),
            format!("base <{expected}>"),
            "{rest} arrives byte for byte"
        );
    }

    // Through the gateway nginx answered only under the base: every request it logged, bar the
    // direct one above, was matched inside `/base`.
    let log = nginx.log();
    let through_gateway: Vec<&str> = log
        .lines()
        .filter(|line| !line.starts_with("</base/..%2finternal/secret>"))
        .collect();
    assert_eq!(through_gateway.len(), ORDINARY_RESTS.len(), "{log}");
    for line in through_gateway {
        assert!(
            line.contains("> </base"),
            "nginx resolved outside the base: {line}"
        );
        assert!(line.ends_with("<200>"), "{line}");
    }
    gateway.stop().await;
}

/// `GET /exchange/market/decoded{rest}` as the caller wrote it: no client library in between
/// to normalize the path.
async fn get(gateway: &TestGateway, rest: &str) -> RawResponse {
    let request = format!(
        "GET /exchange/market/decoded{rest} HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token("tax")
    );
    raw_http(gateway.data, request.as_bytes())
        .await
        .expect("a response")
}
