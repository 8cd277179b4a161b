//! The conversions of SPEC §7, each exactly invertible on the values it accepts.
//!
//! A conversion accepts only the canonical form of a value (the form its inverse produces), so
//! `to_own(to_shared(x)) == x` for every `x` it accepts: `"100.00"` is refused by `number` with
//! the expected `"100"`, `"2019031"` by `date:%Y%m%d`. Amounts are exact decimals, never binary
//! floating point on the way: 0.3 万元 is 3000 元 and back 0.3.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat};
use rust_decimal::Decimal;
use serde_json::{Number, Value};

/// Why a value does not convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The value has the wrong JSON type.
    WrongType {
        /// `string`, `number` or `boolean`.
        expected: &'static str,
    },
    /// Text in the pattern's shape naming a day (or time) that does not exist.
    InvalidDate,
    /// Text that the pattern does not read.
    NoMatch {
        /// The strftime pattern.
        pattern: String,
    },
    /// A value the conversion reads, but not in the one form it writes back.
    NotCanonical {
        /// The canonical form of the same value.
        expected: String,
    },
    /// A shared date that is not `YYYY-MM-DD`.
    NotSharedDate,
    /// A shared date-time that is not RFC 3339.
    NotSharedDateTime,
    /// A value missing from the code table.
    UnknownCode,
    /// A number that cannot be represented exactly on the other side.
    NotExact,
    /// A number or date out of the representable range.
    OutOfRange,
    /// Text that is neither boolean token.
    UnknownToken {
        /// The token for true.
        truthy: String,
        /// The token for false.
        falsy: String,
    },
}

impl Reason {
    /// The reason in English or Chinese.
    pub fn message(&self, zh: bool) -> String {
        match (self, zh) {
            (Reason::WrongType { expected }, false) => format!("expected a {expected}"),
            (Reason::WrongType { expected }, true) => format!("应为{}", type_zh(expected)),
            (Reason::NoMatch { pattern }, false) => {
                format!("does not match the pattern {pattern}")
            }
            (Reason::NoMatch { pattern }, true) => format!("不符合格式 {pattern}"),
            (Reason::InvalidDate, false) => "not a valid calendar date or time".to_owned(),
            (Reason::InvalidDate, true) => "不是有效的日期或时间".to_owned(),
            (Reason::NotCanonical { expected }, false) => {
                format!("not in canonical form; write {expected}")
            }
            (Reason::NotCanonical { expected }, true) => format!("写法不规范，应写作 {expected}"),
            (Reason::NotSharedDate, false) => "expected a date YYYY-MM-DD".to_owned(),
            (Reason::NotSharedDate, true) => "应为 YYYY-MM-DD 格式的日期".to_owned(),
            (Reason::NotSharedDateTime, false) => "expected an RFC 3339 date-time".to_owned(),
            (Reason::NotSharedDateTime, true) => "应为 RFC 3339 格式的日期时间".to_owned(),
            (Reason::UnknownCode, false) => "not a value of the code table".to_owned(),
            (Reason::UnknownCode, true) => "不是代码表中的值".to_owned(),
            (Reason::NotExact, false) => "cannot be represented exactly".to_owned(),
            (Reason::NotExact, true) => "无法精确换算".to_owned(),
            (Reason::OutOfRange, false) => "out of range".to_owned(),
            (Reason::OutOfRange, true) => "超出可表示的范围".to_owned(),
            (Reason::UnknownToken { truthy, falsy }, false) => {
                format!("expected {truthy:?} or {falsy:?}")
            }
            (Reason::UnknownToken { truthy, falsy }, true) => {
                format!("应为 {truthy:?} 或 {falsy:?}")
            }
        }
    }
}

fn type_zh(expected: &str) -> &'static str {
    match expected {
        "string" => "字符串",
        "number" => "数字",
        "boolean" => "布尔值",
        _ => "其他类型",
    }
}

