//! The registry versions a schema document `$ref`s (`urn:xgate:schema:<name>:<version>`), so a
//! referenced version is never deleted from under the schemas that need it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::domain::{SchemaName, SchemaVersion};

/// The prefix of every schema version's URN.
const SCHEMA_URN_PREFIX: &str = "urn:xgate:schema:";

/// Every registry version `document` references with `$ref` or `$dynamicRef`. Conservative: a
/// `$ref` key anywhere in the document counts, even inside `const` or `enum` values, so a
/// reference is never missed.
pub fn registry_references(document: &Value) -> BTreeSet<(SchemaName, SchemaVersion)> {
    let mut found = BTreeSet::new();
    collect(document, &mut found);
    found
}

/// Parses `urn:xgate:schema:<name>:<version>[#fragment]`.
pub fn parse_schema_urn(reference: &str) -> Option<(SchemaName, SchemaVersion)> {
    let rest = reference.strip_prefix(SCHEMA_URN_PREFIX)?;
    let resource = rest.split('#').next()?;
    let (name, version) = resource.rsplit_once(':')?;
    Some((
        SchemaName::parse(name).ok()?,
        SchemaVersion::parse(version).ok()?,
    ))
}

// Documents come from serde_json, whose parser bounds nesting to 128 levels, so this recursion
// is bounded too.
fn collect(value: &Value, found: &mut BTreeSet<(SchemaName, SchemaVersion)>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                if let ("$ref" | "$dynamicRef", Value::String(reference)) = (key.as_str(), child)
                    && let Some(target) = parse_schema_urn(reference)
                {
                    found.insert(target);
                }
                collect(child, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_registry_references_at_any_depth_and_nothing_else() {
        let document = json!({
            "$ref": "urn:xgate:schema:address:2",
            "properties": {
                "home": {"$ref": "urn:xgate:schema:address:1#/$defs/line"},
                "local": {"$ref": "#/$defs/local"},
                "remote": {"$ref": "https://example.com/schema"},
                "broken": {"$ref": "urn:xgate:schema:Address:1"},
                "list": {"items": [{"$dynamicRef": "urn:xgate:schema:person:3"}]}
            }
        });
        let found: Vec<String> = registry_references(&document)
            .into_iter()
            .map(|(name, version)| format!("{name}@{version}"))
            .collect();
        assert_eq!(found, ["address@1", "address@2", "person@3"]);
    }

    #[test]
    fn parses_only_well_formed_urns() {
        assert!(parse_schema_urn("urn:xgate:schema:a-b:12").is_some());
        for bad in [
            "urn:xgate:schema:a",
            "urn:xgate:schema::1",
            "urn:xgate:schema:a:0",
            "urn:xgate:schema:../x:1",
            "urn:other:a:1",
        ] {
            assert!(parse_schema_urn(bad).is_none(), "{bad}");
        }
    }
}
