//! Header rules of the exchange path (SPEC §3, phase "forward"): what reaches the upstream and
//! what comes back.
//!
//! The caller's `Authorization` never leaves the gateway; hop-by-hop headers (RFC 9110 §7.6.1,
//! and every header `Connection` names) are dropped both ways; `Xgate-*` headers are set only by
//! the gateway; `X-Request-Id` is kept when well formed and generated otherwise, and every call
//! gets an exchange id of the gateway's own (`Xgate-Exchange-Id`, both ways).
//!
//! Forwarding headers: `X-Forwarded-For` and `Forwarded` are believed only from a peer listed in
//! `[gateway] trusted_proxies` (the gateway appends its peer to them); from any other peer they
//! are replaced by the peer's address, and `X-Forwarded-Host`, `-Port` and `-Prefix` are dropped.
//! The other client-address headers (`X-Real-IP`, `True-Client-IP`, ...) are dropped from
//! everyone: a caller could name any address in them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::tls::ClientCertificate;

/// `X-Request-Id`: correlates a call across consumer, gateway, provider and audit trail.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `Xgate-Consumer`: the identified calling department.
pub(crate) const XGATE_CONSUMER: HeaderName = HeaderName::from_static("xgate-consumer");
/// `Xgate-Service`: `provider/service` being called.
pub(crate) const XGATE_SERVICE: HeaderName = HeaderName::from_static("xgate-service");
/// `Xgate-Purpose`: the caller's stated reason for the call.
pub(crate) const XGATE_PURPOSE: HeaderName = HeaderName::from_static("xgate-purpose");
/// `X-Forwarded-For`.
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `Xgate-Exchange-Id`: the gateway's own id of one exchange or certificate lookup, sent to the
/// provider, returned to the caller and recorded in the audit trail. Unlike `X-Request-Id`
/// (which a caller may choose, and repeat), no two calls share one.
pub(crate) const XGATE_EXCHANGE_ID: HeaderName = HeaderName::from_static("xgate-exchange-id");

/// Headers other proxies use to name the client's address. The gateway never sets them, and a
/// caller could put any address in them: they are dropped from every request.
const CLIENT_ADDRESS_HEADERS: [HeaderName; 7] = [
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("fastly-client-ip"),
    HeaderName::from_static("x-originating-ip"),
];

/// The `X-Forwarded-*` headers that describe the request as the client made it (the host, port
/// and path prefix it used): kept from a trusted proxy, dropped from anyone else.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
];

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
pub(crate) fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// A fresh exchange id: a time-ordered (version 7) UUID, its first 48 bits the Unix time in
/// milliseconds, the rest random from the thread's userspace generator (no system call per
/// id). Ids of one millisecond are not ordered among themselves; that is all the trail needs
/// (entries carry their own sequence numbers).
pub(crate) fn new_exchange_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let random: [u8; 10] = rand::random();
    uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Adds `Xgate-Exchange-Id` to a response to the caller (every answer carries it, problems
/// included).
pub(crate) fn tag_exchange_id(headers: &mut HeaderMap, exchange_id: &str) {
    insert(headers, XGATE_EXCHANGE_ID, exchange_id);
}

/// Whether `name` is one of the hop-by-hop headers every proxy drops.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
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
pub(crate) struct Origin {
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
    /// Whether the peer is one of `[gateway] trusted_proxies` (decided once, when the
    /// connection is accepted): only then are the caller's forwarding headers believed.
    pub trusted_proxy: bool,
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
            trusted_proxy: false,
        }
    }

    /// The same origin, its peer a trusted proxy (or not).
    pub(crate) fn with_trusted_proxy(mut self, trusted_proxy: bool) -> Origin {
        self.trusted_proxy = trusted_proxy;
        self
    }

    /// The same origin, identified by the client certificate verified in its handshake.
    pub(crate) fn with_client_certificate(
        mut self,
        client_certificate: Option<Arc<ClientCertificate>>,
    ) -> Origin {
        self.client_certificate = client_certificate;
        self
    }
}

/// What the gateway knows of one call when it forwards it.
pub(crate) struct ForwardContext<'a> {
    /// The identified consumer.
    pub consumer: &'a str,
    /// `provider/service`.
    pub service: &'a HeaderValue,
    /// The request id (the caller's or generated).
    pub request_id: &'a str,
    /// The gateway's own id of this exchange.
    pub exchange_id: &'a str,
    /// Where the call came from.
    pub origin: &'a Origin,
}

/// Whether a caller's header names a client address the gateway does not vouch for: the
/// client-address headers of other proxies always, and from a peer that is not a trusted proxy
/// also `X-Forwarded-For`, `Forwarded` and the `X-Forwarded-*` headers describing the request.
fn is_untrusted_forwarding(name: &HeaderName, trusted_proxy: bool) -> bool {
    CLIENT_ADDRESS_HEADERS.contains(name)
        || (!trusted_proxy
            && (name == X_FORWARDED_FOR
                || name == header::FORWARDED
                || FORWARDED_REQUEST_HEADERS.contains(name)))
}

