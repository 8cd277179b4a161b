//! Exact JSON numbers: the decimal a number's text writes, ordered, divided and turned into a
//! `rust_decimal::Decimal` without rounding.
//!
//! With serde_json's `arbitrary_precision` a `serde_json::Number` is its text, so
//! `100.00000000000000001` is not 100 and `1e-400` is not 0. [`ExactNumber`] reads that text as
//! sign, significant digits and a power of ten (borrowing the digits, no allocation), which is
//! all that ordering and `multipleOf` need at any magnitude. Pure: no I/O, no panics on input.

use std::cmp::Ordering;

use num_bigint::BigUint;
use rust_decimal::Decimal;

/// Exponents past this magnitude are held at it: ordering stays right against every number whose
/// own exponent is below [`MAX_EXACT_EXPONENT`], and `multipleOf` refuses them.
const SATURATED_EXPONENT: i128 = 1 << 62;

/// The largest exponent (in magnitude) of a number that is handled exactly everywhere; schema
/// limits past it are refused when the schema compiles.
pub const MAX_EXACT_EXPONENT: i128 = 1 << 61;

/// A JSON number read from its text: `(-1)^negative × digits × 10^exponent`, the digits without
/// leading or trailing zeros (none at all for zero). The digits are one run of the text, or two
/// when the decimal point falls inside them (`head` before it, `tail` after it).
#[derive(Debug, Clone, Copy)]
pub struct ExactNumber<'t> {
    negative: bool,
    head: &'t [u8],
    tail: &'t [u8],
    exponent: i128,
    /// Whether the exponent was held at [`SATURATED_EXPONENT`].
    saturated: bool,
}

/// Why a number cannot become a `rust_decimal::Decimal` (at most 28 decimal places and a
/// mantissa below 2^96, about 28 to 29 significant digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// More decimal places than a decimal holds.
    TooPrecise,
    /// A magnitude past the decimal's range.
    TooLarge,
}

