//! The `xgate` command line: `token new`, the runtime's environment, `serve`'s start-up checks,
//! its log output and its shutdown on SIGTERM.

use std::process::Command;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::*;

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

/// On SIGTERM `/readyz` answers 503 on both planes for `drain_delay_ms` while exchanges (on new
/// connections too) are still served, and the gateway keeps running; a second SIGTERM (an
/// operator insisting) cuts the delay short, and the gateway exits cleanly. The delay is far
/// longer than the test, so nothing here races a clock.
#[tokio::test]
async fn on_sigterm_readyz_answers_503_while_exchanges_are_served_until_a_second_sigterm() {
    const DRAIN_DELAY: Duration = Duration::from_secs(600);
    let echo = Upstream::echo().await;
    let config =
        standard(&echo, &echo).gateway(&format!("drain_delay_ms = {}", DRAIN_DELAY.as_millis()));
    config.write_main();
    let client = reqwest::Client::new();
    let (mut child, data, admin) = start_binary_planes(&config, &client).await;
    sigterm(&child.0, "SIGTERM");

    for base in [&data, &admin] {
        let not_ready = eventually("/readyz answers 503", Duration::from_secs(10), || {
            let client = client.clone();
            let url = format!("{base}/readyz");
            async move {
                let response = client.get(&url).send().await.ok()?;
                (response.status() == StatusCode::SERVICE_UNAVAILABLE)
                    .then_some(response.json::<Value>().await.ok()?)
            }
        })
        .await;
        assert_eq!(not_ready["reason"], "shutting down", "{not_ready}");
    }
    // A new connection, as a balancer's last requests would open, is still served.
    let response = reqwest::Client::new()
        .get(format!("{data}/exchange/market/echo/x"))
        .bearer_auth(token("tax"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Still draining: the delay is not over, so the gateway has not exited.
    assert!(
        child.0.try_wait().expect("the child's status").is_none(),
        "xgate exited during its drain delay"
    );
    let ready = client.get(format!("{data}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    sigterm(&child.0, "second SIGTERM");
    let status = eventually("xgate exits", Duration::from_secs(60), || {
        let status = child.0.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    assert!(status.success(), "{status:?}");
}

/// Sends SIGTERM to a child this test started and still owns.
#[allow(unsafe_code)] // kill: see the SAFETY comment
fn sigterm(child: &std::process::Child, what: &str) {
    let pid = libc::pid_t::try_from(child.id()).expect("a process id");
    // SAFETY: `kill` only sends a signal, to a child process the caller owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "{what} sent");
}

/// Text logs written to a file or a pipe hold no colour escape sequences.
#[tokio::test]
async fn text_logs_to_a_file_hold_no_colour_codes() {
    let config = ConfigDir::new().department("auditor", "auditor", "");
    config.write_main();
    let log = config.path("xgate.log");
    let client = reqwest::Client::new();
    let (child, _data, _admin) = start_binary_logging(&config, &client, Some(&log)).await;
    drop(child);
    let text = std::fs::read(&log).unwrap();
    assert!(
        String::from_utf8_lossy(&text).contains("listening"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    assert!(!text.contains(&0x1b), "{}", String::from_utf8_lossy(&text));
}

/// A trail that cannot be continued (chained with another hash than the configured one) stops
/// `serve` before it binds anything or says it is listening.
#[tokio::test]
async fn serve_refuses_an_audit_trail_it_cannot_continue_before_listening() {
    let (gateway, _echo, _records) = standard_gateway().await;
    let response = gateway
        .call(reqwest::Method::GET, "/exchange/market/licenses/1", "tax")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let config = on_audit_file(&gateway.audit_path(), "sm3");
    config.write_main();
    let (status, text) = run_binary(
        "serve",
        &config,
        &[
            ("XGATE_LISTEN", "127.0.0.1:0"),
            ("XGATE_ADMIN_LISTEN", "127.0.0.1:0"),
        ],
    );
    assert!(!status.success(), "{text}");
    assert!(text.contains("chained with sha256"), "{text}");
    assert!(!text.contains("listening"), "{text}");
    gateway.stop().await;
}
