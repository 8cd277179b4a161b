//! The schema registry's admin routes (SPEC §4, §6): list, read, register, dry-run, set the
//! compatibility mode, delete.
//!
//! - GET `/admin/schemas` (admin, auditor): every schema with its versions, latest, highest
//!   number ever used and compatibility mode.
//! - GET `/admin/schemas/{name}/versions/{N|latest}` (admin, auditor): the document.
//! - POST `/admin/schemas/{name}/versions` (admin): register the body as the next version:
//!   201 `{"name", "version"}`, 200 when an equal document is already a version, 409
//!   `incompatible-schema`, 422 `invalid-schema`.
//! - POST `/admin/schemas/{name}/compatibility` (admin): the same checks as registering, as a
//!   dry run: 200 `{"compatible", "reasons", "difference"}`; nothing is stored.
//! - PUT `/admin/schemas/{name}/config` (admin): `{"compatibility": "<mode>"}`, also before the
//!   schema's first version (the mode then applies from the second version on).
//! - DELETE `/admin/schemas/{name}/versions/{N}` (admin): 204, or 409 `conflict` while another
//!   version references it or the configuration pins it (or follows the schema and it is the
//!   last version). Numbers are never reused.
//!
//! Writers are serialized by one lock ([`SchemaWriter`]): each reads the current registry,
//! checks, writes the files (atomically, [`SchemaStore`]), then swaps a new registry into the
//! gateway, so concurrent registrations of one name get consecutive numbers. Compiling and
//! comparing run on the blocking pool, off the async runtime.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use http::{HeaderMap, Response, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::admin::{AdminState, READERS, WRITERS, require_role};
use crate::body::{parse_json, read_json_body};
use crate::caller::Caller;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::problem::ExchangeError;
use crate::schema_store::SchemaStore;
use crate::snapshot::Snapshot;
use crate::store::registry as store_registry;
use crate::store::{Store, StoreError};
use xgate_core::domain::{Compatibility, SchemaName, SchemaVersion};
use xgate_core::i18n::Lang;
use xgate_core::registry::compatibility::{self, Report};
use xgate_core::registry::{
    CompiledSchema, Conflict, MAX_SCHEMA_BYTES, Registry, SchemaUse, compile_version, references,
    schema_urn,
};

/// The one writer of the registry: a lock per schema name that serializes the changes of one
/// schema (held while a submitted version is compiled and checked, which can take a while), a
/// lock that serializes every commit (held only to re-read, write and swap), and the files.
#[derive(Debug)]
pub(crate) struct SchemaWriter {
    /// The gateway's lock on changes (`Gateway::changes`), shared with configuration reloads.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The lock of each schema name being changed now; a name's entry goes when nobody holds or
    /// waits for it, so there are never more than the changes in flight.
    names: std::sync::Mutex<HashMap<SchemaName, Arc<tokio::sync::Mutex<()>>>>,
    storage: Storage,
}

/// Where the registry's changes are stored, chosen at start from the configuration: the
/// embedded default's files, or the shared store (SPEC §13). The routes ask the writer; only
/// these two flows know which it is.
#[derive(Debug)]
pub(crate) enum Storage {
    /// `[registry] dir`, written atomically; versions numbered by this gateway's memory.
    Files(SchemaStore),
    /// The shared store's tables; versions numbered by the database under the schema's lock.
    Shared(Box<Store>),
}

impl SchemaWriter {
    /// The writer over the shared store when there is one, else over the schema folder of
    /// `config` (`[registry] dir`), serialized with every other change by `lock`.
    pub fn new(
        config: &Config,
        store: Option<&Store>,
        lock: Arc<tokio::sync::Mutex<()>>,
    ) -> SchemaWriter {
        let storage = match store {
            Some(store) => Storage::Shared(Box::new(store.clone())),
            None => Storage::Files(SchemaStore::new(config.registry.dir.clone())),
        };
        SchemaWriter {
            lock,
            names: std::sync::Mutex::default(),
            storage,
        }
    }

    /// The schema folder, in the embedded default.
    fn files(&self) -> Result<&SchemaStore, ExchangeError> {
        match &self.storage {
            Storage::Files(files) => Ok(files),
            Storage::Shared(_) => Err(ExchangeError::Internal),
        }
    }

