//! The two languages of responses (SPEC §10): choosing one from `Accept-Language`, and wording
//! schema violations in it without ever echoing more than a short excerpt of the caller's data.

use std::fmt::{self, Display, Write as _};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError};
use serde_json::Value;

/// How many `Accept-Language` entries are looked at: a real browser sends a handful, and a
/// hostile header of thousands of entries must not cost more than a short one.
const MAX_ACCEPT_LANGUAGE_ENTRIES: usize = 32;

/// How many characters of caller-supplied data (the instance value, property names) a message
/// may quote, so a 1 MB string in a record does not come back in the response.
const MAX_INSTANCE_EXCERPT_CHARS: usize = 200;

/// How many characters of schema-supplied data (enum values, const values, patterns, `not`
/// schemas) a message may quote: schemas are ours, but a long enum would drown the message.
const MAX_SCHEMA_EXCERPT_CHARS: usize = 200;

/// How deeply `propertyNames` violations are unwrapped; the library nests them at most once in
/// practice, and the bound keeps the recursion finite whatever it does.
const MAX_NESTED_VIOLATION_DEPTH: usize = 4;

/// The language of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// English, the default.
    #[default]
    En,
    /// Simplified Chinese, for callers that prefer any `zh` tag.
    Zh,
}

impl Lang {
    /// Chooses from an Accept-Language header value (RFC 9110 §12.5.4): Chinese when the
    /// highest-weighted tag among those starting with `zh` (any case: zh, zh-CN, zh-Hans-CN, ZH-tw)
    /// weighs more than every non-zh tag (including `*`); a tag with q=0 never counts; English otherwise.
    /// Bounded work on hostile input: look at no more than the first 32 entries, never panic.
    ///
    /// "Starting with `zh`" means the primary subtag is `zh`: `zha` (Zhuang) is not Chinese.
    /// Malformed entries (a bad tag, a bad or repeated weight) are skipped, as if absent.
    #[must_use]
    pub fn from_accept_language(value: Option<&str>) -> Lang {
        let Some(value) = value else {
            return Lang::En;
        };
        // Weights are kept in thousandths, the precision RFC 9110 allows, so they compare exactly.
        let mut best_chinese_weight = 0_u16;
        let mut best_other_weight = 0_u16;
        for entry in value.split(',').take(MAX_ACCEPT_LANGUAGE_ENTRIES) {
            let Some((language_range, weight)) = parse_language_entry(entry) else {
                continue;
            };
            if is_chinese_range(language_range) {
                best_chinese_weight = best_chinese_weight.max(weight);
            } else {
                best_other_weight = best_other_weight.max(weight);
            }
        }
        if best_chinese_weight > best_other_weight {
            Lang::Zh
        } else {
            Lang::En
        }
    }

    /// Picks one of two texts.
    #[must_use]
    pub fn pick(self, en: &'static str, zh: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::Zh => zh,
        }
    }
}

/// One `Accept-Language` entry (`language-range [ OWS ";" OWS "q=" qvalue ]`) as its range and
/// its weight in thousandths, or `None` when it is malformed.
fn parse_language_entry(entry: &str) -> Option<(&str, u16)> {
    let mut parts = entry.split(';');
    let language_range = parts.next()?.trim();
    if !is_language_range(language_range) {
        return None;
    }
    let weight = match parts.next() {
        None => 1000,
        Some(parameter) => {
            let (name, qvalue) = parameter.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("q") {
                return None;
            }
            parse_qvalue(qvalue.trim())?
        }
    };
    // The grammar allows one weight and nothing after it.
    if parts.next().is_some() {
        return None;
    }
    Some((language_range, weight))
}

/// RFC 4647 `language-range`: `*`, or `1*8ALPHA *("-" 1*8alphanum)` (a `*` subtag is tolerated,
/// as in the extended ranges some clients send).
fn is_language_range(text: &str) -> bool {
    if text == "*" {
        return true;
    }
    let mut subtags = text.split('-');
    let primary_is_valid = subtags.next().is_some_and(|primary| {
        (1..=8).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic())
    });
    primary_is_valid
        && subtags.all(|subtag| {
            subtag == "*"
                || ((1..=8).contains(&subtag.len())
                    && subtag.bytes().all(|b| b.is_ascii_alphanumeric()))
        })
}

/// Whether a (valid) language range is Chinese: its primary subtag is `zh`, in any case.
fn is_chinese_range(language_range: &str) -> bool {
    language_range
        .split('-')
        .next()
        .is_some_and(|primary| primary.eq_ignore_ascii_case("zh"))
}

/// RFC 9110 `qvalue` (`0[.ddd]` or `1[.000]`) in thousandths.
fn parse_qvalue(text: &str) -> Option<u16> {
    let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match integer {
        "0" => {
            let mut thousandths = 0_u16;
            for position in 0..3 {
                let digit = fraction.as_bytes().get(position).map_or(0, |b| b - b'0');
                thousandths = thousandths * 10 + u16::from(digit);
            }
            Some(thousandths)
        }
        "1" if fraction.bytes().all(|b| b == b'0') => Some(1000),
        _ => None,
    }
}

/// What the gateway's own `pattern` keyword (`registry::pattern`) found, carried in the message
/// of the library's custom error (the only error a custom keyword can raise) and worded here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFailure<'a> {
    /// The string does not match `pattern`.
    Mismatch {
        /// The schema's pattern.
        pattern: &'a str,
    },
    /// The match could not be finished within the step limit of one match.
    StepLimit,
    /// The record's matches spent their budget before this one could run.
    Budget,
    /// The schema's pattern is not a valid regular expression (at compile time).
    Invalid {
        /// The schema's pattern.
        pattern: &'a str,
    },
    /// The schema's `pattern` is not a string (at compile time).
    NotAString,
}

/// Separates a [`PatternFailure`]'s tag from its pattern in the carried message.
const PATTERN_FAILURE_SEPARATOR: char = '\u{1f}';

impl<'a> PatternFailure<'a> {
    /// The message carried by the custom error.
    #[must_use]
    pub fn encode(&self) -> String {
        let (tag, pattern) = match self {
            PatternFailure::Mismatch { pattern } => ("mismatch", *pattern),
            PatternFailure::StepLimit => ("step-limit", ""),
            PatternFailure::Budget => ("budget", ""),
            PatternFailure::Invalid { pattern } => ("invalid", *pattern),
            PatternFailure::NotAString => ("not-a-string", ""),
        };
        format!("xgate-pattern-{tag}{PATTERN_FAILURE_SEPARATOR}{pattern}")
    }

