//! The schema registry in the shared store (SPEC §13): reading it whole at start and after a
//! lost connection, reading one schema when a notification names it, and the changes —
//! each one transaction that locks the schema's row, so that changes of one schema made on
//! different gateways run one after the other and version numbers come out consecutive.
//!
//! Every change counts the schema's `revision` up and sends `NOTIFY xgate_registry, '<name>'`
//! in its transaction: PostgreSQL delivers it at the commit, to every gateway's listener
//! (`store::listener`).

use std::collections::HashMap;
use std::path::PathBuf;

use deadpool_postgres::GenericClient;
use serde_json::Value;

use super::StoreError;
use xgate_core::domain::{Compatibility, SchemaName, SchemaVersion};
use xgate_core::registry::{SETTINGS_FILE, SchemaFile, SchemaFolder, Settings};

/// The channel registry changes are announced on; the payload is the schema's name.
pub const CHANNEL: &str = "xgate_registry";

/// One schema as the store holds it.
#[derive(Debug, Clone)]
pub struct StoredSchema {
    /// Its name.
    pub name: SchemaName,
    /// Counted up by every change.
    pub revision: i64,
    /// Its own mode and highest number.
    pub settings: Settings,
    /// The versions not deleted, in number order, with their documents.
    pub live: Vec<(SchemaVersion, Value)>,
}

/// The revision of each schema, as the registry in memory reflects it.
pub type Revisions = HashMap<SchemaName, i64>;

/// Every schema, read in one snapshot of the database.
pub async fn read_all(
    client: &mut deadpool_postgres::Object,
) -> Result<Vec<StoredSchema>, StoreError> {
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let heads = transaction
        .query(
            "SELECT name, revision, compatibility, highest_version FROM registry_schemas ORDER BY name",
            &[],
        )
        .await?;
    let versions = transaction
        .query(
            "SELECT name, version, document FROM registry_versions WHERE deleted_at IS NULL \
             ORDER BY name, version",
            &[],
        )
        .await?;
    transaction.commit().await?;
    let mut documents: HashMap<String, Vec<(SchemaVersion, Value)>> = HashMap::new();
    for row in versions {
        let name: String = row.try_get(0)?;
        let version = stored_version(row.try_get(1)?)?;
        let document = stored_document(&name, version, row.try_get(2)?)?;
        documents.entry(name).or_default().push((version, document));
    }
    heads
        .into_iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            let live = documents.remove(&name).unwrap_or_default();
            stored_schema(&row, live)
        })
        .collect()
}

/// One schema, or `None` when the store has never heard of it.
pub async fn read_one(
    client: &impl GenericClient,
    name: &SchemaName,
) -> Result<Option<StoredSchema>, StoreError> {
    let Some(head) = client
        .query_opt(
            "SELECT name, revision, compatibility, highest_version FROM registry_schemas WHERE name = $1",
            &[&name.as_str()],
        )
        .await?
    else {
        return Ok(None);
    };
    let rows = client
        .query(
            "SELECT version, document FROM registry_versions \
             WHERE name = $1 AND deleted_at IS NULL ORDER BY version",
            &[&name.as_str()],
        )
        .await?;
    let mut live = Vec::with_capacity(rows.len());
    for row in rows {
        let version = stored_version(row.try_get(0)?)?;
        live.push((
            version,
            stored_document(name.as_str(), version, row.try_get(1)?)?,
        ));
    }
    stored_schema(&head, live).map(Some)
}

/// The revision of every schema (cheap: what a reconnected listener compares first).
pub async fn revisions(client: &impl GenericClient) -> Result<Revisions, StoreError> {
    let rows = client
        .query("SELECT name, revision FROM registry_schemas", &[])
        .await?;
    rows.into_iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            let name = SchemaName::parse(&name)
                .map_err(|_| StoreError::Corrupt(format!("schema name {name:?}")))?;
            Ok((name, row.try_get(1)?))
        })
        .collect()
}

