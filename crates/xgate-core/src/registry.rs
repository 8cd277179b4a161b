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

use crate::domain::{Compatibility, SchemaName, SchemaRef, SchemaVersion};
use crate::i18n::{self, Lang};
use crate::registry::draft::Dialect;
use crate::report::Problem;

pub mod compatibility;
pub mod draft;
pub mod exact;
pub mod holds;
pub mod pattern;
pub mod references;
pub mod witness;

/// The most violations reported for one record; a hostile record cannot grow a response past it.
pub const MAX_VIOLATIONS: usize = 100;

/// A schema's settings file in its folder (`schemas/<name>/settings.toml`).
pub const SETTINGS_FILE: &str = "settings.toml";

/// One folder of the schema folder, as read by the edge: the folder's name is the schema's.
#[derive(Debug)]
pub struct SchemaFolder {
    /// Where it is (for problems).
    pub path: std::path::PathBuf,
    /// Its name.
    pub name: String,
    /// Its version files (`<version>.json`) and [`SETTINGS_FILE`]; `None` when it cannot be read.
    pub files: Option<Vec<SchemaFile>>,
}

/// One file of a [`SchemaFolder`].
#[derive(Debug)]
pub struct SchemaFile {
    /// Where it is (for problems).
    pub path: std::path::PathBuf,
    /// Its name in the folder.
    pub name: String,
    /// Its bytes, or why they could not be read.
    pub contents: Result<Vec<u8>, String>,
}

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
    /// The document as registered (served back as it is).
    pub document: Value,
    /// The draft it is written in, which validates records against it.
    pub dialect: Dialect,
    /// The document in draft 2020-12 ([`draft::to_2020_12`]): what versions are compared by.
    /// When the conversion is not faithful this is the document as registered, and
    /// [`CompiledSchema::unfaithful`] says why: such a version is never proven compatible.
    pub comparable: Value,
    /// Why [`CompiledSchema::comparable`] may not accept exactly what the document accepts
    /// (`None`: it does).
    pub unfaithful: Option<String>,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CompiledSchema({}@{})", self.name, self.version)
    }
}

impl CompiledSchema {
    /// Validates a record, returning at most [`MAX_VIOLATIONS`] violations (empty when valid).
    ///
    /// The record's `pattern` matches share [`PATTERN_STEPS_PER_RECORD`] steps: a record that
    /// spends them is refused with one violation saying so, and one with a match that could not
    /// be finished within [`PATTERN_BACKTRACK_LIMIT`] steps is refused with that match's
    /// violations only (its outcome is unknown, so nothing else about the record is certain).
    pub fn validate(&self, record: &Value, lang: Lang) -> Vec<Violation> {
        let (violations, _) = pattern::within_budget(PATTERN_STEPS_PER_RECORD, || {
            let valid = self.validator.is_valid(record);
            if valid && pattern::current_use().is_clean() {
                return Vec::new();
            }
            if pattern::current_use().exhausted {
                return vec![budget_violation(lang)];
            }
            let errors: Vec<_> = self
                .validator
                .iter_errors(record)
                .take(MAX_VIOLATIONS)
                .collect();
            let used = pattern::current_use();
            if used.exhausted {
                return vec![budget_violation(lang)];
            }
            if used.undecided {
                let undecided: Vec<Violation> = errors
                    .iter()
                    .filter(|error| i18n::is_pattern_step_limit(error))
                    .map(|error| violation(error, lang))
                    .collect();
                if undecided.is_empty() {
                    // The cut-off match lies under a keyword that reports its own error (`anyOf`,
                    // `not`, `propertyNames`): the record as a whole is undecided.
                    return vec![Violation::new(
                        "",
                        "pattern",
                        i18n::PatternFailure::StepLimit.message(None, lang),
                    )];
                }
                return undecided;
            }
            errors.iter().map(|error| violation(error, lang)).collect()
        });
        violations
    }

    /// Whether a record is valid (no violations collected), its matches within the budget.
    pub fn is_valid(&self, record: &Value) -> bool {
        let (valid, used) =
            pattern::within_budget(PATTERN_STEPS_PER_RECORD, || self.validator.is_valid(record));
        valid && used.is_clean()
    }

