//! The schema registry's admin routes (SPEC §4, §6; issue 5): roles, registration and its
//! numbering, idempotence, meta-validation, references, deletion, compatibility modes and the
//! dry run, hot activation, persistence across restarts, and hostile input.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Response, StatusCode};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::*;

const SCHEMA_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// A request to the admin plane as `department` (no credentials when `None`).
fn admin(
    gateway: &TestGateway,
    method: Method,
    path: &str,
    department: Option<&str>,
) -> reqwest::RequestBuilder {
    let request = gateway.client.request(method, gateway.admin_url(path));
    match department {
        Some(department) => request.bearer_auth(token(department)),
        None => request,
    }
}

/// Sends a request without a body to the admin plane as `department`.
async fn send(
    gateway: &TestGateway,
    method: Method,
    path: &str,
    department: Option<&str>,
) -> reqwest::Response {
    admin(gateway, method, path, department)
        .send()
        .await
        .unwrap()
}

/// Registers `document` as the next version of `name` as the admin.
async fn register(gateway: &TestGateway, name: &str, document: &Value) -> reqwest::Response {
    admin(
        gateway,
        Method::POST,
        &format!("/admin/schemas/{name}/versions"),
        Some("admin"),
    )
    .json(document)
    .send()
    .await
    .unwrap()
}

/// Sets the compatibility mode of `name` as the admin.
async fn set_mode(gateway: &TestGateway, name: &str, mode: &str) -> reqwest::Response {
    admin(
        gateway,
        Method::PUT,
        &format!("/admin/schemas/{name}/config"),
        Some("admin"),
    )
    .json(&json!({"compatibility": mode}))
    .send()
    .await
    .unwrap()
}

/// Dry-runs the compatibility check of `document` as the next version of `name`.
async fn dry_run(gateway: &TestGateway, name: &str, document: &Value) -> reqwest::Response {
    admin(
        gateway,
        Method::POST,
        &format!("/admin/schemas/{name}/compatibility"),
        Some("admin"),
    )
    .json(document)
    .send()
    .await
    .unwrap()
}

/// Registers and expects `status`, returning the answered version.
async fn register_expect(
    gateway: &TestGateway,
    name: &str,
    document: &Value,
    status: StatusCode,
) -> u64 {
    let response = register(gateway, name, document).await;
    assert_eq!(response.status(), status, "registering {name}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], name, "{body}");
    body["version"].as_u64().unwrap()
}

/// Validates `record` on the data plane as `tax` against `schema` (with `?version=` if given).
async fn validate(gateway: &TestGateway, schema: &str, record: &Value) -> Value {
    let response = gateway
        .call(Method::POST, &format!("/validate/{schema}"), "tax")
        .json(record)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "validate {schema}");
    response.json().await.unwrap()
}

async fn list(gateway: &TestGateway) -> Value {
    let response = admin(gateway, Method::GET, "/admin/schemas", Some("auditor"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn summary<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|schema| schema["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed in {list}"))
}

/// The standard scenario (provider `market`, `license@1`) with extra `[registry]` lines.
async fn gateway_with(registry_lines: &str) -> (TestGateway, Upstream, Upstream) {
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&echo, &records).main(registry_lines).start().await;
    (gateway, echo, records)
}

fn person(version_note: &str) -> Value {
    json!({
        "$schema": SCHEMA_2020_12,
        "description": version_note,
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "additionalProperties": false
    })
}

#[tokio::test]
async fn every_registry_route_checks_the_role_first() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let document = person("v1");
    let routes: [(Method, &str, bool); 6] = [
        (Method::GET, "/admin/schemas", false),
        (Method::GET, "/admin/schemas/license/versions/latest", false),
        (Method::POST, "/admin/schemas/person/versions", true),
        (Method::POST, "/admin/schemas/person/compatibility", true),
        (Method::PUT, "/admin/schemas/license/config", true),
        (Method::DELETE, "/admin/schemas/license/versions/9", true),
    ];
    for (method, path, writes) in routes {
        let body = if method == Method::PUT {
            json!({"compatibility": "full"})
        } else {
            document.clone()
        };
        for (department, expected) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("tax"), StatusCode::FORBIDDEN),
        ] {
            let response = admin(&gateway, method.clone(), path, department)
                .json(&body)
                .send()
                .await
                .unwrap();
            let (status, problem) = problem(response).await;
            assert_eq!(
                status, expected,
                "{method} {path} as {department:?}: {problem}"
            );
        }
        let auditor = admin(&gateway, method.clone(), path, Some("auditor"))
            .json(&body)
            .send()
            .await
            .unwrap();
        if writes {
            assert_eq!(
                problem(auditor).await.0,
                StatusCode::FORBIDDEN,
                "{method} {path}"
            );
        } else {
            assert_eq!(auditor.status(), StatusCode::OK, "{method} {path}");
        }
    }
    // A listed route with another method: the role first, then 405.
    let path = "/admin/schemas/license/versions";
    assert_eq!(
        problem(send(&gateway, Method::GET, path, None).await)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        problem(send(&gateway, Method::GET, path, Some("tax")).await)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = problem(send(&gateway, Method::PATCH, path, Some("admin")).await).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    // Nothing was written by the refused calls.
    assert!(!gateway.schemas_dir().join("person").exists());
    gateway.stop().await;
}

