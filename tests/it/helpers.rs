//! Test harness: real gateways on port 0 over configuration written to a temporary folder, and
//! real upstream HTTP servers on port 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use xgate::config::Overrides;
use xgate::gateway::Gateway;

/// Lowercase hex SHA-256, computed here rather than by the code under test.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The gateway's `/metrics` exposition (checking the status and the media type).
pub async fn metrics_text(gateway: &TestGateway) -> String {
    let response = gateway
        .client
        .get(gateway.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.unwrap()
}

/// The bearer token of a test department.
pub fn token(department: &str) -> String {
    format!("token-{department}")
}

/// The `token_sha256 = [...]` line for a test department.
pub fn token_line(department: &str) -> String {
    let digest = hex::encode(Sha256::digest(token(department).as_bytes()));
    format!("token_sha256 = [\"{digest}\"]")
}

/// A configuration folder under construction.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
    main_extra: String,
    gateway_extra: String,
}

impl ConfigDir {
    pub fn new() -> ConfigDir {
        let dir = tempfile::tempdir().expect("temporary folder");
        std::fs::create_dir_all(dir.path().join("config/departments")).unwrap();
        std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
        ConfigDir {
            dir,
            main_extra: String::new(),
            gateway_extra: String::new(),
        }
    }

    /// Extra lines in `[gateway]`.
    pub fn gateway(mut self, lines: &str) -> Self {
        self.gateway_extra.push_str(lines);
        self.gateway_extra.push('\n');
        self
    }

    /// Keeps the schemas and the trail in `database` (SPEC §13), this gateway named `instance`.
    ///
    /// Every gateway of one database gets the same audit key (SPEC §15: deployed like a TLS
    /// key), written where the default `[audit] key_file` is.
    pub fn store(self, database: &TestDatabase, instance: &str) -> Self {
        std::fs::create_dir_all(self.path("data")).unwrap();
        std::fs::write(self.path("data/audit.key"), database.audit_key()).unwrap();
        self.gateway(&format!("instance = \"{instance}\""))
            .main(&format!(
                "[store]\nurl = \"{}\"\npool_size = 8",
                database.url
            ))
    }

    /// Extra sections after `[gateway]`.
    pub fn main(mut self, lines: &str) -> Self {
        self.main_extra.push_str(lines);
        self.main_extra.push('\n');
        self
    }

    /// A department file; `body` holds everything after `id`, `name`, `role` and the token.
    pub fn department(self, id: &str, role: &str, body: &str) -> Self {
        let text = format!(
            "id = \"{id}\"\nname = \"Test {id}\"\nrole = \"{role}\"\n{}\n{body}\n",
            token_line(id)
        );
        std::fs::write(self.path(&format!("config/departments/{id}.toml")), text).unwrap();
        self
    }

    /// A schema version file.
    pub fn schema(self, name: &str, version: u32, document: Value) -> Self {
        let folder = self.path(&format!("schemas/{name}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{version}.json")), document.to_string()).unwrap();
        self
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn main_path(&self) -> PathBuf {
        self.path("config/xgate.toml")
    }

    /// Writes `config/xgate.toml`.
    pub fn write_main(&self) {
        // Tests stop their gateways at once unless they test the drain delay itself.
        let drain_delay = if self.gateway_extra.contains("drain_delay_ms") {
            ""
        } else {
            "drain_delay_ms = 0\n"
        };
        let text = format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{drain_delay}{}\n[registry]\ndir = \"../schemas\"\n{}\n",
            self.gateway_extra, self.main_extra
        );
        std::fs::write(self.main_path(), text).unwrap();
    }

    /// Writes the main file, loads the configuration and starts a gateway on port 0.
    pub async fn start(self) -> TestGateway {
        self.write_main();
        launch(self.dir).await
    }
}

/// Loads the configuration already written under `dir` and starts a gateway on port 0.
async fn launch(dir: tempfile::TempDir) -> TestGateway {
    let main_path = dir.path().join("config/xgate.toml");
    let loaded = xgate::startup::load(&main_path, &Overrides::default())
        .await
        .unwrap_or_else(|error| panic!("test configuration has problems:\n{error:#}"));
    let gateway = xgate::startup::start(loaded).await.expect("gateway");
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let data_address = data.local_addr().unwrap();
    let admin_address = admin.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(xgate::server::run(
        gateway.clone(),
        data,
        admin,
        async move {
            stopped.await.ok();
        },
    ));
    TestGateway {
        data: data_address,
        admin: admin_address,
        gateway,
        stop: Some(stop),
        task: Some(task),
        client: client(),
        _dir: dir,
    }
}