/// A compiled conversion.
#[derive(Debug, Clone)]
pub enum Conversion {
    /// The value is copied.
    Identity,
    /// Own text in a strftime pattern ↔ shared `YYYY-MM-DD`.
    Date {
        /// The own pattern.
        pattern: String,
    },
    /// Own text in a strftime pattern ↔ shared RFC 3339.
    DateTime {
        /// The own pattern.
        pattern: String,
        /// The own text's UTC offset when the pattern has none (`@+08:00`).
        offset: Option<FixedOffset>,
    },
    /// shared = own × factor, exact decimal.
    Scale {
        /// The factor (never zero).
        factor: Decimal,
    },
    /// Own decimal text ↔ shared number.
    Number,
    /// Own number ↔ shared decimal text.
    Text,
    /// Own tokens ↔ shared boolean.
    Boolean {
        /// The own token for true.
        truthy: String,
        /// The own token for false.
        falsy: String,
    },
    /// A one-to-one table of own strings ↔ shared values.
    Codes {
        /// Own → shared.
        to_shared: HashMap<String, Value>,
        /// Shared (as JSON text, numbers by value) → own.
        to_own: HashMap<String, String>,
    },
}

/// Sample dates a date pattern must read back exactly (including years a two-digit `%y` would
/// read as another century).
const SAMPLE_DATES: [(i32, u32, u32); 5] = [
    (2019, 3, 1),
    (1999, 12, 31),
    (2024, 2, 29),
    (1949, 10, 1),
    (2088, 8, 8),
];

impl Conversion {
    /// Compiles `convert = "..."`; the error is a sentence for `xgate check`.
    pub fn parse(text: &str) -> Result<Conversion, String> {
        let (kind, argument) = match text.split_once(':') {
            Some((kind, argument)) => (kind, Some(argument)),
            None => (text, None),
        };
        match (kind, argument) {
            ("number", None) => Ok(Conversion::Number),
            ("string", None) => Ok(Conversion::Text),
            ("number" | "string", Some(_)) => Err(format!("{kind} takes no argument")),
            ("date", Some(pattern)) => {
                check_pattern(pattern)?;
                for (year, month, day) in SAMPLE_DATES {
                    let date = NaiveDate::from_ymd_opt(year, month, day)
                        .ok_or_else(|| "invalid sample date".to_owned())?;
                    let written = date.format(pattern).to_string();
                    if NaiveDate::parse_from_str(&written, pattern).ok() != Some(date) {
                        return Err(format!(
                            "the pattern {pattern:?} does not read back the dates it writes \
                             (it needs a 4-digit year %Y, a month and a day)"
                        ));
                    }
                }
                Ok(Conversion::Date {
                    pattern: pattern.to_owned(),
                })
            }
            ("datetime", Some(argument)) => {
                let (pattern, offset) = match argument.rsplit_once('@') {
                    Some((pattern, offset)) => {
                        let offset = parse_offset(offset).ok_or_else(|| {
                            format!("{offset:?} is not a UTC offset such as +08:00")
                        })?;
                        (pattern, Some(offset))
                    }
                    None => (argument, None),
                };
                check_pattern(pattern)?;
                let zoned = has_zone(pattern);
                if zoned == offset.is_some() {
                    return Err(if zoned {
                        "the pattern has its own offset (%z); drop @<offset>".to_owned()
                    } else {
                        "the pattern has no offset: add %z or @<offset>, e.g. @+08:00".to_owned()
                    });
                }
                let conversion = Conversion::DateTime {
                    pattern: pattern.to_owned(),
                    offset,
                };
                let sample = DateTime::parse_from_rfc3339("2019-03-01T10:15:42+08:00")
                    .map_err(|error| error.to_string())?;
                let shared = Value::String(sample.to_rfc3339_opts(SecondsFormat::AutoSi, false));
                let own = conversion
                    .to_own(&shared)
                    .map_err(|_| format!("the pattern {pattern:?} cannot write a date-time"))?;
                if conversion.to_shared(&own).ok().as_ref() != Some(&shared) {
                    return Err(format!(
                        "the pattern {pattern:?} does not read back the date-times it writes \
                         (it needs %Y, month, day, %H, %M and %S)"
                    ));
                }
                Ok(conversion)
            }
            ("scale", Some(factor)) => {
                let factor = Decimal::from_str(factor)
                    .or_else(|_| Decimal::from_scientific(factor))
                    .map_err(|_| format!("{factor:?} is not a decimal number"))?;
                if factor.is_zero() {
                    return Err("the factor must not be 0".to_owned());
                }
                Ok(Conversion::Scale { factor })
            }
            ("boolean", Some(tokens)) => match tokens.split_once('/') {
                Some((truthy, falsy))
                    if !truthy.is_empty() && !falsy.is_empty() && truthy != falsy =>
                {
                    Ok(Conversion::Boolean {
                        truthy: truthy.to_owned(),
                        falsy: falsy.to_owned(),
                    })
                }
                _ => Err(
                    "write boolean:<true token>/<false token> with two different tokens".to_owned(),
                ),
            },
            ("date" | "datetime" | "scale" | "boolean", None) => {
                Err(format!("{kind} needs an argument ({kind}:...)"))
            }
            _ => Err(format!(
                "unknown conversion {kind:?}; expected date, datetime, scale, number, string or boolean"
            )),
        }
    }

