//! Configuration: reading `xgate.toml` and `departments/*.toml`, checking every value, and
//! reporting every problem with its file and key.
//!
//! Loading never stops at the first problem: `xgate check` prints them all. What comes out of
//! [`load`] is fully parsed (newtypes, socket addresses, durations, methods, field paths), so
//! nothing downstream re-checks a raw string.

pub mod file;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use xgate_core::domain::{
    CertificateType, Compatibility, DepartmentId, PurposeCode, Role, SchemaName, SchemaRef,
    ServiceName, SubjectKind,
};
use xgate_core::masking::{MaskKind, Masks};
use xgate_core::pointer::FieldPath;
use xgate_core::registry::Registry;
use xgate_core::subject::SubjectPointer;
use xgate_core::translate::Format;

pub use xgate_core::report::{Problem, Problems};

/// Values that replace configured ones, from the environment (`XGATE_LISTEN`,
/// `XGATE_ADMIN_LISTEN`, `XGATE_STORE_URL`).
#[derive(Clone, Default)]
pub struct Overrides {
    /// Replaces `[gateway] listen`.
    pub listen: Option<String>,
    /// Replaces `[gateway] admin_listen`.
    pub admin_listen: Option<String>,
    /// Replaces `[store] url`, and turns the store on without a `[store]` section.
    pub store_url: Option<String>,
    /// Replaces `[gateway] instance` (`XGATE_INSTANCE`): several gateways started from one
    /// configuration folder, each with its own name.
    pub instance: Option<String>,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("store_url", &self.store_url.as_ref().map(|_| "(set)"))
            .field("instance", &self.instance)
            .finish()
    }
}

impl Overrides {
    /// Reads the overrides from the process environment.
    pub fn from_env() -> Overrides {
        Overrides {
            listen: std::env::var("XGATE_LISTEN").ok(),
            admin_listen: std::env::var("XGATE_ADMIN_LISTEN").ok(),
            store_url: std::env::var("XGATE_STORE_URL")
                .ok()
                .filter(|url| !url.is_empty()),
            instance: std::env::var("XGATE_INSTANCE")
                .ok()
                .filter(|name| !name.is_empty()),
        }
    }
}

/// The whole configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main file it was read from.
    pub path: PathBuf,
    /// `[gateway]`.
    pub gateway: GatewaySettings,
    /// `[registry]`.
    pub registry: RegistrySettings,
    /// `[tls]`, with paths resolved.
    pub tls: Option<TlsSettings>,
    /// `[certificates]`.
    pub certificates: CertificateCacheSettings,
    /// `[audit]`.
    pub audit: AuditSettings,
    /// `[store]` (or `XGATE_STORE_URL`): the shared PostgreSQL store; `None` is the embedded
    /// default (schema files, SQLite trail).
    pub store: Option<StoreSettings>,
    /// Every department, sorted by id.
    pub departments: Vec<Department>,
    /// `[purposes]`: the vocabulary of reasons for use, code → label (SPEC §15).
    pub purposes: BTreeMap<PurposeCode, String>,
}

impl Config {
    /// The vocabulary code an `Xgate-Purpose` value is, byte for byte; `None` for free text.
    pub(crate) fn purpose_code(&self, value: &[u8]) -> Option<&PurposeCode> {
        if value.len() > MAX_NAME_BYTES {
            return None;
        }
        let text = std::str::from_utf8(value).ok()?;
        self.purposes.get_key_value(text).map(|(code, _)| code)
    }
}

/// The longest name (department id, service name, purpose code...): no longer value can be one.
const MAX_NAME_BYTES: usize = 63;

/// The longest label of a purpose, in characters.
const MAX_PURPOSE_LABEL_CHARS: usize = 200;

/// Label values the metrics give calls that state no code (`none`, `other`): no purpose may be
/// called so.
pub(crate) const RESERVED_PURPOSE_LABELS: [&str; 2] = ["none", "other"];

/// `[purposes]`, checked: codes by the name pattern (not the reserved metric labels), labels
/// not blank and bounded.
fn check_purposes(
    raw: &BTreeMap<String, String>,
    report: &mut Reporter<'_>,
) -> BTreeMap<PurposeCode, String> {
    let mut purposes = BTreeMap::new();
    for (code, label) in raw {
        let key = format!("purposes.{code}");
        let code = match PurposeCode::parse(code) {
            Ok(code) => code,
            Err(error) => {
                report.report(key, error.to_string());
                continue;
            }
        };
        if RESERVED_PURPOSE_LABELS.contains(&code.as_str()) {
            report.report(
                &key,
                format!("`{code}` is reserved: the metrics count calls without a code so"),
            );
        }
        if label.trim().is_empty() {
            report.report(&key, "the label must not be empty");
        } else if label.chars().count() > MAX_PURPOSE_LABEL_CHARS {
            report.report(
                &key,
                format!("the label must be at most {MAX_PURPOSE_LABEL_CHARS} characters"),
            );
        }
        purposes.insert(code, label.trim().to_owned());
    }
    purposes
}

/// `[gateway]`, parsed.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The data plane's address.
    pub listen: SocketAddr,
    /// The admin plane's address.
    pub admin_listen: SocketAddr,
    /// The largest body read for validation.
    pub max_body_bytes: usize,
    /// How long an upstream may take to answer.
    pub upstream_timeout: Duration,
    /// How long a client may take to send its request head.
    pub header_read_timeout: Duration,
    /// The largest request head.
    pub max_header_bytes: usize,
    /// The most headers in one HTTP/1.1 request.
    pub max_headers: usize,
    /// The most open connections per listener.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// How long `/readyz` answers 503 after a shutdown signal before the listeners stop
    /// accepting (zero: at once).
    pub drain_delay: Duration,
    /// The most exchanges and certificate lookups in flight at once (503 `overloaded` past it).
    pub max_exchanges_in_flight: usize,
    /// The most exchanges and certificate lookups in flight at once per consumer (429
    /// `rate-limited` past it).
    pub max_exchanges_in_flight_per_consumer: usize,
    /// The most upstream connections open at once to a providing department without its own
    /// `max_upstream_connections`.
    pub max_upstream_connections_per_provider: usize,
    /// How long a write to a caller may wait for it to read before the connection is closed.
    pub send_timeout: Duration,
    /// The peers whose forwarding headers are believed.
    pub trusted_proxies: TrustedProxies,
    /// This gateway's name in the audit trail (`[gateway] instance`, default the host name).
    pub instance: String,
}

