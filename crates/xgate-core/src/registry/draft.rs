//! The drafts a registered document may be written in (SPEC §6), and the faithful conversion of a
//! draft-04, -06 or -07 document to draft 2020-12, the form the compatibility check compares.
//!
//! Pure: documents in, documents out. The registry keeps (and serves) a document as submitted and
//! validates records by its own draft; only the comparison between versions reads the converted
//! form. What the conversion does, rule by rule:
//! - `definitions` → `$defs`, and `$ref` pointers through it (`#/definitions/a` → `#/$defs/a`);
//!   a `$defs` (no keyword before 2019-09, but reachable by pointer) is converted alike;
//! - array-form `items` → `prefixItems`, with `additionalItems` → `items`; `additionalItems` is
//!   dropped where `items` is a schema or absent (it is ignored there);
//! - `dependencies` → `dependentRequired` (array values) and `dependentSchemas` (schemas);
//! - draft-04 `id` → `$id`; an `$id` (or `id`) with a plain-name fragment → `$anchor` (and an
//!   `$id` of the part before the `#`, if any);
//! - draft-04 boolean `exclusiveMaximum`/`exclusiveMinimum` → the numeric forms;
//! - a `$ref` with siblings keeps only the `$ref` (its siblings are ignored in these drafts), and
//!   its `definitions` as `$defs`, since pointers may still lead into them;
//! - keywords the document's draft does not know but 2020-12 does (`prefixItems`, `if`, `const`
//!   in draft-04, ...) are dropped: they assert nothing under the document's own draft;
//! - `$schema` names draft 2020-12.
//!
//! Refused by [`to_2020_12`] (the version is then never proven compatible): an object with both
//! `definitions` and `$defs`, and a `$ref` pointer through a keyword not read as schemas.
//!
//! Not converted (documented in docs/registry.md): a `$ref` pointer that leads into a sibling of another
//! `$ref` (other than its `definitions`), which the conversion drops; a `$ref` to an older
//! draft's meta-schema (`http://json-schema.org/draft-07/schema#`), which a 2020-12 schema
//! cannot reach. The compatibility check then cannot compare the version (it is refused as
//! unproven, never passed); records are still validated by the document's own draft.

use serde_json::{Map, Value};

use crate::registry::DRAFT_2020_12;

/// A draft the registry accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Draft 4 (`http://json-schema.org/draft-04/schema#`).
    Draft4,
    /// Draft 6.
    Draft6,
    /// Draft 7.
    Draft7,
    /// Draft 2020-12, also when `$schema` is absent.
    Draft202012,
}

/// The drafts accepted, as named in messages.
pub const ACCEPTED: &str = "draft 2020-12 (https://json-schema.org/draft/2020-12/schema), draft-07, draft-06 or draft-04 (http://json-schema.org/draft-0N/schema#)";

impl Dialect {
    /// The dialect a document declares in `$schema` (2020-12 when absent); `Err` with the
    /// declared value when it is not one the registry accepts.
    pub fn of(document: &Value) -> Result<Dialect, String> {
        let Some(declared) = document.get("$schema") else {
            return Ok(Dialect::Draft202012);
        };
        let Some(uri) = declared.as_str() else {
            return Err(declared.to_string());
        };
        match jsonschema::Draft::from_schema_uri(uri) {
            jsonschema::Draft::Draft4 => Ok(Dialect::Draft4),
            jsonschema::Draft::Draft6 => Ok(Dialect::Draft6),
            jsonschema::Draft::Draft7 => Ok(Dialect::Draft7),
            jsonschema::Draft::Draft202012 => Ok(Dialect::Draft202012),
            _ => Err(uri.to_owned()),
        }
    }

    /// The `jsonschema` crate's name of the draft.
    pub fn draft(self) -> jsonschema::Draft {
        match self {
            Dialect::Draft4 => jsonschema::Draft::Draft4,
            Dialect::Draft6 => jsonschema::Draft::Draft6,
            Dialect::Draft7 => jsonschema::Draft::Draft7,
            Dialect::Draft202012 => jsonschema::Draft::Draft202012,
        }
    }

