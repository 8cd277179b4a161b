//! Finds the tools and data the tests need, so that a test without them is reported as
//! `ignored` with its reason (libtest's own count, in the closing line of `cargo test`) instead of
//! passing without having run. Under `CI=true` nothing is marked: every test runs, and one whose
//! tool is missing fails.
//!
//! Each missing thing becomes `--cfg xgate_missing="<name>"`; a test that needs it carries
//! `#[cfg_attr(xgate_missing = "<name>", ignore = "<why>")]`. The gateway itself never reads
//! these flags. `crates/xgate-core/build.rs` runs this file as a module, for its own tests that read the
//! test data. The script runs again when `CI` or `PATH` change, when a folder that may hold a
//! tool changes (a package was installed), or when the test data folder appears.

use std::env;
use std::path::PathBuf;

/// What the tests may need, by the name their `cfg_attr` uses.
const NEEDS: [&str; 6] = [
    "postgres",
    "nginx",
    "promtool",
    "chromium",
    "mount",
    "json-schema-test-suite",
];

/// Sets `xgate_missing` for each tool or data the tests need and this machine lacks.
pub fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=USER");
    println!("cargo:rerun-if-env-changed=XGATE_TEST_DATABASE_URL");
    let values: Vec<String> = NEEDS.iter().map(|need| format!("\"{need}\"")).collect();
    println!(
        "cargo:rustc-check-cfg=cfg(xgate_missing, values({}))",
        values.join(", ")
    );

    let folders = tool_folders();
    for folder in &folders {
        println!("cargo:rerun-if-changed={}", folder.display());
    }
    let suite = workspace_root().join("../shared/testdata/json-schema-test-suite");
    // A path that does not exist would make cargo run this script on every build; the nearest
    // folder that does exist changes when the suite is put in place.
    if let Some(existing) = suite.ancestors().find(|folder| folder.is_dir()) {
        println!("cargo:rerun-if-changed={}", existing.display());
    }

    if env::var("CI").as_deref() == Ok("true") {
        return;
    }
    let found = |name: &str| folders.iter().any(|folder| folder.join(name).is_file());
    let missing = [
        // The shared store's tests (issue 18) need a PostgreSQL server; `.ci/run` starts one.
        // Probed when the tests are built: a server started later needs `touch build.rs`.
        ("postgres", !database_answers()),
        ("nginx", !found("nginx")),
        ("promtool", !found("promtool")),
        ("chromium", !found("chromium") && !found("chromium-browser")),
        // Mounting a small file system: root, and the tools of `helpers::Mounted`.
        (
            "mount",
            !is_root()
                || !["mount", "umount", "truncate", "mkfs.ext4"]
                    .into_iter()
                    .all(found),
        ),
        ("json-schema-test-suite", !suite.is_dir()),
    ];
    for (need, is_missing) in missing {
        if is_missing {
            println!("cargo:rustc-cfg=xgate_missing=\"{need}\"");
        }
    }
}

/// The workspace's root folder (the one holding `Cargo.lock`): this script also builds for
/// `crates/xgate-core` (run by its `build.rs`), whose tests read the same test data.
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    manifest
        .ancestors()
        .find(|folder| folder.join("Cargo.lock").is_file())
        .unwrap_or(&manifest)
        .to_owned()
}

/// The folders of `PATH` plus the system ones (`/usr/sbin` holds nginx on Debian), as the
/// tests' `helpers::tool` searches them; only those that exist.
fn tool_folders() -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = env::var_os("PATH")
        .map(|paths| env::split_paths(&paths).collect())
        .unwrap_or_default();
    folders.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    folders.retain(|folder| folder.is_absolute() && folder.is_dir());
    folders.dedup();
    folders
}

/// The server the store's tests use (`XGATE_TEST_DATABASE_URL`, as `tests/it/helpers.rs`
/// reads it), by the default's address when the variable is unset.
const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Whether something accepts TCP connections at the test database's host and port (within a
/// second). A URL this cannot read counts as answering: the tests then say what is wrong.
fn database_answers() -> bool {
    use std::net::ToSocketAddrs;
    let url = env::var("XGATE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return true;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let Ok(addresses) = host_port.to_socket_addrs() else {
        return true;
    };
    addresses.into_iter().any(|address| {
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(1)).is_ok()
    })
}

/// Whether the build runs as root (the tests that mount a small file system need it), from the
/// effective uid of `/proc/self/status`; not Linux → not root.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}
