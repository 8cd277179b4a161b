//! Certificate lookups (SPEC §8) against a real issuer server on port 0 that counts its calls:
//! the cache (hit, miss, expiry, remembered 404s, stale answers, capacity), coalescing of
//! concurrent lookups, validation before caching, invalidation, refusals and hostile ids.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use http::{Response, StatusCode};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::forwarding::raw_http;
use crate::helpers::*;

/// How long a poll for something the cache does on its own (an expiry) may take: a safety net
/// against a hung test, not a timing assertion. The expiry tests here keep real time (TTLs of a
/// second): the gateway waits on its audit writer's thread and on sockets, where tokio's paused
/// clock would jump to the next timer. `certificates::cache`'s unit tests age entries on paused
/// time.
const POLL_DEADLINE: Duration = Duration::from_secs(30);

/// What the test issuer answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 200 with the certificate for known ids, 404 otherwise.
    Serve,
    /// 500 for everything.
    Fail,
    /// 200 with a body the schema refuses.
    Invalid,
    /// Never answers.
    Hang,
}

/// A certificate issuer: answers `/certs/{id}` per its [`Mode`], held back while its gate is
/// closed, and counts its calls.
struct Issuer {
    upstream: Upstream,
    mode: Arc<Mutex<Mode>>,
    gate: watch::Sender<bool>,
}

