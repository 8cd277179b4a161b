//! Who is calling: the department of a request's credentials (a verified client certificate or
//! a bearer token), for every authenticated route of both planes.

use http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::config::Department;
use crate::problem::ExchangeError;
use crate::snapshot::Snapshot;
use crate::tls::ClientCertificate;

/// Identifies the department of a request's credentials; shared by every authenticated route.
///
/// A connection that presented a verified client certificate is identified by it alone: a
/// certificate no department lists is 401, even beside a valid bearer token. Without one, the
/// bearer token decides (with `require_client_cert` every TLS connection has a certificate, so
/// tokens are never consulted there).
pub fn identify_department<'s>(
    snapshot: &'s Snapshot,
    headers: &HeaderMap,
    client_certificate: Option<&ClientCertificate>,
) -> Result<&'s Department, ExchangeError> {
    if let Some(certificate) = client_certificate {
        return snapshot
            .department_by_certificate(certificate)
            .ok_or(ExchangeError::Unauthenticated);
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or(ExchangeError::Unauthenticated)?;
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    snapshot
        .department_by_token(digest)
        .ok_or(ExchangeError::Unauthenticated)
}
