//! Whether a schema can hold a value at a field path: is there a record it accepts with
//! something at `/members/*/resident_id`? Configuration asks it of masks (SPEC §15: a mask on a
//! pointer the schema cannot hold is a config error), so a misspelt pointer under a closed
//! schema (`additionalProperties: false`) is reported at load, not silently masking nothing.
//!
//! The answer errs towards "can": `false` only when the keywords prove no accepted record has a
//! value there — a `false` schema on the way, a `type` that is neither object nor array where
//! the path goes on, a member no `properties` names under `additionalProperties: false`, an
//! index past a closed `prefixItems`. Conjunctions (`allOf`, a `$ref` beside other keywords) hold
//! a path only if each part does; alternatives (`anyOf`, `oneOf`, `then`/`else`) if one does.
//! What it does not follow — `patternProperties` (a member they might match), `unevaluated*`,
//! `not`, `$dynamicRef`, a `$ref` outside the document and the registry — is taken as able to
//! hold anything. Pure and bounded: `$ref` chains are followed [`MAX_DEPTH`] deep, and at most
//! [`MAX_STEPS`] schemas are visited (past either, the answer is "can").

use std::cell::Cell;

use serde_json::Value;

use crate::pointer::{FieldPath, Segment};
use crate::registry::{CompiledSchema, Documents};

/// How many schemas deep (through `$ref`s and applicators) the walk goes before answering "can".
pub const MAX_DEPTH: usize = 64;

/// How many schemas one question visits at most (applicators can branch at every level).
pub const MAX_STEPS: usize = 10_000;

/// Whether some record `schema` accepts has a value at `path`.
pub fn can_hold(schema: &CompiledSchema, documents: &Documents, path: &FieldPath) -> bool {
    let walk = Walk {
        documents,
        steps: Cell::new(0),
    };
    walk.holds(&schema.document, &schema.document, path.segments(), 0)
}

struct Walk<'d> {
    documents: &'d Documents,
    /// Schemas visited so far.
    steps: Cell<usize>,
}

