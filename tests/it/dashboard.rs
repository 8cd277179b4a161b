//! The auditors' dashboard (`GET /dashboard`) and the summary fields it draws: a real gateway
//! on port 0 with a real upstream and a real certificate issuer, a known set of exchanges and
//! lookups, the `/audit/summary` answer checked count by count, then the page opened in a real
//! headless Chromium (`chromium --dump-dom`, `--screenshot`).
//!
//! Where the build found no Chromium the browser tests are ignored (counted so by `cargo test`),
//! except under `CI=true`, where they run and fail without it (see `build.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path as UrlPath;
use axum::routing::get;
use base64::Engine;
use http::{Response, StatusCode};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// How long one browser run may take before it is killed: a guard against a hung browser, not
/// a timing assertion.
const BROWSER_DEADLINE: Duration = Duration::from_secs(120);

/// The `n`th valid unified social credit code; the issuer knows ids with `M` at index 8.
fn known_id(n: u32) -> String {
    xgate_core::identifiers::uscc_with_check(&format!("91350100M{n:08}")).unwrap()
}

/// A valid id the issuer answers 404 for.
fn unknown_id() -> String {
    xgate_core::identifiers::uscc_with_check("91350100N00000001").unwrap()
}

/// A certificate issuer: `/certs/{id}` answers the licence for known ids, 404 otherwise.
async fn issuer() -> Upstream {
    Upstream::start(Router::new().route(
        "/certs/{id}",
        get(|UrlPath(id): UrlPath<String>| async move {
            let (status, body) = if id.as_bytes().get(8) == Some(&b'N') {
                (
                    StatusCode::NOT_FOUND,
                    json!({"error": "no such certificate"}),
                )
            } else {
                (
                    StatusCode::OK,
                    json!({"uscc": id, "name": "福州闽江数据科技有限公司", "status": "active"}),
                )
            };
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap()
        }),
    ))
    .await
}

/// The known set: provider `market` (services `echo`, `licenses`, `register`; certificate type
/// `licence`), consumers `tax` and `civil`, and these calls:
///
/// | consumer | provider / service | outcomes |
/// | --- | --- | --- |
/// | tax | market / licenses | 3 ok |
/// | civil | market / licenses | 2 ok |
/// | tax | market / echo | 1 ok |
/// | civil | market / echo | 2 forbidden |
/// | tax | market / register | 1 invalid_request |
/// | unknown | (not routed) | 1 unauthenticated |
///
/// and certificate lookups of `licence`: miss, hit, hit, miss, not_found (tax and civil), one
/// forbidden (outsider): hit ratio 2 / 4.
struct Scenario {
    gateway: TestGateway,
    _upstreams: [Upstream; 3],
}

