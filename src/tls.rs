//! TLS: the data plane's server configuration (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, client
//! certificates verified against `client_ca`), the identity a verified client certificate
//! carries, and the upstream client's configuration (system roots plus `upstream_ca`, optionally
//! the gateway's own client certificate).
//!
//! Everything here is built from files at start-up or on a reload (on the blocking pool), never
//! on the request path: a connection takes the current server configuration once, when it is
//! accepted, and its client identity is read once, right after its handshake.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{Config, Problem, Problems, TlsSettings, normalize_cert_subject};

pub mod init;

/// The protocol versions served and spoken: TLS 1.2 and 1.3 only.
static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The one crypto provider (ring).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration for TLS to the shared store's PostgreSQL server (its URL says
/// `sslmode=require`): the system's roots, TLS 1.2 and 1.3, no client certificate.
pub(crate) fn database_client_config() -> Result<ClientConfig, String> {
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map(|builder| builder.with_root_certificates(store).with_no_client_auth())
        .map_err(|error| format!("cannot configure TLS 1.2 and 1.3: {error}"))
}

/// The data plane's TLS, when `[tls]` is configured: the server configuration every new
/// handshake uses, swapped whole by a reload (connections already open keep theirs).
pub struct ServerTls {
    current: ArcSwap<Handshake>,
}

/// What one handshake uses.
pub struct Handshake {
    /// Certificates, keys, client verification, versions, ALPN.
    pub config: Arc<ServerConfig>,
    /// How long the client may take to finish the handshake.
    pub timeout: Duration,
}

impl ServerTls {
    /// Serves `config` until [`ServerTls::replace`].
    pub fn new(config: Arc<ServerConfig>, timeout: Duration) -> ServerTls {
        ServerTls {
            current: ArcSwap::from_pointee(Handshake { config, timeout }),
        }
    }

    /// What the next handshake uses.
    pub fn current(&self) -> Arc<Handshake> {
        self.current.load_full()
    }

    /// Makes `config` the one new handshakes use.
    pub fn replace(&self, config: Arc<ServerConfig>, timeout: Duration) {
        self.current.store(Arc::new(Handshake { config, timeout }));
    }
}

/// What the configuration's TLS files build: the data plane's server configuration (with
/// `[tls]`) and the upstream client's (when an upstream or issuer is `https`, or `upstream_ca`
/// or `upstream_cert` is set).
pub struct TlsMaterial {
    /// The data plane's server configuration.
    pub server: Option<Arc<ServerConfig>>,
    /// The upstream client's configuration.
    pub upstream: Option<Arc<ClientConfig>>,
}

impl TlsMaterial {
    /// Reads and checks every certificate and key `config` names; every problem is reported
    /// with the main file and the `tls.*` key. Reads files: call it at start-up or on the
    /// blocking pool.
    pub fn load(config: &Config) -> Result<TlsMaterial, Problems> {
        let mut problems = Vec::new();
        let mut report = |key: &str, reason: String| {
            problems.push(Problem {
                file: config.path.clone(),
                key: format!("tls.{key}"),
                reason,
            })
        };
        let server = config
            .tls
            .as_ref()
            .and_then(|settings| server_config(settings, &mut report));
        let upstream = if needs_upstream_tls(config) {
            upstream_config(config.tls.as_ref(), &mut report)
        } else {
            None
        };
        if problems.is_empty() {
            Ok(TlsMaterial { server, upstream })
        } else {
            Err(Problems(problems))
        }
    }
}

/// Whether anything the gateway calls is `https`, or the upstream TLS settings are given.
fn needs_upstream_tls(config: &Config) -> bool {
    let settings = config.tls.as_ref();
    settings.is_some_and(|tls| tls.upstream_ca.is_some() || tls.upstream_cert.is_some())
        || config.departments.iter().any(|department| {
            department
                .services
                .iter()
                .any(|service| service.upstream.scheme() == "https")
                || department
                    .certificate_types
                    .iter()
                    .any(|certificate| certificate.lookup.starts_with("https:"))
        })
}

