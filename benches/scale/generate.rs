//! A generated deployment of any size, in the layout `xgate::config::load` reads: `config/xgate.toml`,
//! one `config/departments/<id>.toml` per department, and `schemas/<name>/<version>.json` (with a
//! `settings.toml` where a schema's mode is not the default). Used by `benches/scale.rs` (SPEC
//! §12's 1,000 departments, 10,000 services, 5,000 schema versions) and, small, by the
//! integration tests (`tests/it/scale.rs`), which check that it loads.
//!
//! Everything is a pure function of the [`Deployment`] (no randomness), so two runs measure the
//! same files. The schemas are realistic: objects of 12 to 20 properties with formats
//! (`cn-uscc`, `cn-resident-id`, `date`, `date-time`, `email`), patterns, enums, bounds, a nested
//! object and an array, and each next version is compatible with its schema's mode
//! ([`mode_of`]): `backward` versions add optional properties, `forward` ones require more of
//! them, `full` ones change only annotations, `none` ones rename a property. The parts are
//! public one by one ([`schema_document`], [`settings_file`], [`department_file`],
//! [`main_file`]) so that a deployment whose schemas live in the database can be built from the
//! same pieces.

#![allow(dead_code)] // Each user (the bench, the tests) uses part of it.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The size of a generated deployment.
#[derive(Debug, Clone, Copy)]
pub struct Deployment {
    /// Departments, two of which (the last) are an auditor and an admin providing no services.
    pub departments: usize,
    /// Services, spread evenly over the providing departments.
    pub services: usize,
    /// Schemas.
    pub schemas: usize,
    /// Versions of each schema (1, 2, ...).
    pub versions_per_schema: u32,
}

impl Deployment {
    /// SPEC §12's scale target: 1,000 departments, 10,000 services, 1,000 schemas × 5 versions.
    pub const TARGET: Deployment = Deployment {
        departments: 1_000,
        services: 10_000,
        schemas: 1_000,
        versions_per_schema: 5,
    };

    /// Every schema version there is.
    pub fn versions(&self) -> usize {
        self.schemas * self.versions_per_schema as usize
    }

    /// The departments that provide services (all but the auditor and the admin).
    pub fn providers(&self) -> usize {
        self.departments.saturating_sub(2).max(1)
    }
}

/// What [`write`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The main file, for `config::load`.
    pub main: PathBuf,
    /// Bytes written, all files together.
    pub bytes: u64,
}

/// The id of department `index`.
pub fn department_id(index: usize) -> String {
    format!("dept-{index:04}")
}

/// The bearer token of department `index` (its SHA-256 is in its file).
pub fn department_token(index: usize) -> String {
    format!("token-{}", department_id(index))
}

/// The name of schema `index`.
pub fn schema_name(index: usize) -> String {
    format!("record-{index:04}")
}

/// The compatibility mode of schema `index`: seven in ten `backward` (the default), one each
/// `forward`, `full` and `none`.
pub fn mode_of(index: usize) -> &'static str {
    match index % 10 {
        7 => "forward",
        8 => "full",
        9 => "none",
        _ => "backward",
    }
}

/// The kinds of property a schema is made of, cycled through: what government records hold.
const KINDS: [&str; 16] = [
    "uscc", "name", "date", "amount", "status", "phone", "address", "resident", "datetime",
    "count", "code", "flag", "email", "postcode", "persons", "text",
];

/// The property of kind `KINDS[position % 16]` at `position` of a schema.
fn property_name(position: usize) -> String {
    format!("{}_{position:02}", KINDS[position % KINDS.len()])
}

