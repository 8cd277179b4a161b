//! Mutual TLS on the data plane, https upstreams, reloading certificates and `xgate tls init`,
//! with certificates generated here by rcgen and real TLS clients and servers (rustls).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

use crate::helpers::*;

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// A certificate authority made for one test.
struct Authority {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

#[derive(Clone, Copy)]
enum Usage {
    Server,
    Client,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let certificate = params.self_signed(&key).unwrap();
        Authority {
            pem: certificate.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, common_name: &str, usage: Usage) -> Leaf {
        self.leaf_with(common_name, usage, |_| {})
    }

    fn leaf_with(
        &self,
        common_name: &str,
        usage: Usage,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        adjust(&mut params);
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: certificate.pem(),
            key: key.serialize_pem(),
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The common name of a DER certificate.
fn common_name(der: &[u8]) -> String {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).unwrap();
    certificate
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// A TLS client
// ---------------------------------------------------------------------------------------------

fn roots(ca_pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    roots
}

fn client_config(ca_pem: &str, identity: Option<&Leaf>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots(ca_pem));
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    config
}

async fn tls_connect(
    address: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Every message in an error's chain, so a TLS alert wrapped by hyper can be asserted on.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// One HTTP/1.1 or HTTP/2 session over TLS.
struct Session {
    /// The common name of the certificate the gateway served.
    served: String,
    /// The protocol agreed by ALPN.
    alpn: Option<Vec<u8>>,
    sender: Sender,
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

struct Answer {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Session {
    /// Connects and speaks HTTP/2 when ALPN agreed on `h2`, HTTP/1.1 otherwise.
    async fn open(address: SocketAddr, config: rustls::ClientConfig) -> Result<Session, String> {
        let stream = tls_connect(address, config)
            .await
            .map_err(|error| chain(&error))?;
        let (_, connection) = stream.get_ref();
        let served = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|certificate| common_name(certificate.as_ref()))
            .unwrap_or_default();
        let alpn = connection.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(stream);
        let sender = if alpn.as_deref() == Some(b"h2") {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|error| chain(&error))?;
            tokio::spawn(connection);
            Sender::Http2(sender)
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|error| chain(&error))?;
            tokio::spawn(connection);
            Sender::Http1(sender)
        };
        Ok(Session {
            served,
            alpn,
            sender,
        })
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let mut request = Request::builder().method(method);
        request = match self.sender {
            Sender::Http1(_) => request.uri(path).header("host", "localhost"),
            Sender::Http2(_) => request.uri(format!("https://localhost{path}")),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::new())).unwrap();
        let response = match &mut self.sender {
            Sender::Http1(sender) => sender.send_request(request).await,
            Sender::Http2(sender) => sender.send_request(request).await,
        }
        .map_err(|error| chain(&error))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|error| chain(&error))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }

    async fn get(&mut self, path: &str) -> Result<Answer, String> {
        self.send("GET", path, &[]).await
    }
}

/// Opens a session and makes one GET: the answer, or every error message on the way.
async fn get_once(
    address: SocketAddr,
    config: rustls::ClientConfig,
    path: &str,
) -> Result<Answer, String> {
    let mut session = Session::open(address, config).await?;
    session.get(path).await
}

