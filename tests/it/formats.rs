//! Formats end to end (SPEC §3 phases 5-12, §7): real gateways translating between departments
//! whose systems speak different layouts of one business licence, with real upstream servers
//! that record exactly what they received.
//!
//! - `market` (市场监管, provider): TYSHXYDM/QYMC/CLRQ (YYYYMMDD)/ZCZB (万元)/DJZT (codes)/FDDBR/GDXX;
//! - `tax` (税务, consumer): nsrsbh/nsrmc/djrq (YYYY-MM-DD)/zczb (text, 元)/nsrzt (codes)/fddbr/gdxx;
//! - `civil` (民政, consumer): Chinese field names, projected to three shared fields;
//! - `hr` (人社, consumer) and `plain` (provider) declare no format: their layout is the shared one.

use http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// The shared business licence of these tests.
fn licence_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["uscc", "name", "status"],
        "additionalProperties": false,
        "properties": {
            "uscc": {"type": "string", "format": "cn-uscc"},
            "name": {"type": "string", "minLength": 1},
            "status": {"enum": ["active", "revoked", "cancelled"]},
            "established_on": {"type": "string", "format": "date"},
            "registered_capital_yuan": {"type": "number", "minimum": 0},
            "legal_representative": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "name": {"type": "string"},
                    "resident_id": {"type": "string", "format": "cn-resident-id"}
                }
            },
            "shareholders": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": false,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "contribution_yuan": {"type": "number", "minimum": 0}
                    }
                }
            }
        }
    })
}

const MARKET_FORMAT: &str = r#"
[formats.licence]
unmapped = "reject"
fields = [
  { own = "/TYSHXYDM", shared = "/uscc" },
  { own = "/QYMC", shared = "/name" },
  { own = "/CLRQ", shared = "/established_on", convert = "date:%Y%m%d" },
  { own = "/ZCZB", shared = "/registered_capital_yuan", convert = "scale:10000" },
  { own = "/DJZT", shared = "/status", codes = { "1" = "active", "2" = "revoked", "3" = "cancelled" } },
  { own = "/FDDBR/XM", shared = "/legal_representative/name" },
  { own = "/FDDBR/ZJHM", shared = "/legal_representative/resident_id" },
  { own = "/GDXX/*/GDMC", shared = "/shareholders/*/name" },
  { own = "/GDXX/*/CZE", shared = "/shareholders/*/contribution_yuan", convert = "scale:10000" },
]
"#;

const TAX_FORMAT: &str = r#"
[formats.licence]
unmapped = "reject"
fields = [
  { own = "/nsrsbh", shared = "/uscc" },
  { own = "/nsrmc", shared = "/name" },
  { own = "/djrq", shared = "/established_on", convert = "date:%Y-%m-%d" },
  { own = "/zczb", shared = "/registered_capital_yuan", convert = "number" },
  { own = "/nsrzt", shared = "/status", codes = { "03" = "active", "07" = "revoked", "08" = "cancelled" } },
  { own = "/fddbr/xm", shared = "/legal_representative/name" },
  { own = "/fddbr/sfzjhm", shared = "/legal_representative/resident_id" },
  { own = "/gdxx/*/gdmc", shared = "/shareholders/*/name" },
  { own = "/gdxx/*/tzje", shared = "/shareholders/*/contribution_yuan", convert = "number" },
]
"#;

const CIVIL_FORMAT: &str = r#"
[formats.licence]
unmapped = "reject"
fields = [
  { own = "/统一社会信用代码", shared = "/uscc" },
  { own = "/企业名称", shared = "/name" },
  { own = "/登记状态", shared = "/status", codes = { "存续" = "active", "吊销" = "revoked", "注销" = "cancelled" } },
  { own = "/注册资本", shared = "/registered_capital_yuan" },
  { own = "/股东/*/名称", shared = "/shareholders/*/name" },
  { own = "/股东/*/出资额", shared = "/shareholders/*/contribution_yuan" },
]
"#;

