//! Pre-normalisation of a pair of versions before their canonical forms are compared: pure
//! rewrites of each document into one the canonical form can compare with the other, where it
//! cannot see through a difference of shape between equivalent schemas.
//!
//! Two rewrites and one reduction, each justified where it is written:
//!
//! - [`implied_property`]: a property one version lists and the other leaves to
//!   `patternProperties`, `additionalProperties` or `unevaluatedProperties` is written out on
//!   the other with the schema that already applies to it there;
//! - [`unfold_reference`]: a lone local `$ref` facing a written-out schema in the other version is
//!   replaced by the schema it names (one level of a recursive definition written out);
//! - [`bounded_arrays`]: two versions that are arrays of `prefixItems` (of any lengths) and
//!   `items` at their root are compared as their arrays of at most one item past the longer
//!   prefix, written with `prefixItems` alone — not the same records, but each difference is
//!   empty exactly when the bounded one is.
//!
//! The two documents are walked side by side through the keywords that hold subschemas; the
//! pairing only chooses *which* rewrites to try, and since each rewrite keeps its own document
//! equivalent (the same records, and the same annotations for an `unevaluated*` keyword around
//! it), a wrong pairing costs a proof, never soundness. Documents with constructs that
//! make copying a subschema mean something else (`$id` below the root, anchors, dynamic
//! references) or another dialect are left as they are. Everything is bounded: the walk's depth,
//! the number of unfoldings, and the size of what is copied.

use serde_json::{Map, Value, json};

use crate::registry::draft::Dialect;

/// How deep the side-by-side walk goes.
const MAX_DEPTH: usize = 64;
/// How many `$ref`s one pair may unfold.
const MAX_UNFOLDINGS: usize = 32;
/// How many JSON values one pair's rewrites may copy in all.
const MAX_COPIED_VALUES: usize = 20_000;
/// How many property names one schema object may be asked about.
const MAX_NAMES: usize = 256;
/// How many times one pair may ask whether a `patternProperties` regex matches a name.
const MAX_PATTERN_MATCHES: usize = 1_024;

/// The pair of documents to canonicalize instead of `old` and `new`: the differences between
/// them (either way) are empty exactly when those between `old` and `new` are. A side is `None`
/// when nothing was rewritten on it (its document is used as it is).
#[derive(Debug, Default, PartialEq)]
pub struct Normalized {
    /// The earlier version, rewritten.
    pub old: Option<Value>,
    /// The new version, rewritten.
    pub new: Option<Value>,
}

/// Rewrites `old` and `new` into documents shaped alike, keeping whether each difference is
/// empty: [`implied_property`] and [`unfold_reference`] wherever the walk pairs them, then
/// [`bounded_arrays`] at the root.
pub fn pair(old: &Value, new: &Value) -> Normalized {
    if !rewritable(old) || !rewritable(new) {
        return Normalized::default();
    }
    let (mut old_copy, mut new_copy) = (old.clone(), new.clone());
    let mut walk = Walk {
        old_root: old,
        new_root: new,
        unfoldings: 0,
        copied: 0,
        matches: 0,
    };
    walk.schemas(&mut old_copy, &mut new_copy, 0);
    if let Some((old_bounded, new_bounded)) = bounded_arrays(&old_copy, &new_copy) {
        (old_copy, new_copy) = (old_bounded, new_bounded);
    }
    Normalized {
        old: (old_copy != *old).then_some(old_copy),
        new: (new_copy != *new).then_some(new_copy),
    }
}