    /// The failure a carried message stands for; `None` for any other text.
    #[must_use]
    pub fn decode(message: &'a str) -> Option<PatternFailure<'a>> {
        let (tag, pattern) = message
            .strip_prefix("xgate-pattern-")?
            .split_once(PATTERN_FAILURE_SEPARATOR)?;
        Some(match tag {
            "mismatch" => PatternFailure::Mismatch { pattern },
            "step-limit" => PatternFailure::StepLimit,
            "budget" => PatternFailure::Budget,
            "invalid" => PatternFailure::Invalid { pattern },
            "not-a-string" => PatternFailure::NotAString,
            _ => return None,
        })
    }

    /// The failure in `lang`, quoting at most an excerpt of the offending value when given.
    #[must_use]
    pub fn message(&self, instance: Option<&Value>, lang: Lang) -> String {
        let shown = || instance.map_or_else(|| "A value".to_owned(), instance_excerpt);
        match (self, lang) {
            (PatternFailure::Mismatch { pattern }, Lang::En) => format!(
                "{} does not match {}",
                shown(),
                quoted_excerpt(pattern, MAX_SCHEMA_EXCERPT_CHARS)
            ),
            (PatternFailure::Mismatch { pattern }, Lang::Zh) => format!(
                "不符合正则表达式 {}",
                quoted_excerpt(pattern, MAX_SCHEMA_EXCERPT_CHARS)
            ),
            (PatternFailure::StepLimit, Lang::En) => format!(
                "{} could not be matched against the pattern within the backtracking limit",
                shown()
            ),
            (PatternFailure::StepLimit, Lang::Zh) => {
                "无法在回溯次数限制内完成正则表达式匹配".to_owned()
            }
            (PatternFailure::Budget, Lang::En) => {
                "The record's patterns took more than their budget of matching steps".to_owned()
            }
            (PatternFailure::Budget, Lang::Zh) => "记录的正则表达式匹配超出了步数预算".to_owned(),
            (PatternFailure::Invalid { pattern }, Lang::En) => format!(
                "{} is not a valid regular expression (ECMA-262) within the size limit",
                quoted_excerpt(pattern, MAX_SCHEMA_EXCERPT_CHARS)
            ),
            (PatternFailure::Invalid { pattern }, Lang::Zh) => format!(
                "{} 不是有效的正则表达式（ECMA-262），或超出了大小限制",
                quoted_excerpt(pattern, MAX_SCHEMA_EXCERPT_CHARS)
            ),
            (PatternFailure::NotAString, Lang::En) => "pattern must be a string".to_owned(),
            (PatternFailure::NotAString, Lang::Zh) => "pattern 必须是字符串".to_owned(),
        }
    }
}

/// The message of the gateway's own `pattern` keyword's custom error.
fn pattern_message(message: &str, instance: &Value, lang: Lang) -> String {
    match PatternFailure::decode(message) {
        Some(failure) => failure.message(Some(instance), lang),
        None => bounded_text(message, MAX_SCHEMA_EXCERPT_CHARS),
    }
}

/// Whether an error is a `pattern` match cut off by the step limit of one match.
#[must_use]
pub fn is_pattern_step_limit(error: &ValidationError<'_>) -> bool {
    matches!(
        error.kind(),
        ValidationErrorKind::Custom { keyword, message }
            if keyword == "pattern"
                && PatternFailure::decode(message) == Some(PatternFailure::StepLimit)
    )
}

/// The violation of a record whose `pattern` matches took more than `steps` steps together.
#[must_use]
pub fn pattern_budget_message(steps: u64, lang: Lang) -> String {
    match lang {
        Lang::En => format!(
            "The record's patterns took more than the budget of {steps} matching steps for one record"
        ),
        Lang::Zh => format!("记录的正则表达式匹配超过了每条记录 {steps} 步的预算"),
    }
}

/// Why a `patternProperties` regex that needs backtracking is refused.
#[must_use]
pub fn backtracking_property_pattern_message(regex: &str, lang: Lang) -> String {
    let quoted = quoted_excerpt(regex, MAX_SCHEMA_EXCERPT_CHARS);
    match lang {
        Lang::En => format!(
            "{quoted} needs backtracking (look-around or back-references); patternProperties regexes are matched against every property name of a record, so only regexes without backtracking are accepted there (propertyNames with pattern is budgeted per record)"
        ),
        Lang::Zh => format!(
            "{quoted} 需要回溯匹配（环视或反向引用）；patternProperties 的正则表达式要与记录的每个字段名匹配，此处只接受无需回溯的正则表达式（propertyNames 中的 pattern 按记录计算预算）"
        ),
    }
}

/// The message of a missing required field, named `name` (in the caller's own layout when a
/// format maps it).
pub fn required_message(name: &str, lang: Lang) -> String {
    let quoted = instance_excerpt(&Value::String(name.to_owned()));
    match lang {
        Lang::En => format!("{quoted} is a required property"),
        Lang::Zh => format!("缺少必填字段 {quoted}"),
    }
}

/// The JSON Schema keyword a violation is about ("required", "type", "format", "maxLength", ...):
/// the keyword name as it appears in the schema; "false" for a `false` schema.
///
/// Where the library reports several keywords with one error kind (`required` and
/// `dependentRequired`; `contains`, `minContains` and `maxContains`), the last segment of the
/// violation's schema path tells them apart. A `false` schema under `additionalProperties` is
/// reported as `additionalProperties`, since that is the keyword the schema's author wrote.
/// A custom keyword's name is not known statically, so it is reported as "custom".
#[must_use]
pub fn violation_keyword(error: &ValidationError<'_>) -> &'static str {
    let last_schema_segment = error
        .schema_path()
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or("");
    let refined = |candidates: &[&'static str], default: &'static str| -> &'static str {
        candidates
            .iter()
            .copied()
            .find(|candidate| *candidate == last_schema_segment)
            .unwrap_or(default)
    };
    match error.kind() {
        ValidationErrorKind::AdditionalItems { .. } => {
            refined(&["additionalItems", "items"], "additionalItems")
        }
        ValidationErrorKind::AdditionalProperties { .. } => "additionalProperties",
        ValidationErrorKind::AnyOf { .. } => "anyOf",
        ValidationErrorKind::BacktrackLimitExceeded { .. }
        | ValidationErrorKind::RegexEngineFailure { .. }
        | ValidationErrorKind::Pattern { .. } => "pattern",
        ValidationErrorKind::Constant { .. } => "const",
        ValidationErrorKind::Contains => {
            refined(&["contains", "minContains", "maxContains"], "contains")
        }
        ValidationErrorKind::ContentEncoding { .. } | ValidationErrorKind::FromUtf8 { .. } => {
            "contentEncoding"
        }
        ValidationErrorKind::ContentMediaType { .. } => "contentMediaType",
        // The gateway's own `pattern` keyword (`registry::pattern`).
        ValidationErrorKind::Custom { keyword, .. } if keyword == "pattern" => "pattern",
        ValidationErrorKind::Custom { keyword, .. } => exact_keyword(keyword).unwrap_or("custom"),
        ValidationErrorKind::Enum { .. } => "enum",
        ValidationErrorKind::ExclusiveMaximum { .. } => "exclusiveMaximum",
        ValidationErrorKind::ExclusiveMinimum { .. } => "exclusiveMinimum",
        ValidationErrorKind::FalseSchema => refined(&["additionalProperties"], "false"),
        ValidationErrorKind::Format { .. } => "format",
        ValidationErrorKind::MaxItems { .. } => "maxItems",
        ValidationErrorKind::Maximum { .. } => "maximum",
        ValidationErrorKind::MaxLength { .. } => "maxLength",
        ValidationErrorKind::MaxProperties { .. } => "maxProperties",
        ValidationErrorKind::MinItems { .. } => "minItems",
        ValidationErrorKind::Minimum { .. } => "minimum",
        ValidationErrorKind::MinLength { .. } => "minLength",
        ValidationErrorKind::MinProperties { .. } => "minProperties",
        ValidationErrorKind::MultipleOf { .. } => "multipleOf",
        ValidationErrorKind::Not { .. } => "not",
        ValidationErrorKind::OneOfMultipleValid { .. }
        | ValidationErrorKind::OneOfNotValid { .. } => "oneOf",
        ValidationErrorKind::PropertyNames { .. } => "propertyNames",
        ValidationErrorKind::Required { .. } => refined(
            &["required", "dependentRequired", "dependencies"],
            "required",
        ),
        ValidationErrorKind::Type { .. } => "type",
        ValidationErrorKind::UnevaluatedItems { .. } => "unevaluatedItems",
        ValidationErrorKind::UnevaluatedProperties { .. } => "unevaluatedProperties",
        ValidationErrorKind::UniqueItems => "uniqueItems",
        ValidationErrorKind::Referencing(_) => "$ref",
    }
}

/// The name of a numeric keyword the registry compares exactly (a custom keyword of the crate's,
/// `crate::registry::exact`, whose message is the limit's text).
fn exact_keyword(keyword: &str) -> Option<&'static str> {
    [
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    ]
    .into_iter()
    .find(|exact| *exact == keyword)
}

/// A human message for one violation, in the given language. English may reuse the library's
/// Display text. Chinese is written per error kind (every `ValidationErrorKind` variant, with the
/// kind's data interpolated: the property name for required, the expected types for type, the
/// limit for minimum/maxLength/minItems..., the format name for format, the allowed values for
/// enum/const (JSON, truncated to a bounded length), the pattern for pattern, ...).
/// Messages never include more than 200 characters of the offending instance value, so a
/// hostile 1 MB string does not end up in a response.
///
/// English messages follow the library's wording but are built here, because its Display quotes
/// the whole instance. Chinese messages state the rule and leave the value out: the violation's
/// pointer already says which value it is.
#[must_use]
pub fn violation_message(error: &ValidationError<'_>, lang: Lang) -> String {
    message_at_depth(error, lang, 0)
}

fn message_at_depth(error: &ValidationError<'_>, lang: Lang, depth: usize) -> String {
    match lang {
        Lang::En => english_message(error, depth),
        Lang::Zh => chinese_message(error, depth),
    }
}

#[allow(clippy::too_many_lines)] // One arm per error kind; splitting it would only scatter them.
fn english_message(error: &ValidationError<'_>, depth: usize) -> String {
    let instance: &Value = error.instance();
    let shown = || instance_excerpt(instance);
    match error.kind() {
        ValidationErrorKind::AdditionalItems { limit } => {
            let count = instance.as_array().map_or(0, Vec::len);
            format!("Additional items are not allowed (at most {limit} allowed, {count} found)")
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let adjective = if matches!(
                error.kind(),
                ValidationErrorKind::UnevaluatedProperties { .. }
            ) {
                "Unevaluated"
            } else {
                "Additional"
            };
            let verb = if unexpected.len() == 1 { "was" } else { "were" };
            format!(
                "{adjective} properties are not allowed ({} {verb} unexpected)",
                name_list(unexpected, ", ", Lang::En)
            )
        }
        ValidationErrorKind::UnevaluatedItems { unexpected } => {
            let verb = if unexpected.len() == 1 { "was" } else { "were" };
            format!(
                "Unevaluated items are not allowed ({} {verb} unexpected)",
                plain_list(unexpected, ", ", Lang::En)
            )
        }
        ValidationErrorKind::AnyOf { .. } => format!(
            "{} is not valid under any of the schemas listed in the 'anyOf' keyword",
            shown()
        ),
        ValidationErrorKind::OneOfNotValid { .. } => format!(
            "{} is not valid under any of the schemas listed in the 'oneOf' keyword",
            shown()
        ),
        ValidationErrorKind::OneOfMultipleValid { .. } => format!(
            "{} is valid under more than one of the schemas listed in the 'oneOf' keyword",
            shown()
        ),
        ValidationErrorKind::BacktrackLimitExceeded { .. } => format!(
            "{} could not be matched against the pattern within the backtracking limit",
            shown()
        ),
        // The engine's own message describes its internals, which callers have no use for.
        ValidationErrorKind::RegexEngineFailure { .. } => {
            format!("The pattern could not be evaluated against {}", shown())
        }
        ValidationErrorKind::Constant { expected_value } => {
            format!("{} was expected", schema_excerpt(expected_value.as_ref()))
        }
        ValidationErrorKind::Contains => match violation_keyword(error) {
            "minContains" => format!(
                "{} contains fewer items valid under the given schema than 'minContains' requires",
                shown()
            ),
            "maxContains" => format!(
                "{} contains more items valid under the given schema than 'maxContains' allows",
                shown()
            ),
            _ => format!("None of {} are valid under the given schema", shown()),
        },
        ValidationErrorKind::ContentEncoding { content_encoding } => format!(
            "{} is not compliant with {} content encoding",
            shown(),
            quoted_excerpt(content_encoding, MAX_SCHEMA_EXCERPT_CHARS)
        ),
        ValidationErrorKind::ContentMediaType { content_media_type } => format!(
            "{} is not compliant with {} media type",
            shown(),
            quoted_excerpt(content_media_type, MAX_SCHEMA_EXCERPT_CHARS)
        ),
        ValidationErrorKind::FromUtf8 { .. } => "The decoded content is not valid UTF-8".to_owned(),
        ValidationErrorKind::Custom { keyword, message } if keyword == "pattern" => {
            pattern_message(message, instance, Lang::En)
        }
        ValidationErrorKind::Custom { keyword, message } => {
            let limit = bounded_text(message, MAX_SCHEMA_EXCERPT_CHARS);
            match exact_keyword(keyword) {
                Some("minimum") => format!("{} is less than the minimum of {limit}", shown()),
                Some("maximum") => format!("{} is greater than the maximum of {limit}", shown()),
                Some("exclusiveMinimum") => format!(
                    "{} is less than or equal to the minimum of {limit}",
                    shown()
                ),
                Some("exclusiveMaximum") => format!(
                    "{} is greater than or equal to the maximum of {limit}",
                    shown()
                ),
                Some(_) => format!("{} is not a multiple of {limit}", shown()),
                None => limit,
            }
        }
        ValidationErrorKind::Enum { options } => format!(
            "{} is not one of {}",
            shown(),
            schema_excerpt(options.as_ref())
        ),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!(
            "{} is greater than or equal to the maximum of {}",
            shown(),
            schema_excerpt(limit)
        ),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!(
            "{} is less than or equal to the minimum of {}",
            shown(),
            schema_excerpt(limit)
        ),
        ValidationErrorKind::Maximum { limit } => format!(
            "{} is greater than the maximum of {}",
            shown(),
            schema_excerpt(limit)
        ),
        ValidationErrorKind::Minimum { limit } => format!(
            "{} is less than the minimum of {}",
            shown(),
            schema_excerpt(limit)
        ),
        ValidationErrorKind::FalseSchema => {
            if violation_keyword(error) == "additionalProperties" {
                "Additional properties are not allowed".to_owned()
            } else {
                format!("False schema does not allow {}", shown())
            }
        }
        ValidationErrorKind::Format { format } => format!(
            "{} is not a {}",
            shown(),
            quoted_excerpt(format, MAX_SCHEMA_EXCERPT_CHARS)
        ),
        ValidationErrorKind::MaxLength { limit } => format!(
            "{} is longer than {limit} {}",
            shown(),
            plural(*limit, "character", "characters")
        ),
        ValidationErrorKind::MinLength { limit } => format!(
            "{} is shorter than {limit} {}",
            shown(),
            plural(*limit, "character", "characters")
        ),
        ValidationErrorKind::MaxItems { limit } => format!(
            "{} has more than {limit} {}",
            shown(),
            plural(*limit, "item", "items")
        ),
        ValidationErrorKind::MinItems { limit } => format!(
            "{} has less than {limit} {}",
            shown(),
            plural(*limit, "item", "items")
        ),
        ValidationErrorKind::MaxProperties { limit } => format!(
            "{} has more than {limit} {}",
            shown(),
            plural(*limit, "property", "properties")
        ),
        ValidationErrorKind::MinProperties { limit } => format!(
            "{} has less than {limit} {}",
            shown(),
            plural(*limit, "property", "properties")
        ),
        ValidationErrorKind::MultipleOf { multiple_of } => format!(
            "{} is not a multiple of {}",
            shown(),
            bounded_display(multiple_of, MAX_SCHEMA_EXCERPT_CHARS)
        ),
        ValidationErrorKind::Not { schema } => {
            format!("{} is not allowed for {}", schema_excerpt(schema), shown())
        }
        ValidationErrorKind::Pattern { pattern } => format!(
            "{} does not match {}",
            shown(),
            quoted_excerpt(pattern, MAX_SCHEMA_EXCERPT_CHARS)
        ),
        ValidationErrorKind::PropertyNames { error: inner } => {
            if depth >= MAX_NESTED_VIOLATION_DEPTH {
                "Invalid property name".to_owned()
            } else {
                format!(
                    "Invalid property name: {}",
                    message_at_depth(inner, Lang::En, depth + 1)
                )
            }
        }
        ValidationErrorKind::Required { property } => match property.as_str() {
            Some(name) => required_message(name, Lang::En),
            None => format!("{} is a required property", instance_excerpt(property)),
        },
        ValidationErrorKind::Type { kind } => format!(
            "{} is not of type {}",
            shown(),
            expected_types(kind, Lang::En)
        ),
        ValidationErrorKind::UniqueItems => format!("{} has non-unique elements", shown()),
        // Resolution errors name schema locations, which are internal to the gateway.
        ValidationErrorKind::Referencing(_) => {
            "A schema reference could not be resolved".to_owned()
        }
    }
}

#[allow(clippy::too_many_lines)] // One arm per error kind; splitting it would only scatter them.
fn chinese_message(error: &ValidationError<'_>, depth: usize) -> String {
    match error.kind() {
        ValidationErrorKind::AdditionalItems { limit } => {
            format!("数组最多只能有 {limit} 个元素")
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            format!(
                "不允许出现未定义的字段 {}",
                name_list(unexpected, "、", Lang::Zh)
            )
        }
        ValidationErrorKind::UnevaluatedItems { unexpected } => format!(
            "不允许出现未定义的数组元素 {}",
            plain_list(unexpected, "、", Lang::Zh)
        ),
        ValidationErrorKind::AnyOf { .. } => "不符合 anyOf 所列模式中的任何一个".to_owned(),
        ValidationErrorKind::OneOfNotValid { .. } => "不符合 oneOf 所列模式中的任何一个".to_owned(),
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            "同时符合 oneOf 所列的多个模式，只能符合其中一个".to_owned()
        }
        ValidationErrorKind::BacktrackLimitExceeded { .. } => {
            "无法在回溯次数限制内完成正则表达式匹配".to_owned()
        }
        ValidationErrorKind::RegexEngineFailure { .. } => "无法完成正则表达式匹配".to_owned(),
        ValidationErrorKind::Constant { expected_value } => {
            format!("取值必须为 {}", schema_excerpt(expected_value.as_ref()))
        }
        ValidationErrorKind::Contains => match violation_keyword(error) {
            "minContains" => "数组中符合要求的元素少于 minContains 规定的数量".to_owned(),
            "maxContains" => "数组中符合要求的元素多于 maxContains 允许的数量".to_owned(),
            _ => "数组中没有符合要求的元素".to_owned(),
        },
        ValidationErrorKind::ContentEncoding { content_encoding } => format!(
            "内容不符合 {} 编码",
            quoted_excerpt(content_encoding, MAX_SCHEMA_EXCERPT_CHARS)
        ),
        ValidationErrorKind::ContentMediaType { content_media_type } => format!(
            "内容不符合 {} 媒体类型",
            quoted_excerpt(content_media_type, MAX_SCHEMA_EXCERPT_CHARS)
        ),
        ValidationErrorKind::FromUtf8 { .. } => "解码后的内容不是有效的 UTF-8 文本".to_owned(),
        // A custom keyword brings its own (untranslated) message; it is the only account of
        // what went wrong, so it is passed on rather than replaced.
        ValidationErrorKind::Custom { keyword, message } if keyword == "pattern" => {
            pattern_message(message, error.instance(), Lang::Zh)
        }
        ValidationErrorKind::Custom { keyword, message } => {
            let limit = bounded_text(message, MAX_SCHEMA_EXCERPT_CHARS);
            match exact_keyword(keyword) {
                Some("minimum") => format!("不得小于 {limit}"),
                Some("maximum") => format!("不得大于 {limit}"),
                Some("exclusiveMinimum") => format!("必须大于 {limit}"),
                Some("exclusiveMaximum") => format!("必须小于 {limit}"),
                Some(_) => format!("必须是 {limit} 的整数倍"),
                None => format!("不符合自定义规则：{limit}"),
            }
        }
        ValidationErrorKind::Enum { options } => {
            format!("取值必须是以下之一：{}", schema_excerpt(options.as_ref()))
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            format!("必须小于 {}", schema_excerpt(limit))
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            format!("必须大于 {}", schema_excerpt(limit))
        }
        ValidationErrorKind::Maximum { limit } => format!("不得大于 {}", schema_excerpt(limit)),
        ValidationErrorKind::Minimum { limit } => format!("不得小于 {}", schema_excerpt(limit)),
        ValidationErrorKind::FalseSchema => {
            if violation_keyword(error) == "additionalProperties" {
                "不允许出现未定义的字段".to_owned()
            } else {
                "此处不允许出现任何值".to_owned()
            }
        }
        ValidationErrorKind::Format { format } => chinese_format_message(format),
        ValidationErrorKind::MaxLength { limit } => format!("长度不得超过 {limit} 个字符"),
        ValidationErrorKind::MinLength { limit } => format!("长度不得少于 {limit} 个字符"),
        ValidationErrorKind::MaxItems { limit } => format!("元素个数不得超过 {limit} 个"),
        ValidationErrorKind::MinItems { limit } => format!("元素个数不得少于 {limit} 个"),
        ValidationErrorKind::MaxProperties { limit } => format!("字段个数不得超过 {limit} 个"),
        ValidationErrorKind::MinProperties { limit } => format!("字段个数不得少于 {limit} 个"),
        ValidationErrorKind::MultipleOf { multiple_of } => format!(
            "必须是 {} 的整数倍",
            bounded_display(multiple_of, MAX_SCHEMA_EXCERPT_CHARS)
        ),
        ValidationErrorKind::Not { schema } => {
            format!("不得符合以下模式：{}", schema_excerpt(schema))
        }
        ValidationErrorKind::Pattern { pattern } => format!(
            "不符合正则表达式 {}",
            quoted_excerpt(pattern, MAX_SCHEMA_EXCERPT_CHARS)
        ),
        ValidationErrorKind::PropertyNames { error: inner } => {
            // The inner violation's instance is the offending property name itself.
            let name = instance_excerpt(inner.instance());
            if depth >= MAX_NESTED_VIOLATION_DEPTH {
                format!("字段名 {name} 无效")
            } else {
                format!(
                    "字段名 {name} 无效：{}",
                    message_at_depth(inner, Lang::Zh, depth + 1)
                )
            }
        }
        ValidationErrorKind::Required { property } => match property.as_str() {
            Some(name) => required_message(name, Lang::Zh),
            None => format!("缺少必填字段 {}", instance_excerpt(property)),
        },
        ValidationErrorKind::Type { kind } => format!(
            "应为{}类型，实际为{}",
            expected_types(kind, Lang::Zh),
            chinese_value_type_name(error.instance())
        ),
        ValidationErrorKind::UniqueItems => "数组元素不得重复".to_owned(),
        ValidationErrorKind::Referencing(_) => "无法解析模式引用".to_owned(),
    }
}

