//! Example records for a schema: values worth trying when the canonical form cannot decide
//! whether a difference between two versions accepts anything.
//!
//! [`candidates`] builds a bounded list of values shaped by a schema's keywords (types, bounds,
//! `const`/`enum`, required and listed properties, items, known formats). It proves nothing by
//! itself: the compatibility check keeps a candidate only after both versions' real validators
//! have judged it (accepted by one, rejected by the other), so a found example is a proof that
//! the change is unsafe, and a missing one leaves the verdict as it was. Pure: no I/O.

use serde_json::{Map, Number, Value, json};

/// The most candidates built for one schema (and for each subschema on the way).
const MAX_CANDIDATES: usize = 64;
/// How deep into nested subschemas and `$ref`s the builder goes.
const MAX_DEPTH: usize = 8;
/// The longest string or array built.
const MAX_LENGTH: u64 = 64;
/// The most subschemas visited for one schema, whatever its shape: a schema whose properties
/// all refer back to it would otherwise multiply the work at every level.
const MAX_VISITS: usize = 500;

/// What one call to [`candidates`] may still spend.
struct Budget(std::cell::Cell<usize>);

impl Budget {
    /// Takes one visit; `false` when none is left.
    fn take(&self) -> bool {
        let left = self.0.get();
        self.0.set(left.saturating_sub(1));
        left > 0
    }
}

/// Values to try against `schema` (a draft 2020-12 document; `$ref`s to `#...` resolve in it).
pub fn candidates(schema: &Value) -> Vec<Value> {
    let budget = Budget(std::cell::Cell::new(MAX_VISITS));
    let mut values = build(schema, schema, 0, &budget);
    dedup(&mut values);
    values.truncate(MAX_CANDIDATES);
    values
}

fn dedup(values: &mut Vec<Value>) {
    let mut seen: Vec<Value> = Vec::with_capacity(values.len());
    values.retain(|value| {
        if seen.contains(value) {
            false
        } else {
            seen.push(value.clone());
            true
        }
    });
}

fn build(schema: &Value, root: &Value, depth: usize, budget: &Budget) -> Vec<Value> {
    if depth > MAX_DEPTH || !budget.take() {
        return Vec::new();
    }
    let object = match schema {
        Value::Bool(true) => return vec![Value::Null, json!({}), json!("")],
        Value::Object(object) => object,
        _ => return Vec::new(),
    };
    if let Some(constant) = object.get("const") {
        return vec![constant.clone()];
    }
    if let Some(Value::Array(members)) = object.get("enum") {
        return members.iter().take(16).cloned().collect();
    }
    let mut values = Vec::new();
    if let Some(target) = object
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| resolve(reference, root))
    {
        values.extend(build(target, root, depth + 1, budget));
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(branches)) = object.get(key) {
            for branch in branches {
                values.extend(build(branch, root, depth + 1, budget));
            }
        }
    }
    for json_type in types(object) {
        values.extend(of_type(json_type, object, root, depth, budget));
        if values.len() >= MAX_CANDIDATES {
            break;
        }
    }
    values.truncate(MAX_CANDIDATES);
    values
}

/// A local reference (`#`, `#/json/pointer`) inside `root`.
fn resolve<'a>(reference: &str, root: &'a Value) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    let decoded = percent_encoding::percent_decode_str(pointer)
        .decode_utf8()
        .ok()?;
    root.pointer(&decoded)
}