/// Asserts the gateway refused the handshake with `alert` (in TLS 1.3 the client's side of the
/// handshake ends before the server has judged its certificate, so the alert arrives on the
/// first read).
async fn assert_refused(address: SocketAddr, config: rustls::ClientConfig, alert: &str) {
    match get_once(address, config, "/catalog").await {
        Ok(answer) => panic!("served {} instead of refusing", answer.status),
        Err(error) => assert!(error.contains(alert), "expected alert {alert}: {error}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// The certificates of one scenario.
struct Pki {
    departments: Authority,
    gateway: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let departments = Authority::new("test departments CA");
        let gateway = departments.leaf("gateway one", Usage::Server);
        Pki {
            departments,
            gateway,
        }
    }

    fn client(&self, common_name: &str) -> Leaf {
        self.departments.leaf(common_name, Usage::Client)
    }

    /// A client of this scenario's CA presenting `identity`.
    fn config(&self, identity: Option<&Leaf>) -> rustls::ClientConfig {
        client_config(&self.departments.pem, identity, &[b"http/1.1"])
    }
}

/// A gateway serving mutual TLS: `consumer` (certificate `CN=consumer`) may call
/// `provider/echo` (an echo upstream over plain http); `admin` reloads. `tls_extra` goes into
/// `[tls]`, `gateway_extra` into `[gateway]`.
fn mtls_config(pki: &Pki, echo: &Upstream, tls_extra: &str, gateway_extra: &str) -> ConfigDir {
    let config = ConfigDir::new();
    write(&config.path("config/tls/gateway.pem"), &pki.gateway.cert);
    write(&config.path("config/tls/gateway-key.pem"), &pki.gateway.key);
    write(&config.path("config/tls/ca.pem"), &pki.departments.pem);
    config
        .gateway(gateway_extra)
        .main(&format!(
            "[tls]\ncert = \"tls/gateway.pem\"\nkey = \"tls/gateway-key.pem\"\nclient_ca = \"tls/ca.pem\"\n{tls_extra}\n"
        ))
        .department(
            "provider",
            "department",
            &format!(
                "[services.echo]\nupstream = \"{}\"\nmethods = [\"GET\"]\nconsumers = [\"consumer\"]\n",
                echo.url("/echo")
            ),
        )
        .department(
            "consumer",
            "department",
            "cert_subjects = [\"CN=consumer\", \"spiffe://exchange/consumer-uri\"]",
        )
        .department("other", "department", "cert_subjects = [\"CN=other, O=Exchange\"]")
        .department("admin", "admin", "")
}

async fn mtls_gateway(pki: &Pki, echo: &Upstream, tls_extra: &str) -> TestGateway {
    mtls_config(pki, echo, tls_extra, "").start().await
}

/// The gateway still serves a good client.
async fn assert_serving(gateway: &TestGateway, pki: &Pki) {
    let consumer = pki.client("consumer");
    let answer = get_once(gateway.data, pki.config(Some(&consumer)), "/catalog")
        .await
        .expect("a good client is served");
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["department"], "consumer");
}

#[tokio::test]
async fn a_good_client_certificate_identifies_the_consumer_all_the_way_to_the_upstream() {
    let pki = Pki::new();
    let echo = Upstream::echo().await;
    let gateway = mtls_gateway(&pki, &echo, "").await;

    let consumer = pki.client("consumer");
    let mut session = Session::open(gateway.data, pki.config(Some(&consumer)))
        .await
        .unwrap();
    assert_eq!(session.served, "gateway one");
    let answer = session.get("/exchange/provider/echo/42").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let seen = answer.json();
    assert_eq!(seen["path_and_query"], "/echo/42");
    assert_eq!(seen["headers"]["xgate-consumer"], "consumer");
    assert_eq!(seen["headers"]["xgate-service"], "provider/echo");
    let forwarded = seen["headers"]["forwarded"].as_str().unwrap();
    assert!(forwarded.contains("proto=https"), "{forwarded}");
    assert_eq!(echo.call_count(), 1);

    // The same identity on the other routes, and in the audit trail.
    let catalog = session.get("/catalog").await.unwrap();
    assert_eq!(catalog.json()["department"], "consumer");
    // A full subject listed in cert_subjects identifies too (attributes in certificate order).
    let other = pki.departments.leaf_with("other", Usage::Client, |params| {
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Exchange");
    });
    let answer = get_once(gateway.data, pki.config(Some(&other)), "/catalog")
        .await
        .unwrap();
    assert_eq!(answer.json()["department"], "other");
    // So does a SAN URI.
    let by_uri = pki
        .departments
        .leaf_with("someone", Usage::Client, |params| {
            params.subject_alt_names.push(rcgen::SanType::URI(
                "spiffe://exchange/consumer-uri".try_into().unwrap(),
            ));
        });
    let answer = get_once(gateway.data, pki.config(Some(&by_uri)), "/catalog")
        .await
        .unwrap();
    assert_eq!(answer.json()["department"], "consumer");
    // The certificate decides: a bearer token of another department beside it changes nothing.
    let answer = session
        .send(
            "GET",
            "/catalog",
            &[("authorization", &format!("Bearer {}", token("other")))],
        )
        .await
        .unwrap();
    assert_eq!(answer.json()["department"], "consumer");
}

#[tokio::test]
async fn no_certificate_a_foreign_ca_or_an_expired_certificate_is_refused_at_the_handshake() {
    let pki = Pki::new();
    let echo = Upstream::echo().await;
    let gateway = mtls_gateway(&pki, &echo, "").await;

    assert_refused(gateway.data, pki.config(None), "CertificateRequired").await;

    let foreign = Authority::new("someone else's CA").leaf("consumer", Usage::Client);
    assert_refused(gateway.data, pki.config(Some(&foreign)), "UnknownCA").await;

    let expired = pki
        .departments
        .leaf_with("consumer", Usage::Client, |params| {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
    assert_refused(
        gateway.data,
        pki.config(Some(&expired)),
        "CertificateExpired",
    )
    .await;

    // A server certificate (no client-auth usage) of the right CA is no client certificate.
    let server_only = pki.departments.leaf("consumer", Usage::Server);
    assert_refused(gateway.data, pki.config(Some(&server_only)), "alert").await;

    assert_eq!(echo.call_count(), 0);
    assert_serving(&gateway, &pki).await;
}

#[tokio::test]
async fn a_valid_certificate_of_an_unknown_subject_is_401_problem_json() {
    let pki = Pki::new();
    let echo = Upstream::echo().await;
    let gateway = mtls_gateway(&pki, &echo, "").await;

    let stranger = pki.client("stranger");
    let mut session = Session::open(gateway.data, pki.config(Some(&stranger)))
        .await
        .unwrap();
    for path in ["/exchange/provider/echo", "/catalog"] {
        let answer = session.get(path).await.unwrap();
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            answer.headers["content-type"], "application/problem+json",
            "{path}"
        );
        assert_eq!(answer.json()["type"], "urn:xgate:problem:unauthenticated");
    }
    // A valid bearer token does not rescue an unknown certificate.
    let answer = session
        .send(
            "GET",
            "/exchange/provider/echo",
            &[
                ("authorization", &format!("Bearer {}", token("consumer"))),
                ("accept-language", "zh-CN"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.headers["content-language"], "zh");
    assert_eq!(echo.call_count(), 0);
}

#[tokio::test]
async fn with_require_client_cert_off_a_bearer_token_is_accepted_without_a_certificate() {
    let pki = Pki::new();
    let echo = Upstream::echo().await;
    let gateway = mtls_gateway(&pki, &echo, "require_client_cert = false").await;

    let mut anonymous = Session::open(gateway.data, pki.config(None)).await.unwrap();
    let answer = anonymous
        .send(
            "GET",
            "/exchange/provider/echo",
            &[("authorization", &format!("Bearer {}", token("consumer")))],
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["headers"]["xgate-consumer"], "consumer");
    let answer = anonymous.get("/catalog").await.unwrap();
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // A certificate, when presented, is still verified and identifies.
    let foreign = Authority::new("someone else's CA").leaf("consumer", Usage::Client);
    assert_refused(gateway.data, pki.config(Some(&foreign)), "UnknownCA").await;
    assert_serving(&gateway, &pki).await;

    // With the default (client_ca set → required), the same token without a certificate is
    // refused at the handshake.
    let strict = mtls_gateway(&pki, &echo, "").await;
    assert_refused(strict.data, pki.config(None), "CertificateRequired").await;
}

#[tokio::test]
async fn h2_and_http1_are_negotiated_by_alpn() {
    let pki = Pki::new();
    let echo = Upstream::echo().await;
    let gateway = mtls_gateway(&pki, &echo, "").await;
    let consumer = pki.client("consumer");

    let h2 = client_config(&pki.departments.pem, Some(&consumer), &[b"h2", b"http/1.1"]);
    let mut session = Session::open(gateway.data, h2).await.unwrap();
    assert_eq!(session.alpn.as_deref(), Some(&b"h2"[..]));
    let answer = session.get("/exchange/provider/echo").await.unwrap();
    assert_eq!(answer.version, Version::HTTP_2);
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["headers"]["xgate-consumer"], "consumer");

    let mut session = Session::open(gateway.data, pki.config(Some(&consumer)))
        .await
        .unwrap();
    assert_eq!(session.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let answer = session.get("/exchange/provider/echo").await.unwrap();
    assert_eq!(answer.version, Version::HTTP_11);
    assert_eq!(answer.status, StatusCode::OK);
}

/// A TLS 1.1-only ClientHello, by hand: rustls clients cannot offer TLS 1.1.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two TLS 1.1 suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    // Extensions: signature_algorithms (ecdsa_secp256r1_sha256, rsa_pkcs1_sha256), which some
    // TLS 1.1 clients send and without which rustls stops before it looks at the version.
    body.extend_from_slice(&[
        0x00, 0x0a, 0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x04, 0x01,
    ]);
    let mut handshake = vec![0x01, 0x00]; // ClientHello, 24-bit length
    handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record, TLS 1.0 record layer
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Reads until the gateway closes the connection (bounded by a generous deadline, so a
/// gateway that never closes fails the test instead of hanging it).
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let reading = stream.read_to_end(&mut received);
    match tokio::time::timeout(Duration::from_secs(60), reading).await {
        Ok(_) => received,
        Err(_) => panic!("the gateway kept the connection open"),
    }
}

#[tokio::test]
async fn tls_1_1_is_refused_with_a_protocol_version_alert() {
    let pki = Pki::new();
    let echo = Upstream::echo().await;
    let gateway = mtls_gateway(&pki, &echo, "").await;

    let mut stream = TcpStream::connect(gateway.data).await.unwrap();
    stream.write_all(&tls11_client_hello()).await.unwrap();
    let received = read_until_closed(&mut stream).await;
    // An alert record (21) whose description is protocol_version (70).
    assert!(received.len() >= 7, "{received:?}");
    assert_eq!(received[0], 21, "{received:?}");
    assert_eq!(received[6], 70, "{received:?}");
    assert_serving(&gateway, &pki).await;
}

#[tokio::test]
async fn plain_http_garbage_and_silent_clients_on_the_tls_port_are_closed_and_others_served() {
    let pki = Pki::new();
    let echo = Upstream::echo().await;
    // One connection at a time: a client that never handshakes would block everyone without
    // the handshake timeout.
    let gateway = mtls_config(
        &pki,
        &echo,
        "handshake_timeout_ms = 200",
        "max_connections = 1",
    )
    .start()
    .await;

    let mut plain = TcpStream::connect(gateway.data).await.unwrap();
    plain
        .write_all(b"GET /catalog HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let received = read_until_closed(&mut plain).await;
    assert!(!received.starts_with(b"HTTP/"), "{received:?}");
    assert_serving(&gateway, &pki).await;

    let mut garbage = TcpStream::connect(gateway.data).await.unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x03, 0xff, 0xff])
        .await
        .unwrap();
    garbage.write_all(&[0xab; 4096]).await.unwrap();
    let received = read_until_closed(&mut garbage).await;
    assert!(!received.starts_with(b"HTTP/"), "{received:?}");
    assert_serving(&gateway, &pki).await;

    // Opens TCP, says nothing: closed by the handshake timeout, which frees the only slot.
    let mut silent = TcpStream::connect(gateway.data).await.unwrap();
    let received = read_until_closed(&mut silent).await;
    assert!(received.is_empty(), "{received:?}");
    let _still_silent = TcpStream::connect(gateway.data).await.unwrap();
    assert_serving(&gateway, &pki).await;
}

/// The connection layer is the same under TLS: a head hyper cannot parse gets the problem
/// document, and callers that never read are cut off at the send timeout, their upstream
/// connections closed.
#[tokio::test]
async fn over_tls_hypers_answers_are_problems_and_callers_that_never_read_are_cut_off() {
    let pki = Pki::new();
    let echo = Upstream::echo().await;
    let large = crate::send_timeout::endless_upstream().await;
    let gateway = mtls_config(&pki, &echo, "", "send_timeout_ms = 300")
        .department(
            "streamer",
            "department",
            &format!(
                "[services.large]\nupstream = \"{}\"\nmethods = [\"GET\"]\nconsumers = [\"consumer\"]\n",
                large.url("/large")
            ),
        )
        .start()
        .await;
    let consumer = pki.client("consumer");
    let connect = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(gateway.data).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(pki.config(Some(&consumer))))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    };

    let mut tls = connect().await;
    tls.write_all(b"GET /catalog HTTP/9.9\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the gateway kept the connection open");
    let response = crate::forwarding::parse_raw_response(&received).expect("an answer");
    assert_eq!(response.status, 400);
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(
        response.json()["type"],
        "urn:xgate:problem:malformed-request"
    );

    let mut stuck = Vec::new();
    for _ in 0..5 {
        let mut tls = connect().await;
        tls.write_all(b"GET /exchange/streamer/large HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        stuck.push(tls);
    }
    eventually(
        "every stuck call reaches the upstream",
        DEADLINE,
        || async { large.accepted() == 5 },
    )
    .await;
    eventually(
        "the stuck callers' upstream connections close",
        DEADLINE,
        || async { large.open() == 0 },
    )
    .await;
    assert_eq!(gateway.gateway.upstream.idle_connections(), 0);
    assert_serving(&gateway, &pki).await;
    drop(stuck);
}

// ---------------------------------------------------------------------------------------------
// https upstreams
// ---------------------------------------------------------------------------------------------

/// A real upstream over TLS (rustls): answers JSON with the `Xgate-Consumer` it received and the
/// common name of the client certificate the gateway presented (empty when none).
struct TlsUpstream {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsUpstream {
    async fn start(server: &Leaf, client_ca: Option<&str>) -> TlsUpstream {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca)),
                    provider,
                )
                .build()
                .unwrap(),
            ),
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(
                CertificateDer::pem_slice_iter(server.cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let client = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|certificate| common_name(certificate.as_ref()))
                        .unwrap_or_default();
                    let service = hyper::service::service_fn(
                        move |request: Request<hyper::body::Incoming>| {
                            let consumer = request
                                .headers()
                                .get("xgate-consumer")
                                .and_then(|value| value.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            // As a certificate issuer: a licence for the id in the path.
                            let body = match request.uri().path().strip_prefix("/certs/") {
                                Some(id) => json!({"uscc": id, "name": "福州闽江数据科技有限公司", "status": "active"}),
                                None => json!({ "consumer": consumer, "client": client }),
                            }
                            .to_string();
                            async move {
                                request.into_body().collect().await.ok();
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(body)))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                        .ok();
                });
            }
        });
        TlsUpstream { address, task }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.address.port())
    }
}

