//! The store's tables, versioned: `xgate store migrate` and every gateway's start bring the
//! database to this build's layout.
//!
//! Each migration has a number and runs in a transaction of its own, which records it in
//! `xgate_migrations`; a migration is never edited once released, later layouts add
//! migrations. The whole run holds a session advisory lock ([`LOCK_KEY`]): gateways started
//! at once migrate one after the other, and each finds the work done by the first. A database
//! migrated by a later build (a migration number this build does not know) is refused rather
//! than used.

use super::{Store, StoreError};

/// The advisory lock held while migrating (`pg_advisory_lock`): "xgate" and 1 in its bytes.
pub const LOCK_KEY: i64 = 0x7867_6174_6500_0001;

/// One step of the layout.
pub struct Migration {
    /// Its number: 1, 2, 3, ... in order.
    pub version: i32,
    /// What it does, as recorded.
    pub name: &'static str,
    /// Its statements, run in order in one transaction.
    pub statements: &'static [&'static str],
}

/// The registry's tables (SPEC §13): one row per schema (its own mode, the highest number
/// ever given out, and a revision counted up by every change, which gateways compare with the
/// one they serve) and one per version ever registered; a deleted version keeps its row with
/// `deleted_at` set, so its number is never handed out again and the deletion is on record.
/// `registry_references` lists the versions each version `$ref`s: a deletion checks it, a
/// registration locks the rows it refers to, so neither can race the other across gateways.
const REGISTRY_V1: &str = "
CREATE TABLE registry_schemas (
    name text PRIMARY KEY,
    compatibility text,
    highest_version integer NOT NULL DEFAULT 0 CHECK (highest_version >= 0),
    revision bigint NOT NULL DEFAULT 0
);
CREATE TABLE registry_versions (
    name text NOT NULL REFERENCES registry_schemas (name),
    version integer NOT NULL CHECK (version > 0),
    document text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by text NOT NULL,
    deleted_at timestamptz,
    deleted_by text,
    PRIMARY KEY (name, version)
);
CREATE TABLE registry_references (
    name text NOT NULL,
    version integer NOT NULL,
    referred_name text NOT NULL,
    referred_version integer NOT NULL,
    PRIMARY KEY (referred_name, referred_version, name, version),
    FOREIGN KEY (name, version) REFERENCES registry_versions (name, version),
    FOREIGN KEY (referred_name, referred_version) REFERENCES registry_versions (name, version)
);
";

/// Every migration of this build, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "registry and audit trail",
        statements: &[REGISTRY_V1, xgate_audit::postgres::TABLES_V1],
    },
    Migration {
        version: 2,
        name: "audit subject index and purpose codes",
        statements: &[xgate_audit::postgres::TABLES_V2],
    },
];

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The layout found before (0: an empty database).
    pub from: i32,
    /// The layout now.
    pub to: i32,
}

/// Brings the database to this build's layout (see the module's documentation).
pub async fn migrate(store: &Store, instance: &str) -> Result<Migrated, StoreError> {
    let mut client = store.client().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let migrated = apply(&mut client, instance).await;
    // The lock goes with the session anyway; unlocking lets the next gateway go on at once.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    let migrated = migrated?;
    unlocked?;
    Ok(migrated)
}

async fn apply(
    client: &mut deadpool_postgres::Object,
    instance: &str,
) -> Result<Migrated, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS xgate_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                applied_by text NOT NULL
            )",
        )
        .await?;
    let from: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM xgate_migrations",
            &[],
        )
        .await?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |migration| migration.version);
    if from > known {
        return Err(StoreError::TooNew { found: from, known });
    }
    for migration in MIGRATIONS
        .iter()
        .filter(|migration| migration.version > from)
    {
        let transaction = client.transaction().await?;
        for statement in migration.statements {
            transaction.batch_execute(statement).await?;
        }
        transaction
            .execute(
                "INSERT INTO xgate_migrations (version, name, applied_by) VALUES ($1, $2, $3)",
                &[&migration.version, &migration.name, &instance],
            )
            .await?;
        transaction.commit().await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "store migrated"
        );
    }
    Ok(Migrated { from, to: known })
}