    /// The shared store, when the registry is there.
    fn shared(&self) -> Option<Store> {
        match &self.storage {
            Storage::Shared(store) => Some(Store::clone(store)),
            Storage::Files(_) => None,
        }
    }

    /// The lock that serializes the changes of schema `name`.
    fn name_lock(&self, name: &SchemaName) -> Arc<tokio::sync::Mutex<()>> {
        let mut names = self
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Locks nobody holds or waits for (only the map has them) are dropped.
        names.retain(|_, lock| Arc::strong_count(lock) > 1);
        names.entry(name.clone()).or_default().clone()
    }
}

/// How a registration ended, for the `xgate_schema_registrations_total{outcome}` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegistrationOutcome {
    /// A new version was stored and activated.
    Created,
    /// An equal document was already registered.
    Existing,
    /// Refused: not a valid schema, incompatible, or a bad request.
    Refused,
    /// The gateway failed (storage).
    Failed,
}

impl RegistrationOutcome {
    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationOutcome::Created => "created",
            RegistrationOutcome::Existing => "existing",
            RegistrationOutcome::Refused => "refused",
            RegistrationOutcome::Failed => "failed",
        }
    }
}

/// The record phase of a registration: `xgate_schema_registrations_total{outcome}` and a log
/// event.
fn record_registration(gateway: &Gateway, name: &str, outcome: RegistrationOutcome) {
    gateway.metrics.schema_registration(outcome.as_str());
    tracing::info!(
        schema = name,
        outcome = outcome.as_str(),
        "schema registration"
    );
}

#[derive(Serialize)]
struct SchemaSummary {
    name: String,
    versions: Vec<u32>,
    latest: Option<u32>,
    highest_version: Option<u32>,
    compatibility: &'static str,
}

/// GET `/admin/schemas`.
pub async fn list(State(state): State<AdminState>, headers: HeaderMap) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    let snapshot = state.gateway.snapshot();
    if let Err(error) = require_role(&snapshot, &headers, READERS) {
        return caller.problem(&error);
    }
    let schemas: Vec<SchemaSummary> = snapshot
        .registry
        .schemas()
        .map(|(name, entry)| SchemaSummary {
            name: name.to_string(),
            versions: entry.versions.keys().map(|v| v.get()).collect(),
            latest: entry.versions.keys().next_back().map(|v| v.get()),
            highest_version: entry.highest_version.map(SchemaVersion::get),
            compatibility: entry.compatibility.as_str(),
        })
        .collect();
    caller.json(StatusCode::OK, &json!({ "schemas": schemas }))
}

/// GET `/admin/schemas/{name}/versions/{N|latest}`.
pub(crate) async fn get_version(
    State(state): State<AdminState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    let snapshot = state.gateway.snapshot();
    if let Err(error) = require_role(&snapshot, &headers, READERS) {
        return caller.problem(&error);
    }
    let found = parse_name(&name).and_then(|name| {
        let version = match version.as_str() {
            "latest" => None,
            number => Some(SchemaVersion::parse(number).map_err(ExchangeError::InvalidName)?),
        };
        snapshot
            .registry
            .get(name.as_str(), version)
            .ok_or(ExchangeError::NotFound)
    });
    match found {
        Ok(compiled) => caller.json(StatusCode::OK, &compiled.document),
        Err(error) => caller.problem(&error),
    }
}

/// POST `/admin/schemas/{name}/versions`.
pub async fn register(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    if let Err(error) = require_role(&state.gateway.snapshot(), &headers, WRITERS) {
        return caller.problem(&error);
    }
    let registered = register_version(&state, &name, &headers, body, caller.lang).await;
    let outcome = match &registered {
        Ok((StatusCode::CREATED, _)) => RegistrationOutcome::Created,
        Ok(_) => RegistrationOutcome::Existing,
        Err(ExchangeError::Internal) => RegistrationOutcome::Failed,
        Err(_) => RegistrationOutcome::Refused,
    };
    // Only a valid name reaches the log; anything else is logged as `invalid`.
    let logged = SchemaName::parse(&name).map_or("invalid", |_| name.as_str());
    record_registration(&state.gateway, logged, outcome);
    match registered {
        Ok((status, version)) => {
            caller.json(status, &json!({"name": name, "version": version.get()}))
        }
        Err(error) => caller.problem(&error),
    }
}