/// The JSON types worth building for: the declared ones, or those the keywords suggest.
fn types(object: &Map<String, Value>) -> Vec<&'static str> {
    const ALL: [&str; 7] = [
        "null", "boolean", "integer", "number", "string", "array", "object",
    ];
    let known = |name: &str| ALL.into_iter().find(|candidate| *candidate == name);
    match object.get("type") {
        Some(Value::String(name)) => known(name).into_iter().collect(),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .filter_map(known)
            .collect(),
        _ => {
            let suggests = |keys: &[&str]| keys.iter().any(|key| object.contains_key(*key));
            let mut suggested = Vec::new();
            if suggests(&[
                "properties",
                "required",
                "additionalProperties",
                "propertyNames",
                "minProperties",
                "maxProperties",
                "patternProperties",
            ]) {
                suggested.push("object");
            }
            if suggests(&[
                "items",
                "prefixItems",
                "contains",
                "minItems",
                "maxItems",
                "uniqueItems",
            ]) {
                suggested.push("array");
            }
            if suggests(&["minLength", "maxLength", "pattern", "format"]) {
                suggested.push("string");
            }
            if suggests(&[
                "minimum",
                "maximum",
                "exclusiveMinimum",
                "exclusiveMaximum",
                "multipleOf",
            ]) {
                suggested.push("number");
            }
            if suggested.is_empty() {
                suggested.extend(ALL);
            }
            suggested
        }
    }
}

fn of_type(
    json_type: &str,
    object: &Map<String, Value>,
    root: &Value,
    depth: usize,
    budget: &Budget,
) -> Vec<Value> {
    match json_type {
        "null" => vec![Value::Null],
        "boolean" => vec![json!(true), json!(false)],
        "integer" => numbers(object, true),
        "number" => numbers(object, false),
        "string" => strings(object),
        "array" => arrays(object, root, depth, budget),
        "object" => objects(object, root, depth, budget),
        _ => Vec::new(),
    }
}

fn numbers(object: &Map<String, Value>, integer: bool) -> Vec<Value> {
    let number = |key: &str| object.get(key).and_then(Value::as_f64);
    let low = match (number("minimum"), number("exclusiveMinimum")) {
        (Some(minimum), _) => Some(minimum),
        (None, Some(exclusive)) => Some(if integer {
            exclusive.floor() + 1.0
        } else {
            exclusive + 0.5
        }),
        (None, None) => None,
    };
    let high = match (number("maximum"), number("exclusiveMaximum")) {
        (Some(maximum), _) => Some(maximum),
        (None, Some(exclusive)) => Some(if integer {
            exclusive.ceil() - 1.0
        } else {
            exclusive - 0.5
        }),
        (None, None) => None,
    };
    let start = low.unwrap_or_else(|| high.map_or(0.0, |high| high.min(0.0)));
    let start = if integer { start.ceil() } else { start };
    let mut values = vec![start, start + 1.0, start + 2.0, start + 3.0];
    if low.is_none() {
        // Below zero, where a version may have added a `minimum` the other lacks.
        values.push(start - 1.0);
    }
    if let Some(high) = high {
        values.extend([high, high - 1.0]);
    }
    if !integer {
        values.extend([start + 0.5, 1.5, -1.5]);
    }
    if let Some(step) = number("multipleOf").filter(|step| *step > 0.0) {
        let first = (start / step).ceil() * step;
        values.extend([first, first + step, first + 2.0 * step, first + 3.0 * step]);
    }
    values
        .into_iter()
        .filter(|value| value.is_finite())
        .filter(|value| {
            low.is_none_or(|low| *value >= low) && high.is_none_or(|high| *value <= high)
        })
        .filter_map(|value| {
            if value.fract() == 0.0 && value.abs() < 9.0e15 {
                // Exact: within ±2^53 an integral f64 is an integer.
                #[allow(clippy::cast_possible_truncation)]
                Some(Value::Number(Number::from(value as i64)))
            } else if integer {
                None
            } else {
                Number::from_f64(value).map(Value::Number)
            }
        })
        .collect()
}

/// Values of the formats the gateway asserts, for strings that must have one.
fn format_samples(format: &str) -> &'static [&'static str] {
    match format {
        "date" => &["2024-01-31"],
        "date-time" => &["2024-01-31T08:00:00Z"],
        "time" => &["08:00:00Z"],
        "email" | "idn-email" => &["someone@example.com"],
        "uri" | "iri" => &["https://example.com/a"],
        "uri-reference" | "iri-reference" => &["/a"],
        "uuid" => &["123e4567-e89b-12d3-a456-426614174000"],
        "ipv4" => &["192.0.2.1"],
        "ipv6" => &["2001:db8::1"],
        "hostname" | "idn-hostname" => &["example.com"],
        "duration" => &["P1D"],
        "cn-uscc" => &["91350100M000100Y43"],
        "cn-resident-id" => &["11010519491231002X"],
        "cn-elicense-id" => &["1.2.156.3005.2.A1.91350100M000100Y43.123456.1.T"],
        _ => &[],
    }
}

