//! xgate: a data-exchange gateway between government department systems.
//!
//! It authenticates departments, authorizes calls, validates records against shared versioned
//! JSON Schemas, translates between department layouts and forwards to the providing
//! department. See `ARCHITECTURE.md` for the map; the exchange path reads top-down in
//! [`exchange`].

pub mod admin;
pub mod admission;
pub mod body;
pub mod caller;
pub mod certificates;
pub mod config;
pub mod cpu;
pub mod data_plane;
pub mod demo;
pub mod exchange;
pub mod gateway;
pub mod headers;
pub mod identity;
pub mod metrics;
pub mod problem;
pub mod schema_store;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod upstream;