/// The JSON Schema of the property at `position` of schema `schema`.
fn property_schema(schema: usize, position: usize, description: &str) -> Value {
    let kind = KINDS[position % KINDS.len()];
    let mut property = match kind {
        "uscc" => json!({"type": "string", "format": "cn-uscc"}),
        "name" => json!({"type": "string", "minLength": 1, "maxLength": 100}),
        "date" => json!({"type": "string", "format": "date"}),
        "amount" => json!({"type": "number", "minimum": 0, "maximum": 1_000_000_000_000u64}),
        "status" => json!({"enum": ["active", "suspended", "revoked", "cancelled"]}),
        "phone" => json!({"type": "string", "pattern": "^1[3-9][0-9]{9}$"}),
        "address" => json!({"type": "string", "minLength": 1, "maxLength": 200}),
        "resident" => json!({"type": "string", "format": "cn-resident-id"}),
        "datetime" => json!({"type": "string", "format": "date-time"}),
        "count" => json!({"type": "integer", "minimum": 0, "maximum": 100_000}),
        "code" => json!({"type": "string", "pattern": "^[0-9]{6}$"}),
        "flag" => json!({"type": "boolean"}),
        "email" => json!({"type": "string", "format": "email", "maxLength": 254}),
        "postcode" => json!({"type": "string", "pattern": "^[1-9][0-9]{5}$"}),
        "persons" => json!({
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["name", "resident_id"],
                "additionalProperties": false,
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 50},
                    "resident_id": {"type": "string", "format": "cn-resident-id"},
                    "share_percent": {"type": "number", "minimum": 0, "maximum": 100}
                }
            }
        }),
        _ => json!({"type": "string", "maxLength": 2000 + (schema % 7) * 100}),
    };
    property["description"] = Value::String(description.to_owned());
    property
}

/// The property positions of `version` of a schema in `mode`, and how many of them (the first
/// ones) are required.
fn layout(mode: &str, version: u32) -> (Vec<usize>, usize) {
    let step = (version - 1) as usize;
    match mode {
        // Two optional properties more in each version: every earlier record stays valid.
        "backward" => ((0..12 + 2 * step).collect(), 8),
        // Two more of the same properties required in each version: every new record was valid.
        "forward" => ((0..20).collect(), 8 + 2 * step),
        // The same records in each version; only the descriptions change.
        "full" => ((0..16).collect(), 10),
        // One property renamed in each version (positions 100, 101, ...: new names).
        _ => {
            let mut positions: Vec<usize> = (0..14).collect();
            for (renamed, position) in (2..2 + step).enumerate() {
                positions[position] = 100 + renamed * 16 + position;
            }
            (positions, 8)
        }
    }
}

/// Version `version` (from 1) of schema `schema`.
pub fn schema_document(schema: usize, version: u32) -> Value {
    let name = schema_name(schema);
    let mode = mode_of(schema);
    let (positions, required) = layout(mode, version);
    let mut properties = Map::new();
    for &position in &positions {
        let description = if mode == "full" {
            format!("Field {position} of {name}, as revised in version {version}. 字段{position}")
        } else {
            format!("Field {position} of {name}. 字段{position}")
        };
        properties.insert(
            property_name(position),
            property_schema(schema, position, &description),
        );
    }
    let required: Vec<String> = positions[..required]
        .iter()
        .map(|&position| property_name(position))
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("Record {schema} (version {version})"),
        "description": format!("A generated shared record in mode {mode}. 生成的共享数据标准"),
        "type": "object",
        "required": required,
        "additionalProperties": false,
        "properties": properties,
    })
}

/// The names of the properties of the latest version of `schema`, in order.
pub fn latest_properties(deployment: &Deployment, schema: usize) -> Vec<String> {
    let (positions, _) = layout(mode_of(schema), deployment.versions_per_schema);
    positions.into_iter().map(property_name).collect()
}

/// The `settings.toml` of schema `index`: for every schema not in the default mode, and for
/// every fifth one in it (a mode written down although it is the default).
pub fn settings_file(index: usize) -> Option<String> {
    let mode = mode_of(index);
    (mode != "backward" || index.is_multiple_of(5)).then(|| format!("compatibility = \"{mode}\"\n"))
}