#[tokio::test]
async fn https_upstreams_and_issuers_are_trusted_through_upstream_ca_and_see_the_gateways_certificate()
 {
    let pki = Pki::new();
    let upstreams = Authority::new("providers CA");
    // Trusted through upstream_ca, no client certificate asked.
    let open = TlsUpstream::start(&upstreams.leaf("localhost", Usage::Server), None).await;
    // Asks for a client certificate signed by the departments CA: the gateway's own.
    let strict = TlsUpstream::start(
        &upstreams.leaf("localhost", Usage::Server),
        Some(&pki.departments.pem),
    )
    .await;
    // A certificate of a CA the gateway does not trust.
    let untrusted = TlsUpstream::start(
        &Authority::new("unknown CA").leaf("localhost", Usage::Server),
        None,
    )
    .await;
    let gateway_client = pki.departments.leaf("xgate", Usage::Client);

    let echo = Upstream::echo().await;
    let config = mtls_config(
        &pki,
        &echo,
        "upstream_ca = \"tls/upstreams-ca.pem\"\nupstream_cert = \"tls/upstream.pem\"\nupstream_key = \"tls/upstream-key.pem\"",
        "",
    );
    write(&config.path("config/tls/upstreams-ca.pem"), &upstreams.pem);
    write(
        &config.path("config/tls/upstream.pem"),
        &gateway_client.cert,
    );
    write(
        &config.path("config/tls/upstream-key.pem"),
        &gateway_client.key,
    );
    let services = format!(
        "[services.open]\nupstream = \"{}\"\nmethods = [\"GET\"]\nconsumers = [\"consumer\"]\n\
         [services.strict]\nupstream = \"{}\"\nmethods = [\"GET\"]\nconsumers = [\"consumer\"]\n\
         [services.untrusted]\nupstream = \"{}\"\nmethods = [\"GET\"]\nconsumers = [\"consumer\"]\n",
        open.url("/records"),
        strict.url("/records"),
        untrusted.url("/records"),
    );
    let issuer = format!(
        "[certificates.licence]\nlookup = \"{}\"\nschema = \"license\"\nid_format = \"cn-uscc\"\nconsumers = [\"consumer\"]\n",
        open.url("/certs/{id}")
    );
    let gateway = config
        .schema("license", 1, license_schema())
        .department("secure", "department", &format!("{services}\n{issuer}"))
        .start()
        .await;

    let consumer = pki.client("consumer");
    let mut session = Session::open(gateway.data, pki.config(Some(&consumer)))
        .await
        .unwrap();
    for _ in 0..2 {
        // Twice: the second call reuses the pooled TLS connection.
        let answer = session.get("/exchange/secure/open/1").await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        assert_eq!(answer.json()["consumer"], "consumer");
    }
    let answer = session.get("/exchange/secure/strict/1").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.json()["client"], "xgate");
    assert_eq!(answer.json()["consumer"], "consumer");

    // Certificate issuers use the same client: an https issuer trusted through upstream_ca.
    let id = xgate_core::identifiers::uscc_with_check("91350100M00000001").unwrap();
    let answer = session
        .send(
            "GET",
            &format!("/certificates/licence/{id}"),
            &[("xgate-purpose", "account opening check")],
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.json()["uscc"], id.as_str());

    let answer = session.get("/exchange/secure/untrusted/1").await.unwrap();
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        answer.json()["type"],
        "urn:xgate:problem:upstream-unavailable"
    );
    assert!(gateway.gateway.upstream.idle_connections() >= 1);
}