async fn scenario() -> Scenario {
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let issuer = issuer().await;
    let config = ConfigDir::new()
        .schema("license", 1, license_schema())
        .department(
            "market",
            "department",
            &format!(
                r#"
[services.echo]
upstream = "{}"
methods = ["GET"]
consumers = ["tax"]

[services.licenses]
upstream = "{records}"
methods = ["GET"]
response_schema = "license"
consumers = ["tax", "civil"]

[services.register]
upstream = "{records}"
methods = ["POST"]
request_schema = "license@1"
response_schema = "license"
consumers = ["tax"]

[certificates.licence]
lookup = "{}"
schema = "license"
id_format = "cn-uscc"
consumers = ["tax", "civil"]
"#,
                echo.url("/base"),
                issuer.url("/certs/{id}"),
                records = records.url("/records"),
            ),
        )
        .department("tax", "department", "")
        .department("civil", "department", "")
        .department("outsider", "department", "")
        .department("auditor", "auditor", "")
        .department("admin", "admin", "");
    let gateway = config.start().await;

    let calls: [(&str, Method, &str, StatusCode, usize); 5] = [
        (
            "tax",
            Method::GET,
            "/exchange/market/licenses/1",
            StatusCode::OK,
            3,
        ),
        (
            "civil",
            Method::GET,
            "/exchange/market/licenses/1",
            StatusCode::OK,
            2,
        ),
        (
            "tax",
            Method::GET,
            "/exchange/market/echo/1",
            StatusCode::OK,
            1,
        ),
        (
            "civil",
            Method::GET,
            "/exchange/market/echo/1",
            StatusCode::FORBIDDEN,
            2,
        ),
        (
            "tax",
            Method::POST,
            "/exchange/market/register",
            StatusCode::UNPROCESSABLE_ENTITY,
            1,
        ),
    ];
    for (consumer, method, path, status, times) in calls {
        for _ in 0..times {
            let mut request = gateway.call(method.clone(), path, consumer);
            if method == Method::POST {
                request = request
                    .header("content-type", "application/json")
                    .body(r#"{"name": ""}"#);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), status, "{consumer} {method} {path}");
        }
    }
    let stranger = gateway
        .client
        .get(gateway.url("/exchange/market/echo/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), StatusCode::UNAUTHORIZED);

    let lookups = [
        ("tax", known_id(1), StatusCode::OK, "miss"),
        ("civil", known_id(1), StatusCode::OK, "hit"),
        ("tax", known_id(1), StatusCode::OK, "hit"),
        ("tax", known_id(2), StatusCode::OK, "miss"),
        ("tax", unknown_id(), StatusCode::NOT_FOUND, "miss"),
        ("outsider", known_id(1), StatusCode::FORBIDDEN, ""),
    ];
    for (consumer, id, status, cache) in lookups {
        let response = gateway
            .call(
                Method::GET,
                &format!("/certificates/licence/{id}"),
                consumer,
            )
            .header("xgate-purpose", "dashboard test")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{consumer} {id}");
        let answered = response
            .headers()
            .get("xgate-cache")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        assert_eq!(answered, cache, "{consumer} {id}");
    }
    Scenario {
        gateway,
        _upstreams: [echo, records, issuer],
    }
}

/// The matrix cells the known set gives: (consumer, provider, service) → count.
fn expected_cells() -> BTreeMap<(String, String, String), u64> {
    [
        ("tax", "market", "licenses", 3),
        ("civil", "market", "licenses", 2),
        ("tax", "market", "echo", 1),
        ("civil", "market", "echo", 2),
        ("tax", "market", "register", 1),
        ("unknown", "", "", 1),
    ]
    .into_iter()
    .map(|(consumer, provider, service, count)| {
        (
            (consumer.to_owned(), provider.to_owned(), service.to_owned()),
            count,
        )
    })
    .collect()
}

/// The failure groups the known set gives: (kind, consumer, provider, service, outcome, count).
fn expected_failures() -> BTreeSet<(String, String, String, String, String, u64)> {
    [
        ("exchange", "civil", "market", "echo", "forbidden", 2),
        (
            "exchange",
            "tax",
            "market",
            "register",
            "invalid_request",
            1,
        ),
        ("exchange", "unknown", "", "", "unauthenticated", 1),
        (
            "certificate",
            "outsider",
            "market",
            "licence",
            "forbidden",
            1,
        ),
    ]
    .into_iter()
    .map(|(kind, consumer, provider, service, outcome, count)| {
        (
            kind.to_owned(),
            consumer.to_owned(),
            provider.to_owned(),
            service.to_owned(),
            outcome.to_owned(),
            count,
        )
    })
    .collect()
}

async fn summary(gateway: &TestGateway, query: &str) -> Value {
    let response = gateway
        .client
        .get(gateway.admin_url(&format!("/audit/summary{query}")))
        .bearer_auth(token("auditor"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    response.json().await.unwrap()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn the_summary_gives_the_timeline_the_certificate_lookups_and_the_top_failures() {
    let Scenario { gateway, .. } = scenario().await;
    let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now());
    let since =
        (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let until =
        (now + chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let answer = summary(&gateway, &format!("?since={since}&until={until}")).await;

    // The matrix is the exchanges only.
    let cells: BTreeMap<_, _> = answer["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cell| {
            (
                (
                    text(&cell["consumer"]),
                    text(&cell["provider"]),
                    text(&cell["service"]),
                ),
                cell["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(cells, expected_cells(), "{answer}");

    // An hour and a minute in one-minute buckets, every one present, oldest first; the ten
    // exchanges in them by outcome.
    let timeline = &answer["timeline"];
    assert_eq!(timeline["step_seconds"], 60, "{timeline}");
    let buckets = timeline["buckets"].as_array().unwrap();
    assert!((61..=62).contains(&buckets.len()), "{}", buckets.len());
    let starts: Vec<String> = buckets
        .iter()
        .map(|bucket| text(&bucket["start"]))
        .collect();
    assert!(starts.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(starts[0].ends_with(":00.000Z") && starts[0].as_str() <= since.as_str());
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for bucket in buckets {
        let mut in_bucket = 0;
        for (word, count) in bucket["outcomes"].as_object().unwrap() {
            *outcomes.entry(word.clone()).or_default() += count.as_u64().unwrap();
            in_bucket += count.as_u64().unwrap();
        }
        assert_eq!(bucket["count"], in_bucket, "{bucket}");
    }
    assert_eq!(
        outcomes,
        BTreeMap::from([
            ("ok".to_owned(), 6),
            ("forbidden".to_owned(), 2),
            ("invalid_request".to_owned(), 1),
            ("unauthenticated".to_owned(), 1),
        ])
    );

    // The lookups by type and outcome, and the hit ratio 2 / (2 + 2).
    let certificates = &answer["certificates"];
    assert_eq!(certificates["lookups"], 6, "{certificates}");
    assert_eq!(
        certificates["outcomes"],
        json!({"forbidden": 1, "hit": 2, "miss": 2, "not_found": 1})
    );
    assert_eq!(certificates["hit_ratio"], 0.5);
    assert_eq!(
        certificates["types"],
        json!([{"type": "licence", "issuer": "market", "lookups": 6,
                "outcomes": {"forbidden": 1, "hit": 2, "miss": 2, "not_found": 1},
                "hit_ratio": 0.5}])
    );

    // The failures, most frequent first; a lookup's not_found is the issuer's answer, not one.
    let failures = answer["failures"].as_array().unwrap();
    let found: BTreeSet<_> = failures
        .iter()
        .map(|failure| {
            (
                text(&failure["kind"]),
                text(&failure["consumer"]),
                text(&failure["provider"]),
                text(&failure["service"]),
                text(&failure["outcome"]),
                failure["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, expected_failures(), "{answer}");
    assert_eq!(failures.len(), 4);
    assert_eq!(failures[0]["consumer"], "civil", "{answer}");
    for failure in failures {
        let last_seen = text(&failure["last_seen"]);
        assert!(last_seen.as_str() >= since.as_str() && last_seen.as_str() < until.as_str());
    }

    // Without a window: the buckets span the exchanges themselves; the same counts.
    let open = summary(&gateway, "").await;
    let total: u64 = open["timeline"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| bucket["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 10, "{open}");
    assert!(open["timeline"]["buckets"].as_array().unwrap().len() <= 100);
    assert_eq!(open["certificates"]["lookups"], 6);
    // A week: two-hour buckets, at most a hundred.
    let week_since =
        (now - chrono::Duration::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let week = summary(&gateway, &format!("?since={week_since}&until={until}")).await;
    assert_eq!(week["timeline"]["step_seconds"], 7200);
    assert!(week["timeline"]["buckets"].as_array().unwrap().len() <= 100);
    // A window without anything: empty parts, not errors.
    let later = summary(&gateway, "?since=2999-01-01T00:00:00Z").await;
    assert_eq!(later["timeline"]["buckets"], json!([]));
    assert_eq!(
        later["certificates"],
        json!({"lookups": 0, "outcomes": {}, "hit_ratio": null, "types": []})
    );
    assert_eq!(later["failures"], json!([]));
    let empty_day = summary(
        &gateway,
        "?since=2999-01-01T00:00:00Z&until=2999-01-02T00:00:00Z",
    )
    .await;
    assert_eq!(empty_day["timeline"]["step_seconds"], 900);
    let buckets = empty_day["timeline"]["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 96);
    assert_eq!(
        buckets[0],
        json!({"start": "2999-01-01T00:00:00.000Z", "count": 0, "outcomes": {}})
    );
}

#[tokio::test]
async fn the_summary_takes_no_other_parameters_and_refuses_hostile_ones_by_name() {
    let (gateway, _echo, _records) = standard_gateway().await;
    for (query, name) in [
        ("step=60", "query"),
        ("top=5", "query"),
        ("since=2026-11-28T00:00:00Z&step=1", "query"),
        ("since=-99999-01-01T00:00:00Z", "since"),
        (
            "until=2026-11-28T00:00:00Z%27%29%3B%20DROP%20TABLE%20audit_entries",
            "until",
        ),
        (
            "since=2026-11-28T00:00:00Z&since=2026-11-28T00:00:00Z",
            "since",
        ),
    ] {
        let response = gateway
            .client
            .get(gateway.admin_url(&format!("/audit/summary?{query}")))
            .bearer_auth(token("auditor"))
            .header("accept-language", "zh")
            .send()
            .await
            .unwrap();
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["type"], "urn:xgate:problem:invalid-parameter");
        assert_eq!(body["detail"], format!("参数 {name} 的取值无效"), "{query}");
    }
    // The widest window there is still answers in at most a hundred buckets.
    let response =
        gateway
            .client
            .get(gateway.admin_url(
                "/audit/summary?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59.999Z",
            ))
            .bearer_auth(token("admin"))
            .send()
            .await
            .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    let buckets = answer["timeline"]["buckets"].as_array().unwrap();
    assert!(
        !buckets.is_empty() && buckets.len() <= 100,
        "{}",
        buckets.len()
    );
    assert_eq!(
        answer["timeline"]["step_seconds"].as_i64().unwrap() % 86_400,
        0
    );
}

/// The one inline block between `open` and `close`.
fn block<'p>(page: &'p str, open: &str, close: &str) -> &'p str {
    let (_, rest) = page.split_once(open).expect("the block opens");
    rest.split_once(close).expect("the block closes").0
}

fn csp_hash(block: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(block.as_bytes()))
    )
}

#[tokio::test]
async fn the_page_is_self_contained_and_served_with_a_strict_policy() {
    let (gateway, _echo, _records) = standard_gateway().await;
    // No credentials needed: the page holds no data.
    let response = gateway
        .client
        .get(gateway.admin_url("/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("cache-control"), "no-store");
    let page = response.text().await.unwrap();

    let policy = header("content-security-policy");
    let directives: BTreeMap<&str, &str> = policy
        .split(';')
        .filter_map(|directive| directive.trim().split_once(' '))
        .collect();
    assert_eq!(directives["default-src"], "'none'", "{policy}");
    assert_eq!(
        directives["script-src"],
        csp_hash(block(&page, "<script>", "</script>")),
        "{policy}"
    );
    assert_eq!(
        directives["style-src"],
        csp_hash(block(&page, "<style>", "</style>")),
        "{policy}"
    );
    assert_eq!(directives["connect-src"], "'self'");
    assert_eq!(directives["img-src"], "data:");
    assert_eq!(directives["frame-ancestors"], "'none'");
    assert_eq!(directives["base-uri"], "'none'");
    assert_eq!(directives["form-action"], "'none'");
    assert!(!policy.contains("unsafe"), "{policy}");

    // One script and one style, both inline; nothing fetched from anywhere else.
    assert_eq!(page.matches("<script").count(), 1);
    assert_eq!(page.matches("<style").count(), 1);
    assert!(!page.contains("<script src") && !page.contains("<link rel=\"stylesheet\""));
    let urls = page.matches("http://").count() + page.matches("https://").count();
    assert_eq!(
        urls,
        page.matches("'http://www.w3.org/2000/svg'").count(),
        "the page names a URL other than the SVG namespace"
    );
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attribute) {
            let value = &page[at + attribute.len()..];
            assert!(
                value.starts_with("data:"),
                "{}",
                &value[..value.len().min(40)]
            );
        }
    }
    assert!(!page.contains("innerHTML") && !page.contains("outerHTML"));
    for storage in [
        "localStorage",
        "sessionStorage",
        "document.cookie",
        "indexedDB",
    ] {
        assert!(
            !page.contains(storage),
            "the token must not be kept ({storage})"
        );
    }

    // HEAD: the same headers, no body.
    let head = gateway
        .client
        .head(gateway.admin_url("/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers().get("content-security-policy").unwrap(),
        policy.as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());

    // Other methods: 405 problems, with or without credentials.
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let response = gateway
            .client
            .request(method.clone(), gateway.admin_url("/dashboard"))
            .bearer_auth(token("admin"))
            .send()
            .await
            .unwrap();
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(body["type"], "urn:xgate:problem:method-not-allowed");
    }
    // The data plane has no dashboard.
    let data = gateway
        .client
        .get(gateway.url("/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(data.status(), StatusCode::NOT_FOUND);
}

/// Chromium on the PATH (`chromium`, then `chromium-browser`); a test calling it is marked
/// `xgate_missing = "chromium"`, so it runs only where the build found one, or under `CI=true`.
fn browser() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .flat_map(|folder| ["chromium", "chromium-browser"].map(|name| folder.join(name)))
                .find(|candidate| candidate.is_file())
        })
        .expect("chromium is not on the PATH (.ci/run installs it: apt-get install chromium)")
}

/// Runs headless Chromium in English on `url` with `extra` arguments in its own profile and
/// process group; returns what it printed. Killed (the whole group) when it outlives
/// [`BROWSER_DEADLINE`].
async fn run_browser(browser: &Path, extra: &[String], url: &str) -> String {
    run_browser_in(browser, "en-US", extra, url).await
}

/// [`run_browser`] with the browser's language set to `language`.
async fn run_browser_in(browser: &Path, language: &str, extra: &[String], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--accept-lang={language}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn().expect("chromium starts");
    let group = child.id().expect("chromium's process id");
    let finished = tokio::time::timeout(BROWSER_DEADLINE, child.wait_with_output()).await;
    // Whatever happened, no process of the browser's group outlives the run.
    tokio::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status()
        .await
        .ok();
    let output = finished
        .unwrap_or_else(|_| panic!("chromium did not finish within {BROWSER_DEADLINE:?}; killed"))
        .expect("chromium's output");
    assert!(
        output.status.success(),
        "chromium failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// An element of the dumped DOM: its attributes and the text inside it (tags removed).
#[derive(Debug)]
struct Element {
    attributes: BTreeMap<String, String>,
    text: String,
}

/// Every `<tag ...>` element of `dom` carrying `attribute`, with the text up to `</tag>`.
fn elements(dom: &str, tag: &str, attribute: &str) -> Vec<Element> {
    let open = format!("<{tag} ");
    let close = format!("</{tag}>");
    let mut found = Vec::new();
    for (at, _) in dom.match_indices(&open) {
        let rest = &dom[at + open.len()..];
        let Some(end) = rest.find('>') else { continue };
        let attributes = attributes(&rest[..end]);
        if !attributes.contains_key(attribute) {
            continue;
        }
        let inner = &rest[end + 1..];
        let inner = &inner[..inner.find(&close).unwrap_or(inner.len())];
        found.push(Element {
            attributes,
            text: strip_tags(inner),
        });
    }
    found
}

/// `name="value"` pairs of a serialized start tag (values unescaped for `&amp;` and `&quot;`).
fn attributes(tag: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut rest = tag.trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_owned();
        rest = &rest[name_end..];
        let mut value = String::new();
        if let Some(after) = rest.strip_prefix("=\"") {
            let close = after.find('"').unwrap_or(after.len());
            value = after[..close].replace("&quot;", "\"").replace("&amp;", "&");
            rest = &after[(close + 1).min(after.len())..];
        }
        found.insert(name, value);
        rest = rest.trim_start();
    }
    found
}

fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.trim().to_owned()
}

/// The `data-state` of the dumped page's body.
fn state(dom: &str) -> String {
    elements(dom, "body", "data-state")
        .first()
        .map(|body| body.attributes["data-state"].clone())
        .unwrap_or_default()
}

fn element_text(dom: &str, id: &str) -> String {
    ["div", "span", "p"]
        .iter()
        .flat_map(|tag| elements(dom, tag, "id"))
        .find(|element| element.attributes["id"] == id)
        .map(|element| element.text)
        .unwrap_or_else(|| panic!("no element #{id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "chromium",
    ignore = "chromium is not installed (apt-get install chromium)"
)]
async fn the_dashboard_shows_the_matrix_the_hit_ratio_and_the_failures_in_chromium() {
    let browser = browser();
    let Scenario { gateway, .. } = scenario().await;
    let url = gateway.admin_url(&format!("/dashboard#token={}", token("auditor")));
    let dom = run_browser(&browser, &["--dump-dom".to_owned()], &url).await;
    assert_eq!(state(&dom), "ready", "{dom}");

    // Exactly the known set's cells, each showing its count.
    let cells = elements(&dom, "td", "data-consumer");
    let shown: BTreeMap<_, _> = cells
        .iter()
        .map(|cell| {
            let attribute = |name: &str| cell.attributes[name].clone();
            assert_eq!(cell.text, attribute("data-count"), "{cell:?}");
            (
                (
                    attribute("data-consumer"),
                    attribute("data-provider"),
                    attribute("data-service"),
                ),
                cell.text.parse::<u64>().unwrap(),
            )
        })
        .collect();
    assert_eq!(cells.len(), shown.len());
    assert_eq!(shown, expected_cells());
    // The tooltip gives the outcomes and latency; a cell with failures is flagged.
    let civil_echo = cells
        .iter()
        .find(|cell| {
            cell.attributes["data-consumer"] == "civil" && cell.attributes["data-service"] == "echo"
        })
        .unwrap();
    assert!(
        civil_echo.attributes["title"].contains("forbidden: 2"),
        "{civil_echo:?}"
    );
    assert!(
        civil_echo.attributes["title"].contains("p99"),
        "{civil_echo:?}"
    );
    assert!(civil_echo.attributes["class"].contains("has-failures"));
    let tax_licenses = cells
        .iter()
        .find(|cell| {
            cell.attributes["data-consumer"] == "tax"
                && cell.attributes["data-service"] == "licenses"
        })
        .unwrap();
    assert!(!tax_licenses.attributes["class"].contains("has-failures"));

    // The totals, the cache's hit ratio overall and per type.
    assert_eq!(element_text(&dom, "kpi-exchanges"), "10");
    assert_eq!(element_text(&dom, "kpi-success"), "60.0%");
    assert_eq!(element_text(&dom, "kpi-failures"), "4");
    assert_eq!(element_text(&dom, "kpi-lookups"), "6");
    assert_eq!(element_text(&dom, "hit-ratio"), "50.0%");
    let types = elements(&dom, "tr", "data-type");
    assert_eq!(types.len(), 1, "{types:?}");
    assert_eq!(types[0].attributes["data-type"], "licence");
    assert_eq!(types[0].attributes["data-lookups"], "6");
    assert_eq!(types[0].attributes["data-hit-ratio"], "0.5000");

    // The failures table.
    let failures: BTreeSet<_> = elements(&dom, "tr", "data-failure")
        .iter()
        .map(|row| {
            let attribute = |name: &str| row.attributes[name].clone();
            (
                attribute("data-kind"),
                attribute("data-consumer"),
                attribute("data-provider"),
                attribute("data-service"),
                attribute("data-outcome"),
                attribute("data-count").parse::<u64>().unwrap(),
            )
        })
        .collect();
    assert_eq!(failures, expected_failures());

    // The timeline's bars hold the ten exchanges.
    let bars = elements(&dom, "g", "data-bucket");
    assert!(!bars.is_empty() && bars.len() <= 100, "{}", bars.len());
    let drawn: u64 = bars
        .iter()
        .map(|bar| bar.attributes["data-count"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(drawn, 10);

    // The token is nowhere on the page, and no record value either (entries hold digests).
    assert!(!dom.contains(&token("auditor")));
    assert!(!dom.contains("福州闽江数据科技有限公司"));

    // A screenshot for people to look at.
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .join("dashboard.png");
    std::fs::remove_file(&screenshot).ok();
    run_browser(
        &browser,
        &[
            format!("--screenshot={}", screenshot.display()),
            "--window-size=1400,1000".to_owned(),
            "--hide-scrollbars".to_owned(),
        ],
        &url,
    )
    .await;
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1400, 1000));
    // A blank page of that size compresses to a few kilobytes; the drawn one does not.
    assert!(
        png.len() > 30_000 && png.len() < 20_000_000,
        "{} bytes",
        png.len()
    );
    println!("dashboard screenshot: {}", screenshot.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "chromium",
    ignore = "chromium is not installed (apt-get install chromium)"
)]
async fn a_refused_token_leaves_the_page_in_error_asking_for_another_one() {
    let browser = browser();
    let (gateway, _echo, _records) = standard_gateway().await;
    let dump = ["--dump-dom".to_owned()];

    let wrong = run_browser(
        &browser,
        &dump,
        &gateway.admin_url("/dashboard#token=not-a-token"),
    )
    .await;
    assert_eq!(state(&wrong), "error", "{wrong}");
    assert!(
        element_text(&wrong, "message").contains("not accepted (401)"),
        "{wrong}"
    );
    assert!(!wrong.contains("not-a-token"));

    let department = run_browser(
        &browser,
        &dump,
        &gateway.admin_url(&format!("/dashboard#token={}", token("tax"))),
    )
    .await;
    assert_eq!(state(&department), "error", "{department}");
    assert!(
        element_text(&department, "message").contains("neither auditor nor admin (403)"),
        "{department}"
    );

    // In a Chinese browser, the same refusal in Chinese.
    let chinese = run_browser_in(
        &browser,
        "zh-CN",
        &dump,
        &gateway.admin_url("/dashboard#token=not-a-token"),
    )
    .await;
    assert_eq!(state(&chinese), "error", "{chinese}");
    assert!(
        element_text(&chinese, "message").contains("令牌未被接受（401）"),
        "{chinese}"
    );

    // Without a token the page only asks for one.
    let none = run_browser(&browser, &dump, &gateway.admin_url("/dashboard")).await;
    assert_eq!(state(&none), "token", "{none}");
    assert!(element_text(&none, "message").contains("Enter an auditor or admin token"));
    assert!(elements(&none, "td", "data-consumer").is_empty());
}

/// The subject box: opened with `#subject=resident/<id>`, the page asks
/// `GET /audit/subjects/resident/<id>` and lists who looked at that person's records, newest
/// first, with the purpose (free text shown as such, never its digest); the id does not stay
/// in the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "chromium",
    ignore = "chromium is not installed (apt-get install chromium)"
)]
async fn the_subject_box_lists_who_looked_at_a_person_s_records_in_chromium() {
    const PERSON: &str = "11010519491231002X";
    let browser = browser();
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = crate::privacy::deployment(&records).start().await;
    for (caller, purpose) in [("tax", Some("税务核定")), ("civil", None)] {
        let mut call = gateway.call(Method::GET, "/exchange/market/licenses", caller);
        if let Some(purpose) = purpose {
            call = call.header("Xgate-Purpose", purpose);
        }
        assert_eq!(call.send().await.unwrap().status(), StatusCode::OK);
    }
    let url = gateway.admin_url(&format!(
        "/dashboard#token={}&subject=resident/{PERSON}",
        token("auditor")
    ));
    let dom = run_browser(&browser, &["--dump-dom".to_owned()], &url).await;
    let panel = elements(&dom, "section", "id")
        .into_iter()
        .find(|section| section.attributes["id"] == "subject-panel")
        .expect("the subject panel");
    assert_eq!(
        panel.attributes.get("data-state").map(String::as_str),
        Some("ready"),
        "{dom}"
    );
    let rows: Vec<String> = elements(&dom, "tr", "class")
        .into_iter()
        .filter(|row| row.attributes["class"] == "subject-row")
        .map(|row| row.text)
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].contains("civil") && rows[0].contains("none"),
        "{rows:?}"
    );
    assert!(
        rows[1].contains("tax") && rows[1].contains("free text"),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .all(|row| row.contains("market / licenses") && row.contains("ok"))
    );
    assert!(!dom.contains(PERSON), "the id stayed in the page");
    gateway.stop().await;
}
