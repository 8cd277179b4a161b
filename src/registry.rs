//! The schema registry: shared schemas loaded from `schemas/<name>/<version>.json`, each version
//! compiled once into a validator that every request shares.
//!
//! `$ref`s between schemas use `urn:xgate:schema:<name>:<version>` and resolve from the loaded
//! documents only: the gateway never fetches what a schema names, over the network or from files.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::config::Problem;
use crate::domain::{Compatibility, SchemaName, SchemaRef, SchemaVersion};
use crate::i18n::{self, Lang};

/// The most violations reported for one record; a hostile record cannot grow a response past it.
pub const MAX_VIOLATIONS: usize = 100;

/// One way a record breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Where, as a JSON Pointer into the record the caller sent (its own layout).
    pub pointer: String,
    /// Where in the shared layout, when that differs from `pointer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_pointer: Option<String>,
    /// The schema keyword that failed (`required`, `format`, ...).
    pub keyword: &'static str,
    /// What is wrong, in the caller's language.
    pub message: String,
    /// The format rule involved, for translation problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For `required`: the missing property (so a format can name it in the caller's layout).
    #[serde(skip)]
    pub missing_property: Option<String>,
}

impl Violation {
    /// A violation found by the gateway itself (not by a schema), at `pointer`.
    pub fn new(pointer: impl Into<String>, keyword: &'static str, message: String) -> Violation {
        Violation {
            pointer: pointer.into(),
            shared_pointer: None,
            keyword,
            message,
            rule: None,
            missing_property: None,
        }
    }
}

/// One compiled version of a schema.
pub struct CompiledSchema {
    /// The schema's name.
    pub name: SchemaName,
    /// Its version.
    pub version: SchemaVersion,
    /// The document as registered.
    pub document: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CompiledSchema({}@{})", self.name, self.version)
    }
}

impl CompiledSchema {
    /// Validates a record, returning at most [`MAX_VIOLATIONS`] violations (empty when valid).
    pub fn validate(&self, record: &Value, lang: Lang) -> Vec<Violation> {
        if self.validator.is_valid(record) {
            return Vec::new();
        }
        self.validator
            .iter_errors(record)
            .take(MAX_VIOLATIONS)
            .map(|error| Violation {
                pointer: error.instance_path().to_string(),
                shared_pointer: None,
                keyword: i18n::violation_keyword(&error),
                message: i18n::violation_message(&error, lang),
                rule: None,
                missing_property: match error.kind() {
                    jsonschema::error::ValidationErrorKind::Required { property } => {
                        property.as_str().map(str::to_owned)
                    }
                    _ => None,
                },
            })
            .collect()
    }

    /// `name@version`, as used in problems and logs.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// The URN that addresses a schema version in `$id` and `$ref`.
pub fn schema_urn(name: &SchemaName, version: SchemaVersion) -> String {
    format!("urn:xgate:schema:{name}:{version}")
}

/// All versions of one schema.
#[derive(Debug, Clone)]
pub struct SchemaEntry {
    /// Versions by number; numbers may have gaps where versions were deleted.
    pub versions: BTreeMap<SchemaVersion, Arc<CompiledSchema>>,
    /// The compatibility mode for new versions.
    pub compatibility: Compatibility,
}

/// Every schema the gateway knows.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    schemas: BTreeMap<SchemaName, SchemaEntry>,
}

/// The `settings.toml` beside a schema's versions.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    compatibility: String,
}

/// Validator options every schema is compiled with: draft 2020-12, formats asserted (the
/// standard ones and the Chinese identifiers), references resolved from `documents` only.
pub fn validator_options(
    documents: Arc<HashMap<String, Value>>,
) -> jsonschema::ValidationOptions<'static> {
    let mut options = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .with_retriever(RegistryRetriever { documents });
    for (name, check) in crate::identifiers::FORMATS {
        options = options.with_format(name, check);
    }
    options
}

/// Resolves `urn:xgate:schema:...` references from the registry's own documents; anything else
/// is refused, so no schema can make the gateway open a file or a connection.
struct RegistryRetriever {
    documents: Arc<HashMap<String, Value>>,
}

impl jsonschema::Retrieve for RegistryRetriever {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let key = uri.as_str().trim_end_matches('#');
        self.documents
            .get(key)
            .cloned()
            .ok_or_else(|| format!("{key} is not a registered schema version").into())
    }
}