/// `[store]`, parsed.
#[derive(Clone)]
pub struct StoreSettings {
    /// The connection settings, parsed from the URL (which holds the password, if any: it is
    /// never printed, `Debug` included).
    pub url: tokio_postgres::Config,
    /// Whether the URL asks for TLS (`sslmode=require`; the server's certificate is verified
    /// against the system's roots and must name the host).
    pub tls: bool,
    /// The most pooled connections.
    pub pool_size: usize,
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("database", &self.url.get_dbname())
            .field("user", &self.url.get_user())
            .field("tls", &self.tls)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

/// The most pooled store connections a gateway may ask for.
const MAX_POOL_SIZE: u64 = 256;

/// Parses `[store]` (or `XGATE_STORE_URL` alone) into its settings, reporting what is wrong
/// without ever repeating the URL (it may hold a password).
fn check_store(
    section: Option<&file::StoreSection>,
    overrides: &Overrides,
    report: &mut Reporter<'_>,
) -> Option<StoreSettings> {
    let url = match (&overrides.store_url, section) {
        (Some(url), _) => url.clone(),
        (None, Some(section)) => match &section.url {
            Some(url) => url.clone(),
            None => {
                report.report("store.url", "is missing (or set XGATE_STORE_URL)");
                return None;
            }
        },
        (None, None) => return None,
    };
    let pool_size = section.map_or(16, |section| section.pool_size);
    if pool_size == 0 || pool_size > MAX_POOL_SIZE {
        report.report(
            "store.pool_size",
            format!("must be between 1 and {MAX_POOL_SIZE}"),
        );
    }
    let source = if overrides.store_url.is_some() {
        " (from XGATE_STORE_URL)"
    } else {
        ""
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        report.report("store.url", format!("must be a postgres:// URL{source}"));
        return None;
    }
    let parsed: tokio_postgres::Config = match url.parse() {
        Ok(parsed) => parsed,
        Err(_) => {
            report.report(
                "store.url",
                format!("is not a PostgreSQL connection URL{source}"),
            );
            return None;
        }
    };
    if parsed.get_dbname().is_none() {
        report.report("store.url", format!("names no database{source}"));
    }
    // `require` is TLS with the server's certificate verified against the system's roots (as
    // libpq's `verify-full`); libpq's default `prefer`, which verifies nothing, is plain.
    let tls = matches!(
        parsed.get_ssl_mode(),
        tokio_postgres::config::SslMode::Require
    );
    Some(StoreSettings {
        url: parsed,
        tls,
        pool_size: pool_size.clamp(1, MAX_POOL_SIZE) as usize,
    })
}

/// `[gateway] trusted_proxies`, parsed: the addresses and ranges of the proxies in front of the
/// gateway. A connection's peer is looked up once, when it is accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    /// Whether `peer` is one of the trusted proxies. An IPv4 peer reaching a dual-stack
    /// listener as `::ffff:a.b.c.d` is matched as `a.b.c.d`.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.iter().any(|range| range.contains(&peer))
    }

    /// Parses one entry: an address, or a range in CIDR notation without host bits.
    fn parse(text: &str) -> Result<ipnet::IpNet, String> {
        let text = text.trim();
        if let Ok(address) = text.parse::<IpAddr>() {
            return Ok(ipnet::IpNet::from(address));
        }
        let range: ipnet::IpNet = text.parse().map_err(|_| {
            format!(
                "{text:?} is neither an IP address nor a CIDR range (10.0.0.0/8, 2001:db8::/32)"
            )
        })?;
        if range.trunc() != range {
            return Err(format!(
                "{text:?} has host bits set; the range is written {}",
                range.trunc()
            ));
        }
        Ok(range)
    }
}

/// `[registry]`, parsed.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// The schema folder, resolved against the main file's folder.
    pub dir: PathBuf,
    /// The mode of schemas without their own settings.
    pub default_compatibility: Compatibility,
    /// How long a compatibility check may run before it is answered `unproven`.
    pub check_timeout: Duration,
}

/// `[tls]`, with paths resolved.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CAs whose client certificates identify departments.
    pub client_ca: Option<PathBuf>,
    /// Extra roots for https upstreams.
    pub upstream_ca: Option<PathBuf>,
    /// Whether every connection must present a client certificate (bearer tokens are then not
    /// accepted on the data plane); `true` by default when `client_ca` is set.
    pub require_client_cert: bool,
    /// The chain the gateway presents to https upstreams that ask for a client certificate.
    pub upstream_cert: Option<PathBuf>,
    /// The private key of `upstream_cert`.
    pub upstream_key: Option<PathBuf>,
    /// How long a client may take to complete its handshake.
    pub handshake_timeout: Duration,
}

/// `[certificates]`, parsed.
#[derive(Debug, Clone)]
pub struct CertificateCacheSettings {
    /// The most entries.
    pub capacity: u64,
    /// Freshness of a found certificate.
    pub ttl: Duration,
    /// How long "not found" is remembered.
    pub not_found_ttl: Duration,
    /// How long past expiry an entry may stand in for a failing issuer.
    pub stale_if_error: Duration,
}

pub use xgate_audit::{AuditHash, AuditSettings, AuditSync};

/// A department as configured.
#[derive(Debug, Clone)]
pub struct Department {
    /// Its id.
    pub id: DepartmentId,
    /// Its human name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// SHA-256 digests of its bearer tokens.
    pub token_digests: Vec<[u8; 32]>,
    /// Client-certificate identities that identify it, normalized
    /// ([`normalize_cert_subject`]): `CN=name`, a full subject, or a SAN URI.
    pub cert_subjects: Vec<String>,
    /// The services it provides.
    pub services: Vec<Service>,
    /// Its own layouts, by shared schema.
    pub formats: BTreeMap<SchemaName, Arc<Format>>,
    /// The certificate types it issues.
    pub certificate_types: Vec<CertificateTypeSettings>,
    /// Its own cap on open upstream connections, when its file sets one (else `[gateway]
    /// max_upstream_connections_per_provider`).
    pub max_upstream_connections: Option<usize>,
}

impl Department {
    /// The most upstream connections open at once to this department's services and issuers.
    pub(crate) fn upstream_connection_cap(&self, gateway: &GatewaySettings) -> usize {
        self.max_upstream_connections
            .unwrap_or(gateway.max_upstream_connections_per_provider)
    }
}

/// An hour in milliseconds: the longest a check or a drain delay may be set to.
const HOUR_MS: u64 = 3_600_000;

/// The largest value a count bound (in flight, connections) may take: past it a bound bounds
/// nothing a machine could hold.
pub(crate) const MAX_BOUND: u64 = 1 << 20;

/// A service as configured.
#[derive(Debug, Clone)]
pub struct Service {
    /// The providing department.
    pub provider: DepartmentId,
    /// The service's name.
    pub name: ServiceName,
    /// The upstream base URL (no query, no fragment).
    pub upstream: url::Url,
    /// The methods callers may use.
    pub methods: Vec<Method>,
    /// The request body's schema.
    pub request_schema: Option<SchemaRef>,
    /// The 2xx response body's schema.
    pub response_schema: Option<SchemaRef>,
    /// Who may call it.
    pub consumers: BTreeSet<DepartmentId>,
    /// Per consumer, the shared response fields it receives.
    pub fields: BTreeMap<DepartmentId, Vec<FieldPath>>,
    /// The purposes a call must state one of (`Xgate-Purpose`); empty: any or none.
    pub purposes: Vec<PurposeCode>,
    /// Per consumer, the masks of its responses (rules in pointer order).
    pub masks: BTreeMap<DepartmentId, Masks>,
    /// Whose record it carries, and where its id is in the shared request or response.
    pub subject: Option<SubjectPointer>,
}

