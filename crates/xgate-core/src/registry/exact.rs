//! The numeric keywords of JSON Schema compared exactly: `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum` and `multipleOf`, in place of the `jsonschema` crate's.
//!
//! With its `arbitrary-precision` feature the crate reads numbers from their text, and its
//! `type: integer`, `enum`, `const` and `uniqueItems` compare them exactly. Its range and
//! `multipleOf` keywords still go through `f64` on some paths: an instance with a fraction is
//! rounded before it meets a limit written as an integer past 2^53 or with an exponent
//! (`18014398509481985.5` passes `maximum: 18014398509481985`, `100.0000000000000000001` passes
//! `maximum: 1e2`), and before an integer divisor (`4.0000000000000001` passes `multipleOf: 2`).
//! These keywords replace them with [`crate::number::ExactNumber`]: both sides read from their
//! text, ordered and divided exactly at any precision.
//!
//! A violation is a custom error whose message is the limit's text; [`crate::i18n`] words it in
//! the caller's language like the crate's own.

use jsonschema::paths::Location;
use jsonschema::{Keyword, ValidationError, ValidationOptions};
use serde_json::{Map, Value};

use crate::number::{ExactNumber, MAX_EXACT_EXPONENT, OwnedNumber};
use crate::registry::draft::Dialect;

/// The keywords replaced, as they appear in a schema (and in violations).
pub const EXACT_KEYWORDS: [&str; 5] = [
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];

/// Which comparison a keyword makes against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Minimum,
    Maximum,
    ExclusiveMinimum,
    ExclusiveMaximum,
    MultipleOf,
}

impl Check {
    fn of(keyword: &str) -> Option<Check> {
        Some(match keyword {
            "minimum" => Check::Minimum,
            "maximum" => Check::Maximum,
            "exclusiveMinimum" => Check::ExclusiveMinimum,
            "exclusiveMaximum" => Check::ExclusiveMaximum,
            "multipleOf" => Check::MultipleOf,
            _ => return None,
        })
    }
}

/// One compiled keyword: the comparison and its limit's text.
struct ExactKeyword {
    check: Check,
    limit: OwnedNumber,
}

impl ExactKeyword {
    fn holds(&self, instance: &Value) -> bool {
        // Only numbers are constrained; the limit was read when the schema compiled.
        let Value::Number(number) = instance else {
            return true;
        };
        let Some(value) = ExactNumber::parse(number.as_str()) else {
            return false;
        };
        let limit = self.limit.exact();
        let order = value.cmp_exact(&limit);
        match self.check {
            Check::Minimum => order.is_ge(),
            Check::Maximum => order.is_le(),
            Check::ExclusiveMinimum => order.is_gt(),
            Check::ExclusiveMaximum => order.is_lt(),
            // Undecidable exactly (an exponent past 2^61) is a refusal, never a pass.
            Check::MultipleOf => value.is_multiple_of(&limit).unwrap_or(false),
        }
    }
}

impl<'i> Keyword<'i> for ExactKeyword {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        if self.holds(instance) {
            Ok(())
        } else {
            Err(ValidationError::custom(self.limit.text()))
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        self.holds(instance)
    }
}

/// Compiles one of [`EXACT_KEYWORDS`] from its schema value (meta-validation has already
/// checked it is a number, and a positive one for `multipleOf`).
fn compile<'a>(
    keyword: &'static str,
    schema: &'a Value,
) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>> {
    let check = Check::of(keyword)
        .ok_or_else(|| ValidationError::schema(format!("{keyword} is not a numeric keyword")))?;
    let Value::Number(number) = schema else {
        return Err(ValidationError::schema(format!(
            "{keyword} must be a number"
        )));
    };
    let limit = OwnedNumber::parse(number.as_str())
        .filter(|limit| limit.exact().is_moderate())
        .ok_or_else(|| {
            ValidationError::schema(format!(
                "{keyword} must be a number with an exponent of at most {MAX_EXACT_EXPONENT}"
            ))
        })?;
    if check == Check::MultipleOf && limit.exact().cmp_exact(&zero()).is_le() {
        return Err(ValidationError::schema("multipleOf must be greater than 0"));
    }
    Ok(Box::new(ExactKeyword { check, limit }))
}