    /// The draft's name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Draft4 => "draft-04",
            Dialect::Draft6 => "draft-06",
            Dialect::Draft7 => "draft-07",
            Dialect::Draft202012 => "draft 2020-12",
        }
    }

    /// The keyword that gives a schema its identifier: `id` in draft-04, `$id` after.
    pub fn id_keyword(self) -> &'static str {
        match self {
            Dialect::Draft4 => "id",
            _ => "$id",
        }
    }

    /// The draft's meta-schema validator.
    pub fn meta_validator(self) -> jsonschema::meta::MetaValidator<'static> {
        match self {
            Dialect::Draft4 => jsonschema::draft4::meta::validator(),
            Dialect::Draft6 => jsonschema::draft6::meta::validator(),
            Dialect::Draft7 => jsonschema::draft7::meta::validator(),
            Dialect::Draft202012 => jsonschema::draft202012::meta::validator(),
        }
    }

    /// Whether the draft knows `keyword` as an assertion or applicator (the 2020-12 keywords an
    /// older draft lacks are dropped by the conversion).
    fn knows(self, keyword: &str) -> bool {
        const NEWER_THAN_7: &[&str] = &[
            "prefixItems",
            "unevaluatedItems",
            "unevaluatedProperties",
            "dependentRequired",
            "dependentSchemas",
            "minContains",
            "maxContains",
            "$anchor",
            "$dynamicRef",
            "$dynamicAnchor",
            "$recursiveRef",
            "$recursiveAnchor",
            "$vocabulary",
        ];
        const NEWER_THAN_6: &[&str] = &["if", "then", "else"];
        const NEWER_THAN_4: &[&str] = &["const", "contains", "propertyNames", "$id"];
        let newer = NEWER_THAN_7.contains(&keyword);
        match self {
            Dialect::Draft202012 => true,
            Dialect::Draft7 => !newer,
            Dialect::Draft6 => !newer && !NEWER_THAN_6.contains(&keyword),
            Dialect::Draft4 => {
                !newer && !NEWER_THAN_6.contains(&keyword) && !NEWER_THAN_4.contains(&keyword)
            }
        }
    }
}

/// `document` in draft 2020-12, accepting exactly what `document` accepts under `dialect`
/// (see the module's rules). A 2020-12 document comes back as it is.
///
/// Refused (`Err`, with the reason) where the rules cannot keep that promise: an object with
/// both `definitions` and `$defs` (pointers into either could not both be rewritten), or a
/// `$ref` whose pointer runs through a keyword the conversion does not read as schemas (the
/// subschema it reaches stays in the older draft's syntax). A version whose conversion is
/// refused is never proven compatible (`registry::compatibility` answers `unproven`).
pub fn to_2020_12(document: &Value, dialect: Dialect) -> Result<Value, String> {
    if dialect == Dialect::Draft202012 {
        return Ok(document.clone());
    }
    let mut unfaithful = None;
    let converted = convert_schema(document, dialect, &mut unfaithful);
    match unfaithful {
        None => Ok(converted),
        Some(reason) => Err(reason),
    }
}

/// Notes the first reason a conversion is not faithful.
fn note(unfaithful: &mut Option<String>, reason: impl FnOnce() -> String) {
    if unfaithful.is_none() {
        *unfaithful = Some(reason());
    }
}