fn stored_schema(
    head: &tokio_postgres::Row,
    live: Vec<(SchemaVersion, Value)>,
) -> Result<StoredSchema, StoreError> {
    let name: String = head.try_get(0)?;
    let name = SchemaName::parse(&name)
        .map_err(|_| StoreError::Corrupt(format!("schema name {name:?}")))?;
    let compatibility: Option<String> = head.try_get(2)?;
    let compatibility = match compatibility {
        None => None,
        Some(mode) => Some(
            Compatibility::parse(&mode)
                .ok_or_else(|| StoreError::Corrupt(format!("the mode of {name}: {mode:?}")))?,
        ),
    };
    let highest: i32 = head.try_get(3)?;
    let highest_version = u32::try_from(highest).ok().and_then(SchemaVersion::new);
    Ok(StoredSchema {
        name,
        revision: head.try_get(1)?,
        settings: Settings {
            compatibility,
            highest_version,
        },
        live,
    })
}

fn stored_version(number: i32) -> Result<SchemaVersion, StoreError> {
    u32::try_from(number)
        .ok()
        .and_then(SchemaVersion::new)
        .ok_or_else(|| StoreError::Corrupt(format!("version number {number}")))
}

/// A stored document, read by the one JSON reader (duplicate keys refused, numbers exact).
fn stored_document(name: &str, version: SchemaVersion, text: &str) -> Result<Value, StoreError> {
    xgate_core::json::parse(text.as_bytes())
        .map_err(|_| StoreError::Corrupt(format!("the document of {name}@{version}")))
}

/// The schemas as the folders `Registry::assemble` reads (each version a `<N>.json`, the
/// settings a `settings.toml`), so that a registry read from the store is compiled exactly as
/// one read from files. The paths name the store, for problems: `store:registry/<name>/1.json`.
pub fn as_folders(schemas: &[StoredSchema]) -> Vec<SchemaFolder> {
    schemas
        .iter()
        .map(|schema| {
            let path = PathBuf::from(format!("store:registry/{}", schema.name));
            let mut files: Vec<SchemaFile> = schema
                .live
                .iter()
                .map(|(version, document)| SchemaFile {
                    path: path.join(format!("{version}.json")),
                    name: format!("{version}.json"),
                    contents: serde_json::to_vec(document).map_err(|error| error.to_string()),
                })
                .collect();
            files.push(SchemaFile {
                path: path.join(SETTINGS_FILE),
                name: SETTINGS_FILE.to_owned(),
                contents: Ok(schema.settings.to_toml().into_bytes()),
            });
            SchemaFolder {
                path,
                name: schema.name.to_string(),
                files: Some(files),
            }
        })
        .collect()
}

/// A schema's row, locked for one change (`SELECT ... FOR UPDATE`) until the transaction ends:
/// the same schema's changes on every other gateway wait for it.
pub struct Locked<'a> {
    transaction: deadpool_postgres::Transaction<'a>,
    name: SchemaName,
    /// The schema as the store holds it now.
    pub current: StoredSchema,
}

/// Why a deletion was refused by the store.
#[derive(Debug)]
pub enum Refused {
    /// The version is gone already (or was never registered).
    NotFound,
    /// A live version `$ref`s it (registered on another gateway, maybe).
    ReferencedBy(String),
}

/// Locks schema `name`'s row (creating it, empty, on its first change) and reads it.
pub async fn lock<'a>(
    client: &'a mut deadpool_postgres::Object,
    name: &SchemaName,
) -> Result<Locked<'a>, StoreError> {
    let transaction = client.transaction().await?;
    transaction
        .execute(
            "INSERT INTO registry_schemas (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&name.as_str()],
        )
        .await?;
    transaction
        .execute(
            "SELECT 1 FROM registry_schemas WHERE name = $1 FOR UPDATE",
            &[&name.as_str()],
        )
        .await?;
    let current = read_one(&transaction, name)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("the row of {name} vanished")))?;
    Ok(Locked {
        transaction,
        name: name.clone(),
        current,
    })
}

