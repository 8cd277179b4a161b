//! The `xgate` command line: `token new`, the runtime's environment.

use std::process::Command;

use sha2::{Digest, Sha256};

#[test]
fn token_new_prints_a_fresh_token_and_its_sha256() {
    let run = || {
        let output = Command::new(env!("CARGO_BIN_EXE_xgate"))
            .args(["token", "new"])
            .output()
            .expect("xgate runs");
        assert!(output.status.success());
        let text = String::from_utf8(output.stdout).expect("UTF-8 output");
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|value| value.trim().to_owned())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        (field("token:"), field("sha256:"))
    };
    let (token, sha256) = run();
    assert!(token.starts_with("xg_") && token.len() == 67, "{token}");
    assert_eq!(sha256, hex::encode(Sha256::digest(token.as_bytes())));
    let (second, _) = run();
    assert_ne!(token, second, "every token is fresh");
}

#[test]
fn a_worker_count_that_is_not_a_positive_number_is_refused() {
    for bad in ["0", "-1", "two", ""] {
        let output = Command::new(env!("CARGO_BIN_EXE_xgate"))
            .args(["serve", "--config", "/nonexistent/xgate.toml"])
            .env("XGATE_WORKERS", bad)
            .output()
            .expect("xgate runs");
        assert!(!output.status.success(), "{bad:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("XGATE_WORKERS must be a positive number"),
            "{bad:?}: {stderr}"
        );
    }
}