impl<'t> ExactNumber<'t> {
    /// Reads JSON number text (`-?int(.frac)?([eE][+-]?digits)?`); `None` for anything else.
    pub fn parse(text: &'t str) -> Option<ExactNumber<'t>> {
        let bytes = text.as_bytes();
        let (negative, rest) = match bytes.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, bytes),
        };
        let integer_length = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
        let (integer, rest) = rest.split_at(integer_length);
        if integer.is_empty() || (integer.len() > 1 && integer[0] == b'0') {
            return None;
        }
        let (fraction, rest) = match rest.split_first() {
            Some((b'.', rest)) => {
                let length = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
                if length == 0 {
                    return None;
                }
                rest.split_at(length)
            }
            _ => (&rest[..0], rest),
        };
        let (written_exponent, saturated) = match rest.split_first() {
            None => (0, false),
            Some((b'e' | b'E', rest)) => parse_exponent(rest)?,
            Some(_) => return None,
        };
        // Leading zeros: all of them are in `integer` unless it is just "0".
        let (head, tail) = if integer == b"0" {
            let zeros = fraction.iter().take_while(|byte| **byte == b'0').count();
            (&integer[..0], &fraction[zeros..])
        } else {
            (integer, fraction)
        };
        // Trailing zeros: from the tail, and from the head once the tail is all zeros.
        let tail_zeros = tail.iter().rev().take_while(|byte| **byte == b'0').count();
        let (head, tail, trailing) = if tail_zeros == tail.len() {
            let head_zeros = head.iter().rev().take_while(|byte| **byte == b'0').count();
            (
                &head[..head.len() - head_zeros],
                &tail[..0],
                tail.len() + head_zeros,
            )
        } else {
            (head, &tail[..tail.len() - tail_zeros], tail_zeros)
        };
        let exponent = written_exponent - fraction.len() as i128 + trailing as i128;
        Some(ExactNumber {
            negative: negative && !(head.is_empty() && tail.is_empty()),
            head,
            tail,
            exponent,
            saturated,
        })
    }

    /// Whether the number is zero (`0`, `-0.0`, `0e99`).
    pub fn is_zero(&self) -> bool {
        self.head.is_empty() && self.tail.is_empty()
    }

    /// Whether its exponent is within [`MAX_EXACT_EXPONENT`] (what a schema limit must be).
    pub fn is_moderate(&self) -> bool {
        !self.saturated && self.exponent.abs() <= MAX_EXACT_EXPONENT
    }

    fn digits(&self) -> impl Iterator<Item = u8> + '_ {
        self.head.iter().chain(self.tail).map(|byte| byte - b'0')
    }

    fn digit_count(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// The power of ten just above the number's magnitude: `0.d1d2… × 10^position`.
    fn position(&self) -> i128 {
        self.digit_count() as i128 + self.exponent
    }

    /// The exact order of two numbers.
    pub fn cmp_exact(&self, other: &ExactNumber<'_>) -> Ordering {
        let sign = |number: &ExactNumber<'_>| match (number.is_zero(), number.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        };
        let (mine, theirs) = (sign(self), sign(other));
        if mine != theirs || mine == 0 {
            return mine.cmp(&theirs);
        }
        // Without leading or trailing zeros, the position orders magnitudes, then the digits
        // (a prefix is the smaller).
        let magnitude = self
            .position()
            .cmp(&other.position())
            .then_with(|| self.digits().cmp(other.digits()));
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }

    /// Whether `self / divisor` is an integer; `None` when that cannot be decided exactly (an
    /// exponent past [`MAX_EXACT_EXPONENT`], or a zero divisor).
    pub fn is_multiple_of(&self, divisor: &ExactNumber<'_>) -> Option<bool> {
        if !self.is_moderate() || !divisor.is_moderate() || divisor.is_zero() {
            return None;
        }
        if self.is_zero() {
            return Some(true);
        }
        // self / divisor = (a / b) × 10^(ea - eb) with a and b free of trailing zeros. With
        // ea < eb, `a` would have to be a multiple of 10, which it is not.
        let shift = self.exponent - divisor.exponent;
        let Ok(shift) = u128::try_from(shift) else {
            return Some(false);
        };
        Some(match divisor.as_u64() {
            Some(divisor) => {
                let divisor = u128::from(divisor);
                let remainder = self.digits().fold(0u128, |remainder, digit| {
                    (remainder * 10 + u128::from(digit)) % divisor
                });
                (remainder * power_of_ten_modulo(shift, divisor)).is_multiple_of(divisor)
            }
            None => {
                let divisor = divisor.digits_as_biguint();
                let remainder = self.digits_modulo(&divisor);
                let power = BigUint::from(10u8).modpow(&BigUint::from(shift), &divisor);
                (remainder * power % &divisor) == BigUint::ZERO
            }
        })
    }

    /// The significant digits as an integer, when they fit in a `u64`.
    fn as_u64(&self) -> Option<u64> {
        if self.digit_count() > 19 {
            return None;
        }
        self.digits().try_fold(0u64, |value, digit| {
            value.checked_mul(10)?.checked_add(u64::from(digit))
        })
    }

    fn digits_as_biguint(&self) -> BigUint {
        let digits: Vec<u8> = self.digits().collect();
        BigUint::from_radix_be(&digits, 10).unwrap_or_default()
    }

    /// The significant digits modulo `divisor`, nineteen digits at a time: linear in the digits.
    fn digits_modulo(&self, divisor: &BigUint) -> BigUint {
        let digits: Vec<u8> = self.digits().collect();
        digits.chunks(19).fold(BigUint::ZERO, |remainder, chunk| {
            let value = chunk
                .iter()
                .fold(0u64, |value, digit| value * 10 + u64::from(*digit));
            let scale = BigUint::from(10u64.pow(chunk.len() as u32));
            (remainder * scale + value) % divisor
        })
    }

    /// The number as a `rust_decimal::Decimal`, exactly, or why it cannot be one.
    pub fn to_decimal(&self) -> Result<Decimal, DecimalError> {
        if self.is_zero() {
            return Ok(Decimal::ZERO);
        }
        if self.saturated {
            return Err(if self.exponent > 0 {
                DecimalError::TooLarge
            } else {
                DecimalError::TooPrecise
            });
        }
        // 2^96 has 29 digits: more significant digits never fit the mantissa.
        let mantissa = if self.digit_count() > 29 {
            None
        } else {
            self.digits().try_fold(0i128, |value, digit| {
                value.checked_mul(10)?.checked_add(i128::from(digit))
            })
        };
        let (mantissa, scale) = if self.exponent >= 0 {
            let scaled = mantissa.and_then(|mantissa| {
                let power = 10i128.checked_pow(u32::try_from(self.exponent).ok()?)?;
                mantissa.checked_mul(power)
            });
            (scaled.ok_or(DecimalError::TooLarge)?, 0)
        } else {
            let scale = u32::try_from(-self.exponent).map_err(|_| DecimalError::TooPrecise)?;
            if scale > 28 {
                return Err(DecimalError::TooPrecise);
            }
            (mantissa.ok_or(DecimalError::TooPrecise)?, scale)
        };
        let signed = if self.negative { -mantissa } else { mantissa };
        Decimal::try_from_i128_with_scale(signed, scale).map_err(|_| {
            if scale == 0 {
                DecimalError::TooLarge
            } else {
                DecimalError::TooPrecise
            }
        })
    }

    /// A text naming the number's value alone (`1`, `1.0` and `10e-1` give the same):
    /// `-123e-2` for -1.23, `0` for zero.
    pub fn value_key(&self) -> String {
        if self.is_zero() {
            return "0".to_owned();
        }
        let mut key = String::with_capacity(self.digit_count() + 8);
        if self.negative {
            key.push('-');
        }
        key.extend(self.digits().map(|digit| char::from(b'0' + digit)));
        key.push('e');
        key.push_str(&self.exponent.to_string());
        key
    }
}

