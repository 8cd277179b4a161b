//! Masking (SPEC §15) through real gateways: per consumer, after projection and before the
//! consumer's format, on exchanges and certificate lookups; the cached certificate stays clear;
//! configuration problems reported by `xgate check`. The kinds' edge cases are the core's
//! fixtures (`crates/xgate-core/tests/fixtures/masking.json`).

use http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// A household record: a head and members, each with a resident id and a name.
fn household_schema() -> Value {
    let person = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["resident_id", "name"],
        "properties": {
            "resident_id": {"type": "string", "format": "cn-resident-id"},
            "name": {"type": "string", "minLength": 1},
            "phone": {"type": "string"}
        }
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "required": ["resident_id", "name", "members"],
        "properties": {
            "resident_id": {"type": "string", "format": "cn-resident-id"},
            "name": {"type": "string", "minLength": 1},
            "phone": {"type": "string"},
            "address": {"type": "string"},
            "members": {"type": "array", "items": {"$ref": "#/$defs/person"}}
        },
        "$defs": {"person": person}
    })
}

const HEAD_ID: &str = "11010519491231002X";
const MEMBER_ID: &str = "440524188001010014";

fn household() -> Value {
    json!({
        "resident_id": HEAD_ID,
        "name": "欧阳娜娜",
        "phone": "13812345678",
        "address": "福州市鼓楼区",
        "members": [
            {"resident_id": MEMBER_ID, "name": "张三"},
            {"resident_id": HEAD_ID, "name": "李四", "phone": "13987654321"}
        ]
    })
}

/// Police provide households and issue identity cards (the same record); `civil` gets masks
/// on both, `hr` masks in its own layout, `tax` the clear record.
async fn masking_gateway(upstream: &Upstream) -> TestGateway {
    let police = format!(
        r#"
[services.households]
upstream = "{url}"
methods = ["GET"]
response_schema = "household"
consumers = ["civil", "tax", "hr"]
[services.households.fields]
hr = ["/resident_id", "/name", "/members"]
[services.households.masks]
civil = {{ "/resident_id" = "resident-id", "/name" = "name", "/phone" = "keep:3-4", "/address" = "redact", "/members/*/resident_id" = "resident-id", "/members/*/name" = "name" }}
hr = {{ "/resident_id" = "keep:0-4", "/members/*/name" = "name" }}

[certificates.identity-card]
lookup = "{lookup}"
schema = "household"
id_format = "cn-resident-id"
consumers = ["civil", "tax", "hr"]
[certificates.identity-card.masks]
civil = {{ "/resident_id" = "resident-id", "/name" = "name", "/members/*/resident_id" = "redact" }}
hr = {{ "/name" = "keep:1-1" }}
"#,
        url = upstream.url("/households"),
        lookup = upstream.url("/cards/{id}"),
    );
    ConfigDir::new()
        .schema("household", 1, household_schema())
        .department("police", "department", &police)
        .department("civil", "department", "")
        .department("tax", "department", "")
        .department(
            "hr",
            "department",
            r#"
[formats.household]
unmapped = "drop"
fields = [
  { own = "/SFZH", shared = "/resident_id" },
  { own = "/XM", shared = "/name" },
  { own = "/CY/*/SFZH", shared = "/members/*/resident_id" },
  { own = "/CY/*/XM", shared = "/members/*/name" },
]
"#,
        )
        .start()
        .await
}

