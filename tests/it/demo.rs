//! `xgate demo` as a user runs it: the real binary from the repository root, on the example
//! configuration's fixed ports (SPEC §5).
//!
//! Everything that uses those ports is in one test function, run step by step, so no two demos
//! race for them.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;

use crate::helpers::client;

const DATA: &str = "http://127.0.0.1:8080";
const LICENSE: &str = "/exchange/market-regulation/business-licenses/91350100M000100Y43";
const REGISTRATIONS: &str = "/exchange/tax/taxpayer-registrations";

/// A running `xgate demo`, killed if the test ends before it exits.
struct Demo {
    child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Demo {
    fn start() -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xgate"))
            .arg("demo")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("XGATE_CONFIG")
            .env_remove("XGATE_LISTEN")
            .env_remove("XGATE_ADMIN_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("xgate demo starts");
        let stdout = child.stdout.take().map(read_all);
        let stderr = child.stderr.take().map(read_all);
        Demo {
            child,
            stdout: Some(stdout.unwrap()),
            stderr: Some(stderr.unwrap()),
        }
    }

    /// Waits for the process to exit, killing it after the deadline.
    fn wait(&mut self, deadline: Duration) -> ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("the demo's status") {
                return status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!("xgate demo did not exit within {deadline:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the process printed, once it has exited.
    fn output(&mut self) -> (String, String) {
        let join = |handle: Option<std::thread::JoinHandle<String>>| {
            handle.map(|h| h.join().unwrap()).unwrap_or_default()
        };
        (join(self.stdout.take()), join(self.stderr.take()))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn demo_request(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("demo/requests/tax")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Whether `text` holds a CJK ideograph.
fn has_chinese(text: &str) -> bool {
    text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
}

/// Polls `/readyz` until the demo answers ready, failing if it exits first or takes too long.
async fn wait_until_ready(demo: &mut Demo, http: &reqwest::Client) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            let (stdout, stderr) = demo.output();
            panic!("xgate demo exited early ({status}):\n{stdout}\n{stderr}");
        }
        let ready = http.get(format!("{DATA}/readyz")).send().await;
        if ready.is_ok_and(|response| response.status() == StatusCode::OK) {
            return;
        }
        assert!(Instant::now() < deadline, "xgate demo did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_its_calls_stops_on_sigterm_and_refuses_a_taken_port() {
    let http = client();
    let mut demo = Demo::start();
    wait_until_ready(&mut demo, &http).await;

    // 1. The tax bureau reads a business licence.
    let response = http
        .get(format!("{DATA}{LICENSE}"))
        .bearer_auth("demo-tax")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let license: Value = response.json().await.unwrap();
    assert_eq!(license["uscc"], "91350100M000100Y43");
    assert!(license["registered_capital_yuan"].is_number(), "{license}");

    // 2. Civil affairs gets the projected fields only.
    let response = http
        .get(format!("{DATA}{LICENSE}"))
        .bearer_auth("demo-civil-affairs")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let projected: Value = response.json().await.unwrap();
    let mut keys: Vec<&String> = projected.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["legal_representative", "name", "status", "uscc"],
        "{projected}"
    );
    assert_eq!(
        projected["legal_representative"],
        serde_json::json!({"name": license["legal_representative"]["name"]})
    );

    // 3. The invalid registration is refused with its three mistakes, in Chinese.
    let response = http
        .post(format!("{DATA}{REGISTRATIONS}"))
        .bearer_auth("demo-market-regulation")
        .header("accept-language", "zh-CN")
        .json(&demo_request("taxpayer-registrations.invalid.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:xgate:problem:schema-validation");
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{problem}");
    for error in errors {
        assert!(has_chinese(error["message"].as_str().unwrap()), "{error}");
    }
    assert!(has_chinese(problem["title"].as_str().unwrap()), "{problem}");

    // 4. The valid one reaches the tax bureau.
    let response = http
        .post(format!("{DATA}{REGISTRATIONS}"))
        .bearer_auth("demo-market-regulation")
        .json(&demo_request("taxpayer-registrations.valid.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["status"], "registered", "{receipt}");

    // 5. Civil affairs may not register taxpayers.
    let response = http
        .post(format!("{DATA}{REGISTRATIONS}"))
        .bearer_auth("demo-civil-affairs")
        .json(&demo_request("taxpayer-registrations.valid.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // SIGTERM stops it cleanly.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(demo.child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
    let status = demo.wait(Duration::from_secs(30));
    let (stdout, stderr) = demo.output();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(
        stdout.contains("curl -s http://127.0.0.1:8080/"),
        "{stdout}"
    );
    assert!(stdout.contains("Bearer demo-tax"), "{stdout}");
    drop(demo);

    // With the data port taken, the demo stops at once and says which port.
    let taken = std::net::TcpListener::bind("127.0.0.1:8080").expect("port 8080 is free again");
    let mut second = Demo::start();
    let status = second.wait(Duration::from_secs(30));
    let (_, stderr) = second.output();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("127.0.0.1:8080"), "{stderr}");
    drop(taken);
}
