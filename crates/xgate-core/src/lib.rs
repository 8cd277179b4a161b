//! xgate's pure core: what a record is, how it is read, checked, translated and trimmed, and
//! how schemas are compiled and proven compatible.
//!
//! Nothing here does I/O — no sockets, clocks, files or async runtime — and nothing panics on
//! input: violations and errors are data. The crate's dependencies say so (no tokio, hyper,
//! rusqlite or prometheus), and the gateway's tidy test keeps it that way. The gateway (`xgate`)
//! reads files and serves; the trail (`xgate-audit`) stores.

pub mod domain;
pub mod i18n;
pub mod identifiers;
pub mod json;
pub mod masking;
pub mod number;
pub mod pointer;
pub mod projection;
pub mod registry;
pub mod report;
pub mod subject;
pub mod translate;