#[tokio::test]
async fn registered_versions_are_served_at_once_and_after_a_restart() {
    let (gateway, _echo, _records) = gateway_with("default_compatibility = \"none\"").await;
    let v1 = person("v1");
    assert_eq!(
        register_expect(&gateway, "person", &v1, StatusCode::CREATED).await,
        1
    );
    // Equal as JSON (keys in another order, and an `$id` the registry would give it anyway):
    // the existing version, 200.
    let same = json!({
        "additionalProperties": false,
        "properties": {"name": {"type": "string"}},
        "type": "object",
        "description": "v1",
        "$schema": SCHEMA_2020_12,
        "$id": "urn:xgate:schema:person:1"
    });
    assert_eq!(
        register_expect(&gateway, "person", &same, StatusCode::OK).await,
        1
    );
    let mut v2 = person("v2");
    v2["properties"]["age"] = json!({"type": "integer", "minimum": 0});
    assert_eq!(
        register_expect(&gateway, "person", &v2, StatusCode::CREATED).await,
        2
    );
    // Re-registering an older version's document answers that version, not a new one.
    assert_eq!(
        register_expect(&gateway, "person", &v1, StatusCode::OK).await,
        1
    );

    let latest = send(
        &gateway,
        Method::GET,
        "/admin/schemas/person/versions/latest",
        Some("auditor"),
    )
    .await;
    assert_eq!(latest.status(), StatusCode::OK);
    let latest: Value = latest.json().await.unwrap();
    assert_eq!(latest["description"], "v2");
    assert_eq!(latest["$id"], "urn:xgate:schema:person:2");
    let first: Value = send(
        &gateway,
        Method::GET,
        "/admin/schemas/person/versions/1",
        Some("admin"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(first["description"], "v1");
    for missing in [
        "/admin/schemas/person/versions/3",
        "/admin/schemas/nobody/versions/latest",
    ] {
        let response = send(&gateway, Method::GET, missing, Some("admin")).await;
        assert_eq!(
            problem(response).await.0,
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }

    // The data plane validates against the latest at once, and against a version on request.
    let record = json!({"name": "林", "age": 3});
    assert_eq!(validate(&gateway, "person", &record).await["valid"], true);
    assert_eq!(
        validate(&gateway, "person?version=1", &record).await["valid"],
        false
    );

    let files = gateway.schemas_dir().join("person");
    assert!(files.join("1.json").is_file() && files.join("2.json").is_file());
    let restarted = gateway.restart().await;
    let summary_after = list(&restarted).await;
    assert_eq!(
        summary(&summary_after, "person")["versions"],
        json!([1, 2]),
        "{summary_after}"
    );
    assert_eq!(validate(&restarted, "person", &record).await["valid"], true);
    assert_eq!(
        validate(&restarted, "person?version=1", &record).await["valid"],
        false
    );
    assert_eq!(
        register_expect(&restarted, "person", &v2, StatusCode::OK).await,
        2
    );
    restarted.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_registrations_of_one_name_get_versions_1_to_50() {
    let (gateway, _echo, _records) = gateway_with("default_compatibility = \"none\"").await;
    let gateway = Arc::new(gateway);
    let tasks: Vec<_> = (0..50)
        .map(|index| {
            let gateway = gateway.clone();
            tokio::spawn(async move {
                register_expect(
                    &gateway,
                    "burst",
                    &json!({"type": "object", "description": format!("document {index}")}),
                    StatusCode::CREATED,
                )
                .await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=50).collect::<Vec<u64>>());
    let listed = list(&gateway).await;
    assert_eq!(
        summary(&listed, "burst")["versions"],
        json!((1..=50).collect::<Vec<u64>>())
    );
    let folder = gateway.schemas_dir().join("burst");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (1..=50).map(|v| format!("{v}.json")).collect();
    expected.sort();
    assert_eq!(names, expected, "no temporary files are left behind");
    for name in &names {
        let text = std::fs::read(folder.join(name)).unwrap();
        serde_json::from_slice::<Value>(&text).expect("every file is whole JSON");
    }
}

#[tokio::test]
async fn documents_that_are_not_valid_2020_12_schemas_are_refused_with_their_errors() {
    let (gateway, _echo, _records) = gateway_with("default_compatibility = \"none\"").await;
    let cases = [
        (json!({"type": 12}), "/type"),
        (
            json!({"type": "object", "properties": {"a": {"minLength": -1}}}),
            "/properties/a/minLength",
        ),
        (json!(42), ""),
        (json!("a string"), ""),
        (
            json!({"$schema": "https://json-schema.org/draft/2019-09/schema", "type": "object"}),
            "/$schema",
        ),
        // Older drafts are meta-validated by their own meta-schema.
        (
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": 12}),
            "/type",
        ),
        (
            json!({"$schema": "http://json-schema.org/draft-04/schema#", "required": []}),
            "/required",
        ),
        (
            json!({"$id": "urn:xgate:schema:license:1", "type": "object"}),
            "/$id",
        ),
        (json!({"type": "string", "pattern": "("}), ""),
    ];
    for (document, pointer) in cases {
        let response = register(&gateway, "broken", &document).await;
        let (status, body) = problem(response).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{document}: {body}"
        );
        assert_eq!(body["type"], "urn:xgate:problem:invalid-schema", "{body}");
        let errors = body["errors"].as_array().unwrap();
        assert!(!errors.is_empty(), "{body}");
        if !pointer.is_empty() {
            assert!(
                errors.iter().any(|error| error["pointer"] == pointer),
                "{document}: an error at {pointer} in {body}"
            );
        }
        assert!(
            errors
                .iter()
                .all(|error| error["message"].as_str().is_some_and(|m| !m.is_empty()))
        );
    }
    // In Chinese.
    let response = admin(
        &gateway,
        Method::POST,
        "/admin/schemas/broken/versions",
        Some("admin"),
    )
    .header("accept-language", "zh-CN")
    .json(&json!({"type": 12}))
    .send()
    .await
    .unwrap();
    let (_, body) = problem(response).await;
    assert_eq!(body["title"], "数据规范无效");
    assert!(
        body["detail"].as_str().unwrap().contains("broken@1"),
        "{body}"
    );
    // Nothing was registered, and no number was used up.
    assert!(!gateway.schemas_dir().join("broken").exists());
    assert_eq!(
        register_expect(
            &gateway,
            "broken",
            &json!({"type": "object"}),
            StatusCode::CREATED
        )
        .await,
        1
    );
}

#[tokio::test]
async fn references_resolve_from_the_registry_only_and_protect_what_they_reference() {
    let (gateway, _echo, _records) = gateway_with("default_compatibility = \"none\"").await;
    // Unregistered versions, other URLs and files are unresolvable: 422.
    for target in [
        "urn:xgate:schema:address:1",
        "https://example.com/address.json",
        "file:///etc/passwd",
        "http://127.0.0.1:1/x",
    ] {
        let document = json!({"type": "object", "properties": {"home": {"$ref": target}}});
        let (status, body) = problem(register(&gateway, "resident", &document).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{target}: {body}");
        assert_eq!(body["type"], "urn:xgate:problem:invalid-schema");
        assert!(!body.to_string().contains("/etc/passwd") || target.contains("passwd"));
    }
    let address = json!({
        "type": "object",
        "required": ["city"],
        "properties": {"city": {"type": "string", "minLength": 2}}
    });
    assert_eq!(
        register_expect(&gateway, "address", &address, StatusCode::CREATED).await,
        1
    );
    let resident = json!({
        "type": "object",
        "properties": {"home": {"$ref": "urn:xgate:schema:address:1"}}
    });
    assert_eq!(
        register_expect(&gateway, "resident", &resident, StatusCode::CREATED).await,
        1
    );
    let verdict = validate(&gateway, "resident", &json!({"home": {"city": "x"}})).await;
    assert_eq!(verdict["valid"], false, "{verdict}");
    assert_eq!(verdict["errors"][0]["pointer"], "/home/city");
    assert_eq!(
        validate(&gateway, "resident", &json!({"home": {"city": "福州"}})).await["valid"],
        true
    );

    // address@1 is referenced: it stays.
    let response = send(
        &gateway,
        Method::DELETE,
        "/admin/schemas/address/versions/1",
        Some("admin"),
    )
    .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], "urn:xgate:problem:conflict");
    assert!(
        body["detail"].as_str().unwrap().contains("resident@1"),
        "{body}"
    );
    assert!(gateway.schemas_dir().join("address/1.json").is_file());

    // Once the referrer is gone, it can go too; its number is never handed out again.
    for path in [
        "/admin/schemas/resident/versions/1",
        "/admin/schemas/address/versions/1",
    ] {
        let response = send(&gateway, Method::DELETE, path, Some("admin")).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{path}");
    }
    assert!(!gateway.schemas_dir().join("address/1.json").exists());
    let gone = send(
        &gateway,
        Method::GET,
        "/admin/schemas/address/versions/1",
        Some("admin"),
    )
    .await;
    assert_eq!(problem(gone).await.0, StatusCode::NOT_FOUND);
    let again = send(
        &gateway,
        Method::DELETE,
        "/admin/schemas/address/versions/1",
        Some("admin"),
    )
    .await;
    assert_eq!(problem(again).await.0, StatusCode::NOT_FOUND);
    // A reference to the deleted version no longer resolves.
    let (status, _) = problem(register(&gateway, "resident", &resident).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        register_expect(&gateway, "address", &address, StatusCode::CREATED).await,
        2
    );
    let mut address_3 = address.clone();
    address_3["description"] = json!("third");
    assert_eq!(
        register_expect(&gateway, "address", &address_3, StatusCode::CREATED).await,
        3
    );
    let response = send(
        &gateway,
        Method::DELETE,
        "/admin/schemas/address/versions/3",
        Some("admin"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // After a restart the deleted latest number (3) is still used up.
    let restarted = gateway.restart().await;
    let listed = list(&restarted).await;
    assert_eq!(
        summary(&listed, "address")["versions"],
        json!([2]),
        "{listed}"
    );
    assert_eq!(summary(&listed, "address")["highest_version"], 3);
    let mut address_4 = address.clone();
    address_4["description"] = json!("fourth");
    assert_eq!(
        register_expect(&restarted, "address", &address_4, StatusCode::CREATED).await,
        4
    );
    restarted.stop().await;
}

#[tokio::test]
async fn versions_the_configuration_pins_or_follows_cannot_be_deleted() {
    // `register` pins license@1; `licenses` follows `license` (latest).
    let (gateway, _echo, _records) = gateway_with("default_compatibility = \"none\"").await;
    let delete = |version: u32| {
        admin(
            &gateway,
            Method::DELETE,
            &format!("/admin/schemas/license/versions/{version}"),
            Some("admin"),
        )
        .header("accept-language", "zh")
        .send()
    };
    let (status, body) = problem(delete(1).await.unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["title"], "操作冲突");
    assert!(
        body["detail"].as_str().unwrap().contains("market/register"),
        "{body}"
    );

    let mut v2 = license_schema();
    v2["description"] = json!("v2");
    assert_eq!(
        register_expect(&gateway, "license", &v2, StatusCode::CREATED).await,
        2
    );
    // v2 is neither pinned nor the last version: it can go, and `licenses` follows v1 again.
    assert_eq!(delete(2).await.unwrap().status(), StatusCode::NO_CONTENT);
    // v1 is now the last version and still pinned.
    assert_eq!(
        problem(delete(1).await.unwrap()).await.0,
        StatusCode::CONFLICT
    );
    let response = gateway
        .call(Method::GET, "/exchange/market/licenses", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn incompatible_versions_are_refused_with_the_direction_and_the_difference() {
    // The default mode is backward.
    let (gateway, _echo, _records) = standard_gateway().await;
    let narrower = {
        let mut schema = license_schema();
        schema["properties"]["name"]["maxLength"] = json!(10);
        schema
    };
    let response = register(&gateway, "license", &narrower).await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], "urn:xgate:problem:incompatible-schema");
    let reasons = body["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    assert_eq!(reasons[0]["direction"], "backward");
    assert_eq!(reasons[0]["version"], 1);
    assert_eq!(reasons[0]["verdict"], "incompatible", "{body}");
    // The difference is the schema of the records that stop being accepted: names of 11 to 100
    // characters.
    let difference = &body["difference"];
    assert!(difference.is_object(), "{body}");
    assert_eq!(difference, &reasons[0]["difference"]);
    let validator = jsonschema::validator_for(difference).expect("the difference is a schema");
    let mut long_name = license();
    long_name["name"] = json!("福州闽江数据科技有限公司福州闽江数据科技有限公司");
    let errors: Vec<String> = validator
        .iter_errors(&long_name)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{difference}: {errors:?}");
    let mut short_name = license();
    short_name["name"] = json!("闽江数据");
    assert!(!validator.is_valid(&short_name), "{difference}");
    // An example record, accepted by version 1 and refused by the new version.
    let example = &reasons[0]["example"];
    assert!(
        example["name"]
            .as_str()
            .is_some_and(|name| name.chars().count() > 10),
        "{body}"
    );

    // The dry run says the same and registers nothing.
    let dry = dry_run(&gateway, "license", &narrower).await;
    assert_eq!(dry.status(), StatusCode::OK);
    let dry: Value = dry.json().await.unwrap();
    assert_eq!(dry["compatible"], false);
    assert_eq!(dry["reasons"], body["reasons"]);
    assert_eq!(dry["difference"], body["difference"]);
    assert_eq!(
        summary(&list(&gateway).await, "license")["versions"],
        json!([1])
    );

    // A wider version passes the dry run and registers; a forward check would refuse it.
    let wider = {
        let mut schema = license_schema();
        schema["properties"]["name"]["maxLength"] = json!(200);
        schema
    };
    let dry: Value = dry_run(&gateway, "license", &wider)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        dry,
        json!({"compatible": true, "reasons": [], "difference": null})
    );
    let set = |mode: &'static str| {
        admin(
            &gateway,
            Method::PUT,
            "/admin/schemas/license/config",
            Some("admin"),
        )
        .json(&json!({ "compatibility": mode }))
        .send()
    };
    let response = set("full").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"name": "license", "compatibility": "full"})
    );
    let (status, body) = problem(register(&gateway, "license", &wider).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["reasons"][0]["direction"], "forward", "{body}");
    assert_eq!(set("backward").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        register_expect(&gateway, "license", &wider, StatusCode::CREATED).await,
        2
    );
    // The mode is stored with the schema and survives a restart.
    assert_eq!(
        set("backward_transitive").await.unwrap().status(),
        StatusCode::OK
    );
    let text =
        std::fs::read_to_string(gateway.schemas_dir().join("license/settings.toml")).unwrap();
    assert!(
        text.contains("compatibility = \"backward_transitive\""),
        "{text}"
    );
    let restarted = gateway.restart().await;
    assert_eq!(
        summary(&list(&restarted).await, "license")["compatibility"],
        "backward_transitive"
    );
    // Back to v1's bound breaks v2's records: refused against v2 (the transitive check also
    // covers v1, which accepts them).
    let (status, body) = problem(register(&restarted, "license", &narrower).await).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["direction"] == "backward"),
        "{body}"
    );
    restarted.stop().await;
}