/// A licence in market regulation's layout.
fn market_licence() -> Value {
    json!({
        "TYSHXYDM": "91350100M000100Y43",
        "QYMC": "福州闽江数据科技有限公司",
        "CLRQ": "20160818",
        "ZCZB": 123.45,
        "DJZT": "1",
        "FDDBR": {"XM": "林志远", "ZJHM": "11010519491231002X"},
        "GDXX": [{"GDMC": "林志远", "CZE": 100}, {"GDMC": "陈海燕", "CZE": 23.45}]
    })
}

/// The same licence in the shared layout.
fn shared_licence() -> Value {
    json!({
        "uscc": "91350100M000100Y43",
        "name": "福州闽江数据科技有限公司",
        "established_on": "2016-08-18",
        "registered_capital_yuan": 1234500,
        "status": "active",
        "legal_representative": {"name": "林志远", "resident_id": "11010519491231002X"},
        "shareholders": [
            {"name": "林志远", "contribution_yuan": 1000000},
            {"name": "陈海燕", "contribution_yuan": 234500}
        ]
    })
}

/// The same licence in the tax bureau's layout.
fn tax_licence() -> Value {
    json!({
        "nsrsbh": "91350100M000100Y43",
        "nsrmc": "福州闽江数据科技有限公司",
        "djrq": "2016-08-18",
        "zczb": "1234500",
        "nsrzt": "03",
        "fddbr": {"xm": "林志远", "sfzjhm": "11010519491231002X"},
        "gdxx": [{"gdmc": "林志远", "tzje": "1000000"}, {"gdmc": "陈海燕", "tzje": "234500"}]
    })
}

/// An upstream that keeps the bodies it receives and answers `status` with `answer`, on the
/// licences path.
struct Recorder(Recording);

impl Recorder {
    async fn start(status: StatusCode, answer: &[u8]) -> Recorder {
        Recorder(Recording::start(status, answer).await)
    }

    async fn json(status: StatusCode, answer: &Value) -> Recorder {
        Recorder::start(status, answer.to_string().as_bytes()).await
    }

    fn url(&self) -> String {
        self.0.url("/licences")
    }

    /// The bodies received so far.
    fn received(&self) -> Vec<Vec<u8>> {
        self.0.bodies()
    }

    /// The one body received, as JSON.
    fn received_json(&self) -> Value {
        let bodies = self.received();
        assert_eq!(bodies.len(), 1, "expected exactly one call");
        serde_json::from_slice(&bodies[0]).expect("the upstream received JSON")
    }
}

/// The upstreams of one scenario.
struct Upstreams {
    /// market's `register` (POST licence, answers a licence in market's layout).
    register: Recorder,
    /// market's `licences` (GET, answers a licence in market's layout).
    licences: Recorder,
    /// market's `broken` (GET, answers a licence that does not translate).
    broken: Recorder,
    /// plain's `register` (POST licence, answers in the shared layout).
    plain: Recorder,
}

impl Upstreams {
    async fn start() -> Upstreams {
        let mut answered = market_licence();
        answered["DJZT"] = json!("2");
        let mut broken = market_licence();
        broken["QYMC"] = json!("秘密科技有限公司");
        broken["CLRQ"] = json!("20191345");
        broken["DJZT"] = json!("9");
        let mut plain_answer = shared_licence();
        plain_answer["status"] = json!("cancelled");
        Upstreams {
            register: Recorder::json(StatusCode::CREATED, &answered).await,
            licences: Recorder::json(StatusCode::OK, &market_licence()).await,
            broken: Recorder::json(StatusCode::OK, &broken).await,
            plain: Recorder::json(StatusCode::OK, &plain_answer).await,
        }
    }
}

