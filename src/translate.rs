//! Formats (SPEC §7): how a department's own record layout maps to a shared schema's layout.
//!
//! This module never does I/O. Today it parses and checks format configuration; the
//! translations themselves are the identity until the conversion engine lands (the exchange
//! path already calls them at the right phases: to shared, to provider, response to shared,
//! to consumer).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::file::FormatSection;
use crate::pointer::FieldPath;

/// What happens to a field of a record that no rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmapped {
    /// The record is refused, listing the fields.
    Reject,
    /// The field is left out.
    Drop,
    /// The field is copied unchanged.
    Keep,
}

/// One mapping rule of a format, checked.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// Where the value is in the department's layout.
    pub own: FieldPath,
    /// Where it is in the shared layout.
    pub shared: FieldPath,
    /// The conversion, as written (`date:%Y%m%d`, `scale:10000`, ...).
    pub convert: Option<String>,
    /// The code table, own value → shared value.
    pub codes: Option<BTreeMap<String, Value>>,
}

/// A department's format for one schema, checked but not yet compiled into converters.
#[derive(Debug, Clone)]
pub struct FormatSpec {
    /// The policy for fields no rule covers.
    pub unmapped: Unmapped,
    /// The rules, in configuration order.
    pub rules: Vec<RuleSpec>,
}

/// The conversion kinds of SPEC §7, by the text before `:`.
const CONVERSIONS: [(&str, bool); 6] = [
    ("date", true),
    ("datetime", true),
    ("scale", true),
    ("number", false),
    ("string", false),
    ("boolean", true),
];

impl FormatSpec {
    /// Checks a `[formats.<schema>]` section; errors are `(key, reason)` pairs relative to it.
    pub fn parse(section: &FormatSection) -> Result<FormatSpec, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let unmapped = match section.unmapped.as_str() {
            "reject" => Unmapped::Reject,
            "drop" => Unmapped::Drop,
            "keep" => Unmapped::Keep,
            other => {
                errors.push((
                    "unmapped".to_owned(),
                    format!("{other:?} is not one of reject, drop, keep"),
                ));
                Unmapped::Reject
            }
        };
        let mut rules = Vec::with_capacity(section.fields.len());
        for (index, rule) in section.fields.iter().enumerate() {
            let key = format!("fields[{index}]");
            let own = FieldPath::parse(&rule.own)
                .map_err(|reason| errors.push((format!("{key}.own"), reason)))
                .ok();
            let shared = FieldPath::parse(&rule.shared)
                .map_err(|reason| errors.push((format!("{key}.shared"), reason)))
                .ok();
            if let (Some(own), Some(shared)) = (&own, &shared)
                && own.wildcard_count() != shared.wildcard_count()
            {
                errors.push((
                    key.clone(),
                    "own and shared must have the same number of * segments".to_owned(),
                ));
            }
            if let Some(convert) = &rule.convert {
                let (kind, argument) = convert.split_once(':').unwrap_or((convert, ""));
                match CONVERSIONS.iter().find(|(name, _)| *name == kind) {
                    Some((_, true)) if argument.is_empty() => errors.push((
                        format!("{key}.convert"),
                        format!("{kind} needs an argument ({kind}:...)"),
                    )),
                    Some((_, false)) if !argument.is_empty() || convert.contains(':') => errors
                        .push((format!("{key}.convert"), format!("{kind} takes no argument"))),
                    Some(_) => {}
                    None => errors.push((
                        format!("{key}.convert"),
                        format!(
                            "unknown conversion {kind:?}; expected one of date, datetime, scale, number, string, boolean"
                        ),
                    )),
                }
                if rule.codes.is_some() {
                    errors.push((
                        key.clone(),
                        "a rule has either convert or codes, not both".to_owned(),
                    ));
                }
            }
            let codes = rule.codes.as_ref().map(|table| {
                table
                    .iter()
                    .map(|(own, shared)| (own.clone(), toml_to_json(shared)))
                    .collect()
            });
            if let (Some(own), Some(shared)) = (own, shared) {
                rules.push(RuleSpec {
                    own,
                    shared,
                    convert: rule.convert.clone(),
                    codes,
                });
            }
        }
        if errors.is_empty() {
            Ok(FormatSpec { unmapped, rules })
        } else {
            Err(errors)
        }
    }
}

fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(text) => Value::String(text.clone()),
        toml::Value::Integer(number) => Value::from(*number),
        toml::Value::Float(number) => serde_json::Number::from_f64(*number)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        toml::Value::Boolean(flag) => Value::Bool(*flag),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), toml_to_json(value)))
                .collect(),
        ),
    }
}
