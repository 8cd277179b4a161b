//! Header rules of the exchange path (SPEC §3, phase "forward"): what reaches the upstream and
//! what comes back.
//!
//! The caller's `Authorization` never leaves the gateway; hop-by-hop headers (RFC 9110 §7.6.1,
//! and every header `Connection` names) are dropped both ways; `Xgate-*` headers are set only by
//! the gateway; `X-Request-Id` is kept when well formed and generated otherwise.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::tls::ClientCertificate;

/// `X-Request-Id`: correlates a call across consumer, gateway, provider and audit trail.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `Xgate-Consumer`: the identified calling department.
pub const XGATE_CONSUMER: HeaderName = HeaderName::from_static("xgate-consumer");
/// `Xgate-Service`: `provider/service` being called.
pub const XGATE_SERVICE: HeaderName = HeaderName::from_static("xgate-service");
/// `Xgate-Purpose`: the caller's stated reason for the call.
pub const XGATE_PURPOSE: HeaderName = HeaderName::from_static("xgate-purpose");
/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Hop-by-hop headers of RFC 9110 §7.6.1 plus the non-standard ones proxies also drop.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The longest request id kept from a caller.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The caller's `X-Request-Id` when it is 1-128 characters of `A-Z a-z 0-9 - _ . :`, otherwise
/// a fresh UUID. A malformed id is replaced rather than refused: correlation must not fail calls.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID_LEN
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map(str::to_owned)
        .unwrap_or_else(new_request_id)
}

/// A fresh request id: a random (version 4) UUID from the thread's userspace generator, which
/// is seeded by the operating system and needs no system call per id.
pub fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Whether `name` is one of the hop-by-hop headers every proxy drops.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    remove_connection_named(headers);
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Removes every header a `Connection` header names (before `Connection` itself goes).
fn remove_connection_named(headers: &mut HeaderMap) {
    for name in connection_named(headers) {
        headers.remove(name);
    }
}

/// The headers that `Connection` headers name (none without a `Connection` header).
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// The calling side of one client connection as the forwarding headers name it. The peer of a
/// connection never changes, so the header values are built once per connection.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The caller's address.
    pub peer: SocketAddr,
    /// `http` or `https`, as the caller reached the gateway.
    pub scheme: &'static str,
    /// The caller's address as an `X-Forwarded-For` element.
    forwarded_for: HeaderValue,
    /// The caller's `Forwarded` element (`for=...;proto=...`).
    forwarded: HeaderValue,
    /// The client certificate verified in the connection's TLS handshake, if it sent one:
    /// the connection's identity, read once.
    pub client_certificate: Option<Arc<ClientCertificate>>,
}

impl Origin {
    /// The origin of a connection from `peer` over `scheme`.
    pub fn new(peer: SocketAddr, scheme: &'static str) -> Origin {
        let ip = peer.ip();
        let element = match ip {
            IpAddr::V4(v4) => format!("for={v4};proto={scheme}"),
            IpAddr::V6(v6) => format!("for=\"[{v6}]\";proto={scheme}"),
        };
        // Addresses and our own scheme names are always valid header text.
        let text = |value: String| {
            HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("unknown"))
        };
        Origin {
            peer,
            scheme,
            forwarded_for: text(ip.to_string()),
            forwarded: text(element),
            client_certificate: None,
        }
    }

    /// The same origin, identified by the client certificate verified in its handshake.
    pub fn with_client_certificate(
        mut self,
        client_certificate: Option<Arc<ClientCertificate>>,
    ) -> Origin {
        self.client_certificate = client_certificate;
        self
    }
}

/// What the gateway knows of one call when it forwards it.
pub struct ForwardContext<'a> {
    /// The identified consumer.
    pub consumer: &'a str,
    /// `provider/service`.
    pub service: &'a HeaderValue,
    /// The request id (the caller's or generated).
    pub request_id: &'a str,
    /// Where the call came from.
    pub origin: &'a Origin,
}

/// The headers sent upstream: the caller's, less credentials, hop-by-hop and `Xgate-*` headers,
/// plus the gateway's. `body_rewritten` drops `Content-Length`, which no longer describes the body.
pub fn upstream_request_headers(
    incoming: &HeaderMap,
    context: &ForwardContext<'_>,
    body_rewritten: bool,
) -> HeaderMap {
    let purpose = incoming.get(XGATE_PURPOSE).cloned();
    let mut headers = HeaderMap::with_capacity(incoming.len() + 6);
    for (name, value) in incoming {
        let drop = name == header::AUTHORIZATION
            || name == header::HOST
            || name == header::EXPECT
            || name == X_REQUEST_ID
            || (body_rewritten && name == header::CONTENT_LENGTH)
            || is_hop_by_hop(name)
            || name.as_str().starts_with("xgate-");
        if !drop {
            headers.append(name.clone(), value.clone());
        }
    }
    for name in connection_named(incoming) {
        headers.remove(name);
    }

    let origin = context.origin;
    let forwarded_for = match joined_values(&headers, &X_FORWARDED_FOR) {
        Some(previous) => header_text(format!("{previous}, {}", origin.peer.ip())),
        None => Some(origin.forwarded_for.clone()),
    };
    put(&mut headers, X_FORWARDED_FOR, forwarded_for);
    let forwarded = match joined_values(&headers, &header::FORWARDED) {
        Some(previous) => header_text(format!(
            "{previous}, {}",
            origin.forwarded.to_str().unwrap_or_default()
        )),
        None => Some(origin.forwarded.clone()),
    };
    put(&mut headers, header::FORWARDED, forwarded);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(origin.scheme));
    insert(&mut headers, XGATE_CONSUMER, context.consumer);
    headers.insert(XGATE_SERVICE, context.service.clone());
    insert(&mut headers, X_REQUEST_ID, context.request_id);
    if let Some(purpose) = purpose {
        headers.insert(XGATE_PURPOSE, purpose);
    }
    headers
}