/// "Not a valid X" in Chinese, naming the formats callers meet in our schemas (SPEC §6).
fn chinese_format_message(format: &str) -> String {
    let chinese_name = match format {
        "cn-resident-id" => "公民身份号码",
        "cn-uscc" => "统一社会信用代码",
        "cn-elicense-id" => "电子证照标识",
        "date" => "日期 (YYYY-MM-DD)",
        "date-time" => "日期时间 (RFC 3339)",
        "time" => "时间 (RFC 3339)",
        "duration" => "时长 (ISO 8601)",
        "email" => "电子邮箱",
        "hostname" => "主机名",
        "ipv4" => " IPv4 地址",
        "ipv6" => " IPv6 地址",
        "uri" => " URI",
        "uuid" => " UUID",
        "regex" => "正则表达式",
        _ => {
            return format!(
                "不符合 {} 格式",
                quoted_excerpt(format, MAX_SCHEMA_EXCERPT_CHARS)
            );
        }
    };
    // Names that start with Latin letters carry their own leading space, the usual spacing
    // between Chinese and Latin text.
    format!("不是有效的{chinese_name}")
}

/// The expected type(s) of a `type` violation: `"string"` or `"string", "null"` in English;
/// 字符串 or 字符串或空值 in Chinese.
fn expected_types(kind: &TypeKind, lang: Lang) -> String {
    let types: Vec<JsonType> = match kind {
        TypeKind::Single(single) => vec![*single],
        TypeKind::Multiple(set) => set.iter().collect(),
    };
    match lang {
        Lang::En => types
            .iter()
            .map(|json_type| format!("\"{}\"", json_type.as_str()))
            .collect::<Vec<_>>()
            .join(", "),
        Lang::Zh => {
            let names: Vec<&str> = types.iter().map(|t| chinese_type_name(*t)).collect();
            match names.split_last() {
                None => String::new(),
                Some((last, [])) => (*last).to_owned(),
                Some((last, rest)) => format!("{}或{last}", rest.join("、")),
            }
        }
    }
}

