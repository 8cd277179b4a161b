//! xgate: a data-exchange gateway between government department systems.
//!
//! It authenticates departments, authorizes calls, validates records against shared versioned
//! JSON Schemas, translates between department layouts and forwards to the providing
//! department. See `ARCHITECTURE.md` for the map; the exchange path reads top-down in
//! [`exchange`].

pub(crate) mod admin;
pub mod admission;
pub mod body;
pub(crate) mod caller;
pub(crate) mod certificates;
pub mod config;
pub(crate) mod cpu;
pub(crate) mod data_plane;
pub mod demo;
pub(crate) mod events;
pub(crate) mod exchange;
pub mod gateway;
pub(crate) mod headers;
pub mod identity;
pub mod metrics;
pub(crate) mod problem;
pub(crate) mod purpose;
pub(crate) mod schema_store;
pub mod server;
pub mod snapshot;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod token;
pub(crate) mod upstream;