fn zero() -> ExactNumber<'static> {
    ExactNumber::parse("0").unwrap_or_else(|| unreachable!("0 is a number"))
}

/// A draft-04 boolean `exclusiveMaximum`/`exclusiveMinimum`: it asserts nothing itself, it
/// makes its sibling `maximum`/`minimum` exclusive.
struct ExclusiveFlag;

impl<'i> Keyword<'i> for ExclusiveFlag {
    fn validate(&self, _: &'i Value) -> Result<(), ValidationError<'i>> {
        Ok(())
    }

    fn is_valid(&self, _: &'i Value) -> bool {
        true
    }
}

/// Compiles one of [`EXACT_KEYWORDS`] in a draft-04 schema, where `exclusiveMaximum` and
/// `exclusiveMinimum` are booleans beside `maximum` and `minimum`.
fn compile_draft_4<'a>(
    keyword: &'static str,
    parent: &Map<String, Value>,
    schema: &'a Value,
) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>> {
    let flag = match keyword {
        "exclusiveMaximum" | "exclusiveMinimum" => return Ok(Box::new(ExclusiveFlag)),
        "maximum" => "exclusiveMaximum",
        "minimum" => "exclusiveMinimum",
        _ => return compile(keyword, schema),
    };
    let mut compiled = compile(keyword, schema)?;
    if parent.get(flag) == Some(&Value::Bool(true)) {
        let limit = match schema {
            Value::Number(number) => OwnedNumber::parse(number.as_str()),
            _ => None,
        }
        .ok_or_else(|| ValidationError::schema(format!("{keyword} must be a number")))?;
        let check = if keyword == "maximum" {
            Check::ExclusiveMaximum
        } else {
            Check::ExclusiveMinimum
        };
        compiled = Box::new(ExactKeyword { check, limit });
    }
    Ok(compiled)
}

