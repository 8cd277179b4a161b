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

/// What `gateway` lists of schema `name` in `GET /admin/schemas` (`Null` when it lists none).
async fn served_schema(gateway: &TestGateway, name: &str) -> Value {
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
        .and_then(|schemas| schemas.iter().find(|schema| schema["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The versions `gateway` serves of `name` (empty when it knows none).
async fn served_versions(gateway: &TestGateway, name: &str) -> Vec<u64> {
    served_schema(gateway, name).await["versions"]
        .as_array()
        .map(|versions| versions.iter().filter_map(Value::as_u64).collect())
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
    served_schema(gateway, name).await["compatibility"]
        .as_str()
        .map(str::to_owned)
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
    let migrations: Vec<i32> = client
        .query("SELECT version, applied_by FROM xgate_migrations", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: Vec<i32> = xgate::store::migrate::MIGRATIONS
        .iter()
        .map(|migration| migration.version)
        .collect();
    assert_eq!(migrations, expected, "each migration, applied once");
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
    database.allow_connections(false).await;
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
    database.allow_connections(true).await;
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
    // `xgate check` reads the schemas from the store, and reports a store it cannot reach.
    let check = |url: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_xgate"))
            .args(["check", "--config"])
            .arg(config.main_path())
            .env("XGATE_STORE_URL", url)
            .env_remove("XGATE_CONFIG")
            .output()
            .expect("xgate runs");
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (status, text) = tokio::task::block_in_place(|| check(&database.url));
    assert!(status.success(), "{text}");
    assert!(text.contains("2 schemas with 3 versions"), "{text}");
    let unreachable = "postgres://xgate:s3cret@127.0.0.1:1/xgate";
    let (status, text) = tokio::task::block_in_place(|| check(unreachable));
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("store.url") && text.contains("cannot be reached"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "postgres",
    ignore = "no PostgreSQL server answered when the tests were built"
)]
async fn exchanges_on_two_gateways_make_one_trail_that_both_serve_and_verify() {
    let database = TestDatabase::new().await;
    let echo = Upstream::echo().await;
    let records = Upstream::echo().await;
    let first = standard(&echo, &records).store(&database, "gw-1");
    import_schemas(&first).await;
    let first = first.start().await;
    let second = standard(&echo, &records)
        .store(&database, "gw-2")
        .start()
        .await;
    for gateway in [&first, &second, &first] {
        let answer = gateway
            .call(reqwest::Method::GET, "/exchange/market/echo/1", "tax")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
    for gateway in [&first, &second] {
        let page: Value = gateway
            .client
            .get(gateway.admin_url("/audit/exchanges"))
            .bearer_auth(token("auditor"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entries = page["entries"].as_array().unwrap();
        let mut sequences: Vec<u64> = entries
            .iter()
            .map(|e| e["sequence"].as_u64().unwrap())
            .collect();
        sequences.sort_unstable();
        assert_eq!(sequences, [1, 2, 3], "one chain, no gap: {page}");
        let mut gateways: Vec<&str> = entries
            .iter()
            .map(|e| e["gateway"].as_str().unwrap())
            .collect();
        gateways.sort_unstable();
        assert_eq!(gateways, ["gw-1", "gw-1", "gw-2"], "{page}");
        let verified: Value = gateway
            .client
            .get(gateway.admin_url("/audit/verify"))
            .bearer_auth(token("auditor"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(verified["ok"], true, "{verified}");
        assert_eq!(verified["count"], 3, "{verified}");
    }
    first.stop().await;
    second.stop().await;
}

/// What one call of the load got: its request id, status, problem type and `Retry-After`.
#[derive(Debug, Clone)]
struct Answer {
    id: String,
    status: StatusCode,
    problem: Option<String>,
    retry_after: Option<String>,
}

/// Callers that each send exchanges to one of `targets` in turn (caller `n` to target
/// `n % targets.len()`) until `stop` is set, telling every answer to `answers`. A call whose
/// connection fails (its gateway was killed) moves that caller to the next target.
fn load(
    targets: Vec<String>,
    callers: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    answers: tokio::sync::mpsc::UnboundedSender<Answer>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..callers)
        .map(|caller| {
            let targets = targets.clone();
            let stop = stop.clone();
            let answers = answers.clone();
            let client = client();
            tokio::spawn(async move {
                let mut target = caller % targets.len();
                for index in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let id = format!("load-{caller}-{index}");
                    let sent = client
                        .get(format!("{}/exchange/market/echo/1", targets[target]))
                        .bearer_auth(token("tax"))
                        .header("x-request-id", &id)
                        .send()
                        .await;
                    let Ok(response) = sent else {
                        target = (target + 1) % targets.len();
                        continue;
                    };
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .map(|value| value.to_str().unwrap_or("").to_owned());
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    let problem = body["type"].as_str().map(str::to_owned);
                    if answers
                        .send(Answer {
                            id,
                            status,
                            problem,
                            retry_after,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            })
        })
        .collect()
}

/// The load's next answer; a load that stops answering for 30 s fails the test.
async fn next(answers: &mut tokio::sync::mpsc::UnboundedReceiver<Answer>) -> Answer {
    tokio::time::timeout(Duration::from_secs(30), answers.recv())
        .await
        .expect("the load goes on being answered")
        .expect("the callers run")
}

/// The request ids the store's trail holds.
async fn recorded_request_ids(database: &TestDatabase) -> BTreeSet<String> {
    database
        .connect()
        .await
        .query("SELECT request_id FROM audit_entries", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// `/audit/verify` of `admin` (an admin plane's base URL) as the auditor.
async fn verified(admin: &str) -> Value {
    client()
        .get(format!("{admin}/audit/verify"))
        .bearer_auth(token("auditor"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "postgres",
    ignore = "no PostgreSQL server answered when the tests were built"
)]
async fn while_the_database_is_away_calls_are_refused_and_afterwards_every_answer_is_in_the_trail()
{
    let database = TestDatabase::new().await;
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let config = standard(&echo, &records)
        .store(&database, "gw-1")
        .department("registrar", "admin", "");
    import_schemas(&config).await;
    let gateway = config.start().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sender, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let callers = load(vec![gateway.url("")], 4, stop.clone(), sender);
    let mut seen: Vec<Answer> = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while seen
            .iter()
            .filter(|answer| answer.status == StatusCode::OK)
            .count()
            < 50
        {
            seen.push(next(&mut answers).await);
        }
    })
    .await
    .expect("the gateway serves on the store");

    // The database goes away: it refuses connections and every session of it is ended.
    let server = database.connect_server().await;
    database.allow_connections(false).await;
    server
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&database.name()],
        )
        .await
        .unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let answer = next(&mut answers).await;
            seen.push(answer.clone());
            if answer.status == StatusCode::SERVICE_UNAVAILABLE {
                break answer;
            }
        }
    })
    .await
    .expect("calls are refused while the database is away");
    assert_eq!(
        refused.problem.as_deref(),
        Some("urn:xgate:problem:store-unavailable"),
        "{refused:?}"
    );
    assert_eq!(refused.retry_after.as_deref(), Some("1"), "{refused:?}");
    eventually(
        "/readyz says not ready",
        Duration::from_secs(10),
        || async { readiness(&gateway).await == StatusCode::SERVICE_UNAVAILABLE },
    )
    .await;
    // Schemas are read from memory meanwhile.
    let schema = gateway
        .client
        .get(gateway.admin_url("/admin/schemas/license/versions/1"))
        .bearer_auth(token("auditor"))
        .send()
        .await
        .unwrap();
    assert_eq!(schema.status(), StatusCode::OK);
    // A registration cannot be made meanwhile, and says why.
    let registration = gateway
        .client
        .post(gateway.admin_url("/admin/schemas/visit/versions"))
        .bearer_auth(token("registrar"))
        .json(&numbered(1))
        .send()
        .await
        .unwrap();
    assert_eq!(registration.headers()["retry-after"], "1");
    let (status, body) = problem(registration).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body["type"], "urn:xgate:problem:store-unavailable",
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("shared store"),
        "{body}"
    );

    // Back: the gateway serves again without a restart.
    database.allow_connections(true).await;
    let served_again = tokio::time::timeout(Duration::from_secs(60), async {
        let mut served_after = 0;
        while served_after < 50 {
            let answer = next(&mut answers).await;
            if answer.status == StatusCode::OK {
                served_after += 1;
            }
            seen.push(answer);
        }
    })
    .await;
    assert!(
        served_again.is_ok(),
        "the gateway serves again once the database is back"
    );
    eventually(
        "/readyz says ready again",
        Duration::from_secs(10),
        || async { readiness(&gateway).await == StatusCode::OK },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    while let Ok(answer) = answers.try_recv() {
        seen.push(answer);
    }
    // Nothing unaudited was answered: every 200 is in the trail, and the trail verifies.
    let recorded = recorded_request_ids(&database).await;
    let missing: Vec<&String> = seen
        .iter()
        .filter(|answer| answer.status == StatusCode::OK)
        .map(|answer| &answer.id)
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "answered but not in the trail: {missing:?}"
    );
    let verification = verified(&gateway.admin_url("")).await;
    assert_eq!(verification["ok"], true, "{verification}");
    let statuses: BTreeSet<u16> = seen.iter().map(|answer| answer.status.as_u16()).collect();
    println!("statuses seen: {statuses:?}; {} answers", seen.len());
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "postgres",
    ignore = "no PostgreSQL server answered when the tests were built"
)]
async fn kill_9_of_one_gateway_of_three_under_load_loses_no_answered_exchange() {
    let database = TestDatabase::new().await;
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let configs: Vec<ConfigDir> = (1..=3)
        .map(|n| standard(&echo, &records).store(&database, &format!("gw-{n}")))
        .collect();
    import_schemas(&configs[0]).await;
    let http = client();
    let mut processes = Vec::new();
    for config in &configs {
        config.write_main();
        processes.push(start_binary_planes(config, &http).await);
    }
    let targets: Vec<String> = processes.iter().map(|(_, data, _)| data.clone()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sender, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let callers = load(targets, 9, stop.clone(), sender);
    let mut seen: Vec<Answer> = Vec::new();
    while seen.len() < 300 {
        seen.push(next(&mut answers).await);
    }
    // SIGKILL of the second gateway while its callers' exchanges are in flight.
    let (mut killed, _, _) = processes.remove(1);
    killed.0.kill().expect("SIGKILL");
    killed.0.wait().unwrap();
    // The other two keep serving (the callers of the killed one move to them).
    let before = seen.len();
    while seen.len() < before + 300 {
        seen.push(next(&mut answers).await);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    while let Ok(answer) = answers.try_recv() {
        seen.push(answer);
    }
    let after: Vec<&Answer> = seen[before..].iter().collect();
    assert!(
        after.iter().all(|answer| answer.status == StatusCode::OK),
        "the others served every call: {:?}",
        after.iter().find(|answer| answer.status != StatusCode::OK)
    );
    let recorded = recorded_request_ids(&database).await;
    let missing: Vec<&String> = seen
        .iter()
        .filter(|answer| answer.status == StatusCode::OK)
        .map(|answer| &answer.id)
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "answered but not in the trail: {missing:?}"
    );
    let verification = verified(&processes[0].2).await;
    assert_eq!(verification["ok"], true, "{verification}");
    assert_eq!(
        verification["count"].as_u64().unwrap() as usize,
        recorded.len()
    );
}