/// The gateway of these tests over `upstreams`.
async fn gateway(upstreams: &Upstreams) -> TestGateway {
    let services = format!(
        r#"
[services.register]
upstream = "{register}"
methods = ["POST"]
request_schema = "licence"
response_schema = "licence"
consumers = ["tax", "hr"]

[services.licences]
upstream = "{licences}"
methods = ["GET"]
response_schema = "licence"
consumers = ["tax", "civil"]
[services.licences.fields]
civil = ["/uscc", "/name", "/shareholders/*/name"]

[services.broken]
upstream = "{broken}"
methods = ["GET"]
response_schema = "licence"
consumers = ["tax"]
"#,
        register = upstreams.register.url(),
        licences = upstreams.licences.url(),
        broken = upstreams.broken.url(),
    );
    let plain = format!(
        r#"
[services.register]
upstream = "{}"
methods = ["POST"]
request_schema = "licence"
response_schema = "licence"
consumers = ["tax", "hr"]
"#,
        upstreams.plain.url()
    );
    ConfigDir::new()
        .schema("licence", 1, licence_schema())
        .department(
            "market",
            "department",
            &format!("{services}\n{MARKET_FORMAT}"),
        )
        .department("plain", "department", &plain)
        .department("tax", "department", TAX_FORMAT)
        .department("civil", "department", CIVIL_FORMAT)
        .department("hr", "department", "")
        .start()
        .await
}

async fn post(
    gateway: &TestGateway,
    path: &str,
    consumer: &str,
    body: &Value,
) -> reqwest::Response {
    gateway
        .call(Method::POST, path, consumer)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_record_travels_from_the_consumers_layout_into_the_providers_and_back() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;

    let response = post(&gateway, "/exchange/market/register", "tax", &tax_licence()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let answer: Value = response.json().await.unwrap();

    // The provider's system receives its own layout, exactly: names, 万元 amounts as numbers
    // (integers where integral), YYYYMMDD, its own status code.
    assert_eq!(upstreams.register.received_json(), market_licence());
    // Its answer (status code "2" = revoked) reaches the tax bureau in the tax layout.
    let mut expected = tax_licence();
    expected["nsrzt"] = json!("07");
    assert_eq!(answer, expected);

    // The reverse direction through the same gateway: market regulation's licence read by tax.
    let response = gateway
        .call(
            Method::GET,
            "/exchange/market/licences/91350100M000100Y43",
            "tax",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), tax_licence());
    gateway.stop().await;
}

#[tokio::test]
async fn violations_are_reported_at_the_consumers_own_fields() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    let mut record = tax_licence();
    record["gdxx"][1]["gdmc"] = json!("");
    record["fddbr"]["sfzjhm"] = json!("110105194912310021");
    record.as_object_mut().unwrap().remove("nsrmc");

    for (language, required_message) in [
        ("en", "\"nsrmc\" is a required property"),
        ("zh-CN", "缺少必填字段 \"nsrmc\""),
    ] {
        let response = gateway
            .call(Method::POST, "/exchange/market/register", "tax")
            .header("accept-language", language)
            .json(&record)
            .send()
            .await
            .unwrap();
        let (status, document) = problem(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{document}");
        assert_eq!(document["type"], "urn:xgate:problem:schema-validation");
        let errors = document["errors"].as_array().unwrap();
        let at = |pointer: &str| {
            errors
                .iter()
                .find(|error| error["pointer"] == pointer)
                .unwrap_or_else(|| panic!("no error at {pointer}: {document}"))
        };
        let name = at("/gdxx/1/gdmc");
        assert_eq!(name["shared_pointer"], "/shareholders/1/name");
        assert_eq!(name["keyword"], "minLength");
        let resident_id = at("/fddbr/sfzjhm");
        assert_eq!(
            resident_id["shared_pointer"],
            "/legal_representative/resident_id"
        );
        assert_eq!(resident_id["keyword"], "format");
        let missing = at("/nsrmc");
        assert_eq!(missing["shared_pointer"], "/name");
        assert_eq!(missing["keyword"], "required");
        assert_eq!(missing["message"], required_message);
        assert_eq!(errors.len(), 3, "{document}");
        // No shared-layout pointer is shown as if it were the caller's.
        assert!(
            errors
                .iter()
                .all(|error| !error["pointer"].as_str().unwrap().contains("shareholders")),
            "{document}"
        );
        if language == "zh-CN" {
            assert!(
                has_chinese(document["title"].as_str().unwrap()),
                "{document}"
            );
            assert!(has_chinese(name["message"].as_str().unwrap()), "{document}");
        } else {
            assert_eq!(document["title"], "Record does not match schema");
        }
    }
    assert!(upstreams.register.received().is_empty());
    gateway.stop().await;
}