fn read_certificates(
    key: &str,
    path: &Path,
    report: &mut impl FnMut(&str, String),
) -> Option<Vec<CertificateDer<'static>>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            report(key, format!("cannot read the file: {error}"));
            return None;
        }
    };
    match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
        Ok(certificates) if certificates.is_empty() => {
            report(key, "holds no PEM certificate".to_owned());
            None
        }
        Ok(certificates) => Some(certificates),
        Err(error) => {
            report(key, format!("is not valid PEM: {error}"));
            None
        }
    }
}

fn read_key(
    key: &str,
    path: &Path,
    report: &mut impl FnMut(&str, String),
) -> Option<PrivateKeyDer<'static>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            report(key, format!("cannot read the file: {error}"));
            return None;
        }
    };
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(private_key) => Some(private_key),
        Err(error) => {
            report(key, format!("holds no usable PEM private key: {error}"));
            None
        }
    }
}

fn roots(
    key: &str,
    path: &Path,
    roots: &mut RootCertStore,
    report: &mut impl FnMut(&str, String),
) -> Option<()> {
    for certificate in read_certificates(key, path, report)? {
        if let Err(error) = roots.add(certificate) {
            report(
                key,
                format!("holds a certificate that is not a usable CA: {error}"),
            );
            return None;
        }
    }
    Some(())
}

/// The data plane's server configuration: TLS 1.2/1.3, ALPN `h2` then `http/1.1`, the
/// gateway's certificate and key (which must match), client certificates verified against
/// `client_ca` (chain, validity, client-auth usage), required unless `require_client_cert` is
/// off.
fn server_config(
    settings: &TlsSettings,
    report: &mut impl FnMut(&str, String),
) -> Option<Arc<ServerConfig>> {
    let provider = provider();
    let chain = read_certificates("cert", &settings.cert, report);
    let private_key = read_key("key", &settings.key, report);
    let verifier = match &settings.client_ca {
        Some(path) => {
            let mut store = RootCertStore::empty();
            roots("client_ca", path, &mut store, report)?;
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone());
            let builder = if settings.require_client_cert {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            match builder.build() {
                Ok(verifier) => Some(verifier),
                Err(error) => {
                    report(
                        "client_ca",
                        format!("cannot verify client certificates: {error}"),
                    );
                    return None;
                }
            }
        }
        None => None,
    };
    let (chain, private_key) = (chain?, private_key?);
    let builder = match ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
    {
        Ok(builder) => builder,
        Err(error) => {
            report("cert", format!("cannot configure TLS 1.2 and 1.3: {error}"));
            return None;
        }
    };
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = match builder.with_single_cert(chain, private_key) {
        Ok(config) => config,
        Err(error) => {
            report("key", key_problem(&error));
            return None;
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Some(Arc::new(config))
}

/// What is wrong with a certificate and key pair, in a sentence.
fn key_problem(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "does not match the certificate (its public key differs)".to_owned()
        }
        other => format!("cannot be used with the certificate: {other}"),
    }
}

/// The upstream client's configuration: the system's roots plus `upstream_ca`, ALPN
/// `http/1.1` (the upstream client speaks HTTP/1.1), and `upstream_cert` when given.
fn upstream_config(
    settings: Option<&TlsSettings>,
    report: &mut impl FnMut(&str, String),
) -> Option<Arc<ClientConfig>> {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::warn!(
            errors = native.errors.len(),
            "some system root certificates could not be read"
        );
    }
    store.add_parsable_certificates(native.certs);
    if let Some(path) = settings.and_then(|tls| tls.upstream_ca.as_deref()) {
        roots("upstream_ca", path, &mut store, report)?;
    }
    let builder = match ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
    {
        Ok(builder) => builder.with_root_certificates(store),
        Err(error) => {
            report(
                "upstream_ca",
                format!("cannot configure TLS 1.2 and 1.3: {error}"),
            );
            return None;
        }
    };
    let identity = settings.and_then(|tls| {
        tls.upstream_cert
            .as_deref()
            .zip(tls.upstream_key.as_deref())
    });
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = read_certificates("upstream_cert", cert, report);
            let private_key = read_key("upstream_key", key, report);
            match builder.with_client_auth_cert(chain?, private_key?) {
                Ok(config) => config,
                Err(error) => {
                    report("upstream_key", key_problem(&error));
                    return None;
                }
            }
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(config))
}

