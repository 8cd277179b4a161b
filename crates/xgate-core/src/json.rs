//! The gateway's one JSON reader: serde_json's parser, building a `serde_json::Value` that
//! refuses duplicate object keys.
//!
//! serde_json's own `Value` keeps the last of two equal keys, while a provider's parser may keep
//! the first: `{"role":"admin","role":"viewer"}` would be validated as a viewer and read upstream
//! as an admin. So every body the gateway validates or forwards is read here, and an object with
//! two members of one name (after unescaping: `"r\u006fle"` is `"role"`) is refused, naming the
//! duplicated member's pointer.
//!
//! One parse per body: the duplicate check is the map insertion itself (an entry instead of an
//! overwrite), and the pointer of a duplicate is built only on the error's way out, each level
//! adding its own key or index. Nesting stays bounded by serde_json's recursion limit (128), which
//! its parser enforces whatever the visitor.
//!
//! With serde_json's `arbitrary_precision` (turned on by `jsonschema`'s exact numbers), a number
//! that is neither a `u64` nor an `i64` reaches the visitor as a one-member map whose key is
//! serde_json's private number token and whose value is the number's text, handed over as an
//! owned `String`. serde_json's own `Value` visitor takes *any* object with that key for a number,
//! so `{"$serde_json::private::Number":"5"}` would be validated as the number 5 and forwarded as an
//! object. Here the text must arrive as an owned `String`, which the parser never produces for a
//! string of the input (those come borrowed, or copied when they hold escapes): only the parser's
//! own numbers pass, and a caller's object with that key stays an object.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// serde_json's key for a number carried as text (`serde_json::number::TOKEN`, private; pinned
/// by the tests below, which fail if a serde_json release renames it).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Why bytes are not a JSON document the gateway accepts.
#[derive(Debug)]
pub enum JsonError {
    /// Not JSON: a syntax error, invalid UTF-8, nesting past 128 levels, trailing characters.
    Syntax(serde_json::Error),
    /// An object has two members of one name (after unescaping).
    DuplicateKey {
        /// The JSON Pointer of the duplicated member (`/role`, `/items/0/id`).
        pointer: String,
    },
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax(error) => fmt::Display::fmt(error, f),
            JsonError::DuplicateKey { pointer } => {
                write!(f, "duplicate object key at {pointer:?}")
            }
        }
    }
}

/// Parses one JSON document (UTF-8, nesting bounded by serde_json's recursion limit of 128,
/// nothing but whitespace after it), refusing duplicate keys.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut duplicate = Duplicate::default();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = ValueSeed {
        duplicate: &mut duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(mut value) => {
            if duplicate.exponents {
                restore_exponents(&mut value, bytes);
            }
            Ok(value)
        }
        Err(error) => match duplicate.reversed_segments {
            Some(segments) => Err(JsonError::DuplicateKey {
                pointer: pointer(&segments),
            }),
            None => Err(JsonError::Syntax(error)),
        },
    }
}

/// A duplicate found deep inside, with the path to it collected on the way out (innermost
/// first): the success path never builds a path.
#[derive(Default)]
struct Duplicate {
    reversed_segments: Option<Vec<String>>,
    /// Whether a number with an exponent was read (its text is then restored, see
    /// [`restore_exponents`]).
    exponents: bool,
}

impl Duplicate {
    /// Called by each enclosing object or array as the error passes through it.
    fn enclosed_by(&mut self, segment: impl FnOnce() -> String) {
        if let Some(segments) = &mut self.reversed_segments {
            segments.push(segment());
        }
    }
}

/// The JSON Pointer (RFC 6901) of segments collected innermost first.
fn pointer(reversed_segments: &[String]) -> String {
    let mut pointer = String::new();
    for segment in reversed_segments.iter().rev() {
        pointer.push('/');
        pointer.push_str(&segment.replace('~', "~0").replace('/', "~1"));
    }
    pointer
}

/// Gives every number with an exponent back the text it was written with.
///
/// serde_json writes the exponent of a number it reads one way (`1e2` and `1E2` become `1e+2`);
/// the gateway passes numbers on as they came. Numbers reach the value in the order of the text
/// (objects keep their members' order, `preserve_order`), so a scan of the input for numbers
/// with an exponent, outside strings, pairs each with its original. Runs only for documents that
/// have one; linear in the input. A text that does not read as the same number is left as it is
/// (never expected: the input was just parsed).
fn restore_exponents(value: &mut Value, input: &[u8]) {
    let mut originals = exponent_numbers(input);
    restore_in(value, &mut originals);
}

