//! Checks of the tests themselves, in the style of rust-analyzer's tidy tests: a test that needs
//! a tool or test data carries the `cfg_attr` that `build.rs` drives, so that where the tool is
//! missing it is *ignored* (and counted so in `cargo test`'s closing line) instead of passing
//! without having run, and under `CI=true` it runs and fails.
//!
//! And ARCHITECTURE.md's code map, held against the code: every module of the three crates has
//! its row, every intra-crate reference (`crate::`, `super::`, `self::` paths) is listed there
//! and every listed dependency is used, the modules import no cycle, and the core's
//! `Cargo.toml` names no crate that does I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a test's body calls → the `xgate_missing` value its attributes must name.
const NEEDS: [(&str, &[&str]); 7] = [
    ("TestDatabase::new", &["postgres"]),
    ("Nginx::start", &["nginx"]),
    ("promtool()", &["promtool"]),
    ("browser()", &["chromium"]),
    ("Mounted::", &["mount"]),
    ("json-schema-test-suite", &["json-schema-test-suite"]),
    ("suite_folder(", &["json-schema-test-suite"]),
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

/// The workspace's crates: their package names and folders (each with its `src/`), in the order
/// of ARCHITECTURE.md's code map.
const CRATES: [(&str, &str); 3] = [
    ("xgate-core", "crates/xgate-core"),
    ("xgate-audit", "crates/xgate-audit"),
    ("xgate", "."),
];

/// What the core may never depend on: it does no I/O.
const NOT_IN_THE_CORE: [&str; 9] = [
    "tokio",
    "hyper",
    "hyper-util",
    "axum",
    "rusqlite",
    "prometheus",
    "reqwest",
    "socket2",
    "mio",
];

/// One row of a crate's table in the code map.
struct Row {
    /// The first column: the module, a file's path under `src/` without `.rs`.
    module: String,
    /// The backticked names of the "depends on" column, outside parentheses.
    depends_on: Vec<String>,
}

/// The code map of `architecture` (ARCHITECTURE.md): each `### crate` heading of the "Code map"
/// section with the rows of its table.
fn code_map(architecture: &str) -> Vec<(String, Vec<Row>)> {
    let start = architecture
        .find("\n## Code map")
        .expect("ARCHITECTURE.md has a \"## Code map\" section");
    let section = &architecture[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut tables: Vec<(String, Vec<Row>)> = Vec::new();
    for line in section.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            tables.push((heading.trim().to_owned(), Vec::new()));
            continue;
        }
        if !line.starts_with('|') || line.starts_with("| module") || line.starts_with("| ---") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').collect();
        assert!(
            cells.len() >= 4,
            "a code map row of fewer than three cells: {line}"
        );
        let Some((_, table)) = tables.last_mut() else {
            panic!("a code map row before any `### crate` heading: {line}");
        };
        let module = backticked_outside_parentheses(cells[1])
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("a code map row without a module: {line}"));
        table.push(Row {
            module,
            depends_on: backticked_outside_parentheses(cells[cells.len() - 2]),
        });
    }
    tables
}

/// The backticked names of `cell`, leaving out those inside parentheses (commentary).
fn backticked_outside_parentheses(cell: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut name: Option<String> = None;
    for c in cell.chars() {
        match (&mut name, c) {
            (Some(_), '`') => names.extend(name.take().filter(|_| depth == 0)),
            (Some(name), c) => name.push(c),
            (None, '`') => name = Some(String::new()),
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, _) => {}
        }
    }
    names
        .into_iter()
        .map(|name| name.trim().to_owned())
        .filter(|name| name.chars().any(char::is_alphanumeric) && name != "nothing")
        .collect()
}

