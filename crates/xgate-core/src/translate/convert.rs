//! The conversions of SPEC §7, each exactly invertible on the values it accepts.
//!
//! A conversion accepts only the canonical form of a value (the form its inverse produces), so
//! `to_own(to_shared(x)) == x` for every `x` it accepts: `"2019031"` is refused by `date:%Y%m%d`,
//! `" 7"` by `number` (not a JSON number). Numbers are their
//! exact text (serde_json's `arbitrary_precision`): `number` and `string` carry that text both
//! ways, every digit of it, and `scale` computes in exact decimals (`rust_decimal`: 0.3 万元 is
//! 3000 元 and back 0.3), refusing a value or product a decimal cannot hold instead of
//! rounding it. Never binary floating point on the way.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat};
use num_bigint::BigUint;
use rust_decimal::Decimal;
use serde_json::{Number, Value};

use super::pattern::{self, Pattern};
use super::reason::Reason;
use crate::number::{DecimalError, ExactNumber};

/// A compiled conversion.
#[derive(Debug, Clone)]
pub enum Conversion {
    /// The value is copied.
    Identity,
    /// Own text in a strftime pattern ↔ shared `YYYY-MM-DD`.
    Date {
        /// The own pattern.
        pattern: Pattern,
    },
    /// Own text in a strftime pattern ↔ shared RFC 3339.
    DateTime {
        /// The own pattern.
        pattern: Pattern,
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
        to_shared: CodeTable<Value>,
        /// Shared strings → own (looked up by the string itself: no key to build per value).
        to_own_by_text: CodeTable<String>,
        /// Shared numbers (by value: their canonical decimal text) and booleans → own.
        to_own_by_value: CodeTable<String>,
    },
}

/// A code table, sorted by code: found by binary search, with no hashing per value (tables
/// are small, and read for every record).
#[derive(Debug, Clone)]
pub struct CodeTable<V> {
    entries: Vec<(String, V)>,
}

impl<V> CodeTable<V> {
    fn get(&self, code: &str) -> Option<&V> {
        let position = self
            .entries
            .binary_search_by(|(entry, _)| entry.as_str().cmp(code))
            .ok()?;
        self.entries.get(position).map(|(_, value)| value)
    }
}

impl<V> From<BTreeMap<String, V>> for CodeTable<V> {
    fn from(table: BTreeMap<String, V>) -> CodeTable<V> {
        CodeTable {
            entries: table.into_iter().collect(),
        }
    }
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
            ("date", Some(text)) => {
                let pattern = Pattern::parse(text)?;
                for (year, month, day) in SAMPLE_DATES {
                    let date = NaiveDate::from_ymd_opt(year, month, day)
                        .ok_or_else(|| "invalid sample date".to_owned())?;
                    if pattern.read_date(&pattern.write_date(date)).ok() != Some(date) {
                        return Err(format!(
                            "the pattern {text:?} does not read back the dates it writes \
                             (it needs a 4-digit year %Y, a month and a day)"
                        ));
                    }
                }
                Ok(Conversion::Date { pattern })
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
                let text = pattern;
                let pattern = Pattern::parse(text)?;
                let zoned = has_zone(text);
                if zoned == offset.is_some() {
                    return Err(if zoned {
                        "the pattern has its own offset (%z); drop @<offset>".to_owned()
                    } else {
                        "the pattern has no offset: add %z or @<offset>, e.g. @+08:00".to_owned()
                    });
                }
                let conversion = Conversion::DateTime { pattern, offset };
                let sample = DateTime::parse_from_rfc3339("2019-03-01T10:15:42+08:00")
                    .map_err(|error| error.to_string())?;
                let shared = Value::String(sample.to_rfc3339_opts(SecondsFormat::AutoSi, false));
                let own = conversion
                    .to_own(&shared)
                    .map_err(|_| format!("the pattern {text:?} cannot write a date-time"))?;
                if conversion.to_shared(&own).ok().as_ref() != Some(&shared) {
                    return Err(format!(
                        "the pattern {text:?} does not read back the date-times it writes \
                         (it needs %Y, month, day, %H, %M and %S)"
                    ));
                }
                Ok(conversion)
            }
            ("scale", Some(factor)) => {
                let factor = ExactNumber::parse(factor)
                    .ok_or_else(|| format!("{factor:?} is not a decimal number"))?
                    .to_decimal()
                    .map_err(|_| {
                        format!("{factor:?} has more digits than an exact decimal holds (28)")
                    })?;
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
        let mut to_shared = BTreeMap::new();
        let mut to_own_by_text = BTreeMap::new();
        let mut to_own_by_value = BTreeMap::new();
        if table.is_empty() {
            return Err("the code table is empty".to_owned());
        }
        for (own, shared) in table {
            if matches!(shared, Value::Null | Value::Array(_) | Value::Object(_)) {
                return Err(format!(
                    "code {own:?}: a shared value is a string, number or boolean"
                ));
            }
            let replaced = match shared {
                Value::String(text) => to_own_by_text.insert(text.clone(), own.clone()),
                _ => to_own_by_value.insert(code_key(shared), own.clone()),
            };
            if let Some(other) = replaced {
                return Err(format!(
                    "not one-to-one: {other:?} and {own:?} both map to {shared}"
                ));
            }
            to_shared.insert(own.clone(), shared.clone());
        }
        Ok(Conversion::Codes {
            to_shared: CodeTable::from(to_shared),
            to_own_by_text: CodeTable::from(to_own_by_text),
            to_own_by_value: CodeTable::from(to_own_by_value),
        })
    }

