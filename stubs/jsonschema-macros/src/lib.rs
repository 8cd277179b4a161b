//! Empty: a stand-in for jsonschema-macros 0.61.2 that only dependency resolution sees (see
//! `Cargo.toml`).