/// Registers the body as the next version of `name`: 201 with a new version, 200 with an
/// existing equal one.
async fn register_version(
    state: &AdminState,
    name: &str,
    headers: &HeaderMap,
    body: Body,
    lang: Lang,
) -> Result<(StatusCode, SchemaVersion), ExchangeError> {
    let name = parse_name(name)?;
    let document = read_schema(headers, body).await?;
    let state = state.clone();
    if let Some(store) = state.writer.shared() {
        return run_to_completion(register_in_store(state, store, name, document, lang)).await;
    }
    run_to_completion(async move {
        // Changes of this name wait for each other; other names go on while this one is checked.
        let name_lock = state.writer.name_lock(&name);
        let _name = name_lock.lock().await;
        let checked = state.gateway.snapshot();
        let prepared = prepare(
            &state.gateway,
            checked.clone(),
            name.clone(),
            document.clone(),
            lang,
        )
        .await?;
        let _writing = state.writer.lock.lock().await;
        let current = state.gateway.snapshot();
        let prepared = if still_holds(&checked.registry, &current.registry, &name, &prepared) {
            prepared
        } else {
            // A reload or a deletion changed what the check read: it is made again, under the
            // lock (rare, and bounded as every check is).
            prepare(
                &state.gateway,
                current.clone(),
                name.clone(),
                document,
                lang,
            )
            .await?
        };
        commit_version(&state, &current, name, prepared).await
    })
    .await
}

/// Whether what `prepared` was checked against in `checked` is unchanged in `current`: the
/// versions, mode and numbering of `name`, and the documents the new version refers to.
fn still_holds(
    checked: &Registry,
    current: &Registry,
    name: &SchemaName,
    prepared: &Prepared,
) -> bool {
    let same_entry = match (checked.entry(name.as_str()), current.entry(name.as_str())) {
        (None, None) => true,
        (Some(before), Some(now)) => {
            before.compatibility == now.compatibility
                && before.highest_version == now.highest_version
                && before.versions.len() == now.versions.len()
                && before
                    .versions
                    .iter()
                    .zip(&now.versions)
                    .all(|((a, before), (b, now))| a == b && Arc::ptr_eq(before, now))
        }
        _ => false,
    };
    let Prepared::New(compiled, _) = prepared else {
        return same_entry;
    };
    same_entry
        && references::registry_references(&compiled.document)
            .iter()
            .all(|(referred, version)| {
                let urn = schema_urn(referred, *version);
                match (checked.documents().get(&urn), current.documents().get(&urn)) {
                    (Some(before), Some(now)) => Arc::ptr_eq(before, now),
                    (None, None) => true,
                    _ => false,
                }
            })
}

/// Stores and activates a checked new version; the caller holds the name's and the writer's
/// locks, and `snapshot` is the one read under them.
async fn commit_version(
    state: &AdminState,
    snapshot: &Snapshot,
    name: SchemaName,
    prepared: Prepared,
) -> Result<(StatusCode, SchemaVersion), ExchangeError> {
    let (compiled, report) = match prepared {
        Prepared::Existing(version) => return Ok((StatusCode::OK, version)),
        Prepared::New(compiled, report) => (compiled, report),
    };
    if !report.compatible() {
        return Err(ExchangeError::IncompatibleSchema {
            schema: compiled.label(),
            mode: snapshot.registry.compatibility(name.as_str()),
            report,
        });
    }
    state
        .writer
        .files()?
        .write_version(&name, compiled.version, &compiled.document)
        .await
        .map_err(|error| storage_failed(&name, &error))?;
    let version = compiled.version;
    state
        .gateway
        .replace_registry(snapshot.registry.with_version(Arc::from(compiled)));
    tracing::info!(schema = %name, %version, "schema version registered and active");
    Ok((StatusCode::CREATED, version))
}

