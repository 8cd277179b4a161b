//! The upstream client: HTTP/1.1 calls to provider upstreams over connections kept alive in a
//! bounded pool per upstream address.
//!
//! Built directly on hyper's connection API rather than a general-purpose client: the gateway
//! needs exactly one thing from it — send this request on a warm connection, never replay it —
//! and the layers a general client adds (URL types, redirect and retry policies, decoders, a
//! spawned task per call to return connections to the pool) cost more per call than the rest of
//! a passthrough exchange.
//!
//! `https` upstreams get TLS at connect time (system roots plus `upstream_ca`, ALPN `http/1.1`,
//! the server name from the URL's host); after the handshake the connection is pooled and used
//! exactly as a plain one, so a request costs the same on both once connected, and the `http`
//! path has no TLS branch at all past `connect`.
//!
//! Policy: no redirects followed (a provider's redirect goes back to the caller), no proxies from
//! the environment, nothing decompressed, and a request is resent only when hyper hands it back
//! unsent (a pooled connection the upstream had just closed); one that may have reached the
//! provider is never replayed behind the department's back.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Idle connections kept per upstream address; more are closed when they come back.
pub const MAX_IDLE_PER_UPSTREAM: usize = 1024;
/// How long an idle connection is kept before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often idle connections past [`IDLE_TIMEOUT`] are looked for (on the next pool access).
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Where a service's calls go: an `http` or `https` origin, resolved once at configuration load.
#[derive(Debug, Clone)]
pub struct UpstreamAddress {
    /// The pool key; for `http`, also the `host:port` connected to. (`https` keys are
    /// `https://host:port`, so a plain and a TLS connection to one port never share a pool.)
    authority: Arc<str>,
    /// The `Host` header sent (the URL's authority as written, default port left out).
    host: HeaderValue,
    /// For `https`: where to connect and whom to expect.
    tls: Option<Arc<TlsTarget>>,
}

/// The TLS side of an `https` upstream.
#[derive(Debug)]
struct TlsTarget {
    /// `host:port` connected to.
    connect_to: Box<str>,
    /// The name the upstream's certificate must carry (the URL's host).
    server_name: ServerName<'static>,
}

impl UpstreamAddress {
    /// The address of an `http` or `https` URL; `None` for another scheme or a URL without a
    /// host.
    pub fn from_url(url: &url::Url) -> Option<UpstreamAddress> {
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let host_header = HeaderValue::from_str(&host_header).ok()?;
        let connect_to = format!("{host}:{port}");
        match url.scheme() {
            "http" => Some(UpstreamAddress {
                authority: connect_to.into(),
                host: host_header,
                tls: None,
            }),
            "https" => {
                let server_name = match url.host()? {
                    url::Host::Domain(domain) => ServerName::try_from(domain.to_owned()).ok()?,
                    url::Host::Ipv4(ip) => ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
                    url::Host::Ipv6(ip) => ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
                };
                Some(UpstreamAddress {
                    authority: format!("https://{connect_to}").into(),
                    host: host_header,
                    tls: Some(Arc::new(TlsTarget {
                        connect_to: connect_to.into(),
                        server_name,
                    })),
                })
            }
            _ => None,
        }
    }
}

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection within the timeout.
    #[error("connecting timed out")]
    ConnectTimeout,
    /// The connection was refused, reset or broken, or the answer was not HTTP.
    #[error("upstream call failed: {0}")]
    Failed(String),
}

/// Settings of the upstream client.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Bound on each wait for more of a response body while it streams.
    pub read_timeout: Duration,
}

/// The pooled upstream client shared by every request.
pub struct UpstreamClient {
    settings: ClientSettings,
    pool: Arc<Pool>,
    /// The TLS configuration of new `https` connections (`None`: nothing is `https`); swapped
    /// by a reload, while pooled connections keep the one they were made with.
    tls: ArcSwapOption<rustls::ClientConfig>,
}