/// The headers returned to the caller: the upstream's less hop-by-hop ones, with the request id.
/// `body_rewritten` drops `Content-Length` (the gateway frames the body it produced).
pub fn downstream_response_headers(
    mut headers: HeaderMap,
    request_id: &str,
    body_rewritten: bool,
) -> HeaderMap {
    remove_hop_by_hop(&mut headers);
    if body_rewritten {
        headers.remove(header::CONTENT_LENGTH);
    }
    insert(&mut headers, X_REQUEST_ID, request_id);
    headers
}

/// Every textual value of a list-valued header as one comma-separated list, or `None` when it
/// has none. A chain split over several header lines (which proxies may do) is kept whole.
fn joined_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Inserts a value built from configuration or checked input; a value that is not a valid
/// header (which checked input never is) is left out rather than failing the call.
fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    put(headers, name, HeaderValue::from_str(value).ok());
}

/// Sets `name` to `value`, or removes it when there is no valid value.
fn put(headers: &mut HeaderMap, name: HeaderName, value: Option<HeaderValue>) {
    match value {
        Some(value) => {
            headers.insert(name, value);
        }
        None => {
            headers.remove(name);
        }
    }
}

/// A header value from text built of header values and addresses.
fn header_text(text: String) -> Option<HeaderValue> {
    HeaderValue::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn request_ids_are_kept_only_when_well_formed() {
        assert_eq!(
            request_id(&map(&[("x-request-id", "abc-123:x.y_z")])),
            "abc-123:x.y_z"
        );
        for bad in ["", "has space", "semi;colon", &"a".repeat(129), "ümlaut"] {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(bad) {
                headers.insert(X_REQUEST_ID, value);
            }
            let id = request_id(&headers);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 36, "a generated UUID");
        }
    }

    #[test]
    fn connection_named_headers_are_hop_by_hop() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("accept", "application/json"),
        ]);
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("accept"));
    }

    #[test]
    fn upstream_headers_follow_the_rules() {
        let incoming = map(&[
            ("authorization", "Bearer secret"),
            ("xgate-consumer", "forged"),
            ("Xgate-Anything", "forged"),
            ("xgate-purpose", "license check"),
            ("x-forwarded-for", "10.0.0.1"),
            ("content-length", "12"),
            ("accept-language", "zh"),
        ]);
        let service = HeaderValue::from_static("market-regulation/business-licenses");
        let origin = Origin::new("[::1]:5000".parse().unwrap(), "http");
        let context = ForwardContext {
            consumer: "tax",
            service: &service,
            request_id: "rid-1",
            origin: &origin,
        };
        let headers = upstream_request_headers(&incoming, &context, true);
        assert!(!headers.contains_key("authorization"));
        assert!(!headers.contains_key("xgate-anything"));
        assert!(!headers.contains_key("content-length"));
        assert_eq!(headers["xgate-consumer"], "tax");
        assert_eq!(
            headers["xgate-service"],
            "market-regulation/business-licenses"
        );
        assert_eq!(headers["xgate-purpose"], "license check");
        assert_eq!(headers["x-request-id"], "rid-1");
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, ::1");
        assert_eq!(headers["forwarded"], "for=\"[::1]\";proto=http");
        assert_eq!(headers["accept-language"], "zh");
    }

    #[test]
    fn forwarding_chains_over_several_lines_are_kept_whole() {
        let incoming = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2, 10.0.0.3"),
            ("forwarded", "for=10.0.0.1"),
            ("forwarded", "for=10.0.0.2"),
        ]);
        let service = HeaderValue::from_static("market-regulation/business-licenses");
        let origin = Origin::new("127.0.0.1:5000".parse().unwrap(), "http");
        let context = ForwardContext {
            consumer: "tax",
            service: &service,
            request_id: "rid-1",
            origin: &origin,
        };
        let headers = upstream_request_headers(&incoming, &context, false);
        assert_eq!(
            headers["x-forwarded-for"],
            "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"
        );
        assert_eq!(
            headers["forwarded"],
            "for=10.0.0.1, for=10.0.0.2, for=127.0.0.1;proto=http"
        );
    }
}
