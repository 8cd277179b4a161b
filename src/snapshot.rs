//! The loaded configuration as one immutable value with the indexes the request path needs.
//!
//! A [`Snapshot`] is built once per (re)load and swapped in atomically (`arc-swap`); a request
//! loads it once at its start and uses it to the end, so a reload never changes a request
//! mid-way and the request path takes no locks.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use subtle::ConstantTimeEq;

use crate::certificates::issuers::Issuers;
use crate::config::{Config, Department, Service};
use crate::metrics::ExchangeSeries;
use crate::tls::ClientCertificate;
use crate::upstream::{Lane, UpstreamAddress};
use xgate_core::domain::DepartmentId;
use xgate_core::masking::Masks;
use xgate_core::projection::Projection;
use xgate_core::registry::Registry;

/// The SHA-256 of a bearer token. Equality is constant-time, so looking a digest up leaks
/// nothing about stored digests through timing.
#[derive(Clone, Copy)]
pub(crate) struct TokenDigest(pub [u8; 32]);

impl PartialEq for TokenDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for TokenDigest {}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

impl std::hash::Hash for TokenDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// A service with what the request path precomputes for it.
#[derive(Debug)]
pub struct Route {
    /// The service as configured.
    pub service: Service,
    /// `provider/service`, the value of `Xgate-Service`.
    pub label: HeaderValue,
    /// The upstream URL's path without its trailing `/` (`/licenses`; empty for `/`): the
    /// caller's path rest is appended to it.
    pub upstream_path: String,
    /// Where calls go (`None` only for a scheme the client cannot speak, which configuration
    /// checking refuses).
    pub address: Option<UpstreamAddress>,
    /// Per consumer, the projection of the service's `fields`.
    pub projections: HashMap<DepartmentId, Projection>,
    /// Per consumer with any, the service's `masks` (SPEC §15); empty when none are configured,
    /// so an exchange without masks looks up an empty map and nothing more.
    pub masks: HashMap<DepartmentId, Masks>,
    /// Per consumer allowed to call it, the metric series of its served exchanges, resolved
    /// on its first (`Metrics::exchange_series`): a served exchange then records its metrics
    /// without looking labels up. A new snapshot resolves them anew.
    pub served: HashMap<DepartmentId, OnceLock<ExchangeSeries>>,
    /// Per consumer allowed to call it, the lane its calls travel in: the upstream connections
    /// that carry this consumer's calls of this service and nothing else (`upstream` module).
    /// Empty without an address.
    pub lanes: HashMap<DepartmentId, Arc<Lane>>,
}

/// Everything the gateway serves from, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    /// The configuration it was built from.
    pub config: Config,
    /// The schemas.
    pub registry: Registry,
    /// The certificate types, with their lookup targets taken apart.
    pub certificate_issuers: Arc<Issuers>,
    departments: HashMap<DepartmentId, Department>,
    tokens: HashMap<TokenDigest, DepartmentId>,
    /// Normalized `cert_subjects` → department, so identifying a certificate is one lookup per
    /// name it carries, however many departments there are.
    subjects: HashMap<Box<str>, DepartmentId>,
    routes: HashMap<DepartmentId, HashMap<Box<str>, Arc<Route>>>,
}

impl Snapshot {
    /// Indexes a checked configuration.
    pub fn new(config: Config, registry: Registry) -> Snapshot {
        let mut departments = HashMap::with_capacity(config.departments.len());
        let mut tokens = HashMap::new();
        let mut subjects = HashMap::new();
        let mut routes: HashMap<DepartmentId, HashMap<Box<str>, Arc<Route>>> = HashMap::new();
        for department in &config.departments {
            for digest in &department.token_digests {
                tokens.insert(TokenDigest(*digest), department.id.clone());
            }
            // Configuration checking refuses a subject listed by two departments.
            for subject in &department.cert_subjects {
                subjects.insert(subject.as_str().into(), department.id.clone());
            }
            let provided = routes.entry(department.id.clone()).or_default();
            let connection_cap = department.upstream_connection_cap(&config.gateway);
            for service in &department.services {
                let label = format!("{}/{}", service.provider, service.name);
                let upstream_path = service.upstream.path().trim_end_matches('/').to_owned();
                let address = UpstreamAddress::from_url(&service.upstream);
                let lanes = address
                    .iter()
                    .flat_map(|address| {
                        service.consumers.iter().map(move |consumer| {
                            let lane = Lane::for_service(
                                address,
                                service.provider.as_str(),
                                service.name.as_str(),
                                consumer.as_str(),
                                connection_cap,
                            );
                            (consumer.clone(), Arc::new(lane))
                        })
                    })
                    .collect();
                provided.insert(
                    service.name.as_str().into(),
                    Arc::new(Route {
                        service: service.clone(),
                        // Ids follow a header-safe pattern, so this never falls back.
                        label: HeaderValue::from_str(&label)
                            .unwrap_or(HeaderValue::from_static("invalid")),
                        upstream_path,
                        address,
                        projections: service
                            .fields
                            .iter()
                            .map(|(consumer, paths)| {
                                (consumer.clone(), Projection::new(paths.clone()))
                            })
                            .collect(),
                        masks: crate::config::masks_by_consumer(&service.masks),
                        served: service
                            .consumers
                            .iter()
                            .map(|consumer| (consumer.clone(), OnceLock::new()))
                            .collect(),
                        lanes,
                    }),
                );
            }
            departments.insert(department.id.clone(), department.clone());
        }
        Snapshot {
            certificate_issuers: Arc::new(Issuers::new(&config)),
            config,
            registry,
            departments,
            tokens,
            subjects,
            routes,
        }
    }

    /// The same snapshot with another registry: what a schema registration swaps in. The
    /// configuration's indexes are shared or copied, never rebuilt from files.
    pub(crate) fn with_registry(&self, registry: Registry) -> Snapshot {
        Snapshot {
            config: self.config.clone(),
            registry,
            certificate_issuers: self.certificate_issuers.clone(),
            departments: self.departments.clone(),
            tokens: self.tokens.clone(),
            subjects: self.subjects.clone(),
            routes: self.routes.clone(),
        }
    }

    /// The department a bearer token's digest belongs to.
    pub(crate) fn department_by_token(&self, digest: [u8; 32]) -> Option<&Department> {
        let id = self.tokens.get(&TokenDigest(digest))?;
        self.departments.get(id)
    }

    /// The department a verified client certificate identifies: the first of its names
    /// (full subject, common names, SAN URIs) some department lists in `cert_subjects`.
    pub(crate) fn department_by_certificate(
        &self,
        certificate: &ClientCertificate,
    ) -> Option<&Department> {
        let id = certificate
            .names()
            .find_map(|name| self.subjects.get(name))?;
        self.departments.get(id)
    }

    /// A department by id.
    pub fn department(&self, id: &str) -> Option<&Department> {
        self.departments.get(id)
    }

    /// A provider's service.
    pub fn route(&self, provider: &str, service: &str) -> Option<&Arc<Route>> {
        self.routes.get(provider)?.get(service)
    }

    /// Every service, in provider then service order.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.config
            .departments
            .iter()
            .flat_map(|department| department.services.iter())
            .filter_map(|service| self.route(service.provider.as_str(), service.name.as_str()))
    }
}