fn chinese_type_name(json_type: JsonType) -> &'static str {
    match json_type {
        JsonType::String => "字符串",
        JsonType::Number => "数字",
        JsonType::Integer => "整数",
        JsonType::Boolean => "布尔值",
        JsonType::Object => "对象",
        JsonType::Array => "数组",
        JsonType::Null => "空值",
    }
}

/// What a value is, in Chinese. Every number is 数字: "expected integer, got number" is how
/// a caller who sent 1.5 for an integer field reads the rule.
fn chinese_value_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "空值",
        Value::Bool(_) => "布尔值",
        Value::Number(_) => "数字",
        Value::String(_) => "字符串",
        Value::Array(_) => "数组",
        Value::Object(_) => "对象",
    }
}

fn plural(count: u64, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 { one } else { many }
}

/// Caller-supplied property names as a JSON-quoted list, within the instance budget; when it runs
/// out, the list ends with an ellipsis and says how many names there were.
fn name_list(names: &[String], separator: &str, lang: Lang) -> String {
    bounded_list(names, separator, lang, |text, name| {
        write!(text, "{}", JsonString(name))
    })
}

/// Like [`name_list`] for entries the library has already rendered (unevaluated items).
fn plain_list(entries: &[String], separator: &str, lang: Lang) -> String {
    bounded_list(entries, separator, lang, |text, entry| {
        text.write_str(entry)
    })
}

