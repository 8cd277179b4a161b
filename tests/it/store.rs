//! Several gateways on one PostgreSQL database (SPEC §13; issue 18): migrations run at once,
//! version numbers assigned by the database under concurrent registrations on three gateways,
//! changes reaching every gateway by notification, a lost listener connection caught up by
//! reading everything again, and schema reads served from memory while the database is gone.
//! Each test has a database of its own on the real server (`XGATE_TEST_DATABASE_URL`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A gateway on `database`, named `instance`, whose admin department is `registrar`.
async fn gateway_on(database: &TestDatabase, instance: &str) -> TestGateway {
    ConfigDir::new()
        .store(database, instance)
        .department("registrar", "admin", "")
        .start()
        .await
}

/// Registers `document` as the next version of `name` on `gateway`.
async fn register(gateway: &TestGateway, name: &str, document: &Value) -> reqwest::Response {
    gateway
        .client
        .post(gateway.admin_url(&format!("/admin/schemas/{name}/versions")))
        .bearer_auth(token("registrar"))
        .json(document)
        .send()
        .await
        .unwrap()
}

/// The versions `gateway` serves of `name` (empty when it knows none).
async fn served_versions(gateway: &TestGateway, name: &str) -> Vec<u64> {
    let listing: Value = gateway
        .client
        .get(gateway.admin_url("/admin/schemas"))
        .bearer_auth(token("registrar"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listing["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|schema| schema["name"] == name)
        .map(|schema| {
            schema["versions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|version| version.as_u64().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `name`'s mode on `gateway`.
async fn set_mode(gateway: &TestGateway, name: &str, mode: &str) -> StatusCode {
    gateway
        .client
        .put(gateway.admin_url(&format!("/admin/schemas/{name}/config")))
        .bearer_auth(token("registrar"))
        .json(&json!({ "compatibility": mode }))
        .send()
        .await
        .unwrap()
        .status()
}

/// The mode `gateway` serves for `name`.
async fn served_mode(gateway: &TestGateway, name: &str) -> Option<String> {
    let listing: Value = gateway
        .client
        .get(gateway.admin_url("/admin/schemas"))
        .bearer_auth(token("registrar"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listing["schemas"]
        .as_array()?
        .iter()
        .find(|schema| schema["name"] == name)
        .and_then(|schema| schema["compatibility"].as_str().map(str::to_owned))
}

/// A distinct schema document: an object whose property `n` is the constant `n`.
fn numbered(n: usize) -> Value {
    json!({"type": "object", "properties": {"n": {"const": n}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "postgres",
    ignore = "no PostgreSQL server answered when the tests were built"
)]
async fn gateways_starting_at_once_migrate_the_store_once() {
    let database = TestDatabase::new().await;
    let starting = (0..3).map(|n| {
        let config = ConfigDir::new()
            .store(&database, &format!("gw-{n}"))
            .department("registrar", "admin", "");
        tokio::spawn(config.start())
    });
    let mut gateways = Vec::new();
    for started in starting {
        gateways.push(started.await.unwrap());
    }
    let client = database.connect().await;
    let migrations = client
        .query("SELECT version, applied_by FROM xgate_migrations", &[])
        .await
        .unwrap();
    assert_eq!(migrations.len(), 1, "one migration, applied once");
    for gateway in gateways {
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "postgres",
    ignore = "no PostgreSQL server answered when the tests were built"
)]
async fn sixty_concurrent_registrations_on_three_gateways_get_versions_one_to_sixty() {
    let database = TestDatabase::new().await;
    let mut gateways = Vec::new();
    for n in 1..=3 {
        gateways.push(std::sync::Arc::new(
            gateway_on(&database, &format!("gw-{n}")).await,
        ));
    }
    assert_eq!(
        set_mode(&gateways[0], "shared", "none").await,
        StatusCode::OK
    );
    let registrations = (0..60).map(|n| {
        let gateway = gateways[n % 3].clone();
        tokio::spawn(async move {
            let response = register(&gateway, "shared", &numbered(n)).await;
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (status, body)
        })
    });
    let mut versions = Vec::new();
    for registration in registrations {
        let (status, body) = registration.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        versions.push(body["version"].as_u64().unwrap());
    }
    let distinct: BTreeSet<u64> = versions.iter().copied().collect();
    assert_eq!(distinct.len(), 60, "no duplicate: {versions:?}");
    assert_eq!(distinct, (1..=60).collect(), "no gap: {versions:?}");
    let client = database.connect().await;
    let stored: Vec<i32> = client
        .query(
            "SELECT version FROM registry_versions WHERE name = 'shared' ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored, (1..=60).collect::<Vec<i32>>());
    // Every gateway serves all sixty, whichever registered them.
    let all: Vec<u64> = (1..=60).collect();
    for gateway in &gateways {
        eventually(
            "every gateway serves the sixty versions",
            Duration::from_secs(5),
            || async { served_versions(gateway, "shared").await == all },
        )
        .await;
    }
    for gateway in gateways {
        std::sync::Arc::into_inner(gateway).unwrap().stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "postgres",
    ignore = "no PostgreSQL server answered when the tests were built"
)]
async fn a_change_on_one_gateway_is_served_by_the_others_and_a_lost_listener_catches_up() {
    let database = TestDatabase::new().await;
    let first = gateway_on(&database, "gw-1").await;
    let second = gateway_on(&database, "gw-2").await;
    eventually(
        "the second gateway's listener follows",
        Duration::from_secs(5),
        || async { readiness(&second).await == StatusCode::OK },
    )
    .await;

    // A registration, a mode change and a deletion on the first reach the second.
    let started = Instant::now();
    assert_eq!(
        register(&first, "person", &numbered(1)).await.status(),
        StatusCode::CREATED
    );
    eventually(
        "the second gateway serves person@1",
        Duration::from_secs(5),
        || async { served_versions(&second, "person").await == [1] },
    )
    .await;
    println!(
        "a registration reached the other gateway in {:?}",
        started.elapsed()
    );
    assert_eq!(set_mode(&first, "person", "none").await, StatusCode::OK);
    eventually(
        "the second gateway serves the new mode",
        Duration::from_secs(5),
        || async { served_mode(&second, "person").await.as_deref() == Some("none") },
    )
    .await;
    assert_eq!(
        register(&first, "person", &numbered(2)).await.status(),
        StatusCode::CREATED
    );
    let deleted = first
        .client
        .delete(first.admin_url("/admin/schemas/person/versions/1"))
        .bearer_auth(token("registrar"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    eventually(
        "the second gateway stops serving person@1",
        Duration::from_secs(5),
        || async { served_versions(&second, "person").await == [2] },
    )
    .await;
    // The number of a deleted version is not handed out again, on either gateway.
    let third: Value = register(&second, "person", &numbered(3))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(third["version"], 3, "{third}");

    // The second gateway's listener loses its connection and cannot reconnect for a while;
    // meanwhile a change is made (its notification goes to nobody on that side).
    let admin = database.connect_server().await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            database.name()
        ))
        .await
        .unwrap();
    let listeners = terminate_listeners(&admin, &database).await;
    assert!(
        listeners >= 2,
        "both gateways' listeners were cut ({listeners})"
    );
    eventually(
        "the cut gateway says it is not ready",
        Duration::from_secs(5),
        || async { readiness(&second).await == StatusCode::SERVICE_UNAVAILABLE },
    )
    .await;
    // Schemas are still served from memory.
    let document = second
        .client
        .get(second.admin_url("/admin/schemas/person/versions/2"))
        .bearer_auth(token("registrar"))
        .send()
        .await
        .unwrap();
    assert_eq!(document.status(), StatusCode::OK);
    // The first gateway's pool still holds connections: it registers while the second is cut.
    assert_eq!(
        register(&first, "person", &numbered(4)).await.status(),
        StatusCode::CREATED
    );
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            database.name()
        ))
        .await
        .unwrap();
    eventually(
        "the reconnected gateway read what it missed",
        Duration::from_secs(10),
        || async { served_versions(&second, "person").await == [2, 3, 4] },
    )
    .await;
    eventually(
        "the reconnected gateway is ready again",
        Duration::from_secs(5),
        || async { readiness(&second).await == StatusCode::OK },
    )
    .await;
    first.stop().await;
    second.stop().await;
}

/// `/readyz`'s status on the data plane.
async fn readiness(gateway: &TestGateway) -> StatusCode {
    gateway
        .client
        .get(gateway.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
}

/// Terminates every gateway's change-listener connection to `database` (the sessions whose
/// last statement was the `LISTEN`); returns how many.
async fn terminate_listeners(admin: &tokio_postgres::Client, database: &TestDatabase) -> i64 {
    admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND query LIKE 'LISTEN xgate_registry%'",
            &[&database.name()],
        )
        .await
        .unwrap()
        .get(0)
}

#[test]
fn the_store_url_is_never_printed() {
    let config = ConfigDir::new()
        .main("[store]\nurl = \"postgres://xgate:s3cret-password@127.0.0.1:1/xgate\"")
        .department("registrar", "admin", "");
    config.write_main();
    let loaded = xgate::config::load_main(&config.main_path(), &Default::default()).unwrap();
    let printed = format!("{:?}", loaded.store);
    assert!(printed.contains("xgate"), "{printed}");
    assert!(!printed.contains("s3cret-password"), "{printed}");
    // A URL that is not one is reported without repeating it.
    let config = ConfigDir::new().main("[store]\nurl = \"mysql://root:hunter2@db/x\"");
    config.write_main();
    let problems = xgate::config::load_main(&config.main_path(), &Default::default()).unwrap_err();
    let text = problems.to_string();
    assert!(text.contains("store.url"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "postgres",
    ignore = "no PostgreSQL server answered when the tests were built"
)]
async fn store_import_copies_the_embedded_schemas_once() {
    let database = TestDatabase::new().await;
    let config = ConfigDir::new()
        .schema("person", 1, numbered(1))
        .schema("person", 2, numbered(2))
        .schema("place", 1, json!({"$ref": "urn:xgate:schema:person:2"}))
        .department("registrar", "admin", "");
    config.write_main();
    let import = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_xgate"))
            .args(["store", "import", "--config"])
            .arg(config.main_path())
            .env("XGATE_STORE_URL", &database.url)
            .env_remove("XGATE_CONFIG")
            .output()
            .expect("xgate runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status, text)
    };
    let (status, text) = tokio::task::block_in_place(import);
    assert!(status.success(), "{text}");
    assert!(text.contains("2 schemas with 3 versions"), "{text}");
    // Into an empty store only: a second run changes nothing.
    let (status, text) = tokio::task::block_in_place(import);
    assert!(!status.success(), "{text}");
    assert!(text.contains("holds schemas already"), "{text}");
    assert!(
        !text.contains(&database.url),
        "the URL is never printed: {text}"
    );
    // A gateway on the store serves what was copied, references and all.
    let gateway = ConfigDir::new()
        .store(&database, "gw-1")
        .department("registrar", "admin", "")
        .start()
        .await;
    assert_eq!(served_versions(&gateway, "person").await, [1, 2]);
    assert_eq!(served_versions(&gateway, "place").await, [1]);
    // A deletion the imported reference forbids is refused.
    let refused = gateway
        .client
        .delete(gateway.admin_url("/admin/schemas/person/versions/2"))
        .bearer_auth(token("registrar"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    gateway.stop().await;
}
