//! Data-driven compatibility fixtures (`tests/fixtures/compatibility/*.json`): each case has the
//! earlier version(s), the new version and the verdict expected in every mode; the test fails
//! when any verdict differs. Cases are compiled exactly as registration compiles them, and
//! `$ref`s to other registry versions (`registered`) resolve from the registry only.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use xgate_core::domain::{Compatibility, SchemaName, SchemaVersion};
use xgate_core::i18n::Lang;
use xgate_core::registry::compatibility::{self, Report};
use xgate_core::registry::{CompiledSchema, Registry, compile_version};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    /// The one earlier version (or use `earlier` for several).
    old: Option<Value>,
    /// Several earlier versions, oldest first (for the transitive modes).
    earlier: Option<Vec<Value>>,
    new: Value,
    /// Other schemas by name, versions 1, 2, ... in order, that the versions may `$ref`.
    #[serde(default)]
    registered: BTreeMap<String, Vec<Value>>,
    /// Why a verdict is what it is, where the truth and the proof differ.
    note: Option<String>,
    /// Verdicts by mode: `compatible`, `incompatible` (proven unsafe) or `unproven`.
    expected: BTreeMap<String, String>,
}

fn verdict(report: &Report) -> &'static str {
    if report.compatible() {
        "compatible"
    } else if report
        .reasons
        .iter()
        .any(|reason| reason.verdict() == "incompatible")
    {
        "incompatible"
    } else {
        "unproven"
    }
}

fn register(registry: Registry, name: &str, version: u32, document: &Value) -> Registry {
    let name = SchemaName::parse(name).unwrap();
    let version = SchemaVersion::new(version).unwrap();
    let compiled = compile_version(
        &name,
        version,
        document.clone(),
        registry.documents(),
        Lang::En,
    )
    .unwrap_or_else(|errors| panic!("{name}@{version} does not compile: {errors:?}"));
    registry.with_version(Arc::new(compiled))
}

/// The verdict of every mode for a case, with the reasons' messages.
fn run(case: &Case) -> BTreeMap<&'static str, (&'static str, Vec<String>)> {
    let mut registry = Registry::empty(Compatibility::None);
    for (name, versions) in &case.registered {
        for (index, document) in versions.iter().enumerate() {
            registry = register(registry, name, index as u32 + 1, document);
        }
    }
    let earlier: Vec<Value> = match (&case.old, &case.earlier) {
        (Some(old), None) => vec![old.clone()],
        (None, Some(earlier)) if !earlier.is_empty() => earlier.clone(),
        _ => panic!("{}: give exactly one of old and earlier", case.description),
    };
    for (index, document) in earlier.iter().enumerate() {
        registry = register(registry, "subject", index as u32 + 1, document);
    }
    let new_version = SchemaVersion::new(earlier.len() as u32 + 1).unwrap();
    let new = compile_version(
        &SchemaName::parse("subject").unwrap(),
        new_version,
        case.new.clone(),
        registry.documents(),
        Lang::En,
    )
    .unwrap_or_else(|errors| panic!("{}: new does not compile: {errors:?}", case.description));
    let entry = registry.entry("subject").unwrap();
    let versions: Vec<&CompiledSchema> = entry.versions.values().map(|v| &**v).collect();
    Compatibility::ALL
        .into_iter()
        .map(|mode| {
            let report = compatibility::check(mode, &new, &versions, registry.documents());
            for reason in &report.reasons {
                if reason.verdict() == "incompatible" {
                    assert!(
                        reason.difference().is_some() || reason.example().is_some(),
                        "{}: a proven incompatibility comes with its difference or an example",
                        case.description
                    );
                }
                if let Some(example) = reason.example() {
                    // The example really is accepted by one version and refused by the other.
                    let old = &entry.versions[&reason.against];
                    let (accepting, refusing) = match reason.direction {
                        compatibility::Direction::Backward => (&**old, &new),
                        compatibility::Direction::Forward => (&new, &**old),
                    };
                    assert!(
                        accepting.validate(example, Lang::En).is_empty()
                            && !refusing.validate(example, Lang::En).is_empty(),
                        "{}: example {example} does not show the difference",
                        case.description
                    );
                }
                assert!(!reason.message(Lang::En).is_empty());
                assert!(!reason.message(Lang::Zh).is_empty());
            }
            let messages = report
                .reasons
                .iter()
                .map(|reason| {
                    format!(
                        "{} (difference {})",
                        reason.message(Lang::En),
                        reason
                            .difference()
                            .map_or("unknown".to_owned(), Value::to_string)
                    )
                })
                .collect();
            (mode.as_str(), (verdict(&report), messages))
        })
        .collect()
}

#[test]
fn compatibility_verdicts_match_the_fixtures() {
    let folder =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compatibility");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut cases = 0;
    let mut mismatches = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let file_cases: Vec<Case> = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        for case in &file_cases {
            cases += 1;
            for mode in ["backward", "forward", "full"] {
                assert!(
                    case.expected.contains_key(mode),
                    "{}: expected verdicts must name {mode}",
                    case.description
                );
            }
            let single = case.old.is_some();
            let actual = run(case);
            for (mode, (got, messages)) in &actual {
                let expected = match case.expected.get(*mode) {
                    Some(expected) => expected.as_str(),
                    None if *mode == "none" => "compatible",
                    // Against a single earlier version, a transitive mode is its plain mode.
                    None if single => case.expected[mode.trim_end_matches("_transitive")].as_str(),
                    None => panic!("{}: name the verdict of {mode}", case.description),
                };
                if expected != *got {
                    mismatches.push(format!(
                        "{} / {}: {mode} expected {expected}, got {got} {messages:?} (note: {})",
                        file.file_name().unwrap().to_string_lossy(),
                        case.description,
                        case.note.as_deref().unwrap_or("none")
                    ));
                }
            }
        }
    }
    println!(
        "compatibility fixtures: {cases} cases in {} files",
        files.len()
    );
    assert!(cases >= 30, "at least 30 cases, found {cases}");
    assert!(
        mismatches.is_empty(),
        "verdicts differ:\n{}",
        mismatches.join("\n")
    );
}