/// Whether copying subschemas inside `document` keeps their meaning: draft 2020-12 (the dialect
/// the rewrites are argued in), no `$id` below the root (a copy would move into or out of an
/// embedded resource, and `$ref`s would resolve against another base), no anchors (a copy would
/// define one twice), no dynamic or recursive references (their targets depend on the path the
/// evaluation took). Keys are looked for anywhere, also inside `const` values: only ever too
/// cautious.
fn rewritable(document: &Value) -> bool {
    const FORBIDDEN: [&str; 6] = [
        "$anchor",
        "$dynamicAnchor",
        "$dynamicRef",
        "$recursiveRef",
        "$recursiveAnchor",
        "$schema",
    ];
    let Value::Object(root) = document else {
        return false;
    };
    if Dialect::of(document) != Ok(Dialect::Draft202012) {
        return false;
    }
    if FORBIDDEN[..5].iter().any(|key| root.contains_key(*key)) {
        return false;
    }
    let mut pending: Vec<&Value> = root.values().collect();
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                if object.contains_key("$id")
                    || FORBIDDEN.iter().any(|key| object.contains_key(*key))
                {
                    return false;
                }
                pending.extend(object.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    true
}

/// The keywords of draft 2020-12 whose value is one subschema.
const SINGLE: [&str; 10] = [
    "additionalProperties",
    "unevaluatedProperties",
    "items",
    "unevaluatedItems",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
];
/// The keywords whose value maps names to subschemas.
const MAPS: [&str; 4] = [
    "properties",
    "patternProperties",
    "$defs",
    "dependentSchemas",
];
/// The keywords whose value is a list of subschemas.
const LISTS: [&str; 4] = ["prefixItems", "allOf", "anyOf", "oneOf"];
/// The keywords that apply subschemas to the same instance and so contribute to what
/// `unevaluatedProperties` and `unevaluatedItems` see as evaluated.
const IN_PLACE: [&str; 10] = [
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "$ref",
    "$dynamicRef",
];

struct Walk<'d> {
    old_root: &'d Value,
    new_root: &'d Value,
    unfoldings: usize,
    copied: usize,
    matches: usize,
}

impl Walk<'_> {
    /// Takes `value`'s size from the copy budget; `false` (nothing taken) when it does not fit.
    fn afford(&mut self, value: &Value) -> bool {
        let left = MAX_COPIED_VALUES.saturating_sub(self.copied);
        match size_within(value, left) {
            Some(size) => {
                self.copied += size;
                true
            }
            None => false,
        }
    }

    /// Rewrites the two subschemas at one place of both documents, then the places below.
    fn schemas(&mut self, old: &mut Value, new: &mut Value, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        self.unfold(old, new, true);
        self.unfold(new, old, false);
        let (Value::Object(old), Value::Object(new)) = (old, new) else {
            return;
        };
        self.implied_properties(old, new);
        self.implied_properties(new, old);
        for keyword in SINGLE {
            if let (Some(old), Some(new)) = (old.get_mut(keyword), new.get_mut(keyword)) {
                self.schemas(old, new, depth + 1);
            }
        }
        for keyword in MAPS {
            if let (Some(Value::Object(old)), Some(Value::Object(new))) =
                (old.get_mut(keyword), new.get_mut(keyword))
            {
                for (name, old) in old.iter_mut() {
                    if let Some(new) = new.get_mut(name) {
                        self.schemas(old, new, depth + 1);
                    }
                }
            }
        }
        for keyword in LISTS {
            if let (Some(Value::Array(old)), Some(Value::Array(new))) =
                (old.get_mut(keyword), new.get_mut(keyword))
            {
                for (old, new) in old.iter_mut().zip(new.iter_mut()) {
                    self.schemas(old, new, depth + 1);
                }
            }
        }
    }

    /// Unfolds `schema` (of the old document when `old`) while it is a lone local reference and
    /// `other` is not one.
    fn unfold(&mut self, schema: &mut Value, other: &Value, old: bool) {
        let root = if old { self.old_root } else { self.new_root };
        while self.unfoldings < MAX_UNFOLDINGS && lone_reference(other).is_none() {
            let Some(unfolded) = unfold_reference(schema, root) else {
                return;
            };
            if !self.afford(&unfolded) {
                return;
            }
            self.unfoldings += 1;
            *schema = unfolded;
        }
    }

    /// Writes out on `schema` the properties `other` lists and `schema` leaves implied.
    fn implied_properties(&mut self, schema: &mut Map<String, Value>, other: &Map<String, Value>) {
        let Some(Value::Object(listed)) = other.get("properties") else {
            return;
        };
        let missing: Vec<&String> = listed
            .keys()
            .filter(|name| {
                !schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|properties| properties.contains_key(*name))
            })
            .take(MAX_NAMES)
            .collect();
        for name in missing {
            // Each pattern asked about is a regex compiled: bounded per pair.
            let patterns = schema
                .get("patternProperties")
                .and_then(Value::as_object)
                .map_or(0, Map::len);
            self.matches += patterns;
            if self.matches > MAX_PATTERN_MATCHES {
                return;
            }
            let Some(implied) = implied_property(schema, name) else {
                continue;
            };
            if !self.afford(&implied) {
                return;
            }
            let properties = schema
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(properties) = properties {
                properties.insert(name.clone(), implied);
            }
        }
    }
}

