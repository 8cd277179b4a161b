//! The listeners: accepting connections on the data and admin planes, HTTP/1.1 and h2c (prior
//! knowledge) on the same port, bounded (connections, header size, header read time), and
//! drained gracefully on shutdown. With `[tls]` the data plane speaks TLS (1.2, 1.3; h2 or
//! HTTP/1.1 by ALPN): each accepted connection takes the current TLS configuration, finishes its
//! handshake within the handshake timeout, and carries the client certificate it verified as
//! its identity; the admin plane stays plain HTTP (bind it to an internal address).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use futures_util::FutureExt;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tower::ServiceExt;

use crate::admission::CallerPresence;
use crate::config::GatewaySettings;
use crate::gateway::Gateway;
use crate::headers::Origin;
use crate::tls::ServerTls;

mod client_io;
mod h2_streams;
mod linger;

/// What bounds each client connection, from `[gateway]`.
#[derive(Clone, Copy)]
struct ConnectionLimits {
    /// Time to send a request head (hyper's, and before the first request).
    header_read_timeout: Duration,
    /// Time a write to the caller may wait for it to read ([`client_io`], [`h2_streams`]).
    send_timeout: Duration,
    /// The largest request head (HTTP/2's is enforced here, see [`h2_streams`]).
    max_header_bytes: usize,
}

impl ConnectionLimits {
    fn of(settings: &GatewaySettings) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: settings.header_read_timeout,
            send_timeout: settings.send_timeout,
            max_header_bytes: settings.max_header_bytes,
        }
    }
}

/// Serves both planes on already-bound listeners until `shutdown` completes, then reports
/// not-ready (for `drain_delay` while still serving everything else), stops accepting, waits
/// (up to `shutdown_grace`) for in-flight requests and finally drains the audit queue (every
/// entry queued is committed before this returns).
///
/// Taking bound listeners lets tests bind port 0 and run many gateways at once.
pub async fn run(
    gateway: Arc<Gateway>,
    data_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let settings = gateway.snapshot().config.gateway.clone();
    let builder = Arc::new(connection_builder(&settings));
    let graceful = Arc::new(GracefulShutdown::new());
    let (stop_sender, stop) = watch::channel(false);

    // Started before the data plane takes traffic: an admin plane that cannot start is a
    // start-up failure, not a silent gap.
    let mut admin = AdminPlane::start(
        admin_listener,
        Plane::Admin {
            router: crate::admin::router(gateway.clone()),
        },
        builder.clone(),
        graceful.clone(),
        &settings,
        stop.clone(),
    )?;
    let serving = Serving {
        plane: Plane::Data {
            gateway: gateway.clone(),
            router: crate::data_plane::router(gateway.clone()),
        },
        tls: gateway.tls.clone(),
        builder,
        graceful: graceful.clone(),
        max_connections: settings.max_connections,
        limits: ConnectionLimits::of(&settings),
    };
    let data = tokio::spawn(accept_loop(data_listener, serving, stop));
    let anchor = tokio::spawn(anchor_timers());
    gateway.set_ready(true);
    tracing::info!("xgate is ready");

    shutdown.await;
    gateway.start_draining();
    if !settings.drain_delay.is_zero() {
        // Load balancers see 503 on /readyz and take the gateway out; until they have, its
        // connections, new ones included, are served as before.
        tracing::info!(
            drain_delay_ms = settings.drain_delay.as_millis() as u64,
            "shutting down: /readyz answers 503 for drain_delay_ms before new connections are refused"
        );
        tokio::select! {
            () = tokio::time::sleep(settings.drain_delay) => {}
            () = gateway.drain_delay_cut() => {
                tracing::info!("shutting down: the drain delay was cut short by a second signal");
            }
        }
    }
    anchor.abort();
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    stop_sender.send(true).ok();
    data.await.ok();
    admin.stopped_accepting().await;
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_shared| GracefulShutdown::new());
    let deadline = tokio::time::Instant::now() + settings.shutdown_grace;
    match tokio::time::timeout_at(deadline, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections drained"),
        Err(_) => tracing::warn!(
            grace_ms = settings.shutdown_grace.as_millis() as u64,
            "shutdown grace ran out; closing the remaining connections"
        ),
    }
    // Exchanges whose callers hung up are no connection's any more, but their entries count.
    gateway.tasks.close();
    if tokio::time::timeout_at(deadline, gateway.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            running = gateway.tasks.len(),
            "shutdown grace ran out with exchanges still running; they are not recorded"
        );
    }
    gateway.audit.flush().await;
    tracing::info!("audit queue drained");
    admin.finish().await;
    Ok(())
}