    /// Own value → shared value.
    pub fn to_shared(&self, own: &Value) -> Result<Value, Reason> {
        match self {
            Conversion::Identity => Ok(own.clone()),
            Conversion::Date { pattern } => {
                let date = pattern.read_date(expect_str(own)?)?;
                pattern::shared_date(date).map(Value::String)
            }
            Conversion::DateTime { pattern, offset } => {
                let moment = pattern.read_date_time(expect_str(own)?, *offset)?;
                Ok(Value::String(
                    moment.to_rfc3339_opts(SecondsFormat::AutoSi, false),
                ))
            }
            Conversion::Scale { factor } => {
                let amount = number_decimal(own)?;
                // A product no decimal holds is refused: a rounded one would not come back.
                let scaled = exact_product(amount, *factor)?;
                decimal_to_json(scaled)
            }
            Conversion::Number => text_number(expect_str(own)?),
            Conversion::Text => number_text(own).map(Value::String),
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
                let date = pattern::read_shared_date(text).ok_or(Reason::NotSharedDate)?;
                Ok(Value::String(pattern.write_date(date)))
            }
            Conversion::DateTime { pattern, offset } => {
                let text = expect_str(shared)?;
                let moment =
                    DateTime::parse_from_rfc3339(text).map_err(|_| Reason::NotSharedDateTime)?;
                let moment = match offset {
                    Some(offset) => moment.with_timezone(offset),
                    None => moment,
                };
                Ok(Value::String(pattern.write_date_time(&moment)))
            }
            Conversion::Scale { factor } => {
                let amount = number_decimal(shared)?;
                let own = amount.checked_div(*factor).ok_or(Reason::OutOfRange)?;
                // The quotient is rounded to 28 places: only an exact one multiplies back.
                if exact_product(own, *factor).ok() != Some(amount) {
                    return Err(Reason::NotExact);
                }
                decimal_to_json(own)
            }
            Conversion::Number => number_text(shared).map(Value::String),
            Conversion::Text => text_number(expect_str(shared)?),
            Conversion::Boolean { truthy, falsy } => match shared {
                Value::Bool(true) => Ok(Value::String(truthy.clone())),
                Value::Bool(false) => Ok(Value::String(falsy.clone())),
                _ => Err(Reason::WrongType {
                    expected: "boolean",
                }),
            },
            Conversion::Codes {
                to_own_by_text,
                to_own_by_value,
                ..
            } => match shared {
                Value::String(text) => to_own_by_text.get(text.as_str()),
                _ => to_own_by_value.get(&code_key(shared)),
            }
            .map(|own| Value::String(own.clone()))
            .ok_or(Reason::UnknownCode),
        }
    }
}