/// A plain HTTP/1.1 client that keeps nothing from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A running gateway.
pub struct TestGateway {
    pub data: SocketAddr,
    pub admin: SocketAddr,
    pub gateway: Arc<Gateway>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.data, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// A request on the data plane as a department.
    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        department: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token(department))
    }

    /// Asks the gateway to shut down and waits until it has drained.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }

    /// Stops the gateway and starts a new one over the same folder, as after a restart: it
    /// serves what is on disk now (new ports).
    pub async fn restart(mut self) -> TestGateway {
        self.shut_down().await;
        launch(self._dir).await
    }

    /// Stops the gateway, keeping its folder, to start it again later
    /// ([`StoppedGateway::start`]) after changing the world meanwhile.
    pub async fn stop_keeping(mut self) -> StoppedGateway {
        self.shut_down().await;
        StoppedGateway { dir: self._dir }
    }

    /// The schema folder.
    pub fn schemas_dir(&self) -> PathBuf {
        self._dir.path().join("schemas")
    }

    /// The audit database (the default `[audit] path`).
    pub fn audit_path(&self) -> PathBuf {
        self._dir.path().join("data/audit.db")
    }

    /// The keyed digest (hex) of `bytes` under this gateway's audit key (the default
    /// `[audit] key_file`, SHA-256 trails): what its trail holds for a body, path or purpose.
    pub fn keyed(&self, bytes: &[u8]) -> String {
        let path = self.audit_path().with_file_name("audit.key");
        xgate_audit::AuditKey::load_or_create(&path, xgate_audit::AuditHash::Sha256)
            .expect("the gateway's audit key")
            .digest(bytes)
    }
}

/// A gateway stopped by [`TestGateway::stop_keeping`]: its configuration folder.
pub struct StoppedGateway {
    dir: tempfile::TempDir,
}

impl StoppedGateway {
    /// Starts a gateway over the same folder again (new ports).
    pub async fn start(self) -> TestGateway {
        launch(self.dir).await
    }
}

/// A real upstream HTTP server on port 0 that counts its calls.
pub struct Upstream {
    pub address: SocketAddr,
    pub calls: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Upstream {
    /// Serves `router` (every request is counted).
    pub async fn start(router: Router) -> Upstream {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let router = router.layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    next.run(request).await
                }
            },
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.ok();
        });
        Upstream {
            address,
            calls,
            task,
        }
    }

    /// An upstream that answers every request with a description of what it received:
    /// method, raw path and query, headers (lowercase names, values joined by ", "), body size
    /// and the body's SHA-256.
    pub async fn echo() -> Upstream {
        Upstream::start(Router::new().fallback(echo)).await
    }

    /// An upstream that always answers `status` with `body` as JSON.
    pub async fn fixed(status: StatusCode, body: Value) -> Upstream {
        let text = body.to_string();
        Upstream::start(Router::new().fallback(move || {
            let text = text.clone();
            async move {
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(text))
                    .unwrap()
            }
        }))
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub fn call_count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let description = json!({
        "method": parts.method.as_str(),
        "path_and_query": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""),
        "headers": headers_json(&parts.headers),
        "body_bytes": bytes.len(),
        "body_sha256": hex::encode(Sha256::digest(&bytes)),
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("x-upstream", "echo")
        .body(Body::from(description.to_string()))
        .unwrap()
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut object = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<binary>"))
            .collect();
        object.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    Value::Object(object)
}

/// The test record schema: a business licence in the shared layout, with Chinese id formats.
pub fn license_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["uscc", "name", "status"],
        "additionalProperties": false,
        "properties": {
            "uscc": {"type": "string", "format": "cn-uscc"},
            "name": {"type": "string", "minLength": 1, "maxLength": 100},
            "status": {"enum": ["active", "revoked", "cancelled"]},
            "established_on": {"type": "string", "format": "date"},
            "legal_representative": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "resident_id": {"type": "string", "format": "cn-resident-id"}
                }
            },
            "shareholders": {"type": "array", "items": {"type": "object"}}
        }
    })
}

