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

/// A raw HTTP/1.1 upstream that answers every request twice: the answer names the request it
/// answers (its `X-Request-Id`, `Xgate-Consumer` and `Xgate-Service`), and the same answer
/// again, as a buggy or hostile provider would: for the first request on a connection (and
/// every other one after it) in a separate write 2 ms later, for the others in the same write.
struct DoubleAnswering {
    address: std::net::SocketAddr,
    /// The request ids whose second answer has been written.
    repeated: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    repeated_changed: Arc<tokio::sync::Notify>,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl DoubleAnswering {
    async fn start() -> DoubleAnswering {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let repeated = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let repeated_changed = Arc::new(tokio::sync::Notify::new());
        let (written, changed) = (repeated.clone(), repeated_changed.clone());
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                stream.set_nodelay(true).ok();
                tokio::spawn(answer_twice(stream, written.clone(), changed.clone()));
            }
        });
        DoubleAnswering {
            address,
            repeated,
            repeated_changed,
            connections,
            task,
        }
    }

    /// Waits until the second answer to `request_id` has been written (and so, over loopback,
    /// has arrived in the gateway's socket).
    async fn repeated(&self, request_id: &str) {
        loop {
            let changed = self.repeated_changed.notified();
            if self.repeated.lock().unwrap().contains(request_id) {
                return;
            }
            tokio::time::timeout(std::time::Duration::from_secs(10), changed)
                .await
                .expect("the upstream answers twice");
        }
    }
}

impl Drop for DoubleAnswering {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of header `name` in a request head.
fn header_value(head: &str, name: &str) -> String {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default()
}

async fn answer_twice(
    mut stream: TcpStream,
    repeated: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    repeated_changed: Arc<tokio::sync::Notify>,
) {
    let mut buffer = Vec::new();
    let mut on_this_connection = 0u64;
    loop {
        let mut chunk = [0u8; 4096];
        let read = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        buffer.extend_from_slice(&chunk[..read]);
        while let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 4);
            on_this_connection += 1;
            let request_id = header_value(&head, "x-request-id");
            let body = serde_json::json!({
                "request_id": request_id,
                "consumer": header_value(&head, "xgate-consumer"),
                "service": header_value(&head, "xgate-service"),
            })
            .to_string();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let written = if on_this_connection.is_multiple_of(2) {
                stream
                    .write_all(format!("{answer}{answer}").as_bytes())
                    .await
            } else {
                match stream.write_all(answer.as_bytes()).await {
                    Ok(()) => {
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        stream.write_all(answer.as_bytes()).await
                    }
                    error => error,
                }
            };
            if written.is_err() {
                return;
            }
            repeated.lock().unwrap().insert(request_id);
            repeated_changed.notify_waiters();
        }
    }
}

/// Two providers' services on the same upstream `host:port`, each called by two consumers.
async fn gateway_to_one_double_answering_host(upstream: &DoubleAnswering) -> TestGateway {
    let service = |path: &str| {
        format!(
            "[services.records]\nupstream = \"http://{}/{path}\"\nmethods = [\"GET\"]\nconsumers = [\"tax\", \"civil\"]\n",
            upstream.address
        )
    };
    ConfigDir::new()
        .department("market", "department", &service("market"))
        .department("land", "department", &service("land"))
        .department("tax", "department", "")
        .department("civil", "department", "")
        .start()
        .await
}

/// One call: its answer, checked to be 200 and parsed.
async fn call_naming(
    gateway: &TestGateway,
    consumer: &str,
    provider: &str,
    request_id: &str,
) -> serde_json::Value {
    let response = gateway
        .call(
            Method::GET,
            &format!("/exchange/{provider}/records"),
            consumer,
        )
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{request_id}");
    response.json().await.unwrap()
}

const LANES: [(&str, &str); 4] = [
    ("tax", "market"),
    ("tax", "land"),
    ("civil", "market"),
    ("civil", "land"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_answer_never_answers_a_later_call() {
    let upstream = Arc::new(DoubleAnswering::start().await);
    let gateway = Arc::new(gateway_to_one_double_answering_host(&upstream).await);
    const CALLS_PER_LANE: usize = 60;
    // Each consumer calls each service in turn, all four at once; a call starts once the
    // upstream has written its extra answer to the previous call of the same lane, so the
    // extra answer has arrived before the connection could be used again by that lane.
    let lanes = LANES.map(|(consumer, provider)| {
        let (gateway, upstream) = (gateway.clone(), upstream.clone());
        tokio::spawn(async move {
            let mut wrong = Vec::new();
            for call in 0..CALLS_PER_LANE {
                let request_id = format!("{consumer}-{provider}-{call}");
                let answer = call_naming(&gateway, consumer, provider, &request_id).await;
                if answer["request_id"] != request_id.as_str() {
                    wrong.push((request_id.clone(), answer));
                }
                upstream.repeated(&request_id).await;
            }
            wrong
        })
    });
    let mut wrong = Vec::new();
    for lane in lanes {
        wrong.extend(lane.await.unwrap());
    }
    let other_departments = wrong
        .iter()
        .filter(|(request_id, answer)| {
            !request_id.starts_with(answer["consumer"].as_str().unwrap_or("?"))
        })
        .count();
    assert!(
        wrong.is_empty(),
        "{} of {} calls got another request's answer, {other_departments} of them another department's: {:?}",
        wrong.len(),
        CALLS_PER_LANE * LANES.len(),
        wrong.iter().take(5).collect::<Vec<_>>()
    );
    Arc::into_inner(gateway).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_answer_delayed_past_every_check_stays_with_its_consumer_and_service() {
    let upstream = DoubleAnswering::start().await;
    let gateway = Arc::new(gateway_to_one_double_answering_host(&upstream).await);
    const CALLERS_PER_LANE: usize = 6;
    const CALLS_PER_CALLER: usize = 25;
    // Many callers per lane, none waiting: an extra answer written 2 ms late can arrive after
    // the lane's next request was written, and HTTP/1.1 then makes it that request's answer.
    // It must still be an answer to the same consumer's call of the same service.
    let mut callers = Vec::new();
    for (consumer, provider) in LANES {
        for caller in 0..CALLERS_PER_LANE {
            let gateway = gateway.clone();
            callers.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                for call in 0..CALLS_PER_CALLER {
                    let request_id = format!("{consumer}-{provider}-{caller}-{call}");
                    let answer = call_naming(&gateway, consumer, provider, &request_id).await;
                    answers.push((consumer, provider, request_id, answer));
                }
                answers
            }));
        }
    }
    let (mut total, mut other_requests) = (0, 0);
    for caller in callers {
        for (consumer, provider, request_id, answer) in caller.await.unwrap() {
            total += 1;
            assert_eq!(
                (answer["consumer"].as_str(), answer["service"].as_str()),
                (Some(consumer), Some(format!("{provider}/records").as_str())),
                "{request_id} was answered for another department or service: {answer}"
            );
            if answer["request_id"] != request_id.as_str() {
                other_requests += 1;
            }
        }
    }
    println!(
        "{other_requests} of {total} calls got an answer to the same consumer's other call of the same service ({} upstream connections)",
        upstream.connections.load(Ordering::SeqCst)
    );
    Arc::into_inner(gateway).unwrap().stop().await;
}