fn bounded_list(
    entries: &[String],
    separator: &str,
    lang: Lang,
    write_entry: impl Fn(&mut BoundedText, &str) -> fmt::Result,
) -> String {
    let mut text = BoundedText::new(MAX_INSTANCE_EXCERPT_CHARS);
    for (index, entry) in entries.iter().enumerate() {
        let written = if index == 0 {
            Ok(())
        } else {
            text.write_str(separator)
        };
        // The writer refuses once the budget is spent, which also ends the loop early for a
        // list of a million names.
        if written
            .and_then(|()| write_entry(&mut text, entry))
            .is_err()
        {
            break;
        }
    }
    let truncated = text.truncated;
    let mut list = text.finish();
    if truncated {
        match lang {
            Lang::En => {
                write!(list, " ({} in total)", entries.len()).unwrap_or(());
            }
            Lang::Zh => {
                write!(list, "（共 {} 个）", entries.len()).unwrap_or(());
            }
        }
    }
    list
}

/// The instance (or another caller-supplied value) as compact JSON, at most 200 characters.
fn instance_excerpt(value: &Value) -> String {
    bounded_display(value, MAX_INSTANCE_EXCERPT_CHARS)
}

/// A schema-supplied value as compact JSON, within its own bound.
fn schema_excerpt(value: &Value) -> String {
    bounded_display(value, MAX_SCHEMA_EXCERPT_CHARS)
}