/// Converts one schema (an object or a boolean) and everything under it.
fn convert_schema(schema: &Value, dialect: Dialect, unfaithful: &mut Option<String>) -> Value {
    let Value::Object(object) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    if let Some(reference) = object.get("$ref") {
        // Siblings of `$ref` are ignored in drafts up to 7: only the reference counts, but its
        // `definitions` (or `$defs`) stay reachable by pointer.
        out.insert("$ref".to_owned(), convert_reference(reference, unfaithful));
        if object.contains_key("$schema") {
            out.insert(
                "$schema".to_owned(),
                Value::String(DRAFT_2020_12.to_owned()),
            );
        }
        match (object.get("definitions"), object.get("$defs")) {
            (Some(_), Some(_)) => note(unfaithful, || {
                "an object holds both `definitions` and `$defs`".to_owned()
            }),
            (Some(definitions), None) | (None, Some(definitions)) => {
                out.insert(
                    "$defs".to_owned(),
                    convert_map(definitions, dialect, unfaithful),
                );
            }
            (None, None) => {}
        }
        return Value::Object(out);
    }
    for (keyword, value) in object {
        match keyword.as_str() {
            "$schema" => {
                out.insert(keyword.clone(), Value::String(DRAFT_2020_12.to_owned()));
            }
            "id" if dialect == Dialect::Draft4 => convert_id(value, &mut out),
            "$id" if dialect != Dialect::Draft4 => convert_id(value, &mut out),
            "definitions" if object.contains_key("$defs") => {
                note(unfaithful, || {
                    "an object holds both `definitions` and `$defs`".to_owned()
                });
                out.insert(keyword.clone(), convert_map(value, dialect, unfaithful));
            }
            // `$defs` is no keyword before 2019-09, but a `$ref` may point into it: its schemas
            // are read by the document's draft, so they are converted like `definitions`.
            "definitions" | "$defs" => {
                out.insert("$defs".to_owned(), convert_map(value, dialect, unfaithful));
            }
            "properties" | "patternProperties" => {
                out.insert(keyword.clone(), convert_map(value, dialect, unfaithful));
            }
            "items" => match value {
                Value::Array(items) => {
                    out.insert(
                        "prefixItems".to_owned(),
                        Value::Array(
                            items
                                .iter()
                                .map(|s| convert_schema(s, dialect, unfaithful))
                                .collect(),
                        ),
                    );
                    if let Some(additional) = object.get("additionalItems") {
                        out.insert(
                            "items".to_owned(),
                            convert_schema(additional, dialect, unfaithful),
                        );
                    }
                }
                schema => {
                    out.insert(keyword.clone(), convert_schema(schema, dialect, unfaithful));
                }
            },
            // Only meaningful beside an array `items` (handled there), ignored otherwise.
            "additionalItems" => {}
            "dependencies" => convert_dependencies(value, dialect, &mut out, unfaithful),
            "exclusiveMaximum" | "exclusiveMinimum" if value.is_boolean() => {}
            "maximum" | "minimum" if dialect == Dialect::Draft4 => {
                let exclusive = if keyword == "maximum" {
                    "exclusiveMaximum"
                } else {
                    "exclusiveMinimum"
                };
                let name = if object.get(exclusive) == Some(&Value::Bool(true)) {
                    exclusive
                } else {
                    keyword.as_str()
                };
                out.insert(name.to_owned(), value.clone());
            }
            "additionalProperties"
            | "not"
            | "contains"
            | "propertyNames"
            | "if"
            | "then"
            | "else"
                if dialect.knows(keyword) =>
            {
                out.insert(keyword.clone(), convert_schema(value, dialect, unfaithful));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let converted = match value {
                    Value::Array(items) => Value::Array(
                        items
                            .iter()
                            .map(|s| convert_schema(s, dialect, unfaithful))
                            .collect(),
                    ),
                    other => other.clone(),
                };
                out.insert(keyword.clone(), converted);
            }
            keyword if !dialect.knows(keyword) => {}
            _ => {
                out.insert(keyword.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

/// Converts each schema of a keyword whose value maps names to schemas.
fn convert_map(value: &Value, dialect: Dialect, unfaithful: &mut Option<String>) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, schema)| (name.clone(), convert_schema(schema, dialect, unfaithful)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `dependencies` split into `dependentRequired` (array values) and `dependentSchemas`.
fn convert_dependencies(
    value: &Value,
    dialect: Dialect,
    out: &mut Map<String, Value>,
    unfaithful: &mut Option<String>,
) {
    let Value::Object(dependencies) = value else {
        return;
    };
    let mut required = Map::new();
    let mut schemas = Map::new();
    for (name, dependency) in dependencies {
        if dependency.is_array() {
            required.insert(name.clone(), dependency.clone());
        } else {
            schemas.insert(
                name.clone(),
                convert_schema(dependency, dialect, unfaithful),
            );
        }
    }
    if !required.is_empty() {
        out.insert("dependentRequired".to_owned(), Value::Object(required));
    }
    if !schemas.is_empty() {
        out.insert("dependentSchemas".to_owned(), Value::Object(schemas));
    }
}

/// An identifier (`$id`, draft-04 `id`): a plain-name fragment becomes an `$anchor`, the part
/// before it (if any) the `$id`; an empty fragment is dropped.
fn convert_id(value: &Value, out: &mut Map<String, Value>) {
    let Value::String(id) = value else {
        out.insert("$id".to_owned(), value.clone());
        return;
    };
    match id.split_once('#') {
        Some((base, fragment)) => {
            if !base.is_empty() {
                out.insert("$id".to_owned(), Value::String(base.to_owned()));
            }
            if !fragment.is_empty() && !fragment.starts_with('/') {
                out.insert("$anchor".to_owned(), Value::String(fragment.to_owned()));
            }
        }
        None => {
            out.insert("$id".to_owned(), Value::String(id.clone()));
        }
    }
}

/// A `$ref` with its JSON-pointer fragment following the renamed keywords.
fn convert_reference(reference: &Value, unfaithful: &mut Option<String>) -> Value {
    let Value::String(text) = reference else {
        return reference.clone();
    };
    match text.split_once("#/") {
        Some((base, pointer)) => {
            let (converted, unread) = convert_pointer_noting(pointer);
            if let Some(keyword) = unread {
                note(unfaithful, || {
                    format!(
                        "the $ref {text:?} points into `{keyword}`, which is not read as schemas"
                    )
                });
            }
            Value::String(format!("{base}#/{converted}"))
        }
        None => reference.clone(),
    }
}

/// What a pointer segment is, read from the keywords before it.
#[derive(Clone, Copy, PartialEq)]
enum Position {
    /// A schema: the segment is a keyword.
    Schema,
    /// A map of names to schemas: the segment is a name.
    Names,
    /// An array of schemas: the segment is an index.
    Indexes,
    /// Anything else: the rest of the pointer is kept as it is.
    Other,
}

/// A pointer (without the leading `#/`, its segments still escaped) through a draft ≤7 schema,
/// written for the converted schema: `definitions` → `$defs`, `items/N` → `prefixItems/N`,
/// `additionalItems` → `items`, `dependencies/x` → `dependentSchemas/x`.
pub fn convert_pointer(pointer: &str) -> String {
    convert_pointer_noting(pointer).0
}

/// [`convert_pointer`], with the first keyword the pointer runs through that the conversion
/// does not read as schemas (what lies past it stays as the older draft wrote it).
fn convert_pointer_noting(pointer: &str) -> (String, Option<String>) {
    let mut unread = None;
    let segments: Vec<&str> = pointer.split('/').collect();
    let mut out: Vec<String> = Vec::with_capacity(segments.len());
    let mut position = Position::Schema;
    let mut index = 0;
    while index < segments.len() {
        let segment = segments[index];
        match position {
            Position::Schema => {
                let next_is_index = segments.get(index + 1).is_some_and(|next| {
                    !next.is_empty() && next.bytes().all(|b| b.is_ascii_digit())
                });
                let (name, next) = match segment {
                    "definitions" => ("$defs", Position::Names),
                    "dependencies" => ("dependentSchemas", Position::Names),
                    "properties" | "patternProperties" | "$defs" => (segment, Position::Names),
                    "items" if next_is_index => ("prefixItems", Position::Indexes),
                    "additionalItems" => ("items", Position::Schema),
                    "allOf" | "anyOf" | "oneOf" => (segment, Position::Indexes),
                    "items"
                    | "additionalProperties"
                    | "not"
                    | "contains"
                    | "propertyNames"
                    | "if"
                    | "then"
                    | "else" => (segment, Position::Schema),
                    _ => {
                        if unread.is_none() {
                            unread = Some(segment.to_owned());
                        }
                        (segment, Position::Other)
                    }
                };
                out.push(name.to_owned());
                position = next;
            }
            Position::Names | Position::Indexes => {
                out.push(segment.to_owned());
                position = Position::Schema;
            }
            Position::Other => out.push(segment.to_owned()),
        }
        index += 1;
    }
    (out.join("/"), unread)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn draft7(document: Value) -> Value {
        to_2020_12(&document, Dialect::Draft7).expect("a faithful conversion")
    }

    #[test]
    fn the_dialect_is_read_from_dollar_schema() {
        for (declared, dialect) in [
            (json!({}), Dialect::Draft202012),
            (json!({"$schema": DRAFT_2020_12}), Dialect::Draft202012),
            (
                json!({"$schema": "http://json-schema.org/draft-07/schema#"}),
                Dialect::Draft7,
            ),
            (
                json!({"$schema": "https://json-schema.org/draft-07/schema"}),
                Dialect::Draft7,
            ),
            (
                json!({"$schema": "http://json-schema.org/draft-06/schema#"}),
                Dialect::Draft6,
            ),
            (
                json!({"$schema": "http://json-schema.org/draft-04/schema#"}),
                Dialect::Draft4,
            ),
        ] {
            assert_eq!(Dialect::of(&declared), Ok(dialect), "{declared}");
        }
        for refused in [
            json!({"$schema": "https://json-schema.org/draft/2019-09/schema"}),
            json!({"$schema": "https://example.com/my-meta"}),
            json!({"$schema": 7}),
        ] {
            assert!(Dialect::of(&refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_2020_12_document_is_left_alone() {
        let document = json!({"items": {"type": "string"}, "definitions": {"a": {}}});
        assert_eq!(to_2020_12(&document, Dialect::Draft202012), Ok(document));
    }

    #[test]
    fn definitions_become_defs_and_pointers_follow() {
        assert_eq!(
            draft7(json!({
                "$schema": "http://json-schema.org/draft-07/schema#",
                "properties": {"a": {"$ref": "#/definitions/name"}},
                "definitions": {"name": {"type": "string"}}
            })),
            json!({
                "$schema": DRAFT_2020_12,
                "properties": {"a": {"$ref": "#/$defs/name"}},
                "$defs": {"name": {"type": "string"}}
            })
        );
    }

    #[test]
    fn pointers_are_rewritten_by_position_not_by_name() {
        assert_eq!(convert_pointer("definitions/a"), "$defs/a");
        // A property named `definitions` is a name, not the keyword.
        assert_eq!(
            convert_pointer("properties/definitions/items/0"),
            "properties/definitions/prefixItems/0"
        );
        assert_eq!(
            convert_pointer("items/1/additionalItems"),
            "prefixItems/1/items"
        );
        assert_eq!(convert_pointer("items/properties/a"), "items/properties/a");
        assert_eq!(convert_pointer("dependencies/a"), "dependentSchemas/a");
        assert_eq!(convert_pointer("allOf/0/definitions/x"), "allOf/0/$defs/x");
        // Inside an unknown keyword nothing is a keyword any more.
        assert_eq!(convert_pointer("x-data/definitions"), "x-data/definitions");
    }

    #[test]
    fn array_items_become_prefix_items_and_additional_items_becomes_items() {
        assert_eq!(
            draft7(json!({"items": [{"type": "string"}, true], "additionalItems": false})),
            json!({"prefixItems": [{"type": "string"}, true], "items": false})
        );
        assert_eq!(
            draft7(json!({"items": [{"type": "string"}]})),
            json!({"prefixItems": [{"type": "string"}]})
        );
        // Beside a schema `items` (or none), `additionalItems` is ignored.
        assert_eq!(
            draft7(json!({"items": {"type": "string"}, "additionalItems": false})),
            json!({"items": {"type": "string"}})
        );
        assert_eq!(draft7(json!({"additionalItems": false})), json!({}));
    }

    #[test]
    fn dependencies_split_into_required_and_schemas() {
        assert_eq!(
            draft7(json!({"dependencies": {"a": ["b"], "c": {"required": ["d"]}, "e": true}})),
            json!({
                "dependentRequired": {"a": ["b"]},
                "dependentSchemas": {"c": {"required": ["d"]}, "e": true}
            })
        );
    }

    #[test]
    fn draft_4_id_becomes_dollar_id_and_plain_name_fragments_anchors() {
        let draft4 =
            |document| to_2020_12(&document, Dialect::Draft4).expect("a faithful conversion");
        assert_eq!(
            draft4(json!({"id": "urn:x:1", "properties": {"id": {"type": "string"}}})),
            json!({"$id": "urn:x:1", "properties": {"id": {"type": "string"}}})
        );
        assert_eq!(
            draft4(json!({"definitions": {"a": {"id": "#foo"}}})),
            json!({"$defs": {"a": {"$anchor": "foo"}}})
        );
        // A draft-04 `$id` is not an identifier.
        assert_eq!(draft4(json!({"$id": "urn:x:2"})), json!({}));
        assert_eq!(
            draft7(json!({"$id": "http://example.com/bar#foo"})),
            json!({"$id": "http://example.com/bar", "$anchor": "foo"})
        );
        assert_eq!(
            draft7(json!({"$id": "http://example.com/root.json#"})),
            json!({"$id": "http://example.com/root.json"})
        );
    }

    #[test]
    fn draft_4_boolean_exclusive_limits_become_numeric() {
        let draft4 =
            |document| to_2020_12(&document, Dialect::Draft4).expect("a faithful conversion");
        assert_eq!(
            draft4(json!({"maximum": 5, "exclusiveMaximum": true, "minimum": 1})),
            json!({"exclusiveMaximum": 5, "minimum": 1})
        );
        assert_eq!(
            draft4(json!({"minimum": 1, "exclusiveMinimum": true})),
            json!({"exclusiveMinimum": 1})
        );
        assert_eq!(
            draft4(json!({"maximum": 5, "exclusiveMaximum": false})),
            json!({"maximum": 5})
        );
    }

    #[test]
    fn a_ref_keeps_only_itself_and_its_definitions() {
        assert_eq!(
            draft7(json!({
                "$ref": "#/definitions/a",
                "maxLength": 2,
                "$id": "http://example.com/ignored",
                "definitions": {"a": {"type": "string"}}
            })),
            json!({"$ref": "#/$defs/a", "$defs": {"a": {"type": "string"}}})
        );
    }

    #[test]
    fn defs_of_an_older_draft_are_converted_like_definitions() {
        assert_eq!(
            draft7(json!({
                "$defs": {"a": {"items": [{"type": "string"}], "additionalItems": false}},
                "properties": {"p": {"$ref": "#/$defs/a"}}
            })),
            json!({
                "$defs": {"a": {"prefixItems": [{"type": "string"}], "items": false}},
                "properties": {"p": {"$ref": "#/$defs/a"}}
            })
        );
    }

    #[test]
    fn a_conversion_that_could_change_the_records_is_refused_with_its_reason() {
        for (document, reason) in [
            (
                json!({
                    "definitions": {"a": {"type": "string"}},
                    "$defs": {"a": {}},
                    "properties": {"p": {"$ref": "#/definitions/a"}}
                }),
                "both `definitions` and `$defs`",
            ),
            (
                json!({
                    "x-shared": {"a": {"$ref": "#/x-shared/b", "type": "string"}},
                    "properties": {"p": {"$ref": "#/x-shared/a"}}
                }),
                "points into `x-shared`",
            ),
            (
                json!({"$ref": "#/definitions/a", "definitions": {"a": {}}, "$defs": {}}),
                "both `definitions` and `$defs`",
            ),
        ] {
            let refused = to_2020_12(&document, Dialect::Draft7).expect_err("refused");
            assert!(refused.contains(reason), "{refused} for {document}");
        }
    }

    #[test]
    fn keywords_the_draft_does_not_know_are_dropped() {
        assert_eq!(
            draft7(json!({"prefixItems": [false], "unevaluatedProperties": false, "if": {}})),
            json!({"if": {}})
        );
        assert_eq!(
            to_2020_12(
                &json!({"if": {"type": "string"}, "then": false, "contains": {}}),
                Dialect::Draft6
            ),
            Ok(json!({"contains": {}}))
        );
        assert_eq!(
            to_2020_12(
                &json!({"const": 1, "contains": {}, "propertyNames": {}, "type": "array"}),
                Dialect::Draft4
            ),
            Ok(json!({"type": "array"}))
        );
    }

    #[test]
    fn subschemas_are_converted_everywhere_and_values_nowhere() {
        assert_eq!(
            draft7(json!({
                "anyOf": [{"items": [true]}],
                "not": {"definitions": {}},
                "enum": [{"definitions": 1, "items": [1]}],
                "default": {"dependencies": {}}
            })),
            json!({
                "anyOf": [{"prefixItems": [true]}],
                "not": {"$defs": {}},
                "enum": [{"definitions": 1, "items": [1]}],
                "default": {"dependencies": {}}
            })
        );
    }
}