    /// `name@version`, as used in problems and logs.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// One error of the validator as a violation at the caller's pointer.
fn violation(error: &jsonschema::ValidationError<'_>, lang: Lang) -> Violation {
    Violation {
        pointer: error.instance_path().to_string(),
        shared_pointer: None,
        keyword: i18n::violation_keyword(error),
        message: i18n::violation_message(error, lang),
        rule: None,
        missing_property: match error.kind() {
            jsonschema::error::ValidationErrorKind::Required { property } => {
                property.as_str().map(str::to_owned)
            }
            _ => None,
        },
    }
}

/// The one violation of a record whose matches spent [`PATTERN_STEPS_PER_RECORD`].
fn budget_violation(lang: Lang) -> Violation {
    Violation::new(
        "",
        "pattern",
        i18n::pattern_budget_message(PATTERN_STEPS_PER_RECORD, lang),
    )
}

/// The URN that addresses a schema version in `$id` and `$ref`.
pub fn schema_urn(name: &SchemaName, version: SchemaVersion) -> String {
    format!("urn:xgate:schema:{name}:{version}")
}

/// The most bytes a schema document may have when it is registered or dry-run
/// (`POST /admin/schemas/{name}/versions`, `.../compatibility`); larger bodies are a 413.
pub const MAX_SCHEMA_BYTES: usize = 1024 * 1024;

/// The most backtracking steps one `pattern` match may take; a match cut off there leaves the
/// record undecided, and it is refused. Patterns without look-around or back-references never
/// backtrack: they run on the linear-time engine and cost no steps.
pub const PATTERN_BACKTRACK_LIMIT: usize = 100_000;

/// The most backtracking steps all `pattern` matches of one record may take together (each
/// match charged an upper bound of its steps, see [`pattern`]); a record past it is refused with
/// one `pattern` violation. About 0.2 s of matching on a 2020s core at fancy-regex's ~40 ns a
/// step; a record needs 50,000 strings under a back-reference pattern to come near it.
pub const PATTERN_STEPS_PER_RECORD: u64 = 5_000_000;

/// The most memory, in bytes, one compiled `pattern` may take.
pub const PATTERN_SIZE_LIMIT: usize = 2 * 1024 * 1024;

/// The default dialect of a registered schema (when `$schema` is absent), and the one versions are
/// compared in ([`draft::to_2020_12`]).
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// The prefix of the URNs the registry owns; a document may not claim one as its own `$id`
/// unless it is its own version's.
const URN_PREFIX: &str = "urn:xgate:";

/// All versions of one schema.
#[derive(Debug, Clone)]
pub struct SchemaEntry {
    /// Versions by number; numbers may have gaps where versions were deleted.
    pub versions: BTreeMap<SchemaVersion, Arc<CompiledSchema>>,
    /// The compatibility mode for new versions.
    pub compatibility: Compatibility,
    /// Whether the mode is the schema's own (`settings.toml`) rather than the registry default.
    pub own_compatibility: bool,
    /// The highest version number ever given out, deleted versions included: numbers are never
    /// handed out twice.
    pub highest_version: Option<SchemaVersion>,
}

impl SchemaEntry {
    fn new(compatibility: Compatibility, own_compatibility: bool) -> SchemaEntry {
        SchemaEntry {
            versions: BTreeMap::new(),
            compatibility,
            own_compatibility,
            highest_version: None,
        }
    }

    /// The latest version, if any is left.
    pub fn latest(&self) -> Option<&Arc<CompiledSchema>> {
        self.versions.values().next_back()
    }

    /// The number the next registered version gets, `None` when numbers are exhausted.
    pub fn next_version(&self) -> Option<SchemaVersion> {
        match self.highest_version {
            None => Some(SchemaVersion::FIRST),
            Some(highest) => highest.get().checked_add(1).and_then(SchemaVersion::new),
        }
    }

    /// What the schema's `settings.toml` holds.
    pub fn settings(&self) -> Settings {
        Settings {
            compatibility: self.own_compatibility.then_some(self.compatibility),
            highest_version: self.highest_version,
        }
    }
}

/// The contents of `schemas/<name>/settings.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// The schema's own compatibility mode; absent = the registry's default.
    pub compatibility: Option<Compatibility>,
    /// The highest version number ever given out, so a deleted latest number is not reused
    /// after a restart.
    pub highest_version: Option<SchemaVersion>,
}

/// `settings.toml` as written.
#[derive(Debug, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    compatibility: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    highest_version: Option<u32>,
}

impl Settings {
    /// Parses a `settings.toml`, naming the offending key on failure.
    pub fn parse(text: &str) -> Result<Settings, (&'static str, String)> {
        let file: SettingsFile =
            toml::from_str(text).map_err(|error| ("", error.message().to_owned()))?;
        let compatibility = match file.compatibility {
            None => None,
            Some(text) => Some(
                Compatibility::parse(&text)
                    .ok_or_else(|| ("compatibility", format!("unknown mode {text:?}")))?,
            ),
        };
        let highest_version = match file.highest_version {
            None => None,
            Some(number) => Some(
                SchemaVersion::new(number)
                    .ok_or_else(|| ("highest_version", "must be a positive integer".to_owned()))?,
            ),
        };
        Ok(Settings {
            compatibility,
            highest_version,
        })
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let file = SettingsFile {
            compatibility: self.compatibility.map(|mode| mode.as_str().to_owned()),
            highest_version: self.highest_version.map(SchemaVersion::get),
        };
        let body = toml::to_string(&file).unwrap_or_default();
        format!(
            "# Written by the xgate schema registry (PUT /admin/schemas/{{name}}/config, DELETE of a version).\n{body}"
        )
    }
}

/// Every schema version's document by URN: what `$ref`s between versions resolve against.
pub type Documents = Arc<HashMap<String, Arc<Value>>>;

/// Every schema the gateway knows. Immutable: changes build a new registry that shares every
/// compiled version with the old one.
#[derive(Debug, Clone)]
pub struct Registry {
    schemas: BTreeMap<SchemaName, SchemaEntry>,
    documents: Documents,
    default_compatibility: Compatibility,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::empty(Compatibility::Backward)
    }
}

/// Validator options every schema is compiled with: its draft (`dialect`), formats asserted (the
/// standard ones and the Chinese identifiers), references resolved from `documents` only,
/// regular expressions bounded, numeric limits compared exactly ([`exact`]).
pub fn validator_options(
    documents: Documents,
    dialect: Dialect,
) -> jsonschema::ValidationOptions<'static> {
    let mut options = jsonschema::options()
        .with_draft(dialect.draft())
        .should_validate_formats(true)
        .with_pattern_options(pattern_options())
        .with_keyword("pattern", pattern::keyword_factory())
        .with_retriever(RegistryRetriever::new(documents));
    for (name, check) in crate::identifiers::FORMATS {
        options = options.with_format(name, check);
    }
    exact::with_exact_keywords(options, dialect)
}

/// The regular-expression engine settings of `patternProperties` (and of the canonical forms of
/// the compatibility check): `fancy-regex` (ECMA-262 features such as look-around), with bounded
/// backtracking and program size. `pattern` itself is the gateway's own keyword
/// ([`pattern::keyword_factory`]), with the same limits and a budget per record.
pub fn pattern_options() -> jsonschema::PatternOptions<jsonschema::FancyRegex> {
    jsonschema::PatternOptions::fancy_regex()
        .backtrack_limit(PATTERN_BACKTRACK_LIMIT)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_SIZE_LIMIT)
}

