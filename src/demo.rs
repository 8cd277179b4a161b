//! `xgate demo`: the gateway on the example configuration, with simulated department backends
//! on the ports that configuration names, and ready-to-paste calls.
//!
//! The simulated backends answer from `demo/backends/<provider>/<service>.json` (whatever the
//! path below the service's upstream prefix) and `demo/certificates/<type>/<id>.json`. All files
//! are read at start; a request never names a file.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tokio::net::TcpListener;

use crate::config::{self, Config, Overrides};
use crate::gateway::Gateway;

/// Where the example configuration is: `config/xgate.toml` under the current folder when there
/// is one, otherwise the copy in the source tree this binary was built from.
pub fn example_config_path() -> PathBuf {
    let local = PathBuf::from("config/xgate.toml");
    if local.is_file() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/xgate.toml")
    }
}

/// One canned answer of a simulated backend.
#[derive(Clone)]
struct Canned {
    prefix: String,
    body: Bytes,
}

/// What one simulated backend (one `host:port`) answers.
#[derive(Clone, Default)]
struct Backend {
    services: Vec<Canned>,
    /// Certificate lookups: path prefix → id → body.
    certificates: Vec<(String, HashMap<String, Bytes>)>,
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let config_path = example_config_path();
    let (config, registry) =
        config::load(&config_path, &Overrides::default()).map_err(|problems| {
            anyhow::anyhow!("the example configuration has problems:\n{problems}")
        })?;
    let demo_dir = config_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("../demo");
    let backends = backends(&config, &demo_dir)?;

    let mut tasks = Vec::new();
    for (address, backend) in backends {
        let listener = bind(address, "a simulated department backend").await?;
        tasks.push(tokio::spawn(serve_backend(listener, backend)));
    }
    let data = bind(config.gateway.listen, "the gateway's data plane").await?;
    let admin = bind(config.gateway.admin_listen, "the gateway's admin plane").await?;
    println!("{}", calls(&config, &demo_dir));
    let gateway = Gateway::new(config, registry)?;
    let result = crate::server::run(gateway, data, admin, shutdown).await;
    for task in tasks {
        task.abort();
    }
    result
}

async fn bind(address: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!(
            "cannot listen on {address} for {what}: is the port taken (another `xgate demo`?) — \
             stop whatever uses it and try again"
        )
    })
}

fn backends(config: &Config, demo_dir: &Path) -> anyhow::Result<BTreeMap<SocketAddr, Backend>> {
    let mut backends: BTreeMap<SocketAddr, Backend> = BTreeMap::new();
    for department in &config.departments {
        for service in &department.services {
            let file = demo_dir
                .join("backends")
                .join(department.id.as_str())
                .join(format!("{}.json", service.name));
            let body = std::fs::read(&file)
                .with_context(|| format!("the demo answer {} is missing", file.display()))?;
            let address = socket_address(&service.upstream)?;
            backends.entry(address).or_default().services.push(Canned {
                prefix: service.upstream.path().trim_end_matches('/').to_owned(),
                body: Bytes::from(body),
            });
        }
        for certificate in &department.certificate_types {
            let url = reqwest::Url::parse(&certificate.lookup.replace("{id}", "ID"))?;
            let prefix = url.path().trim_end_matches("ID").to_owned();
            let folder = demo_dir
                .join("certificates")
                .join(certificate.certificate_type.as_str());
            let mut by_id = HashMap::new();
            if let Ok(entries) = std::fs::read_dir(&folder) {
                for entry in entries.filter_map(Result::ok) {
                    let path = entry.path();
                    let Some(id) = path
                        .file_name()
                        .and_then(|name| name.to_str())
                        .and_then(|name| name.strip_suffix(".json"))
                    else {
                        continue;
                    };
                    by_id.insert(id.to_owned(), Bytes::from(std::fs::read(&path)?));
                }
            }
            backends
                .entry(socket_address(&url)?)
                .or_default()
                .certificates
                .push((prefix, by_id));
        }
    }
    Ok(backends)
}

