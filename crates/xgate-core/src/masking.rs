//! Masking (SPEC §15): per consumer, after projection and before the consumer's format, the
//! values at configured pointers are partly hidden, so a consumer that needs to recognise a
//! person (`张**`, `110105********002X`) does not receive the whole value.
//!
//! A mask hides characters, never bytes: each hidden character becomes one `*`, so a masked
//! string has as many characters as the value it hides (`欧阳娜娜` → `欧***`). The edge cases,
//! decided once here for every kind:
//!
//! - a string of at most `first + last` characters is hidden whole (every character a `*`): a
//!   short value is never revealed whole because the kept parts cover it;
//! - a number is masked on its exact decimal text (the record keeps numbers as written) and
//!   becomes a string;
//! - `null` stays `null` (nothing is there to hide);
//! - a boolean, an object or an array becomes `"***"` (a part of one means nothing);
//! - `redact` makes every value but `null` `"***"`;
//! - a pointer the record does not reach changes nothing; a mask inside a value an earlier mask
//!   (in pointer order) replaced reaches nothing.
//!
//! Masked values are not validated again (SPEC §15): `110105********002X` is no resident id.

use std::fmt;

use serde_json::Value;

use crate::pointer::{FieldPath, Segment};

/// What replaces a value that cannot be partly shown, and every value `redact` hides.
pub const REDACTED: &str = "***";

/// One mask kind, as configured (`"resident-id"`, `"name"`, `"keep:3-4"`, `"redact"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// The first 6 and last 4 characters kept (a resident id's region and check digits).
    ResidentId,
    /// The first character kept (a surname).
    Name,
    /// The first `first` and last `last` characters kept.
    Keep {
        /// Characters kept at the start.
        first: usize,
        /// Characters kept at the end.
        last: usize,
    },
    /// The whole value replaced by `"***"`.
    Redact,
}

/// The largest `F` or `L` of `keep:F-L`: past it a mask keeps any value whole.
pub const MAX_KEPT: usize = 1000;

impl MaskKind {
    /// The kinds as configuration writes them, for messages.
    pub const KINDS: &'static str = "resident-id, name, keep:F-L (F and L whole numbers), redact";

    /// Parses a configured kind; the error says what is expected.
    pub fn parse(text: &str) -> Result<MaskKind, String> {
        match text {
            "resident-id" => return Ok(MaskKind::ResidentId),
            "name" => return Ok(MaskKind::Name),
            "redact" => return Ok(MaskKind::Redact),
            _ => {}
        }
        let count = |digits: &str| {
            (!digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<usize>().ok())
                .flatten()
                .filter(|count| *count <= MAX_KEPT)
        };
        let Some(rest) = text.strip_prefix("keep:") else {
            return Err(format!(
                "unknown mask kind {text:?}; expected one of {}",
                MaskKind::KINDS
            ));
        };
        match rest
            .split_once('-')
            .and_then(|(first, last)| Some((count(first)?, count(last)?)))
        {
            Some((first, last)) => Ok(MaskKind::Keep { first, last }),
            None => Err(format!(
                "{text:?}: keep:F-L takes two whole numbers of at most {MAX_KEPT} (keep:3-4)"
            )),
        }
    }

    /// The characters kept at the start and the end; `None` for `redact`.
    fn kept(self) -> Option<(usize, usize)> {
        match self {
            MaskKind::ResidentId => Some((6, 4)),
            MaskKind::Name => Some((1, 0)),
            MaskKind::Keep { first, last } => Some((first, last)),
            MaskKind::Redact => None,
        }
    }

    /// Masks one value in place (see the module's rules).
    pub fn mask(self, value: &mut Value) {
        let masked = match (&mut *value, self.kept()) {
            (Value::Null, _) => return,
            (Value::String(text), Some((first, last))) => {
                // In place: the stars take at most the bytes of what they hide.
                mask_in_place(text, first, last);
                return;
            }
            (Value::Number(number), Some((first, last))) => {
                mask_text(&number.to_string(), first, last)
            }
            _ => REDACTED.to_owned(),
        };
        *value = Value::String(masked);
    }
}

impl fmt::Display for MaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskKind::ResidentId => f.write_str("resident-id"),
            MaskKind::Name => f.write_str("name"),
            MaskKind::Keep { first, last } => write!(f, "keep:{first}-{last}"),
            MaskKind::Redact => f.write_str("redact"),
        }
    }
}

/// `text` with its first `first` and last `last` characters kept and every other character a
/// `*`; every character a `*` when the kept parts would cover it all.
fn mask_text(text: &str, first: usize, last: usize) -> String {
    let count = text.chars().count();
    let mut masked = String::with_capacity(text.len());
    if count <= first.saturating_add(last) {
        masked.extend(std::iter::repeat_n('*', count));
        return masked;
    }
    let mut chars = text.chars();
    masked.extend(chars.by_ref().take(first));
    masked.extend(std::iter::repeat_n('*', count - first - last));
    masked.extend(chars.skip(count - first - last));
    masked
}