impl Walk<'_> {
    /// Whether `schema` (inside the document `root`) can hold a value at `segments`.
    fn holds(&self, root: &Value, schema: &Value, segments: &[Segment], depth: usize) -> bool {
        self.steps.set(self.steps.get() + 1);
        if depth > MAX_DEPTH || self.steps.get() > MAX_STEPS {
            return true;
        }
        let object = match schema {
            Value::Bool(accepts) => return *accepts,
            Value::Object(object) => object,
            // Not a schema: the meta-schema refused it already; nothing to prove.
            _ => return true,
        };
        let deeper = depth + 1;
        if let Some(Value::String(reference)) = object.get("$ref")
            && let Some((document, target)) = self.resolve(root, reference)
            && !self.holds(document, target, segments, deeper)
        {
            return false;
        }
        if let Some(Value::Array(all)) = object.get("allOf")
            && !all
                .iter()
                .all(|part| self.holds(root, part, segments, deeper))
        {
            return false;
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(Value::Array(any)) = object.get(keyword)
                && !any
                    .iter()
                    .any(|part| self.holds(root, part, segments, deeper))
            {
                return false;
            }
        }
        if object.contains_key("if") {
            let branch = |keyword| {
                object
                    .get(keyword)
                    .is_none_or(|branch| self.holds(root, branch, segments, deeper))
            };
            if !branch("then") && !branch("else") {
                return false;
            }
        }
        let Some((first, rest)) = segments.split_first() else {
            return true;
        };
        let allows = |kind: &str| match object.get("type") {
            Some(Value::String(name)) => name == kind,
            Some(Value::Array(names)) => names.iter().any(|name| name == kind),
            _ => true,
        };
        let index = match first {
            Segment::Key(key) => key.parse::<usize>().ok(),
            Segment::Each => None,
        };
        let in_object = match first {
            Segment::Key(key) if allows("object") => {
                self.member_holds(root, object, key, rest, deeper)
            }
            _ => false,
        };
        let in_array = match first {
            _ if !allows("array") => false,
            Segment::Each => self.element_holds(root, object, None, rest, deeper),
            Segment::Key(_) => index
                .is_some_and(|index| self.element_holds(root, object, Some(index), rest, deeper)),
        };
        in_object || in_array
    }

    /// Whether member `key` of an object `schema` accepts can hold `rest`.
    fn member_holds(
        &self,
        root: &Value,
        schema: &serde_json::Map<String, Value>,
        key: &str,
        rest: &[Segment],
        depth: usize,
    ) -> bool {
        if let Some(member) = schema
            .get("properties")
            .and_then(Value::as_object)
            .and_then(|properties| properties.get(key))
        {
            return self.holds(root, member, rest, depth);
        }
        if schema
            .get("patternProperties")
            .and_then(Value::as_object)
            .is_some_and(|patterns| !patterns.is_empty())
        {
            return true;
        }
        schema
            .get("additionalProperties")
            .is_none_or(|additional| self.holds(root, additional, rest, depth))
    }

    /// Whether an element (`Some(index)`: that one; `None`: any) of an array `schema` accepts
    /// can hold `rest`. Reads 2020-12 (`prefixItems`, `items`) and earlier drafts (`items` as an
    /// array, `additionalItems`).
    fn element_holds(
        &self,
        root: &Value,
        schema: &serde_json::Map<String, Value>,
        index: Option<usize>,
        rest: &[Segment],
        depth: usize,
    ) -> bool {
        let (prefix, after) = match (schema.get("prefixItems"), schema.get("items")) {
            (Some(Value::Array(prefix)), after) => (prefix.as_slice(), after),
            (_, Some(Value::Array(prefix))) => (prefix.as_slice(), schema.get("additionalItems")),
            (_, after) => (&[][..], after),
        };
        let after_holds = || after.is_none_or(|after| self.holds(root, after, rest, depth));
        match index {
            Some(index) => match prefix.get(index) {
                Some(item) => self.holds(root, item, rest, depth),
                None => after_holds(),
            },
            None => {
                prefix
                    .iter()
                    .any(|item| self.holds(root, item, rest, depth))
                    || after_holds()
            }
        }
    }

    /// The document and schema a `$ref` names: a JSON Pointer fragment into `root`, or a
    /// registry URN (with an optional fragment); `None` for anything else.
    fn resolve<'v>(&'v self, root: &'v Value, reference: &str) -> Option<(&'v Value, &'v Value)> {
        let (resource, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let document = if resource.is_empty() {
            root
        } else {
            self.documents.get(resource)?.as_ref()
        };
        let fragment = percent_encoding::percent_decode_str(fragment)
            .decode_utf8()
            .ok()?;
        if !fragment.is_empty() && !fragment.starts_with('/') {
            // A plain-name anchor: not followed.
            return None;
        }
        Some((document, document.pointer(&fragment)?))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn holds(document: &Value, documents: &Documents, path: &str) -> bool {
        let walk = Walk {
            documents,
            steps: Cell::new(0),
        };
        let path = FieldPath::parse(path).unwrap();
        walk.holds(document, document, path.segments(), 0)
    }

    fn none() -> Documents {
        Arc::new(HashMap::new())
    }

    #[test]
    fn closed_objects_hold_only_their_properties() {
        let schema = json!({
            "type": "object", "additionalProperties": false,
            "properties": {
                "name": {"type": "string"},
                "members": {"type": "array", "items": {"$ref": "#/$defs/member"}},
                "pair": {"type": "array", "prefixItems": [{"type": "string"}], "items": false},
                "open": {"type": "object"}
            },
            "$defs": {"member": {
                "type": "object", "additionalProperties": false,
                "properties": {"resident_id": {"type": "string"}}
            }}
        });
        let documents = none();
        for path in [
            "",
            "/name",
            "/members",
            "/members/*",
            "/members/*/resident_id",
            "/members/3/resident_id",
            "/pair/0",
            "/pair/*",
            "/open/anything/deep",
        ] {
            assert!(holds(&schema, &documents, path), "{path}");
        }
        for path in [
            "/nmae",
            "/name/x",
            "/members/*/name",
            "/members/x/resident_id",
            "/pair/1",
            "/members/*/resident_id/0",
        ] {
            assert!(!holds(&schema, &documents, path), "{path}");
        }
    }

    #[test]
    fn applicators_and_references() {
        let other = json!({"type": "object", "additionalProperties": false,
            "properties": {"id": {"type": "string"}}});
        let documents: Documents = Arc::new(HashMap::from([(
            "urn:xgate:schema:other:1".to_owned(),
            Arc::new(other),
        )]));
        let schema = json!({
            "type": "object",
            "properties": {
                "all": {"allOf": [{"type": "object"}, {"additionalProperties": false, "properties": {"a": true}}]},
                "any": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"b": true}, "additionalProperties": false}]},
                "ref": {"$ref": "urn:xgate:schema:other:1"},
                "cond": {"if": true, "then": false, "else": {"type": "array"}},
                "pattern": {"type": "object", "patternProperties": {"^x": true}, "additionalProperties": false},
                "never": false,
                "old": {"type": "array", "items": [{"type": "object"}], "additionalItems": false}
            }
        });
        for path in [
            "/all/a",
            "/any/b",
            "/ref/id",
            "/cond/0",
            "/pattern/xy",
            "/pattern/y",
            "/old/0/k",
            "/undeclared/x",
        ] {
            assert!(holds(&schema, &documents, path), "{path}");
        }
        for path in [
            "/all/b",
            "/any/c",
            "/ref/name",
            "/cond/key",
            "/never",
            "/old/1",
        ] {
            assert!(!holds(&schema, &documents, path), "{path}");
        }
        // A reference cycle is cut off, answering "can".
        let cycle = json!({"$ref": "#"});
        assert!(holds(&cycle, &none(), "/a"));
        // Branching at every level is cut off by the step budget, answering "can".
        let branching = json!({"allOf": [{"$ref": "#"}, {"$ref": "#"}]});
        assert!(holds(&branching, &none(), "/a"));
    }
}