/// A certificate type as configured.
#[derive(Debug, Clone)]
pub struct CertificateTypeSettings {
    /// The type.
    pub certificate_type: CertificateType,
    /// The issuing department.
    pub issuer: DepartmentId,
    /// The lookup URL template with `{id}`.
    pub lookup: String,
    /// The schema of issuer answers.
    pub schema: SchemaRef,
    /// The identifier format of ids.
    pub id_format: String,
    /// Who may look certificates of this type up.
    pub consumers: BTreeSet<DepartmentId>,
    /// The purposes a lookup must state one of (`Xgate-Purpose`); empty: any stated purpose.
    pub purposes: Vec<PurposeCode>,
    /// Per consumer, the masks of its answers (rules in pointer order).
    pub masks: BTreeMap<DepartmentId, Masks>,
    /// The subject kind of its ids (SPEC §15: of the kind its `id_format` names, otherwise the
    /// type's name).
    pub subject_kind: SubjectKind,
}

/// Loads and checks the configuration at `path` and the schemas it names, reporting every problem.
pub fn load(path: &Path, overrides: &Overrides) -> Result<(Config, Registry), Problems> {
    loaded(path, inspect(path, overrides))
}

/// [`load`] with the registry made by `schemas` ([`inspect_with`]).
pub fn load_with(
    path: &Path,
    overrides: &Overrides,
    schemas: impl FnOnce(&Config, &mut Vec<Problem>) -> Option<Registry>,
) -> Result<(Config, Registry), Problems> {
    loaded(path, inspect_with(path, overrides, schemas))
}

/// Only the main file, checked (`xgate store migrate` needs no more).
pub fn load_main(path: &Path, overrides: &Overrides) -> Result<Config, Problems> {
    let mut problems = Vec::new();
    match load_config(path, overrides, &mut problems) {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(Problems(problems)),
    }
}

/// What [`inspect`] found, as a loaded configuration or every problem.
fn loaded(path: &Path, inspection: Inspection) -> Result<(Config, Registry), Problems> {
    let Inspection {
        config,
        registry,
        mut problems,
    } = inspection;
    match (config, registry) {
        (Some(config), Some(registry)) if problems.is_empty() => Ok((config, registry)),
        _ => {
            if problems.is_empty() {
                problems.push(Problem {
                    file: path.to_owned(),
                    key: String::new(),
                    reason: "the configuration could not be loaded".to_owned(),
                });
            }
            Err(Problems(problems))
        }
    }
}

/// What [`inspect`] found: as much of the configuration as could be read, and every problem.
/// With problems, `config` holds placeholders where values were wrong: it is for looking
/// further for problems (`xgate check` reads its TLS files), never for serving.
#[derive(Debug)]
pub struct Inspection {
    /// The configuration, when the main file could be read at all.
    pub config: Option<Config>,
    /// The schemas, when the main file (which names their folder) could be read.
    pub registry: Option<Registry>,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

/// Loads and checks everything that can be checked, whatever else is wrong: each file and
/// each key is checked on its own, so that one run reports every independent problem. Only
/// what depends on something unreadable is skipped (the contents of a file that is not TOML;
/// the schemas, and the references to them, when the main file that names their folder is not).
///
/// The schemas are read from the folder `[registry] dir`; with a `[store]` they are in the
/// database, and [`inspect_with`] is given them.
pub fn inspect(path: &Path, overrides: &Overrides) -> Inspection {
    inspect_with(path, overrides, |config, problems| {
        Some(Registry::assemble(
            crate::schema_store::read_folders(&config.registry.dir),
            config.registry.default_compatibility,
            problems,
            compile_workers(),
        ))
    })
}

/// How many threads compile the schemas at a load: one per core the process may use.
pub fn compile_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// [`inspect`] with the registry made by `schemas` once the main file is read: compiled from
/// the folder, from what the store holds, or the running one (a reload with a store, whose
/// registry follows the database, not the files); `None` after reporting why it could not be.
pub fn inspect_with(
    path: &Path,
    overrides: &Overrides,
    schemas: impl FnOnce(&Config, &mut Vec<Problem>) -> Option<Registry>,
) -> Inspection {
    let mut problems = Vec::new();
    let base = path.parent().unwrap_or(Path::new("."));
    let mut config = load_config(path, overrides, &mut problems);
    let registry = config
        .as_ref()
        .and_then(|config| schemas(config, &mut problems));
    // A missing schema folder is reported once, as `registry.dir`, not as every name in it.
    let schemas = registry.as_ref().filter(|_| {
        config
            .as_ref()
            .is_some_and(|c| c.store.is_some() || c.registry.dir.is_dir())
    });
    let purposes = config.as_ref().map(|config| &config.purposes);
    let departments = load_departments(&base.join("departments"), schemas, purposes, &mut problems);
    if let Some(config) = &mut config {
        config.departments = departments;
        check_references(config, &mut problems);
    }
    Inspection {
        config,
        registry,
        problems,
    }
}

/// Collects problems for one file.
struct Reporter<'a> {
    file: &'a Path,
    problems: &'a mut Vec<Problem>,
}

impl Reporter<'_> {
    fn report(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            key: key.into(),
            reason: reason.into(),
        });
    }
}

/// Reads one TOML file into `T`, reporting every unknown key (by its dotted key) and going on
/// without it, so that the rest of the file is still checked. A value of the wrong type is
/// reported by key too; when it is optional the file is checked on without it, else (or when
/// the file is not TOML at all) nothing more of this file can be checked and `None` is returned.
fn read_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            problems.push(Problem {
                file: path.to_owned(),
                key: String::new(),
                reason: format!("cannot read the file: {error}"),
            });
            return None;
        }
    };
    let mut document = match text.parse::<toml::Table>() {
        Ok(table) => toml::Value::Table(table),
        Err(error) => {
            let reason = error.message().to_owned();
            let location = error
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            problems.push(Problem {
                file: path.to_owned(),
                key: String::new(),
                reason: format!("{reason}{location}"),
            });
            return None;
        }
    };
    let mut report = Reporter {
        file: path,
        problems,
    };
    let mut removed: Vec<String> = Vec::new();
    // Each round removes one key; a file has far fewer problems than this.
    const MAX_ROUNDS: usize = 256;
    for _round in 0..MAX_ROUNDS {
        let error = match serde_path_to_error::deserialize::<_, T>(document.clone()) {
            Ok(parsed) => return Some(parsed),
            Err(error) => error,
        };
        let segments: Vec<&serde_path_to_error::Segment> = error.path().iter().collect();
        let key = dotted_key(&segments);
        let reason = error.inner().message().to_owned();
        // A required key removed for its wrong type is missing now: reported already.
        if let Some(field) = missing_field(&reason) {
            let missing = if key.is_empty() {
                field.to_owned()
            } else {
                format!("{key}.{field}")
            };
            if removed.contains(&missing) {
                return None;
            }
        }
        report.report(key.clone(), reason);
        if !remove_key(&mut document, &segments) {
            return None;
        }
        removed.push(key);
    }
    None
}

