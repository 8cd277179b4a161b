//! The configuration files as written: serde types with `deny_unknown_fields`, no meaning yet.
//!
//! Every field here is documented because these are the keys operators write. Values are kept
//! raw (strings, numbers); `config::check` turns them into runtime types and reports problems.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use xgate_core::domain::Role;

/// `config/xgate.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MainFile {
    /// The listeners and request limits.
    pub gateway: GatewaySection,
    /// Where the shared schemas live.
    #[serde(default)]
    pub registry: RegistrySection,
    /// TLS on the data plane; absent means plain HTTP.
    pub tls: Option<TlsSection>,
    /// The electronic-certificate cache.
    #[serde(default)]
    pub certificates: CertificatesSection,
    /// The audit trail.
    #[serde(default)]
    pub audit: AuditSection,
    /// The shared store (SPEC §13): absent, the gateway keeps its schemas in files and its
    /// trail in SQLite (the embedded default).
    pub store: Option<StoreSection>,
    /// The deployment's vocabulary of purposes (SPEC §15): code → label, e.g.
    /// `tax-assessment = "税务核定 Tax assessment"`. Services and certificate types name codes
    /// of it in their `purposes`.
    #[serde(default)]
    pub purposes: BTreeMap<String, String>,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoreSection {
    /// The PostgreSQL URL (`postgres://user@host:5432/database`); `XGATE_STORE_URL` replaces
    /// it. A password comes from the URL, `PGPASSWORD` or a passfile and is never logged.
    pub url: Option<String>,
    /// The most database connections the gateway opens at once (the trail's writer, the
    /// registry's writes and the auditors' queries share them; the change listener has one
    /// of its own).
    #[serde(default = "defaults::store_pool_size")]
    pub pool_size: u64,
}

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GatewaySection {
    /// The data plane's address, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// The admin plane's address; bind it to an internal interface.
    pub admin_listen: String,
    /// The largest request body read for validation (and upstream body read for validation).
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: u64,
    /// How long to wait for an upstream's response headers (and a validated response's body).
    #[serde(default = "defaults::upstream_timeout_ms")]
    pub upstream_timeout_ms: u64,
    /// How long a client may take to send its request headers (slow-client protection).
    #[serde(default = "defaults::header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// The largest request head (HTTP/1.1 header buffer, HTTP/2 header list).
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: u64,
    /// The most request headers one HTTP/1.1 request may carry.
    #[serde(default = "defaults::max_headers")]
    pub max_headers: u64,
    /// The most client connections open at once per listener; further ones wait to be accepted.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u64,
    /// How long a graceful shutdown waits for in-flight requests before closing connections.
    #[serde(default = "defaults::shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// How long, after SIGTERM or Ctrl-C, `/readyz` answers 503 on both planes while
    /// everything else is still served, so that load balancers take the gateway out before it
    /// stops accepting connections and drains (0: stop accepting at once).
    #[serde(default = "defaults::drain_delay_ms")]
    pub drain_delay_ms: u64,
    /// The most exchanges and certificate lookups in flight at once, over every consumer;
    /// past it, calls are refused at once with 503 `overloaded`.
    #[serde(default = "defaults::max_exchanges_in_flight")]
    pub max_exchanges_in_flight: u64,
    /// The most exchanges and certificate lookups one consumer may have in flight at once;
    /// past it, its calls are refused at once with 429 `rate-limited`.
    #[serde(default = "defaults::max_exchanges_in_flight_per_consumer")]
    pub max_exchanges_in_flight_per_consumer: u64,
    /// The most upstream connections open at once (busy and idle, over all its services and
    /// certificate types) to one providing department, unless its file says otherwise.
    #[serde(default = "defaults::max_upstream_connections_per_provider")]
    pub max_upstream_connections_per_provider: u64,
    /// How long a write to a caller may wait for the caller to read (between two writes that
    /// make progress, as nginx's `send_timeout`); past it the connection is closed.
    #[serde(default = "defaults::send_timeout_ms")]
    pub send_timeout_ms: u64,
    /// The proxies in front of the gateway whose forwarding headers are believed: addresses
    /// (`192.0.2.7`, `2001:db8::1`) and CIDR ranges (`10.0.0.0/8`). From any other peer the
    /// gateway replaces `X-Forwarded-For` and `Forwarded` with the peer's address. Empty (the
    /// default): every caller connects directly.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// This gateway's name in the audit trail, when several gateways share one store
    /// (`gw-1`): letters, digits, `.`, `_` and `-`, at most 64. Default: the host name.
    pub instance: Option<String>,
}