/// The `serde_json::Number` whose text is exactly `text` (`1e2` stays `1e2`, where parsing it
/// would write `1e+2`); `None` unless `text` is a JSON number.
///
/// serde_json keeps a number as its text (`arbitrary_precision`) but has no public way to make
/// one of a given text: `Number::from_string_unchecked` is hidden from its documentation, so the
/// tests below pin it (they fail to build, or fail, if a release drops or changes it).
pub fn number_with_text(text: &str) -> Option<serde_json::Number> {
    ExactNumber::parse(text)?;
    Some(serde_json::Number::from_string_unchecked(text.to_owned()))
}

/// An exponent's digits (after `e`), with its sign; held at [`SATURATED_EXPONENT`] past it.
fn parse_exponent(text: &[u8]) -> Option<(i128, bool)> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let significant = &digits[digits.iter().take_while(|byte| **byte == b'0').count()..];
    let value = if significant.len() > 19 {
        None
    } else {
        significant.iter().try_fold(0i128, |value, byte| {
            Some(value * 10 + i128::from(byte - b'0')).filter(|value| *value <= SATURATED_EXPONENT)
        })
    };
    let (magnitude, saturated) = match value {
        Some(value) => (value, false),
        None => (SATURATED_EXPONENT, true),
    };
    Some((if negative { -magnitude } else { magnitude }, saturated))
}

/// `10^exponent mod modulus` by squaring (`modulus` below 2^64, so products fit in a `u128`).
fn power_of_ten_modulo(mut exponent: u128, modulus: u128) -> u128 {
    let mut result = 1 % modulus;
    let mut base = 10 % modulus;
    while exponent > 0 {
        if exponent & 1 == 1 {
            result = result * base % modulus;
        }
        base = base * base % modulus;
        exponent >>= 1;
    }
    result
}

/// A number's digits and power of ten, owned (a schema's limit, kept by a compiled keyword).
#[derive(Debug, Clone)]
pub struct OwnedNumber {
    text: String,
}

impl OwnedNumber {
    /// Keeps a number's text once it reads as one.
    pub fn parse(text: &str) -> Option<OwnedNumber> {
        ExactNumber::parse(text)?;
        Some(OwnedNumber {
            text: text.to_owned(),
        })
    }