/// A deserialization error's path as the problem's key: `services.a.upstream`,
/// `formats.license.fields[0].own`; empty for the file as a whole.
fn dotted_key(segments: &[&serde_path_to_error::Segment]) -> String {
    let mut key = String::new();
    for segment in segments {
        match segment {
            serde_path_to_error::Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key: name } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
            }
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
        }
    }
    key
}

/// The field serde's "missing field `name`" names.
fn missing_field(reason: &str) -> Option<&str> {
    reason
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field)
}

/// Removes the key at `segments` from `value`; false when there is no such key (the error is
/// about the file or a table as a whole, or about an array element, whose removal would
/// renumber the elements after it).
fn remove_key(value: &mut toml::Value, segments: &[&serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment;
    match segments {
        [Segment::Map { key }] => value
            .as_table_mut()
            .is_some_and(|table| table.remove(key.as_str()).is_some()),
        [Segment::Map { key }, rest @ ..] => value
            .as_table_mut()
            .and_then(|table| table.get_mut(key.as_str()))
            .is_some_and(|inner| remove_key(inner, rest)),
        [Segment::Seq { index }, rest @ ..] if !rest.is_empty() => value
            .as_array_mut()
            .and_then(|array| array.get_mut(*index))
            .is_some_and(|inner| remove_key(inner, rest)),
        _ => false,
    }
}

fn load_config(path: &Path, overrides: &Overrides, problems: &mut Vec<Problem>) -> Option<Config> {
    let base = path.parent().unwrap_or(Path::new("."));
    // The department files do not depend on the main file: [`inspect`] checks them anyway.
    let main = read_toml::<file::MainFile>(path, problems)?;
    let mut report = Reporter {
        file: path,
        problems,
    };

    let gateway = check_gateway(&main.gateway, overrides, &mut report);
    let default_compatibility = match Compatibility::parse(&main.registry.default_compatibility) {
        Some(mode) => mode,
        None => {
            report.report(
                "registry.default_compatibility",
                format!(
                    "unknown mode {:?}; expected one of {}",
                    main.registry.default_compatibility,
                    Compatibility::ALL.map(Compatibility::as_str).join(", ")
                ),
            );
            Compatibility::Backward
        }
    };
    if main.registry.check_timeout_ms == 0 || main.registry.check_timeout_ms > HOUR_MS {
        report.report(
            "registry.check_timeout_ms",
            format!("must be between 1 and {HOUR_MS}"),
        );
    }
    let registry = RegistrySettings {
        dir: base.join(&main.registry.dir),
        default_compatibility,
        check_timeout: Duration::from_millis(main.registry.check_timeout_ms.clamp(1, HOUR_MS)),
    };
    let store = check_store(main.store.as_ref(), overrides, &mut report);
    // With a store the schemas live in the database: the folder is read only by
    // `xgate store import`.
    if store.is_none() && !registry.dir.is_dir() {
        report.report("registry.dir", "is not a folder");
    }
    let tls = main.tls.as_ref().map(|tls| {
        let resolve = |key: &str, value: &Path, report: &mut Reporter<'_>| {
            let resolved = base.join(value);
            if !resolved.is_file() {
                report.report(format!("tls.{key}"), "is not a readable file");
            }
            resolved
        };
        let optional = |key: &str, value: &Option<PathBuf>, report: &mut Reporter<'_>| {
            value.as_deref().map(|path| resolve(key, path, report))
        };
        let client_ca = optional("client_ca", &tls.client_ca, &mut report);
        let require_client_cert = tls.require_client_cert.unwrap_or(client_ca.is_some());
        if require_client_cert && client_ca.is_none() {
            report.report(
                "tls.require_client_cert",
                "needs client_ca: client certificates are verified against it",
            );
        }
        if tls.upstream_cert.is_some() != tls.upstream_key.is_some() {
            report.report(
                "tls.upstream_key",
                "upstream_cert and upstream_key go together",
            );
        }
        const MINUTE_MS: u64 = 60_000;
        if tls.handshake_timeout_ms == 0 || tls.handshake_timeout_ms > MINUTE_MS {
            report.report(
                "tls.handshake_timeout_ms",
                format!("must be between 1 and {MINUTE_MS}"),
            );
        }
        TlsSettings {
            cert: resolve("cert", &tls.cert, &mut report),
            key: resolve("key", &tls.key, &mut report),
            client_ca,
            upstream_ca: optional("upstream_ca", &tls.upstream_ca, &mut report),
            require_client_cert,
            upstream_cert: optional("upstream_cert", &tls.upstream_cert, &mut report),
            upstream_key: optional("upstream_key", &tls.upstream_key, &mut report),
            handshake_timeout: Duration::from_millis(tls.handshake_timeout_ms.clamp(1, MINUTE_MS)),
        }
    });
    let cache = &main.certificates;
    for (key, value) in [
        ("certificates.capacity", cache.capacity),
        ("certificates.ttl_seconds", cache.ttl_seconds),
    ] {
        if value == 0 {
            report.report(key, "must be greater than 0");
        }
    }
    let certificates = CertificateCacheSettings {
        capacity: cache.capacity,
        ttl: Duration::from_secs(cache.ttl_seconds),
        not_found_ttl: Duration::from_secs(cache.not_found_ttl_seconds),
        stale_if_error: Duration::from_secs(cache.stale_if_error_seconds),
    };
    let hash = match main.audit.hash.as_str() {
        "sha256" => AuditHash::Sha256,
        "sm3" => AuditHash::Sm3,
        other => {
            report.report(
                "audit.hash",
                format!("unknown hash {other:?}; expected sha256 or sm3"),
            );
            AuditHash::Sha256
        }
    };
    let synchronous = match main.audit.synchronous.as_str() {
        "full" => AuditSync::Full,
        "normal" => AuditSync::Normal,
        other => {
            report.report(
                "audit.synchronous",
                format!("unknown setting {other:?}; expected full or normal"),
            );
            AuditSync::DEFAULT
        }
    };
    const MAX_RESERVE_BYTES: u64 = 1 << 30;
    if main.audit.reserve_bytes > MAX_RESERVE_BYTES {
        report.report(
            "audit.reserve_bytes",
            format!("must be at most {MAX_RESERVE_BYTES} (1 GiB)"),
        );
    }
    let purposes = check_purposes(&main.purposes, &mut report);
    let audit_path = base.join(&main.audit.path);
    let key_file = match &main.audit.key_file {
        Some(file) => base.join(file),
        None => audit_path.with_file_name("audit.key"),
    };
    let audit = AuditSettings {
        path: audit_path,
        hash,
        synchronous,
        reserve_bytes: main.audit.reserve_bytes.min(MAX_RESERVE_BYTES),
        key_file,
    };

    Some(Config {
        path: path.to_owned(),
        gateway,
        registry,
        tls,
        certificates,
        audit,
        store,
        // Read by [`inspect`], which can check their schema names once the registry is loaded.
        departments: Vec::new(),
        purposes,
    })
}