#[tokio::test]
async fn without_upstream_cert_an_upstream_that_requires_one_refuses_the_gateway() {
    let pki = Pki::new();
    let upstreams = Authority::new("providers CA");
    let strict = TlsUpstream::start(
        &upstreams.leaf("localhost", Usage::Server),
        Some(&pki.departments.pem),
    )
    .await;
    let echo = Upstream::echo().await;
    let config = mtls_config(&pki, &echo, "upstream_ca = \"tls/upstreams-ca.pem\"", "");
    write(&config.path("config/tls/upstreams-ca.pem"), &upstreams.pem);
    let gateway = config
        .department(
            "secure",
            "department",
            &format!(
                "[services.strict]\nupstream = \"{}\"\nmethods = [\"GET\"]\nconsumers = [\"consumer\"]\n",
                strict.url("/records")
            ),
        )
        .start()
        .await;
    let consumer = pki.client("consumer");
    let answer = get_once(
        gateway.data,
        pki.config(Some(&consumer)),
        "/exchange/secure/strict",
    )
    .await
    .unwrap();
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
}

// ---------------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------------

fn config_folder(gateway: &TestGateway) -> PathBuf {
    gateway.schemas_dir().parent().unwrap().join("config")
}

async fn reload(gateway: &TestGateway) -> (StatusCode, Value) {
    let response = gateway
        .client
        .post(gateway.admin_url("/admin/reload"))
        .bearer_auth(token("admin"))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_reload_serves_new_certificates_to_new_handshakes_and_keeps_open_connections() {
    let pki = Pki::new();
    let echo = Upstream::echo().await;
    let gateway = mtls_gateway(&pki, &echo, "").await;
    let folder = config_folder(&gateway);
    let consumer = pki.client("consumer");

    let mut open = Session::open(gateway.data, pki.config(Some(&consumer)))
        .await
        .unwrap();
    assert_eq!(open.served, "gateway one");
    assert_eq!(open.get("/catalog").await.unwrap().status, StatusCode::OK);

    // Only admins reload.
    let refused = gateway
        .client
        .post(gateway.admin_url("/admin/reload"))
        .bearer_auth(token("consumer"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let second = pki.departments.leaf("gateway two", Usage::Server);
    write(&folder.join("tls/gateway.pem"), &second.cert);
    write(&folder.join("tls/gateway-key.pem"), &second.key);
    let (status, body) = reload(&gateway).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reloaded"], true);

    let mut fresh = Session::open(gateway.data, pki.config(Some(&consumer)))
        .await
        .unwrap();
    assert_eq!(fresh.served, "gateway two");
    assert_eq!(fresh.get("/catalog").await.unwrap().status, StatusCode::OK);
    // The connection opened before the reload goes on as it was.
    let answer = open.get("/exchange/provider/echo").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["headers"]["xgate-consumer"], "consumer");

    // A key that does not match its certificate is refused, with the file and key named and
    // no absolute path; the running certificate stays.
    let third = pki.departments.leaf("gateway three", Usage::Server);
    let unrelated = pki.departments.leaf("unrelated", Usage::Server);
    write(&folder.join("tls/gateway.pem"), &third.cert);
    write(&folder.join("tls/gateway-key.pem"), &unrelated.key);
    let (status, body) = reload(&gateway).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["type"], "urn:xgate:problem:invalid-config");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("xgate.toml: tls.key: does not match the certificate"),
        "{message}"
    );
    assert!(
        !body.to_string().contains(folder.to_str().unwrap()),
        "{body}"
    );
    let after = Session::open(gateway.data, pki.config(Some(&consumer)))
        .await
        .unwrap();
    assert_eq!(after.served, "gateway two");

    // An unreadable key is refused too.
    write(&folder.join("tls/gateway-key.pem"), "not a key");
    let (status, body) = reload(&gateway).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("tls.key"), "{body}");
    assert_serving(&gateway, &pki).await;
}