/// The admin plane, served by a runtime of its own on a thread of its own: whatever holds the
/// data plane's runtime (every worker busy, a flood of connections, a stalled task), `/healthz`,
/// `/metrics` and `/audit/*` still answer. What its handlers start (schema changes, reloads,
/// audit reads on the blocking pool) runs on that runtime too.
struct AdminPlane {
    /// Completes when the accept loop has returned.
    accepting: oneshot::Receiver<()>,
    /// Tells the runtime to stop (its connections drained, the shutdown's tasks done).
    finish: oneshot::Sender<()>,
    /// Completes when the runtime has stopped.
    finished: oneshot::Receiver<()>,
}

/// How long the admin runtime, once told to stop, waits for work still on its blocking pool
/// (an audit read): the shutdown has already waited for everything that must end.
const ADMIN_RUNTIME_SHUTDOWN: Duration = Duration::from_secs(5);

impl AdminPlane {
    /// Starts the admin runtime's thread, accepting on `listener` until `stop`.
    fn start(
        listener: TcpListener,
        plane: Plane,
        builder: Arc<auto::Builder<h2_streams::StreamExecutor>>,
        graceful: Arc<GracefulShutdown>,
        settings: &GatewaySettings,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<AdminPlane> {
        // A listener answers through the reactor it is registered with: take it away from the
        // data plane's, to register it again with the admin runtime's.
        let listener = listener.into_std()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("xgate-admin-blocking")
            .build()?;
        let (max_connections, limits) = (settings.max_connections, ConnectionLimits::of(settings));
        let (accepted_all, accepting) = oneshot::channel();
        let (finish, finishing) = oneshot::channel::<()>();
        let (stopped, finished) = oneshot::channel();
        std::thread::Builder::new()
            .name("xgate-admin".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let serving = Serving {
                                plane,
                                tls: None,
                                builder,
                                graceful,
                                max_connections,
                                limits,
                            };
                            accept_loop(listener, serving, stop).await
                        }
                        Err(error) => tracing::error!(%error, "the admin plane cannot listen"),
                    }
                    accepted_all.send(()).ok();
                    // Its connections are served until the shutdown has drained them.
                    finishing.await.ok();
                });
                runtime.shutdown_timeout(ADMIN_RUNTIME_SHUTDOWN);
                stopped.send(()).ok();
            })?;
        Ok(AdminPlane {
            accepting,
            finish,
            finished,
        })
    }

    /// Waits until the admin plane accepts no more connections.
    async fn stopped_accepting(&mut self) {
        (&mut self.accepting).await.ok();
    }

    /// Stops the admin runtime and waits until it has.
    async fn finish(self) {
        self.finish.send(()).ok();
        self.finished.await.ok();
    }
}

/// How often [`anchor_timers`] ticks.
const TIMER_ANCHOR: Duration = Duration::from_millis(250);

/// Keeps one timer due within [`TIMER_ANCHOR`] at all times. Tokio's timer driver wakes itself
/// (a write to its eventfd) whenever a timer is set that is due before the driver's planned
/// wake-up, and with no timer pending that is every one. The gateway sets one per request (the
/// header read timeout of the connection's next request, seconds away), and once the runtime
/// had been idle with no timer — e.g. while every caller waited for its audit commit — it paid
/// one system call per request for it (measured: ~0.9 per request). With this tick pending, a
/// timer seconds away is never the earliest, and the cost is four wake-ups a second.
async fn anchor_timers() {
    let mut ticks = tokio::time::interval(TIMER_ANCHOR);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
    }
}