/// Adds the exact keywords to validator options (every schema the registry compiles), read as
/// `dialect` reads them.
pub fn with_exact_keywords(
    mut options: ValidationOptions<'static>,
    dialect: Dialect,
) -> ValidationOptions<'static> {
    for keyword in EXACT_KEYWORDS {
        options = if dialect == Dialect::Draft4 {
            options.with_keyword(
                keyword,
                move |parent: &Map<String, Value>, schema: &Value, _: Location| {
                    compile_draft_4(keyword, parent, schema)
                },
            )
        } else {
            options.with_keyword(
                keyword,
                move |_: &Map<String, Value>, schema: &Value, _: Location| compile(keyword, schema),
            )
        };
    }
    options
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn valid(schema: &str, instance: &str) -> bool {
        let schema: Value = crate::json::parse(schema.as_bytes()).unwrap();
        let instance: Value = crate::json::parse(instance.as_bytes()).unwrap();
        with_exact_keywords(jsonschema::options(), Dialect::Draft202012)
            .build(&schema)
            .unwrap_or_else(|error| panic!("{schema}: {error}"))
            .is_valid(&instance)
    }

    /// The issue's numbers, and each path where the crate's own keywords round.
    #[test]
    fn limits_hold_exactly() {
        for (schema, instance, expected) in [
            (r#"{"maximum":100}"#, "100.00000000000000001", false),
            (r#"{"maximum":100}"#, "100", true),
            (r#"{"maximum":100}"#, "100.000", true),
            (
                r#"{"type":"integer","maximum":10}"#,
                "10.0000000000000001",
                false,
            ),
            (r#"{"type":"integer","maximum":10}"#, "1e-400", false),
            (r#"{"maximum":10}"#, "1e-400", true),
            // An integer is a number whose exact value has no fraction, however it is written.
            (r#"{"type":"integer"}"#, "10.000", true),
            (r#"{"type":"integer"}"#, "1e2", true),
            (r#"{"type":"integer"}"#, "1.5e1", true),
            (r#"{"type":"integer"}"#, "1.55e1", false),
            (r#"{"type":"integer"}"#, "15e-1", false),
            (r#"{"type":"integer"}"#, "-0.0", true),
            (r#"{"type":"integer"}"#, "1e400", true),
            (
                r#"{"type":"integer"}"#,
                "123456789012345678901234567890",
                true,
            ),
            (
                r#"{"type":"integer"}"#,
                "123456789012345678901234567890.5",
                false,
            ),
            (
                r#"{"maximum":18014398509481985}"#,
                "18014398509481985.5",
                false,
            ),
            (r#"{"maximum":1e2}"#, "100.0000000000000000001", false),
            (r#"{"maximum":100.0}"#, "100.0000000000000000001", false),
            (r#"{"maximum":0.1}"#, "0.1000000000000000001", false),
            (r#"{"minimum":0.1}"#, "0.0999999999999999999", false),
            (r#"{"minimum":0}"#, "-1e-400", false),
            (r#"{"exclusiveMinimum":0}"#, "1e-400", true),
            (r#"{"exclusiveMinimum":0}"#, "0.0", false),
            (r#"{"exclusiveMaximum":100}"#, "99.99999999999999999", true),
            (r#"{"exclusiveMaximum":100}"#, "1e2", false),
            (r#"{"minimum":-1e400}"#, "-1e401", false),
            (r#"{"maximum":1e400}"#, "1e399", true),
            (r#"{"multipleOf":2}"#, "4.0000000000000001", false),
            (r#"{"multipleOf":1}"#, "10.0000000000000001", false),
            (r#"{"multipleOf":2}"#, "1e-400", false),
            (r#"{"multipleOf":0.01}"#, "1070468.14", true),
            (r#"{"multipleOf":0.01}"#, "0.0100000000000000001", false),
            (
                r#"{"multipleOf":3}"#,
                "135107988821114880000000000001",
                false,
            ),
            (r#"{"multipleOf":1e-400}"#, "1", true),
            (r#"{"maximum":5}"#, r#""not a number""#, true),
            (r#"{"maximum":5}"#, "1e99999999999999999999999", false),
            (r#"{"minimum":5}"#, "1e99999999999999999999999", true),
            (r#"{"multipleOf":5}"#, "1e99999999999999999999999", false),
        ] {
            assert_eq!(valid(schema, instance), expected, "{schema} {instance}");
        }
    }

    #[test]
    fn violations_carry_the_limit_as_written() {
        let validator = with_exact_keywords(jsonschema::options(), Dialect::Draft202012)
            .build(&json!({"properties": {"amount": {"maximum": 100}}}))
            .unwrap();
        let instance = crate::json::parse(br#"{"amount":100.00000000000000001}"#).unwrap();
        let errors: Vec<_> = validator.iter_errors(&instance).collect();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].instance_path().to_string(), "/amount");
        assert!(matches!(
            errors[0].kind(),
            jsonschema::error::ValidationErrorKind::Custom { keyword, message }
                if keyword == "maximum" && message == "100"
        ));
        // Worded like the crate's own violations, in both languages.
        assert_eq!(crate::i18n::violation_keyword(&errors[0]), "maximum");
        assert_eq!(
            crate::i18n::violation_message(&errors[0], crate::i18n::Lang::En),
            "100.00000000000000001 is greater than the maximum of 100"
        );
        assert_eq!(
            crate::i18n::violation_message(&errors[0], crate::i18n::Lang::Zh),
            "不得大于 100"
        );
    }

    #[test]
    fn limits_past_the_exact_range_are_refused_when_compiling() {
        for schema in [
            json!({"maximum": "ten"}),
            json!({"multipleOf": 0}),
            json!({"multipleOf": -2}),
        ] {
            assert!(
                with_exact_keywords(jsonschema::options(), Dialect::Draft202012)
                    .build(&schema)
                    .is_err(),
                "{schema}"
            );
        }
        let huge = crate::json::parse(br#"{"maximum":1e99999999999999999999}"#).unwrap();
        assert!(
            with_exact_keywords(jsonschema::options(), Dialect::Draft202012)
                .build(&huge)
                .is_err()
        );
    }
}
