//! Conformance with the official JSON Schema test suite (draft 2020-12), through the real
//! routes: every group's schema is registered with `POST /admin/schemas/{name}/versions` and
//! every instance validated with the data plane's `POST /validate/{name}` on one gateway.
//!
//! The suite is read from `../shared/testdata/json-schema-test-suite` (relative to the
//! repository) and never copied into it. Required tests must all pass, except:
//! - tests that need remote references (`refRemote.json`, and groups that `$ref` or use as
//!   meta-schema a `localhost:1234` document they do not embed), skipped with that reason (the
//!   registry resolves `$ref`s from itself only, by design);
//! - in `format.json`, strings the suite expects to pass because `format` is only an annotation
//!   by default in 2020-12: SPEC §6 makes the gateway assert formats, so those are reported as
//!   deviations by design, by name.
//!
//! `optional/format` is run with formats asserted and only reported. `optional/bignum` and
//! `optional/float-overflow` must pass: numbers are validated exactly (issue 15).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use http::StatusCode;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::helpers::*;

#[derive(Deserialize)]
struct Group {
    description: String,
    schema: Value,
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    description: String,
    data: Value,
    valid: bool,
}

fn suite_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/json-schema-test-suite/tests/draft2020-12")
}

fn json_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// Why a group is not run, if it is not.
fn skip_reason(file: &str, schema: &Value) -> Option<&'static str> {
    if file == "refRemote.json" {
        return Some(
            "remote references (refRemote.json): the registry resolves $ref from itself only",
        );
    }
    if needs_remote_document(schema) {
        return Some(
            "needs a document served at localhost:1234 (a remote $ref or meta-schema): the registry resolves $ref from itself only",
        );
    }
    None
}

/// Whether a schema names a `localhost:1234` document (by `$ref`, `$dynamicRef` or `$schema`)
/// that it does not embed itself under that `$id`: such a group needs the suite's remote server.
fn needs_remote_document(schema: &Value) -> bool {
    let base = reqwest::Url::parse("https://root.invalid/schema.json").unwrap();
    let mut embedded = Vec::new();
    let mut references = Vec::new();
    walk(schema, &base, &mut embedded, &mut references);
    references.iter().any(|reference| {
        reference.host_str() == Some("localhost")
            && reference.port() == Some(1234)
            && !embedded.contains(reference)
    })
}

fn walk(
    value: &Value,
    base: &reqwest::Url,
    embedded: &mut Vec<reqwest::Url>,
    references: &mut Vec<reqwest::Url>,
) {
    let without_fragment = |mut url: reqwest::Url| {
        url.set_fragment(None);
        url
    };
    match value {
        Value::Object(object) => {
            let base = match object
                .get("$id")
                .and_then(Value::as_str)
                .map(|id| base.join(id))
            {
                Some(Ok(id)) => {
                    let id = without_fragment(id);
                    embedded.push(id.clone());
                    id
                }
                _ => base.clone(),
            };
            for key in ["$ref", "$dynamicRef", "$schema"] {
                if let Some(Ok(target)) = object
                    .get(key)
                    .and_then(Value::as_str)
                    .map(|r| base.join(r))
                {
                    references.push(without_fragment(target));
                }
            }
            for child in object.values() {
                walk(child, &base, embedded, references);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, base, embedded, references);
            }
        }
        _ => {}
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
    deviations: Vec<String>,
    skipped: Vec<String>,
    skipped_tests: usize,
}