/// [`mask_text`] in `text`'s own buffer: the hidden characters are replaced by as many `*`,
/// which never need more bytes than they take, so nothing is allocated.
fn mask_in_place(text: &mut String, first: usize, last: usize) {
    /// Enough stars for every id and name in use; a longer run is built.
    const STARS: &str = "****************************************************************";
    let count = text.chars().count();
    let (start, end, stars) = if count <= first.saturating_add(last) {
        (0, text.len(), count)
    } else {
        let at = |nth: usize| {
            text.char_indices()
                .nth(nth)
                .map_or(text.len(), |(at, _)| at)
        };
        (at(first), at(count - last), count - first - last)
    };
    match STARS.get(..stars) {
        Some(run) => text.replace_range(start..end, run),
        None => text.replace_range(start..end, &"*".repeat(stars)),
    }
}

/// The masks one consumer's records get, prepared once at load.
#[derive(Debug, Clone, Default)]
pub struct Masks {
    rules: Vec<(FieldPath, MaskKind)>,
}

impl Masks {
    /// Masks applying `rules` in their order.
    pub fn new(rules: Vec<(FieldPath, MaskKind)>) -> Masks {
        Masks { rules }
    }

    /// The rules, in the order they apply.
    pub fn rules(&self) -> &[(FieldPath, MaskKind)] {
        &self.rules
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Masks `record` in place: every value a rule's path reaches (`*` every array element).
    pub fn apply(&self, record: &mut Value) {
        for (path, kind) in &self.rules {
            mask_at(record, path.segments(), *kind);
        }
    }
}

fn mask_at(value: &mut Value, segments: &[Segment], kind: MaskKind) {
    let Some((first, rest)) = segments.split_first() else {
        kind.mask(value);
        return;
    };
    match (first, value) {
        (Segment::Key(key), Value::Object(object)) => {
            if let Some(child) = object.get_mut(key) {
                mask_at(child, rest, kind);
            }
        }
        (Segment::Key(key), Value::Array(items)) => {
            if let Some(item) = key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                mask_at(item, rest, kind);
            }
        }
        (Segment::Each, Value::Array(items)) => {
            for item in items {
                mask_at(item, rest, kind);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_the_kinds_and_prints_them_back() {
        for text in [
            "resident-id",
            "name",
            "redact",
            "keep:3-4",
            "keep:0-0",
            "keep:1000-2",
        ] {
            assert_eq!(MaskKind::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            MaskKind::parse("keep:03-4").unwrap(),
            MaskKind::Keep { first: 3, last: 4 }
        );
        for text in [
            "",
            "Name",
            "keep",
            "keep:",
            "keep:3",
            "keep:3-",
            "keep:-4",
            "keep:a-b",
            "keep:+1-2",
            "keep:1001-0",
            "keep:3-4-5",
            "keep: 3-4",
            "keep:99999-1",
            "hash",
        ] {
            assert!(MaskKind::parse(text).is_err(), "{text:?}");
        }
        assert!(
            MaskKind::parse("hash")
                .unwrap_err()
                .contains("resident-id, name")
        );
        assert!(
            MaskKind::parse("keep:3")
                .unwrap_err()
                .contains("keep:F-L takes")
        );
    }

    #[test]
    fn masking_in_place_gives_what_building_a_new_text_gives() {
        let long = "长".repeat(100);
        for text in [
            "",
            "a",
            "张",
            "张三",
            "欧阳娜娜",
            "11010519491231002X",
            "a😀b😀c",
            long.as_str(),
        ] {
            for (first, last) in [(0, 0), (1, 0), (6, 4), (3, 4), (0, 200), (2, 1)] {
                let mut in_place = text.to_owned();
                mask_in_place(&mut in_place, first, last);
                assert_eq!(
                    in_place,
                    mask_text(text, first, last),
                    "{text:?} {first}-{last}"
                );
            }
        }
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert_eq!(mask_text("欧阳娜娜", 1, 0), "欧***");
        assert_eq!(mask_text("张三丰", 1, 1), "张*丰");
        assert_eq!(mask_text("ab", 1, 1), "**");
        assert_eq!(mask_text("", 1, 0), "");
        assert_eq!(mask_text("abc", 0, 0), "***");
        assert_eq!(mask_text("𝒜bc𝒟", 1, 1), "𝒜**𝒟");
        assert_eq!(mask_text("abcdef", MAX_KEPT, MAX_KEPT), "******");
    }

    #[test]
    fn masks_in_place_along_paths() {
        let mut record = json!({
            "a": [{"b": "12345"}, {"b": "67"}, {"c": 1}, 5],
            "n": null, "o": {"x": 1}
        });
        let masks = Masks::new(vec![
            (
                FieldPath::parse("/a/*/b").unwrap(),
                MaskKind::Keep { first: 1, last: 1 },
            ),
            (FieldPath::parse("/a/3").unwrap(), MaskKind::Name),
            (FieldPath::parse("/n").unwrap(), MaskKind::Redact),
            (FieldPath::parse("/o").unwrap(), MaskKind::Name),
            (FieldPath::parse("/o/x").unwrap(), MaskKind::Redact),
            (FieldPath::parse("/missing/*").unwrap(), MaskKind::Redact),
        ]);
        masks.apply(&mut record);
        assert_eq!(
            record,
            json!({"a": [{"b": "1***5"}, {"b": "**"}, {"c": 1}, "*"], "n": null, "o": "***"})
        );
        assert!(Masks::default().is_empty());
    }
}
