//! The upstream client: HTTP/1.1 calls to provider upstreams over connections kept alive in
//! lanes, reused only when provably clean, and capped per providing department.
//!
//! Built directly on hyper's connection API rather than a general-purpose client: the gateway
//! needs exactly one thing from it — send this request on a warm connection of its lane, never
//! replay it — and the layers a general client adds (URL types, redirect and retry policies,
//! decoders, a spawned task per call to return connections to the pool) cost more per call than
//! the rest of a passthrough exchange.
//!
//! **Lanes.** HTTP/1.1 matches an answer to a request by order alone: an upstream that writes
//! an extra, unsolicited answer (a bug, or on purpose) makes the next call on that connection
//! read it. So a connection carries the calls of one [`Lane`] only — one (upstream origin,
//! service, consumer), or for certificate lookups one (origin, certificate type) — and an extra
//! answer can at worst answer the same consumer's later call of the same service: never another
//! department's, never another service's.
//!
//! **Clean reuse.** A connection goes back to its lane when its response has been read to its
//! end, and is used again only when all of these hold (any doubt closes it instead):
//! 1. hyper wants a request on it. Its client dispatcher asks for the next request only after
//!    the response ended *and* it found its read buffer empty and the socket with nothing to
//!    read; a byte that arrives while it is idle closes the connection (hyper 1.12,
//!    `proto/h1/conn.rs`, `require_empty_read`; `proto/h1/dispatch.rs`, `poll_loop` reads
//!    before it asks for a message).
//! 2. The socket has nothing to read: a non-blocking `recv(MSG_PEEK)` at checkout sees bytes
//!    hyper has not been woken for yet, and an upstream's close.
//! 3. Not one byte was received since the response ended: the connection's IO counts what it
//!    reads below hyper and below TLS ([`SocketIo`]). For `https` the bytes received must also
//!    end on a TLS record boundary, so rustls holds no partial record (the start of an extra
//!    answer whose rest would arrive after the next request).
//!
//! Bytes that arrive after a request was written are, in HTTP/1.1, its answer: no client can
//! tell an extra answer delayed past all of these checks from the real one. The genuine answer
//! it displaced then arrives on an idle connection and is caught by them, so nothing shifts
//! further, and the lane keeps even that one answer within the consumer's own calls of the same
//! service.
//!
//! **Caps.** Each providing department has a cap on open connections (busy, idle, connecting,
//! over every lane, services and certificate issuers alike). At the cap, a call takes an idle
//! connection of its lane, else closes the longest-idle connection of another lane of that
//! provider to make room, else waits in line for a connection to be released or closed; the
//! caller bounds the wait (the upstream timeout). A caller that hangs up while waiting, or
//! before its request is handed to a connection, is not forwarded ([`CallerPresence`]).
//!
//! `https` upstreams get TLS at connect time (system roots plus `upstream_ca`, ALPN `http/1.1`,
//! the server name from the URL's host); after the handshake the connection is pooled and used
//! exactly as a plain one.
//!
//! Policy: no redirects followed (a provider's redirect goes back to the caller), no proxies from
//! the environment, nothing decompressed, and a request is resent only when hyper hands it back
//! unsent (a pooled connection the upstream had just closed); one that may have reached the
//! provider is never replayed behind the department's back.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use crate::admission::{CallerPresence, InFlightPermit};

