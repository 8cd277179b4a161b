//! `xgate tls init <dir>`: development certificates for trying mutual TLS on one machine.
//!
//! A development CA, the gateway's certificate (SANs `localhost` and `127.0.0.1`, usable to serve
//! and as `upstream_cert`), and one client certificate per department (`CN=<department id>`, the
//! form the example configuration's `cert_subjects` use), all signed by the CA, as PEM files;
//! private keys are written readable by their owner only. Existing files are never overwritten
//! unless asked. Not for production: a real exchange has its own CA.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use xgate_core::domain::DepartmentId;

/// How long the generated certificates are valid, in days.
pub(crate) const VALIDITY_DAYS: i64 = 365;

/// Why `tls init` wrote nothing (or stopped part-way, for a write error).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Files that exist already (and `force` was not given).
    #[error("these files exist already (use --force to replace them): {}", list(.0))]
    Exists(Vec<PathBuf>),
    /// Generating a key or certificate failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing a file failed.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The files `tls init` writes under `dir`, in writing order: the CA, the gateway, then each
/// department's certificate and key (`departments/<id>.pem`, `departments/<id>-key.pem`).
pub(crate) fn planned_files(dir: &Path, departments: &[DepartmentId]) -> Vec<PathBuf> {
    let mut files = vec![
        dir.join("ca.pem"),
        dir.join("ca-key.pem"),
        dir.join("gateway.pem"),
        dir.join("gateway-key.pem"),
    ];
    for department in departments {
        files.push(dir.join(format!("departments/{department}.pem")));
        files.push(dir.join(format!("departments/{department}-key.pem")));
    }
    files
}

/// Generates and writes the development CA, the gateway's certificate and one client
/// certificate per department under `dir`; returns the files written.
pub fn init(
    dir: &Path,
    departments: &[DepartmentId],
    force: bool,
) -> Result<Vec<PathBuf>, InitError> {
    let files = planned_files(dir, departments);
    if !force {
        let existing: Vec<PathBuf> = files.iter().filter(|f| f.exists()).cloned().collect();
        if !existing.is_empty() {
            return Err(InitError::Exists(existing));
        }
    }
    let today = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()).date_naive();
    let validity = |params: &mut CertificateParams| {
        use chrono::Datelike;
        let end = today + chrono::Days::new(VALIDITY_DAYS as u64);
        // Months and days from chrono are always in range.
        params.not_before =
            rcgen::date_time_ymd(today.year(), today.month() as u8, today.day() as u8);
        params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
    };

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("xgate development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca_params);
    let ca_certificate = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let mut written = Vec::with_capacity(files.len());
    let mut write = |path: &Path, text: &str, private: bool| -> Result<(), InitError> {
        write_file(path, text, private).map_err(|error| InitError::Write {
            path: path.to_owned(),
            error,
        })?;
        written.push(path.to_owned());
        Ok(())
    };
    write(&dir.join("ca.pem"), &ca_certificate.pem(), false)?;
    write(&dir.join("ca-key.pem"), &ca_key.serialize_pem(), true)?;

    let gateway_key = KeyPair::generate()?;
    let mut gateway_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    gateway_params.distinguished_name = name("xgate gateway");
    gateway_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    gateway_params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut gateway_params);
    let gateway_certificate = gateway_params.signed_by(&gateway_key, &issuer)?;
    write(&dir.join("gateway.pem"), &gateway_certificate.pem(), false)?;
    write(
        &dir.join("gateway-key.pem"),
        &gateway_key.serialize_pem(),
        true,
    )?;

    for department in departments {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(department.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params);
        let certificate = params.signed_by(&key, &issuer)?;
        write(
            &dir.join(format!("departments/{department}.pem")),
            &certificate.pem(),
            false,
        )?;
        write(
            &dir.join(format!("departments/{department}-key.pem")),
            &key.serialize_pem(),
            true,
        )?;
    }
    Ok(written)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Writes `text` to `path` (creating its folder), mode 0600 for private keys.
fn write_file(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(if private { 0o600 } else { 0o644 });
        let mut file = options.open(path)?;
        // An existing file (with --force) keeps its old mode on open: set it.
        file.set_permissions(std::fs::Permissions::from_mode(if private {
            0o600
        } else {
            0o644
        }))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = private;
        let mut file = options.open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
}