#[tokio::test]
async fn a_reload_applies_new_cert_subjects_and_a_broken_one_changes_nothing() {
    let pki = Pki::new();
    let echo = Upstream::echo().await;
    let gateway = mtls_gateway(&pki, &echo, "").await;
    let folder = config_folder(&gateway);
    let renamed = pki.client("consumer-renamed");
    let answer = get_once(gateway.data, pki.config(Some(&renamed)), "/catalog")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    let file = folder.join("departments/consumer.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"CN=consumer\"", "\"CN=consumer-renamed\"");
    std::fs::write(&file, text).unwrap();
    let (status, body) = reload(&gateway).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = get_once(gateway.data, pki.config(Some(&renamed)), "/catalog")
        .await
        .unwrap();
    assert_eq!(answer.json()["department"], "consumer");

    // Two departments listing one subject: refused, the running configuration stays.
    let other = folder.join("departments/other.toml");
    let text = std::fs::read_to_string(&other)
        .unwrap()
        .replace("\"CN=other, O=Exchange\"", "\"CN=consumer-renamed\"");
    std::fs::write(&other, text).unwrap();
    let (status, body) = reload(&gateway).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("already identifies"), "{body}");
    let answer = get_once(gateway.data, pki.config(Some(&renamed)), "/catalog")
        .await
        .unwrap();
    assert_eq!(answer.json()["department"], "consumer");

    // Files outside the configuration folder (the schemas beside it) are named by their place
    // in the deployment, never by the machine's path.
    let schemas = gateway.schemas_dir();
    std::fs::create_dir_all(schemas.join("broken")).unwrap();
    std::fs::write(schemas.join("broken/1.json"), "not JSON").unwrap();
    let (status, body) = reload(&gateway).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let text = body.to_string();
    assert!(text.contains("schemas/broken/1.json"), "{body}");
    let root = schemas.parent().unwrap().to_str().unwrap().to_owned();
    assert!(!text.contains(&root), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Configuration checks
// ---------------------------------------------------------------------------------------------

#[test]
fn check_reports_mismatched_keys_duplicate_subjects_and_settings_without_client_ca() {
    let pki = Pki::new();
    let config = ConfigDir::new();
    let unrelated = pki.departments.leaf("unrelated", Usage::Server);
    write(&config.path("config/tls/gateway.pem"), &pki.gateway.cert);
    write(&config.path("config/tls/gateway-key.pem"), &unrelated.key);
    let config = config
        .main("[tls]\ncert = \"tls/gateway.pem\"\nkey = \"tls/gateway-key.pem\"\nrequire_client_cert = true\nupstream_cert = \"tls/gateway.pem\"\n")
        .department("one", "department", "cert_subjects = [\"CN=same\"]")
        .department("two", "department", "cert_subjects = [\"CN= same\"]");
    config.write_main();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xgate"))
        .args(["check", "--config"])
        .arg(config.main_path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "tls.require_client_cert: needs client_ca",
        "tls.upstream_key: upstream_cert and upstream_key go together",
        "cert_subjects: \"CN=same\" already identifies one",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }

    // With the settings fixed, the key mismatch is what remains.
    let main = std::fs::read_to_string(config.main_path())
        .unwrap()
        .replace(
            "require_client_cert = true\nupstream_cert = \"tls/gateway.pem\"\n",
            "",
        );
    std::fs::write(config.main_path(), main).unwrap();
    std::fs::write(
        config.path("config/departments/two.toml"),
        "id = \"two\"\nname = \"Two\"\nrole = \"department\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xgate"))
        .args(["check", "--config"])
        .arg(config.main_path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("xgate.toml: tls.key: does not match the certificate"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// `xgate tls init`, end to end with the real binary
// ---------------------------------------------------------------------------------------------

fn tls_init(config: &ConfigDir, force: bool) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_xgate"));
    command
        .args(["tls", "init"])
        .arg(config.path("config/tls"))
        .arg("--config")
        .arg(config.main_path());
    if force {
        command.arg("--force");
    }
    command.output().unwrap()
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn tls_init_output_serves_mutual_tls_with_the_real_binary_and_sighup_reloads_it() {
    let echo = Upstream::echo().await;
    let config = ConfigDir::new()
        .department(
            "provider",
            "department",
            &format!(
                "[services.echo]\nupstream = \"{}\"\nmethods = [\"GET\"]\nconsumers = [\"consumer\"]\n",
                echo.url("/echo")
            ),
        )
        .department("consumer", "department", "cert_subjects = [\"CN=consumer\"]");
    config.write_main();
    let output = tls_init(&config, false);
    assert!(output.status.success(), "{output:?}");
    let tls = config.path("config/tls");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [
            "ca-key.pem",
            "gateway-key.pem",
            "departments/consumer-key.pem",
        ] {
            let mode = std::fs::metadata(tls.join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
    // Never overwritten without --force.
    let before = read(tls.join("gateway.pem"));
    let output = tls_init(&config, false);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));
    assert_eq!(read(tls.join("gateway.pem")), before);

    let config = config.main(
        "[tls]\ncert = \"tls/gateway.pem\"\nkey = \"tls/gateway-key.pem\"\nclient_ca = \"tls/ca.pem\"\n",
    );
    config.write_main();
    let (mut child, data, _admin) = start_binary_planes(&config, &client()).await;
    let address: SocketAddr = data.trim_start_matches("http://").parse().unwrap();

    let identity = Leaf {
        cert: read(tls.join("departments/consumer.pem")),
        key: read(tls.join("departments/consumer-key.pem")),
    };
    let ca = read(tls.join("ca.pem"));
    let connect = |ca: &str| client_config(ca, Some(&identity), &[b"h2", b"http/1.1"]);
    let mut session = Session::open(address, connect(&ca)).await.unwrap();
    assert_eq!(session.served, "xgate gateway");
    let answer = session.get("/exchange/provider/echo").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.json()["headers"]["xgate-consumer"], "consumer");

    // New certificates (a new CA too), then SIGHUP: new handshakes get the new gateway
    // certificate while the old connection goes on.
    let output = tls_init(&config, true);
    assert!(output.status.success(), "{output:?}");
    let new_ca = read(tls.join("ca.pem"));
    assert_ne!(new_ca, ca);
    let hangup = std::process::Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hangup.success());
    let identity = Leaf {
        cert: read(tls.join("departments/consumer.pem")),
        key: read(tls.join("departments/consumer-key.pem")),
    };
    let answer = eventually(
        "the reloaded certificates are served",
        Duration::from_secs(30),
        || async {
            let config = client_config(&new_ca, Some(&identity), &[b"http/1.1"]);
            get_once(address, config, "/catalog").await.ok()
        },
    )
    .await;
    assert_eq!(answer.json()["department"], "consumer");
    let answer = session.get("/exchange/provider/echo").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    child.0.kill().ok();
}