/// `config/xgate.toml`: port 0 everywhere, schemas in `../schemas`.
pub fn main_file() -> String {
    "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndrain_delay_ms = 0\n\n\
     [registry]\ndir = \"../schemas\"\ndefault_compatibility = \"backward\"\n"
        .to_owned()
}

/// The department that provides service `index`.
pub fn provider_of(deployment: &Deployment, service: usize) -> usize {
    service % deployment.providers()
}

/// The schema service `index` uses (request or response).
fn schema_of(deployment: &Deployment, service: usize) -> usize {
    (service * 7 + service / deployment.schemas.max(1)) % deployment.schemas.max(1)
}

/// The consumers of service `index`: three to six other providing departments.
fn consumers_of(deployment: &Deployment, service: usize) -> Vec<String> {
    let provider = provider_of(deployment, service);
    let providers = deployment.providers();
    let mut consumers: Vec<usize> = Vec::new();
    for step in 0..3 + service % 4 {
        let consumer = (provider + 1 + step * 7 + service % 13) % providers;
        if consumer != provider && !consumers.contains(&consumer) {
            consumers.push(consumer);
        }
    }
    if consumers.is_empty() {
        consumers.push(provider);
    }
    consumers.into_iter().map(department_id).collect()
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    // serde_json's string escaping is valid TOML basic-string escaping for these texts.
    Value::String(text.to_owned()).to_string()
}

/// A TOML array of strings.
fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| toml_string(item)).collect();
    format!("[{}]", quoted.join(", "))
}

/// One service's section: a third with only a response schema, a third with a request and a
/// response schema, a third a plain proxy; every twentieth pins the version; every
/// twenty-fifth with a schema projects the response for its first consumer.
fn service_section(deployment: &Deployment, service: usize, out: &mut String) {
    let provider = provider_of(deployment, service);
    let consumers = consumers_of(deployment, service);
    let schema = schema_of(deployment, service);
    out.push_str(&format!(
        "\n# Generated service {service}.\n[services.service-{service:05}]\n"
    ));
    out.push_str(&format!(
        "upstream = \"http://10.{}.{}.1:8080/service-{service:05}\"\n",
        provider / 250,
        provider % 250 + 1
    ));
    let methods: &[&str] = match service % 3 {
        0 => &["GET"],
        1 => &["POST"],
        _ => &["GET", "POST", "PUT"],
    };
    let methods: Vec<String> = methods.iter().map(|method| (*method).to_owned()).collect();
    out.push_str(&format!("methods = {}\n", list(&methods)));
    let reference = if service.is_multiple_of(20) {
        format!("{}@1", schema_name(schema))
    } else {
        schema_name(schema)
    };
    let with_schema = service % 3 != 2;
    if with_schema {
        if service % 3 == 1 {
            out.push_str(&format!("request_schema = {}\n", toml_string(&reference)));
        }
        out.push_str(&format!("response_schema = {}\n", toml_string(&reference)));
    }
    out.push_str(&format!("consumers = {}\n", list(&consumers)));
    if with_schema && service.is_multiple_of(25) {
        let fields = vec![
            format!("/{}", property_name(0)),
            format!("/{}", property_name(1)),
        ];
        out.push_str(&format!(
            "\n[services.service-{service:05}.fields]\n{} = {}\n",
            consumers[0],
            list(&fields)
        ));
    }
}