/// `[gateway] instance`, or the host name; a name the trail can hold as it is.
fn check_instance(configured: Option<&str>, report: &mut Reporter<'_>) -> String {
    let valid = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    };
    match configured {
        Some(name) if valid(name) => name.to_owned(),
        Some(_) => {
            report.report(
                "gateway.instance",
                "must be 1 to 64 letters, digits, '.', '_' or '-'",
            );
            "invalid".to_owned()
        }
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| valid(name))
            .unwrap_or_else(|| "xgate".to_owned()),
    }
}

fn check_gateway(
    section: &file::GatewaySection,
    overrides: &Overrides,
    report: &mut Reporter<'_>,
) -> GatewaySettings {
    let mut address = |key: &str, configured: &str, overridden: &Option<String>| {
        let (value, source) = match overridden {
            Some(value) => (value.as_str(), " (from the environment)"),
            None => (configured, ""),
        };
        match value.parse::<SocketAddr>() {
            Ok(address) => address,
            Err(_) => {
                report.report(
                    key,
                    format!(
                        "{value:?}{source} is not an IP address with a port, e.g. 127.0.0.1:8080"
                    ),
                );
                // A placeholder, so the checks that follow still run and report; the problem
                // makes `load` fail, so it is never bound.
                SocketAddr::from(([0, 0, 0, 0], 0))
            }
        }
    };
    let listen = address("gateway.listen", &section.listen, &overrides.listen);
    let admin_listen = address(
        "gateway.admin_listen",
        &section.admin_listen,
        &overrides.admin_listen,
    );
    let mut trusted_proxies = Vec::with_capacity(section.trusted_proxies.len());
    for (index, text) in section.trusted_proxies.iter().enumerate() {
        match TrustedProxies::parse(text) {
            Ok(range) => trusted_proxies.push(range),
            Err(reason) => report.report(format!("gateway.trusted_proxies[{index}]"), reason),
        }
    }
    if section.drain_delay_ms > HOUR_MS {
        report.report(
            "gateway.drain_delay_ms",
            format!("must be between 0 and {HOUR_MS}"),
        );
    }
    let mut positive = |key: &str, value: u64, max: u64| -> usize {
        if value == 0 || value > max {
            report.report(key, format!("must be between 1 and {max}"));
        }
        usize::try_from(value.clamp(1, max)).unwrap_or(usize::MAX)
    };
    const GIB: u64 = 1 << 30;
    const DAY_MS: u64 = 86_400_000;
    let settings = GatewaySettings {
        listen,
        admin_listen,
        max_body_bytes: positive("gateway.max_body_bytes", section.max_body_bytes, GIB),
        upstream_timeout: Duration::from_millis(positive(
            "gateway.upstream_timeout_ms",
            section.upstream_timeout_ms,
            DAY_MS,
        ) as u64),
        header_read_timeout: Duration::from_millis(positive(
            "gateway.header_read_timeout_ms",
            section.header_read_timeout_ms,
            DAY_MS,
        ) as u64),
        max_header_bytes: positive(
            "gateway.max_header_bytes",
            section.max_header_bytes,
            1 << 24,
        ),
        max_headers: positive("gateway.max_headers", section.max_headers, 10_000),
        max_connections: positive("gateway.max_connections", section.max_connections, 1 << 20),
        shutdown_grace: Duration::from_millis(positive(
            "gateway.shutdown_grace_ms",
            section.shutdown_grace_ms,
            DAY_MS,
        ) as u64),
        drain_delay: Duration::from_millis(section.drain_delay_ms.min(HOUR_MS)),
        max_exchanges_in_flight: positive(
            "gateway.max_exchanges_in_flight",
            section.max_exchanges_in_flight,
            MAX_BOUND,
        ),
        max_exchanges_in_flight_per_consumer: positive(
            "gateway.max_exchanges_in_flight_per_consumer",
            section.max_exchanges_in_flight_per_consumer,
            MAX_BOUND,
        ),
        max_upstream_connections_per_provider: positive(
            "gateway.max_upstream_connections_per_provider",
            section.max_upstream_connections_per_provider,
            MAX_BOUND,
        ),
        send_timeout: Duration::from_millis(positive(
            "gateway.send_timeout_ms",
            section.send_timeout_ms,
            DAY_MS,
        ) as u64),
        trusted_proxies: TrustedProxies(trusted_proxies),
        instance: check_instance(
            overrides
                .instance
                .as_deref()
                .or(section.instance.as_deref()),
            report,
        ),
    };
    if settings.max_header_bytes < 8192 {
        report.report("gateway.max_header_bytes", "must be at least 8192");
    }
    if settings.max_exchanges_in_flight_per_consumer > settings.max_exchanges_in_flight {
        report.report(
            "gateway.max_exchanges_in_flight_per_consumer",
            "cannot exceed max_exchanges_in_flight",
        );
    }
    settings
}

/// What a department file's names are checked against: the schemas (when their folder could
/// be read) and every department there is.
struct Names<'a> {
    /// The schemas; `None` when the main file or the folder could not be read.
    registry: Option<&'a Registry>,
    /// Every department id: the stems of the files in the departments folder and the ids the
    /// readable ones declare (a department whose file did not load is reported for its own
    /// file; naming it elsewhere is not a second problem).
    departments: BTreeSet<String>,
    /// The vocabulary of purposes; `None` when the main file could not be read.
    purposes: Option<&'a BTreeMap<PurposeCode, String>>,
}

