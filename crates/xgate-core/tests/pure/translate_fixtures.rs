//! Data-driven translation cases (SPEC §7): every folder of `tests/fixtures/translate/` is a
//! format, an own record and what to-shared must make of it; every file of
//! `tests/fixtures/translate-config-errors/` is a format that must not compile.
//!
//! A case folder holds:
//! - `README`: one line saying what the case shows;
//! - `format.toml`: the body of a `[formats.<schema>]` section;
//! - `own.json`: a record in the department's own layout;
//! - either `shared.json`, the exact shared record to-shared must give (integers stay integers:
//!   `3000`, not `3000.0`), after which from-shared must give back `own.json` (numbers compared
//!   by value) unless a file `one-way` says why it cannot;
//! - or `errors.json`, the errors to-shared must report, in any order: a list of
//!   `{"own_pointer", "shared_pointer" (or null), "kind"}` with `kind` one of `conversion`,
//!   `unmapped`, `collision`, `not-a-record`, and optionally `"message"`, a piece of the English
//!   message.
//!
//! A config-error file starts with `# expect: <piece of the error>`; `Format::parse` must refuse
//! it with an error (`key: reason`) containing that piece.

use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde_json::{Value, json};
use xgate_core::i18n::Lang;
use xgate_core::number::ExactNumber;
use xgate_core::translate::FormatSection;
use xgate_core::translate::{Direction, ErrorKind, Format, TranslationError};

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/translate");
const CONFIG_ERRORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/translate-config-errors"
);

/// Fewer cases than this means fixtures went missing.
const MIN_CASES: usize = 24;
const MIN_CONFIG_ERRORS: usize = 8;

#[test]
fn every_translation_fixture_holds() {
    let cases: Vec<PathBuf> = sorted_entries(CASES)
        .into_iter()
        .filter(|path| path.is_dir())
        .collect();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            run_case(case)
                .err()
                .map(|failure| format!("{}: {failure}", file_name(case)))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} translation fixtures fail:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    assert!(
        cases.len() >= MIN_CASES,
        "only {} translation fixtures in {CASES}, expected at least {MIN_CASES}",
        cases.len()
    );
}