fn restore_in<'t>(value: &mut Value, originals: &mut impl Iterator<Item = &'t str>) {
    match value {
        Value::Number(number) if number.as_str().contains('e') => {
            if let Some(original) = originals.next()
                && original.parse::<Number>().ok().as_ref() == Some(number)
                && let Some(exact) = crate::number::number_with_text(original)
            {
                *number = exact;
            }
        }
        Value::Array(elements) => {
            for element in elements {
                restore_in(element, originals);
            }
        }
        Value::Object(members) => {
            for member in members.values_mut() {
                restore_in(member, originals);
            }
        }
        _ => {}
    }
}

/// The texts of a JSON document's numbers with an exponent, in order (the document is valid JSON).
fn exponent_numbers(input: &[u8]) -> impl Iterator<Item = &str> {
    let mut position = 0;
    std::iter::from_fn(move || {
        while position < input.len() {
            let byte = input[position];
            if byte == b'"' {
                position += 1;
                while position < input.len() {
                    match input[position] {
                        b'\\' => position += 2,
                        b'"' => {
                            position += 1;
                            break;
                        }
                        _ => position += 1,
                    }
                }
            } else if byte == b'-' || byte.is_ascii_digit() {
                let start = position;
                while position < input.len()
                    && matches!(
                        input[position],
                        b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                    )
                {
                    position += 1;
                }
                let text = &input[start..position];
                if text.iter().any(|byte| matches!(byte, b'e' | b'E')) {
                    // Number text is ASCII.
                    return std::str::from_utf8(text).ok();
                }
            } else {
                position += 1;
            }
        }
        None
    })
}

/// Deserializes one value of any kind.
struct ValueSeed<'d> {
    duplicate: &'d mut Duplicate,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor {
            duplicate: self.duplicate,
        })
    }
}