/// The headers sent upstream: the caller's, less credentials, hop-by-hop, `Xgate-*` and
/// forwarding headers it may not set, plus the gateway's. `body_rewritten` drops
/// `Content-Length`, which no longer describes the body.
pub(crate) fn upstream_request_headers(
    incoming: &HeaderMap,
    context: &ForwardContext<'_>,
    body_rewritten: bool,
) -> HeaderMap {
    let purpose = incoming.get(XGATE_PURPOSE).cloned();
    let trusted_proxy = context.origin.trusted_proxy;
    let mut headers = HeaderMap::with_capacity(incoming.len() + 7);
    for (name, value) in incoming {
        let drop = name == header::AUTHORIZATION
            || name == header::HOST
            || name == header::EXPECT
            || name == X_REQUEST_ID
            || (body_rewritten && name == header::CONTENT_LENGTH)
            || is_hop_by_hop(name)
            || name.as_str().starts_with("xgate-")
            || is_untrusted_forwarding(name, trusted_proxy);
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
    insert(&mut headers, XGATE_EXCHANGE_ID, context.exchange_id);
    if let Some(purpose) = purpose {
        headers.insert(XGATE_PURPOSE, purpose);
    }
    headers
}

/// The headers returned to the caller: the upstream's less hop-by-hop ones, with the request id.
/// `body_rewritten` drops `Content-Length` (the gateway frames the body it produced).
pub(crate) fn downstream_response_headers(
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
            exchange_id: "0190a3b4-0000-7000-8000-000000000001",
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
        assert_eq!(
            headers["xgate-exchange-id"],
            "0190a3b4-0000-7000-8000-000000000001"
        );
        // The peer is no trusted proxy: the caller's chain is replaced, not appended to.
        assert_eq!(headers["x-forwarded-for"], "::1");
        assert_eq!(headers["forwarded"], "for=\"[::1]\";proto=http");
        assert_eq!(headers["accept-language"], "zh");
    }

    /// A caller's forwarding and client-address headers, as a hostile caller or a proxy sends
    /// them.
    fn forged() -> HeaderMap {
        map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2, 10.0.0.3"),
            ("forwarded", "for=10.0.0.1"),
            ("forwarded", "for=10.0.0.2"),
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
            ("accept", "application/json"),
        ])
    }

    fn forwarded_headers(origin: &Origin) -> HeaderMap {
        let service = HeaderValue::from_static("market-regulation/business-licenses");
        let context = ForwardContext {
            consumer: "tax",
            service: &service,
            request_id: "rid-1",
            exchange_id: "x",
            origin,
        };
        upstream_request_headers(&forged(), &context, false)
    }

    const CLIENT_ADDRESS_NAMES: [&str; 7] = [
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-originating-ip",
    ];

    #[test]
    fn an_untrusted_peer_cannot_name_a_client_address() {
        let origin = Origin::new("192.0.2.10:5000".parse().unwrap(), "http");
        let headers = forwarded_headers(&origin);
        assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(headers["x-forwarded-for"], "192.0.2.10");
        assert_eq!(headers.get_all("forwarded").iter().count(), 1);
        assert_eq!(headers["forwarded"], "for=192.0.2.10;proto=http");
        assert_eq!(headers["x-forwarded-proto"], "http");
        for name in CLIENT_ADDRESS_NAMES.iter().chain(&[
            "x-forwarded-host",
            "x-forwarded-port",
            "x-forwarded-prefix",
        ]) {
            assert!(!headers.contains_key(*name), "{name} was passed on");
        }
        assert_eq!(headers["accept"], "application/json");
    }

    #[test]
    fn a_trusted_proxy_s_chain_is_appended_to_and_its_request_headers_kept() {
        let origin =
            Origin::new("192.0.2.10:5000".parse().unwrap(), "https").with_trusted_proxy(true);
        let headers = forwarded_headers(&origin);
        assert_eq!(
            headers["x-forwarded-for"],
            "10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.10"
        );
        assert_eq!(
            headers["forwarded"],
            "for=10.0.0.1, for=10.0.0.2, for=192.0.2.10;proto=https"
        );
        assert_eq!(headers["x-forwarded-host"], "intranet.example");
        assert_eq!(headers["x-forwarded-port"], "8443");
        assert_eq!(headers["x-forwarded-prefix"], "/admin");
        // The scheme is the gateway's own: how the proxy reached it.
        assert_eq!(headers["x-forwarded-proto"], "https");
        // Even a trusted proxy's other client-address headers are not the gateway's to vouch
        // for.
        for name in CLIENT_ADDRESS_NAMES {
            assert!(!headers.contains_key(name), "{name} was passed on");
        }
    }

    #[test]
    fn exchange_ids_are_time_ordered_uuids_and_never_repeat() {
        let ids: Vec<String> = (0..1000).map(|_| new_exchange_id()).collect();
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version(), Some(uuid::Version::SortRand), "{id}");
        }
        // The first 48 bits are milliseconds: ids of later milliseconds sort after.
        let (first, last) = (&ids[0][..13], &ids[999][..13]);
        assert!(first <= last, "{first} {last}");
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
        let origin =
            Origin::new("127.0.0.1:5000".parse().unwrap(), "http").with_trusted_proxy(true);
        let context = ForwardContext {
            consumer: "tax",
            service: &service,
            request_id: "rid-1",
            exchange_id: "x",
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
