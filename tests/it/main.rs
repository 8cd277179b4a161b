//! The integration tests: real gateways on port 0, real upstream servers, no mocks.
//!
//! One test binary (modules below) so the crate links once.

mod helpers;

mod admin;
mod audit;
mod audit_disk;
mod base_path;
mod budgets;
mod catalog;
mod certificates;
mod cli;
mod client_address;
mod config_check;
mod conformance;
mod dashboard;
mod demo;
mod exact;
mod exchange;
mod formats;
mod forwarding;
mod framing;
mod hostile;
mod limits;
mod masking;
mod metrics;
mod privacy;
mod purposes;
mod registry;
mod scale;
mod send_timeout;
mod store;
mod tidy;
mod tls;
mod upstream_pool;
mod validate;