/// `source` without its `//` comment lines and without the `#[cfg(test)] mod tests` block that
/// ends a file.
fn code_of(source: &str) -> String {
    let source = source
        .find("\n#[cfg(test)]\nmod tests {")
        .map_or(source, |at| &source[..at]);
    source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The paths the `use` tree or path at the start of `text` spells, each as its segments: a group
/// (`a::{b, c::{d, e}}`) spells one path per member.
fn paths_at(text: &str) -> Vec<Vec<String>> {
    fn tree(chars: &[char], at: &mut usize, prefix: Vec<String>) -> Vec<Vec<String>> {
        let mut segments = prefix;
        loop {
            while chars.get(*at).is_some_and(|c| c.is_whitespace()) {
                *at += 1;
            }
            if chars.get(*at) == Some(&'{') {
                *at += 1;
                let mut paths = Vec::new();
                loop {
                    paths.extend(tree(chars, at, segments.clone()));
                    while chars.get(*at).is_some_and(|c| c.is_whitespace()) {
                        *at += 1;
                    }
                    match chars.get(*at) {
                        Some(',') => *at += 1,
                        Some('}') => {
                            *at += 1;
                            return paths;
                        }
                        // Not a `use` group after all (`*`, a macro): what was read so far.
                        _ => return paths,
                    }
                    while chars.get(*at).is_some_and(|c| c.is_whitespace()) {
                        *at += 1;
                    }
                    if chars.get(*at) == Some(&'}') {
                        *at += 1;
                        return paths;
                    }
                }
            }
            let start = *at;
            while chars.get(*at).is_some_and(|c| is_identifier_char(*c)) {
                *at += 1;
            }
            if *at == start {
                return vec![segments];
            }
            segments.push(chars[start..*at].iter().collect());
            if chars.get(*at) == Some(&':') && chars.get(*at + 1) == Some(&':') {
                *at += 2;
            } else {
                return vec![segments];
            }
        }
    }
    let chars: Vec<char> = text.chars().take(4096).collect();
    tree(&chars, &mut 0, Vec::new())
}

/// Where `name` occurs in `code` as a whole identifier followed by `after`, not as the tail of
/// a longer path (`a::name`).
fn starts_of(code: &str, name: &str, after: &str) -> Vec<usize> {
    let needle = format!("{name}{after}");
    code.match_indices(&needle)
        .map(|(at, _)| at)
        .filter(|at| {
            let before = &code[..*at];
            !before.ends_with(is_identifier_char) && !before.ends_with("::")
        })
        .collect()
}

/// The segments of `module` (`registry/draft` → `registry`, `draft`; none for `lib` and `main`).
fn segments_of(module: &str) -> Vec<String> {
    if module == "lib" || module == "main" {
        return Vec::new();
    }
    module.split('/').map(str::to_owned).collect()
}

/// The module of `modules` that the absolute path `segments` names: its longest prefix that is
/// a module, else `root`.
fn module_of(segments: &[String], modules: &BTreeSet<String>, root: &str) -> String {
    (1..=segments.len())
        .rev()
        .map(|length| segments[..length].join("/"))
        .find(|module| modules.contains(module))
        .unwrap_or_else(|| root.to_owned())
}

/// The modules of its crate that `module`'s `code` references: through `crate::`, `super::` and
/// `self::` paths, and through paths that start with a child module it declares (`mod walk;` …
/// `walk::Step`).
fn references_of(code: &str, module: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let root = if module == "main" { "main" } else { "lib" };
    let own = segments_of(module);
    let children: Vec<String> = code
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("pub ").unwrap_or(line);
            let line = line.strip_prefix("pub(crate) ").unwrap_or(line);
            let child = line.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(child.trim().to_owned())
        })
        .collect();
    let mut references = BTreeSet::new();
    for start in ["crate", "super", "self"]
        .into_iter()
        .chain(children.iter().map(String::as_str))
        .flat_map(|name| starts_of(code, name, "::"))
    {
        for path in paths_at(&code[start..]) {
            let mut path = path.into_iter().peekable();
            let mut absolute = match path.peek().map(String::as_str) {
                Some("crate") => {
                    path.next();
                    Vec::new()
                }
                Some("self") => {
                    path.next();
                    own.clone()
                }
                Some("super") => {
                    let mut base = own.clone();
                    while path.next_if(|segment| segment == "super").is_some() {
                        base.pop();
                    }
                    base
                }
                _ => own.clone(),
            };
            absolute.extend(path);
            references.insert(module_of(&absolute, modules, root));
        }
    }
    references.remove(module);
    references
}