/// POST `/admin/schemas/{name}/compatibility`: what registering the body would say, without
/// registering it.
pub async fn dry_run(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    let snapshot = state.gateway.snapshot();
    if let Err(error) = require_role(&snapshot, &headers, WRITERS) {
        return caller.problem(&error);
    }
    let checked = async {
        let name = parse_name(&name)?;
        let document = read_schema(&headers, body).await?;
        // An equal document would answer its existing version: nothing would change.
        match prepare(
            &state.gateway,
            snapshot.clone(),
            name,
            document,
            caller.lang,
        )
        .await?
        {
            Prepared::Existing(_) => Ok(Report::default()),
            Prepared::New(_, report) => Ok(report),
        }
    }
    .await;
    match checked {
        Ok(report) => caller.json(
            StatusCode::OK,
            &json!({
                "compatible": report.compatible(),
                "reasons": report
                    .reasons
                    .iter()
                    .map(|reason| reason.to_document(caller.lang))
                    .collect::<Vec<_>>(),
                "difference": report.difference(),
            }),
        ),
        Err(error) => caller.problem(&error),
    }
}

/// The body of PUT `/admin/schemas/{name}/config`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    compatibility: String,
}

/// PUT `/admin/schemas/{name}/config`.
pub(crate) async fn set_config(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    if let Err(error) = require_role(&state.gateway.snapshot(), &headers, WRITERS) {
        return caller.problem(&error);
    }
    let changed = async {
        let name = parse_name(&name)?;
        let bytes = read_json_body(&headers, body, MAX_CONFIG_BYTES).await?;
        let value = parse_json(&bytes)?;
        // An object only: serde would also read a struct from an array.
        let mode = Some(value)
            .filter(Value::is_object)
            .and_then(|value| serde_json::from_value::<ConfigBody>(value).ok())
            .and_then(|body| Compatibility::parse(&body.compatibility))
            .ok_or(ExchangeError::InvalidParameter {
                name: "compatibility",
            })?;
        let state = state.clone();
        if let Some(store) = state.writer.shared() {
            return run_to_completion(set_mode_in_store(state, store, name, mode)).await;
        }
        run_to_completion(async move {
            let name_lock = state.writer.name_lock(&name);
            let _name = name_lock.lock().await;
            let _writing = state.writer.lock.lock().await;
            let snapshot = state.gateway.snapshot();
            let registry = snapshot.registry.with_compatibility(&name, mode);
            let settings = registry
                .entry(name.as_str())
                .map(|entry| entry.settings())
                .ok_or(ExchangeError::Internal)?;
            state
                .writer
                .files()?
                .write_settings(&name, settings)
                .await
                .map_err(|error| storage_failed(&name, &error))?;
            state.gateway.replace_registry(registry);
            tracing::info!(schema = %name, mode = mode.as_str(), "schema compatibility mode set");
            Ok((name, mode))
        })
        .await
    }
    .await;
    match changed {
        Ok((name, mode)) => caller.json(
            StatusCode::OK,
            &json!({"name": name, "compatibility": mode.as_str()}),
        ),
        Err(error) => caller.problem(&error),
    }
}

/// The most bytes of a PUT `/admin/schemas/{name}/config` body.
const MAX_CONFIG_BYTES: usize = 4096;

/// DELETE `/admin/schemas/{name}/versions/{N}`.
pub(crate) async fn delete_version(
    State(state): State<AdminState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response<Body> {
    let caller = Caller::from_headers(&headers);
    if let Err(error) = require_role(&state.gateway.snapshot(), &headers, WRITERS) {
        return caller.problem(&error);
    }
    let deleted = async {
        let name = parse_name(&name)?;
        // `latest` is refused: deleting whatever happens to be latest is never what was meant.
        let version = SchemaVersion::parse(&version).map_err(ExchangeError::InvalidName)?;
        let state = state.clone();
        if let Some(store) = state.writer.shared() {
            return run_to_completion(delete_in_store(state, store, name, version)).await;
        }
        run_to_completion(async move {
            let name_lock = state.writer.name_lock(&name);
            let _name = name_lock.lock().await;
            let _writing = state.writer.lock.lock().await;
            let snapshot = state.gateway.snapshot();
            let uses = schema_uses(&snapshot.config, &name);
            let registry = snapshot
                .registry
                .without_version(&name, version, &uses)
                .map_err(ExchangeError::Conflict)?
                .ok_or(ExchangeError::NotFound)?;
            // The highest number is on disk before the version's file goes, so a restart never
            // hands the number out again.
            let settings = registry
                .entry(name.as_str())
                .map(|entry| entry.settings())
                .ok_or(ExchangeError::Internal)?;
            let store = state.writer.files()?;
            store
                .write_settings(&name, settings)
                .await
                .map_err(|error| storage_failed(&name, &error))?;
            store
                .remove_version(&name, version)
                .await
                .map_err(|error| storage_failed(&name, &error))?;
            state.gateway.replace_registry(registry);
            tracing::info!(schema = %name, %version, "schema version deleted");
            Ok(())
        })
        .await
    }
    .await;
    match deleted {
        Ok(()) => caller.tag(
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Body::empty())
                .unwrap_or_default(),
        ),
        Err(error) => caller.problem(&error),
    }
}

