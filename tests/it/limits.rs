//! Bounds on work in flight (issue 15, point 4): exchanges in flight per consumer and overall,
//! upstream connections per provider, calls abandoned before they were forwarded, and the
//! admin plane answering whatever the data plane's runtime is doing, and a refused caller
//! that is still sending getting its refusal (lingering close). Against real gateways (the
//! real binary where the process's open files are counted) and real upstreams.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::*;

/// A raw HTTP/1.1 upstream that holds every request until released, counting the connections
/// open to it (and the most ever open at once) and the request ids it received.
struct HoldingUpstream {
    address: SocketAddr,
    most_open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<String>>>,
    released: Arc<tokio::sync::watch::Sender<bool>>,
    task: JoinHandle<()>,
}

impl HoldingUpstream {
    async fn start() -> HoldingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let most_open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let released = Arc::new(tokio::sync::watch::Sender::new(false));
        let state = (
            open.clone(),
            most_open.clone(),
            accepted.clone(),
            received.clone(),
            released.clone(),
        );
        let task = tokio::spawn(async move {
            let (open, most_open, accepted, received, released) = state;
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                most_open.fetch_max(now_open, Ordering::SeqCst);
                let (open, received, released) = (open.clone(), received.clone(), released.clone());
                tokio::spawn(async move {
                    hold_then_answer(stream, &received, released.subscribe()).await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        HoldingUpstream {
            address,
            most_open,
            accepted,
            received,
            released,
            task,
        }
    }

    /// From now on every request, held or new, is answered at once.
    fn release(&self) {
        self.released.send_replace(true);
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    fn most_open(&self) -> usize {
        self.most_open.load(Ordering::SeqCst)
    }
}

impl Drop for HoldingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hold_then_answer(
    mut stream: TcpStream,
    received: &Mutex<Vec<String>>,
    mut released: tokio::sync::watch::Receiver<bool>,
) {
    let mut buffer = Vec::new();
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
            let request_id = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("x-request-id"))
                .map(|(_, value)| value.trim().to_owned())
                .unwrap_or_default();
            received.lock().unwrap().push(request_id.clone());
            if released.wait_for(|released| *released).await.is_err() {
                return;
            }
            let body = serde_json::json!({ "request_id": request_id }).to_string();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// `market` provides `records` (at `upstream`, to tax and civil) and the `licence`
/// certificate type (to civil); `extra` goes into `[gateway]`, `market_extra` at the top of
/// market's file.
fn two_consumers_of(
    upstream: &HoldingUpstream,
    gateway_extra: &str,
    market_extra: &str,
) -> ConfigDir {
    ConfigDir::new()
        .schema("license", 1, license_schema())
        .gateway(gateway_extra)
        .department(
            "market",
            "department",
            &format!(
                r#"{market_extra}
[services.records]
upstream = "http://{address}/records"
methods = ["GET"]
consumers = ["tax", "civil"]

[certificates.licence]
lookup = "http://{address}/licences/{{id}}"
schema = "license"
id_format = "cn-uscc"
consumers = ["civil"]
"#,
                address = upstream.address
            ),
        )
        .department("tax", "department", "")
        .department("civil", "department", "")
        .department("auditor", "auditor", "")
}

/// A call of market's records as `consumer`, naming itself `request_id`.
fn call(gateway: &TestGateway, consumer: &str, request_id: &str) -> reqwest::RequestBuilder {
    gateway
        .call(Method::GET, "/exchange/market/records", consumer)
        .header("x-request-id", request_id)
}

/// Every trail entry the query selects, as the auditor reads them.
async fn trail(client: &reqwest::Client, admin: &str, query: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after = String::new();
    loop {
        let response = client
            .get(format!("{admin}/audit/exchanges?limit=1000{query}{after}"))
            .bearer_auth(token("auditor"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(next) => after = format!("&after={next}"),
            None => return entries,
        }
    }
}

#[tokio::test]
async fn past_its_bound_a_consumer_is_rate_limited_and_past_the_gateways_everyone_is_overloaded() {
    let upstream = HoldingUpstream::start().await;
    let gateway = two_consumers_of(
        &upstream,
        "max_exchanges_in_flight = 3\nmax_exchanges_in_flight_per_consumer = 2",
        "",
    )
    .start()
    .await;
    let gateway = Arc::new(gateway);
    let held = |consumer: &'static str, request_id: &'static str| {
        let gateway = gateway.clone();
        tokio::spawn(async move { call(&gateway, consumer, request_id).send().await.unwrap() })
    };
    let (first, second) = (held("tax", "tax-1"), held("tax", "tax-2"));
    eventually("tax's two calls reach the provider", DEADLINE, || async {
        upstream.received().len() == 2
    })
    .await;

    // Tax is at its bound: its third call is refused at once, without reaching anyone.
    let refused = call(&gateway, "tax", "tax-3").send().await.unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");
    let (status, body) = problem(refused).await;
    assert_eq!(status, 429);
    assert_eq!(body["type"], "urn:xgate:problem:rate-limited");

    // Civil may still call; with its call the gateway is at its bound, and then everyone's
    // next call (and certificate lookup) is refused as overloaded.
    let third = held("civil", "civil-1");
    eventually("civil's call reaches the provider", DEADLINE, || async {
        upstream.received().len() == 3
    })
    .await;
    let overloaded = call(&gateway, "civil", "civil-2").send().await.unwrap();
    assert_eq!(overloaded.headers()["retry-after"], "1");
    let (status, body) = problem(overloaded).await;
    assert_eq!(status, 503);
    assert_eq!(body["type"], "urn:xgate:problem:overloaded");
    let lookup = gateway
        .call(
            Method::GET,
            "/certificates/licence/91350100M000100Y43",
            "civil",
        )
        .header("x-request-id", "civil-lookup")
        .header("Xgate-Purpose", "check")
        .send()
        .await
        .unwrap();
    let (status, body) = problem(lookup).await;
    assert_eq!(status, 503, "lookups share the gateway's bound");
    assert_eq!(body["type"], "urn:xgate:problem:overloaded");
    assert_eq!(
        upstream.received().len(),
        3,
        "nothing refused was forwarded"
    );

    upstream.release();
    for call in [first, second, third] {
        assert_eq!(call.await.unwrap().status(), 200);
    }
    // Room again: the bounds count calls in flight, not calls made.
    let again = call(&gateway, "tax", "tax-4").send().await.unwrap();
    assert_eq!(again.status(), 200);

    let mut entries = trail(
        &gateway.client,
        &gateway.admin_url(""),
        "&outcome=rate_limited",
    )
    .await;
    entries.extend(
        trail(
            &gateway.client,
            &gateway.admin_url(""),
            "&outcome=rate_limited&kind=certificate",
        )
        .await,
    );
    let refusals: HashSet<(String, u64)> = entries
        .iter()
        .map(|entry| {
            (
                entry["request_id"].as_str().unwrap().to_owned(),
                entry["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refusals,
        HashSet::from([
            ("tax-3".to_owned(), 429),
            ("civil-2".to_owned(), 503),
            ("civil-lookup".to_owned(), 503),
        ])
    );
    let metrics = metrics_text(&gateway).await;
    assert!(
        metrics.contains(
            r#"xgate_exchanges_total{consumer="tax",outcome="rate_limited",provider="market",service="records"} 1"#
        ),
        "{metrics}"
    );
    Arc::into_inner(gateway).unwrap().stop().await;
}

#[tokio::test]
async fn at_a_providers_cap_an_idle_connection_of_another_lane_makes_room() {
    let upstream = HoldingUpstream::start().await;
    upstream.release();
    let gateway = two_consumers_of(&upstream, "", "max_upstream_connections = 1")
        .start()
        .await;
    for (consumer, request_id) in [("tax", "tax-1"), ("civil", "civil-1"), ("tax", "tax-2")] {
        let response = call(&gateway, consumer, request_id).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["request_id"], request_id);
    }
    // Each consumer's calls travel on connections of their own: the idle connection of the
    // other lane was closed to make room, never two open at once.
    assert_eq!(upstream.most_open(), 1);
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 3);
    gateway.stop().await;
}

#[tokio::test]
async fn at_a_providers_cap_a_call_waits_for_a_connection_until_the_upstream_timeout() {
    // An answer that streams without end keeps its connection busy.
    let streaming = Upstream::start(axum::Router::new().fallback(|| async {
        let chunks = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(b" ")),
                (),
            ))
        });
        axum::body::Body::from_stream(chunks)
    }))
    .await;
    let gateway = ConfigDir::new()
        .gateway("upstream_timeout_ms = 1000")
        .department(
            "market",
            "department",
            &format!(
                "max_upstream_connections = 1\n[services.records]\nupstream = \"{}\"\nmethods = [\"GET\"]\nconsumers = [\"tax\", \"civil\"]\n",
                streaming.url("/records")
            ),
        )
        .department("tax", "department", "")
        .department("civil", "department", "")
        .department("auditor", "auditor", "")
        .start()
        .await;
    let streaming_answer = call(&gateway, "tax", "tax-streaming").send().await.unwrap();
    assert_eq!(streaming_answer.status(), 200);

    // The one connection is busy: a call of another lane waits for it, in vain (504), and is
    // never forwarded.
    let waited = call(&gateway, "civil", "civil-waited")
        .send()
        .await
        .unwrap();
    let (status, body) = problem(waited).await;
    assert_eq!(status, 504);
    assert_eq!(body["type"], "urn:xgate:problem:upstream-timeout");
    assert_eq!(streaming.call_count(), 1);
    assert_eq!(gateway.gateway.upstream.open_connections("market"), 1);
    drop(streaming_answer);
    gateway.stop().await;
}

#[tokio::test]
async fn a_call_whose_caller_hangs_up_while_it_waits_for_a_connection_is_not_forwarded() {
    let upstream = HoldingUpstream::start().await;
    let gateway = two_consumers_of(&upstream, "", "max_upstream_connections = 1")
        .start()
        .await;
    let gateway = Arc::new(gateway);
    let holder = {
        let gateway = gateway.clone();
        tokio::spawn(async move { call(&gateway, "tax", "tax-held").send().await.unwrap() })
    };
    eventually("the first call reaches the provider", DEADLINE, || async {
        upstream.received().len() == 1
    })
    .await;

    // A caller sends a call and hangs up while it waits for the busy connection.
    let mut caller = TcpStream::connect(gateway.data).await.unwrap();
    caller
        .write_all(
            format!(
                "GET /exchange/market/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Request-Id: civil-gone\r\n\r\n",
                token("civil")
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    eventually("the call is admitted", DEADLINE, || async {
        gateway.gateway.admission.in_flight() == 2
    })
    .await;
    drop(caller);
    let admin = gateway.admin_url("");
    let cancelled = eventually(
        "the abandoned call is in the trail",
        Duration::from_secs(10),
        || async {
            let entries = trail(&gateway.client, &admin, "&outcome=cancelled").await;
            (!entries.is_empty()).then_some(entries)
        },
    )
    .await;
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["request_id"], "civil-gone");
    assert_eq!(cancelled[0]["status"], 499);

    // Once the provider answers, the connection is free: still the abandoned call is not sent.
    upstream.release();
    assert_eq!(holder.await.unwrap().status(), 200);
    let after = call(&gateway, "tax", "tax-after").send().await.unwrap();
    assert_eq!(after.status(), 200);
    assert_eq!(upstream.received(), ["tax-held", "tax-after"]);
    Arc::into_inner(gateway).unwrap().stop().await;
}

/// An HTTP/2 (prior knowledge) connection to `address`.
async fn h2c(
    address: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let stream = TcpStream::connect(address).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

/// The number of open files of process `pid`.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |files| files.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_reset_or_hang_up_on_a_slow_provider_hold_bounded_connections_and_files() {
    let slow = HoldingUpstream::start().await;
    let fast = Upstream::echo().await;
    const CAP: usize = 4;
    let config = two_consumers_of(
        &slow,
        "max_exchanges_in_flight = 64\nmax_exchanges_in_flight_per_consumer = 16\nupstream_timeout_ms = 60000",
        &format!("max_upstream_connections = {CAP}"),
    )
    .department(
        "other",
        "department",
        &format!(
            "[services.echo]\nupstream = \"{}\"\nmethods = [\"GET\"]\nconsumers = [\"citizen\"]\n",
            fast.url("/echo")
        ),
    )
    .department("citizen", "department", "");
    config.write_main();
    let client = client();
    // The real binary, so that its open files are its own (this process runs other tests).
    let (gateway, data, admin) = start_binary_planes(&config, &client).await;
    let pid = gateway.0.id();
    let data_address: SocketAddr = data.trim_start_matches("http://").parse().unwrap();
    let warm = client
        .get(format!("{data}/exchange/other/echo"))
        .bearer_auth(token("citizen"))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    let files_before = open_files(pid);
    let most_files = Arc::new(AtomicUsize::new(files_before));
    let attacking = Arc::new(AtomicBool::new(true));

    // Meanwhile another consumer calls another provider, and the gateway's open files are
    // watched.
    let citizen_answers = Arc::new(AtomicUsize::new(0));
    let citizen = {
        let (client, data, attacking) = (client.clone(), data.clone(), attacking.clone());
        let answers = citizen_answers.clone();
        tokio::spawn(async move {
            while attacking.load(Ordering::SeqCst) {
                let response = client
                    .get(format!("{data}/exchange/other/echo"))
                    .bearer_auth(token("citizen"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "another consumer's call failed");
                answers.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // And the admin plane is asked whether it is alive, all along.
    let admin_answers = Arc::new(AtomicUsize::new(0));
    let health = {
        let (client, admin, attacking) = (client.clone(), admin.clone(), attacking.clone());
        let answers = admin_answers.clone();
        tokio::spawn(async move {
            while attacking.load(Ordering::SeqCst) {
                let response = client.get(format!("{admin}/healthz")).send().await.unwrap();
                assert_eq!(response.status(), 200, "the admin plane's healthz failed");
                answers.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let watcher = {
        let (most_files, attacking) = (most_files.clone(), attacking.clone());
        tokio::spawn(async move {
            while attacking.load(Ordering::SeqCst) {
                most_files.fetch_max(open_files(pid), Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        })
    };

    // The attack: batches of HTTP/2 calls to the slow provider, reset once the gateway has
    // refused what it will refuse (the rest wait for a connection, or are with the
    // provider); and HTTP/1.1 callers that send a call and hang up.
    const ROUNDS: usize = 8;
    const BATCH: usize = 40;
    let mut sent = Vec::new();
    let mut refused = 0;
    let mut attacker = h2c(data_address).await;
    for round in 0..ROUNDS {
        let mut answers = FuturesUnordered::new();
        for call in 0..BATCH {
            let request_id = format!("h2-{round}-{call}");
            let request = http::Request::get(format!("{data}/exchange/market/records"))
                .header("authorization", format!("Bearer {}", token("tax")))
                .header("x-request-id", &request_id)
                .body(http_body_util::Empty::new())
                .unwrap();
            if attacker.ready().await.is_err() {
                // The gateway may end a connection that resets this much (HTTP/2 rapid reset
                // protection): the attacker opens another.
                attacker = h2c(data_address).await;
                attacker.ready().await.unwrap();
            }
            answers.push(attacker.send_request(request));
            sent.push(request_id);
        }
        // At most the consumer's bound (16) is admitted: the others are refused at once.
        let mut answered = 0;
        while answered < BATCH - 16 {
            let answer = answers.next().await.unwrap().unwrap();
            assert_eq!(answer.status(), 429);
            assert_eq!(answer.headers()["retry-after"], "1");
            answered += 1;
        }
        refused += answered;
        drop(answers);

        let hang_ups = (0..BATCH).map(|call| {
            let request_id = format!("h1-{round}-{call}");
            sent.push(request_id.clone());
            async move {
                let mut caller = TcpStream::connect(data_address).await.unwrap();
                let request = format!(
                    "GET /exchange/market/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Request-Id: {request_id}\r\n\r\n",
                    token("tax")
                );
                caller.write_all(request.as_bytes()).await.unwrap();
            }
        });
        futures_util::future::join_all(hang_ups).await;
    }

    // Every abandoned call reaches the trail, except those the provider holds.
    let admin_base = admin.clone();
    let entries = eventually(
        "every call not held by the provider is in the trail",
        Duration::from_secs(30),
        || async {
            let entries = trail(&client, &admin_base, "&consumer=tax").await;
            (entries.len() + slow.received().len() >= sent.len()).then_some(entries)
        },
    )
    .await;
    // While the provider still holds its calls and the abandoned ones wait for nothing.
    let answered_so_far = citizen_answers.load(Ordering::SeqCst);
    let admin_so_far = admin_answers.load(Ordering::SeqCst);
    eventually(
        "the other consumer and the admin plane are served meanwhile",
        DEADLINE,
        || async {
            citizen_answers.load(Ordering::SeqCst) >= answered_so_far + 20
                && admin_answers.load(Ordering::SeqCst) >= admin_so_far + 20
        },
    )
    .await;
    attacking.store(false, Ordering::SeqCst);
    citizen.await.unwrap();
    health.await.unwrap();
    let citizen_answered = citizen_answers.load(Ordering::SeqCst);
    let admin_answered = admin_answers.load(Ordering::SeqCst);
    watcher.await.unwrap();

    let forwarded: HashSet<String> = slow.received().into_iter().collect();
    assert!(forwarded.len() <= CAP, "{} forwarded", forwarded.len());
    assert!(
        slow.most_open() <= CAP,
        "the provider saw {} connections at once",
        slow.most_open()
    );
    let cancelled: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["outcome"] == "cancelled")
        .collect();
    assert!(
        !cancelled.is_empty(),
        "abandoned calls are audited as cancelled"
    );
    for entry in &cancelled {
        assert_eq!(entry["status"], 499);
        let request_id = entry["request_id"].as_str().unwrap();
        assert!(
            !forwarded.contains(request_id),
            "{request_id} was cancelled, yet forwarded"
        );
    }
    for entry in &entries {
        assert!(
            ["cancelled", "rate_limited"].contains(&entry["outcome"].as_str().unwrap()),
            "{entry}"
        );
    }
    let rate_limited = entries
        .iter()
        .filter(|entry| entry["outcome"] == "rate_limited")
        .count();
    assert!(rate_limited >= refused, "{rate_limited} < {refused}");
    let most_files = most_files.load(Ordering::SeqCst);
    println!(
        "{} calls: {} cancelled, {rate_limited} rate limited, {} forwarded; the provider saw at most {} connections; open files {files_before} → at most {most_files}; the other consumer got {citizen_answered} answers and the admin healthz {admin_answered} meanwhile",
        sent.len(),
        cancelled.len(),
        forwarded.len(),
        slow.most_open()
    );
    // The attack's own connections (one HTTP/2, the HTTP/1.1 callers of a batch or two not yet
    // closed) and the capped upstream connections: nowhere near one per call (without the
    // bounds: 19 → 366 in this scenario).
    assert!(
        most_files <= files_before + 2 * BATCH + CAP + 32,
        "open files grew from {files_before} to {most_files}"
    );

    // The provider answers at last: the forwarded calls end, and are audited, too.
    slow.release();
    eventually(
        "the forwarded calls end",
        Duration::from_secs(30),
        || async {
            let entries = trail(&client, &admin, "&consumer=tax").await;
            (entries.len() == sent.len()).then_some(())
        },
    )
    .await;
    drop(gateway);
}

#[test]
fn the_admin_plane_answers_while_the_data_planes_runtime_cannot() {
    let config = ConfigDir::new().department("auditor", "auditor", "");
    config.write_main();
    let (loaded, registry) =
        xgate::config::load(&config.main_path(), &xgate::config::Overrides::default()).unwrap();
    // The gateway on a runtime of one thread, the data plane's, which the test can block.
    let data_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let data_plane = data_runtime.handle().clone();
    let (addresses, bound) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        data_runtime.block_on(async move {
            let gateway = xgate::gateway::Gateway::new(loaded, registry).unwrap();
            let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addresses
                .send((data.local_addr().unwrap(), admin.local_addr().unwrap()))
                .unwrap();
            let shutdown = async move {
                stopped.await.ok();
            };
            xgate::server::run(gateway, data, admin, shutdown)
                .await
                .unwrap();
        })
    });
    let (data, admin) = bound.recv().unwrap();
    let test_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = client();
    let get = |address: SocketAddr, path: &str| {
        client
            .get(format!("http://{address}{path}"))
            .bearer_auth(token("auditor"))
            .send()
    };
    test_runtime.block_on(async {
        eventually("the gateway is ready", Duration::from_secs(10), || async {
            let ready = get(data, "/readyz").await.ok()?;
            (ready.status() == 200).then_some(())
        })
        .await;
    });

    // A task holds the data plane's only thread until released.
    let (blocking, blocked) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    data_plane.spawn(async move {
        blocking.send(()).unwrap();
        released.recv().ok();
    });
    blocked.recv().unwrap();

    test_runtime.block_on(async {
        let data_call = tokio::spawn(get(data, "/healthz"));
        for path in ["/healthz", "/metrics", "/audit/exchanges", "/audit/verify"] {
            let answer = tokio::time::timeout(Duration::from_secs(30), get(admin, path))
                .await
                .unwrap_or_else(|_| panic!("the admin plane answers {path}"))
                .unwrap();
            assert_eq!(answer.status(), 200, "{path}");
        }
        assert!(
            !data_call.is_finished(),
            "the data plane cannot answer while its runtime is held"
        );
        release.send(()).unwrap();
        let answer = data_call.await.unwrap().unwrap();
        assert_eq!(answer.status(), 200, "and answers once it is free again");
    });
    stop.send(()).unwrap();
    server.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_sent_before_the_body_is_read_reaches_a_caller_still_sending_it() {
    let (gateway, _echo, _records) = standard_gateway().await;
    // 10 MiB declared and sent to a service that validates its request: refused (413) from
    // the declared length, before the body is read. The caller, still writing, gets the
    // problem, not a reset connection.
    for _ in 0..5 {
        let response = gateway
            .call(Method::POST, "/exchange/market/register", "tax")
            .header("content-type", "application/json")
            .body(vec![b' '; 10 * 1024 * 1024])
            .send()
            .await
            .expect("the caller reads the refusal");
        let (status, body) = problem(response).await;
        assert_eq!(status, 413);
        assert_eq!(body["type"], "urn:xgate:problem:payload-too-large");
    }
    gateway.stop().await;
}

/// Starts the real binary over `config` with a hard limit of `files` open files (so it cannot
/// raise its own), its log in `log`; returns it and its planes' base URLs once ready.
#[allow(unsafe_code)] // libc calls: see the SAFETY comments
async fn start_binary_with_open_files(
    config: &ConfigDir,
    client: &reqwest::Client,
    files: u64,
    log: &std::path::Path,
) -> (KillOnDrop, String, String) {
    use std::os::unix::process::CommandExt;
    let (data_port, admin_port) = (free_port().await, free_port().await);
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_xgate"));
    command
        .args(["serve", "--config"])
        .arg(config.main_path())
        .env("XGATE_LISTEN", format!("127.0.0.1:{data_port}"))
        .env("XGATE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    // SAFETY: between fork and exec the closure only calls `setrlimit`, which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: files,
                rlim_max: files,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let child = KillOnDrop(command.spawn().expect("xgate starts"));
    let (data, admin) = (
        format!("http://127.0.0.1:{data_port}"),
        format!("http://127.0.0.1:{admin_port}"),
    );
    eventually("xgate is ready", Duration::from_secs(30), || async {
        let ready = client.get(format!("{admin}/readyz")).send().await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    (child, data, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_open_files_the_listener_backs_off_and_serves_again_once_connections_close() {
    let config = ConfigDir::new().department("auditor", "auditor", "");
    config.write_main();
    let client = client();
    let log = config.path("xgate.log");
    let (mut gateway, data, admin) =
        start_binary_with_open_files(&config, &client, 128, &log).await;
    let pid = gateway.0.id();
    let data_address: SocketAddr = data.trim_start_matches("http://").parse().unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Idle connections until the gateway has no descriptor left to accept one with.
    let held = std::sync::Mutex::new(Vec::new());
    eventually("accepts fail", Duration::from_secs(30), || async {
        if log_text().contains("accept failed") {
            return true;
        }
        let count = held.lock().unwrap().len();
        assert!(
            count < 1024,
            "{count} connections, and accepts never failed"
        );
        let connection = TcpStream::connect(data_address).await.unwrap();
        held.lock().unwrap().push(connection);
        false
    })
    .await;
    let held = held.into_inner().unwrap();
    let files_at_the_limit = open_files(pid);
    assert!(
        gateway.0.try_wait().unwrap().is_none(),
        "the gateway survives running out of open files"
    );

    // The callers go away: both planes accept and answer again, on the same listeners.
    let held_connections = held.len();
    drop(held);
    for base in [&data, &admin] {
        eventually(
            "the gateway answers again",
            Duration::from_secs(30),
            || async {
                let health = client.get(format!("{base}/healthz")).send().await.ok()?;
                (health.status() == 200).then_some(())
            },
        )
        .await;
    }
    let call = client
        .get(format!("{admin}/audit/exchanges"))
        .bearer_auth(token("auditor"))
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200);
    let text = log_text();
    assert!(
        text.contains("need more open files than the process may have"),
        "the start warns that the bounds need more open files: {text}"
    );
    assert!(text.contains("accepting connections again"), "{text}");
    let warnings = text.matches("accept failed").count();
    println!(
        "{held_connections} connections held, {files_at_the_limit} open files at the limit, {warnings} accept-failure warnings"
    );
    // One warning per run of failures, not one per retry: a run ends only when a connection
    // is accepted, so there are no more runs than connections.
    assert!(warnings <= held_connections, "{warnings} warnings");
    drop(gateway);
}

#[tokio::test]
async fn a_caller_that_goes_on_sending_after_its_refusal_ended_the_connection_is_not_reset() {
    let (gateway, _echo, _records) = standard_gateway().await;
    // The head alone, declaring 10 MiB: refused (413) at once, and the connection ended.
    let mut caller = TcpStream::connect(gateway.data).await.unwrap();
    let head = format!(
        "POST /exchange/market/register HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        token("tax"),
        10 * 1024 * 1024
    );
    caller.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    caller.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Only now does the caller send its body, as a client writing its upload before it reads
    // would: the gateway reads it away instead of resetting the connection under it.
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..16 {
        caller
            .write_all(&chunk)
            .await
            .expect("the gateway reads what the caller still sends");
    }
    caller.shutdown().await.unwrap();
    gateway.stop().await;
}