/// A record valid under [`license_schema`].
pub fn license() -> Value {
    json!({
        "uscc": "91350100M000100Y43",
        "name": "福州闽江数据科技有限公司",
        "status": "active",
        "established_on": "2016-08-18",
        "legal_representative": {"name": "林志远", "resident_id": "11010519491231002X"},
        "shareholders": [{"name": "甲"}, {"name": "乙"}]
    })
}

/// The standard scenario: provider `market` with
/// - `echo`: no schemas, every common method, upstream = the echo server (under `/base`);
/// - `licenses`: GET with response schema `license`, upstream = `records`;
/// - `register`: POST with request schema `license` and response schema `license`, upstream = `records`;
///
/// consumers `tax` and `civil` (projected to /uscc and /name on `licenses`); `outsider` is a
/// department that may call nothing; `auditor` and `admin` have those roles.
pub fn standard(echo: &Upstream, records: &Upstream) -> ConfigDir {
    let echo_url = echo.url("/base");
    let records_url = records.url("/records");
    ConfigDir::new()
        .schema("license", 1, license_schema())
        .department(
            "market",
            "department",
            &format!(
                r#"
[services.echo]
upstream = "{echo_url}"
methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
consumers = ["tax"]

[services.licenses]
upstream = "{records_url}"
methods = ["GET"]
response_schema = "license"
consumers = ["tax", "civil"]
[services.licenses.fields]
civil = ["/uscc", "/name"]

[services.register]
upstream = "{records_url}"
methods = ["POST"]
request_schema = "license@1"
response_schema = "license"
consumers = ["tax"]
"#
            ),
        )
        .department("tax", "department", "")
        .department("civil", "department", "")
        .department("outsider", "department", "")
        .department("auditor", "auditor", "")
        .department("admin", "admin", "")
}

/// The standard scenario with a record upstream answering [`license`], started.
pub async fn standard_gateway() -> (TestGateway, Upstream, Upstream) {
    let echo = Upstream::echo().await;
    let records = Upstream::fixed(StatusCode::OK, license()).await;
    let gateway = standard(&echo, &records).start().await;
    (gateway, echo, records)
}

/// An upstream that keeps every request body as it arrived and answers each call with `status`,
/// `content-type: application/json` and `answer`, byte for byte (so tests can send what a
/// serializer would never write: duplicate keys, numbers past `f64`).
pub struct Recording {
    pub upstream: Upstream,
    bodies: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Recording {
    pub async fn start(status: StatusCode, answer: &[u8]) -> Recording {
        let bodies: Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Arc::default();
        let kept = bodies.clone();
        let answer = answer.to_vec();
        let router = Router::new().fallback(move |request: Request| {
            let kept = kept.clone();
            let answer = answer.clone();
            async move {
                let body = axum::body::to_bytes(request.into_body(), usize::MAX)
                    .await
                    .unwrap_or_default();
                kept.lock().unwrap().push(body.to_vec());
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(answer))
                    .unwrap()
            }
        });
        Recording {
            upstream: Upstream::start(router).await,
            bodies,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.upstream.url(path)
    }

    /// The request bodies received so far, in order.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().unwrap().clone()
    }

    pub fn call_count(&self) -> usize {
        self.upstream.call_count()
    }
}

/// Reads a problem response, checking its media type and shape.
pub async fn problem(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    let body: Value = response.json().await.expect("problem JSON");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:xgate:problem:")
    );
    assert!(body["title"].is_string() && body["detail"].is_string());
    assert!(body["request_id"].is_string());
    (status, body)
}