    /// Compiles a code table; refuses a table that is not one-to-one.
    pub fn codes(table: &[(String, Value)]) -> Result<Conversion, String> {
        let mut to_shared = HashMap::with_capacity(table.len());
        let mut to_own = HashMap::with_capacity(table.len());
        if table.is_empty() {
            return Err("the code table is empty".to_owned());
        }
        for (own, shared) in table {
            if matches!(shared, Value::Null | Value::Array(_) | Value::Object(_)) {
                return Err(format!(
                    "code {own:?}: a shared value is a string, number or boolean"
                ));
            }
            let key = code_key(shared);
            if let Some(other) = to_own.insert(key, own.clone()) {
                return Err(format!(
                    "not one-to-one: {other:?} and {own:?} both map to {shared}"
                ));
            }
            to_shared.insert(own.clone(), shared.clone());
        }
        Ok(Conversion::Codes { to_shared, to_own })
    }

    /// Own value → shared value.
    pub fn to_shared(&self, own: &Value) -> Result<Value, Reason> {
        match self {
            Conversion::Identity => Ok(own.clone()),
            Conversion::Date { pattern } => {
                let text = expect_str(own)?;
                let date = NaiveDate::parse_from_str(text, pattern)
                    .map_err(|error| parse_reason(&error, pattern))?;
                canonical(text, date.format(pattern).to_string())?;
                shared_date(date)
            }
            Conversion::DateTime { pattern, offset } => {
                let text = expect_str(own)?;
                let reason = |error: chrono::ParseError| parse_reason(&error, pattern);
                let moment = match offset {
                    None => DateTime::parse_from_str(text, pattern).map_err(reason)?,
                    Some(offset) => NaiveDateTime::parse_from_str(text, pattern)
                        .map_err(reason)?
                        .and_local_timezone(*offset)
                        .single()
                        .ok_or(Reason::OutOfRange)?,
                };
                canonical(text, moment.format(pattern).to_string())?;
                Ok(Value::String(
                    moment.to_rfc3339_opts(SecondsFormat::AutoSi, false),
                ))
            }
            Conversion::Scale { factor } => {
                let amount = number_decimal(own)?;
                let scaled = amount.checked_mul(*factor).ok_or(Reason::OutOfRange)?;
                // A product past 28 decimal places is rounded: the way back would not meet.
                if scaled.checked_div(*factor) != Some(amount) {
                    return Err(Reason::NotExact);
                }
                decimal_to_json(scaled)
            }
            Conversion::Number => {
                let text = expect_str(own)?;
                let value = parse_decimal_text(text)?;
                decimal_to_json(value)
            }
            Conversion::Text => {
                let value = number_decimal(own)?;
                Ok(Value::String(decimal_text(value)))
            }
            Conversion::Boolean { truthy, falsy } => {
                let text = expect_str(own)?;
                if text == truthy {
                    Ok(Value::Bool(true))
                } else if text == falsy {
                    Ok(Value::Bool(false))
                } else {
                    Err(Reason::UnknownToken {
                        truthy: truthy.clone(),
                        falsy: falsy.clone(),
                    })
                }
            }
            Conversion::Codes { to_shared, .. } => {
                let text = expect_str(own)?;
                to_shared.get(text).cloned().ok_or(Reason::UnknownCode)
            }
        }
    }