/// `[registry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistrySection {
    /// The schema folder: `<dir>/<name>/<version>.json` and `<dir>/<name>/settings.toml`.
    #[serde(default = "defaults::registry_dir")]
    pub dir: PathBuf,
    /// The compatibility mode of schemas without their own `settings.toml`.
    #[serde(default = "defaults::compatibility")]
    pub default_compatibility: String,
    /// How long a registration's (or dry run's) compatibility check may run before it is
    /// answered `unproven`.
    #[serde(default = "defaults::check_timeout_ms")]
    pub check_timeout_ms: u64,
}

impl Default for RegistrySection {
    fn default() -> Self {
        RegistrySection {
            dir: defaults::registry_dir(),
            default_compatibility: defaults::compatibility(),
            check_timeout_ms: defaults::check_timeout_ms(),
        }
    }
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsSection {
    /// The gateway's certificate chain (PEM).
    pub cert: PathBuf,
    /// The gateway's private key (PEM).
    pub key: PathBuf,
    /// Present: client certificates signed by these CAs identify departments.
    pub client_ca: Option<PathBuf>,
    /// Extra trusted roots for `https` upstreams.
    pub upstream_ca: Option<PathBuf>,
    /// Whether every data-plane connection must present a client certificate (then bearer
    /// tokens are not accepted there). Defaults to `true` when `client_ca` is set.
    pub require_client_cert: Option<bool>,
    /// The certificate chain (PEM) the gateway presents to `https` upstreams that ask for one.
    pub upstream_cert: Option<PathBuf>,
    /// The private key (PEM) of `upstream_cert`.
    pub upstream_key: Option<PathBuf>,
    /// How long a client may take to complete its TLS handshake, in milliseconds.
    #[serde(default = "defaults::handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

/// `[certificates]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificatesSection {
    /// The most cached certificate lookups (entries).
    #[serde(default = "defaults::certificate_capacity")]
    pub capacity: u64,
    /// How long a looked-up certificate is served from the cache.
    #[serde(default = "defaults::certificate_ttl_seconds")]
    pub ttl_seconds: u64,
    /// How long an issuer's "not found" is remembered.
    #[serde(default = "defaults::certificate_not_found_ttl_seconds")]
    pub not_found_ttl_seconds: u64,
    /// How long past expiry an entry may be served when the issuer fails.
    #[serde(default = "defaults::certificate_stale_if_error_seconds")]
    pub stale_if_error_seconds: u64,
}

impl Default for CertificatesSection {
    fn default() -> Self {
        CertificatesSection {
            capacity: defaults::certificate_capacity(),
            ttl_seconds: defaults::certificate_ttl_seconds(),
            not_found_ttl_seconds: defaults::certificate_not_found_ttl_seconds(),
            stale_if_error_seconds: defaults::certificate_stale_if_error_seconds(),
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditSection {
    /// The SQLite database of the audit trail (created on first start).
    #[serde(default = "defaults::audit_path")]
    pub path: PathBuf,
    /// The hash chaining entries: `sha256` (default) or `sm3`.
    #[serde(default = "defaults::audit_hash")]
    pub hash: String,
    /// When a commit reaches the disk: `normal` (at checkpoints; an answered exchange's entry
    /// survives a killed process, as SPEC §9 requires) or `full` (at every commit: it survives
    /// an operating-system crash, a power loss and a device that fails, for one disk sync per
    /// batch of latency). The default is `crate::config::AuditSync::DEFAULT`.
    #[serde(default = "defaults::audit_synchronous")]
    pub synchronous: String,
    /// Bytes kept allocated beside the database (`<path>-reserve`) for the moment the disk
    /// fills: given back to the file system when a commit finds no space, so that the entries
    /// of exchanges already forwarded still commit while new ones are refused. 0 turns it off.
    #[serde(default = "defaults::audit_reserve_bytes")]
    pub reserve_bytes: u64,
    /// The audit key (SPEC §15): 64 hex digits, the secret of every keyed digest in the trail.
    /// Created with mode 0600 at the first start when absent; default `audit.key` next to
    /// `path`. With a store, every gateway needs the same file.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            path: defaults::audit_path(),
            hash: defaults::audit_hash(),
            synchronous: defaults::audit_synchronous(),
            reserve_bytes: defaults::audit_reserve_bytes(),
            key_file: None,
        }
    }
}

/// `config/departments/<id>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DepartmentFile {
    /// The department's id; must equal the file's stem.
    pub id: String,
    /// A human name, e.g. `税务局 Tax Bureau`.
    pub name: String,
    /// `department`, `auditor` or `admin`.
    pub role: Role,
    /// Lowercase hex SHA-256 digests of the department's bearer tokens.
    #[serde(default)]
    pub token_sha256: Vec<String>,
    /// Client-certificate subjects (e.g. `CN=tax`) that identify the department.
    #[serde(default)]
    pub cert_subjects: Vec<String>,
    /// The services this department provides, by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceSection>,
    /// How this department's own layout maps to each shared schema, by schema name.
    #[serde(default)]
    pub formats: BTreeMap<String, xgate_core::translate::FormatSection>,
    /// The certificate types this department issues, by type.
    #[serde(default)]
    pub certificates: BTreeMap<String, CertificateTypeSection>,
    /// The most upstream connections the gateway keeps open at once to this department's
    /// services and certificate issuers (busy and idle); `[gateway]
    /// max_upstream_connections_per_provider` when absent.
    pub max_upstream_connections: Option<u64>,
}

/// `[services.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceSection {
    /// The provider's endpoint; the caller's path rest and query are appended.
    pub upstream: String,
    /// The HTTP methods callers may use.
    pub methods: Vec<String>,
    /// The schema request bodies must match: `name` (latest) or `name@N` (pinned).
    pub request_schema: Option<String>,
    /// The schema 2xx response bodies must match.
    pub response_schema: Option<String>,
    /// The departments allowed to call the service.
    pub consumers: Vec<String>,
    /// Per consumer, the shared response fields it receives (JSON Pointers, `*` for array elements).
    #[serde(default)]
    pub fields: BTreeMap<String, Vec<String>>,
    /// The codes of `[purposes]` callers may state in `Xgate-Purpose`; when set, a call must
    /// state one of them (400 without `Xgate-Purpose`, 403 with another).
    pub purposes: Option<Vec<String>>,
    /// Per consumer, the masks of its responses: shared pointer → mask kind (SPEC §15).
    #[serde(default)]
    pub masks: BTreeMap<String, BTreeMap<String, String>>,
    /// Whose record the service carries (SPEC §15): the trail keeps its keyed digest, and
    /// `GET /audit/subjects/{kind}/{id}` finds the call.
    #[serde(default)]
    pub subject: Option<SubjectSection>,
}