/// A child process that is killed if the test fails before it does.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Runs the real `xgate <command> --config <main file>` to its end, without the test's own
/// `XGATE_*` variables, plus `env`; its exit status and its stdout and stderr together.
pub fn run_binary(
    command: &str,
    config: &ConfigDir,
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let mut process = std::process::Command::new(env!("CARGO_BIN_EXE_xgate"));
    process
        .args([command, "--config"])
        .arg(config.main_path())
        .env_remove("XGATE_CONFIG")
        .env_remove("XGATE_LISTEN")
        .env_remove("XGATE_ADMIN_LISTEN");
    for (name, value) in env {
        process.env(name, value);
    }
    let output = process.output().expect("xgate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

/// A configuration of one auditor over another gateway's audit file, chaining with `hash`.
pub fn on_audit_file(path: &Path, hash: &str) -> ConfigDir {
    ConfigDir::new()
        .department("auditor", "auditor", "")
        .main(&format!(
            "[audit]\npath = {:?}\nhash = \"{hash}\"",
            path.display().to_string()
        ))
}

/// Starts the real `xgate serve` over `config` on free ports and waits (polling, with a
/// deadline) until its admin plane is ready; tries other ports if one was taken meanwhile.
/// Returns the process and the admin plane's base URL.
pub async fn start_binary(config: &ConfigDir, client: &reqwest::Client) -> (KillOnDrop, String) {
    let (child, _data, admin) = start_binary_planes(config, client).await;
    (child, admin)
}

/// [`start_binary`], returning the data plane's base URL too.
pub async fn start_binary_planes(
    config: &ConfigDir,
    client: &reqwest::Client,
) -> (KillOnDrop, String, String) {
    start_binary_logging(config, client, None).await
}

/// [`start_binary_planes`], writing the process's log (its stderr) to `log` when given.
pub async fn start_binary_logging(
    config: &ConfigDir,
    client: &reqwest::Client,
    log: Option<&Path>,
) -> (KillOnDrop, String, String) {
    for _attempt in 0..3 {
        let stderr = match log {
            Some(path) => std::process::Stdio::from(std::fs::File::create(path).unwrap()),
            None => std::process::Stdio::null(),
        };
        let (data_port, admin_port) = (free_port().await, free_port().await);
        let mut child = KillOnDrop(
            std::process::Command::new(env!("CARGO_BIN_EXE_xgate"))
                .args(["serve", "--config"])
                .arg(config.main_path())
                .env("XGATE_LISTEN", format!("127.0.0.1:{data_port}"))
                .env("XGATE_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
                .env_remove("NO_COLOR")
                .stdout(std::process::Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("xgate starts"),
        );
        let base = format!("http://127.0.0.1:{admin_port}");
        let ready = eventually(
            "xgate becomes ready",
            std::time::Duration::from_secs(30),
            || {
                // Exited: a port was taken between our check and its bind. Try others.
                let exited = child.0.try_wait().is_ok_and(|status| status.is_some());
                let ready = client.get(format!("{base}/readyz")).send();
                async move {
                    if exited {
                        return Some(false);
                    }
                    let ready = ready.await;
                    ready
                        .is_ok_and(|response| response.status() == StatusCode::OK)
                        .then_some(true)
                }
            },
        )
        .await;
        if ready {
            return (child, format!("http://127.0.0.1:{data_port}"), base);
        }
    }
    panic!("xgate could not start on free ports three times");
}

/// A free port on the loopback interface (bound, read, released).
pub async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// The deadline of most waits: a safety net against a hung gateway, not a timing assertion.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// What a probe of [`eventually`] answers: whether its condition holds yet (`bool`), or the
/// value it waits for, once there is one (`Option<T>`).
pub trait Settled {
    /// What [`eventually`] returns.
    type Value;
    /// The value, if the probe has settled.
    fn settled(self) -> Option<Self::Value>;
}

impl Settled for bool {
    type Value = ();
    fn settled(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Settled for Option<T> {
    type Value = T;
    fn settled(self) -> Option<T> {
        self
    }
}

/// Runs `probe` every few milliseconds until it settles (`true`, or `Some(value)`) and returns
/// what it found; fails the test with `what` once `within` has passed (a generous deadline
/// against a hung gateway, never a timing assertion). The one way the tests wait for something
/// to happen. `what` is written out only at the deadline, so a [`Described`] one can say what
/// was seen then.
pub async fn eventually<F, Fut>(
    what: impl std::fmt::Display,
    within: std::time::Duration,
    mut probe: F,
) -> <Fut::Output as Settled>::Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
    Fut::Output: Settled,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await.settled() {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A description for [`eventually`] made when it is shown: its function says what is seen at
/// the deadline.
pub struct Described<F>(pub F);

impl<F: Fn() -> String> std::fmt::Display for Described<F> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&(self.0)())
    }
}

/// An executable by name from `PATH` or the system folders (`/usr/sbin` holds nginx on Debian).
///
/// A test that needs a tool carries `#[cfg_attr(xgate_missing = "<tool>", ignore = "...")]`:
/// where `build.rs` did not find it, the test is *ignored* (counted as such in `cargo test`'s
/// closing line), and under `CI=true` nothing is ignored, so a missing tool fails here.
pub fn tool(name: &str, install_hint: &str) -> PathBuf {
    let mut folders: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    folders.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    folders
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing ({install_hint}); without CI=true the tests that need it are \
                 ignored when the build does not find it"
            )
        })
}

/// Fails the test unless it runs as root (needed to mount a small file system). Tests that call
/// it are ignored where the build did not run as root (`xgate_missing = "mount"`), except under
/// `CI=true`, which runs as root.
#[allow(unsafe_code)] // libc calls: see the SAFETY comments
pub fn assert_root(what: &str) {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(root, "{what} needs root (CI runs as root)");
}

/// A real nginx on a free loopback port, from its own temporary prefix (configuration, pid,
/// logs, temp folders), killed when dropped. nginx matters where its reading of a request does:
/// it percent-decodes and normalizes paths before it matches a `location`.
pub struct Nginx {
    pub address: SocketAddr,
    prefix: tempfile::TempDir,
    _process: KillOnDrop,
}

impl Nginx {
    /// Starts nginx serving `server_body` (the inside of its one `server { }` block, after the
    /// `listen` line); a test calling it is marked `xgate_missing = "nginx"` (see [`tool`]). Every
    /// request is logged as `<$request_uri> <$uri> <$status>`, one a line (see [`Nginx::log`]).
    pub async fn start(server_body: &str) -> Nginx {
        let binary = tool("nginx", "apt-get install nginx-light; .ci/run does");
        for _attempt in 0..3 {
            let prefix = tempfile::tempdir().expect("temporary folder");
            let root = prefix.path().display().to_string();
            let port = free_port().await;
            let config = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {root}/nginx.pid;\n\
                 error_log {root}/error.log info;\nevents {{ worker_connections 256; }}\n\
                 http {{\n  log_format uris '<$request_uri> <$uri> <$status>';\n\
                 access_log {root}/access.log uris;\n\
                 client_body_temp_path {root}/client_body;\n  proxy_temp_path {root}/proxy;\n\
                 fastcgi_temp_path {root}/fastcgi;\n  uwsgi_temp_path {root}/uwsgi;\n\
                 scgi_temp_path {root}/scgi;\n  default_type text/plain;\n\
                 server {{\n    listen 127.0.0.1:{port};\n{server_body}\n  }}\n}}\n"
            );
            std::fs::write(prefix.path().join("nginx.conf"), config).unwrap();
            let mut process = KillOnDrop(
                std::process::Command::new(&binary)
                    .arg("-p")
                    .arg(prefix.path())
                    .arg("-c")
                    .arg(prefix.path().join("nginx.conf"))
                    .arg("-e")
                    .arg(prefix.path().join("error.log"))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("nginx starts"),
            );
            let address = SocketAddr::from(([127, 0, 0, 1], port));
            let error_log = prefix.path().join("error.log");
            let listening = eventually(
                Described(|| {
                    let log = std::fs::read_to_string(&error_log);
                    format!("nginx starts listening: {log:?}")
                }),
                DEADLINE,
                || {
                    // Exited: most likely the port was taken meanwhile. Try another.
                    let exited = process.0.try_wait().is_ok_and(|status| status.is_some());
                    async move {
                        if exited {
                            return Some(false);
                        }
                        let connected = tokio::net::TcpStream::connect(address).await;
                        connected.is_ok().then_some(true)
                    }
                },
            )
            .await;
            if listening {
                return Nginx {
                    address,
                    prefix,
                    _process: process,
                };
            }
        }
        panic!("nginx could not start on a free port three times");
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// The access log so far: one `<$request_uri> <$uri> <$status>` line per request answered.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("access.log")).unwrap_or_default()
    }
}

