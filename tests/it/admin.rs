//! The admin plane (SPEC §4, §11): health on both planes, roles on `/admin` routes, and a
//! graceful shutdown that finishes in-flight exchanges before the listeners go away.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::*;

#[tokio::test]
async fn both_planes_report_health_and_readiness() {
    let (gateway, _echo, _records) = standard_gateway().await;
    for url in [gateway.url(""), gateway.admin_url("")] {
        let healthz = gateway
            .client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(healthz.status(), StatusCode::OK, "{url}");
        let readyz = gateway
            .client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(readyz.status(), StatusCode::OK, "{url}");
        assert_eq!(readyz.headers()["content-type"], "application/json");
        let body: Value = readyz.json().await.unwrap();
        assert_eq!(body["status"], "ready", "{url}");
    }

    // Draining (as during shutdown): alive, but not ready for traffic.
    gateway.gateway.set_ready(false);
    for url in [gateway.url(""), gateway.admin_url("")] {
        let healthz = gateway
            .client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(healthz.status(), StatusCode::OK, "{url}");
        let readyz = gateway
            .client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE, "{url}");
        let body: Value = readyz.json().await.unwrap();
        assert_eq!(body["status"], "not ready", "{url}");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn the_schema_list_is_for_auditors_and_admins_only() {
    let echo = Upstream::echo().await;
    let records = Upstream::echo().await;
    let mut version_2 = license_schema();
    version_2["properties"]["address"] = json!({"type": "string"});
    let config = standard(&echo, &records)
        .schema("license", 2, version_2)
        .schema("person", 1, json!({"type": "object"}));
    std::fs::write(
        config.path("schemas/person/settings.toml"),
        "compatibility = \"full_transitive\"\n",
    )
    .unwrap();
    let gateway = config.start().await;
    let url = gateway.admin_url("/admin/schemas");

    let anonymous = gateway.client.get(&url).send().await.unwrap();
    let (status, body) = problem(anonymous).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "urn:xgate:problem:unauthenticated");
    let bad_token = gateway
        .client
        .get(&url)
        .bearer_auth("token-nobody")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(bad_token).await.0, StatusCode::UNAUTHORIZED);
    let department = gateway
        .client
        .get(&url)
        .bearer_auth(token("tax"))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(department).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["type"], "urn:xgate:problem:forbidden");

    for reader in ["auditor", "admin"] {
        let response = gateway
            .client
            .get(&url)
            .bearer_auth(token(reader))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{reader}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"schemas": [
                {"name": "license", "versions": [1, 2], "latest": 2, "highest_version": 2, "compatibility": "backward"},
                {"name": "person", "versions": [1], "latest": 1, "highest_version": 1, "compatibility": "full_transitive"}
            ]}),
            "{reader}"
        );
    }
    gateway.stop().await;
}

#[tokio::test]
async fn unknown_admin_routes_check_the_role_first() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let get = |path: &str, department: Option<&str>| {
        let request = gateway.client.get(gateway.admin_url(path));
        match department {
            Some(department) => request.bearer_auth(token(department)),
            None => request,
        }
        .send()
    };
    for path in ["/admin/whatever", "/audit/whatever", "/admin", "/audit"] {
        let (status, _) = problem(get(path, None).await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let (status, _) = problem(get(path, Some("tax")).await.unwrap()).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{path}: a department learns nothing"
        );
        for reader in ["admin", "auditor"] {
            let (status, body) = problem(get(path, Some(reader)).await.unwrap()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path} as {reader}");
            assert_eq!(body["type"], "urn:xgate:problem:not-found");
        }
    }
    gateway.stop().await;
}