/// The key of a shared code value: its JSON text, numbers by their exact value (so `1.0` is the
/// code `1`, as JSON Schema's `enum` and `const` see it, and `1.0000000000000000001` is not).
fn code_key(shared: &Value) -> String {
    match shared {
        Value::Number(number) => ExactNumber::parse(number.as_str())
            .map_or_else(|| number.to_string(), |exact| exact.value_key()),
        _ => shared.to_string(),
    }
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

/// A JSON number as an exact decimal, read from its text (the record's numbers keep theirs):
/// a number a decimal cannot hold (more than 28 decimal places, or a mantissa past 2^96, about
/// 28 to 29 significant digits) is refused, never rounded.
fn number_decimal(value: &Value) -> Result<Decimal, Reason> {
    let Value::Number(number) = value else {
        return Err(Reason::WrongType { expected: "number" });
    };
    let exact = ExactNumber::parse(number.as_str()).ok_or(Reason::OutOfRange)?;
    exact.to_decimal().map_err(|error| match error {
        DecimalError::TooPrecise => Reason::NotExact,
        DecimalError::TooLarge => Reason::OutOfRange,
    })
}

/// `a × b` exactly, or why no decimal holds the product (rust_decimal's own multiplication
/// rounds past 28 decimal places instead): too many decimal places is [`Reason::NotExact`], too
/// large a magnitude [`Reason::OutOfRange`]. The usual amount times factor is a product of
/// mantissas that fits in 96 bits with at most 28 places; otherwise the product is formed in
/// full and its trailing zeros dropped before deciding.
fn exact_product(a: Decimal, b: Decimal) -> Result<Decimal, Reason> {
    const MANTISSA_LIMIT: u128 = 1 << 96;
    let negative = (a.mantissa() < 0) != (b.mantissa() < 0);
    let signed = |mantissa: u128, scale: u32| {
        let mantissa = i128::try_from(mantissa).map_err(|_| Reason::OutOfRange)?;
        Decimal::try_from_i128_with_scale(if negative { -mantissa } else { mantissa }, scale)
            .map_err(|_| Reason::OutOfRange)
    };
    let scale = a.scale() + b.scale();
    if let Some(mantissa) = a
        .mantissa()
        .unsigned_abs()
        .checked_mul(b.mantissa().unsigned_abs())
        && mantissa < MANTISSA_LIMIT
        && scale <= 28
    {
        return signed(mantissa, scale);
    }
    let mut mantissa =
        BigUint::from(a.mantissa().unsigned_abs()) * BigUint::from(b.mantissa().unsigned_abs());
    let mut scale = scale;
    let ten = BigUint::from(10u8);
    while scale > 0 && (&mantissa % &ten) == BigUint::ZERO {
        mantissa /= &ten;
        scale -= 1;
    }
    if scale > 28 {
        return Err(Reason::NotExact);
    }
    let mantissa = u128::try_from(mantissa)
        .ok()
        .filter(|mantissa| *mantissa < MANTISSA_LIMIT)
        // Fewer places would leave a smaller mantissa: the product has too many digits.
        .ok_or(if scale > 0 {
            Reason::NotExact
        } else {
            Reason::OutOfRange
        })?;
    signed(mantissa, scale)
}

/// A JSON number's exact text: the text it came with (every number of a record keeps it, see
/// `crate::json`).
fn number_text(value: &Value) -> Result<String, Reason> {
    match value {
        Value::Number(number) => Ok(number.as_str().to_owned()),
        _ => Err(Reason::WrongType { expected: "number" }),
    }
}

/// The JSON number with exactly this text (`"1e2"` is `1e2`, `"100.00"` is `100.00`); text that
/// is not a JSON number (`" 7"`, `"+7"`, `"0x10"`) is refused.
fn text_number(text: &str) -> Result<Value, Reason> {
    crate::number::number_with_text(text)
        .map(Value::Number)
        .ok_or_else(|| Reason::NoMatch {
            pattern: "JSON number".to_owned(),
        })
}

/// A decimal written in its canonical text: no exponent, no trailing zeros, no `-0`.
struct DecimalText(Decimal);

impl fmt::Display for DecimalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let normalized = self.0.normalize();
        if normalized.is_zero() {
            f.write_str("0")
        } else {
            fmt::Display::fmt(&normalized, f)
        }
    }
}

/// An exact decimal as the JSON number of its canonical text (`3000`, `0.3`, `-12.5`): the
/// decimal itself, digit for digit, never a binary float near it.
fn decimal_to_json(value: Decimal) -> Result<Value, Reason> {
    with_text(DecimalText(value), str::parse::<Number>)
        .map(Value::Number)
        .map_err(|_| Reason::OutOfRange)
}

/// Calls `read` with the text of `value`, written on the stack when it is short (as numbers'
/// texts are): checking a number costs no allocation.
fn with_text<R>(value: impl fmt::Display, read: impl FnOnce(&str) -> R) -> R {
    let mut short = ShortText {
        bytes: [0; 64],
        length: 0,
    };
    if fmt::write(&mut short, format_args!("{value}")).is_ok() {
        // Only whole `str`s are copied in, so the bytes are UTF-8.
        if let Ok(text) = std::str::from_utf8(&short.bytes[..short.length]) {
            return read(text);
        }
    }
    read(&value.to_string())
}

/// A text of at most 64 bytes, on the stack.
struct ShortText {
    bytes: [u8; 64],
    length: usize,
}