/// The size of `value` in JSON values, when it is at most `limit`.
fn size_within(value: &Value, limit: usize) -> Option<usize> {
    let mut size = 0usize;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        size += 1;
        if size > limit {
            return None;
        }
        match value {
            Value::Object(object) => pending.extend(object.values()),
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    Some(size)
}

/// Keywords that change no record's validity (`$defs` only holds subschemas for references; the
/// rest are annotations and the root's identity): what a lone reference may carry beside `$ref`,
/// and a root array schema for [`bounded_arrays`] beside `type`, `prefixItems` and `items`.
const NON_VALIDATING: [&str; 7] = [
    "$defs",
    "$id",
    "$schema",
    "$comment",
    "title",
    "description",
    "examples",
];

/// Keywords that only annotate: which one of two values a merged schema keeps changes no
/// record's validity.
const ANNOTATIONS: [&str; 4] = ["$comment", "title", "description", "examples"];

/// The target of `schema` when it is a lone local reference: an object whose only keyword that
/// validates is a `$ref` to a JSON Pointer fragment (`#/...`) of the same document.
fn lone_reference(schema: &Value) -> Option<&str> {
    let Value::Object(object) = schema else {
        return None;
    };
    let reference = object.get("$ref")?.as_str()?;
    let only = object
        .keys()
        .all(|key| key == "$ref" || NON_VALIDATING.contains(&key.as_str()));
    (only && reference.starts_with("#/")).then_some(reference)
}

/// `schema` with its lone local `$ref` replaced by the schema it names, or `None` when it is
/// not one or the target cannot be written in its place.
///
/// Why the records stay the same: in draft 2020-12 a `$ref` applies its target to the same
/// instance and its result is the schema's (an in-place applicator); an object whose other
/// keywords do not validate (`NON_VALIDATING`) therefore accepts exactly what the target
/// accepts. Written in its place, the target's keywords act on the same instance, and the
/// annotations they leave for an `unevaluated*` keyword around it are the target's own, which
/// the `$ref` passed on as well. The target's own `$ref`s are fragment pointers resolved against
/// the one base URI of the document ([`rewritable`]: no `$id` below the root), so they name the
/// same schemas from the new place. A target holding `$defs` is not merged. A boolean target
/// has no keywords to merge: `false` is written as `{"not": {}}`, `true` as nothing. Where both
/// hold the same annotation the reference's is kept.
pub fn unfold_reference(schema: &Value, root: &Value) -> Option<Value> {
    let reference = lone_reference(schema)?;
    let pointer = percent_encoding::percent_decode_str(reference.strip_prefix('#')?)
        .decode_utf8()
        .ok()?;
    let target = root.pointer(&pointer)?;
    let Value::Object(reference_object) = schema else {
        return None;
    };
    let mut unfolded: Map<String, Value> = reference_object
        .iter()
        .filter(|(key, _)| key.as_str() != "$ref")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    match target {
        Value::Bool(true) => {}
        Value::Bool(false) => {
            unfolded.insert("not".to_owned(), json!({}));
        }
        Value::Object(target) => {
            for (key, value) in target {
                if key == "$defs" {
                    return None;
                }
                if unfolded.contains_key(key) {
                    // The reference's own annotation stays; any other shared key is not merged.
                    if ANNOTATIONS.contains(&key.as_str()) {
                        continue;
                    }
                    return None;
                }
                unfolded.insert(key.clone(), value.clone());
            }
        }
        _ => return None,
    }
    Some(Value::Object(unfolded))
}

/// The schema that already applies to a property `name` that `schema` does not list, written so
/// that listing it under `properties` keeps the records and the annotations the same; `None`
/// when that cannot be told (or nothing applies to it, see below).
///
/// Why the records stay the same: `patternProperties` applies to every member whose name
/// matches, listed or not, so for a name some patterns match, listing it with the conjunction of
/// those patterns' schemas adds a check that already runs. For a name no pattern matches,
/// `additionalProperties` applies exactly to the members `properties` and `patternProperties`
/// leave, so the name moves from it to `properties` with the same schema. Without
/// `additionalProperties`, `unevaluatedProperties` applies to the members nothing else
/// evaluated; when the schema object has no in-place applicator (`IN_PLACE`) only its own
/// `properties` and `patternProperties` evaluate members, so the name moves from it to
/// `properties` with the same schema. In every case the member was evaluated (an annotation
/// for an `unevaluatedProperties` around the schema) before and is after. A name to which
/// nothing applies is not listed: listing it, even as `true`, would mark it evaluated.
///
/// Whether a pattern matches is asked of the engine the validators use (`pattern_options`), on
/// a schema made of that one pattern; a pattern it refuses leaves the name unlisted.
pub fn implied_property(schema: &Map<String, Value>, name: &str) -> Option<Value> {
    let mut matching = Vec::new();
    if let Some(patterns) = schema.get("patternProperties") {
        let Value::Object(patterns) = patterns else {
            return None;
        };
        for (pattern, subschema) in patterns {
            if matches(pattern, name)? {
                matching.push(subschema.clone());
            }
        }
    }
    match matching.len() {
        0 => {}
        1 => return matching.pop(),
        _ => return Some(json!({ "allOf": matching })),
    }
    if let Some(additional) = schema.get("additionalProperties") {
        return Some(additional.clone());
    }
    let unevaluated = schema.get("unevaluatedProperties")?;
    if IN_PLACE.iter().any(|keyword| schema.contains_key(*keyword)) {
        return None;
    }
    Some(unevaluated.clone())
}

/// Whether the `patternProperties` regex `pattern` matches `name`, as the validators' engine
/// decides it; `None` when the engine refuses the pattern.
fn matches(pattern: &str, name: &str) -> Option<bool> {
    let mut patterns = Map::new();
    patterns.insert(pattern.to_owned(), Value::Bool(false));
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .with_pattern_options(crate::registry::pattern_options())
        .build(&json!({ "patternProperties": patterns }))
        .ok()?;
    let mut record = Map::new();
    record.insert(name.to_owned(), Value::Null);
    Some(!validator.is_valid(&Value::Object(record)))
}

/// For two versions that are both, at their root, arrays constrained only by `prefixItems` and
/// `items`: the same versions restricted to arrays of at most `L + 1` items (`L` the longer
/// prefix), written with `prefixItems` alone (the form the canonical difference handles), and
/// `None` otherwise.
///
/// Not an equivalence: a reduction that keeps whether each difference is empty. Write `A_i` for
/// the schema the first version applies to the item at index `i` (`prefixItems[i]`, else
/// `items`, else `true`), so that it accepts an array exactly when every item `i` passes `A_i`;
/// likewise `B_i`; both are the same for every `i >= L`. A cut-off array of an accepted one is
/// accepted (no `minItems`, `contains`, `uniqueItems`), and every item past `L` passes `A_L`.
/// Suppose every array of at most `L + 1` items the first version accepts, the second accepts,
/// and take any accepted array `a`: its first `L` items pass `B_0..B_{L-1}` (its cut-off to
/// `L` items is accepted by both), and each item `a_j` past them passes `B_L`, because the
/// array `a_0 .. a_{L-1}, a_j` passes `A` and so `B`. So the first difference is empty exactly
/// when its restriction to at most `L + 1` items is, and the same holds the other way round.
/// A record of the restricted difference is a record of the real one: what the check reports
/// as the difference is the part of it of at most `L + 1` items.
pub fn bounded_arrays(old: &Value, new: &Value) -> Option<(Value, Value)> {
    let pure = |document: &Value| -> Option<Map<String, Value>> {
        let Value::Object(root) = document else {
            return None;
        };
        let keys_allowed = root.keys().all(|key| {
            ["type", "prefixItems", "items"].contains(&key.as_str())
                || NON_VALIDATING.contains(&key.as_str())
        });
        let array = root.get("type") == Some(&json!("array"));
        let prefix_list = root.get("prefixItems").is_none_or(Value::is_array);
        let items_schema = root
            .get("items")
            .is_none_or(|items| items.is_object() || items.is_boolean());
        (keys_allowed && array && prefix_list && items_schema).then(|| root.clone())
    };
    let (old, new) = (pure(old)?, pure(new)?);
    let prefix_length = |root: &Map<String, Value>| {
        root.get("prefixItems")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    let longer = prefix_length(&old).max(prefix_length(&new));
    if longer == 0 {
        // Nothing to gain: `items` alone is the canonical form's own shape.
        return None;
    }
    let bounded = |mut root: Map<String, Value>| -> Option<Value> {
        let items = root.remove("items").unwrap_or(Value::Bool(true));
        let mut prefix = match root.remove("prefixItems") {
            Some(Value::Array(prefix)) => prefix,
            _ => Vec::new(),
        };
        let copies = (longer + 1).saturating_sub(prefix.len());
        size_within(&items, MAX_COPIED_VALUES / copies.max(1))?;
        prefix.resize(longer + 1, items);
        root.insert("prefixItems".to_owned(), Value::Array(prefix));
        root.insert("maxItems".to_owned(), json!(longer + 1));
        Some(Value::Object(root))
    };
    Some((bounded(old)?, bounded(new)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::witness;

    fn validator(document: &Value) -> jsonschema::Validator {
        crate::registry::validator_options(
            Default::default(),
            crate::registry::draft::Dialect::Draft202012,
        )
        .build(document)
        .unwrap()
    }

    /// Records to judge both forms with: the examples built from either, and `extra`.
    fn records(original: &Value, rewritten: &Value, extra: &[Value]) -> Vec<Value> {
        let mut records = witness::candidates(original);
        records.extend(witness::candidates(rewritten));
        records.extend(extra.iter().cloned());
        records
    }

    /// Both documents accept exactly the same of `records`.
    fn same_records(original: &Value, rewritten: &Value, extra: &[Value]) {
        let (before, after) = (validator(original), validator(rewritten));
        let records = records(original, rewritten, extra);
        assert!(records.len() > 10, "{records:?}");
        for record in &records {
            assert_eq!(
                before.is_valid(record),
                after.is_valid(record),
                "{record} judged differently by {original} and {rewritten}"
            );
        }
    }

    fn rewritten_old(old: &Value, new: &Value) -> Value {
        pair(old, new).old.expect("the old version is rewritten")
    }

    #[test]
    fn implied_properties_are_written_out_with_the_records_kept() {
        let new =
            json!({"type": "object", "properties": {"a": {"type": "integer"}, "x_b": {}, "b": {}}});
        let branch = json!({"allOf": [new.clone()]});
        let olds = [
            (
                json!({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string", "maxLength": 2}}),
                &new,
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "integer"}}, "unevaluatedProperties": {"type": "string"}}),
                &new,
            ),
            (
                json!({"type": "object", "patternProperties": {"^x_": {"type": "string"}, "b$": {"maxLength": 1}}, "additionalProperties": false}),
                &new,
            ),
            // Around an `unevaluatedProperties`: the written-out member was evaluated before.
            (
                json!({"allOf": [{"properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "integer"}}], "unevaluatedProperties": false}),
                &branch,
            ),
        ];
        let extra = [
            json!({"a": 1, "b": "s"}),
            json!({"a": 1, "b": "long"}),
            json!({"x_b": "s", "b": 1}),
            json!({"x_b": "ss"}),
            json!({"b": 2}),
            json!({"b": "x"}),
            json!({"a": "1"}),
        ];
        for (old, new) in olds {
            let rewritten = rewritten_old(&old, new);
            assert_ne!(rewritten, old);
            same_records(&old, &rewritten, &extra);
        }
    }

    #[test]
    fn properties_nothing_implies_are_not_written_out() {
        let new = json!({"properties": {"b": {}}});
        for old in [
            // Listing `b` (as `true`) would make an `unevaluatedProperties` around it accept it.
            json!({"properties": {"a": {}}}),
            // An in-place applicator may evaluate `b`: `unevaluatedProperties` is not known to
            // apply to it.
            json!({"allOf": [{"properties": {"b": {"type": "string"}}}], "unevaluatedProperties": false}),
        ] {
            assert_eq!(pair(&old, &new), Normalized::default(), "{old}");
        }
        // A pattern the engine refuses leaves the name alone.
        let schema = json!({"patternProperties": {"(": {}}, "additionalProperties": false});
        assert_eq!(implied_property(schema.as_object().unwrap(), "b"), None);
    }

    #[test]
    fn a_lone_reference_unfolds_into_its_target_with_the_records_kept() {
        let node = json!({"type": "object", "properties": {"value": {"type": "integer"}, "next": {"$ref": "#/$defs/n"}}, "required": ["value"]});
        let old = json!({"$defs": {"n": node}, "$ref": "#/$defs/n", "title": "chain"});
        let new = json!({"$defs": {"n": node}, "type": "object", "properties": {"value": {"type": "integer"}, "next": {"type": "object"}}});
        let rewritten = rewritten_old(&old, &new);
        assert_eq!(rewritten["type"], "object");
        assert_eq!(rewritten["title"], "chain");
        same_records(
            &old,
            &rewritten,
            &[
                json!({"value": 1}),
                json!({"value": 1, "next": {"value": 2}}),
                json!({"value": 1, "next": {"value": "2"}}),
                json!({"value": 1, "next": {"next": {"value": 3}}}),
                json!({"value": 1, "next": {"value": 2, "next": {"value": 3, "next": 4}}}),
            ],
        );
        // `false` has no keywords: it becomes a schema nothing satisfies.
        let never = json!({"$defs": {"f": false}, "$ref": "#/$defs/f"});
        let unfolded = unfold_reference(&never, &never).unwrap();
        same_records(&never, &unfolded, &[json!(1), json!({})]);
        // A reference beside validating keywords, or to a target with `$defs`, stays.
        assert!(unfold_reference(&json!({"$ref": "#/$defs/n", "type": "object"}), &old).is_none());
        let nested = json!({"$defs": {"n": {"$defs": {}, "type": "string"}}, "$ref": "#/$defs/n"});
        assert!(unfold_reference(&nested, &nested).is_none());
    }

    #[test]
    fn self_references_unfold_a_bounded_number_of_times() {
        let old = json!({"$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"});
        let new = json!({"type": "string"});
        // The target is the lone reference again: each unfolding gives the same document.
        assert_eq!(pair(&old, &new).old, None);
        let wide = json!({"$defs": {"n": {"anyOf": [{"$ref": "#/$defs/n"}, {"$ref": "#/$defs/n"}]}}, "$ref": "#/$defs/n"});
        // Two branches at each of 40 levels: unfolding both everywhere would double at each.
        let deep = (0..40).fold(
            json!({"type": "string"}),
            |inner, _| json!({"anyOf": [inner, {"type": "object"}]}),
        );
        let normalized = pair(&wide, &deep);
        let size = normalized.old.map_or(0, |old| old.to_string().len());
        assert!(size < 2_000_000, "{size} bytes");
    }

    #[test]
    fn documents_whose_copies_would_mean_something_else_are_left_alone() {
        let new = json!({"properties": {"b": {}}});
        for old in [
            json!({"$defs": {"s": {"$id": "urn:other", "type": "string"}}, "additionalProperties": {"type": "string"}}),
            json!({"additionalProperties": {"$anchor": "s", "type": "string"}}),
            json!({"$schema": "http://json-schema.org/draft-07/schema#", "additionalProperties": {"type": "string"}}),
        ] {
            assert_eq!(pair(&old, &new), Normalized::default(), "{old}");
        }
    }

    #[test]
    fn bounded_arrays_keep_the_records_up_to_one_past_the_longer_prefix() {
        let old = json!({"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string", "maxLength": 3}});
        let new =
            json!({"type": "array", "prefixItems": [{"type": "integer"}, {}, {"type": "boolean"}]});
        let (old_bounded, new_bounded) = bounded_arrays(&old, &new).unwrap();
        assert_eq!(old_bounded["maxItems"], 4);
        let arrays = [
            json!([]),
            json!([1]),
            json!([1, "a"]),
            json!([1, "abcd"]),
            json!([1, "a", "b", "c"]),
            json!([1, "a", true, null]),
            json!([1, null, true]),
            json!(["1"]),
        ];
        for (original, bounded) in [(&old, &old_bounded), (&new, &new_bounded)] {
            let (before, after) = (validator(original), validator(bounded));
            for array in records(original, bounded, &arrays) {
                let short = array.as_array().is_some_and(|items| items.len() <= 4);
                if short {
                    assert_eq!(before.is_valid(&array), after.is_valid(&array), "{array}");
                } else {
                    assert!(!after.is_valid(&array), "{array}");
                }
            }
        }
        // Anything beyond `prefixItems` and `items` at the root, or no prefix at all: no reduction.
        for other in [
            json!({"type": "array", "prefixItems": [{}], "minItems": 1}),
            json!({"type": "array", "prefixItems": [{}], "contains": {}}),
            json!({"prefixItems": [{}]}),
        ] {
            assert!(bounded_arrays(&old, &other).is_none(), "{other}");
        }
        let items = json!({"type": "array", "items": {}});
        assert!(bounded_arrays(&items, &items).is_none());
    }
}