/// Whether `ancestor` is `module`'s crate root or a module it is nested in.
fn is_ancestor(ancestor: &str, module: &str) -> bool {
    (ancestor == "lib" && module != "lib" && module != "main")
        || module.starts_with(&format!("{ancestor}/"))
}

/// The cycles of `edges`: each strongly connected component of more than one module, with one
/// cycle through it (Tarjan's algorithm).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        components: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, node: &'a str) {
            let index = self.index.len();
            self.index.insert(node, index);
            self.low.insert(node, index);
            self.stack.push(node);
            for next in self.edges.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.stack.contains(&next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let at = self.stack.iter().rposition(|n| *n == node).unwrap();
                let component: Vec<String> = self.stack.drain(at..).map(str::to_owned).collect();
                if component.len() > 1 {
                    self.components.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        components: Vec::new(),
    };
    for node in edges.keys() {
        if !tarjan.index.contains_key(node.as_str()) {
            tarjan.visit(node);
        }
    }
    // One cycle through each component: breadth first from its first module back to it.
    tarjan
        .components
        .into_iter()
        .map(|component| {
            let members: BTreeSet<&str> = component.iter().map(String::as_str).collect();
            let first = component.iter().min().unwrap().as_str();
            let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([first]);
            'search: while let Some(node) = queue.pop_front() {
                for next in edges.get(node).into_iter().flatten() {
                    let next = next.as_str();
                    if !members.contains(next) {
                        continue;
                    }
                    if next == first {
                        came_from.insert(first, node);
                        break 'search;
                    }
                    if !came_from.contains_key(next) {
                        came_from.insert(next, node);
                        queue.push_back(next);
                    }
                }
            }
            let mut cycle = vec![first.to_owned()];
            let mut node = came_from[first];
            while node != first {
                cycle.push(node.to_owned());
                node = came_from[node];
            }
            cycle.push(first.to_owned());
            cycle.reverse();
            cycle
        })
        .collect()
}

/// Whether `code` names the crate `name` (`name::` or `use name`, `-` written `_`).
fn names_crate(code: &str, name: &str) -> bool {
    let name = name.replace('-', "_");
    !starts_of(code, &name, "::").is_empty()
        || code.match_indices(&format!("use {name}")).any(|(at, _)| {
            let after = &code[at + 4 + name.len()..];
            !code[..at].ends_with(is_identifier_char) && !after.starts_with(is_identifier_char)
        })
}