#[tokio::test]
async fn the_mode_route_refuses_unknown_modes() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let put = |path: &'static str, body: Value| {
        admin(&gateway, Method::PUT, path, Some("admin"))
            .json(&body)
            .send()
    };
    for body in [
        json!({"compatibility": "sideways"}),
        json!({"compatibility": 5}),
        json!({"mode": "full"}),
        json!({"compatibility": "full", "extra": true}),
        json!(["full"]),
    ] {
        let (status, problem_body) = problem(
            put("/admin/schemas/license/config", body.clone())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem_body}");
        assert_eq!(problem_body["type"], "urn:xgate:problem:invalid-parameter");
    }
    let oversized = admin(
        &gateway,
        Method::PUT,
        "/admin/schemas/license/config",
        Some("admin"),
    )
    .header("content-type", "application/json")
    .body(format!("{{\"compatibility\": \"{}\"}}", "x".repeat(10_000)))
    .send()
    .await
    .unwrap();
    assert_eq!(problem(oversized).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // The example schema's own settings were not touched by any refusal.
    assert!(!gateway.schemas_dir().join("license/settings.toml").exists());
}

/// An upstream whose answers wait until the test releases them, telling the test when a
/// request has arrived.
async fn held_upstream(arrived: Arc<Notify>, release: Arc<Notify>) -> Upstream {
    Upstream::start(Router::new().fallback(move || {
        let arrived = arrived.clone();
        let release = release.clone();
        async move {
            arrived.notify_one();
            release.notified().await;
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from(license().to_string()))
                .unwrap()
        }
    }))
    .await
}