/// Registers `document` as the next version of `name` in the shared store: the schema's row is
/// locked first (every other gateway's change of this schema waits), the served registry is
/// brought up to what the store holds for it, the document is checked against that, and the
/// new version — numbered by the store's highest — is inserted and announced in the same
/// transaction. Only then is it served here; the other gateways serve it on the notification.
async fn register_in_store(
    state: AdminState,
    store: Store,
    name: SchemaName,
    document: Value,
    lang: Lang,
) -> Result<(StatusCode, SchemaVersion), ExchangeError> {
    let name_lock = state.writer.name_lock(&name);
    let _name = name_lock.lock().await;
    let mut client = store.client().await.map_err(store_failed)?;
    let locked = store_registry::lock(&mut client, &name)
        .await
        .map_err(store_failed)?;
    catch_up(&state.gateway, &locked.current).await?;
    let snapshot = state.gateway.snapshot();
    let prepared = prepare(
        &state.gateway,
        snapshot.clone(),
        name.clone(),
        document,
        lang,
    )
    .await?;
    let (compiled, report) = match prepared {
        Prepared::Existing(version) => {
            locked.abandon().await.ok();
            return Ok((StatusCode::OK, version));
        }
        Prepared::New(compiled, report) => (compiled, report),
    };
    if !report.compatible() {
        return Err(ExchangeError::IncompatibleSchema {
            schema: compiled.label(),
            mode: snapshot.registry.compatibility(name.as_str()),
            report,
        });
    }
    let version = compiled.version;
    let referred: Vec<(SchemaName, SchemaVersion)> =
        references::registry_references(&compiled.document)
            .into_iter()
            .collect();
    let instance = snapshot.config.gateway.instance.clone();
    let revision = locked
        .insert_version(version, &compiled.document, &referred, &instance)
        .await
        .map_err(store_failed)?
        .map_err(|missing| ExchangeError::InvalidSchema {
            schema: compiled.label(),
            violations: vec![xgate_core::registry::Violation::new(
                "",
                "$ref",
                format!("{missing} was deleted while this version was checked"),
            )],
        })?;
    serve_committed(&state, &name, revision, |registry| {
        Some(registry.with_version(Arc::from(compiled)))
    })
    .await;
    tracing::info!(schema = %name, %version, "schema version registered in the store and active");
    Ok((StatusCode::CREATED, version))
}

/// Sets a schema's mode in the shared store (its row locked), then serves it.
async fn set_mode_in_store(
    state: AdminState,
    store: Store,
    name: SchemaName,
    mode: Compatibility,
) -> Result<(SchemaName, Compatibility), ExchangeError> {
    let name_lock = state.writer.name_lock(&name);
    let _name = name_lock.lock().await;
    let mut client = store.client().await.map_err(store_failed)?;
    let locked = store_registry::lock(&mut client, &name)
        .await
        .map_err(store_failed)?;
    catch_up(&state.gateway, &locked.current).await?;
    let revision = locked.set_compatibility(mode).await.map_err(store_failed)?;
    serve_committed(&state, &name, revision, |registry| {
        Some(registry.with_compatibility(&name, mode))
    })
    .await;
    tracing::info!(schema = %name, mode = mode.as_str(), "schema compatibility mode set in the store");
    Ok((name, mode))
}