impl UpstreamClient {
    /// A client with an empty pool; `tls` is used for `https` upstreams.
    pub fn new(settings: ClientSettings, tls: Option<Arc<rustls::ClientConfig>>) -> UpstreamClient {
        UpstreamClient {
            settings,
            pool: Arc::new(Pool::default()),
            tls: ArcSwapOption::new(tls),
        }
    }

    /// Makes `tls` the configuration of `https` connections made from now on.
    pub fn replace_tls(&self, tls: Option<Arc<rustls::ClientConfig>>) {
        self.tls.store(tls);
    }

    /// Sends `request` (its URI in origin form, `/path?query`) to `address` and waits for the
    /// response head. The caller bounds the whole call in time.
    pub async fn send(
        &self,
        address: &UpstreamAddress,
        mut request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        request
            .headers_mut()
            .insert(http::header::HOST, address.host.clone());
        loop {
            let (mut sender, reused) = match self.pool.checkout(&address.authority) {
                Some(sender) => (sender, true),
                None => (self.connect(address).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        pool: self.pool.clone(),
                        authority: address.authority.clone(),
                        sender,
                    };
                    return Ok(response.map(|incoming| {
                        UpstreamBody::new(incoming, lease, self.settings.read_timeout)
                    }));
                }
                Err(mut error) => match error.take_message() {
                    // Never written: a pooled connection closed under us. Safe to send again,
                    // on a fresh connection if this one was already new.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Failed(error.into_error().to_string())),
                },
            }
        }
    }

    async fn connect(
        &self,
        address: &UpstreamAddress,
    ) -> Result<http1::SendRequest<Body>, UpstreamError> {
        if let Some(tls) = &address.tls {
            return self.connect_tls(tls).await;
        }
        let connecting = TcpStream::connect(&*address.authority);
        let stream = match tokio::time::timeout(self.settings.connect_timeout, connecting).await {
            Err(_) => return Err(UpstreamError::ConnectTimeout),
            Ok(Err(error)) => return Err(UpstreamError::Failed(error.to_string())),
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        start_http1(TokioIo::new(stream)).await
    }

    /// Connects to an `https` upstream: TCP, then the TLS handshake, both within the connect
    /// timeout.
    async fn connect_tls(
        &self,
        target: &TlsTarget,
    ) -> Result<http1::SendRequest<Body>, UpstreamError> {
        let config = self.tls.load_full().ok_or_else(|| {
            UpstreamError::Failed("no TLS configuration for https upstreams".to_owned())
        })?;
        let connecting = async {
            let stream = TcpStream::connect(&*target.connect_to)
                .await
                .map_err(|error| UpstreamError::Failed(error.to_string()))?;
            let _ = stream.set_nodelay(true);
            tokio_rustls::TlsConnector::from(config)
                .connect(target.server_name.clone(), stream)
                .await
                .map_err(|error| UpstreamError::Failed(format!("TLS handshake: {error}")))
        };
        let stream = tokio::time::timeout(self.settings.connect_timeout, connecting)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout)??;
        start_http1(TokioIo::new(stream)).await
    }

    /// Idle connections currently pooled, over every upstream (for tests and diagnostics).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }
}