impl Names<'_> {
    /// A service's or certificate type's `purposes`: codes of the vocabulary, each once, at
    /// least one when the key is there.
    fn purposes(
        &self,
        key: String,
        listed: Option<&[String]>,
        report: &mut Reporter<'_>,
    ) -> Vec<PurposeCode> {
        let Some(listed) = listed else {
            return Vec::new();
        };
        if listed.is_empty() {
            report.report(
                &key,
                "must list at least one purpose (leave it out to accept any)",
            );
        }
        let mut codes = Vec::with_capacity(listed.len());
        for (index, code) in listed.iter().enumerate() {
            let item = format!("{key}[{index}]");
            match PurposeCode::parse(code) {
                Ok(code) if codes.contains(&code) => {
                    report.report(item, format!("{code:?} is listed twice"));
                }
                Ok(code) => {
                    if self
                        .purposes
                        .is_some_and(|purposes| !purposes.contains_key(&code))
                    {
                        report.report(
                            item,
                            format!("unknown purpose {code}: [purposes] in xgate.toml does not define it"),
                        );
                    }
                    codes.push(code);
                }
                Err(error) => report.report(item, error.to_string()),
            }
        }
        codes
    }

    fn schema_exists(&self, key: String, reference: &SchemaRef, report: &mut Reporter<'_>) {
        if let Some(Err(reason)) = self.registry.map(|registry| registry.resolve(reference)) {
            report.report(key, reason);
        }
    }

    fn departments_exist(
        &self,
        key: String,
        consumers: &BTreeSet<DepartmentId>,
        report: &mut Reporter<'_>,
    ) {
        for consumer in consumers {
            if !self.departments.contains(consumer.as_str()) {
                report.report(&key, format!("unknown department {consumer}"));
            }
        }
    }
}

fn load_departments(
    dir: &Path,
    registry: Option<&Registry>,
    purposes: Option<&BTreeMap<PurposeCode, String>>,
    problems: &mut Vec<Problem>,
) -> Vec<Department> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(Problem {
                file: dir.to_owned(),
                key: String::new(),
                reason: format!("cannot read the departments folder: {error}"),
            });
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    let mut names = Names {
        registry,
        purposes,
        departments: paths
            .iter()
            .filter_map(|path| path.file_stem().and_then(|stem| stem.to_str()))
            .map(str::to_owned)
            .collect(),
    };
    // Every file is read before any is checked: a consumer may be named before its file.
    let files: Vec<(PathBuf, file::DepartmentFile)> = paths
        .into_iter()
        .filter_map(|path| {
            let raw = read_toml::<file::DepartmentFile>(&path, problems)?;
            Some((path, raw))
        })
        .collect();
    names
        .departments
        .extend(files.iter().map(|(_, raw)| raw.id.clone()));
    let mut departments: Vec<Department> = Vec::with_capacity(files.len());
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for (path, raw) in files {
        let mut report = Reporter {
            file: &path,
            problems,
        };
        if let Some(first) = seen.insert(raw.id.clone(), path.clone()) {
            report.report(
                "id",
                format!("{:?} is already the id in {}", raw.id, first.display()),
            );
            continue;
        }
        if let Some(department) = check_department(&path, raw, &names, &mut report) {
            departments.push(department);
        }
    }
    departments.sort_by(|a, b| a.id.cmp(&b.id));
    departments
}

fn check_department(
    path: &Path,
    raw: file::DepartmentFile,
    names: &Names<'_>,
    report: &mut Reporter<'_>,
) -> Option<Department> {
    let stem = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("");
    let id = match DepartmentId::parse(&raw.id) {
        Ok(id) => id,
        Err(error) => {
            report.report("id", error.to_string());
            // The rest of the file is checked under the file's name, when that is an id.
            DepartmentId::parse(stem).ok()?
        }
    };
    if id.as_str() == crate::metrics::UNKNOWN {
        report.report(
            "id",
            "`unknown` is reserved: metrics and the audit trail name unidentified callers so",
        );
    }
    if stem != id.as_str() {
        report.report(
            "id",
            format!("must equal the file name: {id}.toml holds department {id}"),
        );
    }
    if raw.name.trim().is_empty() {
        report.report("name", "must not be empty");
    }
    let mut token_digests = Vec::with_capacity(raw.token_sha256.len());
    for (index, digest) in raw.token_sha256.iter().enumerate() {
        let mut bytes = [0u8; 32];
        let lowercase_hex = digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match hex::decode_to_slice(digest, &mut bytes) {
            Ok(()) if lowercase_hex => token_digests.push(bytes),
            _ => report.report(
                format!("token_sha256[{index}]"),
                "must be 64 lowercase hex digits (the SHA-256 that `xgate token new` prints)",
            ),
        }
    }
    let mut cert_subjects = Vec::with_capacity(raw.cert_subjects.len());
    for (index, subject) in raw.cert_subjects.iter().enumerate() {
        let subject = normalize_cert_subject(subject);
        if subject.is_empty() {
            report.report(format!("cert_subjects[{index}]"), "must not be empty");
        } else if cert_subjects.contains(&subject) {
            report.report(format!("cert_subjects[{index}]"), "is listed twice");
        } else {
            cert_subjects.push(subject);
        }
    }
    if raw.role != Role::Department && !raw.services.is_empty() {
        report.report(
            "services",
            format!(
                "a department with role {} provides no services",
                raw.role.as_str()
            ),
        );
    }

    let mut services = Vec::with_capacity(raw.services.len());
    for (name, section) in &raw.services {
        if let Some(service) = check_service(&id, name, section, names, report) {
            services.push(service);
        }
    }
    let mut formats = BTreeMap::new();
    for (schema, section) in &raw.formats {
        let key = format!("formats.{schema}");
        let name = match SchemaName::parse(schema) {
            Ok(name) => name,
            Err(error) => {
                report.report(key, error.to_string());
                continue;
            }
        };
        names.schema_exists(
            key.clone(),
            &SchemaRef {
                name: name.clone(),
                version: None,
            },
            report,
        );
        match Format::parse(section) {
            Ok(format) => {
                formats.insert(name, Arc::new(format));
            }
            Err(errors) => {
                for (subkey, reason) in errors {
                    report.report(format!("{key}.{subkey}"), reason);
                }
            }
        }
    }
    let mut certificate_types = Vec::with_capacity(raw.certificates.len());
    for (name, section) in &raw.certificates {
        if let Some(settings) = check_certificate_type(&id, name, section, names, report) {
            certificate_types.push(settings);
        }
    }
    let max_upstream_connections = raw.max_upstream_connections.map(|cap| {
        if cap == 0 || cap > MAX_BOUND {
            report.report(
                "max_upstream_connections",
                format!("must be between 1 and {MAX_BOUND}"),
            );
        }
        usize::try_from(cap.clamp(1, MAX_BOUND)).unwrap_or(usize::MAX)
    });
    Some(Department {
        id,
        name: raw.name,
        role: raw.role,
        token_digests,
        cert_subjects,
        services,
        formats,
        certificate_types,
        max_upstream_connections,
    })
}

