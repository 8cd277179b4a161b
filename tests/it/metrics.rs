//! Exchange metrics (SPEC §9) against a real gateway and real upstreams: every outcome counted
//! under configured label values only, durations in histograms from 100 µs to 10 s, bytes,
//! validation and translation failures, registrations, audit entries — and the exposition
//! passes `promtool check metrics`.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// One exposition parsed: `name{labels}` exactly as printed (labels sorted by name) → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// A gateway whose provider `market` offers a service for each outcome: `licenses` (valid
/// answers), `register` (validated request), `broken` (answers that break the schema), `down`
/// (nobody listening), `echo` (no schema). `civil` has its own layout for licences.
async fn gateway(echo: &Upstream, records: &Upstream, broken: &Upstream) -> TestGateway {
    let closed = free_port().await;
    ConfigDir::new()
        .schema("license", 1, license_schema())
        .department(
            "market",
            "department",
            &format!(
                r#"
[services.echo]
upstream = "{}"
methods = ["POST"]
consumers = ["tax"]

[services.licenses]
upstream = "{}"
methods = ["GET"]
response_schema = "license"
consumers = ["tax", "civil"]
[services.licenses.fields]
civil = ["/uscc", "/name", "/status"]

[services.register]
upstream = "{}"
methods = ["POST"]
request_schema = "license"
consumers = ["tax", "civil"]

[services.broken]
upstream = "{}"
methods = ["GET"]
response_schema = "license"
consumers = ["tax"]

[services.down]
upstream = "http://127.0.0.1:{closed}/"
methods = ["GET"]
consumers = ["tax"]
"#,
                echo.url("/"),
                records.url("/"),
                records.url("/"),
                broken.url("/"),
            ),
        )
        .department("tax", "department", "")
        .department(
            "civil",
            "department",
            r#"
[formats.license]
unmapped = "reject"
fields = [
  { own = "/SHXYDM", shared = "/uscc" },
  { own = "/DWMC", shared = "/name" },
  { own = "/DJZT", shared = "/status", codes = { "1" = "active", "2" = "revoked", "3" = "cancelled" } },
]
"#,
        )
        .department("outsider", "department", "")
        .department("admin", "admin", "")
        .start()
        .await
}