/// The identities a verified client certificate carries, read once after the handshake: its
/// full subject, `CN=...` for each common name, and each SAN URI, all normalized
/// ([`normalize_cert_subject`]). A department is the one whose `cert_subjects` lists one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    names: Box<[Box<str>]>,
}

impl ClientCertificate {
    /// The identities of a DER certificate, or `None` when it cannot be parsed (rustls has
    /// already verified it, so that does not happen for a connection's certificate).
    pub(crate) fn from_der(der: &[u8]) -> Option<ClientCertificate> {
        let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = certificate.subject();
        let mut names: Vec<Box<str>> = Vec::new();
        // RFC 4514-style, in the certificate's order: `CN=tax, O=Government, C=CN`.
        names.push(normalize_cert_subject(&subject.to_string()).into());
        for common_name in subject.iter_common_name() {
            if let Ok(value) = common_name.as_str() {
                let name: Box<str> = normalize_cert_subject(&format!("CN={value}")).into();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        if let Ok(Some(alternative)) = certificate.subject_alternative_name() {
            for general in &alternative.value.general_names {
                if let x509_parser::extensions::GeneralName::URI(uri) = general {
                    names.push((*uri).into());
                }
            }
        }
        Some(ClientCertificate {
            names: names.into_boxed_slice(),
        })
    }

    /// The identities, most specific first (full subject, common names, SAN URIs).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|name| &**name)
    }
}

/// What a data-plane route handler takes to learn the connection's client certificate: the
/// server puts it in the request's extensions when the connection has one.
pub(crate) type ConnectionCertificate = Option<axum::Extension<Arc<ClientCertificate>>>;

/// The certificate of a [`ConnectionCertificate`], if any.
pub fn presented(certificate: &ConnectionCertificate) -> Option<&ClientCertificate> {
    certificate
        .as_ref()
        .map(|axum::Extension(certificate)| &**certificate)
}

/// The verified client certificate of a finished handshake, if the client presented one.
pub(crate) fn client_certificate(
    connection: &rustls::ServerConnection,
) -> Option<ClientCertificate> {
    let certificate = connection.peer_certificates()?.first()?;
    ClientCertificate::from_der(certificate.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_carries_its_full_subject_its_common_names_and_its_san_uris() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tax");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Tax Bureau");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://exchange/tax".try_into().unwrap(),
        ));
        let certificate = params.self_signed(&key).unwrap();
        let identity = ClientCertificate::from_der(certificate.der()).unwrap();
        assert_eq!(
            identity.names().collect::<Vec<_>>(),
            ["CN=tax,O=Tax Bureau", "CN=tax", "spiffe://exchange/tax"]
        );
        assert_eq!(ClientCertificate::from_der(b"not a certificate"), None);
    }

    #[test]
    fn subjects_compare_without_the_spaces_around_separators() {
        for (written, normalized) in [
            ("CN=tax", "CN=tax"),
            (" CN = tax , O = Tax Bureau ", "CN=tax,O=Tax Bureau"),
            ("spiffe://exchange/tax", "spiffe://exchange/tax"),
            ("  ", ""),
        ] {
            assert_eq!(normalize_cert_subject(written), normalized, "{written:?}");
        }
    }
}