impl Locked<'_> {
    /// Stores `version` (the number after the highest) with its document, the versions it
    /// refers to (which must still be live: their rows are locked against deletion until the
    /// commit), counts the revision up, announces it and commits. Returns the new revision, or
    /// the first referred version that is gone.
    pub async fn insert_version(
        self,
        version: SchemaVersion,
        document: &Value,
        references: &[(SchemaName, SchemaVersion)],
        instance: &str,
    ) -> Result<Result<i64, String>, StoreError> {
        let number = version_number(version)?;
        let text = serde_json::to_string_pretty(document)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let names: Vec<&str> = references.iter().map(|(name, _)| name.as_str()).collect();
        let numbers: Vec<i32> = references
            .iter()
            .map(|(_, version)| version_number(*version))
            .collect::<Result<_, _>>()?;
        let found = self
            .transaction
            .query(
                "SELECT name, version FROM registry_versions \
                 WHERE deleted_at IS NULL AND (name, version) IN \
                   (SELECT * FROM unnest($1::text[], $2::integer[])) \
                 FOR SHARE",
                &[&names, &numbers],
            )
            .await?;
        if found.len() < references.len() {
            let present: Vec<(String, i32)> = found
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<_, tokio_postgres::Error>>()?;
            let missing = references
                .iter()
                .zip(&numbers)
                .find(|((name, _), number)| {
                    !present
                        .iter()
                        .any(|(n, v)| n == name.as_str() && v == *number)
                })
                .map_or_else(String::new, |((name, version), _)| {
                    format!("{name}@{version}")
                });
            return Ok(Err(missing));
        }
        self.transaction
            .execute(
                "INSERT INTO registry_versions (name, version, document, registered_by) \
                 VALUES ($1, $2, $3, $4)",
                &[&self.name.as_str(), &number, &text, &instance],
            )
            .await?;
        self.transaction
            .execute(
                "INSERT INTO registry_references (name, version, referred_name, referred_version) \
                 SELECT $1, $2, * FROM unnest($3::text[], $4::integer[])",
                &[&self.name.as_str(), &number, &names, &numbers],
            )
            .await?;
        self.transaction
            .execute(
                "UPDATE registry_schemas SET highest_version = greatest(highest_version, $2) \
                 WHERE name = $1",
                &[&self.name.as_str(), &number],
            )
            .await?;
        self.commit_change().await.map(Ok)
    }

    /// Sets the schema's own mode, announces it and commits; returns the new revision.
    pub async fn set_compatibility(self, mode: Compatibility) -> Result<i64, StoreError> {
        self.transaction
            .execute(
                "UPDATE registry_schemas SET compatibility = $2 WHERE name = $1",
                &[&self.name.as_str(), &mode.as_str()],
            )
            .await?;
        self.commit_change().await
    }

    /// Marks `version` deleted (its number stays taken), unless a live version refers to it;
    /// announces it and commits. Returns the new revision.
    pub async fn delete_version(
        self,
        version: SchemaVersion,
        instance: &str,
    ) -> Result<Result<i64, Refused>, StoreError> {
        let number = version_number(version)?;
        let updated = self
            .transaction
            .execute(
                "UPDATE registry_versions SET deleted_at = now(), deleted_by = $3 \
                 WHERE name = $1 AND version = $2 AND deleted_at IS NULL",
                &[&self.name.as_str(), &number, &instance],
            )
            .await?;
        if updated == 0 {
            return Ok(Err(Refused::NotFound));
        }
        let referrer = self
            .transaction
            .query_opt(
                "SELECT r.name, r.version FROM registry_references AS r \
                 JOIN registry_versions AS v ON v.name = r.name AND v.version = r.version \
                 WHERE r.referred_name = $1 AND r.referred_version = $2 AND v.deleted_at IS NULL \
                 LIMIT 1",
                &[&self.name.as_str(), &number],
            )
            .await?;
        if let Some(row) = referrer {
            let name: String = row.try_get(0)?;
            let version: i32 = row.try_get(1)?;
            return Ok(Err(Refused::ReferencedBy(format!("{name}@{version}"))));
        }
        self.commit_change().await.map(Ok)
    }

    /// Ends the change without storing anything (dropping does too).
    pub async fn abandon(self) -> Result<(), StoreError> {
        Ok(self.transaction.rollback().await?)
    }

    /// Counts the revision up, queues the notification and commits.
    async fn commit_change(self) -> Result<i64, StoreError> {
        let revision: i64 = self
            .transaction
            .query_one(
                "UPDATE registry_schemas SET revision = revision + 1 WHERE name = $1 \
                 RETURNING revision",
                &[&self.name.as_str()],
            )
            .await?
            .try_get(0)?;
        self.transaction
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &self.name.as_str()])
            .await?;
        self.transaction.commit().await?;
        Ok(revision)
    }
}

