//! Checks of the tests themselves, in the style of rust-analyzer's tidy tests: a test that needs
//! a tool or test data carries the `cfg_attr` that `build.rs` drives, so that where the tool is
//! missing it is *ignored* (and counted so in `cargo test`'s closing line) instead of passing
//! without having run, and under `CI=true` it runs and fails.

use std::path::{Path, PathBuf};

/// What a test's body calls → the `xgate_missing` value its attributes must name.
const NEEDS: [(&str, &[&str]); 6] = [
    ("Nginx::start", &["nginx"]),
    ("promtool()", &["promtool"]),
    ("browser()", &["chromium"]),
    ("Mounted::", &["mount"]),
    ("json-schema-test-suite", &["json-schema-test-suite"]),
    ("suite_folder()", &["json-schema-test-suite"]),
];

/// The Rust files under `folder`, recursively.
fn rust_files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files
}

/// Each test of `source` (rustfmt's layout): its name, its attributes (from its test attribute
/// to its `fn`) and its body (from its `fn` to the closing brace at the `fn`'s indentation).
fn tests_of(source: &str) -> Vec<(String, String, String)> {
    let mut starts: Vec<usize> = source
        .match_indices("#[tokio::test")
        .chain(source.match_indices("#[test]"))
        .map(|(at, _)| at)
        .collect();
    starts.sort_unstable();
    starts
        .into_iter()
        .filter_map(|start| {
            let item = &source[start..];
            let signature = item.find("fn ")?;
            let line_start = item[..signature].rfind('\n').map_or(0, |at| at + 1);
            let indent: String = item[line_start..]
                .chars()
                .take_while(|c| *c == ' ')
                .collect();
            let closing = format!("\n{indent}}}\n");
            let end = item[signature..]
                .find(&closing)
                .map_or(item.len(), |at| signature + at);
            let name = item[signature + 3..]
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .next()?
                .to_owned();
            Some((
                name,
                item[..signature].to_owned(),
                item[signature..end].to_owned(),
            ))
        })
        .collect()
}

#[test]
fn every_test_that_needs_a_tool_is_ignored_without_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut unmarked = Vec::new();
    let mut marked = 0;
    for file in [root.join("tests"), root.join("src")]
        .iter()
        .flat_map(|folder| rust_files(folder))
    {
        if file.ends_with("tidy.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        for (name, attributes, body) in tests_of(&source) {
            for (call, needs) in NEEDS {
                if !body.contains(call) {
                    continue;
                }
                for need in needs {
                    if attributes.contains(&format!("xgate_missing = \"{need}\"")) {
                        marked += 1;
                    } else {
                        unmarked.push(format!(
                            "{}: {name} calls {call} without #[cfg_attr(xgate_missing = \"{need}\", ignore = ...)]",
                            file.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(unmarked.is_empty(), "{}", unmarked.join("\n"));
    assert!(
        marked >= 10,
        "only {marked} marks found: the scan is broken"
    );
}