impl Issuer {
    async fn start() -> Issuer {
        let mode = Arc::new(Mutex::new(Mode::Serve));
        let (gate, opened) = watch::channel(true);
        let state = mode.clone();
        let router = Router::new().route(
            "/certs/{id}",
            get(move |Path(id): Path<String>| {
                let mode = *state.lock().unwrap();
                let mut opened = opened.clone();
                async move {
                    opened.wait_for(|open| *open).await.ok();
                    issuer_answer(mode, &id).await
                }
            }),
        );
        Issuer {
            upstream: Upstream::start(router).await,
            mode,
            gate,
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> usize {
        self.upstream.call_count()
    }

    fn lookup_url(&self) -> String {
        self.upstream.url("/certs/{id}")
    }
}

async fn issuer_answer(mode: Mode, id: &str) -> Response<Body> {
    let (status, body) = match mode {
        Mode::Serve if id.as_bytes().get(8) != Some(&b'N') => (StatusCode::OK, certificate(id)),
        Mode::Serve => (
            StatusCode::NOT_FOUND,
            json!({"error": "no such certificate"}),
        ),
        Mode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": "down"})),
        Mode::Invalid => (StatusCode::OK, json!({"uscc": id, "status": "bogus"})),
        Mode::Hang => std::future::pending().await,
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// The `n`th valid unified social credit code of the tests.
fn known_id(n: u32) -> String {
    xgate_core::identifiers::uscc_with_check(&format!("91350100M{n:08}")).unwrap()
}

/// A valid id the issuer does not know (it answers 404 for ids with `N` where tests put `M`).
fn unknown_id() -> String {
    xgate_core::identifiers::uscc_with_check("91350100N00000001").unwrap()
}

/// The issuer's certificate for `id`, in the shared layout of [`license_schema`].
fn certificate(id: &str) -> Value {
    json!({"uscc": id, "name": "福州闽江数据科技有限公司", "status": "active"})
}

/// Cache timings and limits of one test gateway.
struct Settings {
    capacity: u64,
    ttl_seconds: u64,
    not_found_ttl_seconds: u64,
    stale_if_error_seconds: u64,
    upstream_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            capacity: 1000,
            ttl_seconds: 300,
            not_found_ttl_seconds: 300,
            stale_if_error_seconds: 3600,
            upstream_timeout_ms: 60_000,
        }
    }
}

/// A gateway where `issuer` issues type `licence` (schema `license`, ids `cn-uscc`) to `tax`
/// (shared layout) and `civil` (its own layout); `outsider` may not look up; `admin` is admin.
async fn gateway(issuer: &Issuer, settings: Settings) -> TestGateway {
    deployment(issuer, settings).start().await
}

/// The deployment of [`gateway`], not started.
fn deployment(issuer: &Issuer, settings: Settings) -> ConfigDir {
    let Settings {
        capacity,
        ttl_seconds,
        not_found_ttl_seconds,
        stale_if_error_seconds,
        upstream_timeout_ms,
    } = settings;
    ConfigDir::new()
        .schema("license", 1, license_schema())
        .gateway(&format!("upstream_timeout_ms = {upstream_timeout_ms}"))
        .main(&format!(
            "[certificates]\ncapacity = {capacity}\nttl_seconds = {ttl_seconds}\nnot_found_ttl_seconds = {not_found_ttl_seconds}\nstale_if_error_seconds = {stale_if_error_seconds}"
        ))
        .department(
            "market",
            "department",
            &format!(
                r#"
[certificates.licence]
lookup = "{}"
schema = "license"
id_format = "cn-uscc"
consumers = ["tax", "civil"]
"#,
                issuer.lookup_url()
            ),
        )
        .department("tax", "department", "")
        .department(
            "civil",
            "department",
            r#"
[formats.license]
unmapped = "drop"
fields = [
  { own = "/SHXYDM", shared = "/uscc" },
  { own = "/DWMC", shared = "/name" },
  { own = "/DJZT", shared = "/status", codes = { "存续" = "active", "吊销" = "revoked", "注销" = "cancelled" } },
]
"#,
        )
        .department("outsider", "department", "")
        .department("admin", "admin", "")
}

/// A lookup as `department` with a purpose.
async fn look_up(gateway: &TestGateway, department: &str, id: &str) -> reqwest::Response {
    gateway
        .call(
            Method::GET,
            &format!("/certificates/licence/{id}"),
            department,
        )
        .header("Xgate-Purpose", "企业开户核验 account opening check")
        .send()
        .await
        .unwrap()
}

fn cache_header(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("xgate-cache")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn age(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("age")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("an Age header")
}

/// Looks `id` up until the cache answers `wanted`, every answer before being `while_waiting`.
async fn poll_until(
    gateway: &TestGateway,
    id: &str,
    while_waiting: &str,
    wanted: &str,
) -> reqwest::Response {
    eventually(
        format!("the cache answers {wanted}"),
        POLL_DEADLINE,
        || async {
            let response = look_up(gateway, "tax", id).await;
            let cache = cache_header(&response);
            if cache == wanted {
                return Some(response);
            }
            assert_eq!(cache, while_waiting, "status {}", response.status());
            None
        },
    )
    .await
}

#[tokio::test]
async fn a_miss_then_hits_ask_the_issuer_once() {
    let issuer = Issuer::start().await;
    let gateway = gateway(&issuer, Settings::default()).await;
    let id = known_id(1);

    let first = look_up(&gateway, "tax", &id).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(cache_header(&first), "miss");
    assert_eq!(age(&first), 0);
    assert_eq!(first.headers()["cache-control"], "no-store");
    assert!(first.headers().contains_key("x-request-id"));
    assert_eq!(first.json::<Value>().await.unwrap(), certificate(&id));

    for _ in 0..3 {
        let again = look_up(&gateway, "tax", &id).await;
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(cache_header(&again), "hit");
        assert_eq!(again.json::<Value>().await.unwrap(), certificate(&id));
    }
    assert_eq!(issuer.calls(), 1);

    let text = metrics_text(&gateway).await;
    for line in [
        r#"xgate_certificate_lookups_total{consumer="tax",result="miss",type="licence"} 1"#,
        r#"xgate_certificate_lookups_total{consumer="tax",result="hit",type="licence"} 3"#,
        r#"xgate_certificate_issuer_requests_total{status="200",type="licence"} 1"#,
        "xgate_certificate_cache_entries 1",
        "xgate_build_info{version=",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
    assert!(!text.contains(&id), "an id in the metrics");
}

#[tokio::test]
async fn a_consumer_with_a_format_gets_its_own_layout_from_the_same_entry() {
    let issuer = Issuer::start().await;
    let gateway = gateway(&issuer, Settings::default()).await;
    let id = known_id(2);

    let shared = look_up(&gateway, "tax", &id).await;
    assert_eq!(cache_header(&shared), "miss");
    let own = look_up(&gateway, "civil", &id).await;
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(cache_header(&own), "hit");
    assert_eq!(
        own.json::<Value>().await.unwrap(),
        json!({"SHXYDM": id, "DWMC": "福州闽江数据科技有限公司", "DJZT": "存续"})
    );
    assert_eq!(issuer.calls(), 1);
}

#[tokio::test]
async fn a_thousand_concurrent_lookups_of_one_uncached_id_make_one_issuer_call() {
    const LOOKUPS: usize = 1000;
    let issuer = Issuer::start().await;
    let gateway = Arc::new(gateway(&issuer, Settings::default()).await);
    let id = known_id(3);
    // The issuer holds its answer until every lookup waits on the one fetch, so the lookups
    // are concurrent for certain, not merely close in time.
    issuer.gate.send_replace(false);
    let lookups: Vec<_> = (0..LOOKUPS)
        .map(|_| {
            let gateway = gateway.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let response = look_up(&gateway, "tax", &id).await;
                let status = response.status();
                let cache = cache_header(&response);
                (status, cache, response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let certificates = &gateway.gateway.certificates;
    eventually(
        Described(|| {
            let waiting = certificates.waiting_lookups();
            format!("every lookup waits (only {waiting} do)")
        }),
        Duration::from_secs(120),
        || async { certificates.waiting_lookups() >= LOOKUPS },
    )
    .await;
    assert_eq!(gateway.gateway.certificates.fetches_in_flight(), 1);
    issuer.gate.send_replace(true);
    for lookup in lookups {
        let (status, cache, body) = lookup.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cache, "miss");
        assert_eq!(body, certificate(&id));
    }
    assert_eq!(issuer.calls(), 1);
    assert_eq!(gateway.gateway.certificates.fetches_in_flight(), 0);
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let issuer = Issuer::start().await;
    let settings = Settings {
        ttl_seconds: 1,
        stale_if_error_seconds: 0,
        ..Settings::default()
    };
    let gateway = gateway(&issuer, settings).await;
    let id = known_id(4);
    assert_eq!(cache_header(&look_up(&gateway, "tax", &id).await), "miss");
    let refreshed = poll_until(&gateway, &id, "hit", "miss").await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_eq!(issuer.calls(), 2);
}

#[tokio::test]
async fn an_issuer_404_is_remembered_for_the_not_found_ttl() {
    let issuer = Issuer::start().await;
    let settings = Settings {
        not_found_ttl_seconds: 1,
        ..Settings::default()
    };
    let gateway = gateway(&issuer, settings).await;
    let id = unknown_id();

    let first = look_up(&gateway, "tax", &id).await;
    assert_eq!(cache_header(&first), "miss");
    let (status, body) = problem(first).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["type"], "urn:xgate:problem:certificate-not-found");

    let remembered = look_up(&gateway, "tax", &id).await;
    assert_eq!(cache_header(&remembered), "hit");
    assert!(remembered.headers().contains_key("age"));
    let (status, body) = problem(remembered).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["type"], "urn:xgate:problem:certificate-not-found");
    assert_eq!(issuer.calls(), 1);

    let asked_again = poll_until(&gateway, &id, "hit", "miss").await;
    assert_eq!(asked_again.status(), StatusCode::NOT_FOUND);
    assert_eq!(issuer.calls(), 2);
    let text = metrics_text(&gateway).await;
    assert!(
        text.contains(r#"result="not_found",type="licence"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"xgate_certificate_issuer_requests_total{status="404",type="licence"} 2"#)
    );
}

#[tokio::test]
async fn a_stale_entry_is_served_while_the_issuer_fails_or_is_down() {
    let issuer = Issuer::start().await;
    let settings = Settings {
        ttl_seconds: 1,
        ..Settings::default()
    };
    let gateway = gateway(&issuer, settings).await;
    let id = known_id(5);
    assert_eq!(cache_header(&look_up(&gateway, "tax", &id).await), "miss");

    issuer.set(Mode::Fail);
    let stale = poll_until(&gateway, &id, "hit", "stale").await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert!(age(&stale) >= 1);
    assert_eq!(stale.json::<Value>().await.unwrap(), certificate(&id));
    let calls_while_failing = issuer.calls();
    assert!(calls_while_failing >= 2);

    // The issuer stops altogether: connections are refused, the stale entry still answers.
    drop(issuer);
    let stale = look_up(&gateway, "tax", &id).await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(cache_header(&stale), "stale");
    assert_eq!(stale.json::<Value>().await.unwrap(), certificate(&id));

    let text = metrics_text(&gateway).await;
    assert!(text.contains(r#"result="stale",type="licence"}"#), "{text}");
    assert!(
        text.contains(r#"xgate_certificate_issuer_requests_total{status="5xx",type="licence"}"#)
    );
    assert!(
        text.contains(r#"xgate_certificate_issuer_requests_total{status="error",type="licence"}"#)
    );
}

#[tokio::test]
async fn without_an_entry_a_failing_issuer_is_a_502_or_504() {
    let issuer = Issuer::start().await;
    let settings = Settings {
        upstream_timeout_ms: 300,
        ..Settings::default()
    };
    let gateway = gateway(&issuer, settings).await;

    issuer.set(Mode::Fail);
    let (status, body) = problem(look_up(&gateway, "tax", &known_id(6)).await).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["type"], "urn:xgate:problem:upstream-unavailable");

    issuer.set(Mode::Hang);
    let (status, body) = problem(look_up(&gateway, "tax", &known_id(6)).await).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["type"], "urn:xgate:problem:upstream-timeout");

    drop(issuer);
    let (status, body) = problem(look_up(&gateway, "tax", &known_id(6)).await).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["type"], "urn:xgate:problem:upstream-unavailable");

    let text = metrics_text(&gateway).await;
    assert!(
        text.contains(
            r#"xgate_certificate_lookups_total{consumer="tax",result="error",type="licence"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"xgate_certificate_issuer_requests_total{status="timeout",type="licence"} 1"#
        )
    );
    assert!(text.contains("xgate_certificate_cache_entries 0"));
}

#[tokio::test]
async fn an_invalid_issuer_answer_is_refused_and_not_cached() {
    let issuer = Issuer::start().await;
    let gateway = gateway(&issuer, Settings::default()).await;
    let id = known_id(7);

    issuer.set(Mode::Invalid);
    for calls in 1..=2 {
        let response = look_up(&gateway, "tax", &id).await;
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(body["type"], "urn:xgate:problem:upstream-invalid-response");
        assert!(!body.to_string().contains("bogus"), "{body}");
        assert_eq!(issuer.calls(), calls, "the invalid answer was cached");
    }
    issuer.set(Mode::Serve);
    let valid = look_up(&gateway, "tax", &id).await;
    assert_eq!(valid.status(), StatusCode::OK);
    assert_eq!(cache_header(&valid), "miss");
    assert_eq!(issuer.calls(), 3);
}

#[tokio::test]
async fn the_issuer_and_admins_drop_entries_and_others_may_not() {
    let issuer = Issuer::start().await;
    let gateway = gateway(&issuer, Settings::default()).await;
    let id = known_id(8);
    let other = known_id(9);
    let invalidate = format!("/certificates/licence/{id}/invalidate");
    assert_eq!(cache_header(&look_up(&gateway, "tax", &id).await), "miss");
    assert_eq!(cache_header(&look_up(&gateway, "tax", &id).await), "hit");

    // A consumer may not drop the issuer's entries; nor may anyone without credentials.
    let refused = gateway
        .call(Method::POST, &invalidate, "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(refused).await.0, StatusCode::FORBIDDEN);
    let anonymous = gateway
        .client
        .post(gateway.url(&invalidate))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(anonymous).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(cache_header(&look_up(&gateway, "tax", &id).await), "hit");

    // The issuing department drops it: the next lookup asks the issuer.
    let dropped = gateway
        .call(Method::POST, &invalidate, "market")
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), StatusCode::NO_CONTENT);
    assert_eq!(cache_header(&look_up(&gateway, "tax", &id).await), "miss");
    assert_eq!(issuer.calls(), 2);

    // An admin drops one id on the admin plane; a department may not.
    let one = format!("/certificates/licence/{id}");
    let admin_one = gateway.admin_url(&format!("/admin{one}"));
    let refused = gateway
        .client
        .delete(&admin_one)
        .bearer_auth(token("market"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(refused).await.0, StatusCode::FORBIDDEN);
    let dropped = gateway
        .client
        .delete(&admin_one)
        .bearer_auth(token("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), StatusCode::NO_CONTENT);
    assert_eq!(cache_header(&look_up(&gateway, "tax", &id).await), "miss");
    assert_eq!(issuer.calls(), 3);

    // And the whole type.
    assert_eq!(
        cache_header(&look_up(&gateway, "tax", &other).await),
        "miss"
    );
    let dropped = gateway
        .client
        .delete(gateway.admin_url("/admin/certificates/licence"))
        .bearer_auth(token("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), StatusCode::NO_CONTENT);
    assert_eq!(cache_header(&look_up(&gateway, "tax", &id).await), "miss");
    assert_eq!(
        cache_header(&look_up(&gateway, "tax", &other).await),
        "miss"
    );
    assert_eq!(issuer.calls(), 6);

    // Unknown types and malformed ids are refused, not silently accepted.
    let unknown = gateway
        .client
        .delete(gateway.admin_url("/admin/certificates/permit"))
        .bearer_auth(token("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(unknown).await.0, StatusCode::NOT_FOUND);
    let malformed = gateway
        .call(
            Method::POST,
            "/certificates/licence/nope/invalidate",
            "market",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(problem(malformed).await.0, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn the_cache_keeps_at_most_its_capacity() {
    let issuer = Issuer::start().await;
    let settings = Settings {
        capacity: 10,
        ..Settings::default()
    };
    let gateway = gateway(&issuer, settings).await;
    for n in 100..150 {
        let response = look_up(&gateway, "tax", &known_id(n)).await;
        assert!(
            [StatusCode::OK, StatusCode::NOT_FOUND].contains(&response.status()),
            "{}",
            response.status()
        );
    }
    assert_eq!(issuer.calls(), 50);
    let certificates = &gateway.gateway.certificates;
    certificates.run_pending_tasks().await;
    let entries = certificates.entry_count();
    assert!((1..=10).contains(&entries), "{entries} entries");
}

#[tokio::test]
async fn lookups_without_purpose_rights_or_a_well_formed_id_are_refused_before_the_issuer() {
    let issuer = Issuer::start().await;
    let gateway = gateway(&issuer, Settings::default()).await;
    let path = format!("/certificates/licence/{}", known_id(10));

    let anonymous = gateway.client.get(gateway.url(&path)).send().await.unwrap();
    assert_eq!(problem(anonymous).await.0, StatusCode::UNAUTHORIZED);

    let outsider = look_up(&gateway, "outsider", &known_id(10)).await;
    assert_eq!(problem(outsider).await.0, StatusCode::FORBIDDEN);

    let unknown_type = gateway
        .call(
            Method::GET,
            &format!("/certificates/permit/{}", known_id(10)),
            "tax",
        )
        .header("Xgate-Purpose", "check")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(unknown_type).await.0, StatusCode::NOT_FOUND);

    for purpose in [None, Some("   ")] {
        let mut request = gateway.call(Method::GET, &path, "tax");
        if let Some(purpose) = purpose {
            request = request.header("Xgate-Purpose", purpose);
        }
        let (status, body) = problem(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["type"], "urn:xgate:problem:purpose-required");
    }
    let chinese = gateway
        .call(Method::GET, &path, "tax")
        .header("Accept-Language", "zh-CN")
        .send()
        .await
        .unwrap();
    let (_, body) = problem(chinese).await;
    assert_eq!(body["title"], "须说明查询用途");

    let valid = known_id(10);
    let other_check = if valid.ends_with('0') { '1' } else { '0' };
    let wrong_check = format!("{}{other_check}", &valid[..17]);
    for id in [
        "nope",
        "91350100M000100Y4",
        wrong_check.as_str(),
        "350104199003080571",
    ] {
        let (status, body) = problem(look_up(&gateway, "tax", id).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{id}");
        assert_eq!(body["type"], "urn:xgate:problem:schema-validation");
        assert_eq!(body["errors"][0]["pointer"], "/id");
        assert!(body["detail"].as_str().unwrap().contains("cn-uscc"));
    }
    assert_eq!(issuer.calls(), 0);

    // A Chinese purpose is UTF-8, not a visible-ASCII header value: it is accepted as sent.
    let chinese_purpose = gateway
        .call(Method::GET, &path, "tax")
        .header(
            "Xgate-Purpose",
            http::HeaderValue::from_bytes("社保登记核验".as_bytes()).unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(chinese_purpose.status(), StatusCode::OK);
    assert_eq!(issuer.calls(), 1);

    let text = metrics_text(&gateway).await;
    assert!(
        text.contains(
            r#"xgate_certificate_lookups_total{consumer="unknown",result="error",type="unknown"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"xgate_certificate_lookups_total{consumer="outsider",result="error",type="licence"} 1"#
    ));
}

#[tokio::test]
async fn hostile_ids_get_clear_problems_and_the_gateway_keeps_serving() {
    let issuer = Issuer::start().await;
    let gateway = gateway(&issuer, Settings::default()).await;
    let bearer = token("tax");
    let long = "9".repeat(10 * 1024);
    let cases: Vec<(String, u16, &str)> = vec![
        ("a/b".to_owned(), 404, "not-found"),
        ("..".to_owned(), 422, "schema-validation"),
        ("%2e%2e".to_owned(), 422, "schema-validation"),
        (
            "..%2F..%2Fetc%2Fpasswd".to_owned(),
            422,
            "schema-validation",
        ),
        (format!("{}%2F", known_id(11)), 422, "schema-validation"),
        (format!("%20{}", known_id(11)), 422, "schema-validation"),
        ("%FF%FE%00".to_owned(), 400, "invalid-parameter"),
        ("%E4%B8".to_owned(), 400, "invalid-parameter"),
        (long, 422, "schema-validation"),
    ];
    for (id, status, problem_type) in cases {
        let request = format!(
            "GET /certificates/licence/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\nXgate-Purpose: check\r\nConnection: close\r\n\r\n"
        );
        let response = raw_http(gateway.data, request.as_bytes())
            .await
            .expect("an answer");
        let shown: String = id.chars().take(40).collect();
        assert_eq!(response.status, status, "{shown}");
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json"),
            "{shown}"
        );
        let body = response.json();
        assert_eq!(
            body["type"],
            format!("urn:xgate:problem:{problem_type}"),
            "{shown}"
        );
        assert!(
            !body.to_string().contains("999999999"),
            "the id echoed back"
        );
    }
    assert_eq!(issuer.calls(), 0);
    let served = look_up(&gateway, "tax", &known_id(11)).await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(issuer.calls(), 1);
}

#[tokio::test]
async fn a_lookup_url_with_the_id_outside_its_path_is_a_configuration_error() {
    let config = ConfigDir::new()
        .schema("license", 1, license_schema())
        .department(
            "market",
            "department",
            r#"
[certificates.licence]
lookup = "http://{id}.example:80/certs"
schema = "license"
id_format = "cn-uscc"
consumers = []
"#,
        );
    config.write_main();
    let problems = xgate::config::load(&config.main_path(), &xgate::config::Overrides::default())
        .expect_err("refused");
    let text = problems.to_string();
    assert!(text.contains("certificates.licence.lookup"), "{text}");
    assert!(text.contains("{id} must be in the URL's path"), "{text}");
}

/// Every lookup's audit entry, newest first (as an admin reads them).
async fn certificate_entries(gateway: &TestGateway) -> Vec<Value> {
    let response = gateway
        .client
        .get(gateway.admin_url("/audit/exchanges?kind=certificate&limit=1000"))
        .bearer_auth(token("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap();
    page["entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_lookup_leaves_an_audit_entry_with_hashes_and_never_the_id_or_purpose() {
    let issuer = Issuer::start().await;
    let gateway = gateway(&issuer, Settings::default()).await;
    let id = known_id(7);
    let purpose = "企业开户核验 account opening check";

    // miss, hit, a certificate the issuer does not have, then three refusals.
    assert_eq!(look_up(&gateway, "tax", &id).await.status(), StatusCode::OK);
    let hit = look_up(&gateway, "civil", &id).await;
    assert_eq!(hit.status(), StatusCode::OK);
    let hit_bytes = hit.bytes().await.unwrap().len() as u64;
    let missing = unknown_id();
    assert_eq!(
        look_up(&gateway, "tax", &missing).await.status(),
        StatusCode::NOT_FOUND
    );
    let no_purpose = gateway
        .call(Method::GET, &format!("/certificates/licence/{id}"), "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(no_purpose.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        look_up(&gateway, "outsider", &id).await.status(),
        StatusCode::FORBIDDEN
    );
    let stranger = gateway
        .client
        .get(gateway.url(&format!("/certificates/licence/{id}")))
        .header("Xgate-Purpose", purpose)
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);

    let entries = certificate_entries(&gateway).await;
    let seen: Vec<(&str, &str, u64)> = entries
        .iter()
        .map(|entry| {
            (
                entry["consumer"].as_str().unwrap(),
                entry["outcome"].as_str().unwrap(),
                entry["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("unknown", "unauthenticated", 401),
            ("outsider", "forbidden", 403),
            ("tax", "invalid_request", 400),
            ("tax", "not_found", 404),
            ("civil", "hit", 200),
            ("tax", "miss", 200),
        ]
    );
    // Keyed under the audit key (SPEC §15): the id as a subject of its type's kind (`cn-uscc`:
    // an organisation), never the plain SHA-256 an enumeration reverses.
    let id_sha256 = gateway.keyed(format!("organisation\0{id}").as_bytes());
    assert_ne!(id_sha256, sha256_hex(id.as_bytes()));
    let purpose_sha256 = gateway.keyed(purpose.as_bytes());
    for entry in &entries[4..] {
        assert_eq!(entry["kind"], "certificate");
        assert_eq!(entry["provider"], "market");
        assert_eq!(entry["service"], "licence");
        assert_eq!(entry["method"], "GET");
        assert_eq!(entry["subject_sha256"], id_sha256.as_str());
        assert_eq!(entry["purpose_sha256"], purpose_sha256.as_str());
    }
    assert_eq!(entries[4]["response_bytes"], hit_bytes);
    // Refused before the id was checked: no id digest; the type is known once routed.
    assert_eq!(entries[0]["subject_sha256"], Value::Null);
    assert_eq!(entries[2]["purpose_sha256"], Value::Null);

    // The raw id and purpose are nowhere in the database or its WAL.
    let mut bytes = std::fs::read(gateway.audit_path()).unwrap();
    bytes.extend(std::fs::read(gateway.audit_path().with_extension("db-wal")).unwrap_or_default());
    for secret in [id.as_bytes(), purpose.as_bytes(), missing.as_bytes()] {
        assert!(
            !bytes.windows(secret.len()).any(|window| window == secret),
            "a raw id or purpose reached the audit database"
        );
    }

    // The chain holds them.
    let verify: Value = gateway
        .client
        .get(gateway.admin_url("/audit/verify"))
        .bearer_auth(token("admin"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
}

/// The valid `cn-elicense-id` values of `tests/fixtures/identifiers.json` (the published
/// identifiers of the national platform's Annex A.2 among them).
fn valid_elicense_ids() -> Vec<String> {
    let cases: Vec<Value> = serde_json::from_str(include_str!(
        "../../crates/xgate-core/tests/fixtures/identifiers.json"
    ))
    .unwrap();
    cases
        .into_iter()
        .filter(|case| case["format"] == "cn-elicense-id" && case["valid"] == true)
        .map(|case| case["value"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn real_elicense_ids_are_looked_up_and_any_other_check_character_is_refused() {
    let upstream = Upstream::start(Router::new().route(
        "/certs/{id}",
        get(|Path(id): Path<String>| async move {
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"license_id": id, "holder": "张三"}).to_string(),
                ))
                .unwrap()
        }),
    ))
    .await;
    let gateway = ConfigDir::new()
        .schema(
            "marriage",
            1,
            json!({
                "type": "object",
                "required": ["license_id"],
                "properties": {"license_id": {"type": "string", "format": "cn-elicense-id"}}
            }),
        )
        .department(
            "civil",
            "department",
            &format!(
                "[certificates.marriage]\nlookup = \"{}\"\nschema = \"marriage\"\nid_format = \"cn-elicense-id\"\nconsumers = [\"tax\"]\n",
                upstream.url("/certs/{id}")
            ),
        )
        .department("tax", "department", "")
        .start()
        .await;
    let look_up = |id: String| {
        gateway
            .call(Method::GET, &format!("/certificates/marriage/{id}"), "tax")
            .header("Xgate-Purpose", "婚姻状况核验")
            .send()
    };
    let ids = valid_elicense_ids();
    assert!(
        ids.iter().any(|id| id.contains(".11430000006122244L.")),
        "the fixture holds the published identifiers"
    );
    for id in &ids {
        let response = look_up(id.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{id}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["license_id"], id.as_str());
    }
    assert_eq!(upstream.call_count(), ids.len());
    for id in &ids {
        let (body, check) = id.split_at(id.len() - 1);
        for other in ('0'..='9')
            .chain('A'..='Z')
            .filter(|c| c.to_string() != check)
        {
            let (status, problem_body) =
                problem(look_up(format!("{body}{other}")).await.unwrap()).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}{other}");
            assert_eq!(problem_body["type"], "urn:xgate:problem:schema-validation");
        }
    }
    assert_eq!(
        upstream.call_count(),
        ids.len(),
        "a refused id never reaches the issuer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "postgres",
    ignore = "no PostgreSQL server answered when the tests were built"
)]
async fn an_invalidation_on_one_gateway_drops_the_entry_on_every_gateway() {
    let database = TestDatabase::new().await;
    let issuer = Issuer::start().await;
    let first = deployment(&issuer, Settings::default()).store(&database, "gw-1");
    import_schemas(&first).await;
    let first = first.start().await;
    let second = deployment(&issuer, Settings::default())
        .store(&database, "gw-2")
        .start()
        .await;
    for gateway in [&first, &second] {
        eventually("the listener follows", POLL_DEADLINE, || async {
            readiness(gateway).await == StatusCode::OK
        })
        .await;
    }
    let id = known_id(3);
    for gateway in [&first, &second] {
        assert_eq!(cache_header(&look_up(gateway, "tax", &id).await), "miss");
        assert_eq!(cache_header(&look_up(gateway, "tax", &id).await), "hit");
    }
    // The issuer drops it through the first gateway: the second drops its own entry too.
    let dropped = first
        .call(
            Method::POST,
            &format!("/certificates/licence/{id}/invalidate"),
            "market",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), StatusCode::NO_CONTENT);
    let started = std::time::Instant::now();
    eventually(
        "the second gateway dropped its entry",
        POLL_DEADLINE,
        || async { cache_header(&look_up(&second, "tax", &id).await) == "miss" },
    )
    .await;
    println!(
        "the invalidation reached the other gateway within {:?}",
        started.elapsed()
    );
    // An admin flushes the type on the second gateway: the first drops its entries.
    assert_eq!(cache_header(&look_up(&first, "tax", &id).await), "miss");
    let flushed = second
        .client
        .delete(second.admin_url("/admin/certificates/licence"))
        .bearer_auth(token("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(flushed.status(), StatusCode::NO_CONTENT);
    eventually(
        "the first gateway flushed the type",
        POLL_DEADLINE,
        || async { cache_header(&look_up(&first, "tax", &id).await) == "miss" },
    )
    .await;
    first.stop().await;
    second.stop().await;
}
