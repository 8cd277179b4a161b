//! POST `/validate/{schema}[?version=N]` (SPEC §4): a record checked without being sent, every
//! violation listed in the caller's language; NDJSON in, one result per input line out.

use http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// A licence with three mistakes: a bad check character, a date in the wrong format and no
/// `status`.
fn license_with_three_mistakes() -> Value {
    let mut record = license();
    record["uscc"] = json!("91350100M000100Y44");
    record["established_on"] = json!("2016/08/18");
    record.as_object_mut().unwrap().remove("status");
    record
}

/// Whether `text` holds a CJK ideograph.
fn has_chinese(text: &str) -> bool {
    text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// The `(pointer, keyword)` pairs of a result's errors, sorted.
fn pointers_and_keywords(result: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = result["errors"]
        .as_array()
        .expect("errors is an array")
        .iter()
        .map(|error| {
            (
                error["pointer"].as_str().unwrap().to_owned(),
                error["keyword"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

/// The result lines of an NDJSON answer, parsed.
fn ndjson_results(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

async fn post_ndjson(gateway: &TestGateway, body: reqwest::Body) -> reqwest::Response {
    gateway
        .call(Method::POST, "/validate/license", "tax")
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_valid_record_is_reported_valid() {
    let (gateway, _echo, records) = standard_gateway().await;
    let response = gateway
        .call(Method::POST, "/validate/license", "tax")
        .json(&license())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"valid": true, "errors": []}));
    assert_eq!(records.call_count(), 0, "validating sends nothing upstream");
    gateway.stop().await;
}

#[tokio::test]
async fn every_violation_is_listed_in_english_by_default() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let response = gateway
        .call(Method::POST, "/validate/license", "civil")
        .json(&license_with_three_mistakes())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(
        pointers_and_keywords(&body),
        [
            ("".to_owned(), "required".to_owned()),
            ("/established_on".to_owned(), "format".to_owned()),
            ("/uscc".to_owned(), "format".to_owned()),
        ],
        "{body}"
    );
    for error in body["errors"].as_array().unwrap() {
        let message = error["message"].as_str().unwrap();
        assert!(!message.is_empty() && !has_chinese(message), "{message}");
    }
    let required = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|error| error["keyword"] == "required")
        .unwrap();
    assert!(
        required["message"].as_str().unwrap().contains("status"),
        "{required}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn messages_are_chinese_for_a_chinese_caller() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let response = gateway
        .call(Method::POST, "/validate/license", "tax")
        .header("accept-language", "zh-CN,zh;q=0.9,en;q=0.5")
        .json(&license_with_three_mistakes())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["valid"], false);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{body}");
    for error in errors {
        assert!(has_chinese(error["message"].as_str().unwrap()), "{error}");
    }
    let uscc = errors.iter().find(|e| e["pointer"] == "/uscc").unwrap();
    assert!(
        uscc["message"]
            .as_str()
            .unwrap()
            .contains("统一社会信用代码"),
        "{uscc}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_version_is_chosen_with_the_query_and_unknown_ones_are_not_found() {
    // Version 2 also requires `established_on`, so a record without it tells the versions apart.
    let mut version_2 = license_schema();
    version_2["required"] = json!(["uscc", "name", "status", "established_on"]);
    let echo = Upstream::echo().await;
    let records = Upstream::echo().await;
    let gateway = standard(&echo, &records)
        .schema("license", 2, version_2)
        .start()
        .await;
    let mut record = license();
    record.as_object_mut().unwrap().remove("established_on");

    let validate = |path: &str| gateway.call(Method::POST, path, "tax").json(&record).send();
    let latest: Value = validate("/validate/license")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest["valid"], false, "the latest version is 2: {latest}");
    assert_eq!(
        pointers_and_keywords(&latest),
        [("".to_owned(), "required".to_owned())]
    );
    let pinned = validate("/validate/license?version=1").await.unwrap();
    assert_eq!(pinned.status(), StatusCode::OK);
    let pinned: Value = pinned.json().await.unwrap();
    assert_eq!(pinned, json!({"valid": true, "errors": []}));
    let explicit_2: Value = validate("/validate/license?version=2")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(explicit_2["valid"], false);

    for path in [
        "/validate/license?version=9",
        "/validate/license?version=abc",
        "/validate/license?version=0",
        "/validate/license?version=",
        "/validate/nothing-here",
        "/validate/Not_A_Name",
        "/validate/..%2Flicense",
    ] {
        let (status, body) = problem(validate(path).await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["type"], "urn:xgate:problem:not-found", "{path}");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn credentials_media_type_syntax_and_size_are_checked() {
    let echo = Upstream::echo().await;
    let records = Upstream::echo().await;
    let gateway = standard(&echo, &records)
        .gateway("max_body_bytes = 4096")
        .start()
        .await;

    let anonymous = gateway
        .client
        .post(gateway.url("/validate/license"))
        .json(&license())
        .send()
        .await
        .unwrap();
    let (status, body) = problem(anonymous).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["type"], "urn:xgate:problem:unauthenticated");

    let wrong_token = gateway
        .client
        .post(gateway.url("/validate/license"))
        .bearer_auth("not-a-token")
        .json(&license())
        .send()
        .await
        .unwrap();
    assert_eq!(problem(wrong_token).await.0, StatusCode::UNAUTHORIZED);

    let text = gateway
        .call(Method::POST, "/validate/license", "tax")
        .header("content-type", "text/plain")
        .body(license().to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = problem(text).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["type"], "urn:xgate:problem:unsupported-media-type");

    let malformed = gateway
        .call(Method::POST, "/validate/license", "tax")
        .header("content-type", "application/json")
        .body(r#"{"uscc": "91350100M000100Y43","#)
        .send()
        .await
        .unwrap();
    let (status, body) = problem(malformed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "urn:xgate:problem:malformed-json");

    let mut large = license();
    large["name"] = json!("x".repeat(5000));
    let too_large = gateway
        .call(Method::POST, "/validate/license", "tax")
        .json(&large)
        .send()
        .await
        .unwrap();
    let (status, body) = problem(too_large).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["type"], "urn:xgate:problem:payload-too-large");
    gateway.stop().await;
}

#[tokio::test]
async fn ndjson_gives_one_result_per_non_blank_line_in_order() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let mut invalid = license();
    invalid.as_object_mut().unwrap().remove("status");
    let body = format!("{}\n{}\n{{\"uscc\": \n\n{}", license(), invalid, license());
    let response = post_ndjson(&gateway, body.into()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    assert!(response.headers().contains_key("x-request-id"));
    let results = ndjson_results(&response.text().await.unwrap());
    let lines: Vec<u64> = results
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [1, 2, 3, 5], "{results:?}");

    assert_eq!(results[0], json!({"line": 1, "valid": true, "errors": []}));
    assert_eq!(results[1]["valid"], false);
    assert_eq!(
        pointers_and_keywords(&results[1]),
        [("".to_owned(), "required".to_owned())]
    );
    assert_eq!(results[2]["valid"], false, "malformed JSON is invalid");
    assert_eq!(results[2]["errors"].as_array().unwrap().len(), 1);
    assert!(
        results[2]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("JSON")
    );
    assert_eq!(results[3], json!({"line": 5, "valid": true, "errors": []}));
    gateway.stop().await;
}

#[tokio::test]
async fn ten_thousand_ndjson_lines_split_mid_line_give_ten_thousand_results() {
    let (gateway, _echo, _records) = standard_gateway().await;
    const LINES: usize = 10_000;
    let mut invalid = license();
    invalid["uscc"] = json!("91350100M000100Y44");
    let (valid, invalid) = (license().to_string(), invalid.to_string());
    let mut body = String::new();
    for number in 1..=LINES {
        body.push_str(if number % 1000 == 0 { &invalid } else { &valid });
        body.push('\n');
    }
    // 997 bytes is prime and shorter than two records, so chunk ends land everywhere in a line.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .as_bytes()
        .chunks(997)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    let response = post_ndjson(&gateway, reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let results = ndjson_results(&response.text().await.unwrap());
    assert_eq!(results.len(), LINES);
    for (index, result) in results.iter().enumerate() {
        let number = index + 1;
        assert_eq!(result["line"], number, "{result}");
        assert_eq!(result["valid"], number % 1000 != 0, "{result}");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn an_ndjson_line_over_the_body_limit_is_reported_and_later_lines_still_validated() {
    let echo = Upstream::echo().await;
    let records = Upstream::echo().await;
    let gateway = standard(&echo, &records)
        .gateway("max_body_bytes = 1024")
        .start()
        .await;
    let mut long = license();
    long["name"] = json!("x".repeat(5000));
    let mut invalid = license();
    invalid["status"] = json!("dormant");
    let body = format!("{}\n{}\n{}\n{}\n", license(), long, license(), invalid);

    // Whole, and in small chunks: the limit must hold however the line arrives.
    let chunked: Vec<Result<Vec<u8>, std::io::Error>> = body
        .as_bytes()
        .chunks(100)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let bodies = [
        ("whole", reqwest::Body::from(body.clone())),
        (
            "chunked",
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunked)),
        ),
    ];
    for (how, request_body) in bodies {
        let response = post_ndjson(&gateway, request_body).await;
        assert_eq!(response.status(), StatusCode::OK, "{how}");
        let results = ndjson_results(&response.text().await.unwrap());
        let lines: Vec<u64> = results
            .iter()
            .map(|r| r["line"].as_u64().unwrap())
            .collect();
        assert_eq!(lines, [1, 2, 3, 4], "{how}: {results:?}");
        assert_eq!(results[0]["valid"], true, "{how}");
        assert_eq!(results[1]["valid"], false, "{how}");
        let errors = results[1]["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{how}: {results:?}");
        assert_eq!(
            errors[0]["pointer"], "",
            "{how}: the whole line is at fault"
        );
        assert!(
            errors[0]["message"].as_str().unwrap().contains("1024"),
            "{how}: {errors:?}"
        );
        assert_eq!(results[2]["valid"], true, "{how}");
        assert_eq!(results[3]["valid"], false, "{how}");
        assert_eq!(
            pointers_and_keywords(&results[3]),
            [("/status".to_owned(), "enum".to_owned())],
            "{how}"
        );
    }
    gateway.stop().await;
}

/// The standard scenario where `tax` speaks its own layout of `license`.
async fn gateway_with_tax_format() -> (TestGateway, Upstream, Upstream) {
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
  { own = "/clrq", shared = "/established_on", convert = "date:%Y%m%d" },
  { own = "/gd/*/xm", shared = "/shareholders/*/name" },
]
"#,
        )
        .start()
        .await;
    (gateway, echo, records)
}

#[tokio::test]
async fn format_own_validates_a_record_in_the_callers_layout() {
    let (gateway, _echo, _records) = gateway_with_tax_format().await;
    let own = json!({"nsrsbh": "91350100M000100Y43", "nsrmc": "闽江数据", "zt": "1", "clrq": "20160818",
                     "gd": [{"xm": "甲"}, {"xm": "乙"}]});
    // Shared violations are reported at the caller's own pointers, the shared one beside.
    let mut bad = own.clone();
    bad["nsrsbh"] = json!("91350100M000100Y44");
    bad.as_object_mut().unwrap().remove("nsrmc");
    let result: Value = gateway
        .call(Method::POST, "/validate/license?format=own", "tax")
        .header("accept-language", "zh")
        .json(&bad)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(result["valid"], false, "{result}");
    let errors = result["errors"].as_array().unwrap();
    let uscc = errors.iter().find(|e| e["keyword"] == "format").unwrap();
    assert_eq!(uscc["pointer"], "/nsrsbh");
    assert_eq!(uscc["shared_pointer"], "/uscc");
    let missing = errors.iter().find(|e| e["keyword"] == "required").unwrap();
    assert_eq!(missing["pointer"], "/nsrmc", "{missing}");
    assert_eq!(missing["message"], "缺少必填字段 \"nsrmc\"");

    // Values that do not convert are translation errors at the caller's pointers.
    let mut untranslatable = own.clone();
    untranslatable["clrq"] = json!("2016-08-18");
    untranslatable["zt"] = json!("9");
    untranslatable["extra"] = json!(true);
    let result: Value = gateway
        .call(Method::POST, "/validate/license?format=own", "tax")
        .json(&untranslatable)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(result["valid"], false);
    let found: Vec<(&str, &str)> = result["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["pointer"].as_str().unwrap(),
                e["keyword"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("/zt", "translation"),
            ("/clrq", "translation"),
            ("/extra", "unmapped")
        ]
    );

    // A valid own record is valid; the same record in the shared layout is not (in own terms).
    let good = own.clone();
    for (path, expected) in [
        ("/validate/license?format=own", true),
        ("/validate/license", false),
    ] {
        let result: Value = gateway
            .call(Method::POST, path, "tax")
            .json(&good)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(result["valid"], expected, "{path}: {result}");
    }
    // NDJSON in the caller's layout.
    let body = format!("{good}\n{untranslatable}\n");
    let text = gateway
        .call(Method::POST, "/validate/license?format=own", "tax")
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["valid"], true);
    assert_eq!(lines[1]["errors"][0]["pointer"], "/zt");
    // A caller without a format speaks the shared layout.
    let result: Value = gateway
        .call(Method::POST, "/validate/license?format=own", "civil")
        .json(&license())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(result["valid"], true);
    // An unknown format value is refused.
    let (status, body) = problem(
        gateway
            .call(Method::POST, "/validate/license?format=theirs", "tax")
            .json(&good)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["type"], "urn:xgate:problem:invalid-parameter");
}