fn version_number(version: SchemaVersion) -> Result<i32, StoreError> {
    i32::try_from(version.get()).map_err(|_| StoreError::Corrupt(format!("version {version}")))
}

/// How many schemas and versions [`import`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Schemas.
    pub schemas: usize,
    /// Versions.
    pub versions: usize,
}

/// Copies a registry read from files (`xgate store import`) into an empty store registry, in
/// one transaction: every schema with its own mode and highest number, every version with its
/// document as submitted and the versions it refers to. Refused (`Ok(None)`) when the store
/// holds schemas already.
pub async fn import(
    client: &mut deadpool_postgres::Object,
    registry: &xgate_core::registry::Registry,
    instance: &str,
) -> Result<Option<Imported>, StoreError> {
    let transaction = client.transaction().await?;
    transaction
        .execute("LOCK TABLE registry_schemas IN EXCLUSIVE MODE", &[])
        .await?;
    let existing: i64 = transaction
        .query_one("SELECT count(*) FROM registry_schemas", &[])
        .await?
        .try_get(0)?;
    if existing > 0 {
        return Ok(None);
    }
    let mut imported = Imported {
        schemas: 0,
        versions: 0,
    };
    let mut references = Vec::new();
    for (name, entry) in registry.schemas() {
        let settings = entry.settings();
        let highest = match settings.highest_version {
            Some(version) => version_number(version)?,
            None => 0,
        };
        let mode = settings.compatibility.map(Compatibility::as_str);
        transaction
            .execute(
                "INSERT INTO registry_schemas (name, compatibility, highest_version, revision) \
                 VALUES ($1, $2, $3, 1)",
                &[&name.as_str(), &mode, &highest],
            )
            .await?;
        imported.schemas += 1;
        for (version, compiled) in &entry.versions {
            let number = version_number(*version)?;
            let text = serde_json::to_string_pretty(&compiled.document)
                .map_err(|error| StoreError::Corrupt(error.to_string()))?;
            transaction
                .execute(
                    "INSERT INTO registry_versions (name, version, document, registered_by) \
                     VALUES ($1, $2, $3, $4)",
                    &[&name.as_str(), &number, &text, &instance],
                )
                .await?;
            imported.versions += 1;
            for (referred, referred_version) in
                xgate_core::registry::references::registry_references(&compiled.document)
            {
                references.push((
                    name.to_string(),
                    number,
                    referred.to_string(),
                    version_number(referred_version)?,
                ));
            }
        }
    }
    for (name, version, referred, referred_version) in references {
        transaction
            .execute(
                "INSERT INTO registry_references (name, version, referred_name, referred_version) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&name, &version, &referred, &referred_version],
            )
            .await?;
    }
    transaction.commit().await?;
    Ok(Some(imported))
}