struct ValueVisitor<'d> {
    duplicate: &'d mut Duplicate,
}

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        // Without `arbitrary_precision` the parser hands over floats; JSON has no NaN or
        // infinity, so a float the parser produced is always finite.
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut elements: A) -> Result<Value, A::Error> {
        let mut array = Vec::with_capacity(elements.size_hint().unwrap_or(0).min(1024));
        loop {
            let seed = ValueSeed {
                duplicate: &mut *self.duplicate,
            };
            match elements.next_element_seed(seed) {
                Ok(Some(element)) => array.push(element),
                Ok(None) => return Ok(Value::Array(array)),
                Err(error) => {
                    let index = array.len();
                    self.duplicate.enclosed_by(|| index.to_string());
                    return Err(error);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Value, A::Error> {
        let Some(first) = members.next_key::<String>()? else {
            return Ok(Value::Object(Map::new()));
        };
        if first == NUMBER_TOKEN {
            // The parser's own number (an owned `String`), or a caller's member of that name.
            match members.next_value_seed(TokenValueSeed {
                duplicate: &mut *self.duplicate,
            }) {
                Ok(TokenValue::Number(text)) => {
                    self.duplicate.exponents |= text.contains('e');
                    return text
                        .parse::<Number>()
                        .map(Value::Number)
                        .map_err(de::Error::custom);
                }
                Ok(TokenValue::Member(value)) => {
                    let mut object = Map::new();
                    object.insert(first, value);
                    return self.rest_of_object(object, members);
                }
                Err(error) => {
                    self.duplicate.enclosed_by(|| first);
                    return Err(error);
                }
            }
        }
        let value = match members.next_value_seed(ValueSeed {
            duplicate: &mut *self.duplicate,
        }) {
            Ok(value) => value,
            Err(error) => {
                self.duplicate.enclosed_by(|| first);
                return Err(error);
            }
        };
        let mut object = Map::new();
        object.insert(first, value);
        self.rest_of_object(object, members)
    }
}

impl ValueVisitor<'_> {
    /// The members after the first, each name checked against the ones before it.
    fn rest_of_object<'de, A: MapAccess<'de>>(
        self,
        mut object: Map<String, Value>,
        mut members: A,
    ) -> Result<Value, A::Error> {
        while let Some(key) = members.next_key::<String>()? {
            let value = match members.next_value_seed(ValueSeed {
                duplicate: &mut *self.duplicate,
            }) {
                Ok(value) => value,
                Err(error) => {
                    self.duplicate.enclosed_by(|| key);
                    return Err(error);
                }
            };
            match object.entry(key) {
                Entry::Vacant(vacant) => {
                    vacant.insert(value);
                }
                Entry::Occupied(occupied) => {
                    self.duplicate.reversed_segments = Some(vec![occupied.key().clone()]);
                    return Err(de::Error::custom("duplicate object key"));
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// The value under the number token: an owned `String` is the parser's number text; anything
/// else is a caller's member of that name, read as any value.
struct TokenValueSeed<'d> {
    duplicate: &'d mut Duplicate,
}

enum TokenValue {
    Number(String),
    Member(Value),
}

impl<'de> DeserializeSeed<'de> for TokenValueSeed<'_> {
    type Value = TokenValue;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<TokenValue, D::Error> {
        deserializer.deserialize_any(TokenValueVisitor {
            inner: ValueVisitor {
                duplicate: self.duplicate,
            },
        })
    }
}

struct TokenValueVisitor<'d> {
    inner: ValueVisitor<'d>,
}

impl<'de> Visitor<'de> for TokenValueVisitor<'_> {
    type Value = TokenValue;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_string<E>(self, text: String) -> Result<TokenValue, E> {
        Ok(TokenValue::Number(text))
    }

    fn visit_str<E>(self, value: &str) -> Result<TokenValue, E> {
        Ok(TokenValue::Member(Value::String(value.to_owned())))
    }

    fn visit_bool<E>(self, value: bool) -> Result<TokenValue, E> {
        Ok(TokenValue::Member(Value::Bool(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<TokenValue, E> {
        Ok(TokenValue::Member(Value::Number(value.into())))
    }

    fn visit_u64<E>(self, value: u64) -> Result<TokenValue, E> {
        Ok(TokenValue::Member(Value::Number(value.into())))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<TokenValue, E> {
        self.inner.visit_f64(value).map(TokenValue::Member)
    }

    fn visit_unit<E>(self) -> Result<TokenValue, E> {
        Ok(TokenValue::Member(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, elements: A) -> Result<TokenValue, A::Error> {
        self.inner.visit_seq(elements).map(TokenValue::Member)
    }

    fn visit_map<A: MapAccess<'de>>(self, members: A) -> Result<TokenValue, A::Error> {
        self.inner.visit_map(members).map(TokenValue::Member)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn duplicate_at(text: &str) -> String {
        match parse(text.as_bytes()) {
            Err(JsonError::DuplicateKey { pointer }) => pointer,
            other => panic!("{text}: expected a duplicate key, got {other:?}"),
        }
    }

    #[test]
    fn documents_parse_as_serde_json_parses_them() {
        for text in [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e\u00e9\n","f":-0.5},"g":[]}"#,
            r#"[1,-2,18446744073709551615,-9223372036854775808,1.5,1e+2,1e-7,-0,0.0]"#,
            r#""just a string""#,
            "  42  ",
            "{}",
            r#"{"":0,"a/b~c":1}"#,
        ] {
            let ours = parse(text.as_bytes()).unwrap_or_else(|error| panic!("{text}: {error}"));
            let theirs: Value = serde_json::from_str(text).unwrap();
            assert_eq!(ours, theirs, "{text}");
            assert_eq!(
                serde_json::to_string(&ours).unwrap(),
                serde_json::to_string(&theirs).unwrap()
            );
        }
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_pointer() {
        assert_eq!(duplicate_at(r#"{"role":"admin","role":"viewer"}"#), "/role");
        assert_eq!(
            duplicate_at(r#"{"role":"admin","r\u006fle":"viewer"}"#),
            "/role"
        );
        assert_eq!(duplicate_at(r#"{"a":{"b":1,"c":2,"b":3}}"#), "/a/b");
        assert_eq!(
            duplicate_at(r#"{"items":[{"id":1},{"id":2,"id":3}]}"#),
            "/items/1/id"
        );
        assert_eq!(duplicate_at(r#"[[0],[1,{"x":1,"x":1}]]"#), "/1/1/x");
        assert_eq!(duplicate_at(r#"{"a/b":{"~":1,"~":2}}"#), "/a~1b/~0");
        assert_eq!(duplicate_at(r#"{"":1,"":2}"#), "/");
        // Equal values are still two members: a parser upstream may keep either.
        assert_eq!(duplicate_at(r#"{"k":1,"k":1}"#), "/k");
    }

    #[test]
    fn syntax_errors_stay_syntax_errors() {
        for text in [
            "",
            "{",
            r#"{"a":}"#,
            "[1,]",
            "nul",
            "1 2",
            "\"\\x\"",
            "{\"a\":1}x",
        ] {
            assert!(
                matches!(parse(text.as_bytes()), Err(JsonError::Syntax(_))),
                "{text}"
            );
        }
        assert!(matches!(parse(b"\xff\xfe"), Err(JsonError::Syntax(_))));
    }

    #[test]
    fn nesting_is_bounded_as_serde_json_bounds_it() {
        for depth in [1, 100, 127, 128, 129, 200] {
            for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
                let text = format!("{}0{}", open.repeat(depth), close.repeat(depth));
                assert_eq!(
                    parse(text.as_bytes()).is_ok(),
                    serde_json::from_str::<Value>(&text).is_ok(),
                    "depth {depth} of {open}"
                );
            }
        }
        let limit = format!("{}0{}", "[".repeat(129), "]".repeat(129));
        assert!(matches!(parse(limit.as_bytes()), Err(JsonError::Syntax(_))));
        // Deep objects and a hostile 100,000 levels: an error, never a stack overflow.
        let objects = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
        assert!(matches!(
            parse(objects.as_bytes()),
            Err(JsonError::Syntax(_))
        ));
        let arrays = "[".repeat(100_000);
        assert!(matches!(
            parse(arrays.as_bytes()),
            Err(JsonError::Syntax(_))
        ));
    }

    /// Pins serde_json's `arbitrary_precision` protocol: if a release renames the number token or
    /// hands its text over another way, numbers would come out as objects, or fail, here.
    #[test]
    fn numbers_keep_their_exact_text() {
        for (text, written) in [
            ("100.00000000000000001", "100.00000000000000001"),
            (
                "-123456789012345678901234567890",
                "-123456789012345678901234567890",
            ),
            ("12.345678901234567890123", "12.345678901234567890123"),
            ("1e-400", "1e-400"),
            ("1e2", "1e2"),
            ("1E+2", "1E+2"),
            ("-1.5E-7", "-1.5E-7"),
            ("0e0", "0e0"),
            ("100.00", "100.00"),
            ("-0", "-0"),
            ("18446744073709551616", "18446744073709551616"),
        ] {
            let value = parse(text.as_bytes()).unwrap_or_else(|error| panic!("{text}: {error}"));
            let Value::Number(number) = &value else {
                panic!("{text} is not a number: {value:?}");
            };
            assert_eq!(number.as_str(), written, "{text}");
            assert_eq!(serde_json::to_string(&value).unwrap(), written);
        }
        // Exponents in a document, among strings and keys that look like numbers.
        let text = r#"{"1e5":"2E3 \" 4e4","a":[1e2,{"b":-2.5E-3,"c":"x"},7,1E+400],"d":1e-400}"#;
        let value = parse(text.as_bytes()).unwrap();
        assert_eq!(serde_json::to_string(&value).unwrap(), text);
        let record = parse(br#"{"amount":{"nested":[1.25,2]}}"#).unwrap();
        assert_eq!(record, json!({"amount": {"nested": [1.25, 2]}}));
    }

    /// A caller's object whose key is the number token stays an object (serde_json's own `Value`
    /// would read it as the number 5 while the bytes forwarded say otherwise).
    #[test]
    fn an_object_with_the_number_token_as_key_stays_an_object() {
        for text in [
            r#"{"$serde_json::private::Number":"5"}"#,
            r#"{"$serde_json::private::Number":"5","other":1}"#,
            r#"{"$serde_json::private::Numbe\u0072":"5"}"#,
            r#"{"$serde_json::private::Number":5}"#,
            r#"{"$serde_json::private::Number":{"a":[1.5]}}"#,
        ] {
            let value = parse(text.as_bytes()).unwrap_or_else(|error| panic!("{text}: {error}"));
            let object = value
                .as_object()
                .unwrap_or_else(|| panic!("{text} became {value:?}"));
            assert!(object.contains_key(NUMBER_TOKEN), "{text}");
        }
        assert_eq!(
            duplicate_at(
                r#"{"$serde_json::private::Number":"5","$serde_json::private::Number":"6"}"#
            ),
            "/$serde_json::private::Number"
        );
        assert_eq!(
            duplicate_at(r#"{"$serde_json::private::Number":{"a":1,"a":2}}"#),
            "/$serde_json::private::Number/a"
        );
    }
}