/// Registers every group of `files` (as `suite-<n>`, counting on from `first_name`) and
/// validates each of its instances, tallying the outcomes.
async fn run_files(gateway: &Arc<TestGateway>, files: &[PathBuf], first_name: &mut usize) -> Tally {
    let mut tally = Tally::default();
    let mut checks = Vec::new();
    for file in files {
        let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
        let groups: Vec<Group> =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for group in groups {
            let label = format!("{file_name} / {}", group.description);
            if let Some(reason) = skip_reason(&file_name, &group.schema) {
                tally.skipped_tests += group.tests.len();
                tally
                    .skipped
                    .push(format!("{label} ({} tests): {reason}", group.tests.len()));
                continue;
            }
            *first_name += 1;
            let name = format!("suite-{first_name}");
            let response = gateway
                .client
                .post(gateway.admin_url(&format!("/admin/schemas/{name}/versions")))
                .bearer_auth(token("admin"))
                .json(&group.schema)
                .send()
                .await
                .unwrap();
            if response.status() != StatusCode::CREATED {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                for case in &group.tests {
                    tally.failed.push(format!(
                        "{label} / {}: registration answered {status}: {body}",
                        case.description
                    ));
                }
                continue;
            }
            for case in group.tests {
                checks.push((file_name.clone(), label.clone(), name.clone(), case));
            }
        }
    }
    let results: Vec<_> = futures_util::stream::iter(checks)
        .map(|(file_name, label, name, case)| {
            let gateway = gateway.clone();
            async move {
                let response = gateway
                    .call(Method::POST, &format!("/validate/{name}"), "tax")
                    .json(&case.data)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                (file_name, label, case, status, body)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (file_name, label, case, status, body) in results {
        let label = format!("{label} / {}", case.description);
        if status != StatusCode::OK {
            tally
                .failed
                .push(format!("{label}: /validate answered {status}: {body}"));
            continue;
        }
        if body["valid"] == case.valid {
            tally.passed += 1;
        } else if file_name == "format.json" && case.valid && case.data.is_string() {
            tally.deviations.push(format!(
                "{label}: expected valid (format as annotation), the gateway asserts formats (SPEC §6)"
            ));
        } else {
            tally.failed.push(format!(
                "{label}: expected valid = {}, got {body}",
                case.valid
            ));
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "json-schema-test-suite",
    ignore = "the JSON Schema test suite is not at ../shared/testdata/json-schema-test-suite"
)]
async fn the_json_schema_test_suite_passes_through_registration_and_validate() {
    let folder = suite_folder();
    assert!(
        folder.is_dir(),
        "the JSON Schema test suite is missing at {}",
        folder.display()
    );
    let gateway = ConfigDir::new()
        .main("default_compatibility = \"none\"")
        .department("admin", "admin", "")
        .department("tax", "department", "")
        .start()
        .await;
    let gateway = Arc::new(gateway);
    let mut names = 0;
    let required = run_files(&gateway, &json_files(&folder), &mut names).await;
    let formats = run_files(
        &gateway,
        &json_files(&folder.join("optional/format")),
        &mut names,
    )
    .await;

    // Numbers past f64 (issue 15): required here, since the gateway validates numbers exactly.
    let numbers = run_files(
        &gateway,
        &[
            folder.join("optional/bignum.json"),
            folder.join("optional/float-overflow.json"),
        ],
        &mut names,
    )
    .await;

    let required_total = required.passed + required.failed.len() + required.deviations.len();
    println!(
        "JSON Schema test suite, draft 2020-12, required: {} of {required_total} passed, {} failed, {} deviations by design; {} groups ({} tests) skipped",
        required.passed,
        required.failed.len(),
        required.deviations.len(),
        required.skipped.len(),
        required.skipped_tests
    );
    for skipped in &required.skipped {
        println!("  skipped: {skipped}");
    }
    for deviation in &required.deviations {
        println!("  deviation: {deviation}");
    }
    let format_total = formats.passed + formats.failed.len();
    println!(
        "optional/format (formats asserted): {} of {format_total} passed, {} groups skipped",
        formats.passed,
        formats.skipped.len()
    );
    for failed in &formats.failed {
        println!("  optional/format: {failed}");
    }
    println!(
        "optional/bignum and optional/float-overflow (exact numbers): {} of {} passed",
        numbers.passed,
        numbers.passed + numbers.failed.len() + numbers.deviations.len()
    );
    assert!(
        numbers.passed >= 10 && numbers.failed.is_empty() && numbers.deviations.is_empty(),
        "exact-number tests failed:\n{}",
        numbers.failed.join("\n")
    );
    assert!(
        required.passed > 1000,
        "the suite ran: {} passed",
        required.passed
    );
    assert!(
        required.failed.is_empty(),
        "required tests failed:\n{}",
        required.failed.join("\n")
    );
    // The deviations are exactly the suite's annotation-only format cases, nothing more.
    for deviation in &required.deviations {
        assert!(
            deviation.contains("string is only an annotation by default"),
            "{deviation}"
        );
    }
}
