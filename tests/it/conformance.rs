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
//!
//! The suites of draft-07, draft-06 and draft-04 run the same way (issue 16), each group's schema
//! given its draft's `$schema` when it has none (the suite's runner is told the draft; the
//! registry reads it from `$schema`). Their required tests must all pass, with the same skips
//! (remote references); they have no deviations (their `format.json` holds no string the suite
//! expects to pass as an annotation only).

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

fn suite_folder(draft: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/json-schema-test-suite/tests")
        .join(draft)
}

/// Fails when a draft's folder is missing (the tests are ignored when the whole suite is).
fn assert_suite_present(folder: &Path) {
    assert!(
        folder.is_dir(),
        "the JSON Schema test suite is missing at {}",
        folder.display()
    );
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
            // `id` is draft-04's `$id`.
            let base = match object
                .get("$id")
                .or_else(|| object.get("id"))
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
/// validates each of its instances, tallying the outcomes. `dialect` is the `$schema` a group's
/// schema is given when it declares none (the suite's files for older drafts mostly do not:
/// their runner is told the draft; the registry reads it from `$schema`).
async fn run_files(
    gateway: &Arc<TestGateway>,
    files: &[PathBuf],
    first_name: &mut usize,
    dialect: Option<&str>,
) -> Tally {
    let mut tally = Tally::default();
    let mut checks = Vec::new();
    for file in files {
        let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
        let groups: Vec<Group> =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for mut group in groups {
            let label = format!("{file_name} / {}", group.description);
            if let (Some(dialect), Value::Object(schema)) = (dialect, &mut group.schema) {
                schema
                    .entry("$schema")
                    .or_insert_with(|| Value::String(dialect.to_owned()));
            }
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

/// A gateway that registers under mode `none`, with an admin and a department (`tax`).
async fn suite_gateway() -> Arc<TestGateway> {
    let gateway = ConfigDir::new()
        .main("default_compatibility = \"none\"")
        .department("admin", "admin", "")
        .department("tax", "department", "")
        .start()
        .await;
    Arc::new(gateway)
}

/// Runs one draft's folder: its required files, `optional/format` (reported only) and the
/// exact-number files (`optional/bignum`, `optional/float-overflow`, which must pass: numbers
/// are validated exactly, issue 15); prints the counts and lists, and returns the required
/// files' tally, which must have no failure.
async fn run_draft(
    gateway: &Arc<TestGateway>,
    folder: &Path,
    names: &mut usize,
    draft: &str,
    dialect: Option<&str>,
) -> Tally {
    let required = run_files(gateway, &json_files(folder), names, dialect).await;
    let formats = run_files(
        gateway,
        &json_files(&folder.join("optional/format")),
        names,
        dialect,
    )
    .await;
    let numbers = run_files(
        gateway,
        &[
            folder.join("optional/bignum.json"),
            folder.join("optional/float-overflow.json"),
        ],
        names,
        dialect,
    )
    .await;
    let required_total = required.passed + required.failed.len() + required.deviations.len();
    println!(
        "JSON Schema test suite, {draft}, required: {} of {required_total} passed, {} failed, {} deviations by design; {} groups ({} tests) skipped",
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
    println!(
        "{draft} optional/format (formats asserted): {} of {} passed, {} groups skipped",
        formats.passed,
        formats.passed + formats.failed.len(),
        formats.skipped.len()
    );
    for failed in &formats.failed {
        println!("  {draft} optional/format: {failed}");
    }
    println!(
        "{draft} optional/bignum and optional/float-overflow (exact numbers): {} of {} passed",
        numbers.passed,
        numbers.passed + numbers.failed.len() + numbers.deviations.len()
    );
    assert!(
        numbers.passed >= 10 && numbers.failed.is_empty() && numbers.deviations.is_empty(),
        "{draft} exact-number tests failed:\n{}",
        numbers.failed.join("\n")
    );
    assert!(
        required.failed.is_empty(),
        "{draft} required tests failed:\n{}",
        required.failed.join("\n")
    );
    required
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "json-schema-test-suite",
    ignore = "the JSON Schema test suite is not at ../shared/testdata/json-schema-test-suite"
)]
async fn the_json_schema_test_suite_passes_through_registration_and_validate() {
    let folder = suite_folder("draft2020-12");
    assert_suite_present(&folder);
    let gateway = suite_gateway().await;
    let mut names = 0;
    let required = run_draft(&gateway, &folder, &mut names, "draft 2020-12", None).await;
    assert!(required.passed > 1000, "the suite ran");
    // The deviations are exactly the suite's annotation-only format cases, nothing more.
    for deviation in &required.deviations {
        assert!(
            deviation.contains("string is only an annotation by default"),
            "{deviation}"
        );
    }
}

/// The older drafts the registry accepts (issue 16): the suite's folder and the `$schema` URI its
/// groups are registered with.
const OLDER_DRAFTS: [(&str, &str); 3] = [
    ("draft7", "http://json-schema.org/draft-07/schema#"),
    ("draft6", "http://json-schema.org/draft-06/schema#"),
    ("draft4", "http://json-schema.org/draft-04/schema#"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    xgate_missing = "json-schema-test-suite",
    ignore = "the JSON Schema test suite is not at ../shared/testdata/json-schema-test-suite"
)]
async fn the_suites_of_drafts_04_06_and_07_pass_through_registration_and_validate() {
    for (draft, _) in OLDER_DRAFTS {
        assert_suite_present(&suite_folder(draft));
    }
    let gateway = suite_gateway().await;
    let mut names = 0;
    for (draft, dialect) in OLDER_DRAFTS {
        let folder = suite_folder(draft);
        let required = run_draft(&gateway, &folder, &mut names, draft, Some(dialect)).await;
        assert!(required.passed > 200, "the {draft} suite ran");
        assert!(
            required.deviations.is_empty(),
            "{draft}: {:?}",
            required.deviations
        );
    }
}

/// Whether a schema `$ref`s the meta-schema of draft-04, -06 or -07.
fn refers_to_older_meta_schema(schema: &Value) -> bool {
    match schema {
        Value::Object(object) => {
            object
                .get("$ref")
                .and_then(Value::as_str)
                .is_some_and(|reference| reference.contains("json-schema.org/draft-0"))
                || object.values().any(refers_to_older_meta_schema)
        }
        Value::Array(items) => items.iter().any(refers_to_older_meta_schema),
        _ => false,
    }
}

/// The conversion to 2020-12 is faithful (issue 16): for every group of the draft-07, -06 and
/// -04 suites, the converted schema, compiled as 2020-12, accepts exactly the instances the
/// original accepts under its own draft. Skipped: the groups that need remote documents (as
/// above), and those documented as unconvertible (a `$ref` to an older draft's meta-schema).
#[test]
#[cfg_attr(
    xgate_missing = "json-schema-test-suite",
    ignore = "the JSON Schema test suite is not at ../shared/testdata/json-schema-test-suite"
)]
fn converted_schemas_accept_exactly_what_the_originals_accept() {
    use std::collections::HashMap;
    use xgate_core::domain::{SchemaName, SchemaVersion};
    use xgate_core::i18n::Lang;
    use xgate_core::registry::compile_version;

    let name = SchemaName::parse("suite").unwrap();
    let documents = HashMap::new();
    for (draft, dialect) in OLDER_DRAFTS {
        let folder = suite_folder(draft);
        assert_suite_present(&folder);
        let (mut compared, mut skipped, mut differences) = (0, 0, Vec::new());
        let mut unconvertible = Vec::new();
        for file in json_files(&folder) {
            let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
            let groups: Vec<Group> =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            for mut group in groups {
                if skip_reason(&file_name, &group.schema).is_some() {
                    skipped += 1;
                    continue;
                }
                if refers_to_older_meta_schema(&group.schema) {
                    // Documented as unconvertible: a 2020-12 schema cannot reach an older
                    // draft's meta-schema.
                    unconvertible.push(format!("{file_name} / {}", group.description));
                    continue;
                }
                if let Value::Object(schema) = &mut group.schema {
                    schema
                        .entry("$schema")
                        .or_insert_with(|| Value::String(dialect.to_owned()));
                }
                let label = format!("{draft} {file_name} / {}", group.description);
                let original = compile_version(
                    &name,
                    SchemaVersion::FIRST,
                    group.schema.clone(),
                    &documents,
                    Lang::En,
                )
                .unwrap_or_else(|errors| panic!("{label}: {errors:?}"));
                let converted = compile_version(
                    &name,
                    SchemaVersion::FIRST,
                    original.comparable.clone(),
                    &documents,
                    Lang::En,
                )
                .unwrap_or_else(|errors| {
                    panic!(
                        "{label}: the conversion {} is not a valid 2020-12 schema: {errors:?}",
                        original.comparable
                    )
                });
                for case in &group.tests {
                    compared += 1;
                    let (expected, got) = (
                        original.is_valid(&case.data),
                        converted.is_valid(&case.data),
                    );
                    if expected != got {
                        differences.push(format!(
                            "{label} / {}: original {expected}, converted {got} ({})",
                            case.description, original.comparable
                        ));
                    }
                }
            }
        }
        println!(
            "{draft}: {compared} instances compared, {skipped} groups skipped (remote documents), {} unconvertible ($ref to an older meta-schema): {unconvertible:?}",
            unconvertible.len()
        );
        assert!(unconvertible.len() <= 3, "{draft}: {unconvertible:?}");
        assert!(compared > 500, "{draft}: {compared} instances compared");
        assert!(
            differences.is_empty(),
            "{draft}: the converted schema disagrees:\n{}",
            differences.join("\n")
        );
    }
}
