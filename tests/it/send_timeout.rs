//! Callers that never read their answer: `[gateway] send_timeout_ms` closes their connection (an
//! HTTP/2 stream whose window the caller never opens is reset alone), and the upstream
//! connection their answer streamed from is closed with it, not pooled; callers that read go on.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use reqwest::Method;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

use crate::helpers::*;

/// The send timeout of these tests' gateway.
const SEND_TIMEOUT_MS: u64 = 300;
/// How many callers never read.
const STUCK_CALLERS: usize = 20;

/// An upstream whose `GET` answer streams without end, 64 KiB at a time, as fast as it is read.
pub async fn endless_upstream() -> TrackedUpstream {
    TrackedUpstream::start(Arc::new(|_request| {
        Box::pin(async {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = futures_util::stream::repeat_with(move || {
                Ok::<_, std::io::Error>(http_body::Frame::data(chunk.clone()))
            });
            Response::builder()
                .header("content-type", "application/octet-stream")
                .body(axum::body::Body::new(http_body_util::StreamBody::new(
                    chunks,
                )))
                .unwrap()
        })
    }))
    .await
}

/// Provider `market`: `large` (the endless answer) and `echo`, both without schemas.
async fn send_timeout_gateway(large: &TrackedUpstream, echo: &Upstream) -> TestGateway {
    ConfigDir::new()
        .gateway(&format!("send_timeout_ms = {SEND_TIMEOUT_MS}"))
        .department(
            "market",
            "department",
            &format!(
                "[services.large]\nupstream = \"{}\"\nmethods = [\"GET\"]\nconsumers = [\"tax\"]\n\
                 [services.echo]\nupstream = \"{}\"\nmethods = [\"GET\"]\nconsumers = [\"tax\"]\n",
                large.url("/large"),
                echo.url("/base")
            ),
        )
        .department("tax", "department", "")
        .start()
        .await
}

#[tokio::test]
async fn callers_that_never_read_are_cut_off_and_their_upstream_connections_closed() {
    let large = endless_upstream().await;
    let echo = Upstream::echo().await;
    let gateway = send_timeout_gateway(&large, &echo).await;

    // Twenty callers ask for the endless answer over HTTP/1.1 and never read a byte of it.
    let mut stuck = Vec::new();
    for _ in 0..STUCK_CALLERS {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(gateway.data).await.unwrap();
        let request = format!(
            "GET /exchange/market/large HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\n\r\n",
            token("tax")
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        stuck.push(stream);
    }
    eventually(
        "every stuck call reaches the upstream",
        DEADLINE,
        || async { large.accepted() == STUCK_CALLERS },
    )
    .await;

    // A caller that reads takes its answer meanwhile, however long it takes.
    let reading = gateway
        .call(Method::GET, "/exchange/market/large", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(reading.status(), StatusCode::OK);
    let mut body = reading.bytes_stream();
    let mut read = 0;
    while read < 8 * 1024 * 1024 {
        use futures_util::StreamExt;
        read += body
            .next()
            .await
            .expect("more of the answer")
            .unwrap()
            .len();
    }
    drop(body);

    // Past the send timeout, the gateway has given up on the stuck callers: the upstream sees
    // every connection closed, and none is pooled.
    eventually(
        "the stuck callers' upstream connections close",
        DEADLINE,
        || async { large.open() == 0 },
    )
    .await;
    assert_eq!(gateway.gateway.upstream.idle_connections(), 0);

    // Normal calls still work.
    let response = gateway
        .call(Method::GET, "/exchange/market/echo/after", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    drop(stuck);
    gateway.stop().await;
}

#[tokio::test]
async fn an_http2_stream_whose_window_never_opens_is_reset_alone() {
    let large = endless_upstream().await;
    let echo = Upstream::echo().await;
    let gateway = send_timeout_gateway(&large, &echo).await;

    // One h2c connection, with the smallest windows h2 allows to be filled quickly.
    let stream = tokio::net::TcpStream::connect(gateway.data).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(65_535)
            .adaptive_window(false)
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = |path: &str| {
        Request::get(format!("http://gateway{path}"))
            .header("authorization", format!("Bearer {}", token("tax")))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };

    // The endless answer's head arrives; its body is never read, so its window stays shut.
    let stalled = sender
        .send_request(request("/exchange/market/large"))
        .await
        .unwrap();
    assert_eq!(stalled.status(), StatusCode::OK);
    eventually(
        "the stalled call reaches the upstream",
        DEADLINE,
        || async { large.accepted() == 1 },
    )
    .await;

    // Past the send timeout the stream is given up, and its upstream connection closed, while
    // the connection keeps serving other calls.
    eventually(
        "the stalled stream's upstream connection closes",
        DEADLINE,
        || async { large.open() == 0 },
    )
    .await;
    assert_eq!(gateway.gateway.upstream.idle_connections(), 0);
    let response = sender
        .send_request(request("/exchange/market/echo/after"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!answer.is_empty());
    drop(stalled);
    gateway.stop().await;
}
