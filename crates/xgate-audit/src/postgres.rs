//! The audit trail in the shared store's PostgreSQL database (SPEC §13): the same blocks as
//! the SQLite file ([`crate::block`]), appended by every gateway to one chain.

/// The trail's tables, created by the store's first migration (the gateway's
/// `store::migrate`): `audit_meta` (the chain's hash), `audit_chain` (one row: the chain's
/// last sequence number and head, which every append locks, so that the database serializes
/// the gateways' batches into one chain) and `audit_blocks` (one row per committed batch, as
/// in the SQLite file).
pub const TABLES_V1: &str = "
CREATE TABLE audit_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE audit_chain (
    id smallint PRIMARY KEY CHECK (id = 1),
    last_sequence bigint NOT NULL,
    head text NOT NULL
);
CREATE TABLE audit_blocks (
    first_sequence bigint PRIMARY KEY,
    last_sequence bigint NOT NULL,
    min_time text NOT NULL,
    max_time text NOT NULL,
    head text NOT NULL,
    entries text NOT NULL
);
CREATE INDEX audit_blocks_time ON audit_blocks (max_time, min_time);
";