/// One rule of a format, for the property at `position` of the latest version.
fn format_rule(shared: &str) -> String {
    let own = format!("/{}", shared.to_uppercase());
    let kind = shared.rsplit_once('_').map_or(shared, |(kind, _)| kind);
    match kind {
        "date" => {
            format!("{{ own = \"{own}\", shared = \"/{shared}\", convert = \"date:%Y%m%d\" }}")
        }
        "datetime" => format!(
            "{{ own = \"{own}\", shared = \"/{shared}\", convert = \"datetime:%Y%m%d%H%M%S@+08:00\" }}"
        ),
        "amount" => {
            format!("{{ own = \"{own}\", shared = \"/{shared}\", convert = \"scale:10000\" }}")
        }
        "count" => format!("{{ own = \"{own}\", shared = \"/{shared}\", convert = \"number\" }}"),
        "flag" => {
            format!("{{ own = \"{own}\", shared = \"/{shared}\", convert = \"boolean:是/否\" }}")
        }
        "status" => format!(
            "{{ own = \"{own}\", shared = \"/{shared}\", codes = {{ \"1\" = \"active\", \"2\" = \"suspended\", \"3\" = \"revoked\", \"4\" = \"cancelled\" }} }}"
        ),
        "persons" => format!(
            "{{ own = \"{own}/*/XM\", shared = \"/{shared}/*/name\" }},\n  {{ own = \"{own}/*/ZJHM\", shared = \"/{shared}/*/resident_id\" }},\n  {{ own = \"{own}/*/CZBL\", shared = \"/{shared}/*/share_percent\", convert = \"number\" }}"
        ),
        _ => format!("{{ own = \"{own}\", shared = \"/{shared}\" }}"),
    }
}

/// Department `index`'s file: its services, and formats (its own layouts) for up to three of
/// the schemas its services use.
pub fn department_file(deployment: &Deployment, index: usize) -> String {
    let id = department_id(index);
    let role = if index + 1 == deployment.departments && deployment.departments > 2 {
        "admin"
    } else if index + 2 == deployment.departments && deployment.departments > 2 {
        "auditor"
    } else {
        "department"
    };
    let digest = hex::encode(Sha256::digest(department_token(index).as_bytes()));
    let mut out = format!(
        "# Generated department {index}.\nid = \"{id}\"\nname = \"Department {index} 部门{index}\"\n\
         role = \"{role}\"\ntoken_sha256 = [\"{digest}\"]\ncert_subjects = [\"CN={id}\"]\n"
    );
    if role != "department" {
        return out;
    }
    let providers = deployment.providers();
    let mut schemas_used: Vec<usize> = Vec::new();
    for service in (index..deployment.services).step_by(providers) {
        service_section(deployment, service, &mut out);
        let schema = schema_of(deployment, service);
        if service % 3 != 2 && !schemas_used.contains(&schema) {
            schemas_used.push(schema);
        }
    }
    for (nth, &schema) in schemas_used.iter().take(3).enumerate() {
        let unmapped = if nth % 2 == 0 { "reject" } else { "drop" };
        let rules: Vec<String> = latest_properties(deployment, schema)
            .iter()
            .map(|shared| format_rule(shared))
            .collect();
        out.push_str(&format!(
            "\n[formats.{}]\nunmapped = \"{unmapped}\"\nfields = [\n  {},\n]\n",
            schema_name(schema),
            rules.join(",\n  ")
        ));
    }
    out
}

/// Writes the deployment under `root` (`root/config`, `root/schemas`).
pub fn write(root: &Path, deployment: &Deployment) -> std::io::Result<Written> {
    let config = root.join("config");
    let departments = config.join("departments");
    let schemas = root.join("schemas");
    std::fs::create_dir_all(&departments)?;
    std::fs::create_dir_all(&schemas)?;
    let mut bytes = 0u64;
    let mut put = |path: PathBuf, text: String| -> std::io::Result<()> {
        bytes += text.len() as u64;
        std::fs::write(path, text)
    };
    let main = config.join("xgate.toml");
    put(main.clone(), main_file())?;
    for index in 0..deployment.departments {
        put(
            departments.join(format!("{}.toml", department_id(index))),
            department_file(deployment, index),
        )?;
    }
    for schema in 0..deployment.schemas {
        let folder = schemas.join(schema_name(schema));
        std::fs::create_dir_all(&folder)?;
        for version in 1..=deployment.versions_per_schema {
            let document = serde_json::to_string_pretty(&schema_document(schema, version))?;
            put(folder.join(format!("{version}.json")), document)?;
        }
        if let Some(settings) = settings_file(schema) {
            put(folder.join("settings.toml"), settings)?;
        }
    }
    Ok(Written { main, bytes })
}