    /// Shared value → own value.
    pub fn to_own(&self, shared: &Value) -> Result<Value, Reason> {
        match self {
            Conversion::Identity => Ok(shared.clone()),
            Conversion::Date { pattern } => {
                let text = expect_str(shared)?;
                let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map_err(|_| Reason::NotSharedDate)?;
                if date.format("%Y-%m-%d").to_string() != text {
                    return Err(Reason::NotSharedDate);
                }
                Ok(Value::String(date.format(pattern).to_string()))
            }
            Conversion::DateTime { pattern, offset } => {
                let text = expect_str(shared)?;
                let moment =
                    DateTime::parse_from_rfc3339(text).map_err(|_| Reason::NotSharedDateTime)?;
                let moment = match offset {
                    Some(offset) => moment.with_timezone(offset),
                    None => moment,
                };
                Ok(Value::String(moment.format(pattern).to_string()))
            }
            Conversion::Scale { factor } => {
                let amount = number_decimal(shared)?;
                let own = amount.checked_div(*factor).ok_or(Reason::OutOfRange)?;
                if own.checked_mul(*factor) != Some(amount) {
                    return Err(Reason::NotExact);
                }
                decimal_to_json(own)
            }
            Conversion::Number => {
                let value = number_decimal(shared)?;
                Ok(Value::String(decimal_text(value)))
            }
            Conversion::Text => {
                let text = expect_str(shared)?;
                let value = parse_decimal_text(text)?;
                decimal_to_json(value)
            }
            Conversion::Boolean { truthy, falsy } => match shared {
                Value::Bool(true) => Ok(Value::String(truthy.clone())),
                Value::Bool(false) => Ok(Value::String(falsy.clone())),
                _ => Err(Reason::WrongType {
                    expected: "boolean",
                }),
            },
            Conversion::Codes { to_own, .. } => to_own
                .get(&code_key(shared))
                .map(|own| Value::String(own.clone()))
                .ok_or(Reason::UnknownCode),
        }
    }
}

/// The key of a shared code value: its JSON text, numbers by value (so `1.0` is the code `1`,
/// as JSON Schema's `enum` and `const` see it).
fn code_key(shared: &Value) -> String {
    match number_decimal(shared) {
        Ok(value) => decimal_text(value),
        Err(_) => shared.to_string(),
    }
}

/// Why chrono did not read a text: a well-shaped text naming a day that does not exist
/// (`20160231`) or text of another shape.
fn parse_reason(error: &chrono::ParseError, pattern: &str) -> Reason {
    match error.kind() {
        chrono::format::ParseErrorKind::OutOfRange | chrono::format::ParseErrorKind::Impossible => {
            Reason::InvalidDate
        }
        _ => Reason::NoMatch {
            pattern: pattern.to_owned(),
        },
    }
}

fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("the pattern is empty".to_owned());
    }
    if StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error)) {
        return Err(format!("{pattern:?} is not a valid strftime pattern"));
    }
    Ok(())
}

fn has_zone(pattern: &str) -> bool {
    ["%z", "%:z", "%::z", "%:::z", "%#z"]
        .iter()
        .any(|specifier| pattern.contains(specifier))
}

fn parse_offset(text: &str) -> Option<FixedOffset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

fn expect_str(value: &Value) -> Result<&str, Reason> {
    value
        .as_str()
        .ok_or(Reason::WrongType { expected: "string" })
}

fn canonical(text: &str, written: String) -> Result<(), Reason> {
    if text == written {
        Ok(())
    } else {
        Err(Reason::NotCanonical { expected: written })
    }
}

fn shared_date(date: NaiveDate) -> Result<Value, Reason> {
    let text = date.format("%Y-%m-%d").to_string();
    // RFC 3339 full-date has exactly four year digits.
    if text.len() == 10 {
        Ok(Value::String(text))
    } else {
        Err(Reason::OutOfRange)
    }
}