#[test]
fn every_config_error_fixture_is_refused() {
    let files: Vec<PathBuf> = sorted_entries(CONFIG_ERRORS)
        .into_iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    let failures: Vec<String> = files
        .iter()
        .filter_map(|file| {
            run_config_error(file)
                .err()
                .map(|failure| format!("{}: {failure}", file_name(file)))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} config-error fixtures fail:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
    assert!(
        files.len() >= MIN_CONFIG_ERRORS,
        "only {} config-error fixtures in {CONFIG_ERRORS}, expected at least {MIN_CONFIG_ERRORS}",
        files.len()
    );
}

fn run_case(case: &Path) -> Result<(), String> {
    let readme = read(&case.join("README"))?;
    if readme.trim().is_empty() || readme.trim().lines().count() != 1 {
        return Err("README must be one line saying what the case shows".to_owned());
    }
    let format = parse_format(&read(&case.join("format.toml"))?)
        .map_err(|errors| format!("format.toml does not compile: {errors:?}"))?;
    let own = read_json(&case.join("own.json"))?;
    let expected_shared = case.join("shared.json");
    let expected_errors = case.join("errors.json");
    match (expected_shared.exists(), expected_errors.exists()) {
        (true, false) => {
            let expected = read_json(&expected_shared)?;
            let shared = format
                .translate(&own, Direction::ToShared)
                .map_err(|errors| {
                    format!(
                        "to-shared failed\nexpected: {}\nactual errors: {}",
                        pretty(&expected),
                        pretty(&errors_json(&errors))
                    )
                })?;
            if shared != expected {
                return Err(format!(
                    "to-shared\nexpected: {}\nactual:   {}",
                    pretty(&expected),
                    pretty(&shared)
                ));
            }
            let back = format
                .translate(&shared, Direction::FromShared)
                .map_err(|errors| {
                    format!(
                        "from-shared failed\nexpected: {}\nactual errors: {}",
                        pretty(&own),
                        pretty(&errors_json(&errors))
                    )
                })?;
            let one_way = case.join("one-way");
            if one_way.exists() {
                if read(&one_way)?.trim().is_empty() {
                    return Err("one-way must say why the round trip does not hold".to_owned());
                }
            } else if !same_record(&back, &own) {
                return Err(format!(
                    "round trip: from-shared does not give back own.json\nexpected: {}\nactual:   {}",
                    pretty(&own),
                    pretty(&back)
                ));
            }
            Ok(())
        }
        (false, true) => {
            let expected = read_json(&expected_errors)?;
            let Some(expected) = expected.as_array() else {
                return Err("errors.json must be a list".to_owned());
            };
            let errors = match format.translate(&own, Direction::ToShared) {
                Ok(shared) => {
                    return Err(format!(
                        "to-shared succeeded\nexpected errors: {}\nactual: {}",
                        pretty(&Value::Array(expected.clone())),
                        pretty(&shared)
                    ));
                }
                Err(errors) => errors_json(&errors),
            };
            let actual = errors.as_array().cloned().unwrap_or_default();
            if matches_errors(expected, &actual) {
                Ok(())
            } else {
                Err(format!(
                    "errors (in any order)\nexpected: {}\nactual:   {}",
                    pretty(&Value::Array(expected.clone())),
                    pretty(&errors)
                ))
            }
        }
        _ => Err("a case has either shared.json or errors.json".to_owned()),
    }
}

/// Whether every expected error matches a distinct actual one and no actual one is left over.
fn matches_errors(expected: &[Value], actual: &[Value]) -> bool {
    if expected.len() != actual.len() {
        return false;
    }
    let mut used = vec![false; actual.len()];
    expected.iter().all(|wanted| {
        let found = actual.iter().enumerate().position(|(index, error)| {
            !used[index]
                && ["own_pointer", "shared_pointer", "kind"]
                    .iter()
                    .all(|key| wanted.get(*key).unwrap_or(&Value::Null) == &error[*key])
                && wanted["message"].as_str().is_none_or(|piece| {
                    error["message"]
                        .as_str()
                        .is_some_and(|message| message.contains(piece))
                })
        });
        found.map(|index| used[index] = true).is_some()
    })
}

fn errors_json(errors: &[TranslationError]) -> Value {
    Value::Array(
        errors
            .iter()
            .map(|error| {
                let kind = match error.kind {
                    ErrorKind::Conversion { .. } => "conversion",
                    ErrorKind::Unmapped => "unmapped",
                    ErrorKind::Collision => "collision",
                    ErrorKind::Shape => "shape",
                    ErrorKind::NotARecord => "not-a-record",
                };
                json!({
                    "own_pointer": error.own_pointer,
                    "shared_pointer": error.shared_pointer,
                    "kind": kind,
                    "message": error.to_violation(Lang::En).message,
                })
            })
            .collect(),
    )
}

fn run_config_error(file: &Path) -> Result<(), String> {
    let text = read(file)?;
    let expect = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("# expect:"))
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
        .ok_or("the first line must be `# expect: <piece of the error>`")?;
    match parse_format(&text) {
        Ok(_) => Err(format!("compiled, expected an error containing {expect:?}")),
        Err(errors) if errors.iter().any(|error| error.contains(expect)) => Ok(()),
        Err(errors) => Err(format!(
            "expected an error containing {expect:?}\nactual: {errors:#?}"
        )),
    }
}

/// Compiles a `[formats.<schema>]` body; errors as `key: reason` (TOML errors as they are).
pub fn parse_format(text: &str) -> Result<Format, Vec<String>> {
    let section: FormatSection =
        toml::from_str(text).map_err(|error| vec![format!("TOML: {error}")])?;
    Format::parse(&section).map_err(|errors| {
        errors
            .into_iter()
            .map(|(key, reason)| format!("{key}: {reason}"))
            .collect()
    })
}

/// Whether two records are the same, numbers compared by their exact value (`100.0` is `100`,
/// `100.00000000000000001` is not).
pub fn same_record(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.to_string(), y.to_string());
            match (ExactNumber::parse(&x), ExactNumber::parse(&y)) {
                (Some(x), Some(y)) => x.cmp_exact(&y).is_eq(),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_record(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| same_record(x, y)))
        }
        _ => a == b,
    }
}

/// A JSON number as the exact decimal its text says (`None` past what a decimal holds).
pub fn decimal(number: &serde_json::Number) -> Option<Decimal> {
    let text = number.to_string();
    Decimal::from_str_exact(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

fn sorted_entries(folder: &str) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|error| panic!("{folder}: {error}"))
        .map(|entry| entry.expect("folder entry").path())
        .collect();
    entries.sort();
    entries
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", file_name(path)))
}

fn read_json(path: &Path) -> Result<Value, String> {
    // The gateway's reader: numbers keep the text they are written with (`1e2`, not `1e+2`).
    xgate_core::json::parse(read(path)?.as_bytes())
        .map_err(|error| format!("{}: {error}", file_name(path)))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