/// A client-certificate identity in the one form both the configuration and the certificates
/// are compared in: the subject's attributes (`CN=tax`, `O=...`), in the certificate's order,
/// each with the spaces around it and around its `=` removed, joined by `,`. Values are
/// compared exactly (case and inner spaces kept). A SAN URI has no `,` and passes unchanged.
pub(crate) fn normalize_cert_subject(subject: &str) -> String {
    subject
        .split(',')
        .map(|part| match part.split_once('=') {
            Some((attribute, value)) => format!("{}={}", attribute.trim(), value.trim()),
            None => part.trim().to_owned(),
        })
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

fn check_consumers(
    key: &str,
    consumers: &[String],
    report: &mut Reporter<'_>,
) -> BTreeSet<DepartmentId> {
    let mut parsed = BTreeSet::new();
    for (index, consumer) in consumers.iter().enumerate() {
        match DepartmentId::parse(consumer) {
            Ok(id) => {
                if !parsed.insert(id) {
                    report.report(
                        format!("{key}[{index}]"),
                        format!("{consumer:?} is listed twice"),
                    );
                }
            }
            Err(error) => report.report(format!("{key}[{index}]"), error.to_string()),
        }
    }
    parsed
}

/// Parses a schema reference and checks that the registry holds it.
fn check_schema_ref(
    key: &str,
    value: &str,
    names: &Names<'_>,
    report: &mut Reporter<'_>,
) -> Option<SchemaRef> {
    match SchemaRef::parse(value) {
        Ok(reference) => {
            names.schema_exists(key.to_owned(), &reference, report);
            Some(reference)
        }
        Err(error) => {
            report.report(key, format!("{error} (write \"name\" or \"name@N\")"));
            None
        }
    }
}

fn check_service(
    provider: &DepartmentId,
    name: &str,
    section: &file::ServiceSection,
    names: &Names<'_>,
    report: &mut Reporter<'_>,
) -> Option<Service> {
    let key = format!("services.{name}");
    let service_name = match ServiceName::parse(name) {
        Ok(name) => Some(name),
        Err(error) => {
            report.report(&key, error.to_string());
            None
        }
    };
    let upstream = check_upstream_url(&format!("{key}.upstream"), &section.upstream, report);
    let mut methods = Vec::with_capacity(section.methods.len());
    if section.methods.is_empty() {
        report.report(format!("{key}.methods"), "must list at least one method");
    }
    for (index, method) in section.methods.iter().enumerate() {
        let well_formed = !method.is_empty()
            && method.len() <= 32
            && method.bytes().all(|b| b.is_ascii_uppercase());
        match Method::from_bytes(method.as_bytes()) {
            Ok(parsed) if well_formed && parsed != Method::CONNECT => {
                if methods.contains(&parsed) {
                    report.report(format!("{key}.methods[{index}]"), "is listed twice");
                }
                methods.push(parsed);
            }
            _ => report.report(
                format!("{key}.methods[{index}]"),
                format!("{method:?} is not an upper-case HTTP method (CONNECT is not proxied)"),
            ),
        }
    }
    let request_schema = section
        .request_schema
        .as_deref()
        .map(|value| check_schema_ref(&format!("{key}.request_schema"), value, names, report));
    let response_schema = section
        .response_schema
        .as_deref()
        .map(|value| check_schema_ref(&format!("{key}.response_schema"), value, names, report));
    let consumers = check_consumers(&format!("{key}.consumers"), &section.consumers, report);
    names.departments_exist(format!("{key}.consumers"), &consumers, report);
    let mut fields = BTreeMap::new();
    for (consumer, paths) in &section.fields {
        let field_key = format!("{key}.fields.{consumer}");
        let Some(consumer_id) = listed_consumer(&field_key, consumer, &consumers, report) else {
            continue;
        };
        if section.response_schema.is_none() {
            report.report(&field_key, "a projection needs a response_schema");
        }
        let mut parsed = Vec::with_capacity(paths.len());
        for (index, path) in paths.iter().enumerate() {
            match FieldPath::parse(path) {
                Ok(path) => parsed.push(path),
                Err(reason) => report.report(format!("{field_key}[{index}]"), reason),
            }
        }
        fields.insert(consumer_id, parsed);
    }
    let purposes = names.purposes(
        format!("{key}.purposes"),
        section.purposes.as_deref(),
        report,
    );
    let masks = check_masks(
        &key,
        &section.masks,
        &consumers,
        response_schema.as_ref().and_then(Option::as_ref),
        names,
        report,
    );
    let subject = section
        .subject
        .as_ref()
        .and_then(|subject| check_subject(&format!("{key}.subject"), subject, section, report));
    Some(Service {
        provider: provider.clone(),
        name: service_name?,
        upstream: upstream?,
        methods,
        request_schema: request_schema.flatten(),
        response_schema: response_schema.flatten(),
        consumers,
        fields,
        purposes,
        masks,
        subject,
    })
}

/// A service's `subject`: a kind's name and a JSON pointer without wildcards into a record the
/// service has a schema for.
fn check_subject(
    key: &str,
    subject: &file::SubjectSection,
    section: &file::ServiceSection,
    report: &mut Reporter<'_>,
) -> Option<SubjectPointer> {
    let kind = SubjectKind::parse(&subject.kind)
        .map_err(|error| report.report(format!("{key}.kind"), error.to_string()))
        .ok();
    let pointer = match FieldPath::parse(&subject.pointer) {
        Ok(path) if path.wildcard_count() > 0 => {
            report.report(
                format!("{key}.pointer"),
                "names one value: a subject pointer has no `*`",
            );
            None
        }
        Ok(_) => Some(subject.pointer.clone()),
        Err(reason) => {
            report.report(format!("{key}.pointer"), reason);
            None
        }
    };
    if section.request_schema.is_none() && section.response_schema.is_none() {
        report.report(
            key,
            "a subject is read from the shared request or response: the service needs a request_schema or a response_schema",
        );
    }
    Some(SubjectPointer {
        kind: kind?,
        pointer: pointer?,
    })
}

fn check_upstream_url(key: &str, value: &str, report: &mut Reporter<'_>) -> Option<url::Url> {
    let url = match url::Url::parse(value) {
        Ok(url) => url,
        Err(error) => {
            report.report(key, format!("{value:?} is not a URL: {error}"));
            return None;
        }
    };
    let problem = if url.scheme() != "http" && url.scheme() != "https" {
        Some("only http:// and https:// upstreams are supported")
    } else if url.host().is_none() {
        Some("has no host")
    } else if url.query().is_some() || url.fragment().is_some() {
        Some("must have no query or fragment (the caller's query is appended)")
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("must not carry credentials")
    } else {
        None
    };
    match problem {
        Some(reason) => {
            report.report(key, reason);
            None
        }
        None => Some(url),
    }
}

fn check_certificate_type(
    issuer: &DepartmentId,
    name: &str,
    section: &file::CertificateTypeSection,
    names: &Names<'_>,
    report: &mut Reporter<'_>,
) -> Option<CertificateTypeSettings> {
    let key = format!("certificates.{name}");
    let certificate_type = match CertificateType::parse(name) {
        Ok(certificate_type) => Some(certificate_type),
        Err(error) => {
            report.report(&key, error.to_string());
            None
        }
    };
    let lookup_ok = match section.lookup.split_once("{id}") {
        // The id goes in the path, never in the host or port.
        Some((before, _))
            if before
                .split_once("//")
                .is_some_and(|(_, authority)| !authority.contains('/')) =>
        {
            report.report(format!("{key}.lookup"), "{id} must be in the URL's path");
            false
        }
        Some((before, after)) => {
            !after.contains("{id}")
                && check_upstream_url(
                    &format!("{key}.lookup"),
                    &format!("{before}0{after}"),
                    report,
                )
                .is_some()
        }
        None => {
            report.report(format!("{key}.lookup"), "must contain {id} exactly once");
            false
        }
    };
    let schema = check_schema_ref(&format!("{key}.schema"), &section.schema, names, report);
    if !xgate_core::identifiers::FORMATS
        .iter()
        .any(|(format, _)| *format == section.id_format)
    {
        report.report(
            format!("{key}.id_format"),
            format!(
                "unknown identifier format {:?}; expected one of {}",
                section.id_format,
                xgate_core::identifiers::FORMATS
                    .map(|(name, _)| name)
                    .join(", ")
            ),
        );
    }
    let consumers = check_consumers(&format!("{key}.consumers"), &section.consumers, report);
    names.departments_exist(format!("{key}.consumers"), &consumers, report);
    let purposes = names.purposes(
        format!("{key}.purposes"),
        section.purposes.as_deref(),
        report,
    );
    let masks = check_masks(
        &key,
        &section.masks,
        &consumers,
        schema.as_ref(),
        names,
        report,
    );
    if !lookup_ok {
        return None;
    }
    let certificate_type = certificate_type?;
    Some(CertificateTypeSettings {
        subject_kind: xgate_core::subject::of_certificate_type(
            &certificate_type,
            &section.id_format,
        ),
        certificate_type,
        issuer: issuer.clone(),
        lookup: section.lookup.clone(),
        schema: schema?,
        id_format: section.id_format.clone(),
        consumers,
        purposes,
        masks,
    })
}

/// The consumers' masks that mask anything, for one lookup on the request path.
pub(crate) fn masks_by_consumer(
    masks: &BTreeMap<DepartmentId, Masks>,
) -> HashMap<DepartmentId, Masks> {
    masks
        .iter()
        .filter(|(_, masks)| !masks.is_empty())
        .map(|(consumer, masks)| (consumer.clone(), masks.clone()))
        .collect()
}

/// A per-consumer table's key (`fields`, `masks`): a department id (`None` after reporting it
/// is not one), reported when it is not one of `consumers`.
fn listed_consumer(
    key: &str,
    consumer: &str,
    consumers: &BTreeSet<DepartmentId>,
    report: &mut Reporter<'_>,
) -> Option<DepartmentId> {
    let Ok(id) = DepartmentId::parse(consumer) else {
        report.report(key, "is not a department id");
        return None;
    };
    if !consumers.contains(&id) {
        report.report(key, format!("{consumer} is not one of the consumers"));
    }
    Some(id)
}

/// `[services.X.masks]` or `[certificates.T.masks]` (SPEC §15): per consumer (a department id,
/// one of `consumers`), shared pointers the `schema` can hold, each with a known mask kind. A
/// mask without a schema is a problem: there is no shared record to mask. Returns what parsed,
/// each consumer's rules in pointer order (the TOML table's keys, sorted).
fn check_masks(
    key: &str,
    section: &BTreeMap<String, BTreeMap<String, String>>,
    consumers: &BTreeSet<DepartmentId>,
    schema: Option<&SchemaRef>,
    names: &Names<'_>,
    report: &mut Reporter<'_>,
) -> BTreeMap<DepartmentId, Masks> {
    let mut masks = BTreeMap::new();
    if !section.is_empty() && schema.is_none() {
        let what = if key.starts_with("services.") {
            "masks need a response_schema: they apply to the shared record"
        } else {
            "masks need a schema: they apply to the shared record"
        };
        report.report(format!("{key}.masks"), what);
    }
    let compiled = schema
        .zip(names.registry)
        .and_then(|(schema, registry)| Some((registry.resolve(schema).ok()?, registry)));
    for (consumer, rules) in section {
        let consumer_key = format!("{key}.masks.{consumer}");
        let Some(consumer_id) = listed_consumer(&consumer_key, consumer, consumers, report) else {
            continue;
        };
        let mut parsed = Vec::with_capacity(rules.len());
        for (pointer, kind) in rules {
            let rule_key = format!("{consumer_key}.{pointer:?}");
            let path = match FieldPath::parse(pointer) {
                Ok(path) => path,
                Err(reason) => {
                    report.report(&rule_key, reason);
                    continue;
                }
            };
            if let Some((schema, registry)) = &compiled
                && !xgate_core::registry::holds::can_hold(schema, registry.documents(), &path)
            {
                report.report(
                    &rule_key,
                    format!("{} cannot hold a value at {pointer}", schema.label()),
                );
            }
            match MaskKind::parse(kind) {
                Ok(kind) => parsed.push((path, kind)),
                Err(reason) => report.report(&rule_key, reason),
            }
        }
        masks.insert(consumer_id, Masks::new(parsed));
    }
    masks
}

/// Checks what no department file can say wrong on its own: a certificate type, a token or a
/// client-certificate identity claimed by two departments. (Each file's names of schemas and
/// departments are checked with the file, [`Names`].)
fn check_references(config: &Config, problems: &mut Vec<Problem>) {
    let departments_dir = config
        .path
        .parent()
        .unwrap_or(Path::new("."))
        .join("departments");
    let mut certificate_types: HashMap<&CertificateType, &DepartmentId> = HashMap::new();
    let mut token_owner: HashMap<[u8; 32], &DepartmentId> = HashMap::new();
    let mut subject_owner: HashMap<&str, &DepartmentId> = HashMap::new();
    for department in &config.departments {
        let file = departments_dir.join(format!("{}.toml", department.id));
        let mut report = Reporter {
            file: &file,
            problems,
        };
        for certificate in &department.certificate_types {
            let key = format!("certificates.{}", certificate.certificate_type);
            if let Some(other) =
                certificate_types.insert(&certificate.certificate_type, &department.id)
            {
                report.report(&key, format!("certificate type already issued by {other}"));
            }
        }
        for digest in &department.token_digests {
            if let Some(other) = token_owner.insert(*digest, &department.id) {
                report.report(
                    "token_sha256",
                    format!("the same token is configured for {other}; a token identifies one department"),
                );
            }
        }
        for subject in &department.cert_subjects {
            if let Some(other) = subject_owner.insert(subject, &department.id) {
                report.report(
                    "cert_subjects",
                    format!("{subject:?} already identifies {other}"),
                );
            }
        }
    }
}