#[tokio::test]
async fn wrong_methods_on_admin_routes_are_problems() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let response = gateway
        .client
        .delete(gateway.admin_url("/admin/schemas"))
        .bearer_auth(token("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["type"], "urn:xgate:problem:method-not-allowed");
    gateway.stop().await;
}

#[tokio::test]
async fn the_data_plane_does_not_serve_admin_routes() {
    let (gateway, _echo, _records) = standard_gateway().await;
    for department in ["admin", "auditor", "tax"] {
        let response = gateway
            .call(Method::GET, "/admin/schemas", department)
            .send()
            .await
            .unwrap();
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{department}");
        assert_eq!(body["type"], "urn:xgate:problem:not-found");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_exchanges_then_refuses_connections() {
    // An upstream that holds its answer until the test releases it.
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let held = {
        let (arrived, release) = (arrived.clone(), release.clone());
        Router::new().fallback(move || {
            let (arrived, release) = (arrived.clone(), release.clone());
            async move {
                arrived.notify_one();
                release.notified().await;
                "released"
            }
        })
    };
    let slow = Upstream::start(held).await;
    let records = Upstream::echo().await;
    let gateway = standard(&slow, &records).start().await;
    let data = gateway.data;
    let state = gateway.gateway.clone();

    let in_flight = tokio::spawn(
        gateway
            .call(Method::GET, "/exchange/market/echo/held", "tax")
            .send(),
    );
    tokio::time::timeout(Duration::from_secs(10), arrived.notified())
        .await
        .expect("the exchange reaches the upstream");

    let stopping = tokio::spawn(gateway.stop());
    eventually(
        "the gateway reports not ready while draining",
        DEADLINE,
        || async { !state.is_ready() },
    )
    .await;
    assert!(
        !stopping.is_finished(),
        "shutdown waits for the in-flight exchange"
    );

    release.notify_one();
    let response = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight exchange completes")
        .unwrap()
        .expect("the in-flight exchange is answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "released");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown completes once drained")
        .unwrap();

    assert!(
        tokio::net::TcpStream::connect(data).await.is_err(),
        "the data listener is closed"
    );
    assert_eq!(slow.call_count(), 1);
}

#[tokio::test]
async fn admins_dry_run_a_departments_format() {
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&echo, &records)
        .department(
            "tax",
            "department",
            r#"
[formats.license]
unmapped = "reject"
fields = [
  { own = "/nsrsbh", shared = "/uscc" },
  { own = "/nsrmc", shared = "/name" },
  { own = "/zt", shared = "/status", codes = { "1" = "active", "2" = "revoked", "3" = "cancelled" } },
]
"#,
        )
        .start()
        .await;
    let post = |path: &str, department: &str, body: serde_json::Value| {
        gateway
            .client
            .post(gateway.admin_url(path))
            .bearer_auth(token(department))
            .json(&body)
            .send()
    };
    let own = serde_json::json!({"nsrsbh": "91350100M000100Y43", "nsrmc": "闽江数据", "zt": "1"});
    let shared =
        serde_json::json!({"uscc": "91350100M000100Y43", "name": "闽江数据", "status": "active"});

    let response = post(
        "/admin/translate/tax/license?direction=to-shared",
        "admin",
        own.clone(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), shared);
    let response = post(
        "/admin/translate/tax/license?direction=from-shared",
        "admin",
        shared.clone(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), own);

    // A record that does not translate: the 422 translation problem at the own pointers.
    let bad = serde_json::json!({"nsrsbh": "x", "zt": "7", "other": 1});
    let (status, body) = problem(
        post(
            "/admin/translate/tax/license?direction=to-shared",
            "admin",
            bad,
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["type"], "urn:xgate:problem:translation");
    let pointers: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/zt", "/other"]);
    assert_eq!(body["errors"][0]["rule"], "/zt ↔ /status (codes)");

    // Roles, parameters and names.
    for (department, expected) in [
        ("auditor", StatusCode::FORBIDDEN),
        ("tax", StatusCode::FORBIDDEN),
    ] {
        let (status, _) = problem(
            post(
                "/admin/translate/tax/license?direction=to-shared",
                department,
                own.clone(),
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, expected, "{department}");
    }
    for (path, expected) in [
        ("/admin/translate/tax/license", StatusCode::BAD_REQUEST),
        (
            "/admin/translate/tax/license?direction=sideways",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/admin/translate/nobody/license?direction=to-shared",
            StatusCode::NOT_FOUND,
        ),
        (
            "/admin/translate/tax/nothing?direction=to-shared",
            StatusCode::NOT_FOUND,
        ),
        (
            "/admin/translate/civil/license?direction=to-shared",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, _) = problem(post(path, "admin", own.clone()).await.unwrap()).await;
        assert_eq!(status, expected, "{path}");
    }
    gateway.stop().await;
}