/// A string in JSON quotes, at most `max_chars` characters.
fn quoted_excerpt(text: &str, max_chars: usize) -> String {
    bounded_display(&JsonString(text), max_chars)
}

/// Plain text, at most `max_chars` characters.
fn bounded_text(text: &str, max_chars: usize) -> String {
    bounded_display(&text, max_chars)
}

/// Renders `value` into at most `max_chars` characters, ending with `…` when cut short. The
/// writer stops the rendering as soon as the budget is spent, so a 1 MB value costs no more than
/// a short one.
fn bounded_display(value: &dyn Display, max_chars: usize) -> String {
    let mut text = BoundedText::new(max_chars);
    // An error here only means the budget ran out; what fit is kept.
    write!(text, "{value}").unwrap_or(());
    text.finish()
}

/// A `fmt::Write` sink that accepts at most a number of characters, then fails, which makes
/// `Display` implementations (`serde_json`'s included) stop early.
struct BoundedText {
    text: String,
    remaining_chars: usize,
    truncated: bool,
}

impl BoundedText {
    fn new(max_chars: usize) -> BoundedText {
        BoundedText {
            text: String::new(),
            remaining_chars: max_chars,
            truncated: false,
        }
    }

    fn finish(mut self) -> String {
        if self.truncated {
            self.text.push('…');
        }
        self.text
    }
}

impl fmt::Write for BoundedText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for character in s.chars() {
            if self.remaining_chars == 0 {
                self.truncated = true;
                return Err(fmt::Error);
            }
            self.text.push(character);
            self.remaining_chars -= 1;
        }
        Ok(())
    }
}

/// A string displayed as a JSON string literal, without copying it first.
struct JsonString<'a>(&'a str);