/// A JSON number as an exact decimal: integers as they are, other numbers by their shortest
/// decimal text (what serde_json prints), so 0.3 is 0.3, not 0.299999….
fn number_decimal(value: &Value) -> Result<Decimal, Reason> {
    let Value::Number(number) = value else {
        return Err(Reason::WrongType { expected: "number" });
    };
    if let Some(integer) = number.as_i64() {
        return Ok(Decimal::from(integer));
    }
    if let Some(integer) = number.as_u64() {
        return Decimal::from_str(&integer.to_string()).map_err(|_| Reason::OutOfRange);
    }
    let text = number.to_string();
    let value = Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| Reason::OutOfRange)?;
    // Past 28 decimal places a decimal is rounded (4.95e-24 loses digits): refuse it rather
    // than carry another number.
    if value.to_string().parse::<f64>().ok() != number.as_f64() {
        return Err(Reason::NotExact);
    }
    Ok(value)
}

/// The canonical text of a decimal: no exponent, no trailing zeros, no `-0`.
fn decimal_text(value: Decimal) -> String {
    let normalized = value.normalize();
    if normalized.is_zero() {
        "0".to_owned()
    } else {
        normalized.to_string()
    }
}

/// Reads decimal text, accepting only its canonical form.
fn parse_decimal_text(text: &str) -> Result<Decimal, Reason> {
    let value = Decimal::from_str_exact(text).map_err(|_| Reason::NoMatch {
        pattern: "decimal number".to_owned(),
    })?;
    canonical(text, decimal_text(value))?;
    Ok(value)
}