fn strings(object: &Map<String, Value>) -> Vec<Value> {
    let length = |key: &str| object.get(key).and_then(Value::as_u64);
    let low = length("minLength").unwrap_or(0);
    let high = length("maxLength").unwrap_or(u64::MAX);
    let mut values: Vec<String> = Vec::new();
    if let Some(format) = object.get("format").and_then(Value::as_str) {
        values.extend(
            format_samples(format)
                .iter()
                .map(|sample| (*sample).to_owned()),
        );
    }
    for size in [low, low.saturating_add(1), high, 18, 1] {
        if size > MAX_LENGTH || size < low || size > high {
            continue;
        }
        let Ok(size) = usize::try_from(size) else {
            continue;
        };
        values.push("a".repeat(size));
        values.push("0".repeat(size));
        values.push("A".repeat(size));
    }
    values.into_iter().map(Value::String).collect()
}

fn arrays(object: &Map<String, Value>, root: &Value, depth: usize, budget: &Budget) -> Vec<Value> {
    let low = object.get("minItems").and_then(Value::as_u64).unwrap_or(0);
    let high = object
        .get("maxItems")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    if low > MAX_LENGTH || low > high {
        return Vec::new();
    }
    // A few values for each of the first positions; the first of each makes the prefix.
    let choices: Vec<Vec<Value>> = match object.get("prefixItems") {
        Some(Value::Array(schemas)) => schemas
            .iter()
            .enumerate()
            .map(|(index, schema)| {
                let mut values = build(schema, root, depth + 1, budget);
                values.truncate(if index < 8 { 6 } else { 1 });
                values
            })
            .collect(),
        _ => Vec::new(),
    };
    let prefix: Vec<Value> = choices
        .iter()
        .map(|values| values.first().cloned().unwrap_or(Value::Null))
        .collect();
    let items: Vec<Value> = object.get("items").map_or_else(
        || vec![Value::Null, json!(0), json!("")],
        |schema| build(schema, root, depth + 1, budget),
    );
    let contained: Vec<Value> = object
        .get("contains")
        .map(|schema| build(schema, root, depth + 1, budget))
        .unwrap_or_default();
    let mut values = Vec::new();
    let fill = |element: &Value, with: Option<&Value>| -> Value {
        let mut array = prefix.clone();
        if let Some(extra) = with {
            array.push(extra.clone());
        }
        // Distinct fillers where the array must be longer, so `uniqueItems` can still hold.
        let mut counter = 0u64;
        while (array.len() as u64) < low.max(1) {
            array.push(if array.contains(element) {
                counter += 1;
                json!(counter)
            } else {
                element.clone()
            });
        }
        Value::Array(array)
    };
    if low == 0 {
        values.push(Value::Array(prefix.clone()));
    }
    // The prefix with one position taking another of its values.
    for (index, alternatives) in choices.iter().enumerate() {
        for alternative in alternatives.iter().skip(1) {
            let mut array = prefix.clone();
            array[index] = alternative.clone();
            values.push(Value::Array(array));
        }
    }
    for element in items.iter().take(8) {
        values.push(fill(element, None));
        // One element past the prefix, where `items` (and not `prefixItems`) applies.
        if !prefix.is_empty() {
            values.push(fill(element, Some(element)));
        }
    }
    for extra in contained.iter().take(8) {
        values.push(fill(extra, Some(extra)));
        if let Some(first) = items.first() {
            values.push(fill(first, Some(extra)));
        }
    }
    values.retain(|value| {
        value
            .as_array()
            .is_some_and(|array| (array.len() as u64) <= high)
    });
    values
}