impl Display for JsonString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for character in self.0.chars() {
            match character {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                control if u32::from(control) < 0x20 => {
                    write!(f, "\\u{:04x}", u32::from(control))?;
                }
                other => f.write_char(other)?,
            }
        }
        f.write_char('"')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The keyword and both messages of the first violation of `instance` against `schema`, as the
    /// gateway sees them when it lists every violation.
    fn violation(schema: Value, instance: Value) -> (&'static str, String, String) {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .with_format("cn-uscc", |s: &str| s.len() == 18)
            .with_format("cn-resident-id", |s: &str| s.len() == 18)
            .build(&schema)
            .expect("test schema compiles");
        let error = validator
            .iter_errors(&instance)
            .next()
            .expect("test instance is invalid");
        (
            violation_keyword(&error),
            violation_message(&error, Lang::En),
            violation_message(&error, Lang::Zh),
        )
    }

    /// Asserts the keyword, and that each message contains the expected fragment.
    fn check(schema: Value, instance: Value, keyword: &str, english: &str, chinese: &str) {
        let (actual_keyword, actual_english, actual_chinese) = violation(schema, instance);
        assert_eq!(actual_keyword, keyword, "{actual_english}");
        assert!(
            actual_english.contains(english),
            "English {actual_english:?} lacks {english:?}"
        );
        assert!(
            actual_chinese.contains(chinese),
            "Chinese {actual_chinese:?} lacks {chinese:?}"
        );
    }

    #[test]
    fn required() {
        check(
            json!({"type": "object", "required": ["name"]}),
            json!({}),
            "required",
            "\"name\" is a required property",
            "缺少必填字段 \"name\"",
        );
    }

    #[test]
    fn type_single_and_multiple() {
        check(
            json!({"type": "string"}),
            json!(42),
            "type",
            "42 is not of type \"string\"",
            "应为字符串类型，实际为数字",
        );
        check(
            json!({"type": ["string", "null"]}),
            json!(true),
            "type",
            "true is not of type",
            "应为",
        );
        let (_, _, chinese) = violation(json!({"type": ["string", "null"]}), json!(true));
        assert!(
            chinese.contains("字符串") && chinese.contains("空值"),
            "{chinese}"
        );
        assert!(chinese.ends_with("类型，实际为布尔值"), "{chinese}");
        check(
            json!({"type": "integer"}),
            json!(1.5),
            "type",
            "1.5 is not of type \"integer\"",
            "应为整数类型，实际为数字",
        );
    }

    #[test]
    fn custom_formats() {
        check(
            json!({"type": "string", "format": "cn-uscc"}),
            json!("123"),
            "format",
            "\"123\" is not a \"cn-uscc\"",
            "不是有效的统一社会信用代码",
        );
        check(
            json!({"format": "cn-resident-id"}),
            json!("123"),
            "format",
            "is not a \"cn-resident-id\"",
            "不是有效的公民身份号码",
        );
    }

    #[test]
    fn standard_formats() {
        check(
            json!({"type": "string", "format": "date"}),
            json!("2024-13-45"),
            "format",
            "\"2024-13-45\" is not a \"date\"",
            "不是有效的日期 (YYYY-MM-DD)",
        );
        check(
            json!({"format": "email"}),
            json!("not an email"),
            "format",
            "is not a \"email\"",
            "不是有效的电子邮箱",
        );
        check(
            json!({"format": "date-time"}),
            json!("yesterday"),
            "format",
            "is not a \"date-time\"",
            "不是有效的日期时间 (RFC 3339)",
        );
        check(
            json!({"format": "ipv4"}),
            json!("999.1.1.1"),
            "format",
            "is not a \"ipv4\"",
            "不是有效的 IPv4 地址",
        );
    }

    #[test]
    fn unknown_format_is_named() {
        assert_eq!(chinese_format_message("x-plate"), "不符合 \"x-plate\" 格式");
    }

    #[test]
    fn enumeration_and_constant() {
        check(
            json!({"enum": ["active", "revoked", "cancelled"]}),
            json!("lost"),
            "enum",
            "\"lost\" is not one of [\"active\",\"revoked\",\"cancelled\"]",
            "取值必须是以下之一：[\"active\",\"revoked\",\"cancelled\"]",
        );
        check(
            json!({"const": "CN"}),
            json!("US"),
            "const",
            "\"CN\" was expected",
            "取值必须为 \"CN\"",
        );
    }

    #[test]
    fn long_enumeration_is_truncated() {
        let options: Vec<String> = (0..1000).map(|i| format!("option-{i}")).collect();
        let (_, english, chinese) = violation(json!({"enum": options}), json!("none"));
        assert!(english.chars().count() < 400, "{english}");
        assert!(chinese.chars().count() < 400, "{chinese}");
        assert!(chinese.ends_with('…'), "{chinese}");
    }

    #[test]
    fn numeric_limits() {
        check(
            json!({"minimum": 10}),
            json!(5),
            "minimum",
            "5 is less than the minimum of 10",
            "不得小于 10",
        );
        check(
            json!({"maximum": 10}),
            json!(11),
            "maximum",
            "11 is greater than the maximum of 10",
            "不得大于 10",
        );
        check(
            json!({"exclusiveMinimum": 0}),
            json!(0),
            "exclusiveMinimum",
            "0 is less than or equal to the minimum of 0",
            "必须大于 0",
        );
        check(
            json!({"exclusiveMaximum": 100}),
            json!(100),
            "exclusiveMaximum",
            "100 is greater than or equal to the maximum of 100",
            "必须小于 100",
        );
        check(
            json!({"multipleOf": 0.01}),
            json!(1.234),
            "multipleOf",
            "1.234 is not a multiple of 0.01",
            "必须是 0.01 的整数倍",
        );
    }

    #[test]
    fn string_limits_and_pattern() {
        check(
            json!({"minLength": 2}),
            json!("a"),
            "minLength",
            "\"a\" is shorter than 2 characters",
            "长度不得少于 2 个字符",
        );
        check(
            json!({"maxLength": 64}),
            json!("x".repeat(65)),
            "maxLength",
            "is longer than 64 characters",
            "长度不得超过 64 个字符",
        );
        check(
            json!({"pattern": "^[0-9]+$"}),
            json!("12a"),
            "pattern",
            "\"12a\" does not match \"^[0-9]+$\"",
            "不符合正则表达式 \"^[0-9]+$\"",
        );
    }

    #[test]
    fn array_limits() {
        check(
            json!({"type": "array", "minItems": 2}),
            json!([1]),
            "minItems",
            "[1] has less than 2 items",
            "元素个数不得少于 2 个",
        );
        check(
            json!({"maxItems": 1}),
            json!([1, 2]),
            "maxItems",
            "[1,2] has more than 1 item",
            "元素个数不得超过 1 个",
        );
        check(
            json!({"uniqueItems": true}),
            json!([1, 1]),
            "uniqueItems",
            "[1,1] has non-unique elements",
            "数组元素不得重复",
        );
        check(
            json!({"contains": {"type": "string"}}),
            json!([1, 2]),
            "contains",
            "None of [1,2] are valid under the given schema",
            "数组中没有符合要求的元素",
        );
        check(
            json!({"contains": {"type": "string"}, "minContains": 2}),
            json!(["a", 2]),
            "minContains",
            "minContains",
            "少于 minContains",
        );
    }

    #[test]
    fn object_rules() {
        check(
            json!({"properties": {"name": {}}, "additionalProperties": false}),
            json!({"name": "x", "foo": 1}),
            "additionalProperties",
            "Additional properties are not allowed (\"foo\" was unexpected)",
            "不允许出现未定义的字段 \"foo\"",
        );
        // Without `properties` the library reports a false schema at `additionalProperties`.
        check(
            json!({"additionalProperties": false}),
            json!({"foo": 1}),
            "additionalProperties",
            "Additional properties are not allowed",
            "不允许出现未定义的字段",
        );
        check(
            json!({"minProperties": 2}),
            json!({"a": 1}),
            "minProperties",
            "has less than 2 properties",
            "字段个数不得少于 2 个",
        );
        check(
            json!({"maxProperties": 1}),
            json!({"a": 1, "b": 2}),
            "maxProperties",
            "has more than 1 property",
            "字段个数不得超过 1 个",
        );
        check(
            json!({"dependentRequired": {"a": ["b"]}}),
            json!({"a": 1}),
            "dependentRequired",
            "\"b\" is a required property",
            "缺少必填字段 \"b\"",
        );
        check(
            json!({"propertyNames": {"pattern": "^[a-z]+$"}}),
            json!({"Foo": 1}),
            "propertyNames",
            "Invalid property name: \"Foo\" does not match \"^[a-z]+$\"",
            "字段名 \"Foo\" 无效：不符合正则表达式 \"^[a-z]+$\"",
        );
        check(
            json!({"properties": {"a": {}}, "unevaluatedProperties": false}),
            json!({"a": 1, "zz": 2}),
            "unevaluatedProperties",
            "Unevaluated properties are not allowed (\"zz\" was unexpected)",
            "不允许出现未定义的字段 \"zz\"",
        );
    }

    #[test]
    fn false_schema() {
        check(
            json!({"properties": {"legacy": false}}),
            json!({"legacy": 1}),
            "false",
            "False schema does not allow 1",
            "此处不允许出现任何值",
        );
    }

    #[test]
    fn combinators() {
        check(
            json!({"oneOf": [{"type": "string"}, {"type": "number"}]}),
            json!(true),
            "oneOf",
            "true is not valid under any of the schemas listed in the 'oneOf' keyword",
            "不符合 oneOf 所列模式中的任何一个",
        );
        check(
            json!({"oneOf": [{"type": "number"}, {"type": "integer"}]}),
            json!(1),
            "oneOf",
            "1 is valid under more than one of the schemas listed in the 'oneOf' keyword",
            "只能符合其中一个",
        );
        check(
            json!({"anyOf": [{"type": "string"}, {"type": "number"}]}),
            json!(null),
            "anyOf",
            "null is not valid under any of the schemas listed in the 'anyOf' keyword",
            "不符合 anyOf 所列模式中的任何一个",
        );
        check(
            json!({"not": {"type": "null"}}),
            json!(null),
            "not",
            "{\"type\":\"null\"} is not allowed for null",
            "不得符合以下模式：{\"type\":\"null\"}",
        );
    }

    #[test]
    fn huge_instances_are_not_echoed() {
        let huge = "字".repeat(1 << 20);
        let schemas = [
            json!({"maxLength": 10}),
            json!({"pattern": "^[0-9]+$"}),
            json!({"format": "cn-uscc"}),
            json!({"enum": ["a", "b"]}),
            json!({"type": "number"}),
            json!({"not": {"type": "string"}}),
            json!({"type": "array", "items": {"type": "number"}}),
        ];
        for schema in schemas {
            let (keyword, english, chinese) = violation(schema, json!(huge));
            assert!(english.chars().count() < 400, "{keyword}: {english}");
            assert!(chinese.chars().count() < 400, "{keyword}: {chinese}");
        }
        let (_, english, _) = violation(json!({"maxLength": 10}), json!(huge));
        assert!(english.contains('…'), "{english}");

        let huge_array: Vec<u32> = (0..200_000).collect();
        let (_, english, chinese) = violation(json!({"maxItems": 1}), json!(huge_array));
        assert!(english.chars().count() < 400, "{english}");
        assert!(chinese.chars().count() < 400, "{chinese}");
    }

    #[test]
    fn huge_property_names_are_not_echoed() {
        let mut object = serde_json::Map::new();
        object.insert("k".repeat(1 << 20), json!(1));
        for i in 0..10_000 {
            object.insert(format!("extra-{i}"), json!(i));
        }
        let (_, english, chinese) = violation(
            json!({"properties": {"name": {}}, "additionalProperties": false}),
            Value::Object(object),
        );
        assert!(english.chars().count() < 400, "{english}");
        assert!(chinese.chars().count() < 400, "{chinese}");
        assert!(chinese.contains("（共 10001 个）"), "{chinese}");
    }

    #[test]
    fn excerpts_cut_on_character_boundaries() {
        let excerpt = instance_excerpt(&json!("é".repeat(500)));
        assert_eq!(excerpt.chars().count(), MAX_INSTANCE_EXCERPT_CHARS + 1);
        assert!(excerpt.starts_with("\"é") && excerpt.ends_with('…'));
        assert_eq!(instance_excerpt(&json!("short")), "\"short\"");
        assert_eq!(quoted_excerpt("a\"b\\c\n\u{1}", 50), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn accept_language() {
        let cases = [
            (None, Lang::En),
            (Some(""), Lang::En),
            (Some("zh"), Lang::Zh),
            (Some("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh),
            (Some("en-US,en;q=0.9,zh;q=0.8"), Lang::En),
            (Some("en, zh;q=0"), Lang::En),
            (Some("zh;q=0"), Lang::En),
            (Some("ZH-tw"), Lang::Zh),
            (Some("zh-Hans-CN"), Lang::Zh),
            (Some("*;q=0.5, zh;q=0.9"), Lang::Zh),
            (Some("*, zh;q=0.9"), Lang::En),
            (Some("en;q=0.5, zh;q=0.5"), Lang::En),
            (Some("en;q=0.5 , zh ; Q=0.501"), Lang::Zh),
            (Some("zha"), Lang::En),
            (Some("zh;q=1.5"), Lang::En),
            (Some("zh;q=abc"), Lang::En),
            (Some(";;;q=abc,,,"), Lang::En),
            (Some("\u{4e2d}\u{6587}, zh-\u{00e9}"), Lang::En),
        ];
        for (header, expected) in cases {
            assert_eq!(Lang::from_accept_language(header), expected, "{header:?}");
        }
    }

    #[test]
    fn accept_language_looks_at_32_entries_only() {
        let mut header = "en;q=0.1,".repeat(40);
        header.push_str("zh");
        assert_eq!(Lang::from_accept_language(Some(&header)), Lang::En);
        let mut header = "en;q=0.1,".repeat(31);
        header.push_str("zh");
        assert_eq!(Lang::from_accept_language(Some(&header)), Lang::Zh);
    }

    #[test]
    fn hostile_accept_language_is_handled() {
        for header in [
            "a".repeat(100 * 1024),
            ",".repeat(100 * 1024),
            ";".repeat(100 * 1024),
            "zh;q=0.".repeat(15 * 1024),
            "zh-".repeat(34 * 1024),
        ] {
            assert_eq!(Lang::from_accept_language(Some(&header)), Lang::En);
        }
    }

    #[test]
    fn pick() {
        assert_eq!(Lang::En.pick("yes", "是"), "yes");
        assert_eq!(Lang::Zh.pick("yes", "是"), "是");
        assert_eq!(Lang::default(), Lang::En);
    }
}