/// An exact decimal as a JSON number: an integer when it has no fraction, otherwise the binary
/// float whose shortest text is exactly the decimal (refused when there is none).
fn decimal_to_json(value: Decimal) -> Result<Value, Reason> {
    let normalized = value.normalize();
    if normalized.scale() == 0 {
        let text = decimal_text(normalized);
        if let Ok(integer) = text.parse::<i64>() {
            return Ok(Value::from(integer));
        }
        if let Ok(integer) = text.parse::<u64>() {
            return Ok(Value::from(integer));
        }
    }
    let text = decimal_text(normalized);
    let float: f64 = text.parse().map_err(|_| Reason::OutOfRange)?;
    let number = Number::from_f64(float).ok_or(Reason::OutOfRange)?;
    // The float prints back as the same decimal only when it represents it exactly enough.
    let back = Decimal::from_str(&number.to_string())
        .or_else(|_| Decimal::from_scientific(&number.to_string()))
        .map_err(|_| Reason::NotExact)?;
    if back.normalize() == normalized {
        Ok(Value::Number(number))
    } else {
        Err(Reason::NotExact)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn both(conversion: &str, own: Value, shared: Value) {
        let conversion = Conversion::parse(conversion).unwrap();
        assert_eq!(conversion.to_shared(&own), Ok(shared.clone()), "to shared");
        assert_eq!(conversion.to_own(&shared), Ok(own), "to own");
    }

    #[test]
    fn dates_convert_both_ways() {
        both("date:%Y%m%d", json!("20190301"), json!("2019-03-01"));
        both("date:%Y/%m/%d", json!("2019/03/01"), json!("2019-03-01"));
        both(
            "date:%Y年%m月%d日",
            json!("2019年03月01日"),
            json!("2019-03-01"),
        );
        let date = Conversion::parse("date:%Y%m%d").unwrap();
        assert_eq!(date.to_shared(&json!("20190230")), Err(Reason::InvalidDate));
        assert!(matches!(
            date.to_shared(&json!("2019-03-01")),
            Err(Reason::NoMatch { .. })
        ));
        assert!(matches!(
            date.to_shared(&json!(20190301)),
            Err(Reason::WrongType { .. })
        ));
        assert_eq!(date.to_own(&json!("2019-3-1")), Err(Reason::NotSharedDate));
    }

    #[test]
    fn date_times_carry_their_offset() {
        both(
            "datetime:%Y%m%d%H%M%S@+08:00",
            json!("20190301101542"),
            json!("2019-03-01T10:15:42+08:00"),
        );
        both(
            "datetime:%Y-%m-%d %H:%M:%S %z",
            json!("2019-03-01 10:15:42 +0800"),
            json!("2019-03-01T10:15:42+08:00"),
        );
        let conversion = Conversion::parse("datetime:%Y%m%d%H%M%S@+08:00").unwrap();
        // A shared instant in another offset is written in the department's local time.
        assert_eq!(
            conversion.to_own(&json!("2019-03-01T02:15:42Z")),
            Ok(json!("20190301101542"))
        );
    }

    #[test]
    fn scale_is_exact_decimal() {
        both("scale:10000", json!(0.3), json!(3000));
        both("scale:10000", json!(123.45), json!(1234500));
        both("scale:10000", json!(100), json!(1000000));
        both("scale:0.01", json!(12345), json!(123.45));
        both("scale:10000", json!(-0.0001), json!(-1));
        let scale = Conversion::parse("scale:3").unwrap();
        assert_eq!(scale.to_own(&json!(1)), Err(Reason::NotExact));
        // Digits past the 28 decimal places of an exact decimal are not silently rounded away.
        let cents = Conversion::parse("scale:0.01").unwrap();
        assert_eq!(cents.to_shared(&json!(1e-28)), Err(Reason::NotExact));
        assert_eq!(
            cents.to_shared(&json!(-4.950528673813275e-24)),
            Err(Reason::NotExact)
        );
    }

    #[test]
    fn numbers_and_text() {
        both("number", json!("123.45"), json!(123.45));
        both("number", json!("-7"), json!(-7));
        both("number", json!("0"), json!(0));
        both("string", json!(42), json!("42"));
        both("string", json!(0.1), json!("0.1"));
        let number = Conversion::parse("number").unwrap();
        assert_eq!(
            number.to_shared(&json!("100.00")),
            Err(Reason::NotCanonical {
                expected: "100".to_owned()
            })
        );
        assert!(number.to_shared(&json!("1e3")).is_err());
        assert!(number.to_shared(&json!("abc")).is_err());
    }

    #[test]
    fn booleans_and_codes() {
        both("boolean:Y/N", json!("Y"), json!(true));
        both("boolean:是/否", json!("否"), json!(false));
        let codes = Conversion::codes(&[
            ("1".to_owned(), json!("active")),
            ("2".to_owned(), json!("revoked")),
        ])
        .unwrap();
        assert_eq!(codes.to_shared(&json!("2")), Ok(json!("revoked")));
        assert_eq!(codes.to_own(&json!("active")), Ok(json!("1")));
        assert_eq!(codes.to_shared(&json!("9")), Err(Reason::UnknownCode));
        let numeric =
            Conversion::codes(&[("A".to_owned(), json!(1)), ("B".to_owned(), json!("1"))]).unwrap();
        // Numbers are codes by value; a string of the same digits is another code.
        assert_eq!(numeric.to_own(&json!(1.0)), Ok(json!("A")));
        assert_eq!(numeric.to_own(&json!("1")), Ok(json!("B")));
        assert!(
            Conversion::codes(&[("1".to_owned(), json!(2)), ("2".to_owned(), json!(2.0))]).is_err()
        );
        assert!(
            Conversion::codes(&[("1".to_owned(), json!("a")), ("2".to_owned(), json!("a"))])
                .is_err()
        );
    }

    #[test]
    fn bad_conversions_are_refused_at_load() {
        for bad in [
            "rot13",
            "date",
            "date:%Q",
            "date:%y%m%d",
            "date:%m%d",
            "datetime:%Y%m%d%H%M%S",
            "datetime:%Y%m%d@+08:00",
            "datetime:%Y%m%d%H%M%S@8",
            "scale:0",
            "scale:abc",
            "boolean:Y",
            "boolean:Y/Y",
            "number:1",
        ] {
            assert!(Conversion::parse(bad).is_err(), "{bad}");
        }
    }
}