/// Resolves `urn:xgate:schema:...` references from the registry's own documents; anything else
/// is refused, so no schema can make the gateway open a file or a connection.
#[derive(Clone)]
pub struct RegistryRetriever {
    documents: Documents,
    /// Whether documents are served in their 2020-12 form ([`draft::to_2020_12`]), for the
    /// canonical forms of the compatibility check; validators get them as registered, and
    /// read each by its own draft.
    converting: bool,
}

impl RegistryRetriever {
    /// A retriever over the given documents, as registered.
    pub fn new(documents: Documents) -> RegistryRetriever {
        RegistryRetriever {
            documents,
            converting: false,
        }
    }

    /// A retriever over the given documents in their 2020-12 form.
    pub fn converting(documents: Documents) -> RegistryRetriever {
        RegistryRetriever {
            documents,
            converting: true,
        }
    }
}

impl jsonschema::Retrieve for RegistryRetriever {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let key = uri.as_str().trim_end_matches('#');
        let document = self
            .documents
            .get(key)
            .ok_or_else(|| format!("{key} is not a registered schema version"))?;
        if !self.converting {
            return Ok(Value::clone(document));
        }
        let dialect = Dialect::of(document)?;
        Ok(draft::to_2020_12(document, dialect)
            .map_err(|reason| format!("{key} cannot be read as draft 2020-12: {reason}"))?)
    }
}

/// Gives a document its version's URN as its identifier (`$id`, draft-04 `id`) when it has
/// none, or when it names a version of this schema (a document served back, edited and
/// registered again keeps the old version's URN: the new version gets its own); refuses an
/// identifier that claims another schema's registry URN. A document may keep an `$id` of its own
/// outside `urn:xgate:` (it then resolves its relative references against it); the registry
/// still addresses it by its URN.
fn assign_id(
    document: &mut Value,
    name: &SchemaName,
    urn: &str,
    dialect: Dialect,
) -> Result<(), String> {
    let Value::Object(object) = document else {
        return Ok(());
    };
    let keyword = dialect.id_keyword();
    match object.get(keyword) {
        None => {
            object.insert(keyword.to_owned(), Value::String(urn.to_owned()));
            Ok(())
        }
        Some(Value::String(id)) if id.trim_end_matches('#') == urn => Ok(()),
        Some(Value::String(id)) if is_own_urn(id, name) => {
            object.insert(keyword.to_owned(), Value::String(urn.to_owned()));
            Ok(())
        }
        Some(Value::String(id)) if id.starts_with(URN_PREFIX) => Err(format!(
            "{keyword} {:?} names another schema's registry URN; use {urn:?} or leave it out",
            excerpt(id)
        )),
        // Anything else is the meta-schema's to judge.
        Some(_) => Ok(()),
    }
}

/// Whether `id` is the URN of some version of schema `name` (`urn:xgate:schema:<name>:<N>`).
fn is_own_urn(id: &str, name: &SchemaName) -> bool {
    let resource = id.trim_end_matches('#');
    // An identifier with a fragment (a draft-07 plain-name anchor) names no version as a whole.
    !resource.contains('#')
        && references::parse_schema_urn(resource).is_some_and(|(urn_name, _)| urn_name == *name)
}

/// Whether a submitted document equals a registered one, reading an absent identifier, or one
/// naming any version of the schema, as the version's URN (which the registry gave it).
/// Compares in place, without copying documents.
fn same_document(submitted: &Value, registered: &CompiledSchema) -> bool {
    let (Value::Object(submitted), Value::Object(object)) = (submitted, &registered.document)
    else {
        return *submitted == registered.document;
    };
    let keyword = registered.dialect.id_keyword();
    let others = |object: &serde_json::Map<String, Value>| {
        object.len() - usize::from(object.contains_key(keyword))
    };
    let id_of = |object: &serde_json::Map<String, Value>| match object.get(keyword) {
        None => Some(None),
        Some(Value::String(id)) if is_own_urn(id, &registered.name) => Some(None),
        Some(Value::String(id)) => Some(Some(id.trim_end_matches('#').to_owned())),
        Some(_) => None,
    };
    id_of(submitted).is_some_and(|id| Some(id) == id_of(object))
        && others(submitted) == others(object)
        && submitted
            .iter()
            .filter(|(key, _)| *key != keyword)
            .all(|(key, value)| object.get(key) == Some(value))
}

/// At most 100 characters of a submitted value, for messages.
fn excerpt(text: &str) -> String {
    text.chars().take(100).collect()
}

/// Checks a submitted document and compiles it as `name@version`: its dialect is one the
/// registry accepts ([`Dialect::of`]), the document passes its draft's meta-schema, its `$id`
/// claims no other schema, and it compiles by its own draft with every reference resolved from
/// `documents` (which may include itself under its URN). Returns every problem found, at
/// pointers into the submitted document.
pub fn compile_version(
    name: &SchemaName,
    version: SchemaVersion,
    mut document: Value,
    documents: &HashMap<String, Arc<Value>>,
    lang: Lang,
) -> Result<CompiledSchema, Vec<Violation>> {
    let dialect = Dialect::of(&document).map_err(|declared| {
        vec![Violation::new(
            "/$schema",
            "$schema",
            match lang {
                Lang::En => format!(
                    "Schemas are registered in {}, not {:?}",
                    draft::ACCEPTED,
                    excerpt(&declared)
                ),
                Lang::Zh => format!(
                    "仅登记以下版本的数据规范：{}，不支持 {:?}",
                    draft::ACCEPTED,
                    excerpt(&declared)
                ),
            },
        )]
    })?;
    let violations: Vec<Violation> = dialect
        .meta_validator()
        .iter_errors(&document)
        .take(MAX_VIOLATIONS)
        .map(|error| {
            Violation::new(
                error.instance_path().to_string(),
                i18n::violation_keyword(&error),
                i18n::violation_message(&error, lang),
            )
        })
        .collect();
    if !violations.is_empty() {
        return Err(violations);
    }
    let violations = property_pattern_violations(&document, lang);
    if !violations.is_empty() {
        return Err(violations);
    }
    let urn = schema_urn(name, version);
    if let Err(reason) = assign_id(&mut document, name, &urn, dialect) {
        let message = match lang {
            Lang::En => reason,
            Lang::Zh => {
                format!("$id 不能指向其他数据规范的登记地址，请使用 {urn:?} 或省略：{reason}")
            }
        };
        let pointer = format!("/{}", dialect.id_keyword());
        return Err(vec![Violation::new(pointer, "$id", message)]);
    }
    let mut with_self = documents.clone();
    with_self.insert(urn, resolvable(&document, dialect));
    build(name, version, document, dialect, Arc::new(with_self)).map_err(|error| {
        vec![Violation::new(
            error.instance_path().to_string(),
            i18n::violation_keyword(&error),
            i18n::violation_message(&error, lang),
        )]
    })
}

