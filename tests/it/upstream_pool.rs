//! The upstream connection pool against a raw TCP upstream whose connection behaviour the test
//! controls: keep-alive reuse, connections the upstream closes, and no replay of a request that
//! may have reached the provider.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::*;

/// What the raw upstream does after it has read a request.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers and keeps the connection for the next request.
    KeepAlive,
    /// Answers (without announcing it) and then closes the connection.
    AnswerThenClose,
    /// Answers the first request of each connection; closes on the second without answering.
    DropSecondRequest,
}

/// A raw HTTP/1.1 upstream counting the connections it accepted and the requests it read.
struct RawUpstream {
    address: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawUpstream {
    async fn start(behaviour: Behaviour) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (accepted, read) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, behaviour, read.clone()));
            }
        });
        RawUpstream {
            address,
            connections,
            requests,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection: reads request heads (the tests send no bodies) and answers them.
async fn serve(mut stream: TcpStream, behaviour: Behaviour, requests: Arc<AtomicUsize>) {
    let mut buffer = Vec::new();
    let mut on_this_connection = 0;
    loop {
        let mut chunk = [0u8; 4096];
        let read = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        buffer.extend_from_slice(&chunk[..read]);
        while let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            buffer.drain(..end + 4);
            requests.fetch_add(1, Ordering::SeqCst);
            on_this_connection += 1;
            if matches!(behaviour, Behaviour::DropSecondRequest) && on_this_connection == 2 {
                return;
            }
            let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
            if stream.write_all(answer).await.is_err() {
                return;
            }
            if matches!(behaviour, Behaviour::AnswerThenClose) {
                return;
            }
        }
    }
}

async fn gateway_to(upstream: &RawUpstream) -> TestGateway {
    ConfigDir::new()
        .department(
            "market",
            "department",
            &format!(
                "[services.raw]\nupstream = \"http://{}/raw\"\nmethods = [\"GET\"]\nconsumers = [\"tax\"]\n",
                upstream.address
            ),
        )
        .department("tax", "department", "")
        .start()
        .await
}

#[tokio::test]
async fn sequential_calls_reuse_one_upstream_connection() {
    let upstream = RawUpstream::start(Behaviour::KeepAlive).await;
    let gateway = gateway_to(&upstream).await;
    for _ in 0..20 {
        let response = gateway
            .call(Method::GET, "/exchange/market/raw", "tax")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "{\"ok\":true}");
    }
    assert_eq!(upstream.requests(), 20);
    assert_eq!(
        upstream.connections(),
        1,
        "one warm connection serves them all"
    );
    assert_eq!(gateway.gateway.upstream.idle_connections(), 1);
    gateway.stop().await;
}

#[tokio::test]
async fn connections_the_upstream_closes_are_not_used_again() {
    let upstream = RawUpstream::start(Behaviour::AnswerThenClose).await;
    let gateway = gateway_to(&upstream).await;
    for call in 0..20 {
        let response = gateway
            .call(Method::GET, "/exchange/market/raw", "tax")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "call {call}");
    }
    // Each call found its pooled connection closed (or had it handed back unsent) and went
    // on a new one: every request reached the upstream exactly once.
    assert_eq!(upstream.requests(), 20);
    assert_eq!(upstream.connections(), 20);
    gateway.stop().await;
}

#[tokio::test]
async fn a_request_that_may_have_reached_the_provider_is_never_replayed() {
    let upstream = RawUpstream::start(Behaviour::DropSecondRequest).await;
    let gateway = gateway_to(&upstream).await;
    let first = gateway
        .call(Method::GET, "/exchange/market/raw", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    // The second call goes on the same warm connection; the upstream reads it and hangs up.
    let second = gateway
        .call(Method::GET, "/exchange/market/raw", "tax")
        .send()
        .await
        .unwrap();
    let (status, problem) = problem(second).await;
    assert_eq!(status, 502);
    assert_eq!(problem["type"], "urn:xgate:problem:upstream-unavailable");
    assert_eq!(upstream.requests(), 2, "the broken call was not sent again");
    assert_eq!(upstream.connections(), 1);
    // The gateway goes on serving on a new connection.
    let third = gateway
        .call(Method::GET, "/exchange/market/raw", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 200);
    assert_eq!(upstream.connections(), 2);
    gateway.stop().await;
}