/// What a [`TrackedUpstream`] answers a request with.
pub type TrackedHandler = Arc<
    dyn Fn(
            http::Request<hyper::body::Incoming>,
        ) -> futures_util::future::BoxFuture<'static, Response<Body>>
        + Send
        + Sync,
>;

/// A real HTTP/1.1 upstream (hyper) that counts the connections it accepted and those still
/// open (closed = hyper's connection task ended: the peer hung up or the connection failed).
pub struct TrackedUpstream {
    pub address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TrackedUpstream {
    pub async fn start(handler: TrackedHandler) -> TrackedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (accepted_count, open_count) = (accepted.clone(), open.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted_count.fetch_add(1, Ordering::SeqCst);
                open_count.fetch_add(1, Ordering::SeqCst);
                let open_count = open_count.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let answer = handler(request);
                        async move { Ok::<_, std::convert::Infallible>(answer.await) }
                    });
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await
                        .ok();
                    open_count.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        TrackedUpstream {
            address,
            accepted,
            open,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections still open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for TrackedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
/// Runs a system tool (`mount`, `losetup`, ...) and returns its standard output, failing the
/// test with its error output when it fails.
pub fn run_tool(program: &std::path::Path, arguments: &[&str]) -> String {
    let output = std::process::Command::new(program)
        .args(arguments)
        .output()
        .unwrap_or_else(|error| panic!("{} cannot run: {error}", program.display()));
    assert!(
        output.status.success(),
        "{} {arguments:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A file system mounted on a folder of its own (a fresh temporary folder, never a fixed mount
/// point), unmounted when dropped — also when the test fails or panics.
pub struct Mounted {
    /// The mount point (inside `_folder`).
    pub dir: PathBuf,
    umount: PathBuf,
    _folder: tempfile::TempDir,
}

impl Mounted {
    /// A `tmpfs` of `size` (`mount -o size=`: `2m`, `64m`); a test calling it is marked
    /// `xgate_missing = "mount"` (see [`tool`]).
    pub fn tmpfs(size: &str) -> Mounted {
        assert_root("mounting a small tmpfs");
        let mount = tool("mount", "apt-get install mount");
        let umount = tool("umount", "apt-get install mount");
        let folder = tempfile::tempdir().expect("temporary folder");
        let dir = folder.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let target = dir.to_str().expect("a UTF-8 temporary path");
        run_tool(
            &mount,
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                target,
            ],
        );
        Mounted {
            dir,
            umount,
            _folder: folder,
        }
    }
    /// An ext4 file system of `size` (`truncate -s`: `64M`) in an image file, mounted through a
    /// loop device; a test calling it is marked `xgate_missing = "mount"` (see [`tool`]). Unlike tmpfs it has a disk behind its page cache, so what was written but
    /// never synced can be lost ([`Mounted::shut_down`]).
    pub fn ext4(size: &str) -> Mounted {
        assert_root("mounting an ext4 image");
        let truncate = tool("truncate", "apt-get install coreutils");
        let mkfs = tool("mkfs.ext4", "apt-get install e2fsprogs");
        let mount = tool("mount", "apt-get install mount");
        let umount = tool("umount", "apt-get install mount");
        let folder = tempfile::tempdir().expect("temporary folder");
        let image = folder.path().join("ext4.img");
        let dir = folder.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let image_path = image.to_str().expect("a UTF-8 temporary path");
        run_tool(&truncate, &["-s", size, image_path]);
        run_tool(&mkfs, &["-q", "-F", image_path]);
        let mounted = Mounted {
            dir,
            umount,
            _folder: folder,
        };
        mounted.mount_image(&mount);
        mounted
    }

    fn mount_image(&self, mount: &std::path::Path) {
        let image = self._folder.path().join("ext4.img");
        run_tool(
            mount,
            &[
                "-o",
                "loop",
                image.to_str().expect("a UTF-8 temporary path"),
                self.dir.to_str().expect("a UTF-8 temporary path"),
            ],
        );
    }

    /// Shuts the ext4 file system down as a power cut would (`EXT4_IOC_SHUTDOWN` with
    /// `EXT4_GOING_FLAGS_NOLOGFLUSH`, as xfstests' crash tests do): neither the page cache nor
    /// the journal is flushed, and every later write fails.
    #[allow(unsafe_code)] // libc calls: see the SAFETY comments
    pub fn shut_down(&self) {
        use std::os::fd::AsRawFd;
        const EXT4_IOC_SHUTDOWN: libc::c_ulong =
            (2 << 30) | (4 << 16) | ((b'X' as libc::c_ulong) << 8) | 125;
        const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;
        let dir = std::fs::File::open(&self.dir).expect("the mount point");
        let flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
        // SAFETY: the descriptor is open for the call; the argument is a pointer to a u32 that
        // lives across it, which is what EXT4_IOC_SHUTDOWN reads.
        let result = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_SHUTDOWN as _, &flags) };
        assert_eq!(
            result,
            0,
            "EXT4_IOC_SHUTDOWN: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Unmounts the image and mounts it again: what is read now is what reached the disk.
    pub async fn remount(&self) {
        let target = self.dir.to_str().expect("a UTF-8 temporary path");
        // The stopped gateway's audit writer thread closes the file just after the gateway
        // stops: retry while the file system is still busy.
        eventually(format!("{target} unmounts"), DEADLINE, || async {
            std::process::Command::new(&self.umount)
                .arg(target)
                .status()
                .is_ok_and(|status| status.success())
        })
        .await;
        let mount = tool("mount", "apt-get install mount");
        self.mount_image(&mount);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let target = self.dir.to_string_lossy().into_owned();
        let unmounted = std::process::Command::new(&self.umount)
            .arg(&target)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            // Still busy (a process of a failed test holds a file): detach it lazily so that
            // nothing stays mounted once it lets go.
            std::process::Command::new(&self.umount)
                .args(["-l", &target])
                .status()
                .ok();
        }
    }
}

/// Fills the file system holding `dir` with a file of its own until it has no space left;
/// returns the file (remove it to give the space back).
pub fn fill_up(dir: &std::path::Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler file");
    let chunk = vec![0x5a_u8; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(error) => panic!("filling {}: {error}", dir.display()),
        }
    }
    // Smaller writes take the last partial block too.
    while file.write(&[0x5a]).is_ok_and(|written| written == 1) {}
    file.sync_all().ok();
    path
}

/// The PostgreSQL server the shared store's tests use: `XGATE_TEST_DATABASE_URL`, by default
/// `postgres://postgres@127.0.0.1:5432/postgres`. `.ci/run` makes sure one answers there.
pub fn test_server_url() -> String {
    std::env::var("XGATE_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh database of its own for one test, dropped (with its connections) when the value is.
pub struct TestDatabase {
    /// The database's URL: the server's, naming this database.
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// The audit key every gateway of this database uses (64 hex digits, derived from its name).
    pub fn audit_key(&self) -> String {
        format!("{}\n", sha256_hex(self.name.as_bytes()))
    }

    /// Creates `xgate_test_<random>` on the test server. Panics, saying how to get one, when no
    /// server answers: tests that call this carry `#[cfg_attr(xgate_missing = "postgres", ...)]`.
    pub async fn new() -> TestDatabase {
        let server = test_server_url();
        let name = format!("xgate_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&server).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|error| panic!("cannot create a test database: {error}"));
        let url = database_url(&server, &name);
        TestDatabase { url, name }
    }

    /// A connection to the server's own database, for what cannot be done from inside this one
    /// (refusing its connections, terminating its sessions).
    pub async fn connect_server(&self) -> tokio_postgres::Client {
        connect(&test_server_url()).await
    }

    /// Lets the server accept new connections to this database, or refuse them (those open
    /// stay: end them with `pg_terminate_backend`).
    pub async fn allow_connections(&self, allowed: bool) {
        self.connect_server()
            .await
            .batch_execute(&format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS {allowed}",
                self.name
            ))
            .await
            .unwrap();
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection to this database, for a test to read or edit what the gateways stored.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

/// `server` (a URL) with its database replaced by `name`.
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let scheme_end = base.find("://").map_or(0, |at| at + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A plain connection to `url`, its connection task spawned.
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "no PostgreSQL answers at XGATE_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres): {error}; `.ci/run` starts one"
            )
        });
    tokio::spawn(connection);
    client
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = test_server_url();
        let name = self.name.clone();
        // A runtime of its own: the test's may be shutting down.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&server, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await
                        .ok();
                }
            });
        })
        .join()
        .ok();
    }
}

/// Copies the schemas of `config`'s folder into its store, as `xgate store import` does (the
/// store is migrated first): a gateway on the store then finds the schemas its departments use.
pub async fn import_schemas(config: &ConfigDir) {
    config.write_main();
    let (loaded, registry) = xgate::config::load(&config.main_path(), &Overrides::default())
        .unwrap_or_else(|problems| panic!("test configuration has problems:\n{problems}"));
    let settings = loaded.store.as_ref().expect("a [store]");
    let store = xgate::store::Store::connect(settings)
        .await
        .expect("the store");
    xgate::store::migrate::migrate(&store, "test")
        .await
        .expect("migrated");
    let mut client = store.client().await.expect("a connection");
    xgate::store::registry::import(&mut client, &registry, "test")
        .await
        .expect("imported")
        .expect("into an empty store");
}

/// `/readyz`'s status on the data plane.
pub async fn readiness(gateway: &TestGateway) -> StatusCode {
    gateway
        .client
        .get(gateway.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
}