async fn json_of(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn each_consumer_gets_its_own_masks_on_an_exchange() {
    let upstream = Upstream::fixed(StatusCode::OK, household()).await;
    let gateway = masking_gateway(&upstream).await;
    let get = |department| {
        gateway
            .call(Method::GET, "/exchange/police/households/1", department)
            .send()
    };

    // Masked characters, never bytes; array elements through `*`; `redact`.
    assert_eq!(
        json_of(get("civil").await.unwrap()).await,
        json!({
            "resident_id": "110105********002X",
            "name": "欧***",
            "phone": "138****5678",
            "address": "***",
            "members": [
                {"resident_id": "440524********0014", "name": "张*"},
                {"resident_id": "110105********002X", "name": "李*", "phone": "13987654321"}
            ]
        })
    );
    // Another consumer of the same service: the clear record.
    assert_eq!(json_of(get("tax").await.unwrap()).await, household());
    // Projected first, masked, then in the consumer's own field names.
    assert_eq!(
        json_of(get("hr").await.unwrap()).await,
        json!({
            "SFZH": "**************002X",
            "XM": "欧阳娜娜",
            "CY": [
                {"SFZH": MEMBER_ID, "XM": "张*"},
                {"SFZH": HEAD_ID, "XM": "李*"}
            ]
        })
    );
    gateway.stop().await;
}

async fn look_up(gateway: &TestGateway, department: &str) -> reqwest::Response {
    gateway
        .call(
            Method::GET,
            &format!("/certificates/identity-card/{HEAD_ID}"),
            department,
        )
        .header("Xgate-Purpose", "check")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_certificate_lookup_is_masked_per_consumer_and_the_cache_keeps_it_clear() {
    let upstream = Upstream::fixed(StatusCode::OK, household()).await;
    let gateway = masking_gateway(&upstream).await;

    let civil = look_up(&gateway, "civil").await;
    assert_eq!(civil.headers()["xgate-cache"], "miss");
    let mut expected = household();
    expected["resident_id"] = json!("110105********002X");
    expected["name"] = json!("欧***");
    expected["members"][0]["resident_id"] = json!("***");
    expected["members"][1]["resident_id"] = json!("***");
    assert_eq!(json_of(civil).await, expected);

    // The entry civil's answer came from is unmasked: tax gets the issuer's record from it.
    let tax = look_up(&gateway, "tax").await;
    assert_eq!(tax.headers()["xgate-cache"], "hit");
    assert_eq!(json_of(tax).await, household());

    // Masked, then in the consumer's own layout.
    let hr = look_up(&gateway, "hr").await;
    assert_eq!(hr.headers()["xgate-cache"], "hit");
    assert_eq!(
        json_of(hr).await,
        json!({
            "SFZH": HEAD_ID,
            "XM": "欧**娜",
            "CY": [{"SFZH": MEMBER_ID, "XM": "张三"}, {"SFZH": HEAD_ID, "XM": "李四"}]
        })
    );
    assert_eq!(upstream.call_count(), 1);
    gateway.stop().await;
}

#[test]
fn xgate_check_reports_every_mask_problem() {
    let config = ConfigDir::new()
        .schema("household", 1, household_schema())
        .department(
            "police",
            "department",
            r#"
[services.households]
upstream = "http://127.0.0.1:9/households"
methods = ["GET"]
response_schema = "household"
consumers = ["civil"]
[services.households.masks]
civil = { "/nmae" = "name", "/members/*/phone/0" = "redact", "/name" = "hash", "/phone" = "keep:3", "resident_id" = "resident-id", "/members/*/name" = "name" }
tax = { "/name" = "name" }
"Not_An_Id" = { "/name" = "name" }

[services.plain]
upstream = "http://127.0.0.1:9/plain"
methods = ["GET"]
consumers = ["civil"]
[services.plain.masks]
civil = { "/name" = "name" }

[certificates.identity-card]
lookup = "http://127.0.0.1:9/cards/{id}"
schema = "household"
id_format = "cn-resident-id"
consumers = ["civil"]
[certificates.identity-card.masks]
civil = { "/members/0/resident_idd" = "redact", "/members/0/resident_id" = "keep:2-2" }
"#,
        )
        .department("civil", "department", "")
        .department("tax", "department", "");
    config.write_main();
    let (status, text) = run_binary("check", &config, &[]);
    assert!(!status.success(), "{text}");
    let expected = [
        (
            r#"services.households.masks.civil."/nmae""#,
            "household@1 cannot hold a value at /nmae",
        ),
        (
            r#"services.households.masks.civil."/members/*/phone/0""#,
            "cannot hold a value at /members/*/phone/0",
        ),
        (
            r#"services.households.masks.civil."/name""#,
            "unknown mask kind \"hash\"",
        ),
        (
            r#"services.households.masks.civil."/phone""#,
            "keep:F-L takes two whole numbers",
        ),
        (
            r#"services.households.masks.civil."resident_id""#,
            "starts with '/'",
        ),
        (
            "services.households.masks.tax",
            "tax is not one of the consumers",
        ),
        (
            "services.households.masks.Not_An_Id",
            "is not a department id",
        ),
        ("services.plain.masks", "masks need a response_schema"),
        (
            r#"certificates.identity-card.masks.civil."/members/0/resident_idd""#,
            "cannot hold a value at /members/0/resident_idd",
        ),
    ];
    for (key, reason) in expected {
        assert!(
            text.lines().any(|line| line.contains("police.toml")
                && line.contains(&format!(": {key}: "))
                && line.contains(reason)),
            "missing {key}: ...{reason}... in\n{text}"
        );
    }
    // The pointers the schema holds are not reported.
    for fine in [r#"."/members/*/name""#, r#"."/members/0/resident_id""#] {
        assert!(!text.contains(fine), "{fine} reported in\n{text}");
    }
    assert!(
        text.contains(&format!("{} problem(s) found", expected.len())),
        "{text}"
    );
}