/// Deletes a version in the shared store (its row locked; refused while a live version refers
/// to it there or this gateway's configuration uses it), then stops serving it.
async fn delete_in_store(
    state: AdminState,
    store: Store,
    name: SchemaName,
    version: SchemaVersion,
) -> Result<(), ExchangeError> {
    let name_lock = state.writer.name_lock(&name);
    let _name = name_lock.lock().await;
    let mut client = store.client().await.map_err(store_failed)?;
    let locked = store_registry::lock(&mut client, &name)
        .await
        .map_err(store_failed)?;
    catch_up(&state.gateway, &locked.current).await?;
    let snapshot = state.gateway.snapshot();
    let uses = schema_uses(&snapshot.config, &name);
    // The checks of this gateway's memory and configuration first (with their messages);
    // the store checks the references again, across gateways.
    snapshot
        .registry
        .without_version(&name, version, &uses)
        .map_err(ExchangeError::Conflict)?
        .ok_or(ExchangeError::NotFound)?;
    let instance = snapshot.config.gateway.instance.clone();
    let revision = match locked
        .delete_version(version, &instance)
        .await
        .map_err(store_failed)?
    {
        Ok(revision) => revision,
        Err(store_registry::Refused::NotFound) => return Err(ExchangeError::NotFound),
        Err(store_registry::Refused::ReferencedBy(by)) => {
            return Err(ExchangeError::Conflict(Conflict::ReferencedBy {
                schema: format!("{name}@{version}"),
                by,
            }));
        }
    };
    serve_committed(&state, &name, revision, |registry| {
        registry.without_version(&name, version, &[]).ok().flatten()
    })
    .await;
    tracing::info!(schema = %name, %version, "schema version deleted in the store");
    Ok(())
}

/// Serves a change the store committed as `revision` of schema `name` (`change` applied to the
/// served registry), unless the change listener served it, or a later one, already.
async fn serve_committed(
    state: &AdminState,
    name: &SchemaName,
    revision: i64,
    change: impl FnOnce(&Registry) -> Option<Registry>,
) {
    let _writing = state.writer.lock.lock().await;
    let behind = state
        .gateway
        .registry_revisions()
        .get(name)
        .is_none_or(|served| *served < revision);
    if behind {
        if let Some(registry) = change(&state.gateway.snapshot().registry) {
            state.gateway.replace_registry(registry);
        }
        state.gateway.set_registry_revision(name, revision);
    }
}

/// Brings the served registry's schema up to `stored` (read under its row lock) when it is
/// behind, so that a change is checked against what the store holds.
async fn catch_up(
    gateway: &Gateway,
    stored: &store_registry::StoredSchema,
) -> Result<(), ExchangeError> {
    let _writing = gateway.changes.lock().await;
    crate::store::listener::serve_stored(gateway, stored.clone())
        .await
        .map_err(|reason| {
            tracing::warn!(%reason, "the served registry cannot follow the store yet");
            ExchangeError::StoreUnreachable
        })
}

fn store_failed(error: StoreError) -> ExchangeError {
    tracing::error!(%error, "the schema registry's store failed");
    ExchangeError::StoreUnreachable
}

/// Runs a registry change to its end even when the caller goes away mid-way: a change dropped
/// between writing its files and swapping the registry would leave disk and memory apart.
async fn run_to_completion<T: Send + 'static>(
    change: impl Future<Output = Result<T, ExchangeError>> + Send + 'static,
) -> Result<T, ExchangeError> {
    tokio::spawn(change).await.map_err(|error| {
        tracing::error!(%error, "a schema registry change did not finish");
        ExchangeError::Internal
    })?
}

fn parse_name(name: &str) -> Result<SchemaName, ExchangeError> {
    SchemaName::parse(name).map_err(ExchangeError::InvalidName)
}

/// Reads a submitted schema document: JSON, at most [`MAX_SCHEMA_BYTES`].
async fn read_schema(headers: &HeaderMap, body: Body) -> Result<Value, ExchangeError> {
    let bytes = read_json_body(headers, body, MAX_SCHEMA_BYTES).await?;
    parse_json(&bytes)
}

/// What a submitted document comes to.
enum Prepared {
    /// An equal document is already this version.
    Existing(SchemaVersion),
    /// The next version, compiled, with its compatibility report.
    New(Box<CompiledSchema>, Report),
}