fn objects(object: &Map<String, Value>, root: &Value, depth: usize, budget: &Budget) -> Vec<Value> {
    let empty = Map::new();
    let properties = match object.get("properties") {
        Some(Value::Object(properties)) => properties,
        _ => &empty,
    };
    let required: Vec<&str> = match object.get("required") {
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    // Names nothing lists: an open object's extra member, or names `propertyNames` allows.
    let mut extra_names: Vec<&str> = vec!["x"];
    if let Some(Value::Object(names)) = object.get("propertyNames") {
        if let Some(Value::Array(allowed)) = names.get("enum") {
            extra_names.extend(allowed.iter().filter_map(Value::as_str));
        }
        if let Some(Value::String(allowed)) = names.get("const") {
            extra_names.push(allowed);
        }
    }
    // Every member's values, built once.
    let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
    for name in required.iter().chain(&extra_names) {
        if !names.contains(name) {
            names.push(name);
        }
    }
    let members: Vec<(&str, Vec<Value>)> = names
        .into_iter()
        .map(|name| {
            let values = match properties
                .get(name)
                .or_else(|| object.get("additionalProperties"))
            {
                Some(schema) => build(schema, root, depth + 1, budget),
                None => vec![Value::Null, json!(""), json!(0)],
            };
            (name, values)
        })
        .collect();
    let first = |name: &str| {
        members
            .iter()
            .find(|(member, _)| *member == name)
            .and_then(|(_, values)| values.first().cloned())
            .unwrap_or(Value::Null)
    };
    let mut base = Map::new();
    for name in &required {
        base.insert((*name).to_owned(), first(name));
    }
    let mut full = base.clone();
    for name in properties.keys() {
        full.entry(name.clone()).or_insert_with(|| first(name));
    }
    let mut values = vec![Value::Object(base.clone()), Value::Object(full.clone())];
    // One member at a time takes its other values, over the required-only and the full record.
    for (name, alternatives) in &members {
        for alternative in alternatives.iter().take(6) {
            for template in [&base, &full] {
                let mut variant = template.clone();
                variant.insert((*name).to_owned(), alternative.clone());
                values.push(Value::Object(variant));
            }
        }
        if values.len() >= MAX_CANDIDATES {
            break;
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_schema_and_stay_bounded() {
        let schema = json!({
            "type": "object",
            "required": ["name", "count"],
            "properties": {
                "name": {"type": "string", "minLength": 3, "maxLength": 5},
                "count": {"type": "integer", "minimum": 10, "multipleOf": 5},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2, "uniqueItems": true},
                "home": {"$ref": "#/$defs/home"}
            },
            "$defs": {"home": {"type": "object", "required": ["uscc"], "properties": {"uscc": {"type": "string", "format": "cn-uscc"}}}}
        });
        let values = candidates(&schema);
        assert!(!values.is_empty() && values.len() <= MAX_CANDIDATES);
        let validator = jsonschema::options()
            .should_validate_formats(false)
            .build(&schema)
            .unwrap();
        let valid = values
            .iter()
            .filter(|value| validator.is_valid(value))
            .count();
        assert!(valid > 0, "some candidate satisfies the schema: {values:?}");
        assert!(
            values
                .iter()
                .any(|value| value["home"]["uscc"] == "91350100M000100Y43")
        );
        // Huge bounds build nothing huge.
        let huge = candidates(&json!({"type": "string", "minLength": 1000000}));
        assert!(huge.is_empty(), "{huge:?}");
        assert!(candidates(&json!(false)).is_empty());
    }

    #[test]
    fn self_referring_schemas_cost_a_bounded_amount() {
        // Every property refers back to the root and is required: without a budget the work
        // would grow as 40^8.
        let names: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
        let properties: Map<String, Value> = names
            .iter()
            .map(|name| (name.clone(), json!({"$ref": "#"})))
            .collect();
        let schema = json!({"type": "object", "required": names, "properties": properties});
        let values = candidates(&schema);
        assert!(values.len() <= MAX_CANDIDATES);
        let size: usize = values.iter().map(|value| value.to_string().len()).sum();
        assert!(size < 50_000_000, "{size} bytes of candidates");
    }
}