/// A document as `$ref`s resolve it: with its `$schema` spelled out, so a version of another
/// draft that refers to it reads it by its own draft (a resource without `$schema` would be
/// read by the referring schema's).
fn resolvable(document: &Value, dialect: Dialect) -> Arc<Value> {
    let mut document = document.clone();
    if let Value::Object(object) = &mut document
        && !object.contains_key("$schema")
        && dialect == Dialect::Draft202012
    {
        object.insert(
            "$schema".to_owned(),
            Value::String(DRAFT_2020_12.to_owned()),
        );
    }
    Arc::new(document)
}

/// Compiles a checked document by its draft, with its 2020-12 form for comparisons.
fn build(
    name: &SchemaName,
    version: SchemaVersion,
    document: Value,
    dialect: Dialect,
    documents: Documents,
) -> Result<CompiledSchema, jsonschema::ValidationError<'static>> {
    let validator = validator_options(documents, dialect).build(&document)?;
    let (comparable, unfaithful) = match draft::to_2020_12(&document, dialect) {
        Ok(comparable) => (comparable, None),
        Err(reason) => (document.clone(), Some(reason)),
    };
    Ok(CompiledSchema {
        name: name.clone(),
        version,
        comparable,
        unfaithful,
        document,
        dialect,
        validator,
    })
}

/// The `patternProperties` regexes of a document that need backtracking, refused: they are
/// matched against every property name of a record, outside the budget of [`pattern`].
fn property_pattern_violations(document: &Value, lang: Lang) -> Vec<Violation> {
    pattern::backtracking_property_patterns(document)
        .into_iter()
        .take(MAX_VIOLATIONS)
        .map(|(pointer, regex)| {
            Violation::new(
                pointer,
                "patternProperties",
                i18n::backtracking_property_pattern_message(&regex, lang),
            )
        })
        .collect()
}

/// Something in the configuration that names a schema: a service's request or response schema,
/// a certificate type's schema, a department's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaUse {
    /// Who uses it, e.g. `service market/licenses (response_schema)`.
    pub user: String,
    /// The pinned version, or `None` when it follows the latest.
    pub version: Option<SchemaVersion>,
}

/// Why a version cannot be deleted (409 `conflict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// Another registered version `$ref`s it.
    ReferencedBy {
        /// The deleted version, `name@N`.
        schema: String,
        /// The referring version, `name@N`.
        by: String,
    },
    /// The configuration pins it (`name@N`).
    PinnedBy {
        /// The deleted version, `name@N`.
        schema: String,
        /// What pins it.
        user: String,
    },
    /// It is the last version of a schema the configuration follows by name.
    LastVersionInUse {
        /// The deleted version, `name@N`.
        schema: String,
        /// What follows the schema.
        user: String,
    },
    /// Every version number (up to 4294967295) has been given out.
    VersionsExhausted {
        /// The schema's name.
        schema: String,
    },
}

/// One version to compile at a load: its name and number, its file and its document.
type Work = ((SchemaName, SchemaVersion), (std::path::PathBuf, Value));

/// What compiling one version of [`Registry::assemble`] came to.
enum Compiled {
    /// Its `patternProperties` backtrack: refused with these violations.
    Refused(Vec<Violation>),
    /// Its `$schema` names no accepted dialect (reported already).
    NoDialect,
    /// Compiled.
    Built(Box<CompiledSchema>),
    /// Not a valid schema of its dialect.
    Invalid { dialect: Dialect, error: String },
}