/// HTTP/1.1 and HTTP/2 (h2c by prior knowledge) with the configured limits.
fn connection_builder(settings: &GatewaySettings) -> auto::Builder<h2_streams::StreamExecutor> {
    let mut builder = auto::Builder::new(h2_streams::StreamExecutor::new(settings.send_timeout));
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes)
        .max_headers(settings.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(
            u32::try_from(
                settings
                    .max_header_bytes
                    .saturating_mul(h2_streams::H2_HEADER_LIST_FACTOR),
            )
            .unwrap_or(u32::MAX),
        )
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// What a listener serves.
#[derive(Clone)]
enum Plane {
    /// The data plane. `/exchange/...`, nearly all of its traffic, goes straight to the exchange
    /// path, whose own `route` phase parses the path; the router serves the other routes.
    Data {
        /// The shared state the exchange path runs on.
        gateway: Arc<Gateway>,
        /// Every other data-plane route.
        router: Router,
    },
    /// The admin plane: everything through its router.
    Admin {
        /// The admin routes.
        router: Router,
    },
}

impl Plane {
    /// The origin of a connection accepted from `peer` over `scheme`. On the data plane,
    /// whether the peer is one of `[gateway] trusted_proxies` is decided here, once per
    /// connection, by the configuration in force (a reload applies to new connections).
    fn origin(&self, peer: std::net::SocketAddr, scheme: &'static str) -> Origin {
        let origin = Origin::new(peer, scheme);
        match self {
            Plane::Data { gateway, .. } => {
                let trusted = gateway
                    .snapshot()
                    .config
                    .gateway
                    .trusted_proxies
                    .contains(peer.ip());
                origin.with_trusted_proxy(trusted)
            }
            Plane::Admin { .. } => origin,
        }
    }

    /// Serves one request.
    fn serve(
        &self,
        request: http::Request<Body>,
        origin: &Arc<Origin>,
    ) -> impl Future<Output = Result<http::Response<Body>, Infallible>> + Send + use<> {
        match self {
            Plane::Data { gateway, .. } if is_exchange_path(request.uri().path()) => {
                let task_gateway = gateway.clone();
                let origin = origin.clone();
                let caller = CallerPresence::watched();
                let watched = caller.clone();
                // Runs in the connection's task; if the caller hangs up first, the exchange
                // moves to a task of its own and still runs to its end (see `Uncancellable`),
                // told the caller is gone, so it is not forwarded if it has not been yet.
                Either::Left(Uncancellable::new(
                    async move {
                        let exchange =
                            crate::exchange::exchange(&task_gateway, request, &origin, &watched);
                        Ok(exchange.await)
                    },
                    gateway.tasks.token(),
                    caller,
                ))
            }
            Plane::Data { router, .. } => {
                let mut request = request;
                // The routes besides `/exchange` learn the connection's certificate here.
                if let Some(certificate) = &origin.client_certificate {
                    request.extensions_mut().insert(certificate.clone());
                }
                Either::Right(router.clone().oneshot(request))
            }
            Plane::Admin { router } => Either::Right(router.clone().oneshot(request)),
        }
    }
}

/// A future that is not cancelled by being dropped: an exchange whose caller hung up (hyper
/// drops a connection's request futures when the connection ends, and an HTTP/2 stream's when
/// it is reset) may already have called its provider, and must still reach the audit trail. It
/// is polled where it is, in the connection's task, at no cost beyond its box; dropped
/// unfinished, it marks its caller gone (so an exchange not yet forwarded is not forwarded:
/// `CallerPresence`) and moves, box and all, to a task of its own, which polls it at once and
/// runs it to its end. Its token keeps a clean shutdown waiting for it either way
/// (`Gateway::tasks`).
struct Uncancellable<F: Future + Send + 'static> {
    /// The future until it completes; `None` after.
    future: Option<std::pin::Pin<Box<F>>>,
    /// Holds the shutdown open while the future runs.
    token: tokio_util::task::task_tracker::TaskTrackerToken,
    /// Told when the future is dropped unfinished.
    caller: CallerPresence,
}