fn socket_address(url: &reqwest::Url) -> anyhow::Result<SocketAddr> {
    let addresses = url.socket_addrs(|| Some(80))?;
    match addresses.first() {
        Some(address) => Ok(*address),
        None => bail!("{url} names no address"),
    }
}

async fn serve_backend(listener: TcpListener, backend: Backend) {
    let backend = Arc::new(backend);
    let app = Router::new().fallback(move |request: Request<Body>| {
        let backend = backend.clone();
        async move { answer(&backend, request.method(), request.uri().path()) }
    });
    if let Err(error) = axum::serve(listener, app).await {
        tracing::warn!(%error, "a simulated backend stopped");
    }
}

fn answer(backend: &Backend, method: &Method, path: &str) -> Response<Body> {
    for (prefix, by_id) in &backend.certificates {
        if let Some(id) = path.strip_prefix(prefix.as_str()) {
            return match by_id.get(id) {
                Some(body) => json(StatusCode::OK, body.clone()),
                None => json(
                    StatusCode::NOT_FOUND,
                    Bytes::from_static(br#"{"error":"no such certificate"}"#),
                ),
            };
        }
    }
    let canned = backend
        .services
        .iter()
        .filter(|canned| {
            path == canned.prefix
                || path
                    .strip_prefix(canned.prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|canned| canned.prefix.len());
    match canned {
        Some(canned) if method == Method::POST => json(StatusCode::CREATED, canned.body.clone()),
        Some(canned) => json(StatusCode::OK, canned.body.clone()),
        None => json(
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"error":"not found"}"#),
        ),
    }
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// The ready-to-paste calls printed at start.
fn calls(config: &Config, demo_dir: &Path) -> String {
    let data = format!("http://{}", config.gateway.listen);
    let admin = format!("http://{}", config.gateway.admin_listen);
    let request = |name: &str| {
        std::fs::read_to_string(demo_dir.join("requests/tax").join(name))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .map(|value| value.to_string().replace('\'', "'\\''"))
            .unwrap_or_else(|| "{}".to_owned())
    };
    let valid = request("taxpayer-registrations.valid.json");
    let invalid = request("taxpayer-registrations.invalid.json");
    format!(
        r#"
xgate demo: the gateway is on {data} (data plane) and {admin} (admin plane),
with simulated backends for the example departments. Demo tokens are demo-<department id>
(demo only; never use them for real). Ctrl-C stops everything.

# 1. The tax bureau reads a business licence from market regulation (200):
curl -s {data}/exchange/market-regulation/business-licenses/91350100M000100Y43 \
  -H 'Authorization: Bearer demo-tax'

# 2. Civil affairs reads the same licence, projected to the fields it needs (200):
curl -s {data}/exchange/market-regulation/business-licenses/91350100M000100Y43 \
  -H 'Authorization: Bearer demo-civil-affairs'

# 3. Market regulation pushes a new business to the tax bureau (201):
curl -s {data}/exchange/tax/taxpayer-registrations \
  -H 'Authorization: Bearer demo-market-regulation' -H 'Content-Type: application/json' \
  -d '{valid}'

# 4. The same record with three mistakes: refused before it reaches the tax bureau (422),
#    each error explained in Chinese:
curl -s {data}/exchange/tax/taxpayer-registrations \
  -H 'Authorization: Bearer demo-market-regulation' -H 'Content-Type: application/json' \
  -H 'Accept-Language: zh-CN' \
  -d '{invalid}'

# 5. Civil affairs may not register taxpayers (403):
curl -s {data}/exchange/tax/taxpayer-registrations \
  -H 'Authorization: Bearer demo-civil-affairs' -H 'Content-Type: application/json' \
  -d '{valid}'

# 6. What the tax bureau may call, and with which schema versions:
curl -s {data}/catalog -H 'Authorization: Bearer demo-tax'

# 7. Check a record without sending it:
curl -s {data}/validate/taxpayer-registration -H 'Authorization: Bearer demo-tax' \
  -H 'Content-Type: application/json' -d '{invalid}'

# 8. The auditor lists the shared schemas on the admin plane:
curl -s {admin}/admin/schemas -H 'Authorization: Bearer demo-audit-office'
"#
    )
}
