//! Each certificate type's issuer as the snapshot holds it: the lookup URL taken apart at load
//! (address, target before and after the id), its lane of upstream connections and its
//! `id_format` check. Data only: [`super::issuer`] makes the calls.

use std::collections::HashMap;
use std::sync::Arc;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::config::{CertificateTypeSettings, Config};
use crate::upstream::{self, Lane, UpstreamAddress};
use xgate_core::domain::DepartmentId;
use xgate_core::masking::Masks;

/// Characters an id keeps in a path segment: the unreserved ones (RFC 3986).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A certificate type with what lookups precompute for it.
#[derive(Debug)]
pub struct Issuer {
    /// The type as configured.
    pub settings: CertificateTypeSettings,
    /// The upstream connections its lookups travel on (theirs alone).
    pub(super) lane: Arc<Lane>,
    /// The origin-form target before the id (`/certificates/business-license/`).
    target_prefix: String,
    /// The origin-form target after the id.
    target_suffix: String,
    /// The check of `id_format`.
    check_id: fn(&str) -> bool,
    /// Per consumer with any, the type's `masks` (SPEC §15), applied to a copy of the cached
    /// record on its way to that consumer.
    pub(crate) masks: HashMap<DepartmentId, Masks>,
}

impl Issuer {
    /// Takes a checked type's lookup URL apart; `None` when it cannot be (configuration checking
    /// refuses such URLs).
    fn new(settings: &CertificateTypeSettings, connection_cap: usize) -> Option<Issuer> {
        let (before, after) = settings.lookup.split_once("{id}")?;
        let url = url::Url::parse(&format!("{before}0{after}")).ok()?;
        let address = UpstreamAddress::from_url(&url)?;
        // The id must be in the path: the origin form starts at the first `/` after `//`.
        let authority_start = before.find("//")? + 2;
        let path_start = authority_start + before[authority_start..].find('/')?;
        let check_id = xgate_core::identifiers::FORMATS
            .iter()
            .find(|(name, _)| *name == settings.id_format)?
            .1;
        let lane = Lane::for_certificates(
            &address,
            settings.issuer.as_str(),
            settings.certificate_type.as_str(),
            connection_cap,
        );
        Some(Issuer {
            settings: settings.clone(),
            lane: Arc::new(lane),
            target_prefix: before[path_start..].to_owned(),
            target_suffix: after.to_owned(),
            check_id,
            masks: crate::config::masks_by_consumer(&settings.masks),
        })
    }

    /// Whether `id` has the type's `id_format`.
    pub(crate) fn accepts_id(&self, id: &str) -> bool {
        (self.check_id)(id)
    }

    /// The origin-form target of the lookup of `id` (percent-encoded).
    pub(super) fn target(&self, id: &str) -> Result<http::Uri, http::uri::InvalidUri> {
        let mut path = String::with_capacity(
            self.target_prefix.len() + self.target_suffix.len() + id.len() * 3,
        );
        path.push_str(&self.target_prefix);
        path.extend(utf8_percent_encode(id, PATH_SEGMENT));
        path.push_str(&self.target_suffix);
        upstream::origin_form(&path, None)
    }
}

/// Every certificate type of a configuration, by type.
#[derive(Debug, Default)]
pub struct Issuers {
    by_type: HashMap<Box<str>, Arc<Issuer>>,
}

impl Issuers {
    /// Indexes the certificate types of a checked configuration.
    pub fn new(config: &Config) -> Issuers {
        let mut by_type = HashMap::new();
        for (settings, connection_cap) in config.departments.iter().flat_map(|department| {
            let connection_cap = department.upstream_connection_cap(&config.gateway);
            department
                .certificate_types
                .iter()
                .map(move |settings| (settings, connection_cap))
        }) {
            match Issuer::new(settings, connection_cap) {
                Some(issuer) => {
                    by_type.insert(settings.certificate_type.as_str().into(), Arc::new(issuer));
                }
                None => tracing::error!(
                    certificate_type = %settings.certificate_type,
                    "a checked certificate type has no usable lookup URL; its lookups are 404s"
                ),
            }
        }
        Issuers { by_type }
    }

    /// A type by name.
    pub fn get(&self, certificate_type: &str) -> Option<&Arc<Issuer>> {
        self.by_type.get(certificate_type)
    }
}