impl<F: Future + Send + 'static> Uncancellable<F> {
    fn new(
        future: F,
        token: tokio_util::task::task_tracker::TaskTrackerToken,
        caller: CallerPresence,
    ) -> Self {
        Uncancellable {
            future: Some(Box::pin(future)),
            token,
            caller,
        }
    }
}

impl<F: Future + Send + 'static> Future for Uncancellable<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let Some(future) = self.future.as_mut() else {
            // Polled again after completing: a caller's bug, as with any future.
            return std::task::Poll::Pending;
        };
        let output = std::task::ready!(future.as_mut().poll(context));
        self.future = None;
        std::task::Poll::Ready(output)
    }
}

impl<F: Future + Send + 'static> Drop for Uncancellable<F> {
    fn drop(&mut self) {
        let Some(future) = self.future.take() else {
            return;
        };
        self.caller.hang_up();
        // Outside a runtime (it is shutting down) nothing can run it any more.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let token = self.token.clone();
            runtime.spawn(async move {
                future.await;
                drop(token);
            });
        }
    }
}

/// `/exchange/` followed by at least one character (a service path); anything else, `/exchange/`
/// itself included, is the router's (a 404 there).
fn is_exchange_path(path: &str) -> bool {
    path.len() > "/exchange/".len() && path.starts_with("/exchange/")
}

/// What one plane's accept loop serves its connections with.
struct Serving {
    /// The plane's routes.
    plane: Plane,
    /// TLS, on the data plane when configured.
    tls: Option<Arc<ServerTls>>,
    /// HTTP/1.1 and h2, with the header limits.
    builder: Arc<auto::Builder<h2_streams::StreamExecutor>>,
    /// The shutdown's drain of connections.
    graceful: Arc<GracefulShutdown>,
    /// `[gateway] max_connections`.
    max_connections: usize,
    /// Every connection's timeouts and bounds.
    limits: ConnectionLimits,
}

/// Accepts and serves connections until `stop` says so.
async fn accept_loop(listener: TcpListener, serving: Serving, mut stop: watch::Receiver<bool>) {
    let Serving {
        plane,
        tls,
        builder,
        graceful,
        max_connections,
        limits,
    } = serving;
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut backoff = AcceptBackoff::default();
    loop {
        // At the connection limit, stop accepting until a connection closes.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff.succeeded();
                    accepted
                }
                Err(error) => {
                    // Out of file descriptors and the like: the pending connection stays in
                    // the backlog and the next accept would fail at once; wait instead of
                    // spinning, longer while it keeps failing, and keep listening.
                    let wait = backoff.failed(&error);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        stream.set_nodelay(true).ok();
        // The connection's place under the limit goes with its stream: freed when the stream
        // closes, after lingering if it must (see `linger`).
        let stream = linger::Lingering::new(stream, permit);
        let plane = plane.clone();
        let Some(tls) = &tls else {
            let origin = Arc::new(plane.origin(peer, "http"));
            let connection =
                serve_connection(stream, plane, origin, &builder, graceful.watcher(), limits);
            tokio::spawn(connection);
            continue;
        };
        // The configuration in force now serves this connection to its end, whatever a
        // reload swaps in meanwhile.
        let handshake = tls.current();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(handshake.config.clone());
            let stream =
                match tokio::time::timeout(handshake.timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(
                            "closing a connection that did not finish its TLS handshake in time"
                        );
                        return;
                    }
                };
            let certificate = crate::tls::client_certificate(stream.get_ref().1).map(Arc::new);
            let origin = Arc::new(
                plane
                    .origin(peer, "https")
                    .with_client_certificate(certificate),
            );
            serve_connection(stream, plane, origin, &builder, watcher, limits).await;
        });
    }
}

/// How an accept loop waits after `accept` fails (EMFILE, ENFILE, ENOBUFS: the process or the
/// system is out of something that connections free): from [`AcceptBackoff::FIRST`], doubling
/// up to [`AcceptBackoff::LONGEST`] while failures follow each other, and back to the first
/// once a connection is accepted. A run of failures logs one warning, and one line when
/// accepting again, not a line per retry.
#[derive(Debug, Default)]
struct AcceptBackoff {
    /// Failures since the last connection accepted.
    failures: u64,
    /// The wait after the last failure.
    wait: Duration,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const LONGEST: Duration = Duration::from_secs(1);