impl Registry {
    /// Loads every schema under `dir`, compiling each version, and reports problems per file.
    pub fn load(
        dir: &Path,
        default_compatibility: Compatibility,
        problems: &mut Vec<Problem>,
    ) -> Registry {
        let mut documents: BTreeMap<(SchemaName, SchemaVersion), (std::path::PathBuf, Value)> =
            BTreeMap::new();
        let mut settings: BTreeMap<SchemaName, Compatibility> = BTreeMap::new();
        let problem = |file: &Path, key: &str, reason: String| Problem {
            file: file.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            // The caller reports a missing folder once, as `registry.dir`.
            return Registry::default();
        };
        let mut folders: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        folders.sort();
        for folder in folders.into_iter().filter(|path| path.is_dir()) {
            let folder_name = folder.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if folder_name.starts_with('.') {
                continue;
            }
            let name = match SchemaName::parse(folder_name) {
                Ok(name) => name,
                Err(error) => {
                    problems.push(problem(&folder, "", error.to_string()));
                    continue;
                }
            };
            let Ok(files) = std::fs::read_dir(&folder) else {
                problems.push(problem(&folder, "", "cannot read the folder".to_owned()));
                continue;
            };
            let mut files: Vec<_> = files.filter_map(Result::ok).map(|e| e.path()).collect();
            files.sort();
            for file in files {
                let file_name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if file_name == "settings.toml" {
                    let parsed = std::fs::read_to_string(&file)
                        .map_err(|error| error.to_string())
                        .and_then(|text| {
                            toml::from_str::<SettingsFile>(&text)
                                .map_err(|e| e.message().to_owned())
                        });
                    match parsed.map(|s| (Compatibility::parse(&s.compatibility), s.compatibility))
                    {
                        Ok((Some(mode), _)) => {
                            settings.insert(name.clone(), mode);
                        }
                        Ok((None, text)) => problems.push(problem(
                            &file,
                            "compatibility",
                            format!("unknown mode {text:?}"),
                        )),
                        Err(reason) => problems.push(problem(&file, "", reason)),
                    }
                    continue;
                }
                let Some(stem) = file_name.strip_suffix(".json") else {
                    // Temporary files of interrupted writes and other notes are not schemas.
                    continue;
                };
                let version = match SchemaVersion::parse(stem) {
                    Ok(version) => version,
                    Err(error) => {
                        problems.push(problem(&file, "", error.to_string()));
                        continue;
                    }
                };
                let document = std::fs::read(&file)
                    .map_err(|error| error.to_string())
                    .and_then(|bytes| {
                        serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string())
                    });
                match document {
                    Ok(document) => {
                        documents.insert((name.clone(), version), (file, document));
                    }
                    Err(reason) => problems.push(problem(&file, "", format!("not JSON: {reason}"))),
                }
            }
        }

        let mut by_urn = HashMap::with_capacity(documents.len());
        for ((name, version), (file, document)) in &mut documents {
            let urn = schema_urn(name, *version);
            match document.get("$id").map(|id| id.as_str()) {
                None => {
                    if let Value::Object(object) = document {
                        object.insert("$id".to_owned(), Value::String(urn.clone()));
                    }
                }
                Some(Some(id)) if id == urn => {}
                Some(_) => {
                    problems.push(problem(file, "$id", format!("must be {urn:?} or absent")))
                }
            }
            by_urn.insert(urn, document.clone());
        }
        let options = validator_options(Arc::new(by_urn));
        let mut registry = Registry::default();
        for ((name, version), (file, document)) in documents {
            match options.build(&document) {
                Ok(validator) => {
                    let entry =
                        registry
                            .schemas
                            .entry(name.clone())
                            .or_insert_with(|| SchemaEntry {
                                versions: BTreeMap::new(),
                                compatibility: settings
                                    .get(&name)
                                    .copied()
                                    .unwrap_or(default_compatibility),
                            });
                    entry.versions.insert(
                        version,
                        Arc::new(CompiledSchema {
                            name,
                            version,
                            document,
                            validator,
                        }),
                    );
                }
                Err(error) => problems.push(problem(
                    &file,
                    "",
                    format!("not a valid draft 2020-12 schema: {error}"),
                )),
            }
        }
        registry
    }

    /// Finds the version a reference means now: the pinned one, or the latest.
    pub fn resolve(&self, reference: &SchemaRef) -> Result<Arc<CompiledSchema>, String> {
        self.get(reference.name.as_str(), reference.version)
            .ok_or_else(
                || match (self.schemas.get(reference.name.as_str()), reference.version) {
                    (None, _) => format!("unknown schema {}", reference.name),
                    (Some(_), Some(version)) => {
                        format!("schema {} has no version {version}", reference.name)
                    }
                    (Some(_), None) => format!("schema {} has no versions", reference.name),
                },
            )
    }

    /// The given version of a schema, or its latest when `version` is `None`.
    pub fn get(&self, name: &str, version: Option<SchemaVersion>) -> Option<Arc<CompiledSchema>> {
        let entry = self.schemas.get(name)?;
        match version {
            Some(version) => entry.versions.get(&version).cloned(),
            None => entry.versions.values().next_back().cloned(),
        }
    }

    /// Every schema by name, sorted.
    pub fn schemas(&self) -> impl Iterator<Item = (&SchemaName, &SchemaEntry)> {
        self.schemas.iter()
    }
}