#[tokio::test]
async fn a_value_that_does_not_convert_is_refused_at_its_own_pointer_with_its_rule() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    let mut record = tax_licence();
    record["zczb"] = json!("+1234500");
    record["nsrzt"] = json!("99");
    record["gdxx"][0]["tzje"] = json!(1000000);

    let (status, document) =
        problem(post(&gateway, "/exchange/market/register", "tax", &record).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{document}");
    assert_eq!(document["type"], "urn:xgate:problem:translation");
    assert_eq!(document["title"], "Record does not translate");
    let errors = document["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{document}");
    assert_eq!(
        errors[0],
        json!({
            "pointer": "/zczb",
            "shared_pointer": "/registered_capital_yuan",
            "keyword": "translation",
            "rule": "/zczb ↔ /registered_capital_yuan (number)",
            "message": "cannot convert by /zczb ↔ /registered_capital_yuan (number): does not match the pattern JSON number"
        })
    );
    assert_eq!(errors[1]["pointer"], "/nsrzt");
    assert_eq!(errors[1]["rule"], "/nsrzt ↔ /status (codes)");
    assert!(
        errors[1]["message"]
            .as_str()
            .unwrap()
            .ends_with("not a value of the code table")
    );
    assert_eq!(errors[2]["pointer"], "/gdxx/0/tzje");
    assert_eq!(
        errors[2]["shared_pointer"],
        "/shareholders/0/contribution_yuan"
    );
    assert!(
        errors[2]["message"]
            .as_str()
            .unwrap()
            .ends_with("expected a string")
    );

    // The same in Chinese.
    let response = gateway
        .call(Method::POST, "/exchange/market/register", "tax")
        .header("accept-language", "zh")
        .json(&record)
        .send()
        .await
        .unwrap();
    let (_, document) = problem(response).await;
    assert_eq!(document["title"], "记录无法转换");
    assert_eq!(
        document["errors"][0]["message"],
        "无法按规则 /zczb ↔ /registered_capital_yuan (number) 转换：不符合格式 JSON number"
    );

    // Unmapped fields under `reject` are listed by their own names, wherever they are.
    let mut record = tax_licence();
    record["bz"] = json!("备注");
    record["gdxx"][1]["cgbl"] = json!(0.4);
    record["fddbr"]["xb"] = json!("男");
    let (status, document) =
        problem(post(&gateway, "/exchange/market/register", "tax", &record).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{document}");
    assert_eq!(document["type"], "urn:xgate:problem:translation");
    let mut unmapped: Vec<(&str, &str)> = document["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| {
            (
                error["pointer"].as_str().unwrap(),
                error["keyword"].as_str().unwrap(),
            )
        })
        .collect();
    unmapped.sort();
    assert_eq!(
        unmapped,
        [
            ("/bz", "unmapped"),
            ("/fddbr/xb", "unmapped"),
            ("/gdxx/1/cgbl", "unmapped")
        ]
    );

    // Nothing was forwarded, and the gateway keeps serving.
    assert!(upstreams.register.received().is_empty());
    let response = post(&gateway, "/exchange/market/register", "tax", &tax_licence()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    gateway.stop().await;
}

#[tokio::test]
async fn projection_keeps_only_the_listed_shared_fields_before_the_consumers_layout() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    let response = gateway
        .call(
            Method::GET,
            "/exchange/market/licences/91350100M000100Y43",
            "civil",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // civil's format maps the capital, status and contributions too, but the service lists
    // only /uscc, /name and /shareholders/*/name for it: nothing else reaches its layout.
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({
            "统一社会信用代码": "91350100M000100Y43",
            "企业名称": "福州闽江数据科技有限公司",
            "股东": [{"名称": "林志远"}, {"名称": "陈海燕"}]
        })
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_provider_answer_that_does_not_translate_is_a_502_without_its_values() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    let response = gateway
        .call(
            Method::GET,
            "/exchange/market/broken/91350100M000100Y43",
            "tax",
        )
        .send()
        .await
        .unwrap();
    let (status, document) = problem(response).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{document}");
    assert_eq!(document["type"], "urn:xgate:problem:translation");
    assert!(document.get("errors").is_none(), "{document}");
    let text = document.to_string();
    for value in [
        "秘密科技有限公司",
        "20191345",
        "91350100M000100Y43",
        "林志远",
    ] {
        assert!(!text.contains(value), "{value} leaked: {text}");
    }
    assert_eq!(upstreams.broken.received().len(), 1);
    gateway.stop().await;
}

#[tokio::test]
async fn a_side_without_a_format_speaks_the_shared_layout() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;

    // A consumer without a format sends and receives the shared layout; the provider's system
    // still gets its own.
    let response = post(
        &gateway,
        "/exchange/market/register",
        "hr",
        &shared_licence(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let mut expected = shared_licence();
    expected["status"] = json!("revoked");
    assert_eq!(response.json::<Value>().await.unwrap(), expected);
    assert_eq!(upstreams.register.received_json(), market_licence());

    // A provider without a format receives the shared layout; its shared answer reaches the
    // consumer in the consumer's layout.
    let response = post(&gateway, "/exchange/plain/register", "tax", &tax_licence()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstreams.plain.received_json(), shared_licence());
    let mut expected = tax_licence();
    expected["nsrzt"] = json!("08");
    assert_eq!(response.json::<Value>().await.unwrap(), expected);
    gateway.stop().await;
}

#[tokio::test]
async fn an_untranslated_record_is_forwarded_byte_for_byte() {
    let upstreams = Upstreams::start().await;
    let gateway = gateway(&upstreams).await;
    // Escapes, spacing, key order and a float written as 1.0E6: a re-serialization would
    // change every one of them.
    let body = concat!(
        "{ \"status\" : \"active\",\n",
        "  \"name\":\"\\u798f\\u5dde\\u95fd\\u6c5f\",\t\"uscc\": \"91350100M000100Y43\",\n",
        "  \"registered_capital_yuan\": 1.0E6 }\r\n"
    );
    let response = gateway
        .call(Method::POST, "/exchange/plain/register", "hr")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstreams.plain.received(), [body.as_bytes().to_vec()]);
    gateway.stop().await;
}

#[tokio::test]
async fn an_untranslated_answer_is_passed_on_byte_for_byte() {
    // Neither hr nor plain has a format: the provider's answer bytes reach the consumer as sent.
    let answer =
        b"{\"uscc\":\"91350100M000100Y43\",  \"name\":\"\\u95fd\\u6c5f\",\"status\":\"active\"}";
    let plain = Recorder::start(StatusCode::OK, answer).await;
    let gateway = ConfigDir::new()
        .schema("licence", 1, licence_schema())
        .department(
            "plain",
            "department",
            &format!(
                r#"
[services.register]
upstream = "{}"
methods = ["POST"]
request_schema = "licence"
response_schema = "licence"
consumers = ["hr"]
"#,
                plain.url()
            ),
        )
        .department("hr", "department", "")
        .start()
        .await;
    let response = post(
        &gateway,
        "/exchange/plain/register",
        "hr",
        &shared_licence(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), answer);
    gateway.stop().await;
}

fn has_chinese(text: &str) -> bool {
    text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}