/// How long an idle connection is kept before it is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often idle connections past [`IDLE_TIMEOUT`] are looked for (on the next pool access).
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Where a service's calls go: an `http` or `https` origin, resolved once at configuration load.
#[derive(Debug, Clone)]
pub struct UpstreamAddress {
    /// The origin as lanes name it; for `http`, also the `host:port` connected to. (`https`
    /// origins are `https://host:port`, so a plain and a TLS connection to one port never
    /// share a lane.)
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
    pub(crate) fn from_url(url: &url::Url) -> Option<UpstreamAddress> {
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

/// Which calls may share connections, and the cap they count against. Built once per
/// configuration snapshot (one per service and consumer, one per certificate type), so a call
/// allocates nothing to find its connections.
#[derive(Debug)]
pub struct Lane {
    /// Where the lane's calls go.
    address: UpstreamAddress,
    /// The pool's name for the lane: the origin, then the service and consumer (or the
    /// certificate type). Ids cannot hold spaces, so no two lanes share a name.
    key: Arc<str>,
    /// The providing (or issuing) department, whose cap the lane's connections count against.
    provider: Arc<str>,
    /// The most connections open at once to `provider`, over all its lanes.
    max_connections: usize,
}

impl Lane {
    /// The lane of `consumer`'s calls of `provider`'s `service` at `address`.
    pub(crate) fn for_service(
        address: &UpstreamAddress,
        provider: &str,
        service: &str,
        consumer: &str,
        max_connections: usize,
    ) -> Lane {
        Lane {
            key: format!("{} {provider}/{service} {consumer}", address.authority).into(),
            address: address.clone(),
            provider: provider.into(),
            max_connections,
        }
    }

    /// The lane of every lookup of `certificate_type` at `address`, issued by `issuer`. One
    /// lane for all consumers: a fetch answers every caller waiting for that certificate, and
    /// what it fetches is validated and cached before anyone sees it.
    pub(crate) fn for_certificates(
        address: &UpstreamAddress,
        issuer: &str,
        certificate_type: &str,
        max_connections: usize,
    ) -> Lane {
        Lane {
            key: format!("{} certificates/{certificate_type}", address.authority).into(),
            address: address.clone(),
            provider: issuer.into(),
            max_connections,
        }
    }
}

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection within the timeout.
    #[error("connecting timed out")]
    ConnectTimeout,
    /// The caller hung up before the request was handed to a connection: it was not sent.
    #[error("the caller hung up before the call was sent")]
    CallerGone,
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
    pub(crate) fn replace_tls(&self, tls: Option<Arc<rustls::ClientConfig>>) {
        self.tls.store(tls);
    }

    /// Sends `request` (its URI in origin form, `/path?query`) on a connection of `lane` and
    /// waits for the response head. The caller bounds the whole call in time, the wait for a
    /// connection included; `caller` gone before the request is handed to a connection ends
    /// the call unsent ([`UpstreamError::CallerGone`]).
    pub async fn send(
        &self,
        lane: &Arc<Lane>,
        mut request: Request<Body>,
        caller: &CallerPresence,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        request
            .headers_mut()
            .insert(http::header::HOST, lane.address.host.clone());
        loop {
            let (mut connection, reused) = self.connection(lane, caller).await?;
            if caller.is_gone() {
                // Not handed over: the connection goes back unused.
                let received = connection.socket.received();
                self.pool.check_in(lane, connection, received);
                return Err(UpstreamError::CallerGone);
            }
            match connection.sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        pool: self.pool.clone(),
                        lane: lane.clone(),
                        connection,
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

    /// A connection of `lane` to send on: a clean idle one (`true`), or a new one (`false`),
    /// waiting in line at the provider's cap.
    async fn connection(
        &self,
        lane: &Arc<Lane>,
        caller: &CallerPresence,
    ) -> Result<(Connection, bool), UpstreamError> {
        loop {
            let grant = match self.pool.checkout(lane) {
                Checkout::Granted(grant) => grant,
                Checkout::Wait(granted) => match while_present(caller, granted).await? {
                    Ok(grant) => grant,
                    // The pool dropped our place in line (it does not): ask again.
                    Err(_) => continue,
                },
            };
            match grant {
                Grant::Idle(idle) => {
                    if let Some(connection) = while_present(caller, idle.into_clean()).await? {
                        return Ok((connection, true));
                    }
                }
                Grant::Slot(slot) => {
                    if caller.is_gone() {
                        return Err(UpstreamError::CallerGone);
                    }
                    return Ok((self.connect(&lane.address, slot).await?, false));
                }
            }
        }
    }

    async fn connect(
        &self,
        address: &UpstreamAddress,
        slot: ConnectionSlot,
    ) -> Result<Connection, UpstreamError> {
        if let Some(tls) = &address.tls {
            return self.connect_tls(tls, slot).await;
        }
        let connecting = TcpStream::connect(&*address.authority);
        let stream = match tokio::time::timeout(self.settings.connect_timeout, connecting).await {
            Err(_) => return Err(UpstreamError::ConnectTimeout),
            Ok(Err(error)) => return Err(UpstreamError::Failed(error.to_string())),
            Ok(Ok(stream)) => stream,
        };
        stream.set_nodelay(true).ok();
        let socket = Arc::new(Socket::new(stream, false));
        let io = SocketIo::new(socket.clone());
        let sender = start_http1(TokioIo::new(io), slot).await?;
        Ok(Connection { sender, socket })
    }

    /// Connects to an `https` upstream: TCP, then the TLS handshake, both within the connect
    /// timeout.
    async fn connect_tls(
        &self,
        target: &TlsTarget,
        slot: ConnectionSlot,
    ) -> Result<Connection, UpstreamError> {
        let config = self.tls.load_full().ok_or_else(|| {
            UpstreamError::Failed("no TLS configuration for https upstreams".to_owned())
        })?;
        let connecting = async {
            let stream = TcpStream::connect(&*target.connect_to)
                .await
                .map_err(|error| UpstreamError::Failed(error.to_string()))?;
            stream.set_nodelay(true).ok();
            let socket = Arc::new(Socket::new(stream, true));
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(target.server_name.clone(), SocketIo::new(socket.clone()))
                .await
                .map_err(|error| UpstreamError::Failed(format!("TLS handshake: {error}")))?;
            Ok::<_, UpstreamError>((socket, stream))
        };
        let (socket, stream) = tokio::time::timeout(self.settings.connect_timeout, connecting)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout)??;
        let sender = start_http1(TokioIo::new(stream), slot).await?;
        Ok(Connection { sender, socket })
    }

    /// Idle connections currently pooled, over every lane (for tests and diagnostics).
    pub fn idle_connections(&self) -> usize {
        self.pool.lock().idle_count()
    }

    /// Connections open now (busy, idle, connecting, closing) to `provider`'s upstreams (for
    /// tests and diagnostics).
    pub fn open_connections(&self, provider: &str) -> usize {
        self.pool
            .lock()
            .providers
            .get(provider)
            .map_or(0, |connections| connections.open)
    }
}

/// Polls `future` while `caller` is present. A hang-up drops the exchange's future where it
/// waits and moves it to a task of its own (`server::Uncancellable`), which polls it at once:
/// that poll sees the hang-up, so no wake-up of its own is needed.
async fn while_present<F: Future>(
    caller: &CallerPresence,
    future: F,
) -> Result<F::Output, UpstreamError> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|context| {
        if caller.is_gone() {
            return Poll::Ready(Err(UpstreamError::CallerGone));
        }
        future.as_mut().poll(context).map(Ok)
    })
    .await
}