#[test]
fn code_map_matches_the_imports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let map = code_map(&architecture);
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for (name, folder) in CRATES {
        let src = root.join(folder).join("src");
        let shown_src = Path::new(folder).join("src");
        let shown_src = shown_src.strip_prefix(".").unwrap_or(&shown_src).to_owned();
        let files: BTreeMap<String, PathBuf> = rust_files(&src)
            .into_iter()
            .map(|file| {
                let relative = file.strip_prefix(&src).unwrap().with_extension("");
                let module = relative
                    .components()
                    .map(|part| part.as_os_str().to_str().unwrap())
                    .collect::<Vec<_>>()
                    .join("/");
                (module, file)
            })
            .collect();
        let modules: BTreeSet<String> = files.keys().cloned().collect();
        let Some((_, rows)) = map.iter().find(|(heading, _)| heading == name) else {
            mismatches.push(format!(
                "ARCHITECTURE.md: no `### {name}` table in the code map"
            ));
            continue;
        };
        let mut rows_by_module: BTreeMap<&str, &Row> = BTreeMap::new();
        for row in rows {
            if rows_by_module.insert(&row.module, row).is_some() {
                mismatches.push(format!("{name}: two rows for `{}`", row.module));
            }
            if !modules.contains(&row.module) {
                mismatches.push(format!(
                    "{name}: the row `{}` names no file ({} does not exist)",
                    row.module,
                    shown_src.join(format!("{}.rs", row.module)).display()
                ));
            }
        }
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (module, file) in &files {
            let shown = file.strip_prefix(root).unwrap().display();
            let code = code_of(&std::fs::read_to_string(file).unwrap());
            let references = references_of(&code, module, &modules);
            edges.insert(
                module.clone(),
                references
                    .iter()
                    .filter(|reference| !is_ancestor(reference, module))
                    .cloned()
                    .collect(),
            );
            let Some(row) = rows_by_module.get(module.as_str()) else {
                mismatches.push(format!("{shown}: no row `{module}` in the `{name}` table"));
                continue;
            };
            checked += 1;
            let mut listed_modules = BTreeSet::new();
            for listed in &row.depends_on {
                let segments: Vec<String> = listed
                    .split(['/', ':'])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                let listed_module = module_of(&segments, &modules, "");
                if !listed_module.is_empty() {
                    if !references.contains(&listed_module) {
                        mismatches.push(format!(
                            "{shown}: `{module}` lists `{listed}`, which it never references (stale)"
                        ));
                    }
                    listed_modules.insert(listed_module);
                } else if !names_crate(&code, &segments[0]) {
                    mismatches.push(format!(
                        "{shown}: `{module}` lists `{listed}`, which is no module of {name} and a crate the file never names (stale)"
                    ));
                }
            }
            for reference in &references {
                if !listed_modules.contains(reference)
                    && !is_ancestor(reference, module)
                    && !is_ancestor(module, reference)
                {
                    mismatches.push(format!(
                        "{shown}: `{module}` references `{reference}`, which its row does not list"
                    ));
                }
            }
        }
        for cycle in cycles(&edges) {
            mismatches.push(format!(
                "{name}: an import cycle: {}",
                cycle
                    .iter()
                    .map(|module| format!("`{module}`"))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "ARCHITECTURE.md's code map and the code disagree:\n{}",
        mismatches.join("\n")
    );
    assert!(
        checked >= 60,
        "only {checked} modules checked: the scan is broken"
    );
}

#[test]
fn the_core_depends_on_nothing_that_does_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("crates/xgate-core/Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().unwrap();
    let mut tables: Vec<(String, &toml::Table)> = Vec::new();
    if let Some(dependencies) = manifest.get("dependencies").and_then(toml::Value::as_table) {
        tables.push(("[dependencies]".to_owned(), dependencies));
    }
    // `[target.'cfg(...)'.dependencies]` are dependencies of the core too.
    for (target, table) in manifest
        .get("target")
        .and_then(toml::Value::as_table)
        .into_iter()
        .flatten()
    {
        if let Some(dependencies) = table.get("dependencies").and_then(toml::Value::as_table) {
            tables.push((format!("[target.{target}.dependencies]"), dependencies));
        }
    }
    assert!(
        !tables.is_empty(),
        "xgate-core's Cargo.toml has no [dependencies]"
    );
    let mut forbidden = Vec::new();
    for (table_name, dependencies) in tables {
        for (key, value) in dependencies {
            // A renamed dependency (`io = { package = "tokio" }`) is still the crate it names.
            let package = value
                .get("package")
                .and_then(toml::Value::as_str)
                .unwrap_or(key);
            if NOT_IN_THE_CORE.contains(&package) {
                forbidden.push(format!("{table_name} {key} ({package})"));
            }
        }
    }
    assert!(
        forbidden.is_empty(),
        "crates/xgate-core does no I/O, yet depends on: {}",
        forbidden.join(", ")
    );
}