async fn call(
    gateway: &TestGateway,
    method: Method,
    path: &str,
    department: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = gateway.client.request(method, gateway.url(path));
    if let Some(department) = department {
        request = request.bearer_auth(token(department));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn every_outcome_is_counted_under_configured_labels_only() {
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(http::StatusCode::OK, license()).await;
    let broken = Upstream::fixed(http::StatusCode::OK, json!({"uscc": 5})).await;
    let gateway = gateway(&echo, &records, &broken).await;
    let get = |path: &'static str, department: Option<&'static str>| {
        call(&gateway, Method::GET, path, department, None)
    };

    for _ in 0..3 {
        assert_eq!(
            get("/exchange/market/licenses", Some("tax")).await.status(),
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            get("/exchange/market/licenses", Some("civil"))
                .await
                .status(),
            200
        );
    }
    let mut invalid = license();
    invalid.as_object_mut().unwrap().remove("name");
    let response = call(
        &gateway,
        Method::POST,
        "/exchange/market/register",
        Some("tax"),
        Some(invalid),
    )
    .await;
    assert_eq!(response.status(), 422);
    let own = json!({"SHXYDM": "91350100M000100Y43", "DWMC": "闽江", "DJZT": "1", "EXTRA": 1});
    let response = call(
        &gateway,
        Method::POST,
        "/exchange/market/register",
        Some("civil"),
        Some(own),
    )
    .await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        get("/exchange/market/broken", Some("tax")).await.status(),
        502
    );
    assert_eq!(
        get("/exchange/market/down", Some("tax")).await.status(),
        502
    );
    assert_eq!(
        get("/exchange/market/licenses", Some("outsider"))
            .await
            .status(),
        403
    );
    assert_eq!(get("/exchange/market/licenses", None).await.status(), 401);
    let response = call(
        &gateway,
        Method::DELETE,
        "/exchange/market/licenses",
        Some("tax"),
        None,
    )
    .await;
    assert_eq!(response.status(), 405);
    // Twenty made-up providers and services: none may become a label value.
    for n in 0..20 {
        let path = format!("/exchange/invented-{n}/service-{n}");
        let response = call(&gateway, Method::GET, &path, Some("tax"), None).await;
        assert_eq!(response.status(), 404);
    }
    let sent = json!({"note": "x".repeat(80)});
    let sent_bytes = serde_json::to_vec(&sent).unwrap().len();
    let response = call(
        &gateway,
        Method::POST,
        "/exchange/market/echo",
        Some("tax"),
        Some(sent),
    )
    .await;
    assert_eq!(response.status(), 200);
    let echoed_bytes = response.bytes().await.unwrap().len();

    let text = metrics_text(&gateway).await;
    assert!(!text.contains("invented"), "a request named a label value");
    let found = samples(&text);
    let value = |series: &str| {
        *found
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
    };
    let exchanges: BTreeMap<&str, f64> = found
        .iter()
        .filter(|(series, _)| series.starts_with("xgate_exchanges_total{"))
        .map(|(series, value)| (series.as_str(), *value))
        .collect();
    let expected: BTreeMap<&str, f64> = [
        (r#"xgate_exchanges_total{consumer="civil",outcome="ok",provider="market",service="licenses"}"#, 2.0),
        (r#"xgate_exchanges_total{consumer="civil",outcome="translation_error",provider="market",service="register"}"#, 1.0),
        (r#"xgate_exchanges_total{consumer="outsider",outcome="forbidden",provider="market",service="licenses"}"#, 1.0),
        (r#"xgate_exchanges_total{consumer="tax",outcome="forbidden",provider="market",service="licenses"}"#, 1.0),
        (r#"xgate_exchanges_total{consumer="tax",outcome="invalid_request",provider="market",service="register"}"#, 1.0),
        (r#"xgate_exchanges_total{consumer="tax",outcome="invalid_response",provider="market",service="broken"}"#, 1.0),
        (r#"xgate_exchanges_total{consumer="tax",outcome="not_found",provider="unknown",service="unknown"}"#, 20.0),
        (r#"xgate_exchanges_total{consumer="tax",outcome="ok",provider="market",service="echo"}"#, 1.0),
        (r#"xgate_exchanges_total{consumer="tax",outcome="ok",provider="market",service="licenses"}"#, 3.0),
        (r#"xgate_exchanges_total{consumer="tax",outcome="upstream_error",provider="market",service="down"}"#, 1.0),
        (r#"xgate_exchanges_total{consumer="unknown",outcome="unauthenticated",provider="unknown",service="unknown"}"#, 1.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(exchanges, expected);

    // Durations: every exchange of a service in its histogram, buckets from 100 µs to 10 s;
    // upstream time only for calls that reached an upstream.
    assert_eq!(
        value(r#"xgate_exchange_duration_seconds_count{provider="market",service="licenses"}"#),
        7.0
    );
    assert_eq!(
        value(r#"xgate_upstream_duration_seconds_count{provider="market",service="licenses"}"#),
        5.0
    );
    assert_eq!(
        value(r#"xgate_upstream_duration_seconds_count{provider="market",service="down"}"#),
        1.0
    );
    assert!(!found.contains_key(
        r#"xgate_upstream_duration_seconds_count{provider="market",service="register"}"#
    ));
    let buckets: Vec<&str> = found
        .keys()
        .filter_map(|series| {
            series
                .strip_prefix(
                    r#"xgate_exchange_duration_seconds_bucket{provider="market",service="licenses",le=""#,
                )?
                .strip_suffix(r#""}"#)
        })
        .collect();
    let mut bounds: Vec<f64> = buckets
        .iter()
        .map(|le| {
            if *le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            }
        })
        .collect();
    bounds.sort_by(f64::total_cmp);
    assert_eq!(bounds.len(), 17, "{buckets:?}");
    assert_eq!(bounds.first(), Some(&0.0001));
    assert_eq!(bounds[bounds.len() - 2], 10.0);
    assert_eq!(bounds.last(), Some(&f64::INFINITY));
    assert_eq!(
        value(
            r#"xgate_exchange_duration_seconds_bucket{provider="market",service="licenses",le="+Inf"}"#
        ),
        7.0
    );

    // Bytes: as sent and as received.
    assert_eq!(
        value(
            r#"xgate_exchange_request_bytes_total{consumer="tax",provider="market",service="echo"}"#
        ),
        sent_bytes as f64
    );
    assert_eq!(
        value(
            r#"xgate_exchange_response_bytes_total{consumer="tax",provider="market",service="echo"}"#
        ),
        echoed_bytes as f64
    );

    // Why records were refused.
    assert_eq!(
        value(
            r#"xgate_validation_failures_total{direction="request",schema="license",version="1"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"xgate_validation_failures_total{direction="response",schema="license",version="1"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"xgate_translation_failures_total{department="civil",direction="to-shared",schema="license"}"#
        ),
        1.0
    );

    // Every exchange left a committed audit entry before it was answered.
    assert_eq!(value("xgate_audit_entries_total"), 33.0);
}

#[tokio::test]
async fn registrations_and_reloads_are_counted_by_outcome() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let register = |body: Value| {
        gateway
            .client
            .post(gateway.admin_url("/admin/schemas/license/versions"))
            .bearer_auth(token("admin"))
            .json(&body)
            .send()
    };
    assert_eq!(register(license_schema()).await.unwrap().status(), 200);
    assert_eq!(
        register(json!({"type": "nonsense"}))
            .await
            .unwrap()
            .status(),
        422
    );
    let reload = || {
        gateway
            .client
            .post(gateway.admin_url("/admin/reload"))
            .bearer_auth(token("admin"))
            .send()
    };
    assert_eq!(reload().await.unwrap().status(), 200);
    let main_file = gateway.schemas_dir().join("../config/xgate.toml");
    let text = std::fs::read_to_string(&main_file).unwrap();
    std::fs::write(&main_file, format!("{text}\n[nonsense]\n")).unwrap();
    assert_eq!(reload().await.unwrap().status(), 422);
    std::fs::write(&main_file, text).unwrap();

    let found = samples(&metrics_text(&gateway).await);
    assert_eq!(found[r#"xgate_config_reloads_total{outcome="ok"}"#], 1.0);
    assert_eq!(
        found[r#"xgate_config_reloads_total{outcome="refused"}"#],
        1.0
    );
    assert_eq!(
        found[r#"xgate_schema_registrations_total{outcome="existing"}"#],
        1.0
    );
    assert_eq!(
        found[r#"xgate_schema_registrations_total{outcome="refused"}"#],
        1.0
    );
}

/// `promtool` from Debian's `prometheus` package (the test is ignored without it, except under
/// CI, where it fails).
fn promtool() -> std::path::PathBuf {
    tool(
        "promtool",
        "install Debian's prometheus package; .ci/run does",
    )
}

#[tokio::test]
#[cfg_attr(
    xgate_missing = "promtool",
    ignore = "promtool is not installed (apt-get install prometheus)"
)]
async fn the_exposition_passes_promtool_check_metrics() {
    let promtool = promtool();
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(http::StatusCode::OK, license()).await;
    let broken = Upstream::fixed(http::StatusCode::OK, json!({"uscc": 5})).await;
    let gateway = gateway(&echo, &records, &broken).await;
    // One of each kind of event, so every metric has samples.
    for (path, department) in [
        ("/exchange/market/licenses", Some("tax")),
        ("/exchange/market/broken", Some("tax")),
        ("/exchange/market/licenses", None),
    ] {
        call(&gateway, Method::GET, path, department, None).await;
    }
    call(
        &gateway,
        Method::POST,
        "/exchange/market/register",
        Some("civil"),
        Some(json!({"EXTRA": 1})),
    )
    .await;
    let text = metrics_text(&gateway).await;
    for name in [
        "xgate_exchanges_total",
        "xgate_exchange_duration_seconds_bucket",
        "xgate_upstream_duration_seconds_bucket",
        "xgate_exchange_response_bytes_total",
        "xgate_validation_failures_total",
        "xgate_translation_failures_total",
        "xgate_audit_entries_total",
        "xgate_purpose_uses_total",
        "xgate_build_info",
    ] {
        assert!(text.contains(name), "{name} missing");
    }

    let output = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool starts");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        drop(stdin);
        (child.wait_with_output().unwrap(), text)
    })
    .await
    .unwrap();
    let (output, text) = output;
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