/// Starts HTTP/1.1 on a connected stream; its connection task runs until the upstream or the
/// pool closes it, and gives the connection's place under the provider's cap back at its end.
async fn start_http1<I>(
    io: I,
    slot: ConnectionSlot,
) -> Result<http1::SendRequest<Body>, UpstreamError>
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
        // The socket is closed once the connection future is gone: only then is there room.
        drop(slot);
    });
    Ok(sender)
}

/// A connection's socket as the pool sees it, shared with the [`SocketIo`] hyper (or rustls)
/// reads through.
struct Socket {
    stream: TcpStream,
    /// Bytes received so far.
    received: AtomicU64,
    /// `https` only: whether the bytes received so far end inside a TLS record.
    inside_tls_record: AtomicBool,
    /// Whether the stream carries TLS (record framing is followed).
    tls: bool,
}

impl Socket {
    fn new(stream: TcpStream, tls: bool) -> Socket {
        Socket {
            stream,
            received: AtomicU64::new(0),
            inside_tls_record: AtomicBool::new(false),
            tls,
        }
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }

    /// Whether nothing is waiting to be read and the upstream has not closed: a non-blocking
    /// peek finds the socket empty.
    fn has_nothing_to_read(&self) -> bool {
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        let peeked = SockRef::from(&self.stream)
            .recv_with_flags(&mut probe, libc::MSG_PEEK | libc::MSG_DONTWAIT);
        matches!(peeked, Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }
}

/// The IO of an upstream connection: the socket's stream, counting what it reads (and, for
/// `https`, following the TLS record framing), so the pool can tell whether anything arrived
/// after a response ended.
struct SocketIo {
    socket: Arc<Socket>,
    /// Where the bytes read so far stand in the TLS record framing (`https` only).
    framing: TlsRecordFraming,
}

impl SocketIo {
    fn new(socket: Arc<Socket>) -> SocketIo {
        SocketIo {
            socket,
            framing: TlsRecordFraming::default(),
        }
    }
}

impl AsyncRead for SocketIo {
    #[allow(unsafe_code)] // hyper's ReadBuf: see the SAFETY comments
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let SocketIo { socket, framing } = self.get_mut();
        let stream = &socket.stream;
        loop {
            ready!(stream.poll_read_ready(context))?;
            let filled = buf.filled().len();
            // SAFETY: `recv` only writes into the slice, never reads it; the bytes it reports
            // written are then marked initialized, as tokio's own `TcpStream` does.
            let unfilled = unsafe { buf.unfilled_mut() };
            let received =
                stream.try_io(Interest::READABLE, || SockRef::from(stream).recv(unfilled));
            match received {
                Ok(read) => {
                    // SAFETY: `recv` wrote `read` bytes at the start of the unfilled part.
                    unsafe { buf.assume_init(read) };
                    buf.advance(read);
                    let bytes = &buf.filled()[filled..];
                    // One reader (the connection's task), so a plain store counts.
                    socket
                        .received
                        .store(socket.received() + bytes.len() as u64, Ordering::Release);
                    if socket.tls {
                        framing.advance(bytes);
                        socket
                            .inside_tls_record
                            .store(!framing.at_boundary(), Ordering::Release);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for SocketIo {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let stream = &self.socket.stream;
        loop {
            ready!(stream.poll_write_ready(context))?;
            match stream.try_write(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let stream = &self.socket.stream;
        loop {
            ready!(stream.poll_write_ready(context))?;
            match stream.try_write_vectored(bufs) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Writes go straight to the socket.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(SockRef::from(&self.socket.stream).shutdown(std::net::Shutdown::Write))
    }
}

/// Where a byte stream stands in TLS's record framing (RFC 8446 §5.1: a 5-byte header whose
/// last two bytes are the length of the fragment that follows). Followed on the bytes received,
/// it tells whether they end between records, so rustls holds no partial one.
#[derive(Debug, Default)]
struct TlsRecordFraming {
    /// The header bytes of the record begun so far.
    header: [u8; 5],
    /// How many of `header` have arrived (0 between records).
    header_filled: usize,
    /// Bytes of the current record's fragment still to come.
    fragment_remaining: usize,
}

impl TlsRecordFraming {
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.fragment_remaining > 0 {
                let taken = self.fragment_remaining.min(bytes.len());
                self.fragment_remaining -= taken;
                bytes = &bytes[taken..];
                continue;
            }
            let taken = (self.header.len() - self.header_filled).min(bytes.len());
            self.header[self.header_filled..self.header_filled + taken]
                .copy_from_slice(&bytes[..taken]);
            self.header_filled += taken;
            bytes = &bytes[taken..];
            if self.header_filled == self.header.len() {
                self.header_filled = 0;
                self.fragment_remaining =
                    usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.header_filled == 0 && self.fragment_remaining == 0
    }
}

/// An open connection: what sends on it, and its socket.
struct Connection {
    sender: http1::SendRequest<Body>,
    socket: Arc<Socket>,
}

/// A connection waiting in its lane.
struct IdleConnection {
    connection: Connection,
    /// What the socket had received when the response ended.
    received_at_release: u64,
    /// When it was checked in.
    since: Instant,
}

impl IdleConnection {
    /// The connection, once hyper wants a request on it, if it is provably clean then (see the
    /// module's doc); `None` closes it.
    async fn into_clean(self) -> Option<Connection> {
        let IdleConnection {
            mut connection,
            received_at_release,
            ..
        } = self;
        // Usually at once; a connection just checked in may still be running hyper's check.
        connection.sender.ready().await.ok()?;
        let socket = &connection.socket;
        let clean = socket.received() == received_at_release
            && !socket.inside_tls_record.load(Ordering::Acquire)
            && socket.has_nothing_to_read();
        clean.then_some(connection)
    }

    fn expired(&self, now: Instant) -> bool {
        self.connection.sender.is_closed() || now.duration_since(self.since) >= IDLE_TIMEOUT
    }
}

/// What [`Pool::checkout`] gives a call.
enum Checkout {
    /// A connection to use, or room to open one.
    Granted(Grant),
    /// The provider is at its cap: wait in line.
    Wait(oneshot::Receiver<Grant>),
}

/// A connection to use or room to open one, given at checkout or handed to a call waiting in
/// line.
enum Grant {
    /// An idle connection of the call's lane (checked clean before use).
    Idle(IdleConnection),
    /// Room under the provider's cap for a new connection.
    Slot(ConnectionSlot),
}

/// The lanes' idle connections and every provider's count of open connections.
#[derive(Default)]
struct Pool {
    inner: Mutex<PoolInner>,
}

#[derive(Default)]
struct PoolInner {
    providers: HashMap<Arc<str>, ProviderConnections>,
    last_sweep: Option<Instant>,
}

/// One providing department's connections.
#[derive(Default)]
struct ProviderConnections {
    /// Open connections (busy, idle, connecting, and closing until their task ends): the
    /// number the cap bounds.
    open: usize,
    /// Idle connections by lane, the most recently returned last.
    idle: HashMap<Arc<str>, Vec<IdleConnection>>,
    /// Calls waiting for a connection at the cap, the longest-waiting first. Each is an
    /// exchange or lookup in flight, so the line is bounded by the in-flight bounds.
    waiting: VecDeque<Waiter>,
}

/// A call waiting for a connection of its lane, or for room for a new one.
struct Waiter {
    lane: Arc<str>,
    grant: oneshot::Sender<Grant>,
}

impl ProviderConnections {
    /// Removes the longest-idle connection of a lane other than `lane`.
    fn take_longest_idle_elsewhere(&mut self, lane: &str) -> Option<IdleConnection> {
        let (key, position) = self
            .idle
            .iter()
            .filter(|(key, _)| &***key != lane)
            .filter_map(|(key, idle)| {
                let (position, oldest) = idle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, connection)| connection.since)?;
                Some((key, position, oldest.since))
            })
            .min_by_key(|(_, _, since)| *since)
            .map(|(key, position, _)| (key.clone(), position))?;
        let idle = self.idle.get_mut(&key)?;
        let taken = idle.remove(position);
        if idle.is_empty() {
            self.idle.remove(&key);
        }
        Some(taken)
    }

    fn has_live_waiters(&self) -> bool {
        self.waiting.iter().any(|waiter| !waiter.grant.is_closed())
    }
}

impl PoolInner {
    fn idle_count(&self) -> usize {
        self.providers
            .values()
            .flat_map(|provider| provider.idle.values())
            .map(Vec::len)
            .sum()
    }

    /// Every so often: closes idle connections that expired or that the upstream closed, and
    /// forgets lanes and providers with nothing left. Returns what to drop (outside the lock).
    fn sweep(&mut self, now: Instant) -> Vec<IdleConnection> {
        let mut expired = Vec::new();
        if self
            .last_sweep
            .is_some_and(|last| now.duration_since(last) < SWEEP_INTERVAL)
        {
            return expired;
        }
        self.last_sweep = Some(now);
        self.providers.retain(|_, provider| {
            provider.idle.retain(|_, idle| {
                let (gone, kept) = std::mem::take(idle)
                    .into_iter()
                    .partition(|connection| connection.expired(now));
                expired.extend::<Vec<_>>(gone);
                *idle = kept;
                !idle.is_empty()
            });
            provider.waiting.retain(|waiter| !waiter.grant.is_closed());
            provider.open > 0 || !provider.waiting.is_empty()
        });
        expired
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection of `lane` (the most recently returned, to keep the fewest warm), room
    /// for a new one under the provider's cap, or — at the cap, after closing the longest-idle
    /// connection of another lane to make room — a place in line.
    fn checkout(self: &Arc<Self>, lane: &Lane) -> Checkout {
        let now = Instant::now();
        let mut closing = Vec::new();
        let checkout = {
            let mut inner = self.lock();
            let provider = inner.providers.entry(lane.provider.clone()).or_default();
            let idle = provider.idle.get_mut(&*lane.key).and_then(|idle| {
                while let Some(connection) = idle.pop() {
                    if !connection.expired(now) {
                        return Some(connection);
                    }
                    closing.push(connection);
                }
                None
            });
            if let Some(idle) = idle {
                Checkout::Granted(Grant::Idle(idle))
            } else if provider.open < lane.max_connections {
                provider.open += 1;
                Checkout::Granted(Grant::Slot(ConnectionSlot {
                    pool: self.clone(),
                    provider: lane.provider.clone(),
                    armed: true,
                }))
            } else {
                // Closing it frees room when its task ends; the room goes to the call
                // waiting longest, this one or an earlier one.
                closing.extend(provider.take_longest_idle_elsewhere(&lane.key));
                provider.waiting.retain(|waiter| !waiter.grant.is_closed());
                let (grant, granted) = oneshot::channel();
                provider.waiting.push_back(Waiter {
                    lane: lane.key.clone(),
                    grant,
                });
                Checkout::Wait(granted)
            }
        };
        drop(closing);
        checkout
    }

    /// Takes a connection back after its response ended cleanly (`received` bytes by then): to
    /// the longest-waiting call of its lane, else closed when a call of another lane waits for
    /// room, else into its lane.
    fn check_in(&self, lane: &Lane, connection: Connection, received: u64) {
        if connection.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = IdleConnection {
            connection,
            received_at_release: received,
            since: now,
        };
        let mut inner = self.lock();
        let expired = inner.sweep(now);
        let Some(provider) = inner.providers.get_mut(&*lane.provider) else {
            return;
        };
        while let Some(position) = provider
            .waiting
            .iter()
            .position(|waiter| *waiter.lane == *lane.key)
        {
            let Some(waiter) = provider.waiting.remove(position) else {
                break;
            };
            match waiter.grant.send(Grant::Idle(idle)) {
                Ok(()) => return,
                Err(Grant::Idle(back)) => idle = back,
                Err(Grant::Slot(_)) => unreachable!("an idle connection was sent"),
            }
        }
        if provider.has_live_waiters() {
            // Closing it makes room for a call of another lane (see `slot_freed`).
            drop(inner);
            drop(idle);
            drop(expired);
            return;
        }
        provider
            .idle
            .entry(lane.key.clone())
            .or_default()
            .push(idle);
        drop(inner);
        drop(expired);
    }

    /// A connection of `provider` is gone: its room goes to the call waiting longest, or the
    /// count goes down.
    fn slot_freed(self: &Arc<Self>, provider_key: &Arc<str>) {
        let mut inner = self.lock();
        let Some(provider) = inner.providers.get_mut(&**provider_key) else {
            return;
        };
        while let Some(waiter) = provider.waiting.pop_front() {
            if waiter.grant.is_closed() {
                continue;
            }
            let slot = ConnectionSlot {
                pool: self.clone(),
                provider: provider_key.clone(),
                armed: true,
            };
            match waiter.grant.send(Grant::Slot(slot)) {
                // The room moves on: the count stays.
                Ok(()) => return,
                // The caller left meanwhile: this slot must not count down again (and must
                // not take this lock again).
                Err(Grant::Slot(mut slot)) => slot.armed = false,
                Err(Grant::Idle(_)) => unreachable!("a slot was sent"),
            }
        }
        provider.open = provider.open.saturating_sub(1);
    }
}

/// A connection's room under its provider's cap, held from before it connects until its
/// connection task ends.
struct ConnectionSlot {
    pool: Arc<Pool>,
    provider: Arc<str>,
    /// Whether dropping it gives the room back (a slot handed to a caller who had left is
    /// disarmed: its room went to the next one).
    armed: bool,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if self.armed {
            self.pool.slot_freed(&self.provider);
        }
    }
}

/// A connection on loan to one response: back to its lane when the body ends cleanly, closed
/// when the body is dropped early or fails.
struct Lease {
    pool: Arc<Pool>,
    lane: Arc<Lane>,
    connection: Connection,
}

impl Lease {
    fn release(self) {
        // What had arrived when the response ended: anything more before the next use is an
        // answer nobody asked for.
        let received = self.connection.socket.received();
        self.pool.check_in(&self.lane, self.connection, received);
    }
}

/// A response body from an upstream: bounded in idle time (no more bytes for `read_timeout` is
/// an error), returning its connection to its lane once it has been read to the end.
pub struct UpstreamBody {
    incoming: Incoming,
    lease: Option<Lease>,
    read_timeout: Duration,
    /// The idle timer, created the first time the body has to wait.
    idle: Option<Pin<Box<Sleep>>>,
    /// Whether a frame arrived since the idle timer was last set.
    progressed: bool,
    /// The call's room under the in-flight bounds, while the body streams to its caller.
    in_flight: Option<InFlightPermit>,
}

impl UpstreamBody {
    fn new(incoming: Incoming, lease: Lease, read_timeout: Duration) -> UpstreamBody {
        let mut body = UpstreamBody {
            incoming,
            lease: Some(lease),
            read_timeout,
            idle: None,
            progressed: false,
            in_flight: None,
        };
        body.release_if_ended();
        body
    }

    /// Keeps the call's in-flight permit until the body is done: a streamed answer is work in
    /// flight (it holds an upstream connection) until it has streamed.
    pub fn hold(&mut self, permit: Option<InFlightPermit>) {
        self.in_flight = permit;
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
                this.in_flight = None;
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                if let Some(lease) = this.lease.take() {
                    lease.release();
                }
                this.in_flight = None;
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
                this.in_flight = None;
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
pub(crate) fn origin_form(path: &str, query: Option<&str>) -> Result<Uri, http::uri::InvalidUri> {
    match query {
        Some(query) => Uri::try_from(format!("{path}?{query}")),
        None => Uri::try_from(path),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use http_body_util::BodyExt;

    use super::*;

    /// A one-connection upstream on a thread of its own: answers one request, then writes
    /// whatever `extra` sends it (answers nobody asked for), reporting each write done.
    fn upstream_writing_on_demand() -> (
        std::net::SocketAddr,
        std::sync::mpsc::Sender<&'static [u8]>,
        std::sync::mpsc::Receiver<()>,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let (extra, to_write) = std::sync::mpsc::channel::<&'static [u8]>();
        let (written, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .unwrap();
            for bytes in to_write {
                stream.write_all(bytes).unwrap();
                written.send(()).unwrap();
            }
        });
        (address, extra, done)
    }

    #[tokio::test]
    async fn a_connection_with_bytes_hyper_has_not_seen_is_not_reused() {
        let (address, extra, written) = upstream_writing_on_demand();
        let client = UpstreamClient::new(
            ClientSettings {
                connect_timeout: Duration::from_secs(10),
                read_timeout: Duration::from_secs(10),
            },
            None,
        );
        let url = url::Url::parse(&format!("http://{address}/")).unwrap();
        let address = UpstreamAddress::from_url(&url).unwrap();
        let lane = Arc::new(Lane::for_service(&address, "market", "raw", "tax", 4));
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = Uri::from_static("/");
        let response = client
            .send(&lane, request, &CallerPresence::unwatched())
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        // Let hyper's connection task find the connection idle and ask for the next request.
        let hyper_wants_more = || {
            client.pool.lock().providers["market"].idle[&*lane.key]
                .iter()
                .all(|idle| idle.connection.sender.is_ready())
        };
        for _ in 0..1000 {
            if hyper_wants_more() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(hyper_wants_more());
        let Checkout::Granted(Grant::Idle(idle)) = client.pool.checkout(&lane) else {
            panic!("the idle connection is given out");
        };
        let connection = idle
            .into_clean()
            .await
            .expect("clean while nothing arrived");
        let received = connection.socket.received();
        client.pool.check_in(&lane, connection, received);

        // An answer nobody asked for arrives. The runtime (one thread) is not polled until
        // the checkout below, so hyper has not been woken for it: the connection still says
        // it is ready, and only the peek at checkout can tell.
        extra
            .send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno")
            .unwrap();
        written.recv().unwrap();
        assert!(hyper_wants_more(), "hyper has not seen the bytes");
        let Checkout::Granted(Grant::Idle(idle)) = client.pool.checkout(&lane) else {
            panic!("the idle connection is given out");
        };
        assert!(
            idle.into_clean().await.is_none(),
            "bytes waiting on the socket make it unclean"
        );
    }

    #[test]
    fn tls_framing_knows_whether_the_bytes_end_between_records() {
        let record = |length: u16| {
            let mut bytes = vec![23, 3, 3];
            bytes.extend_from_slice(&length.to_be_bytes());
            bytes.extend(std::iter::repeat_n(0xAB, usize::from(length)));
            bytes
        };
        let mut stream = record(300);
        stream.extend(record(0));
        stream.extend(record(17));
        let mut framing = TlsRecordFraming::default();
        assert!(framing.at_boundary());
        framing.advance(&stream);
        assert!(framing.at_boundary(), "three whole records");
        // The same stream a byte at a time: inside a record at every byte but the last of
        // each record.
        let mut framing = TlsRecordFraming::default();
        let ends = [305, 310, 332];
        for (index, byte) in stream.iter().enumerate() {
            framing.advance(std::slice::from_ref(byte));
            assert_eq!(
                framing.at_boundary(),
                ends.contains(&(index + 1)),
                "{index}"
            );
        }
        let mut framing = TlsRecordFraming::default();
        framing.advance(&record(40)[..3]);
        assert!(!framing.at_boundary(), "a header cut short");
    }
}