/// Compiles each of `work` (in its order) on up to `workers` threads: the versions are
/// independent (each resolves its references from `documents`, which holds them all).
fn compile_all(
    work: &[Work],
    dialects: &BTreeMap<(SchemaName, SchemaVersion), Dialect>,
    documents: &Documents,
    workers: usize,
) -> Vec<Compiled> {
    let compile_one = |((name, version), (_, document)): &(
        (SchemaName, SchemaVersion),
        (std::path::PathBuf, Value),
    )| {
        let refused = property_pattern_violations(document, Lang::En);
        if !refused.is_empty() {
            return Compiled::Refused(refused);
        }
        let Some(dialect) = dialects.get(&(name.clone(), *version)).copied() else {
            return Compiled::NoDialect;
        };
        match build(name, *version, document.clone(), dialect, documents.clone()) {
            Ok(compiled) => Compiled::Built(Box::new(compiled)),
            Err(error) => Compiled::Invalid {
                dialect,
                error: error.to_string(),
            },
        }
    };
    let workers = workers.clamp(1, work.len().max(1));
    if workers == 1 {
        return work.iter().map(compile_one).collect();
    }
    // Contiguous shares, one per thread, joined in order.
    let share = work.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .chunks(share)
            .map(|chunk| scope.spawn(move || chunk.iter().map(compile_one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            // A compile that panicked (a bug in a library) panics here, as on one thread.
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

impl Registry {
    /// A registry without schemas whose new schemas get `default_compatibility`.
    pub fn empty(default_compatibility: Compatibility) -> Registry {
        Registry {
            schemas: BTreeMap::new(),
            documents: Arc::new(HashMap::new()),
            default_compatibility,
        }
    }

    /// Compiles every version of `folders` (the schema folder as the edge read it,
    /// `xgate::schema_store::read_folders`, or the store's `as_folders`), reporting problems
    /// per file. Versions are compiled on `workers` threads at once (1: this one), each
    /// independently of the others, and taken in the same order whatever the number: the
    /// registry and its problems are the same.
    pub fn assemble(
        folders: Vec<SchemaFolder>,
        default_compatibility: Compatibility,
        problems: &mut Vec<Problem>,
        workers: usize,
    ) -> Registry {
        let mut documents: BTreeMap<(SchemaName, SchemaVersion), (std::path::PathBuf, Value)> =
            BTreeMap::new();
        let mut settings: BTreeMap<SchemaName, Settings> = BTreeMap::new();
        let problem = |file: &Path, key: &str, reason: String| Problem {
            file: file.to_owned(),
            key: key.to_owned(),
            reason,
        };
        for folder in folders {
            let name = match SchemaName::parse(&folder.name) {
                Ok(name) => name,
                Err(error) => {
                    problems.push(problem(&folder.path, "", error.to_string()));
                    continue;
                }
            };
            let Some(files) = folder.files else {
                problems.push(problem(
                    &folder.path,
                    "",
                    "cannot read the folder".to_owned(),
                ));
                continue;
            };
            for file in files {
                if file.name == SETTINGS_FILE {
                    let parsed = file
                        .contents
                        .map_err(|error| ("", error))
                        .and_then(|bytes| {
                            String::from_utf8(bytes).map_err(|_| ("", "not UTF-8".to_owned()))
                        })
                        .and_then(|text| Settings::parse(&text));
                    match parsed {
                        Ok(parsed) => {
                            settings.insert(name.clone(), parsed);
                        }
                        Err((key, reason)) => problems.push(problem(&file.path, key, reason)),
                    }
                    continue;
                }
                let Some(stem) = file.name.strip_suffix(".json") else {
                    continue;
                };
                let version = match SchemaVersion::parse(stem) {
                    Ok(version) => version,
                    Err(error) => {
                        problems.push(problem(&file.path, "", error.to_string()));
                        continue;
                    }
                };
                let document = file
                    .contents
                    // The gateway's reader: a schema with two `maximum`s is ambiguous too.
                    .and_then(|bytes| crate::json::parse(&bytes).map_err(|e| e.to_string()));
                match document {
                    Ok(document) => {
                        documents.insert((name.clone(), version), (file.path, document));
                    }
                    Err(reason) => {
                        problems.push(problem(&file.path, "", format!("not JSON: {reason}")))
                    }
                }
            }
        }

        let mut by_urn = HashMap::with_capacity(documents.len());
        let mut dialects = BTreeMap::new();
        for ((name, version), (file, document)) in &mut documents {
            let urn = schema_urn(name, *version);
            let dialect = match Dialect::of(document) {
                Ok(dialect) => dialect,
                Err(declared) => {
                    problems.push(problem(
                        file,
                        "$schema",
                        format!("not one of {}: {:?}", draft::ACCEPTED, excerpt(&declared)),
                    ));
                    continue;
                }
            };
            if let Err(reason) = assign_id(document, name, &urn, dialect) {
                problems.push(problem(file, dialect.id_keyword(), reason));
            }
            dialects.insert((name.clone(), *version), dialect);
            by_urn.insert(urn, resolvable(document, dialect));
        }
        let by_urn = Arc::new(by_urn);
        let mut registry = Registry {
            schemas: BTreeMap::new(),
            documents: by_urn.clone(),
            default_compatibility,
        };
        for (name, settings) in &settings {
            let mut entry = SchemaEntry::new(
                settings.compatibility.unwrap_or(default_compatibility),
                settings.compatibility.is_some(),
            );
            entry.highest_version = settings.highest_version;
            registry.schemas.insert(name.clone(), entry);
        }
        let work: Vec<Work> = documents.into_iter().collect();
        let compiled = compile_all(&work, &dialects, &by_urn, workers);
        for (((name, version), (file, _)), result) in work.into_iter().zip(compiled) {
            match result {
                Compiled::Refused(violations) => {
                    for violation in violations {
                        problems.push(problem(&file, &violation.pointer, violation.message));
                    }
                }
                // Its `$schema` was reported above.
                Compiled::NoDialect => {}
                Compiled::Built(compiled) => {
                    let entry = registry
                        .schemas
                        .entry(name)
                        .or_insert_with(|| SchemaEntry::new(default_compatibility, false));
                    entry.highest_version = entry.highest_version.max(Some(version));
                    entry.versions.insert(version, Arc::new(*compiled));
                }
                Compiled::Invalid { dialect, error } => problems.push(problem(
                    &file,
                    "",
                    format!("not a valid {} schema: {error}", dialect.as_str()),
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
            None => entry.latest().cloned(),
        }
    }

    /// One schema's versions and settings.
    pub fn entry(&self, name: &str) -> Option<&SchemaEntry> {
        self.schemas.get(name)
    }

    /// Every schema by name, sorted.
    pub fn schemas(&self) -> impl Iterator<Item = (&SchemaName, &SchemaEntry)> {
        self.schemas.iter()
    }

    /// Every version's document by URN, for compiling and comparing new versions.
    pub fn documents(&self) -> &Documents {
        &self.documents
    }

    /// The mode of schemas without their own.
    pub fn default_compatibility(&self) -> Compatibility {
        self.default_compatibility
    }

    /// The mode of a schema: its own, or the registry's default for a schema not seen yet.
    pub fn compatibility(&self, name: &str) -> Compatibility {
        self.schemas
            .get(name)
            .map_or(self.default_compatibility, |entry| entry.compatibility)
    }

    /// The number the next version of `name` gets; `None` when numbers are exhausted.
    pub fn next_version(&self, name: &str) -> Option<SchemaVersion> {
        self.schemas
            .get(name)
            .map_or(Some(SchemaVersion::FIRST), SchemaEntry::next_version)
    }

    /// The registered version whose document equals `document` as JSON (key order aside, and
    /// ignoring the `$id` the registry gives a document that has none).
    pub fn identical_version(&self, name: &str, document: &Value) -> Option<SchemaVersion> {
        let entry = self.schemas.get(name)?;
        entry
            .versions
            .values()
            .find_map(|compiled| same_document(document, compiled).then_some(compiled.version))
    }

    /// The registry with one more version. Every other compiled version is shared, not rebuilt:
    /// versions never change once registered, so what they compiled against stays true.
    pub fn with_version(&self, compiled: Arc<CompiledSchema>) -> Registry {
        let mut registry = self.clone();
        let mut documents = HashMap::clone(&self.documents);
        documents.insert(
            schema_urn(&compiled.name, compiled.version),
            resolvable(&compiled.document, compiled.dialect),
        );
        registry.documents = Arc::new(documents);
        let entry = registry
            .schemas
            .entry(compiled.name.clone())
            .or_insert_with(|| SchemaEntry::new(self.default_compatibility, false));
        entry.highest_version = entry.highest_version.max(Some(compiled.version));
        entry.versions.insert(compiled.version, compiled);
        registry
    }

    /// The registry with a schema's mode changed. A schema without versions yet gets an entry
    /// of its own, so the mode applies from its second version on.
    pub fn with_compatibility(&self, name: &SchemaName, mode: Compatibility) -> Registry {
        let mut registry = self.clone();
        let entry = registry
            .schemas
            .entry(name.clone())
            .or_insert_with(|| SchemaEntry::new(self.default_compatibility, false));
        entry.compatibility = mode;
        entry.own_compatibility = true;
        registry
    }

    /// The registry with schema `name` as a store holds it: `settings` (its own mode and the
    /// highest number given out) and exactly the `live` versions, in number order. Versions
    /// already compiled here are shared as they are (a version never changes once
    /// registered); new ones are compiled against the registry as it grows, so a version may
    /// `$ref` an earlier one of the same schema. A version that does not compile (it refers to
    /// a schema this registry does not hold yet) is an error naming it; the caller reads
    /// everything again.
    pub fn with_stored_schema(
        &self,
        name: &SchemaName,
        settings: Settings,
        live: Vec<(SchemaVersion, Value)>,
    ) -> Result<Registry, String> {
        let mut registry = self.clone();
        let kept: std::collections::BTreeSet<SchemaVersion> =
            live.iter().map(|(version, _)| *version).collect();
        if let Some(entry) = self.schemas.get(name.as_str()) {
            let gone: Vec<SchemaVersion> = entry
                .versions
                .keys()
                .filter(|version| !kept.contains(version))
                .copied()
                .collect();
            if !gone.is_empty() {
                let mut documents = HashMap::clone(&registry.documents);
                for version in &gone {
                    documents.remove(&schema_urn(name, *version));
                }
                registry.documents = Arc::new(documents);
                if let Some(entry) = registry.schemas.get_mut(name.as_str()) {
                    entry.versions.retain(|version, _| kept.contains(version));
                }
            }
        }
        for (version, document) in live {
            let known = registry
                .schemas
                .get(name.as_str())
                .is_some_and(|entry| entry.versions.contains_key(&version));
            if known {
                continue;
            }
            let compiled = compile_version(name, version, document, registry.documents(), Lang::En)
                .map_err(|violations| {
                    let first = violations
                        .first()
                        .map_or_else(String::new, |violation| violation.message.clone());
                    format!("{name}@{version} does not compile here: {first}")
                })?;
            registry = registry.with_version(Arc::new(compiled));
        }
        let default = registry.default_compatibility;
        let entry = registry
            .schemas
            .entry(name.clone())
            .or_insert_with(|| SchemaEntry::new(default, false));
        entry.compatibility = settings.compatibility.unwrap_or(default);
        entry.own_compatibility = settings.compatibility.is_some();
        entry.highest_version = entry.highest_version.max(settings.highest_version);
        Ok(registry)
    }

    /// The registry without one version, refused while another version `$ref`s it or the
    /// configuration (`uses`) pins it or follows a schema it is the last version of. The highest
    /// number stays remembered, so the number is not handed out again.
    pub fn without_version(
        &self,
        name: &SchemaName,
        version: SchemaVersion,
        uses: &[SchemaUse],
    ) -> Result<Option<Registry>, Conflict> {
        let Some(entry) = self.schemas.get(name.as_str()) else {
            return Ok(None);
        };
        if !entry.versions.contains_key(&version) {
            return Ok(None);
        }
        let label = format!("{name}@{version}");
        if let Some(referrer) = self
            .schemas
            .values()
            .flat_map(|e| e.versions.values())
            .find(|other| {
                !(other.name == *name && other.version == version)
                    && references::registry_references(&other.document)
                        .contains(&(name.clone(), version))
            })
        {
            return Err(Conflict::ReferencedBy {
                schema: label,
                by: referrer.label(),
            });
        }
        if let Some(pin) = uses.iter().find(|usage| usage.version == Some(version)) {
            return Err(Conflict::PinnedBy {
                schema: label,
                user: pin.user.clone(),
            });
        }
        if entry.versions.len() == 1
            && let Some(follower) = uses.iter().find(|usage| usage.version.is_none())
        {
            return Err(Conflict::LastVersionInUse {
                schema: label,
                user: follower.user.clone(),
            });
        }
        let mut registry = self.clone();
        let mut documents = HashMap::clone(&self.documents);
        documents.remove(&schema_urn(name, version));
        registry.documents = Arc::new(documents);
        if let Some(entry) = registry.schemas.get_mut(name.as_str()) {
            entry.versions.remove(&version);
        }
        Ok(Some(registry))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn compile(registry: &Registry, version: u32, document: Value) -> Arc<CompiledSchema> {
        let name = SchemaName::parse("person").unwrap();
        let version = SchemaVersion::new(version).unwrap();
        Arc::new(compile_version(&name, version, document, registry.documents(), Lang::En).unwrap())
    }

    #[test]
    fn compiling_on_several_threads_gives_the_registry_and_problems_of_one() {
        let file = |folder: &str, name: &str, contents: &str| SchemaFile {
            path: std::path::PathBuf::from(format!("schemas/{folder}/{name}")),
            name: name.to_owned(),
            contents: Ok(contents.as_bytes().to_vec()),
        };
        let folders = || -> Vec<SchemaFolder> {
            (0..12)
                .map(|n| {
                    let folder = format!("s{n:02}");
                    let mut files = vec![
                        file(
                            &folder,
                            "1.json",
                            &format!(r#"{{"type": "object", "minProperties": {n}}}"#),
                        ),
                        file(
                            &folder,
                            "2.json",
                            &format!(r#"{{"$ref": "urn:xgate:schema:s{:02}:1"}}"#, (n + 1) % 12),
                        ),
                    ];
                    if n % 5 == 0 {
                        files.push(file(&folder, "3.json", r#"{"type": 12}"#));
                    }
                    SchemaFolder {
                        path: std::path::PathBuf::from(format!("schemas/{folder}")),
                        name: folder,
                        files: Some(files),
                    }
                })
                .collect()
        };
        let assembled = |workers| {
            let mut problems = Vec::new();
            let registry =
                Registry::assemble(folders(), Compatibility::Backward, &mut problems, workers);
            let versions: Vec<(String, Vec<u32>)> = registry
                .schemas()
                .map(|(name, entry)| {
                    (
                        name.to_string(),
                        entry.versions.keys().map(|v| v.get()).collect(),
                    )
                })
                .collect();
            let problems: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            (versions, problems)
        };
        let one = assembled(1);
        assert_eq!(one.0.len(), 12);
        assert_eq!(one.1.len(), 3, "{:?}", one.1);
        assert!(
            one.0.iter().all(|(_, versions)| versions == &[1, 2]),
            "{:?}",
            one.0
        );
        for workers in [2, 3, 4, 64] {
            assert_eq!(assembled(workers), one, "{workers} workers");
        }
    }

    #[test]
    fn a_stored_schema_replaces_the_versions_and_settings_sharing_what_was_compiled() {
        let name = SchemaName::parse("person").unwrap();
        let v = |number| SchemaVersion::new(number).unwrap();
        let empty = Registry::empty(Compatibility::Backward);
        let first = empty.with_version(compile(&empty, 1, json!({"type": "object"})));
        let kept = first.get("person", Some(v(1))).unwrap();
        let settings = Settings {
            compatibility: Some(Compatibility::None),
            highest_version: Some(v(4)),
        };
        let synced = first
            .with_stored_schema(
                &name,
                settings,
                vec![
                    (v(1), json!({"type": "object"})),
                    (v(3), json!({"$ref": "urn:xgate:schema:person:1"})),
                ],
            )
            .unwrap();
        let entry = synced.entry("person").unwrap();
        assert_eq!(
            entry.versions.keys().copied().collect::<Vec<_>>(),
            [v(1), v(3)]
        );
        assert!(Arc::ptr_eq(&kept, &entry.versions[&v(1)]));
        assert_eq!(entry.settings(), settings);
        assert!(
            synced
                .get("person", Some(v(3)))
                .unwrap()
                .is_valid(&json!({}))
        );
        // Version 1 deleted in the store: gone here, its number still remembered.
        let deleted = synced
            .with_stored_schema(&name, settings, vec![(v(3), json!({"type": "string"}))])
            .unwrap();
        let entry = deleted.entry("person").unwrap();
        assert_eq!(entry.versions.keys().copied().collect::<Vec<_>>(), [v(3)]);
        assert!(
            !deleted
                .documents()
                .contains_key("urn:xgate:schema:person:1")
        );
        assert_eq!(entry.next_version(), Some(v(5)));
        // A reference to a version this registry lacks: an error, nothing half-applied.
        let missing = empty.with_stored_schema(
            &name,
            Settings::default(),
            vec![(v(2), json!({"$ref": "urn:xgate:schema:other:1"}))],
        );
        assert!(missing.unwrap_err().contains("person@2"));
    }

    #[test]
    fn a_new_version_shares_every_compiled_version_and_leaves_the_old_registry_alone() {
        let empty = Registry::empty(Compatibility::None);
        let first = empty.with_version(compile(&empty, 1, json!({"type": "object"})));
        let second = first.with_version(compile(
            &first,
            2,
            json!({"type": "object", "required": ["a"]}),
        ));
        let version_1 = SchemaVersion::new(1);
        assert!(Arc::ptr_eq(
            &first.get("person", version_1).unwrap(),
            &second.get("person", version_1).unwrap()
        ));
        assert_eq!(second.get("person", None).unwrap().version.get(), 2);
        assert!(first.get("person", SchemaVersion::new(2)).is_none());
        assert_eq!(second.next_version("person"), SchemaVersion::new(3));
        assert_eq!(second.next_version("nobody"), Some(SchemaVersion::FIRST));
    }

    #[test]
    fn equal_documents_are_found_whatever_their_key_order_and_given_id() {
        let empty = Registry::empty(Compatibility::None);
        let registry = empty.with_version(compile(
            &empty,
            1,
            json!({"type": "object", "minProperties": 1}),
        ));
        let same = json!({"minProperties": 1, "type": "object"});
        assert_eq!(
            registry.identical_version("person", &same),
            SchemaVersion::new(1)
        );
        let with_id =
            json!({"$id": "urn:xgate:schema:person:1", "minProperties": 1, "type": "object"});
        assert_eq!(
            registry.identical_version("person", &with_id),
            SchemaVersion::new(1)
        );
        let other = json!({"type": "object", "minProperties": 2});
        assert_eq!(registry.identical_version("person", &other), None);
    }

    #[test]
    fn a_pattern_built_to_backtrack_is_cut_off_by_the_limit_as_a_violation() {
        let empty = Registry::empty(Compatibility::None);
        // The look-ahead keeps the nested quantifier on fancy-regex's backtracking engine, where
        // a string of `a`s without the final `b` takes exponentially many steps.
        let evil = compile(
            &empty,
            1,
            json!({"type": "string", "pattern": "^((?=a)a+)+b$"}),
        );
        let attack = Value::String(format!("{}!", "a".repeat(64)));
        let violations = evil.validate(&attack, Lang::En);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].keyword, "pattern");
        assert!(
            violations[0].message.contains("backtracking limit"),
            "{}",
            violations[0].message
        );
        assert!(!evil.validate(&attack, Lang::Zh)[0].message.is_empty());
        assert!(evil.is_valid(&json!("aab")));
    }

    const DRAFT_07: &str = "http://json-schema.org/draft-07/schema#";

    #[test]
    fn a_reference_into_another_draft_is_read_by_that_draft() {
        let empty = Registry::empty(Compatibility::None);
        // `dependencies` asserts in draft-07 and is an unknown keyword in 2020-12;
        // `dependentRequired` the reverse.
        let old = empty.with_version(compile(
            &empty,
            1,
            json!({"$schema": DRAFT_07, "dependencies": {"a": ["b"]}}),
        ));
        let new = old.with_version(compile(&old, 2, json!({"dependentRequired": {"c": ["d"]}})));
        let from_2020_12 = compile(&new, 3, json!({"$ref": "urn:xgate:schema:person:1"}));
        assert!(!from_2020_12.is_valid(&json!({"a": 1})));
        assert!(from_2020_12.is_valid(&json!({"c": 1})));
        let from_draft_7 = compile(
            &new,
            4,
            json!({"$schema": DRAFT_07, "$ref": "urn:xgate:schema:person:2"}),
        );
        assert!(!from_draft_7.is_valid(&json!({"c": 1})));
        assert!(from_draft_7.is_valid(&json!({"a": 1})));
    }

    #[test]
    fn draft_4_exclusive_limits_are_exact_and_exclusive() {
        let empty = Registry::empty(Compatibility::None);
        let draft_4 = compile(
            &empty,
            1,
            json!({
                "$schema": "http://json-schema.org/draft-04/schema#",
                "maximum": 10, "exclusiveMaximum": true, "minimum": 1, "exclusiveMinimum": false
            }),
        );
        assert!(!draft_4.is_valid(&json!(10)));
        assert!(draft_4.is_valid(&crate::json::parse(b"9.99999999999999999999").unwrap()));
        assert!(draft_4.is_valid(&json!(1)));
        assert!(!draft_4.is_valid(&json!(0.5)));
    }

    #[test]
    fn an_own_urn_of_another_version_becomes_the_new_versions_urn() {
        let empty = Registry::empty(Compatibility::None);
        let first = empty.with_version(compile(&empty, 1, json!({"type": "object"})));
        let served = first
            .get("person", SchemaVersion::new(1))
            .unwrap()
            .document
            .clone();
        assert_eq!(served["$id"], "urn:xgate:schema:person:1");
        assert_eq!(
            first.identical_version("person", &served),
            SchemaVersion::new(1)
        );
        let mut edited = served;
        edited["minProperties"] = json!(1);
        let second = compile(&first, 2, edited.clone());
        assert_eq!(second.document["$id"], "urn:xgate:schema:person:2");
        let registry = first.with_version(second);
        // The edited document, still naming version 1, is version 2 now.
        assert_eq!(
            registry.identical_version("person", &edited),
            SchemaVersion::new(2)
        );
        let name = SchemaName::parse("person").unwrap();
        let other = json!({"$id": "urn:xgate:schema:personal:1"});
        assert!(
            compile_version(
                &name,
                SchemaVersion::FIRST,
                other,
                registry.documents(),
                Lang::En
            )
            .is_err()
        );
    }

    #[test]
    fn deleted_numbers_are_not_handed_out_again() {
        let empty = Registry::empty(Compatibility::None);
        let registry = empty.with_version(compile(&empty, 1, json!({"type": "object"})));
        let registry = registry.with_version(compile(&registry, 2, json!({"type": "string"})));
        let name = SchemaName::parse("person").unwrap();
        let version_2 = SchemaVersion::new(2).unwrap();
        let without = registry
            .without_version(&name, version_2, &[])
            .unwrap()
            .unwrap();
        assert_eq!(without.next_version("person"), SchemaVersion::new(3));
        assert_eq!(
            without.entry("person").unwrap().settings().highest_version,
            Some(version_2)
        );
        let pinned = [SchemaUse {
            user: "service a/b".to_owned(),
            version: Some(version_2),
        }];
        assert!(matches!(
            registry.without_version(&name, version_2, &pinned),
            Err(Conflict::PinnedBy { .. })
        ));
    }
}