    /// Counts a failure; returns how long to wait before accepting again.
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        if self.failures == 0 {
            tracing::warn!(%error, "accept failed; backing off until connections close");
        } else {
            tracing::debug!(%error, failures = self.failures + 1, "accept failed again");
        }
        self.failures += 1;
        self.wait = if self.wait.is_zero() {
            Self::FIRST
        } else {
            (self.wait * 2).min(Self::LONGEST)
        };
        self.wait
    }

    /// A connection was accepted: the next failure starts from the first wait again.
    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting connections again");
        }
        *self = AcceptBackoff::default();
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection until it ends, through [`client_io::ClientIo`]
/// (the send timeout; problem documents instead of hyper's bare answers).
fn serve_connection<I>(
    stream: I,
    plane: Plane,
    origin: Arc<Origin>,
    builder: &auto::Builder<h2_streams::StreamExecutor>,
    watcher: Watcher,
    limits: ConnectionLimits,
) -> impl Future<Output = ()> + Send + 'static
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let request_seen = Arc::new(Notify::new());
    let seen = request_seen.clone();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        seen.notify_one();
        let refused = (request.version() == http::Version::HTTP_2
            && h2_streams::header_list_size(&request) > limits.max_header_bytes)
            .then(|| header_too_large(request.headers()));
        let served = match refused {
            Some(refusal) => Either::Left(std::future::ready(Ok(refusal))),
            None => Either::Right(plane.serve(request.map(Body::new), &origin)),
        };
        served.map(|served| {
            served.map(|mut response| {
                client_io::mark_own_response(&mut response);
                response.map(h2_streams::ServedBody::new)
            })
        })
    });
    let io = TokioIo::new(client_io::ClientIo::new(stream, limits.send_timeout));
    let connection = builder.serve_connection(io, service).into_owned();
    let connection = watcher.watch(connection);
    async move {
        let served = serve_within_first_request_deadline(
            connection,
            &request_seen,
            limits.header_read_timeout,
        );
        if let Err(error) = served.await {
            tracing::debug!(%error, "connection ended with an error");
        }
    }
}

/// The 431 problem for an HTTP/2 head over `max_header_bytes` (h2 itself accepts a little more,
/// so that such heads get the problem document rather than h2's bare 431).
fn header_too_large(headers: &http::HeaderMap) -> http::Response<Body> {
    let lang = xgate_core::i18n::Lang::from_accept_language(
        headers
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|value| value.to_str().ok()),
    );
    crate::problem::ExchangeError::HeaderTooLarge
        .to_response(lang, &crate::headers::request_id(headers))
}

/// Drives a connection, closing it when no request has arrived within `header_read_timeout`.
///
/// hyper bounds the time to read each HTTP/1.1 request head, but its clock starts only once the
/// protocol is known: a client that sends nothing, or the first bytes of the HTTP/2 preface and
/// then nothing, would otherwise hold the connection (and a `max_connections` permit) forever.
async fn serve_within_first_request_deadline<E>(
    connection: impl Future<Output = Result<(), E>>,
    request_seen: &Notify,
    header_read_timeout: Duration,
) -> Result<(), E> {
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result,
        seen = tokio::time::timeout(header_read_timeout, request_seen.notified()) => {
            if seen.is_err() {
                tracing::debug!("closing a connection that sent no request in time");
                return Ok(());
            }
        }
    }
    connection.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_wait_longer_up_to_a_ceiling_and_start_over_once_one_succeeds() {
        let mut backoff = AcceptBackoff::default();
        let error = std::io::Error::from_raw_os_error(libc::EMFILE);
        let waits: Vec<Duration> = (0..12).map(|_| backoff.failed(&error)).collect();
        assert_eq!(waits[0], AcceptBackoff::FIRST);
        assert!(waits.windows(2).all(|pair| pair[1] >= pair[0]));
        assert_eq!(waits[11], AcceptBackoff::LONGEST);
        backoff.succeeded();
        assert_eq!(backoff.failed(&error), AcceptBackoff::FIRST);
    }
}