/// Looks for an equal registered document, else compiles `document` as the next version of
/// `name` and checks it against the earlier versions in the schema's mode, on the blocking pool
/// (comparing, compiling and proving can each take a while on a large schema; the proof is
/// bounded, see [`compatibility`]), counted in `Gateway::schema_checks`.
async fn prepare(
    gateway: &Gateway,
    snapshot: Arc<Snapshot>,
    name: SchemaName,
    document: Value,
    lang: Lang,
) -> Result<Prepared, ExchangeError> {
    let limit = snapshot.config.registry.check_timeout;
    let schema = name.to_string();
    let mode = snapshot.registry.compatibility(name.as_str());
    let candidate = snapshot.registry.next_version(name.as_str());
    let earlier: Vec<SchemaVersion> = snapshot
        .registry
        .entry(name.as_str())
        .map(|entry| entry.versions.keys().copied().collect())
        .unwrap_or_default();
    let slot = tokio::time::timeout(
        CHECK_SLOT_WAIT,
        gateway.schema_check_slots.clone().acquire_owned(),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .ok_or(ExchangeError::Overloaded {
        retry_after_seconds: 1,
    })?;
    let checks = gateway.schema_checks.clone();
    let (started, has_started) = tokio::sync::oneshot::channel();
    let check = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let _running = checks.start(name.as_str());
        started.send(()).ok();
        let registry: &Registry = &snapshot.registry;
        if let Some(version) = registry.identical_version(name.as_str(), &document) {
            return Ok(Prepared::Existing(version));
        }
        let version = registry.next_version(name.as_str()).ok_or_else(|| {
            ExchangeError::Conflict(Conflict::VersionsExhausted {
                schema: name.to_string(),
            })
        })?;
        let compiled = compile_version(&name, version, document, registry.documents(), lang)
            .map_err(|violations| ExchangeError::InvalidSchema {
                schema: format!("{name}@{version}"),
                violations,
            })?;
        let earlier: Vec<&CompiledSchema> = registry
            .entry(name.as_str())
            .map(|entry| entry.versions.values().map(|old| &**old).collect())
            .unwrap_or_default();
        let report = compatibility::check(
            registry.compatibility(name.as_str()),
            &compiled,
            &earlier,
            registry.documents(),
        );
        Ok(Prepared::New(Box::new(compiled), report))
    });
    // The limit counts from the check's start (a test may hold a check before it starts), and
    // applies where versions are compared: a first version is only compiled (bounded by the
    // document's size).
    has_started.await.ok();
    let limit_applies = if !compatibility::compared(mode, &earlier).1.is_empty() {
        limit
    } else {
        std::time::Duration::MAX
    };
    match tokio::time::timeout(limit_applies, check).await {
        Ok(joined) => joined.map_err(|error| {
            tracing::error!(%error, "schema preparation did not finish");
            ExchangeError::Internal
        })?,
        Err(_) => {
            let Some(candidate) = candidate else {
                return Err(ExchangeError::Internal);
            };
            tracing::warn!(
                limit_ms = limit.as_millis() as u64,
                "a compatibility check ran past its time limit; it runs on in its slot"
            );
            Err(ExchangeError::IncompatibleSchema {
                schema: format!("{schema}@{candidate}"),
                mode,
                report: compatibility::out_of_time(mode, candidate, &earlier, limit),
            })
        }
    }
}

/// How long a registration waits for a free check slot before it is answered 503 `overloaded`.
const CHECK_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Everything in the configuration that names schema `name`.
pub(crate) fn schema_uses(config: &Config, name: &SchemaName) -> Vec<SchemaUse> {
    let mut uses = Vec::new();
    for department in &config.departments {
        for service in &department.services {
            let sides = [
                ("request_schema", &service.request_schema),
                ("response_schema", &service.response_schema),
            ];
            for (side, reference) in sides {
                if let Some(reference) = reference.as_ref().filter(|r| r.name == *name) {
                    uses.push(SchemaUse {
                        user: format!(
                            "service {}/{} {side} = {reference}",
                            service.provider, service.name
                        ),
                        version: reference.version,
                    });
                }
            }
        }
        for certificate in &department.certificate_types {
            if certificate.schema.name == *name {
                uses.push(SchemaUse {
                    user: format!(
                        "certificate type {} schema = {}",
                        certificate.certificate_type, certificate.schema
                    ),
                    version: certificate.schema.version,
                });
            }
        }
        if department.formats.contains_key(name) {
            uses.push(SchemaUse {
                user: format!("format {} of department {}", name, department.id),
                version: None,
            });
        }
    }
    uses
}

fn storage_failed(name: &SchemaName, error: &std::io::Error) -> ExchangeError {
    tracing::error!(schema = %name, %error, "writing the schema registry's files failed");
    ExchangeError::Internal
}