impl fmt::Write for ShortText {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        let end = self.length + piece.len();
        self.bytes
            .get_mut(self.length..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(piece.as_bytes());
        self.length = end;
        Ok(())
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
        let scale = Conversion::parse("scale:10000").unwrap();
        assert_eq!(scale.to_shared(&parsed("1e-4")), Ok(json!(1)));
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
        // The exact text both ways: 100.00 stays 100.00, whatever a float would make of it.
        let exact = parsed("100.00");
        assert_eq!(number.to_shared(&json!("100.00")), Ok(exact.clone()));
        assert_eq!(number.to_own(&exact), Ok(json!("100.00")));
        // Exponents as written: `"1e3"` is the number 1e3, not 1e+3 or 1000.
        for text in ["1e3", "1E+3", "1e-400"] {
            assert_eq!(number.to_shared(&json!(text)), Ok(parsed(text)));
            assert_eq!(number.to_shared(&json!(text)).unwrap().to_string(), text);
        }
        for not_a_number in [" 7", "7 ", "+7", "abc", "0x10", "", "1.", "Infinity"] {
            assert_eq!(
                number.to_shared(&json!(not_a_number)),
                Err(Reason::NoMatch {
                    pattern: "JSON number".to_owned()
                }),
                "{not_a_number:?}"
            );
        }
    }

    fn parsed(text: &str) -> Value {
        crate::json::parse(text.as_bytes()).unwrap()
    }

    /// The numbers: a conversion carries every digit or refuses, never rounds.
    #[test]
    fn numbers_keep_every_digit() {
        let number = Conversion::parse("number").unwrap();
        let text = Conversion::parse("string").unwrap();
        for digits in [
            "-123456789012345678901234567890",
            "12.345678901234567890123",
            "1e2",
            "1E+2",
            "1e-400",
            "-0",
        ] {
            let value = parsed(digits);
            assert_eq!(
                number.to_shared(&json!(digits)),
                Ok(value.clone()),
                "{digits}"
            );
            assert_eq!(number.to_own(&value), Ok(json!(digits)), "{digits}");
            assert_eq!(text.to_shared(&value), Ok(json!(digits)), "{digits}");
            assert_eq!(text.to_own(&json!(digits)), Ok(value), "{digits}");
        }
        let scale = Conversion::parse("scale:10000").unwrap();
        assert_eq!(
            scale.to_shared(&parsed("1234567890123.456789")),
            Ok(parsed("12345678901234567.89"))
        );
        assert_eq!(
            scale.to_own(&parsed("12345678901234567.89")),
            Ok(parsed("1234567890123.456789"))
        );
        assert_eq!(
            scale.to_shared(&parsed("12.345678901234567890123")),
            Ok(parsed("123456.78901234567890123"))
        );
        // Past what a decimal holds: refused, not rounded.
        assert_eq!(
            scale.to_shared(&parsed("-123456789012345678901234567890")),
            Err(Reason::OutOfRange)
        );
        assert_eq!(
            scale.to_shared(&parsed("0.12345678901234567890123456789")),
            Err(Reason::NotExact)
        );
        // The largest decimal, reached exactly; one more is past it.
        assert_eq!(
            scale.to_shared(&parsed("7922816251426433759354395.0335")),
            Ok(parsed("79228162514264337593543950335"))
        );
        assert_eq!(
            scale.to_shared(&parsed("7922816251426433759354396")),
            Err(Reason::OutOfRange)
        );
        // 2^96 ten-thousandths: more digits than a decimal's mantissa holds.
        assert_eq!(
            scale.to_shared(&parsed("7922816251426433759354395.0336")),
            Err(Reason::NotExact)
        );
        assert_eq!(scale.to_shared(&parsed("1e2")), Ok(parsed("1000000")));
    }

    #[test]
    fn exact_products_are_exact_or_absent() {
        let (amount, factor) = (Decimal::new(3, 1), Decimal::new(10000, 0));
        assert_eq!(
            exact_product(amount, factor).ok(),
            amount.checked_mul(factor)
        );
        assert_eq!(
            exact_product(-amount, factor).ok(),
            (-amount).checked_mul(factor)
        );
        // Past 28 decimal places a product would be rounded: there is none.
        assert_eq!(
            exact_product(Decimal::new(1, 28), Decimal::new(1, 2)),
            Err(Reason::NotExact)
        );
        assert_eq!(
            exact_product(Decimal::MAX, Decimal::new(10, 0)),
            Err(Reason::OutOfRange)
        );
        // Mantissas whose product overflows 96 bits but ends in zeros that the scale absorbs.
        let a = Decimal::from_i128_with_scale(1 << 90, 20);
        let b = Decimal::from_i128_with_scale(5i128.pow(20), 20);
        assert_eq!(
            exact_product(a, b),
            Ok(Decimal::from_i128_with_scale(1 << 70, 20))
        );
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