/// Starts HTTP/1.1 on a connected stream; its connection task runs until the upstream or the
/// pool closes it.
async fn start_http1<I>(io: I) -> Result<http1::SendRequest<Body>, UpstreamError>
where
    I: Read + Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|error| UpstreamError::Failed(error.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Idle connections by upstream `host:port`.
#[derive(Default)]
struct Pool {
    inner: Mutex<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    idle: HashMap<Arc<str>, Vec<IdleConnection>>,
    last_sweep: Option<Instant>,
}

struct IdleConnection {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

impl Pool {
    /// The most recently returned connection that can take a request now. Connections still
    /// finishing their last exchange stay pooled; closed and expired ones are dropped.
    fn checkout(&self, authority: &str) -> Option<http1::SendRequest<Body>> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let idle = inner.idle.get_mut(authority)?;
        let now = Instant::now();
        idle.retain(|connection| {
            !connection.sender.is_closed() && now.duration_since(connection.since) < IDLE_TIMEOUT
        });
        let ready = idle
            .iter()
            .rposition(|connection| connection.sender.is_ready())?;
        Some(idle.remove(ready).sender)
    }

    /// Takes a connection back after its response ended cleanly.
    fn check_in(&self, authority: Arc<str>, sender: http1::SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if inner
            .last_sweep
            .is_none_or(|last| now.duration_since(last) >= SWEEP_INTERVAL)
        {
            inner.last_sweep = Some(now);
            inner.idle.retain(|_, idle| {
                idle.retain(|connection| {
                    !connection.sender.is_closed()
                        && now.duration_since(connection.since) < IDLE_TIMEOUT
                });
                !idle.is_empty()
            });
        }
        let idle = inner.idle.entry(authority).or_default();
        if idle.len() >= MAX_IDLE_PER_UPSTREAM {
            // The oldest goes: the warmest connections are the most recent.
            idle.remove(0);
        }
        idle.push(IdleConnection { sender, since: now });
    }

    fn idle_count(&self) -> usize {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.idle.values().map(Vec::len).sum()
    }
}

/// A connection on loan to one response: back to the pool when the body ends cleanly, closed
/// when the body is dropped early or fails.
struct Lease {
    pool: Arc<Pool>,
    authority: Arc<str>,
    sender: http1::SendRequest<Body>,
}

impl Lease {
    fn release(self) {
        self.pool.check_in(self.authority, self.sender);
    }
}

/// A response body from an upstream: bounded in idle time (no more bytes for `read_timeout` is
/// an error), returning its connection to the pool once it has been read to the end.
pub struct UpstreamBody {
    incoming: Incoming,
    lease: Option<Lease>,
    read_timeout: Duration,
    /// The idle timer, created the first time the body has to wait.
    idle: Option<Pin<Box<Sleep>>>,
    /// Whether a frame arrived since the idle timer was last set.
    progressed: bool,
}

impl UpstreamBody {
    fn new(incoming: Incoming, lease: Lease, read_timeout: Duration) -> UpstreamBody {
        let mut body = UpstreamBody {
            incoming,
            lease: Some(lease),
            read_timeout,
            idle: None,
            progressed: false,
        };
        body.release_if_ended();
        body
    }

    fn release_if_ended(&mut self) {
        if http_body::Body::is_end_stream(&self.incoming)
            && let Some(lease) = self.lease.take()
        {
            lease.release();
        }
    }
}

/// The error a streamed upstream body ends with.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamBodyError {
    /// The upstream sent nothing for the read timeout.
    #[error("the upstream stopped sending")]
    ReadTimeout,
    /// The connection broke.
    #[error("reading from the upstream failed: {0}")]
    Read(#[from] hyper::Error),
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = UpstreamBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamBodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.progressed = true;
                this.release_if_ended();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                // A broken exchange leaves the connection unusable: it is not pooled.
                this.lease = None;
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                if let Some(lease) = this.lease.take() {
                    lease.release();
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                // The idle timer starts only when the body has to wait, so a body that is
                // already buffered costs no timer; it restarts after every frame.
                let deadline = tokio::time::Instant::now() + this.read_timeout;
                let idle = match &mut this.idle {
                    Some(idle) => {
                        if std::mem::take(&mut this.progressed) {
                            idle.as_mut().reset(deadline);
                        }
                        idle
                    }
                    None => this
                        .idle
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                ready!(idle.as_mut().poll(cx));
                this.lease = None;
                Poll::Ready(Some(Err(UpstreamBodyError::ReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// The origin-form target of an upstream call: `path` then `?query` when there is one.
pub fn origin_form(path: &str, query: Option<&str>) -> Result<Uri, http::uri::InvalidUri> {
    match query {
        Some(query) => Uri::try_from(format!("{path}?{query}")),
        None => Uri::try_from(path),
    }
}
