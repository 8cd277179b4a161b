//! `xgate demo` as a user runs it: the real binary from the repository root, on the example
//! configuration (SPEC §5) — with `--free-ports`, so the test never takes the fixed ports a
//! user's own demo may be running on; the addresses are read from what the demo prints.

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use crate::helpers::{client, eventually};

const LICENSE: &str = "/exchange/market-regulation/business-licenses/91350100M000100Y43";
const REGISTRATIONS: &str = "/exchange/tax/taxpayer-registrations";

/// A running `xgate demo`, killed if the test ends before it exits.
struct Demo {
    child: Child,
    /// The lines of its standard output as they are printed.
    lines: std::sync::mpsc::Receiver<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Demo {
    /// `xgate demo --free-ports`, with `data_listen` as `XGATE_LISTEN` when given.
    fn start(data_listen: Option<&str>) -> Demo {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xgate"));
        command
            .args(["demo", "--free-ports"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("XGATE_CONFIG")
            .env_remove("XGATE_LISTEN")
            .env_remove("XGATE_ADMIN_LISTEN");
        if let Some(listen) = data_listen {
            command.env("XGATE_LISTEN", listen);
        }
        let mut child = command
            // One worker: the current-thread scheduler, as the benchmark runs the gateway.
            .env("XGATE_WORKERS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("xgate demo starts");
        let (sender, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().map(|pipe| read_all(pipe, Some(sender)));
        let stderr = child.stderr.take().map(|pipe| read_all(pipe, None));
        Demo {
            child,
            lines,
            stdout: Some(stdout.unwrap()),
            stderr: Some(stderr.unwrap()),
        }
    }

    /// The data and admin planes' base URLs, from the demo's first line ("the gateway is on
    /// http://A (data plane) and http://B (admin plane)").
    fn planes(&self) -> (String, String) {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .expect("the demo prints where it listens");
            let Some(rest) = line.split_once("the gateway is on ").map(|(_, rest)| rest) else {
                continue;
            };
            let (data, rest) = rest.split_once(" (data plane) and ").expect("both planes");
            let admin = rest
                .split_once(" (admin plane)")
                .expect("the admin plane")
                .0;
            return (data.to_owned(), admin.to_owned());
        }
    }

    /// Waits for the process to exit; past the deadline the test fails (and the drop kills it).
    async fn wait(&mut self, deadline: Duration) -> ExitStatus {
        eventually(
            format!("xgate demo exits within {deadline:?}"),
            deadline,
            || {
                let status = self.child.try_wait().expect("the demo's status");
                async move { status }
            },
        )
        .await
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
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// Reads `pipe` to its end on a thread of its own, passing each line to `lines` as it comes.
fn read_all(
    pipe: impl Read + Send + 'static,
    lines: Option<std::sync::mpsc::Sender<String>>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(lines) = &lines {
                lines.send(line.clone()).ok();
            }
            text.push_str(&line);
            text.push('\n');
        }
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
async fn wait_until_ready(demo: &mut Demo, http: &reqwest::Client, data: &str) {
    eventually("xgate demo becomes ready", Duration::from_secs(30), || {
        if let Some(status) = demo.child.try_wait().unwrap() {
            let (stdout, stderr) = demo.output();
            panic!("xgate demo exited early ({status}):\n{stdout}\n{stderr}");
        }
        let ready = http.get(format!("{data}/readyz")).send();
        async move {
            let ready = ready.await;
            ready.is_ok_and(|response| response.status() == StatusCode::OK)
        }
    })
    .await;
}

/// A GET through the gateway as `token`: the status and the JSON body.
async fn get_json(
    http: &reqwest::Client,
    data: &str,
    path: &str,
    token: &str,
) -> (StatusCode, Value) {
    let response = http
        .get(format!("{data}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The sorted member names of a JSON object.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_its_calls_stops_on_sigterm_and_refuses_a_taken_port() {
    let http = client();
    let mut demo = Demo::start(None);
    let (data, admin) = demo.planes();
    let data = data.as_str();
    wait_until_ready(&mut demo, &http, data).await;

    // 1. The tax bureau reads a business licence that market regulation's backend answers in
    //    its own layout (TYSHXYDM, ZCZB in 万元, CLRQ YYYYMMDD, DJZT "1"), and gets it in the
    //    tax bureau's layout.
    let (status, license) = get_json(&http, data, LICENSE, "demo-tax").await;
    assert_eq!(status, StatusCode::OK, "{license}");
    assert_eq!(license["nsrsbh"], "91350100M000100Y43", "{license}");
    assert_eq!(license["nsrmc"], "福州闽江数据科技有限公司");
    assert_eq!(license["djzclx"], "有限责任公司");
    assert_eq!(license["fddbrxm"], "林志远");
    assert_eq!(license["zczb"], "10000000", "1000 万元 as 元 text");
    assert_eq!(license["djrq"], "2016/08/18");
    assert_eq!(license["djzt"], "存续");
    assert_eq!(license["hzrq"], "2023/04/12");
    assert_eq!(
        license["tzfxx"],
        serde_json::json!([
            {"tzfmc": "林志远", "tzje": "6000000"},
            {"tzfmc": "福建海峡创新投资有限公司", "tzje": "4000000"}
        ])
    );
    for foreign in ["uscc", "TYSHXYDM", "ZCZB", "registered_capital_yuan"] {
        assert!(license.get(foreign).is_none(), "{foreign} in {license}");
    }

    // 2. Human resources has no format for licences: the shared layout.
    let (status, shared) = get_json(&http, data, LICENSE, "demo-human-resources").await;
    assert_eq!(status, StatusCode::OK, "{shared}");
    assert_eq!(shared["uscc"], "91350100M000100Y43");
    assert_eq!(shared["type"], "limited_liability_company");
    assert_eq!(shared["registered_capital_yuan"], 10_000_000);
    assert_eq!(shared["established_on"], "2016-08-18");
    assert_eq!(shared["status"], "active");
    assert_eq!(shared["shareholders"][1]["contribution_yuan"], 4_000_000);

    // 3. Civil affairs gets the projected fields only, in its own layout.
    let (status, projected) = get_json(&http, data, LICENSE, "demo-civil-affairs").await;
    assert_eq!(status, StatusCode::OK, "{projected}");
    assert_eq!(
        keys(&projected),
        ["DJZT", "DWMC", "FDDBR", "SHXYDM"],
        "{projected}"
    );
    assert_eq!(projected["SHXYDM"], shared["uscc"]);
    assert_eq!(projected["DWMC"], shared["name"]);
    assert_eq!(projected["DJZT"], "存续");
    assert_eq!(projected["FDDBR"], shared["legal_representative"]["name"]);

    // The other simulated backends answer in their own layouts too; every answer translates
    // into a valid shared record (a consumer without a format gets that record).
    let (status, marriage) = get_json(
        &http,
        data,
        "/exchange/civil-affairs/marriage-records/350104199003080571",
        "demo-public-security",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{marriage}");
    assert_eq!(marriage["registration_type"], "marriage");
    assert_eq!(marriage["registered_on"], "2021-05-20");
    assert_eq!(marriage["parties"][0]["gender"], "male");
    assert_eq!(marriage["parties"][1]["gender"], "female");
    assert_eq!(marriage["parties"][1]["date_of_birth"], "1992-11-21");
    let (status, insurance) = get_json(
        &http,
        data,
        "/exchange/human-resources/social-insurance-records/350103199211210848",
        "demo-tax",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{insurance}");
    assert_eq!(insurance["insurances"][1]["type"], "medical");
    assert_eq!(
        insurance["insurances"][0]["monthly_contribution_base_yuan"],
        8500
    );
    assert_eq!(insurance["pension_contribution_months"], 106);
    assert_eq!(insurance["updated_at"], "2024-05-06T08:30:00+08:00");
    assert!(
        insurance.get("GRBH").is_none(),
        "the internal person number is dropped: {insurance}"
    );
    let (status, clearance) = get_json(
        &http,
        data,
        "/exchange/tax/tax-clearances/91350100M000100Y43",
        "demo-market-regulation",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{clearance}");
    assert_eq!(clearance["has_outstanding_tax"], false);
    assert_eq!(clearance["outstanding_tax_yuan"], 0);
    assert_eq!(clearance["credit_rating_year"], 2023);
    assert_eq!(clearance["checked_at"], "2024-05-20T14:03:11+08:00");

    // 4. The invalid registration, in market regulation's layout, is refused with its three
    //    mistakes, in Chinese, at market regulation's own fields with the shared ones beside.
    let response = http
        .post(format!("{data}{REGISTRATIONS}"))
        .bearer_auth("demo-market-regulation")
        .header("accept-language", "zh-CN")
        .json(&demo_request("taxpayer-registrations.invalid.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:xgate:problem:schema-validation");
    assert!(has_chinese(problem["title"].as_str().unwrap()), "{problem}");
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{problem}");
    let mut places: Vec<(&str, &str)> = errors
        .iter()
        .map(|error| {
            assert!(has_chinese(error["message"].as_str().unwrap()), "{error}");
            (
                error["pointer"].as_str().unwrap(),
                error["shared_pointer"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    places.sort_unstable();
    assert_eq!(
        places,
        [
            ("/FDDBR/YDDH", "/legal_representative/mobile_phone"),
            ("/TYSHXYDM", "/uscc"),
            ("/ZS", "/address"),
        ],
        "{problem}"
    );
    let missing = errors
        .iter()
        .find(|error| error["pointer"] == "/ZS")
        .unwrap();
    assert_eq!(missing["keyword"], "required");
    assert!(
        missing["message"].as_str().unwrap().contains("ZS"),
        "the missing field is named as market regulation names it: {missing}"
    );

    // 5. The valid one reaches the tax bureau; its receipt (answered in the tax layout) comes
    //    back in market regulation's layout.
    let response = http
        .post(format!("{data}{REGISTRATIONS}"))
        .bearer_auth("demo-market-regulation")
        .json(&demo_request("taxpayer-registrations.valid.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["CLJG"], "1", "registered: {receipt}");
    assert_eq!(receipt["TYSHXYDM"], "91350102MA8RQ1W633");
    assert_eq!(receipt["NSRSBH"], "91350102MA8RQ1W633");
    assert_eq!(receipt["ZGSWJGDM"], "13501020000");
    assert_eq!(receipt["JSSJ"], "2019-03-01 10:15:42");
    assert!(receipt.get("status").is_none(), "{receipt}");

    // 6. Civil affairs may not register taxpayers.
    let response = http
        .post(format!("{data}{REGISTRATIONS}"))
        .bearer_auth("demo-civil-affairs")
        .json(&demo_request("taxpayer-registrations.valid.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // 7. Market regulation checks a licence in its own layout without sending it: an
    //    impossible date of establishment does not convert, and is named by its own field.
    let own_license: Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("demo/backends/market-regulation/business-licenses.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut impossible = own_license.clone();
    impossible["CLRQ"] = Value::from("20160231");
    let response = http
        .post(format!("{data}/validate/business-license?format=own"))
        .bearer_auth("demo-market-regulation")
        .header("accept-language", "zh-CN")
        .json(&impossible)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["valid"], false, "{result}");
    assert_eq!(result["errors"][0]["pointer"], "/CLRQ", "{result}");
    assert_eq!(
        result["errors"][0]["shared_pointer"], "/established_on",
        "{result}"
    );
    assert_eq!(result["errors"][0]["keyword"], "translation", "{result}");

    // 8. The administrator's dry run turns the backend's licence into the very shared record
    //    that consumers without a format receive.
    let response = http
        .post(format!(
            "{admin}/admin/translate/market-regulation/business-license?direction=to-shared"
        ))
        .bearer_auth("demo-data-bureau")
        .json(&own_license)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let dry_run: Value = response.json().await.unwrap();
    assert_eq!(dry_run, shared);

    // 9. Certificate lookups of the three example types reach their simulated issuers once,
    //    then come from the cache; the issuer's invalidation sends the next lookup back to it.
    for (path, consumer, field, value) in [
        (
            "/certificates/business-license/91350100M000100Y43",
            "demo-tax",
            "uscc",
            "91350100M000100Y43",
        ),
        (
            "/certificates/marriage-certificate/1.2.156.3005.2.11100000000013338W002.113501020036827137.3501022021001347.001.F",
            "demo-public-security",
            "certificate_number",
            "J350102-2021-001347",
        ),
        (
            "/certificates/resident-identity/350104199003080571",
            "demo-market-regulation",
            "resident_id",
            "350104199003080571",
        ),
    ] {
        for expected_cache in ["miss", "hit"] {
            let response = http
                .get(format!("{data}{path}"))
                .bearer_auth(consumer)
                .header("xgate-purpose", "demo")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(response.headers()["xgate-cache"], expected_cache, "{path}");
            let certificate: Value = response.json().await.unwrap();
            assert_eq!(certificate[field], value, "{certificate}");
        }
    }
    let license = "/certificates/business-license/91350100M000100Y43";
    let response = http
        .post(format!("{data}{license}/invalidate"))
        .bearer_auth("demo-market-regulation")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = http
        .get(format!("{data}{license}"))
        .bearer_auth("demo-tax")
        .header("xgate-purpose", "demo")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["xgate-cache"], "miss");

    // 17-18. Personal data: the residents service wants a listed purpose, masks the id and
    //    name for human resources only, and the subject lookup finds who looked and why.
    let resident = "/exchange/public-security/residents/350104199003080571";
    let (status, problem) = get_json(&http, data, resident, "demo-tax").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["type"], "urn:xgate:problem:purpose-required");
    let read = |token: &'static str, purpose: &'static str| {
        let http = http.clone();
        let url = format!("{data}{resident}");
        async move {
            let response = http
                .get(url)
                .bearer_auth(token)
                .header("xgate-purpose", purpose)
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, clear) = read("demo-tax", "tax-assessment").await;
    assert_eq!(status, StatusCode::OK, "{clear}");
    assert_eq!(clear["resident_id"], "350104199003080571");
    assert_eq!(clear["name"], "陈晓东");
    let (status, masked) = read("demo-human-resources", "benefit-review").await;
    assert_eq!(status, StatusCode::OK, "{masked}");
    assert_eq!(masked["resident_id"], "350104********0571");
    assert_eq!(masked["name"], "陈**");
    let (status, refused) = read("demo-human-resources", "tax-assessment-please").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, looked) = get_json(
        &http,
        &admin,
        "/audit/subjects/resident/350104199003080571",
        "demo-audit-office",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{looked}");
    let seen: Vec<(&str, &str, &str)> = looked["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["consumer"].as_str().unwrap(),
                entry["service"].as_str().unwrap(),
                entry["purpose"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        &seen[..2],
        [
            ("human-resources", "residents", "benefit-review"),
            ("tax", "residents", "tax-assessment"),
        ],
        "{looked}"
    );
    // The resident identity lookups of step 9 concerned the same person.
    assert!(
        seen.contains(&("market-regulation", "resident-identity", "-")),
        "{looked}"
    );

    // SIGTERM stops it cleanly.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(demo.child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
    let status = demo.wait(Duration::from_secs(30)).await;
    let (stdout, stderr) = demo.output();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stdout.contains(&format!("curl -s {data}/")), "{stdout}");
    assert!(stdout.contains("Bearer demo-tax"), "{stdout}");
    assert!(
        stdout.contains("/validate/business-license?format=own"),
        "{stdout}"
    );
    assert!(
        stdout.contains("/admin/translate/market-regulation/business-license?direction=to-shared"),
        "{stdout}"
    );
    assert!(
        stdout.contains("/certificates/business-license/91350100M000100Y43/invalidate"),
        "{stdout}"
    );
    drop(demo);

    // With the data port taken, the demo stops at once and says which port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let taken_address = taken.local_addr().unwrap().to_string();
    let mut second = Demo::start(Some(&taken_address));
    let status = second.wait(Duration::from_secs(30)).await;
    let (_, stderr) = second.output();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&taken_address), "{stderr}");
    drop(taken);
}

/// The fixed ports of the demo without `--free-ports` (README): the planes and the five
/// simulated departments.
const FIXED_PORTS: [u16; 7] = [8080, 9090, 7101, 7102, 7103, 7104, 7105];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_demos_on_free_ports_run_side_by_side_and_neither_takes_a_fixed_port() {
    let http = client();
    let mut first = Demo::start(None);
    let mut second = Demo::start(None);
    let planes = [first.planes(), second.planes()];
    wait_until_ready(&mut first, &http, &planes[0].0).await;
    wait_until_ready(&mut second, &http, &planes[1].0).await;
    let mut ports = std::collections::BTreeSet::new();
    for (data, admin) in &planes {
        for url in [data, admin] {
            let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
            assert!(!FIXED_PORTS.contains(&port), "{url} is a fixed port");
            ports.insert(port);
        }
        // Each serves the licence through its own simulated market regulation.
        let (status, license) = get_json(&http, data, LICENSE, "demo-tax").await;
        assert_eq!(status, StatusCode::OK, "{license}");
    }
    assert_eq!(ports.len(), 4, "four distinct planes: {planes:?}");
    // The simulated departments are on free ports too: none of the fixed ones answers for them
    // in the calls a demo prints.
    for demo in [&mut first, &mut second] {
        demo.child.kill().ok();
        demo.wait(Duration::from_secs(30)).await;
        let (stdout, _) = demo.output();
        for port in FIXED_PORTS {
            assert!(
                !stdout.contains(&format!("127.0.0.1:{port}/")),
                "the printed calls name the fixed port {port}:\n{stdout}"
            );
        }
    }
}