#[tokio::test]
async fn a_new_version_applies_at_once_to_services_following_the_name_but_not_to_pinned_ones_or_requests_in_flight()
 {
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let records = held_upstream(arrived.clone(), release.clone()).await;
    let echo = Upstream::echo().await;
    let gateway = standard(&echo, &records)
        .main("default_compatibility = \"none\"")
        .start()
        .await;
    // In flight: `licenses` follows `license` (v1 now); its answer is held at the upstream.
    let in_flight = {
        let request = gateway.call(Method::GET, "/exchange/market/licenses/1", "tax");
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    arrived.notified().await;
    // v2 no longer accepts the upstream's record: `name` is limited to 3 characters.
    let mut v2 = license_schema();
    v2["properties"]["name"]["maxLength"] = json!(3);
    assert_eq!(
        register_expect(&gateway, "license", &v2, StatusCode::CREATED).await,
        2
    );
    release.notify_one();
    let finished = in_flight.await.unwrap();
    assert_eq!(
        finished.status(),
        StatusCode::OK,
        "a request finishes on the version it started with"
    );

    // The next call validates the answer against v2 at once.
    let next = {
        let request = gateway.call(Method::GET, "/exchange/market/licenses/1", "tax");
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    arrived.notified().await;
    release.notify_one();
    let (status, body) = problem(next.await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["type"], "urn:xgate:problem:upstream-invalid-response");
    assert!(
        body["detail"].as_str().unwrap().contains("license@2"),
        "{body}"
    );

    // `register` pins license@1: a long name still passes its request validation.
    let pinned = {
        let request = gateway
            .call(Method::POST, "/exchange/market/register", "tax")
            .json(&license());
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    arrived.notified().await;
    release.notify_one();
    let pinned = pinned.await.unwrap();
    // The request passed (v1); the answer follows `license` (v2) and is refused as a response.
    let (status, body) = problem(pinned).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(
        records.call_count(),
        3,
        "the pinned request reached the upstream"
    );
}

#[tokio::test]
async fn hostile_and_malformed_registrations_get_clear_problems_and_the_gateway_keeps_serving() {
    let (gateway, _echo, _records) = gateway_with("default_compatibility = \"none\"").await;
    let post_raw = |path: String, content_type: &'static str, body: Vec<u8>| {
        admin(&gateway, Method::POST, &path, Some("admin"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // A raw slash in the name is another route: 404 after the role check.
    let response = post_raw(
        "/admin/schemas/a/b/versions".into(),
        "application/json",
        b"{}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(problem(response).await.0, StatusCode::NOT_FOUND);
    for version in ["0", "01", "-1", "abc", "99999999999"] {
        let response = send(
            &gateway,
            Method::GET,
            &format!("/admin/schemas/license/versions/{version}"),
            Some("admin"),
        )
        .await;
        assert_eq!(
            problem(response).await.0,
            StatusCode::BAD_REQUEST,
            "{version}"
        );
    }
    let response = send(
        &gateway,
        Method::DELETE,
        "/admin/schemas/license/versions/latest",
        Some("admin"),
    )
    .await;
    assert_eq!(problem(response).await.0, StatusCode::BAD_REQUEST);

    let path = || "/admin/schemas/hostile/versions".to_owned();
    // Not JSON, not UTF-8, the wrong media type, nested past the parser's limit.
    let (status, body) = problem(
        post_raw(path(), "application/json", b"{\"type\":".to_vec())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("urn:xgate:problem:malformed-json")
        )
    );
    let (status, _) = problem(
        post_raw(path(), "application/json", vec![0xff, 0xfe, b'{'])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = problem(
        post_raw(path(), "text/plain", b"{}".to_vec())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let deep = format!("{}{}", "{\"not\":".repeat(5000), "}".repeat(5000));
    let (status, _) = problem(
        post_raw(path(), "application/json", deep.into_bytes())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // 10 MiB: past the documented 1 MiB limit, refused before it is read.
    let huge = format!(
        "{{\"type\":\"object\",\"description\":\"{}\"}}",
        "x".repeat(10 * 1024 * 1024)
    );
    let (status, body) = problem(
        post_raw(path(), "application/json", huge.into_bytes())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("1048576"),
        "{body}"
    );

    // A `$ref` cycle with nothing else in it.
    let cycle = json!({
        "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
        "$ref": "#/$defs/a"
    });
    // It asserts nothing, so it is registered and accepts every record; it never hangs.
    assert_eq!(
        register_expect(&gateway, "cycle", &cycle, StatusCode::CREATED).await,
        1
    );
    let verdict = validate(&gateway, "cycle", &json!({"any": "thing"})).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    // A cycle with an assertion on it holds it at every step.
    let asserting = json!({
        "$defs": {"a": {"$ref": "#/$defs/b", "type": "object"}, "b": {"$ref": "#/$defs/a"}},
        "$ref": "#/$defs/a"
    });
    assert_eq!(
        register_expect(&gateway, "cycle", &asserting, StatusCode::CREATED).await,
        2
    );
    assert_eq!(
        validate(&gateway, "cycle", &json!([])).await["valid"],
        false
    );
    assert_eq!(validate(&gateway, "cycle", &json!({})).await["valid"], true);
    // A cycle through a property: only infinitely nested records would match; it answers too.
    let nested_cycle = json!({
        "type": "object", "required": ["next"],
        "properties": {"next": {"$ref": "#"}}
    });
    assert_eq!(
        register_expect(&gateway, "chain", &nested_cycle, StatusCode::CREATED).await,
        1
    );
    let mut record = json!({});
    for _ in 0..50 {
        record = json!({ "next": record });
    }
    assert_eq!(validate(&gateway, "chain", &record).await["valid"], false);

    // Patterns built to backtrack catastrophically: the regex engine's backtracking is bounded,
    // so validation answers (a violation) instead of holding a thread.
    let evil = json!({
        "type": "object",
        "properties": {
            "plain": {"type": "string", "pattern": "^(a+)+$"},
            "fancy": {"type": "string", "pattern": "^((?=a)a+)+b$"},
            "backref": {"type": "string", "pattern": "^(\\w+\\s?)*\\1!$"}
        }
    });
    assert_eq!(
        register_expect(&gateway, "evil", &evil, StatusCode::CREATED).await,
        1
    );
    let attack = format!("{}!", "a".repeat(5000));
    let verdict = validate(
        &gateway,
        "evil",
        &json!({"plain": attack, "fancy": attack, "backref": format!("{} x", "a".repeat(5000))}),
    )
    .await;
    assert_eq!(verdict["valid"], false, "{verdict}");
    assert!(
        verdict["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["keyword"] == "pattern"),
        "{verdict}"
    );
    // A match the engine cannot finish is undecided; the library reports only what every
    // outcome of it agrees on, so alone it is reported as cut off by the limit.
    let verdict = validate(&gateway, "evil", &json!({"fancy": attack})).await;
    assert_eq!(verdict["valid"], false, "{verdict}");
    assert_eq!(verdict["errors"][0]["pointer"], "/fancy", "{verdict}");
    assert!(
        verdict["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("backtracking limit"),
        "{verdict}"
    );

    // And the gateway keeps serving everyone else.
    let response = gateway
        .call(Method::GET, "/exchange/market/licenses", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        validate(&gateway, "license", &license()).await["valid"],
        true
    );
    assert_eq!(
        register_expect(
            &gateway,
            "after",
            &json!({"type": "null"}),
            StatusCode::CREATED
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_registrations_leaves_every_file_whole_and_a_restart_serves_every_acknowledged_version()
 {
    let config = ConfigDir::new()
        .main("default_compatibility = \"none\"")
        .department("admin", "admin", "")
        .department("auditor", "auditor", "")
        .department("tax", "department", "");
    config.write_main();
    let client = client();
    let mut acknowledged: Vec<(u64, Value)> = Vec::new();
    // Three crashes, each in the middle of concurrent registrations.
    for cycle in 0..3 {
        let (mut child, base) = start_binary(&config, &client).await;
        let (acks, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let client = client.clone();
                let base = base.clone();
                let acks = acks.clone();
                tokio::spawn(async move {
                    for index in 0.. {
                        let document = json!({
                            "type": "object",
                            "description": format!("cycle {cycle} writer {writer} document {index}"),
                            "properties": {"n": {"const": index}}
                        });
                        let response = client
                            .post(format!("{base}/admin/schemas/crash/versions"))
                            .bearer_auth(token("admin"))
                            .json(&document)
                            .send()
                            .await;
                        let Ok(response) = response else { return };
                        if response.status() != StatusCode::CREATED {
                            return;
                        }
                        let Ok(body) = response.json::<Value>().await else { return };
                        let version = body["version"].as_u64().unwrap();
                        if acks.send((version, document)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        drop(acks);
        // Kill once a dozen registrations were answered, while the writers keep going.
        while acknowledged.len() < 12 * (cycle + 1) {
            acknowledged.push(receiver.recv().await.expect("registrations are answered"));
        }
        // `Child::kill` is SIGKILL on Unix: no handler runs, nothing is flushed.
        child.0.kill().expect("SIGKILL");
        child.0.wait().unwrap();
        for writer in writers {
            writer.await.unwrap();
        }
        while let Ok(ack) = receiver.try_recv() {
            acknowledged.push(ack);
        }
        // Every version file is whole JSON; only temporaries (never loaded) may be partial.
        let folder = config.path("schemas/crash");
        for entry in std::fs::read_dir(&folder).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let bytes = std::fs::read(folder.join(&name)).unwrap();
            if name.ends_with(".json") {
                serde_json::from_slice::<Value>(&bytes)
                    .unwrap_or_else(|error| panic!("{name} is not whole after kill -9: {error}"));
            }
        }
    }
    // A restart serves every acknowledged version, with the document that was acknowledged.
    let gateway = config.start().await;
    let mut versions: Vec<u64> = acknowledged.iter().map(|(version, _)| *version).collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        acknowledged.len(),
        "no number was given twice"
    );
    for (version, document) in &acknowledged {
        let stored: Value = send(
            &gateway,
            Method::GET,
            &format!("/admin/schemas/crash/versions/{version}"),
            Some("admin"),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(
            stored["description"], document["description"],
            "version {version}"
        );
    }
    // The numbering goes on after the highest version on disk.
    let listed = list(&gateway).await;
    let highest = summary(&listed, "crash")["highest_version"]
        .as_u64()
        .unwrap();
    let next = register_expect(
        &gateway,
        "crash",
        &json!({"type": "null"}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(next, highest + 1);
    gateway.stop().await;
}

#[tokio::test]
async fn every_registry_route_refuses_bad_names_versions_and_bodies_with_problems() {
    let (gateway, _echo, _records) = gateway_with("default_compatibility = \"none\"").await;
    let long = "a".repeat(200);
    // Dots are resolved by the URL before the request is sent: another route, 404.
    let names = [
        ("Person", StatusCode::BAD_REQUEST),
        (long.as_str(), StatusCode::BAD_REQUEST),
        ("a%2Fb", StatusCode::BAD_REQUEST),
        ("a_b", StatusCode::BAD_REQUEST),
        ("-a", StatusCode::BAD_REQUEST),
        ("税务", StatusCode::BAD_REQUEST),
        ("..", StatusCode::NOT_FOUND),
        ("%2E%2E", StatusCode::NOT_FOUND),
    ];
    let routes = |name: &str| {
        [
            (Method::GET, format!("/admin/schemas/{name}/versions/1")),
            (Method::POST, format!("/admin/schemas/{name}/versions")),
            (Method::POST, format!("/admin/schemas/{name}/compatibility")),
            (Method::PUT, format!("/admin/schemas/{name}/config")),
            (Method::DELETE, format!("/admin/schemas/{name}/versions/1")),
        ]
    };
    for (name, expected) in names {
        for (method, path) in routes(name) {
            let response = admin(&gateway, method.clone(), &path, Some("admin"))
                .header("accept-language", "zh-CN,zh;q=0.9")
                .json(&json!({"compatibility": "full"}))
                .send()
                .await
                .unwrap();
            let (status, body) = problem(response).await;
            assert_eq!(status, expected, "{method} {path}: {body}");
            if status == StatusCode::BAD_REQUEST {
                assert_eq!(
                    body["type"], "urn:xgate:problem:invalid-parameter",
                    "{body}"
                );
                assert_eq!(body["title"], "名称无效", "{body}");
                assert!(
                    body["detail"].as_str().unwrap().contains("数据规范名称"),
                    "{body}"
                );
            }
        }
    }
    let english = problem(
        send(
            &gateway,
            Method::GET,
            "/admin/schemas/Person/versions/1",
            Some("admin"),
        )
        .await,
    )
    .await
    .1;
    assert_eq!(english["title"], "Invalid name");
    assert!(
        english["detail"].as_str().unwrap().contains("schema name"),
        "{english}"
    );

    for version in ["0", "01", "-1", "abc", "1.5", "99999999999"] {
        for method in [Method::GET, Method::DELETE] {
            let path = format!("/admin/schemas/license/versions/{version}");
            let (status, body) =
                problem(send(&gateway, method.clone(), &path, Some("admin")).await).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {body}");
            assert!(
                body["detail"].as_str().unwrap().contains("schema version"),
                "{body}"
            );
        }
    }
    let (status, _) = problem(
        send(
            &gateway,
            Method::DELETE,
            "/admin/schemas/license/versions/latest",
            Some("admin"),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The three routes with bodies: malformed, not UTF-8, the wrong media type, oversized, the
    // wrong JSON type.
    let body_routes = [
        (
            Method::POST,
            "/admin/schemas/person/versions",
            10 * 1024 * 1024,
        ),
        (
            Method::POST,
            "/admin/schemas/license/compatibility",
            10 * 1024 * 1024,
        ),
        (Method::PUT, "/admin/schemas/license/config", 10 * 1024),
    ];
    for (method, path, oversized) in body_routes {
        let raw = |content_type: &'static str, bytes: Vec<u8>| {
            admin(&gateway, method.clone(), path, Some("admin"))
                .header("content-type", content_type)
                .body(bytes)
                .send()
        };
        let cases: [(&str, &'static str, Vec<u8>, StatusCode, &str); 5] = [
            (
                "cut off",
                "application/json",
                b"{\"type\":".to_vec(),
                StatusCode::BAD_REQUEST,
                "malformed-json",
            ),
            (
                "not UTF-8",
                "application/json",
                vec![b'"', 0xff, b'"'],
                StatusCode::BAD_REQUEST,
                "malformed-json",
            ),
            (
                "not JSON at all",
                "application/json",
                b"type: object".to_vec(),
                StatusCode::BAD_REQUEST,
                "malformed-json",
            ),
            (
                "the wrong media type",
                "text/plain",
                b"{}".to_vec(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
            ),
            (
                "oversized",
                "application/json",
                {
                    let mut bytes = b"{\"description\": \"".to_vec();
                    bytes.resize(oversized, b'x');
                    bytes.extend_from_slice(b"\"}");
                    bytes
                },
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
            ),
        ];
        for (what, content_type, bytes, expected, problem_type) in cases {
            let (status, body) = problem(raw(content_type, bytes).await.unwrap()).await;
            assert_eq!(status, expected, "{method} {path} {what}: {body}");
            assert_eq!(
                body["type"],
                format!("urn:xgate:problem:{problem_type}"),
                "{what}"
            );
        }
        // The wrong JSON type: not a schema (422) or not a mode object (400).
        let (status, body) =
            problem(raw("application/json", b"[1, 2]".to_vec()).await.unwrap()).await;
        let expected = if method == Method::PUT {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        assert_eq!(status, expected, "{method} {path}: {body}");
    }
    // Nothing above was stored.
    assert!(!gateway.schemas_dir().join("person").exists());
    assert!(!gateway.schemas_dir().join("license/settings.toml").exists());
    assert_eq!(
        summary(&list(&gateway).await, "license")["versions"],
        json!([1])
    );
}

#[tokio::test]
async fn a_change_that_cannot_be_proven_safe_is_refused_with_its_reason_in_both_languages() {
    let (gateway, _echo, _records) = gateway_with("default_compatibility = \"full\"").await;
    // A draft-7 `dependencies` beside `unevaluatedProperties`: beyond the canonical form.
    let unmodelled = json!({
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "dependencies": {"a": ["b"]},
        "unevaluatedProperties": false
    });
    assert_eq!(
        register_expect(&gateway, "opaque", &unmodelled, StatusCode::CREATED).await,
        1
    );
    let mut described = unmodelled.clone();
    described["description"] = json!("the same records");
    for (language, words) in [("en", "canonical form"), ("zh", "规范形式")] {
        let response = admin(
            &gateway,
            Method::POST,
            "/admin/schemas/opaque/versions",
            Some("admin"),
        )
        .header("accept-language", language)
        .json(&described)
        .send()
        .await
        .unwrap();
        let (status, body) = problem(response).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let reasons = body["reasons"].as_array().unwrap();
        assert_eq!(reasons.len(), 2, "both directions of full: {body}");
        for reason in reasons {
            assert_eq!(reason["verdict"], "unproven", "{body}");
            assert!(reason["difference"].is_null() && reason.get("example").is_none());
            assert!(
                reason["message"].as_str().unwrap().contains(words),
                "{language}: {body}"
            );
        }
        assert!(body["difference"].is_null(), "{body}");
    }
    // The admin who accepts the risk registers it under mode `none`.
    let response = set_mode(&gateway, "opaque", "none").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        register_expect(&gateway, "opaque", &described, StatusCode::CREATED).await,
        2
    );
}

/// GETs a version's document from the admin plane.
async fn served(gateway: &TestGateway, name: &str, version: u32) -> Value {
    let response = send(
        gateway,
        Method::GET,
        &format!("/admin/schemas/{name}/versions/{version}"),
        Some("admin"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_served_version_can_be_edited_and_registered_again_as_it_is() {
    // Issue 16: GET a version, edit it, POST it: its `$id` names the old version's URN.
    let (gateway, _echo, _records) = gateway_with("default_compatibility = \"backward\"").await;
    register_expect(&gateway, "person", &person("v1"), StatusCode::CREATED).await;
    let first = served(&gateway, "person", 1).await;
    assert_eq!(first["$id"], "urn:xgate:schema:person:1");
    // Re-posted unchanged: it is version 1.
    assert_eq!(
        register_expect(&gateway, "person", &first, StatusCode::OK).await,
        1
    );
    let mut edited = first.clone();
    edited["properties"]["age"] = json!({"type": "integer"});
    assert_eq!(
        register_expect(&gateway, "person", &edited, StatusCode::CREATED).await,
        2
    );
    let second = served(&gateway, "person", 2).await;
    assert_eq!(second["$id"], "urn:xgate:schema:person:2");
    assert_eq!(second["properties"]["age"], json!({"type": "integer"}));
    // The edited document again (still naming version 1), and version 2 as served: version 2.
    for again in [&edited, &second] {
        assert_eq!(
            register_expect(&gateway, "person", again, StatusCode::OK).await,
            2
        );
    }
    // An edit of version 1 naming version 2 is a new version too.
    let mut third = second.clone();
    third["description"] = json!("v3");
    assert_eq!(
        register_expect(&gateway, "person", &third, StatusCode::CREATED).await,
        3
    );
    // Another schema's URN is still refused.
    let mut foreign = first.clone();
    foreign["$id"] = json!("urn:xgate:schema:license:1");
    foreign["description"] = json!("foreign");
    let (status, body) = problem(register(&gateway, "person", &foreign).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/$id", "{body}");
    // The latest version validates with the edit.
    let latest = validate(&gateway, "person", &json!({"name": "A", "age": 3})).await;
    assert_eq!(latest["valid"], true, "{latest}");
    gateway.stop().await;
}

#[tokio::test]
async fn a_mode_set_before_the_first_version_applies_from_the_second_and_survives_a_restart() {
    let (gateway, _echo, _records) = gateway_with("default_compatibility = \"none\"").await;
    let response = set_mode(&gateway, "person", "forward").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"name": "person", "compatibility": "forward"}));
    let listed = list(&gateway).await;
    assert_eq!(
        summary(&listed, "person"),
        &json!({
            "name": "person",
            "versions": [],
            "latest": null,
            "highest_version": null,
            "compatibility": "forward"
        })
    );
    let settings =
        std::fs::read_to_string(gateway.schemas_dir().join("person/settings.toml")).unwrap();
    assert!(
        settings.contains("compatibility = \"forward\""),
        "{settings}"
    );
    // Nothing to read yet.
    let latest = send(
        &gateway,
        Method::GET,
        "/admin/schemas/person/versions/latest",
        Some("admin"),
    )
    .await;
    assert_eq!(latest.status(), StatusCode::NOT_FOUND);

    let gateway = gateway.restart().await;
    assert_eq!(
        summary(&list(&gateway).await, "person")["compatibility"],
        "forward"
    );
    // The first version is only compiled; the second is held to `forward`.
    register_expect(&gateway, "person", &person("v1"), StatusCode::CREATED).await;
    let mut looser = person("v2");
    looser["additionalProperties"] = json!(true);
    let (status, body) = problem(register(&gateway, "person", &looser).await).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["type"], "urn:xgate:problem:incompatible-schema",
        "{body}"
    );
    let mut tighter = person("v2");
    tighter["required"] = json!(["name"]);
    assert_eq!(
        register_expect(&gateway, "person", &tighter, StatusCode::CREATED).await,
        2
    );
    let listed = list(&gateway).await;
    assert_eq!(summary(&listed, "person")["versions"], json!([1, 2]));
    assert_eq!(summary(&listed, "person")["compatibility"], "forward");
    gateway.stop().await;
}

const DRAFT_07: &str = "http://json-schema.org/draft-07/schema#";

#[tokio::test]
async fn older_drafts_are_registered_served_as_submitted_validated_by_their_draft_and_compared() {
    // Issue 16: draft-04, -06 and -07 documents next to 2020-12 ones.
    let (gateway, _echo, _records) = gateway_with("default_compatibility = \"backward\"").await;
    let v1 = json!({
        "$schema": DRAFT_07,
        "type": "object",
        "properties": {"zip": {"$ref": "#/definitions/zip"}},
        "dependencies": {"zip": ["city"]},
        "definitions": {"zip": {"type": "string", "pattern": "^[0-9]{6}$"}}
    });
    register_expect(&gateway, "address", &v1, StatusCode::CREATED).await;
    let mut expected = v1.clone();
    expected["$id"] = json!("urn:xgate:schema:address:1");
    assert_eq!(served(&gateway, "address", 1).await, expected);
    // `dependencies` asserts: draft-07 rules, not 2020-12's (where it is an unknown keyword).
    let refused = validate(&gateway, "address", &json!({"zip": "100000"})).await;
    assert_eq!(refused["valid"], false, "{refused}");
    let accepted = validate(&gateway, "address", &json!({"zip": "100000", "city": "B"})).await;
    assert_eq!(accepted["valid"], true, "{accepted}");

    // The same records in 2020-12: backward compatible.
    let v2 = json!({
        "type": "object",
        "properties": {"zip": {"$ref": "#/$defs/zip"}},
        "dependentRequired": {"zip": ["city"]},
        "$defs": {"zip": {"type": "string", "pattern": "^[0-9]{6}$"}}
    });
    register_expect(&gateway, "address", &v2, StatusCode::CREATED).await;
    // A draft-07 version after it that requires more: refused, with the direction.
    let v3 = json!({
        "$schema": DRAFT_07,
        "type": "object",
        "properties": {"zip": {"type": "string", "pattern": "^[0-9]{6}$"}},
        "dependencies": {"zip": ["city", "street"]}
    });
    let (status, body) = problem(register(&gateway, "address", &v3).await).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["type"], "urn:xgate:problem:incompatible-schema",
        "{body}"
    );
    // A draft-07 version that loosens: registered.
    let v3 = json!({
        "$schema": DRAFT_07,
        "type": "object",
        "properties": {"zip": {"type": "string"}}
    });
    register_expect(&gateway, "address", &v3, StatusCode::CREATED).await;

    // A 2020-12 schema referring to the draft-07 version reads it by draft-07 rules.
    let wrapper = json!({"$ref": "urn:xgate:schema:address:1"});
    register_expect(&gateway, "wrapper", &wrapper, StatusCode::CREATED).await;
    let refused = validate(&gateway, "wrapper", &json!({"zip": "100000"})).await;
    assert_eq!(refused["valid"], false, "{refused}");

    // Draft-04: boolean exclusive limits.
    let amount = json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "number",
        "maximum": 10,
        "exclusiveMaximum": true
    });
    register_expect(&gateway, "amount", &amount, StatusCode::CREATED).await;
    assert_eq!(
        validate(&gateway, "amount", &json!(10)).await["valid"],
        false
    );
    assert_eq!(
        validate(&gateway, "amount", &json!(9.5)).await["valid"],
        true
    );
    // Served with draft-04's own identifier keyword, `id`.
    let mut expected_amount = amount.clone();
    expected_amount["id"] = json!("urn:xgate:schema:amount:1");
    assert_eq!(served(&gateway, "amount", 1).await, expected_amount);

    // After a restart: the same documents and the same rules.
    let gateway = gateway.restart().await;
    assert_eq!(served(&gateway, "address", 1).await, expected);
    let refused = validate(&gateway, "wrapper", &json!({"zip": "100000"})).await;
    assert_eq!(refused["valid"], false, "{refused}");
    assert_eq!(
        validate(&gateway, "amount", &json!(10)).await["valid"],
        false
    );
    // The served draft-07 document re-posted unchanged is version 1.
    assert_eq!(
        register_expect(&gateway, "address", &expected, StatusCode::OK).await,
        1
    );
    gateway.stop().await;
}

/// The one reason of a refused registration of `document` as the next version of `name`.
async fn refused_reason(gateway: &TestGateway, name: &str, document: &Value) -> Value {
    let (status, body) = problem(register(gateway, name, document).await).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let reasons = body["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{body}");
    reasons[0].clone()
}

#[tokio::test]
async fn equivalent_shapes_are_proven_compatible_and_near_misses_refused_with_an_example() {
    let (gateway, _echo, _records) = standard_gateway().await;
    // A property written out with the schema additionalProperties already gave it.
    let open = |extra: Value| {
        let mut properties = json!({"a": {"type": "integer"}});
        if let (Some(properties), Value::Object(extra)) = (properties.as_object_mut(), extra) {
            properties.extend(extra);
        }
        json!({"$schema": SCHEMA_2020_12, "type": "object", "properties": properties,
               "additionalProperties": {"type": "string"}})
    };
    register_expect(&gateway, "profile", &open(json!({})), StatusCode::CREATED).await;
    assert_eq!(
        set_mode(&gateway, "profile", "full").await.status(),
        StatusCode::OK
    );
    let written_out = open(json!({"b": {"type": "string"}}));
    assert_eq!(
        register_expect(&gateway, "profile", &written_out, StatusCode::CREATED).await,
        2
    );
    let stricter = open(json!({"b": {"type": "string"}, "c": {"type": "string", "maxLength": 3}}));
    let reason = refused_reason(&gateway, "profile", &stricter).await;
    assert_eq!(reason["direction"], "backward", "{reason}");
    assert_eq!(reason["verdict"], "incompatible", "{reason}");
    assert!(
        reason["example"]["c"]
            .as_str()
            .is_some_and(|c| c.chars().count() > 3),
        "{reason}"
    );

    // One level of a recursive definition written out.
    let node = json!({"type": "object", "required": ["value"],
        "properties": {"value": {"type": "integer"}, "next": {"$ref": "#/$defs/n"}}});
    let folded = json!({"$schema": SCHEMA_2020_12, "$defs": {"n": node}, "$ref": "#/$defs/n"});
    let mut unfolded = node.clone();
    unfolded["$schema"] = json!(SCHEMA_2020_12);
    unfolded["$defs"] = json!({"n": node});
    register_expect(&gateway, "chain", &folded, StatusCode::CREATED).await;
    assert_eq!(
        set_mode(&gateway, "chain", "full").await.status(),
        StatusCode::OK
    );
    register_expect(&gateway, "chain", &unfolded, StatusCode::CREATED).await;
    let mut differing = unfolded.clone();
    differing["properties"]["value"]["minimum"] = json!(0);
    let reason = refused_reason(&gateway, "chain", &differing).await;
    assert_eq!(reason["verdict"], "incompatible", "{reason}");
    assert!(
        reason["example"]["value"]
            .as_i64()
            .is_some_and(|value| value < 0),
        "{reason}"
    );

    // prefixItems of different lengths: a narrowed first element is proven, not "unproven".
    let pair = |first: Value| {
        json!({"$schema": SCHEMA_2020_12, "type": "array",
               "prefixItems": [first, {"type": "string"}], "items": {"type": "string"}})
    };
    let short = json!({"$schema": SCHEMA_2020_12, "type": "array",
                       "prefixItems": [{"type": "integer"}], "items": {"type": "string"}});
    register_expect(&gateway, "pair", &short, StatusCode::CREATED).await;
    assert_eq!(
        set_mode(&gateway, "pair", "full").await.status(),
        StatusCode::OK
    );
    register_expect(
        &gateway,
        "pair",
        &pair(json!({"type": "integer"})),
        StatusCode::CREATED,
    )
    .await;
    let reason = refused_reason(
        &gateway,
        "pair",
        &pair(json!({"type": "integer", "minimum": 0})),
    )
    .await;
    assert_eq!(reason["verdict"], "incompatible", "{reason}");
}