/// `subject = { kind, pointer }` of a service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubjectSection {
    /// `resident`, `organisation`, or another kind's name.
    pub kind: String,
    /// A JSON pointer into the shared request or response (looked for in the request first).
    pub pointer: String,
}

/// `[certificates.<type>]` in a department file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateTypeSection {
    /// The issuer's lookup URL with an `{id}` placeholder.
    pub lookup: String,
    /// The schema the issuer's answers must match.
    pub schema: String,
    /// The identifier format ids are checked against before any lookup.
    pub id_format: String,
    /// The departments allowed to look certificates of this type up.
    pub consumers: Vec<String>,
    /// The codes of `[purposes]` a lookup may state in `Xgate-Purpose`; when set, a lookup
    /// must state one of them (403 with another).
    pub purposes: Option<Vec<String>>,
    /// Per consumer, the masks of its answers: shared pointer → mask kind (SPEC §15).
    #[serde(default)]
    pub masks: BTreeMap<String, BTreeMap<String, String>>,
}

mod defaults {
    use std::path::PathBuf;

    pub fn max_body_bytes() -> u64 {
        1024 * 1024
    }
    pub fn store_pool_size() -> u64 {
        16
    }
    pub fn upstream_timeout_ms() -> u64 {
        10_000
    }
    pub(crate) fn header_read_timeout_ms() -> u64 {
        10_000
    }
    pub fn handshake_timeout_ms() -> u64 {
        10_000
    }
    pub fn max_header_bytes() -> u64 {
        64 * 1024
    }
    pub(crate) fn max_headers() -> u64 {
        100
    }
    pub fn max_connections() -> u64 {
        10_000
    }
    pub(crate) fn shutdown_grace_ms() -> u64 {
        30_000
    }
    pub fn drain_delay_ms() -> u64 {
        5_000
    }
    pub fn max_exchanges_in_flight() -> u64 {
        4096
    }
    pub(crate) fn max_exchanges_in_flight_per_consumer() -> u64 {
        1024
    }
    pub(crate) fn max_upstream_connections_per_provider() -> u64 {
        1024
    }
    pub fn send_timeout_ms() -> u64 {
        30_000
    }
    pub(crate) fn registry_dir() -> PathBuf {
        PathBuf::from("../schemas")
    }
    pub fn compatibility() -> String {
        "backward".to_owned()
    }
    pub fn check_timeout_ms() -> u64 {
        10_000
    }
    pub(crate) fn certificate_capacity() -> u64 {
        100_000
    }
    pub(crate) fn certificate_ttl_seconds() -> u64 {
        300
    }
    pub(crate) fn certificate_not_found_ttl_seconds() -> u64 {
        30
    }
    pub(crate) fn certificate_stale_if_error_seconds() -> u64 {
        3600
    }
    pub fn audit_path() -> PathBuf {
        PathBuf::from("../data/audit.db")
    }
    pub(crate) fn audit_hash() -> String {
        "sha256".to_owned()
    }
    pub(crate) fn audit_synchronous() -> String {
        crate::config::AuditSync::DEFAULT.as_str().to_owned()
    }
    pub(crate) fn audit_reserve_bytes() -> u64 {
        16 << 20
    }
}