    /// The number, read from the kept text.
    pub fn exact(&self) -> ExactNumber<'_> {
        // The text was read as a number when it was kept.
        ExactNumber::parse(&self.text).unwrap_or(ExactNumber {
            negative: false,
            head: &[],
            tail: &[],
            exponent: 0,
            saturated: false,
        })
    }

    /// The text as written.
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn exact(text: &str) -> ExactNumber<'_> {
        ExactNumber::parse(text).unwrap_or_else(|| panic!("{text} is a number"))
    }

    fn order(a: &str, b: &str) -> Ordering {
        exact(a).cmp_exact(&exact(b))
    }

    #[test]
    fn reads_only_json_number_text() {
        for good in [
            "0", "-0", "1", "-1.5", "0.001", "1e5", "1E+5", "1e-5", "10.0e00", "-0.0e-0",
        ] {
            assert!(ExactNumber::parse(good).is_some(), "{good}");
        }
        for bad in [
            "", "-", "+1", "01", "1.", ".5", "1e", "1e+", "1.5.5", "1 ", " 1", "NaN", "0x10",
            "1e5x", "--1",
        ] {
            assert!(ExactNumber::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn orders_exactly_at_any_precision_and_magnitude() {
        use Ordering::*;
        for (a, b, expected) in [
            ("100.00000000000000001", "100", Greater),
            ("100", "100.000", Equal),
            ("1e2", "100", Equal),
            ("10.0000000000000001", "10", Greater),
            ("1e-400", "0", Greater),
            ("-1e-400", "0", Less),
            ("-0", "0", Equal),
            ("0.0e-99", "0", Equal),
            ("18014398509481985.5", "18014398509481985", Greater),
            ("9007199254740993", "9007199254740992", Greater),
            (
                "-123456789012345678901234567890",
                "-123456789012345678901234567891",
                Greater,
            ),
            ("0.1000000000000000001", "0.1", Greater),
            ("0.0999999999999999999", "0.1", Less),
            ("1e400", "1e399", Greater),
            ("-1e400", "-1e399", Less),
            ("1.5e-400", "1.6e-400", Less),
            ("12.5", "125e-1", Equal),
            (
                "1e99999999999999999999999",
                "1e4611686018427387903",
                Greater,
            ),
            ("1e-99999999999999999999999", "0", Greater),
            (
                "-1e-99999999999999999999999",
                "-1e-4611686018427387903",
                Greater,
            ),
        ] {
            assert_eq!(order(a, b), expected, "{a} vs {b}");
            assert_eq!(order(b, a), expected.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn divides_exactly() {
        for (value, divisor, expected) in [
            ("4", "2", Some(true)),
            ("4.0000000000000001", "2", Some(false)),
            ("10.0000000000000001", "1", Some(false)),
            ("1e-400", "2", Some(false)),
            ("0", "7", Some(true)),
            ("1070468.14", "0.01", Some(true)),
            ("0.0100000000000000001", "0.01", Some(false)),
            ("135107988821114880000000000000", "3", Some(true)),
            ("135107988821114880000000000001", "3", Some(false)),
            ("1e30", "3", Some(false)),
            ("1e30", "2", Some(true)),
            ("1", "1e-400", Some(true)),
            ("7.5", "2.5", Some(true)),
            ("7.5", "2.4", Some(false)),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
                Some(true),
            ),
            (
                "246913578024691357802469135780",
                "123456789012345678901234567890",
                Some(true),
            ),
            (
                "246913578024691357802469135781",
                "123456789012345678901234567890",
                Some(false),
            ),
            ("1e4611686018427387904", "3", None),
            ("5", "0", None),
        ] {
            assert_eq!(
                exact(value).is_multiple_of(&exact(divisor)),
                expected,
                "{value} / {divisor}"
            );
        }
    }

    #[test]
    fn becomes_a_decimal_only_when_exact() {
        for (text, expected) in [
            ("1234567890123.456789", Ok("1234567890123.456789")),
            ("12.345678901234567890123", Ok("12.345678901234567890123")),
            ("-0.0001", Ok("-0.0001")),
            ("1e2", Ok("100")),
            ("1.50", Ok("1.5")),
            ("-0", Ok("0")),
            (
                "79228162514264337593543950335",
                Ok("79228162514264337593543950335"),
            ),
            ("79228162514264337593543950336", Err(DecimalError::TooLarge)),
            (
                "-123456789012345678901234567890",
                Err(DecimalError::TooLarge),
            ),
            ("1e-28", Ok("0.0000000000000000000000000001")),
            ("1e-29", Err(DecimalError::TooPrecise)),
            ("1e-400", Err(DecimalError::TooPrecise)),
            ("1e400", Err(DecimalError::TooLarge)),
            (
                "0.12345678901234567890123456789",
                Err(DecimalError::TooPrecise),
            ),
        ] {
            let decimal = exact(text).to_decimal();
            let expected = expected.map(|text| Decimal::from_str_exact(text).unwrap());
            assert_eq!(decimal, expected, "{text}");
        }
    }

    #[test]
    fn numbers_are_made_with_their_exact_text() {
        for text in ["1e2", "1E2", "1E+2", "-0", "100.00", "1e-400", "7"] {
            let number = number_with_text(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(number.as_str(), text);
            assert_eq!(serde_json::to_string(&number).unwrap(), text);
            let value = serde_json::Value::Number(number);
            assert_eq!(serde_json::to_string(&value).unwrap(), text);
        }
        for bad in ["", "+1", " 7", "1.", "0x10", "NaN", "1e"] {
            assert!(number_with_text(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn value_keys_name_values_not_texts() {
        assert_eq!(exact("1").value_key(), exact("1.0").value_key());
        assert_eq!(exact("1").value_key(), exact("10e-1").value_key());
        assert_eq!(exact("-0").value_key(), exact("0.0").value_key());
        assert_ne!(
            exact("1").value_key(),
            exact("1.0000000000000000001").value_key()
        );
        assert_eq!(exact("-1.23").value_key(), "-123e-2");
        assert!(Decimal::from_str("1").is_ok());
    }
}
