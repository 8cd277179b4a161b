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
pub(crate) fn example_config_path() -> PathBuf {
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

/// Which ports the demo listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// The example configuration's (8080, 9090, the backends' 71xx), or `XGATE_LISTEN` and
    /// `XGATE_ADMIN_LISTEN`: the ports the printed calls and the README name.
    Configured,
    /// Free ports for every backend and for each plane that `XGATE_LISTEN` or
    /// `XGATE_ADMIN_LISTEN` does not name, printed in the calls: a demo beside another one, and
    /// the tests, which never take fixed ports.
    Free,
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(
    shutdown: impl std::future::Future<Output = ()>,
    ports: Ports,
) -> anyhow::Result<()> {
    let config_path = example_config_path();
    let overrides = Overrides::from_env();
    let (mut config, registry) = config::load(&config_path, &overrides).map_err(|problems| {
        anyhow::anyhow!("the example configuration has problems:\n{problems}")
    })?;
    let demo_dir = config_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("../demo");
    let backends = backends(&config, &demo_dir)?;

    let mut tasks = Vec::new();
    let mut moved = Vec::new();
    for (address, backend) in backends {
        let wanted = match ports {
            Ports::Configured => address,
            Ports::Free => SocketAddr::new(address.ip(), 0),
        };
        let listener = bind(wanted, "a simulated department backend").await?;
        moved.push((address, listener.local_addr()?));
        tasks.push(tokio::spawn(serve_backend(listener, backend)));
    }
    if ports == Ports::Free {
        move_backends(&mut config, &moved)?;
        if overrides.listen.is_none() {
            config.gateway.listen.set_port(0);
        }
        if overrides.admin_listen.is_none() {
            config.gateway.admin_listen.set_port(0);
        }
    }
    // No load balancer stands in front of a demo: Ctrl-C stops it at once.
    config.gateway.drain_delay = std::time::Duration::ZERO;
    let data = bind(config.gateway.listen, "the gateway's data plane").await?;
    let admin = bind(config.gateway.admin_listen, "the gateway's admin plane").await?;
    config.gateway.listen = data.local_addr()?;
    config.gateway.admin_listen = admin.local_addr()?;
    println!("{}", calls(&config, &demo_dir));
    let gateway = Gateway::new(config, registry)?;
    let result = crate::server::run(gateway, data, admin, shutdown).await;
    for task in tasks {
        task.abort();
    }
    result
}

/// Points the departments' upstreams and certificate lookups at the backends' new addresses
/// (`moved`: configured → bound).
fn move_backends(config: &mut Config, moved: &[(SocketAddr, SocketAddr)]) -> anyhow::Result<()> {
    for department in &mut config.departments {
        for service in &mut department.services {
            let address = socket_address(&service.upstream)?;
            if let Some((_, bound)) = moved.iter().find(|(configured, _)| *configured == address) {
                // Setting the port of an http URL with a host cannot fail.
                service.upstream.set_port(Some(bound.port())).ok();
            }
        }
        for certificate in &mut department.certificate_types {
            for (configured, bound) in moved {
                certificate.lookup = certificate.lookup.replacen(
                    &format!("://{configured}/"),
                    &format!("://{bound}/"),
                    1,
                );
            }
        }
    }
    Ok(())
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
            let url = url::Url::parse(&certificate.lookup.replace("{id}", "ID"))?;
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

fn socket_address(url: &url::Url) -> anyhow::Result<SocketAddr> {
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

/// The e-licence id of the demo's marriage certificate (`demo/certificates/marriage-certificate`).
const MARRIAGE_CERTIFICATE_ID: &str =
    "1.2.156.3005.2.11100000000013338W002.113501020036827137.3501022021001347.001.F";

/// The ready-to-paste calls printed at start: the business licence in three layouts, a push in
/// market regulation's layout (201, and 422 with the errors at its own field names), a dry-run
/// validation in its own layout, the admin's translation dry-run, and certificate lookups (a
/// miss, a hit, the issuer's invalidation, the admin's flush).
fn calls(config: &Config, demo_dir: &Path) -> String {
    let data = format!("http://{}", config.gateway.listen);
    let admin = format!("http://{}", config.gateway.admin_listen);
    let read = |path: &str| {
        std::fs::read_to_string(demo_dir.join(path))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .unwrap_or_else(|| serde_json::json!({}))
    };
    let quoted = |value: &serde_json::Value| value.to_string().replace('\'', "'\\''");
    let valid = quoted(&read("requests/tax/taxpayer-registrations.valid.json"));
    let invalid = quoted(&read("requests/tax/taxpayer-registrations.invalid.json"));
    let license = read("backends/market-regulation/business-licenses.json");
    let license_upstream = config
        .departments
        .iter()
        .find(|department| department.id.as_str() == "market-regulation")
        .and_then(|department| {
            department
                .services
                .iter()
                .find(|service| service.name.as_str() == "business-licenses")
        })
        .map(|service| service.upstream.as_str().trim_end_matches('/').to_owned())
        .unwrap_or_else(|| "http://127.0.0.1:7101/licenses".to_owned());
    let mut impossible_date = license.clone();
    if let Some(record) = impossible_date.as_object_mut() {
        record.insert("CLRQ".to_owned(), serde_json::json!("20160231"));
    }
    let impossible_date = quoted(&impossible_date);
    let license = quoted(&license);
    let marriage_id = MARRIAGE_CERTIFICATE_ID;
    format!(
        r#"
xgate demo: the gateway is on {data} (data plane) and {admin} (admin plane),
with simulated backends for the example departments. Demo tokens are demo-<department id>
(demo only; never use them for real). Ctrl-C stops everything.

Each department keeps its own record layout ([formats.<schema>] in config/departments/*.toml);
the gateway translates through the shared layout of schemas/. Departments without a format
(human resources for licences, public security) speak the shared layout.

# 1. A business licence as market regulation's own system keeps it (the simulated backend,
#    called directly): TYSHXYDM, QYMC, ZCZB in 万元, CLRQ as YYYYMMDD, DJZT "1" ...
curl -s {license_upstream}/91350100M000100Y43

# 2. The tax bureau reads that licence through the gateway, and gets it in the tax bureau's
#    layout: nsrsbh, nsrmc, zczb "10000000" (元), djrq "2016/08/18", djzt "存续" ... (200):
curl -s {data}/exchange/market-regulation/business-licenses/91350100M000100Y43 \
  -H 'Authorization: Bearer demo-tax'

# 3. Human resources has no format for licences: the shared layout (uscc, name,
#    registered_capital_yuan 10000000, established_on "2016-08-18", status "active" ...) (200):
curl -s {data}/exchange/market-regulation/business-licenses/91350100M000100Y43 \
  -H 'Authorization: Bearer demo-human-resources'

# 4. Civil affairs gets only the fields projected for it, in its own layout
#    (SHXYDM, DWMC, DJZT, FDDBR) (200):
curl -s {data}/exchange/market-regulation/business-licenses/91350100M000100Y43 \
  -H 'Authorization: Bearer demo-civil-affairs'

# 5. Market regulation pushes a new business to the tax bureau in its own layout; the tax
#    bureau's system receives it in the tax layout and answers a receipt in the tax layout,
#    which comes back in market regulation's layout (201):
curl -s {data}/exchange/tax/taxpayer-registrations \
  -H 'Authorization: Bearer demo-market-regulation' -H 'Content-Type: application/json' \
  -d '{valid}'

# 6. The same record with three mistakes (a wrong USCC check character, no ZS 住所, a mobile
#    number one digit short): refused before it reaches the tax bureau (422), each error in
#    Chinese at market regulation's own field (/TYSHXYDM, /ZS, /FDDBR/YDDH) with the shared
#    field beside it:
curl -s {data}/exchange/tax/taxpayer-registrations \
  -H 'Authorization: Bearer demo-market-regulation' -H 'Content-Type: application/json' \
  -H 'Accept-Language: zh-CN' \
  -d '{invalid}'

# 7. Civil affairs may not register taxpayers (403):
curl -s {data}/exchange/tax/taxpayer-registrations \
  -H 'Authorization: Bearer demo-civil-affairs' -H 'Content-Type: application/json' \
  -d '{valid}'

# 8. What the tax bureau may call, and with which schema versions:
curl -s {data}/catalog -H 'Authorization: Bearer demo-tax'

# 9. Market regulation checks a licence in its own layout without sending it: CLRQ 20160231
#    is no date, so it does not convert (valid: false, a translation error at /CLRQ):
curl -s '{data}/validate/business-license?format=own' \
  -H 'Authorization: Bearer demo-market-regulation' -H 'Content-Type: application/json' \
  -H 'Accept-Language: zh-CN' \
  -d '{impossible_date}'

# 10. The administrator dry-runs market regulation's format on its licence: the shared record
#     (admin plane, role admin):
curl -s '{admin}/admin/translate/market-regulation/business-license?direction=to-shared' \
  -H 'Authorization: Bearer demo-data-bureau' -H 'Content-Type: application/json' \
  -d '{license}'

# 11. The auditor lists the shared schemas on the admin plane:
curl -s {admin}/admin/schemas -H 'Authorization: Bearer demo-audit-office'

# 12. The tax bureau looks up an e-business licence (电子营业执照), stating why; the gateway
#     asks market regulation's issuer and caches the validated answer (-i shows
#     Xgate-Cache: miss, Age: 0):
curl -si {data}/certificates/business-license/91350100M000100Y43 \
  -H 'Authorization: Bearer demo-tax' -H 'Xgate-Purpose: 纳税人登记核验'

# 13. The same lookup again is answered from the cache (Xgate-Cache: hit, Age in seconds);
#     the issuer is not asked:
curl -si {data}/certificates/business-license/91350100M000100Y43 \
  -H 'Authorization: Bearer demo-tax' -H 'Xgate-Purpose: 纳税人登记核验'

# 14. Market regulation, the issuer, drops the cached licence (after a revocation) (204); the
#     next lookup goes to the issuer again (Xgate-Cache: miss):
curl -si -X POST {data}/certificates/business-license/91350100M000100Y43/invalidate \
  -H 'Authorization: Bearer demo-market-regulation'

# 15. Other e-certificates: a marriage certificate (电子结婚证) for public security and a
#     resident identity (电子居民身份证) for market regulation:
curl -s {data}/certificates/marriage-certificate/{marriage_id} \
  -H 'Authorization: Bearer demo-public-security' -H 'Xgate-Purpose: 户籍变更核验'
curl -s {data}/certificates/resident-identity/350104199003080571 \
  -H 'Authorization: Bearer demo-market-regulation' -H 'Xgate-Purpose: 法定代表人身份核验'

# 16. The administrator flushes every cached licence, and reads the cache metrics:
curl -si -X DELETE {admin}/admin/certificates/business-license \
  -H 'Authorization: Bearer demo-data-bureau'
curl -s {admin}/metrics | grep certificate

# 17. Personal data (SPEC §15). Public security's residents service wants a purpose from the
#     deployment's vocabulary ([purposes] in config/xgate.toml): without one, 400
#     purpose-required; with one the tax bureau reads the record, and human resources gets
#     the resident id and the name masked (350104********0571, 陈**):
curl -s {data}/exchange/public-security/residents/350104199003080571 \
  -H 'Authorization: Bearer demo-tax'
curl -s {data}/exchange/public-security/residents/350104199003080571 \
  -H 'Authorization: Bearer demo-tax' -H 'Xgate-Purpose: tax-assessment'
curl -s {data}/exchange/public-security/residents/350104199003080571 \
  -H 'Authorization: Bearer demo-human-resources' -H 'Xgate-Purpose: benefit-review'

# 18. Who looked at this person's records, and why: every exchange and lookup that concerned
#     the resident, newest first, from the trail's subject index (auditors and admins only;
#     the trail holds only keyed digests of the id):
curl -s {admin}/audit/subjects/resident/350104199003080571 \
  -H 'Authorization: Bearer demo-audit-office'
"#
    )
}
